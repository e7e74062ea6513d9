"""How well an uncertainty map finds segmentation errors.

The question asked of LDSeg's per-voxel SD map: does a high SD mark the
voxels the segmentation gets wrong? Its answer is the area under the ROC
curve (AUROC) of the SD as a score for "wrong voxel". Per case,
:func:`ldseg.evaluation.metrics.roc_auc` does it; :class:`PooledAUROC` pools the voxels
of many cases (millions for a 2D histology test set) exactly, keeping per
case only a table of distinct scores with their wrong / right counts.

Baselines for the SD map, scored the same way: 1 - the largest class
probability, the entropy of the class probabilities, and the distance to the
predicted label map's nearest boundary (:func:`boundary_score`), which needs
no model output beyond the label map itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

__all__ = [
    "error_mask",
    "count_table",
    "auroc_from_counts",
    "PooledAUROC",
    "max_probability_doubt",
    "probability_entropy",
    "boundary_distance",
    "boundary_score",
]

#: PooledAUROC merges its per-case tables once it holds this many, so that
#: scores shared across cases (saturated probabilities, distances) are kept once.
MERGE_EVERY = 16


def error_mask(pred, ref) -> np.ndarray:
    """True where the predicted class differs from the reference class."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    return pred != ref


def count_table(scores, positives):
    """(distinct scores ascending, positives per score, negatives per score)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.asarray(positives).astype(bool, copy=False).ravel()
    if scores.shape != positives.shape:
        raise InputError(f"{scores.size} scores for {positives.size} targets")
    if np.isnan(scores).any():
        raise InputError("scores contain NaN")
    values, inverse = np.unique(scores, return_inverse=True)
    total = np.bincount(inverse, minlength=values.size)
    pos = np.bincount(inverse, weights=positives, minlength=values.size).astype(np.int64)
    return values, pos, total - pos


def auroc_from_counts(values, positives, negatives) -> float:
    """AUROC from counts of positives and negatives per score value.

    ``values`` need not be sorted or distinct. The result is the
    Mann-Whitney probability that a random positive scores above a random
    negative, a tie counting one half; nan when either class is absent.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    positives = np.asarray(positives, dtype=np.float64).ravel()
    negatives = np.asarray(negatives, dtype=np.float64).ravel()
    if not values.shape == positives.shape == negatives.shape:
        raise InputError("values, positive counts and negative counts differ in length")
    # Merge repeated values so that ties are handled in one place.
    distinct, inverse = np.unique(values, return_inverse=True)
    pos = np.bincount(inverse, weights=positives, minlength=distinct.size)
    neg = np.bincount(inverse, weights=negatives, minlength=distinct.size)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives_below = np.cumsum(neg) - neg
    wins = float(np.sum(pos * (negatives_below + 0.5 * neg)))
    return wins / (float(n_pos) * float(n_neg))


class PooledAUROC:
    """AUROC over the voxels of many cases together, added one case at a time.

    Exact (ties included): equal to :func:`ldseg.evaluation.metrics.roc_auc` of all
    voxels concatenated, without holding every voxel's score.
    """

    def __init__(self):
        self._tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.positives = 0
        self.negatives = 0
        self.cases = 0

    def add(self, scores, positives) -> None:
        """Add one case: ``scores`` (any shape) and its boolean targets."""
        values, pos, neg = count_table(scores, positives)
        self._tables.append((values, pos, neg))
        self.positives += int(pos.sum())
        self.negatives += int(neg.sum())
        self.cases += 1
        if len(self._tables) >= MERGE_EVERY:
            self._tables = [self._merged()]

    def _merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All tables as one, each distinct score once (the counts summed)."""
        values, pos, neg = (np.concatenate(parts) for parts in zip(*self._tables))
        distinct, inverse = np.unique(values, return_inverse=True)
        return (
            distinct,
            np.bincount(inverse, weights=pos, minlength=distinct.size).astype(np.int64),
            np.bincount(inverse, weights=neg, minlength=distinct.size).astype(np.int64),
        )

    def value(self) -> float:
        """The pooled AUROC; nan if no positive or no negative was added."""
        if not self._tables:
            return float("nan")
        return auroc_from_counts(*self._merged())


def max_probability_doubt(probabilities) -> np.ndarray:
    """1 - the largest class probability per voxel; ``probabilities`` (C, *spatial)."""
    return 1.0 - np.asarray(probabilities, dtype=np.float64).max(axis=0)


def probability_entropy(probabilities) -> np.ndarray:
    """Entropy -sum_c p_c ln p_c per voxel (nats; 0 ln 0 = 0); ``probabilities`` (C, *spatial)."""
    p = np.asarray(probabilities, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=0)


def boundary_distance(classes, spacing=None) -> np.ndarray:
    """Per voxel, the distance from its centre to the nearest centre of a voxel
    of ANOTHER class in the label map ``classes``: 1 (one voxel) on both sides
    of a boundary, growing inside the regions; inf where the map holds one class.

    ``spacing`` is in SimpleITK order ((x, y[, z]), as the image readers give
    it) and reversed to the numpy axes; None: voxel units.
    """
    classes = np.asarray(classes)
    sampling = None if spacing is None else tuple(float(s) for s in reversed(tuple(spacing)))
    if sampling is not None and len(sampling) != classes.ndim:
        raise InputError(f"spacing {tuple(spacing)} does not fit a {classes.ndim}-D label map")
    distance = np.full(classes.shape, np.inf)
    present = np.unique(classes)
    if present.size < 2:
        return distance
    for c in present:
        inside = classes == c
        # the EDT of a class's mask is, inside it, the distance to the nearest voxel outside it
        distance[inside] = ndimage.distance_transform_edt(inside, sampling=sampling)[inside]
    return distance


def boundary_score(classes, spacing=None) -> np.ndarray:
    """The trivial uncertainty "near the predicted boundary": minus :func:`boundary_distance`
    (voxels nearest a boundary score highest; a map without boundary scores -inf everywhere)."""
    return -boundary_distance(classes, spacing)
