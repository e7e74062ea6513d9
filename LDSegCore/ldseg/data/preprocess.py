"""Preprocessing shared by training and inference.

A :class:`Preprocessing` is stored in the model file so that inference treats
new images exactly as the training images were treated: same intensity
normalization, same model grid, same label-value <-> class mapping.
Images are turned to the model's axis order (:mod:`ldseg.data.orientation`),
resampled to the fixed model grid (as in the LDSeg paper), and predictions
are turned back and resampled to the image's own size afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Preprocessing
from ..errors import InputError, display_name, short_list
from ..io.images import Geometry, MedicalImage
from .orientation import AxisTurn, canonical_turn

__all__ = [
    "axis_turn",
    "check_image",
    "normalize_intensity",
    "prepare_image",
    "labels_to_classes",
    "prepare_label",
    "resample_classes",
    "classes_to_labels",
    "resize",
]

_CHANNEL_WORDS = {1: "gray", 3: "RGB"}


def _channel_text(count: int) -> str:
    """'3 channels (RGB)' style wording for messages."""
    word = _CHANNEL_WORDS.get(count)
    plural = "channel" if count == 1 else "channels"
    return f"{count} {plural}" + (f" ({word})" if word else "")


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def check_image(image: MedicalImage, pre: Preprocessing) -> None:
    """Raise InputError (naming the file) if the model cannot use ``image``."""
    name = image.name
    if image.dims != pre.dims:
        hint = ""
        if image.dims == 3 and 1 in image.spatial_shape:
            hint = " (it is a single-slice volume)"
        raise InputError(f"{name}: is {image.dims}D{hint} but the model expects {pre.dims}D images")
    if image.channels != pre.channels:
        raise InputError(
            f"{name}: has {_channel_text(image.channels)} but the model expects {_channel_text(pre.channels)} images"
        )
    shape = image.spatial_shape
    if min(shape) < 2:
        size = "x".join(str(s) for s in shape)
        raise InputError(f"{name}: is too small ({size} voxels); every axis needs at least 2 voxels")
    array = image.array
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or infinite values")
    if array.size and array.min() == array.max():
        raise InputError(f"{name}: all voxels have the same value ({float(array.flat[0]):g}); the image is empty")


def normalize_intensity(array: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Normalize the whole image (all channels together) to float32.

    minmax: per-image [0, 1] as in the paper; percentile: clip to the
    configured percentiles first (robust to outliers); zscore: zero mean,
    unit variance; none: unchanged.
    """
    array = np.asarray(array, dtype=np.float32)
    if pre.intensity == "none":
        return array.copy()
    if pre.intensity == "zscore":
        std = float(array.std())
        if std <= 0:
            return np.zeros_like(array)
        centred = np.subtract(array, np.float32(array.mean()), dtype=np.float32)
        centred /= np.float32(std)
        return centred
    # One float32 output array, worked on in place: a large image is copied
    # once, not three times (and never widened to float64).
    source, out = array, None
    if pre.intensity == "percentile":
        low, high = np.percentile(array, pre.percentiles)
        source = out = np.clip(array, np.float32(low), np.float32(high))  # our own copy
    low, high = float(source.min()), float(source.max())
    if high <= low:
        return np.zeros_like(array)
    out = np.subtract(source, np.float32(low), out=out, dtype=np.float32)
    out /= np.float32(high - low)
    return out


def resize(tensor: torch.Tensor, size) -> torch.Tensor:
    """Linear resampling of a ``(N, C, *spatial)`` float tensor to ``size``.

    Bilinear/trilinear with align_corners=False (voxel centres map onto
    voxel centres of the new grid); 2D downsampling also anti-aliases so
    thin structures in large histology images do not alias away.
    """
    size = tuple(int(s) for s in size)
    if tuple(tensor.shape[2:]) == size:
        return tensor
    dims = tensor.dim() - 2
    mode = {2: "bilinear", 3: "trilinear"}[dims]
    shrinking = any(s < t for s, t in zip(size, tensor.shape[2:]))
    antialias = dims == 2 and shrinking
    return F.interpolate(tensor, size=size, mode=mode, align_corners=False, antialias=antialias)


