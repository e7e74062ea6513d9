"""AUROC of an uncertainty map for finding wrong voxels (pooled and per case)."""

import math

import numpy as np
import pytest

from ldseg.errors import InputError
from ldseg.evaluation.metrics import roc_auc
from ldseg.evaluation.uncertainty import PooledAUROC, auroc_from_counts, error_mask


def test_error_mask_marks_differing_classes():
    pred = np.array([[0, 1, 2], [2, 2, 0]])
    ref = np.array([[0, 2, 2], [2, 1, 1]])
    assert error_mask(pred, ref).tolist() == [[False, True, False], [False, True, True]]
    with pytest.raises(InputError):
        error_mask(pred, ref[:, :2])


def test_auroc_from_counts_hand_computed_with_ties():
    # Scores 0.1 (1 positive, 2 negatives), 0.5 (1 positive, 1 negative), 0.9 (2 positives).
    # Positive-negative pairs: 4 x 3 = 12. Wins: the 0.1 positive ties 2 (1.0);
    # the 0.5 positive beats 2 and ties 1 (2.5); each 0.9 positive beats 3 (6.0).
    # AUROC = (1.0 + 2.5 + 6.0) / 12.
    assert auroc_from_counts([0.1, 0.5, 0.9], [1, 1, 2], [2, 1, 0]) == pytest.approx(9.5 / 12)
    # Values in any order and repeated give the same answer.
    assert auroc_from_counts([0.9, 0.1, 0.5, 0.1], [2, 1, 1, 0], [0, 1, 1, 1]) == pytest.approx(9.5 / 12)


def test_auroc_extremes_and_undefined():
    assert auroc_from_counts([0, 1], [0, 3], [5, 0]) == 1.0  # every error scores higher
    assert auroc_from_counts([0, 1], [3, 0], [0, 5]) == 0.0  # every error scores lower
    assert auroc_from_counts([0.4], [3], [5]) == 0.5  # one tied score: chance
    assert math.isnan(auroc_from_counts([0, 1], [0, 0], [2, 3]))  # no errors at all


def test_pooled_auroc_equals_auroc_of_all_voxels_concatenated():
    rng = np.random.default_rng(1)
    pooled = PooledAUROC()
    all_scores, all_wrong = [], []
    for shape in [(4, 5, 6), (7, 9), (30,)]:
        # quantized scores: many ties within and across cases
        scores = np.round(rng.random(shape), 1).astype(np.float32)
        wrong = rng.random(shape) < 0.2 + 0.6 * scores
        pooled.add(scores, wrong)
        all_scores.append(scores.ravel())
        all_wrong.append(wrong.ravel())
    scores, wrong = np.concatenate(all_scores), np.concatenate(all_wrong)
    pos, neg = scores[wrong].astype(float), scores[~wrong].astype(float)
    diff = pos[:, None] - neg[None, :]
    brute = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert pooled.value() == pytest.approx(brute)
    assert pooled.value() == pytest.approx(roc_auc(scores, wrong))
    assert pooled.cases == 3
    assert pooled.positives == int(wrong.sum()) and pooled.negatives == int((~wrong).sum())


def test_pooled_auroc_empty_and_bad_input():
    pooled = PooledAUROC()
    assert math.isnan(pooled.value())
    pooled.add(np.zeros(4), np.zeros(4, dtype=bool))  # a perfect case: nothing wrong
    assert math.isnan(pooled.value())
    with pytest.raises(InputError):
        pooled.add(np.zeros(3), np.zeros(4, dtype=bool))
    with pytest.raises(InputError):
        pooled.add(np.array([0.1, np.nan]), np.array([True, False]))
