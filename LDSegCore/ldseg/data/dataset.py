"""Data set folders: pairing images with labels, the fixed split, and the
in-memory torch Dataset used for training.

Layouts (see README, "Data sets"):

- ``images/`` and ``labels/``: one label per image (one rater).
- ``images/`` and several rater folders (``rater1/``, ``rater2/``, ... or
  ``labels-a/``, ``labels_2/``, ...): every rater's label of every image,
  for data sets such as LIDC-IDRI segmented by several experts.
- one flat folder with ``Case1.nii.gz`` beside ``Case1_label.nii.gz``.

An image and its label share a name (extensions may differ, e.g.
``case1.nii.gz`` / ``case1.nrrd``), or follow a common convention: the
label ends in ``_label``, ``_seg`` or ``_mask``, or the image in nnU-Net's
``_0000`` channel suffix. Which convention paired a case is recorded in
:attr:`CasePair.pairing` (:func:`describe_pairing` says it in one line);
a label that could belong to two images, or two labels to one, is refused.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError, short_list
from ..io.images import (
    Geometry,
    is_image_path,
    read_image,
    read_label,
    split_extension,
)
from .preprocess import (
    Preprocessing,
    check_image,
    labels_to_classes,
    prepare_image,
    prepare_label,
)
from .raters import rater_consensus

__all__ = [
    "CasePair",
    "find_pairs",
    "describe_pairing",
    "case_group",
    "split_cases",
    "SegmentationDataset",
]

#: How many names an error message lists before summarizing.

#: Images and labels on one grid may differ by header rounding only.
_GEOMETRY_TOLERANCE = 1e-3

#: Name endings that mark a label file (``Case1_seg.nii.gz`` labels ``Case1``).
LABEL_SUFFIXES = ("_label", "_labels", "_seg", "_mask")

#: nnU-Net names the (first) channel of image ``Case1`` ``Case1_0000``.
IMAGE_SUFFIX = "_0000"

#: Folders holding one rater's labels each, beside images/.
_RATER_FOLDER = re.compile(r"^(rater|reader|annotator)[-_ ]?\w+$|^labels[-_ ]\w+$", re.IGNORECASE)

SAME_NAME = "same name"


@dataclass(frozen=True)
class CasePair:
    """One case: an image and its label map (the first rater's when there
    are several; ``rater_labels`` then holds every rater's, in folder order)."""

    name: str
    image: Path
    label: Path
    rater_labels: tuple[Path, ...] = ()
    pairing: str = SAME_NAME  # the naming convention that paired image and label(s)

    @property
    def labels(self) -> tuple[Path, ...]:
        """Every rater's label (just ``label`` for a one-rater data set)."""
        return self.rater_labels or (self.label,)


def _natural_key(text: str):
    """rater2 before rater10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _index_folder(folder: Path) -> dict[str, Path]:
    """Map case name -> path for the images in ``folder``.

    Hidden entries (``.DS_Store``, temp files) and non-image files (notes,
    spreadsheets) are ignored; two files with one name are an error since
    the pairing would be ambiguous.
    """
    index: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not is_image_path(entry):
            continue
        name = split_extension(entry)[0]
        if name in index:
            raise InputError(
                f"{folder.name}/: two files are named '{name}' ({index[name].name}, {entry.name}); keep one"
            )
        index[name] = entry
    return index


def _strip(name: str, suffixes: Sequence[str]) -> tuple[str, str]:
    """(name without the first matching suffix, that suffix or '')."""
    for suffix in suffixes:
        if len(name) > len(suffix) and name.lower().endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def _pair_names(
    images: dict[str, Path], labels: dict[str, Path], where: str, image_place: str, label_place: str
) -> dict[str, tuple[Path, Path, str]]:
    """case name -> (image, label, pairing rule); refuses ambiguous pairings.

    Same names pair first; the rest pair by name with the label suffixes and
    nnU-Net's image suffix removed.
    """
    pairs = {name: (images[name], labels[name], SAME_NAME) for name in images if name in labels}
    image_keys: dict[str, list[str]] = {}
    for name in images:
        key = _strip(name, (IMAGE_SUFFIX,))[0] if name not in pairs else name
        image_keys.setdefault(key, []).append(name)
    label_keys: dict[str, list[str]] = {}
    for name in labels:
        if name not in pairs:
            label_keys.setdefault(_strip(name, LABEL_SUFFIXES)[0], []).append(name)
    for key, names in sorted(image_keys.items()):
        if len(names) > 1:
            files = " and ".join(images[n].name for n in names)
            raise InputError(f"{where}: {files} are both the image of case '{key}'; keep one")
    for key, names in sorted(label_keys.items()):
        owner = image_keys.get(key, [None])[0]
        taken = owner in pairs
        if owner is not None and (len(names) > 1 or taken):
            files = [labels[n].name for n in names] + ([pairs[owner][1].name] if taken else [])
            raise InputError(
                f"{where}: {' and '.join(sorted(files))} could each be the label of {images[owner].name}; keep one"
            )
        if owner is None:
            continue
        label_name = names[0]
        rules = []
        if owner != key:
            rules.append(f"image suffix {IMAGE_SUFFIX}")
        suffix = _strip(label_name, LABEL_SUFFIXES)[1]
        if suffix:
            rules.append(f"label suffix {suffix}")
        pairs[key] = (images[owner], labels[label_name], ", ".join(rules) or SAME_NAME)
    paired_images = {p[0] for p in pairs.values()}
    paired_labels = {p[1] for p in pairs.values()}
    no_label = [p.name for p in images.values() if p not in paired_images]
    no_image = [p.name for p in labels.values() if p not in paired_labels]
    if no_label:
        raise InputError(f"{where}: images without a label in {label_place}: {short_list(sorted(no_label))}")
    if no_image:
        raise InputError(f"{where}: labels without an image in {image_place}: {short_list(sorted(no_image))}")
    return pairs


def _rater_folders(folder: Path) -> list[Path]:
    """Label folders beside images/: [labels/] or the rater folders, in natural order."""
    raters = sorted(
        (d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _RATER_FOLDER.match(d.name)),
        key=lambda d: _natural_key(d.name),
    )
    plain = folder / "labels"
    if plain.is_dir() and raters:
        raise InputError(
            f"{folder.name}: holds labels/ and rater folders ({short_list(sorted(d.name for d in raters))}); "
            "keep labels/ for one rater or rater folders for several"
        )
    return raters or ([plain] if plain.is_dir() else [])


def find_pairs(folder) -> list[CasePair]:
    """The cases of a data set folder (any layout above), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: data set folder not found")
    label_folders = _rater_folders(folder)
    images_folder = folder / "images"
    if not images_folder.is_dir() and not label_folders:
        return _flat_pairs(folder)
    if not images_folder.is_dir():
        raise InputError(f"{folder.name}: has no 'images' folder (a data set folder needs images/ and labels/)")
    if not label_folders:
        raise InputError(
            f"{folder.name}: has no 'labels' folder (a data set folder needs images/ and labels/, or rater folders)"
        )
    images = _index_folder(images_folder)
    if not images:
        raise InputError(f"{folder.name}: no images found in images/")
    # every rater folder must label every image, so all give the same case names
    per_rater = [
        _pair_names(images, _index_folder(sub), folder.name, "images/", f"{sub.name}/") for sub in label_folders
    ]
    names = sorted(per_rater[0])
    cases = []
    for name in names:
        labels = tuple(pairs[name][1] for pairs in per_rater)
        rules = sorted({pairs[name][2] for pairs in per_rater})
        cases.append(
            CasePair(
                name,
                per_rater[0][name][0],
                labels[0],
                rater_labels=labels if len(labels) > 1 else (),
                pairing="; ".join(rules),
            )
        )
    return cases


def _flat_pairs(folder: Path) -> list[CasePair]:
    """Images with their labels beside them (``Case1`` + ``Case1_label``)."""
    files = _index_folder(folder)
    labels = {n: p for n, p in files.items() if _strip(n, LABEL_SUFFIXES)[1]}
    images = {n: p for n, p in files.items() if n not in labels}
    if not labels:
        raise InputError(
            f"{folder.name}: has no 'images' folder (a data set folder needs images/ and labels/, "
            f"or labels named NAME{LABEL_SUFFIXES[0]} beside the images)"
        )
    if not images:
        raise InputError(f"{folder.name}: no images found beside the labels")
    pairs = _pair_names(images, labels, folder.name, "the folder", "the folder")
    return [CasePair(name, image, label, pairing=rule) for name, (image, label, rule) in sorted(pairs.items())]


def describe_pairing(pairs: Sequence[CasePair]) -> str:
    """One line saying how the cases were paired, e.g. for a progress note."""
    pairs = list(pairs)
    counts = Counter(p.pairing for p in pairs)
    rules = ", ".join(f"{n} by {rule}" for rule, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    text = f"{len(pairs)} cases paired ({rules})"
    if pairs and pairs[0].rater_labels:
        folders = [p.parent.name for p in pairs[0].rater_labels]
        text += f"; {len(folders)} raters per case ({', '.join(folders)})"
    return text


# -- the fixed split ------------------------------------------------------------


def case_group(name: str, group_by: str) -> str:
    """The group (e.g. patient) of a case: the part of its name that the
    regular expression ``group_by`` matches (its first group, if it has one)."""
    try:
        pattern = re.compile(group_by)
    except re.error as e:
        raise InputError(f"--group-by '{group_by}' is not a regular expression ({e})") from None
    match = pattern.search(name)
    if match is None:
        raise InputError(f"case '{name}': --group-by '{group_by}' does not match its name")
    return match.group(1) if pattern.groups else match.group(0)


def split_cases(
    pairs: Sequence[CasePair], val_fraction: float = 0.2, group_by: str | None = None
) -> tuple[list[CasePair], list[CasePair]]:
    """Fixed train/validation split.

    Cases are sorted by name (plain string order) and the last
    ``round(n * val_fraction)`` become validation, at least one when
    ``n >= 2`` and ``val_fraction > 0``, and never all of them. No
    randomness, so every run and every tool sees the same split.

    With ``group_by`` (see :func:`case_group`) the same rule applies to the
    sorted groups instead of the cases, so the cases of one group (the
    slices of one patient) are never on both sides.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    ordered = sorted(pairs, key=lambda p: p.name)
    if group_by is None:
        keys = [p.name for p in ordered]
    else:
        keys = [case_group(p.name, group_by) for p in ordered]
    groups = sorted(set(keys))
    n = len(groups)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    val_groups = set(groups[n - n_val :])
    train = [p for p, k in zip(ordered, keys) if k not in val_groups]
    val = [p for p, k in zip(ordered, keys) if k in val_groups]
    return train, val


class SegmentationDataset(Dataset):
    """All cases loaded, checked and resampled to the model grid once.

    Data sets for this engine are small (tens to hundreds of cases), so the
    preprocessed tensors are cached in memory and training epochs do no I/O.
    Every problem is reported as an InputError naming the offending file.

    Several raters per case (see :func:`find_pairs`): every rater's map is
    kept (as uint8, so thousands of 2D slices fit); ``dataset[i]`` gives
    their consensus (:func:`~ldseg.data.raters.rater_consensus`, the
    validation target) and :meth:`training_item` one rater's map drawn
    from a generator. An empty rater map is real (that rater saw nothing
    there), so ``require_foreground`` applies to one-rater data sets only.
    """

    def __init__(
        self,
        pairs: Sequence[CasePair],
        pre: Preprocessing,
        *,
        require_foreground: bool = True,
        progress: Callable[[float, str], None] | None = None,
    ):
        self.pre = pre
        self.pairs = list(pairs)
        self.require_foreground = require_foreground
        self.raters = max((len(p.labels) for p in self.pairs), default=1)  # raters per case
        self.names: list[str] = []
        self.spacings: list[tuple[float, ...]] = []
        self.geometries: list[Geometry] = []
        self.original_shapes: list[tuple[int, ...]] = []
        self._images: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []  # (*grid) int64, or (R, *grid) small ints for R raters
        total = len(self.pairs)
        for i, pair in enumerate(self.pairs):
            if progress is not None:
                progress(i / total, f"Loading {pair.name} ({i + 1}/{total})")
            self._load(pair)
        if progress is not None and total:
            progress(1.0, f"Loaded {total} cases")

    def _load(self, pair: CasePair) -> None:
        """Read, check and cache one case."""
        image = read_image(pair.image)
        check_image(image, self.pre)
        maps = []
        for path in pair.labels:
            labels, label_geometry = read_label(path)
            self._check_label(pair.image, path, image.spatial_shape, image.geometry, labels, label_geometry)
            maps.append(prepare_label(labels, self.pre, str(path), image.geometry))
        if len(maps) == 1:
            self._labels.append(maps[0])
        else:
            small = torch.uint8 if self.pre.num_classes <= 256 else torch.int64
            self._labels.append(torch.stack(maps).to(small))
        self._images.append(prepare_image(image, self.pre))
        self.names.append(pair.name)
        self.spacings.append(image.geometry.spacing)
        self.geometries.append(image.geometry)
        self.original_shapes.append(image.spatial_shape)

    def _check_label(
        self,
        image_path: Path,
        label_path: Path,
        shape,
        geometry: Geometry,
        labels: np.ndarray,
        label_geometry: Geometry,
    ) -> None:
        """Label must sit on the image's grid and hold known foreground."""
        # Image and label often share a base name: say which folder is which.
        name = f"{label_path.parent.name}/{label_path.name}"
        image_name = f"{image_path.parent.name}/{image_path.name}"
        if tuple(labels.shape) != tuple(shape):
            raise InputError(
                f"{name}: label size {_size(labels.shape)} differs from image {image_name} size {_size(shape)}"
            )
        if not label_geometry.matches(geometry, tol=_GEOMETRY_TOLERANCE):
            raise InputError(
                f"{name}: label geometry ({label_geometry.describe(geometry)})"
                f" differs from image {image_name} "
                f"({geometry.describe(label_geometry)})"
            )
        classes = labels_to_classes(labels, self.pre, name)
        if self.raters == 1 and self.require_foreground and not np.any(classes):
            raise InputError(f"{name}: label contains no foreground (only background); remove the case or label it")

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, label); with several raters the label is their consensus."""
        labels = self._labels[index]
        if labels.dim() > len(self.pre.grid):
            labels = torch.from_numpy(rater_consensus(labels.numpy(), self.pre.num_classes))
        return self._images[index], labels

    def training_item(self, index: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, label) for one training step: with several raters, one
        rater's map drawn uniformly from ``generator`` (a fresh draw every
        step, reproducible from the generator's seed); otherwise the one
        label, and the generator is left untouched."""
        labels = self._labels[index]
        if labels.dim() == len(self.pre.grid):
            return self._images[index], labels
        rater = int(torch.randint(labels.shape[0], (1,), generator=generator))
        return self._images[index], labels[rater].to(torch.int64)


def _size(shape) -> str:
    """Numpy-order shape as 'AxBxC'."""
    return "x".join(str(int(s)) for s in shape)
