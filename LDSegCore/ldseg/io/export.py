"""Writing a segmentation result set: labels, SD map, probabilities, preview,
on request every sample's label map, and the ``<stem>_result.json`` manifest, named and formatted one way for the
command line, the Slicer module (which runs the command line) and the API.

A set is published as one unit. Everything is written into a hidden staging
folder (``.ldseg-<pid>-<random>``) inside the output folder; a journal
naming the files is then written there, the files are renamed into place
with the manifest last, and the staging folder is removed. If the process
dies during the renames, the next write into that folder finds the journal
and finishes them (so the set on disk is the new one, whole); staging
folders of dead runs without a journal are removed. Existing files of the
same names are replaced only with ``overwrite=True``; the inputs never.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..config import OUTPUT_FORMATS
from ..errors import OutputError
from .images import split_extension

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..inference.segmenter import SegmentationResult
    from .images import MedicalImage

#: The extension of the label file in each of the OUTPUT_FORMATS.
FORMAT_EXTENSIONS = dict(zip(OUTPUT_FORMATS, (".nii.gz", ".nrrd", ".seg.nrrd")))
STAGING_PREFIX = ".ldseg-"
JOURNAL = "publish.json"
#: Longest file name most file systems take (bytes).
NAME_MAX = 255


def default_format(image_path) -> str:
    """NIfTI results for NIfTI input, NRRD otherwise."""
    ext = split_extension(Path(image_path))[1].lower() if image_path else ""
    return "nifti" if ext in (".nii", ".nii.gz") else "nrrd"


@dataclass
class ResultSet:
    """The files one segmentation writes into ``folder`` (kind -> file name);
    ``result`` (the manifest) is published last."""

    folder: Path
    names: dict[str, str] = field(default_factory=dict)

    def path(self, kind: str) -> Path:
        return self.folder / self.names[kind]

    @property
    def manifest(self) -> Path:
        return self.path("result")


def plan_result_set(
    folder, stem: str, fmt: str = "nrrd", *, probabilities: bool = True, samples: bool = False
) -> ResultSet:
    """Names of the files for an input called ``stem``; refuses names no file
    system takes (a very long input name), before any work. ``samples``: the
    set includes the samples file (one component per sample)."""
    if fmt not in FORMAT_EXTENSIONS:
        raise OutputError(f"unknown output format {fmt!r} (known: {', '.join(FORMAT_EXTENSIONS)})")
    ext = FORMAT_EXTENSIONS[fmt]
    volume_ext = ".nii.gz" if fmt == "nifti" else ".nrrd"  # SD, probabilities, samples: never .seg.nrrd
    names = {
        "labels": f"{stem}_labels{ext}",
        "sd": f"{stem}_sd{volume_ext}",
        "preview": f"{stem}_preview.png",
        "result": f"{stem}_result.json",
    }
    if probabilities:
        names["probabilities"] = f"{stem}_probabilities{volume_ext}"
    if samples:
        names["samples"] = f"{stem}_samples{volume_ext}"
    longest = max(names.values(), key=lambda n: len(n.encode("utf-8", "surrogateescape")))
    if len(longest.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise OutputError(
            f"the input name is too long for its result files ({longest[:40]}... would exceed "
            f"{NAME_MAX} bytes); rename the input (at most about {NAME_MAX - 30} characters)"
        )
    return ResultSet(Path(folder), names)


def check_result_set(result_set: ResultSet, *, overwrite: bool = False, protected=()) -> None:
    """Refuse, before any work, names that are in the way: a folder, an input
    (``protected``), or an existing file unless ``overwrite``."""
    inputs = set()
    for p in protected:
        if p is not None:
            with contextlib.suppress(OSError):
                inputs.add(Path(p).resolve())
    existing = []
    for name in result_set.names.values():
        target = result_set.folder / name
        if target.resolve() in inputs:
            raise OutputError(f"{target}: refusing to overwrite an input file; choose another output folder")
        if target.is_dir():
            raise OutputError(f"{target}: a folder is in the way of a result file; move it or choose another folder")
        if target.exists() or target.is_symlink():
            existing.append(name)
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputError(
            f"{result_set.folder / existing[0]}{more} already exist; pass --overwrite "
            "(overwrite=True) to replace them, or choose another output folder"
        )


# -- staging and publishing ---------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def _staging_owner(folder: Path) -> int | None:
    parts = folder.name[len(STAGING_PREFIX) :].split("-")
    return int(parts[0]) if parts and parts[0].isdigit() else None


def _finish_publishing(staging: Path) -> None:
    """Rename what a journal lists into place (the manifest last)."""
    journal = json.loads((staging / JOURNAL).read_text())
    for name in journal["order"]:
        source = staging / name
        if source.exists():
            os.replace(source, staging.parent / name)


def clean_stale_staging(folder) -> list[str]:
    """Finish or remove the staging folders that dead runs left in ``folder``;
    returns what was done, one line each (for a note to the user)."""
    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for staging in sorted(folder.glob(STAGING_PREFIX + "*")):
        owner = _staging_owner(staging)
        if not staging.is_dir() or (owner is not None and _pid_alive(owner)):  # a live run's
            continue
        if (staging / JOURNAL).is_file():
            try:
                _finish_publishing(staging)
                done.append(f"finished publishing an interrupted result set from {staging.name}")
            except (OSError, ValueError, KeyError):
                done.append(f"removed an unreadable interrupted result set {staging.name}")
        else:
            done.append(f"removed the staging folder {staging.name} of an interrupted run")
        shutil.rmtree(staging, ignore_errors=True)
    return done


class _Staging:
    """The staging folder of one write; creates the output folder (and its
    missing parents) only when needed, and removes what it created on error."""

    def __init__(self, result_set: ResultSet):
        self.set = result_set
        self.created: list[Path] = []
        self.dir: Path | None = None

    def __enter__(self) -> "_Staging":
        missing = []
        probe = self.set.folder.absolute()
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        try:
            for path in reversed(missing):
                path.mkdir()
                self.created.append(path)
            self.dir = self.set.folder / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            self.dir.mkdir()
        except OSError as e:
            self._remove_created()
            raise OutputError(f"{self.set.folder}: cannot write the output folder ({e.strerror})") from None
        return self

    def path(self, kind: str) -> Path:
        return self.dir / self.set.names[kind]

    def publish(self) -> None:
        order = [n for k, n in self.set.names.items() if k != "result"] + [self.set.names["result"]]
        journal = self.dir / JOURNAL
        journal.write_text(json.dumps({"order": order}))
        for name in order:
            os.replace(self.dir / name, self.set.folder / name)

    def _remove_created(self) -> None:
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                path.rmdir()  # only if still empty

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        if exc_type is not None:
            self._remove_created()


# -- the result set -------------------------------------------------------------------


def write_result(
    result: SegmentationResult,
    image: MedicalImage,
    output_folder,
    config: ModelConfig,
    *,
    stem: str | None = None,
    fmt: str | None = None,
    probabilities: bool = True,
    samples: bool = False,
    overwrite: bool = False,
    model_path=None,
    seed: int | None = None,
    protected=(),
) -> dict[str, Path]:
    """Write ``result`` (of ``image``, by a model with ``config``) as one set
    into ``output_folder``; returns kind -> published path (``result`` is the
    manifest). ``stem`` defaults to the image's file name without extension.
    ``samples``: also write every sample's label map (the result must have
    kept them: ``Segmenter.segment(..., keep_samples=True)``)."""

    source = Path(image.source) if image.source else None
    stem = stem or (split_extension(source)[0] if source else "image")
    if samples and result.sample_classes is None:
        raise OutputError("the samples were not kept: segment with keep_samples=True (or save_samples) to write them")
    result_set = plan_result_set(
        output_folder, stem, fmt or default_format(source), probabilities=probabilities, samples=samples
    )
    clean_stale_staging(result_set.folder)
    check_result_set(result_set, overwrite=overwrite, protected=[source, model_path, *protected])
    try:
        with _Staging(result_set) as staging:
            _write_files(result, image, config, staging, fmt or default_format(source))
            manifest = _manifest(result, image, config, result_set, model_path, seed)
            staging.path("result").write_text(json.dumps(manifest, indent=2))
            staging.publish()
    except OSError as e:  # the writers' own errors are OutputErrors already
        raise OutputError(f"{result_set.folder}: cannot write the results ({e.strerror or e})") from None
    return {kind: result_set.path(kind) for kind in result_set.names}


def _write_files(result, image, config, staging: _Staging, fmt: str) -> None:
    from .images import write_image, write_segmentation_nrrd
    from .preview import save_preview_png

    reference = image.source
    if fmt == "seg.nrrd":
        segments = [
            {"name": n, "color": c, "label_value": int(v)}
            for n, c, v in zip(config.class_names[1:], config.class_colors[1:], config.preprocessing.label_values[1:])
        ]
        write_segmentation_nrrd(result.labels, result.geometry, staging.path("labels"), segments)
    else:
        write_image(result.labels, result.geometry, staging.path("labels"), reference_path=reference)
    write_image(result.sd, result.geometry, staging.path("sd"), reference_path=reference)
    if "probabilities" in staging.set.names:
        write_image(result.probabilities, result.geometry, staging.path("probabilities"), reference_path=reference)
    if "samples" in staging.set.names:
        write_image(_sample_labels(result, config), result.geometry, staging.path("samples"), reference_path=reference)
    save_preview_png(
        image.array,
        result.classes,
        result.sd if result.samples > 1 else None,
        list(config.class_colors),
        staging.path("preview"),
        title=f"{config.title or config.name}: {image.name}",
    )


def _sample_labels(result, config) -> np.ndarray:
    """(N, *spatial) label values of the samples, in the labels file's type:
    written as one vector image, component k = sample k."""
    from ..data.preprocess import classes_to_labels

    first = classes_to_labels(result.sample_classes[0], config.preprocessing)
    out = np.empty(result.sample_classes.shape, dtype=first.dtype)
    out[0] = first
    for k in range(1, len(out)):  # one sample at a time: no int64 copy of all N
        out[k] = classes_to_labels(result.sample_classes[k], config.preprocessing)
    return out


def _manifest(result, image, config, result_set: ResultSet, model_path, seed) -> dict[str, Any]:
    files: dict[str, Any] = {k: str(result_set.path(k)) for k in result_set.names if k != "result"}
    files.setdefault("probabilities", None)
    manifest = {
        "input": image.source,
        "model": str(model_path) if model_path else config.name,
        "device": result.device,
        "architecture": config.architecture,
        "precision": result.precision,
        "samples": result.samples,
        "sampler": result.sampler,
        "steps": result.steps,  # what ran: ddim K, ddpm T, single 1, deterministic 0
        "flip_views": result.flip_views,  # image views the samples were spread over (1: none)
        "seed": seed,
        "seconds": result.seconds.get("total"),
        "timings": result.seconds,
        "classes": config.summary()["classes"],
        "files": files,
        "engine_version": __version__,
    }
    if result.note:
        manifest["note"] = result.note
    return manifest
