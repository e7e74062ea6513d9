"""Data set folders: pairing images with labels, the fixed split, and the
in-memory torch Dataset used for training.

A data set folder holds ``images/`` and ``labels/``; an image and its label
share a name (extensions may differ, e.g. ``case1.nii.gz`` / ``case1.nrrd``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
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

__all__ = ["CasePair", "find_pairs", "split_cases", "SegmentationDataset"]

#: How many names an error message lists before summarizing.
_MAX_NAMES = 5

#: Images and labels on one grid may differ by header rounding only.
_GEOMETRY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class CasePair:
    """One training case: an image and its label map."""

    name: str
    image: Path
    label: Path


def _name_list(names: Sequence[str]) -> str:
    """'a, b, c and 4 more' - keeps messages on one short line."""
    names = sorted(names)
    shown = ", ".join(names[:_MAX_NAMES])
    extra = len(names) - _MAX_NAMES
    return shown + (f" and {extra} more" if extra > 0 else "")


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


def find_pairs(folder) -> list[CasePair]:
    """Pair ``folder/images/*`` with ``folder/labels/*`` by name, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: data set folder not found")
    sub = {}
    for part in ("images", "labels"):
        sub[part] = folder / part
        if not sub[part].is_dir():
            raise InputError(f"{folder.name}: has no '{part}' folder (a data set folder needs images/ and labels/)")
    images = _index_folder(sub["images"])
    labels = _index_folder(sub["labels"])
    no_label = set(images) - set(labels)
    no_image = set(labels) - set(images)
    if no_label:
        raise InputError(
            f"{folder.name}: images without a label in labels/: {_name_list([images[n].name for n in no_label])}"
        )
    if no_image:
        raise InputError(
            f"{folder.name}: labels without an image in images/: {_name_list([labels[n].name for n in no_image])}"
        )
    if not images:
        raise InputError(f"{folder.name}: no images found in images/")
    return [CasePair(n, images[n], labels[n]) for n in sorted(images)]


def split_cases(pairs: Sequence[CasePair], val_fraction: float = 0.2) -> tuple[list[CasePair], list[CasePair]]:
    """Fixed train/validation split.

    Cases are sorted by name (plain string order) and the last
    ``round(n * val_fraction)`` become validation, at least one when
    ``n >= 2`` and ``val_fraction > 0``, and never all of them. No
    randomness, so every run and every tool sees the same split.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    ordered = sorted(pairs, key=lambda p: p.name)
    n = len(ordered)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    cut = n - n_val
    return ordered[:cut], ordered[cut:]


class SegmentationDataset(Dataset):
    """All cases loaded, checked and resampled to the model grid once.

    Data sets for this engine are small (tens to hundreds of cases), so the
    preprocessed tensors are cached in memory and training epochs do no I/O.
    Every problem is reported as an InputError naming the offending file.
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
        self.names: list[str] = []
        self.spacings: list[tuple[float, ...]] = []
        self.geometries: list[Geometry] = []
        self.original_shapes: list[tuple[int, ...]] = []
        self._images: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
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
        labels, label_geometry = read_label(pair.label)
        check_image(image, self.pre)
        self._check_pair(pair, image.spatial_shape, image.geometry, labels, label_geometry)
        self._images.append(prepare_image(image, self.pre))
        self._labels.append(prepare_label(labels, self.pre, str(pair.label)))
        self.names.append(pair.name)
        self.spacings.append(image.geometry.spacing)
        self.geometries.append(image.geometry)
        self.original_shapes.append(image.spatial_shape)

    def _check_pair(
        self,
        pair: CasePair,
        shape,
        geometry: Geometry,
        labels: np.ndarray,
        label_geometry: Geometry,
    ) -> None:
        """Label must sit on the image's grid and hold known foreground."""
        # Image and label often share a base name: say which folder is which.
        name = f"{pair.label.parent.name}/{pair.label.name}"
        image_name = f"{pair.image.parent.name}/{pair.image.name}"
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
        if self.require_foreground and not np.any(classes):
            raise InputError(f"{name}: label contains no foreground (only background); remove the case or label it")

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._images[index], self._labels[index]


def _size(shape) -> str:
    """Numpy-order shape as 'AxBxC'."""
    return "x".join(str(int(s)) for s in shape)
