"""Several raters' class maps of one image: their consensus and agreement.

A stack holds R class-index maps of one image, shape (R, *spatial). Used by
the training data (validation target) and by the evaluation against raters.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rater_consensus", "rater_foreground_fraction", "rater_disagreement"]

#: A voxel is foreground in the consensus when at least this share of the
#: raters marks it (LIDC's usual "50 % agreement" reading).
CONSENSUS_LEVEL = 0.5


def rater_consensus(stack, num_classes: int) -> np.ndarray:
    """One class map from R raters' maps (R, *spatial) -> (*spatial) int64.

    Foreground where at least half of the raters mark any foreground class;
    there, the foreground class most of them chose (a tie: the lower class
    index). With one rater it is that rater's map.
    """
    stack = np.asarray(stack)
    votes = np.stack([(stack == c).sum(axis=0) for c in range(1, int(num_classes))]) if num_classes > 1 else None
    if votes is None:
        return np.zeros(stack.shape[1:], np.int64)
    foreground = votes.sum(axis=0) >= CONSENSUS_LEVEL * stack.shape[0]
    return np.where(foreground, votes.argmax(axis=0) + 1, 0).astype(np.int64)


def rater_foreground_fraction(stack) -> np.ndarray:
    """Share of the raters marking each voxel as any foreground class (float64)."""
    stack = np.asarray(stack)
    return (stack != 0).mean(axis=0, dtype=np.float64)


def rater_disagreement(stack) -> np.ndarray:
    """True where the raters do not all give the voxel the same class."""
    stack = np.asarray(stack)
    return np.any(stack != stack[:1], axis=0)
