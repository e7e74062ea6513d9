"""Segmentation and uncertainty metrics on integer class-index maps.

Arrays are in numpy order ((z, y, x) or (y, x)); spacings are given in
SimpleITK order ((x, y[, z]) in mm) because that is what the image readers
return, and are reversed here to match the numpy axes.
"""

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .uncertainty import auroc_from_counts, count_table

__all__ = [
    "dice_per_class",
    "iou_per_class",
    "hausdorff95",
    "hausdorff95_per_class",
    "roc_auc",
]


def _check_label_pair(pred, ref, num_classes):
    """Return both maps as integer arrays after checking shape and range."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise InputError(f"number of classes must be at least 1, got {num_classes}")
    for name, arr in (("prediction", pred), ("reference", ref)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise InputError(f"{name} holds class values outside 0..{num_classes - 1}")
    return pred.astype(np.int64, copy=False), ref.astype(np.int64, copy=False)


def _overlap_counts(pred, ref, num_classes):
    """Per class: voxels in both, in the prediction, in the reference."""
    pred, ref = _check_label_pair(pred, ref, num_classes)
    # One bincount over the joint index is the whole confusion matrix.
    joint = np.bincount((pred * num_classes + ref).ravel(), minlength=num_classes * num_classes)
    confusion = joint.reshape(num_classes, num_classes).astype(np.float64)
    both = np.diag(confusion)
    return both, confusion.sum(axis=1), confusion.sum(axis=0)


def dice_per_class(pred, ref, num_classes):
    """Dice of every class; 1.0 where a class is absent from both maps."""
    both, in_pred, in_ref = _overlap_counts(pred, ref, num_classes)
    denom = in_pred + in_ref
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(denom > 0, 2.0 * both / denom, 1.0)
    return dice.astype(np.float64)


def iou_per_class(pred, ref, num_classes):
    """Intersection over union of every class; 1.0 where absent from both."""
    both, in_pred, in_ref = _overlap_counts(pred, ref, num_classes)
    union = in_pred + in_ref - both
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, both / union, 1.0)
    return iou.astype(np.float64)


def _numpy_spacing(spacing, ndim):
    """SimpleITK-order spacing -> per numpy axis; None means 1 mm."""
    if spacing is None:
        return (1.0,) * ndim
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim:
        raise InputError(f"spacing {spacing} has {len(spacing)} values for a {ndim}D mask")
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing {spacing} must be positive")
    return spacing[::-1]


def _surface(mask):
    """Boundary voxels: in the mask with a face neighbour outside it."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    # border_value=0: voxels on the array edge count as boundary.
    inner = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~inner


def _union_box(a, b):
    """Slices of the bounding box of a | b (both known to be non-empty)."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        others = tuple(i for i in range(union.ndim) if i != axis)
        hits = np.flatnonzero(union.any(axis=others))
        box.append(slice(hits[0], hits[-1] + 1))
    return tuple(box)


def _directed_distances(from_surface, to_surface, sampling):
    """Distance (mm) from each voxel of one surface to the nearest of another."""
    to_nearest = ndimage.distance_transform_edt(~to_surface, sampling=sampling)
    return to_nearest[from_surface]


def hausdorff95(pred_mask, ref_mask, spacing):
    """Symmetric 95th percentile Hausdorff distance in mm.

    The larger of the two directed 95th percentile surface distances (the
    convention of MONAI), surfaces being the boundary voxels of each mask.
    Both empty -> 0.0; exactly one empty -> inf.
    """
    pred_mask = np.asarray(pred_mask).astype(bool, copy=False)
    ref_mask = np.asarray(ref_mask).astype(bool, copy=False)
    if pred_mask.shape != ref_mask.shape:
        raise InputError(f"prediction mask shape {pred_mask.shape} differs from reference mask shape {ref_mask.shape}")
    sampling = _numpy_spacing(spacing, pred_mask.ndim)
    has_pred, has_ref = pred_mask.any(), ref_mask.any()
    if not has_pred and not has_ref:
        return 0.0
    if not has_pred or not has_ref:
        return float("inf")
    # Cropping to the union's box is exact: every surface voxel lies inside
    # it, and everything just outside it is background for both masks.
    box = _union_box(pred_mask, ref_mask)
    pred_surface = _surface(pred_mask[box])
    ref_surface = _surface(ref_mask[box])
    forward = _directed_distances(pred_surface, ref_surface, sampling)
    backward = _directed_distances(ref_surface, pred_surface, sampling)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def hausdorff95_per_class(pred, ref, num_classes, spacing):
    """HD95 of classes 1..C-1; index 0 (background) is nan."""
    pred, ref = _check_label_pair(pred, ref, num_classes)
    result = np.full(int(num_classes), np.nan, dtype=np.float64)
    for cls in range(1, int(num_classes)):
        result[cls] = hausdorff95(pred == cls, ref == cls, spacing)
    return result


def roc_auc(scores, positives):
    """Area under the ROC curve (Mann-Whitney, from counts per distinct score).

    Equals the probability that a random positive scores above a random
    negative, ties counting one half. nan when either class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        return float("nan")
    return auroc_from_counts(*count_table(scores, positives))