def axis_turn(geometry: Geometry, pre: Preprocessing) -> AxisTurn:
    """How arrays on ``geometry``'s grid are turned into the model's axis order."""
    return canonical_turn(geometry.direction, pre.dims, pre.orientation)


def prepare_image(image: MedicalImage, pre: Preprocessing, turn: AxisTurn | None = None) -> torch.Tensor:
    """Check, normalize, turn to the model's axis order (``turn``; default: from
    the image's geometry) and resample an image to ``(C, *grid)`` float32."""
    check_image(image, pre)
    array = normalize_intensity(image.array, pre)
    turn = turn if turn is not None else axis_turn(image.geometry, pre)
    tensor = turn.apply(torch.from_numpy(np.ascontiguousarray(array))[None])
    return resize(tensor, pre.grid)[0].contiguous()


# --------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------


def labels_to_classes(labels: np.ndarray, pre: Preprocessing, source: str) -> np.ndarray:
    """Map stored label values to class indices (int64).

    Unknown values raise InputError listing them and the known values.
    """
    labels = np.asarray(labels)
    known = np.asarray(pre.label_values, dtype=np.int64)
    present = np.unique(labels)
    unknown = np.setdiff1d(present, known)
    if unknown.size:
        raise InputError(
            f"{display_name(source)}: label values "
            f"{{{short_list(sorted(int(v) for v in unknown), 10)}}} are "
            f"not known to the model (known: {short_list(sorted(int(v) for v in known), 10)})"
        )
    order = np.argsort(known)
    positions = np.searchsorted(known[order], labels.astype(np.int64))
    return order[positions].astype(np.int64)


def prepare_label(
    labels: np.ndarray, pre: Preprocessing, source: str, geometry: Geometry | None = None
) -> torch.Tensor:
    """Class map of a label on ``geometry``'s grid, turned as its image is and
    resampled to ``pre.grid``, as int64 ``(*grid)`` (``geometry`` may be None
    for a model that takes arrays in their stored order).

    Each class is resampled as a soft one-hot channel and the arg-max taken,
    which keeps thin structures better than nearest-neighbour and never
    invents classes.
    """
    classes = torch.from_numpy(labels_to_classes(labels, pre, source))
    if pre.orientation != "none":
        if geometry is None:
            raise ValueError(f"a model in the {pre.orientation} axis order needs the label's geometry")
        classes = axis_turn(geometry, pre).apply(classes)
    return resample_classes(classes, pre)


def resample_classes(classes: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """A class-index map (int64, *spatial, already in the model's axis order)
    on ``pre.grid``, as :func:`prepare_label` resamples it."""
    if tuple(classes.shape) == tuple(pre.grid):
        return classes.contiguous()
    one_hot = F.one_hot(classes, pre.num_classes).movedim(-1, 0)
    resampled = resize(one_hot[None].float(), pre.grid)
    return resampled[0].argmax(dim=0).to(torch.int64)


def smallest_integer_dtype(values) -> np.dtype:
    """Smallest integer dtype holding ``values`` (uint8 when possible): label
    maps and class-index maps are stored in it."""
    values = np.asarray(values)
    low, high = int(values.min()), int(values.max())
    return np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))


def classes_to_labels(classes: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Map class indices back to the label values stored in files."""
    classes = np.asarray(classes)
    if classes.size and (classes.min() < 0 or classes.max() >= pre.num_classes):
        raise ValueError(f"class indices must be in 0..{pre.num_classes - 1}")
    values = np.asarray(pre.label_values, dtype=np.int64)
    return values.astype(smallest_integer_dtype(values))[classes]
