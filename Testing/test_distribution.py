"""Measures of a segmentation distribution on hand-made maps with known answers.

Three 2 x 2 masks are used throughout:
    A = [[1, 1],     B = [[1, 0],     E = [[0, 0],
         [0, 0]]          [0, 0]]          [0, 0]]
IoU(A, B) = |{(0,0)}| / |{(0,0), (0,1)}| = 1/2, so d(A, B) = 1/2;
d(A, E) = d(B, E) = 1 (one map empty), d(E, E) = 0 (both empty).
"""

import numpy as np
import pytest

from ldseg.data.raters import rater_consensus, rater_disagreement, rater_foreground_fraction
from ldseg.errors import InputError
from ldseg.evaluation.distribution import (
    CalibrationBins,
    distance_matrix,
    diversity,
    generalized_energy_distance,
    hungarian_matched_iou,
    save_reliability_diagram,
    segmentation_distance,
)
from ldseg.evaluation.multirater import RaterEvaluation

A = np.array([[1, 1], [0, 0]])
B = np.array([[1, 0], [0, 0]])
E = np.zeros((2, 2), int)


def test_distance_is_one_minus_iou_with_empty_pairs_zero():
    assert segmentation_distance(A, B) == pytest.approx(0.5)
    assert segmentation_distance(A, A) == 0.0
    assert segmentation_distance(A, E) == 1.0
    assert segmentation_distance(E, E) == 0.0
    # symmetric, and the matrix holds every pair
    d = distance_matrix([A, B, E], [A, E])
    assert d == pytest.approx(np.array([[0, 1], [0.5, 1], [1, 0]]))


def test_distance_with_several_classes_averages_the_classes_present():
    # class 1 agrees (IoU 1); class 2 is only in the first map (IoU 0);
    # class 3 is in neither and does not count: d = 1 - (1 + 0) / 2 = 1/2
    first = np.array([1, 2, 0, 0])
    second = np.array([1, 0, 0, 0])
    assert segmentation_distance(first, second) == pytest.approx(0.5)


def test_ged_of_hand_made_sets():
    # S = {A, B}, Y = {A}: E d(S, Y) = (0 + 1/2) / 2 = 1/4; E d(S, S') over
    # all four ordered pairs = (0 + 1/2 + 1/2 + 0) / 4 = 1/4; E d(Y, Y') = 0
    # GED^2 = 2 * 1/4 - 1/4 - 0 = 1/4
    assert generalized_energy_distance([A, B], [A]) == pytest.approx(0.25)
    # the same distribution on both sides: 0
    assert generalized_energy_distance([A, B], [B, A]) == pytest.approx(0.0)
    # LIDC-like: two raters saw nothing, two marked A; one empty sample:
    # E d(S, Y) = (0 + 0 + 1 + 1) / 4 = 1/2; E d(S, S') = 0;
    # E d(Y, Y') = 8 of 16 ordered pairs are E-A (d = 1) = 1/2
    # GED^2 = 2 * 1/2 - 0 - 1/2 = 1/2
    assert generalized_energy_distance([E], [E, E, A, A]) == pytest.approx(0.5)


def test_ged_of_copies_equals_ged_of_the_one_map():
    # a deterministic model's N copies: E d(S, S') = 0 and E d(S, Y) unchanged
    # S = 5 x {A}, Y = {A, B}: E d(S, Y) = 1/4, E d(Y, Y') = 1/4 -> 2/4 - 1/4 = 1/4
    copies = np.repeat(A[None], 5, axis=0)
    assert generalized_energy_distance(copies, [A, B]) == pytest.approx(0.25)
    assert generalized_energy_distance([A], [A, B]) == pytest.approx(0.25)


def test_hungarian_matched_iou_replicates_to_the_least_common_multiple():
    # equal sets match one to one: IoU 1
    assert hungarian_matched_iou([A, B], [B, A]) == pytest.approx(1.0)
    # 1 sample, 2 raters -> lcm 2: A is matched to A (1) and to B (1/2): 3/4
    assert hungarian_matched_iou([A], [A, B]) == pytest.approx(0.75)
    # 4 samples {A, A, A, B}, 2 raters {A, B} -> raters twice: {A, B, A, B};
    # best: A-A, A-A, A-B (1/2), B-B: (1 + 1 + 1/2 + 1) / 4 = 7/8
    assert hungarian_matched_iou([A, A, A, B], [A, B]) == pytest.approx(0.875)
    # 3 samples {A, A, E}, 2 raters {A, E} -> lcm 6: samples twice {A,A,E,A,A,E}, raters
    # three times {A,E,A,E,A,E}: 3 A-raters take A samples (IoU 1), 3 E-raters take the
    # 2 E samples (1, empty vs empty) and one A sample (0): 5/6
    assert hungarian_matched_iou([A, A, E], [A, E]) == pytest.approx(5 / 6)


