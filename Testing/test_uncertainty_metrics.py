"""AUROC of an uncertainty map for finding wrong voxels (pooled and per case),
and the baseline scores beside the SD map (1 - max p, entropy, boundary distance)."""

import math

import numpy as np
import pytest

from ldseg.errors import InputError
from ldseg.evaluation.metrics import roc_auc
from ldseg.evaluation.uncertainty import (
    MERGE_EVERY,
    PooledAUROC,
    auroc_from_counts,
    boundary_distance,
    boundary_score,
    error_mask,
    max_probability_doubt,
    probability_entropy,
)


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


def test_pooled_auroc_is_exact_across_merges_of_its_tables():
    rng = np.random.default_rng(2)
    pooled = PooledAUROC()
    scores, wrong = [], []
    for _ in range(2 * MERGE_EVERY + 3):  # merges twice, then three more tables
        s = np.round(rng.random(50), 2)
        w = rng.random(50) < s
        pooled.add(s, w)
        scores.append(s)
        wrong.append(w)
    assert pooled.cases == 2 * MERGE_EVERY + 3
    assert pooled.value() == pytest.approx(roc_auc(np.concatenate(scores), np.concatenate(wrong)), abs=1e-12)


def test_max_probability_doubt_and_entropy_by_hand():
    p = np.array([[1.0, 0.5, 0.2], [0.0, 0.5, 0.8]])  # (C = 2, 3 voxels)
    assert max_probability_doubt(p).tolist() == pytest.approx([0.0, 0.5, 0.2])
    expected = [0.0, math.log(2), -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))]
    assert probability_entropy(p).tolist() == pytest.approx(expected)


def test_boundary_distance_along_a_row_and_on_both_sides():
    classes = np.array([[0, 0, 0, 1, 1]] * 3)
    # each voxel's distance to the nearest voxel of the other class, in voxels
    assert boundary_distance(classes).tolist() == [[3, 2, 1, 1, 2]] * 3
    assert boundary_score(classes).tolist() == [[-3, -2, -1, -1, -2]] * 3


def test_boundary_distance_uses_the_spacing_in_simpleitk_order():
    classes = np.zeros((5, 4), dtype=np.int64)
    classes[2, 2] = 1  # a single voxel of class 1
    # spacing (x, y) = (1, 3): numpy axis 0 (y) is 3 mm, axis 1 (x) 1 mm
    d = boundary_distance(classes, spacing=(1.0, 3.0))
    assert d[2, 2] == pytest.approx(1.0)  # its nearest other-class voxel: one step along x
    assert d[2, 0] == pytest.approx(2.0)  # two steps along x to the class-1 voxel
    assert d[0, 2] == pytest.approx(6.0)  # two steps along y
    assert d[0, 0] == pytest.approx(math.hypot(6.0, 2.0))
    with pytest.raises(InputError):
        boundary_distance(classes, spacing=(1.0, 1.0, 1.0))


def test_boundary_distance_of_a_map_without_boundary_is_infinite():
    d = boundary_distance(np.ones((3, 3), dtype=np.int64))
    assert np.isinf(d).all()
    # as a score: every voxel ties, so it ranks nothing (AUROC 1/2)
    assert roc_auc(boundary_score(np.ones((3, 3), dtype=np.int64)), np.eye(3, dtype=bool)) == 0.5
