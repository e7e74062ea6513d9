"""How well an uncertainty map finds segmentation errors.

The question asked of LDSeg's per-voxel SD map: does a high SD mark the
voxels the segmentation gets wrong? Its answer is the area under the ROC
curve (AUROC) of the SD as a score for "wrong voxel". Per case,
:func:`ldseg.evaluation.metrics.roc_auc` does it; :class:`PooledAUROC` pools the voxels
of many cases (millions for a 2D histology test set) exactly, keeping per
case only a table of distinct scores with their wrong / right counts.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["error_mask", "count_table", "auroc_from_counts", "PooledAUROC"]


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

    def add(self, scores, positives) -> None:
        """Add one case: ``scores`` (any shape) and its boolean targets."""
        values, pos, neg = count_table(scores, positives)
        self._tables.append((values, pos, neg))
        self.positives += int(pos.sum())
        self.negatives += int(neg.sum())

    @property
    def cases(self) -> int:
        return len(self._tables)

    def value(self) -> float:
        """The pooled AUROC; nan if no positive or no negative was added."""
        if not self._tables:
            return float("nan")
        values, pos, neg = (np.concatenate(parts) for parts in zip(*self._tables))
        return auroc_from_counts(values, pos, neg)