def test_diversity_is_the_mean_over_distinct_pairs():
    # pairs (A,B) 1/2, (A,E) 1, (B,E) 1 -> 5/6
    assert diversity([A, B, E]) == pytest.approx(5 / 6)
    assert diversity([A, A, A]) == 0.0
    assert np.isnan(diversity([A]))


def test_bad_sets_are_refused_in_one_line():
    for args in (([], [A]), ([A], [np.zeros((3, 3), int)]), ([A.astype(float)], [A])):
        with pytest.raises(InputError) as err:
            generalized_energy_distance(*args)
        assert "\n" not in str(err.value)


def test_expected_calibration_error_by_hand():
    # bin [0, 0.1): p 0.05, 0.05 with rater shares 0, 1/2 -> |1/4 - 0.05| = 0.2
    # bin [0.9, 1]: p 0.95, 1.0 with shares 1, 1 -> |1 - 0.975| = 0.025
    # ECE = 2/4 * 0.2 + 2/4 * 0.025 = 0.1125 (p = 1.0 falls in the last bin)
    bins = CalibrationBins()
    bins.add([0.05, 0.05, 0.95, 1.0], [0, 0.5, 1, 1])
    assert bins.expected_calibration_error() == pytest.approx(0.1125)
    table = bins.table()
    assert [r["voxels"] for r in table] == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table[0]["mean_target"] == pytest.approx(0.25) and table[1]["mean_probability"] is None
    # pooling two halves is the same as adding everything at once
    pooled = CalibrationBins()
    pooled.add([0.05, 0.95], [0, 1])
    pooled.add([[0.05, 1.0]], [[0.5, 1]])
    assert pooled.expected_calibration_error() == pytest.approx(0.1125)
    # perfectly calibrated: the predicted probability is the raters' share
    exact = CalibrationBins()
    exact.add([0.25, 0.25, 0.75], [0.25, 0.25, 0.75])
    assert exact.expected_calibration_error() == pytest.approx(0.0)
    with pytest.raises(InputError):
        exact.add([1.5], [1])


def test_reliability_diagram_is_a_png_written_atomically(tmp_path):
    bins = CalibrationBins()
    bins.add(np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 2)
    path = tmp_path / "reliability.png"
    save_reliability_diagram(bins, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]


def test_rater_consensus_fraction_and_disagreement():
    # four raters of three voxels: voxel 0 marked by 2 of 4 (half: foreground),
    # voxel 1 by 1 of 4 (background), voxel 2 by all
    stack = np.array([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1]])
    assert rater_consensus(stack, 2).tolist() == [1, 0, 1]
    assert rater_foreground_fraction(stack).tolist() == [0.5, 0.25, 1.0]
    assert rater_disagreement(stack).tolist() == [True, True, False]
    # several classes: foreground by 3 of 4; classes 1 and 2 tie -> the lower (1)
    multi = np.array([[1], [2], [0], [1]]), np.array([[2], [2], [0], [1]])
    assert rater_consensus(multi[0], 3).tolist() == [1]
    assert rater_consensus(multi[1], 3).tolist() == [2]


def test_rater_evaluation_row_and_pooled_summary():
    raters = np.array([A, A, B, E])  # voxel (0,0): 3 of 4; (0,1): 2 of 4; bottom row: 0
    samples = np.array([A, B])
    # probabilities equal to the raters' share: perfectly calibrated
    share = np.array([[0.75, 0.5], [0.0, 0.0]])
    probabilities = np.stack([1 - share, share])
    # uncertainty high exactly where raters disagree (top row): AUROC 1
    uncertainty = np.array([[0.4, 0.3], [0.0, 0.0]])
    evaluation = RaterEvaluation()
    row = evaluation.add_case(samples, raters, probabilities, uncertainty)
    assert row["ece"] == pytest.approx(0.0)
    assert row["disagreement_auroc"] == pytest.approx(1.0)
    assert row["disagreement_voxels"] == 2
    assert row["ged"] == pytest.approx(generalized_energy_distance(samples, raters))
    # d(A,A)=0, d(A,B)=1/2, d(A,E)=d(B,E)=1: rater pairs (A,A) 0, (A,B) x2 1/2, (A,E) x2 1, (B,E) 1 -> 4/6
    assert row["rater_diversity"] == pytest.approx(4 / 6)
    assert row["sample_diversity"] == pytest.approx(0.5)
    # a second case where the uncertainty points the wrong way (positives 0.1, 0.2;
    # negatives 0.5, 0.5): pooled, each of the 4 positives beats 2 of the 4 negatives: 1/2
    evaluation.add_case(samples, raters, probabilities, 0.5 - uncertainty)
    summary = evaluation.summary()
    assert summary["disagreement_auroc"] == pytest.approx(0.5)
    assert summary["disagreement_voxels"] == 4 and summary["agreement_voxels"] == 4
    assert summary["ece"] == pytest.approx(0.0)
