"""Tests of ldseg.evaluation.metrics and ldseg.evaluation.cases (small, CPU, fast)."""

import csv
import glob
import json
import math
import os

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ldseg.errors import InputError, OutputError
from ldseg.evaluation.cases import evaluate_case, format_summary, summarize, write_json, write_table_csv
from ldseg.evaluation.metrics import dice_per_class, hausdorff95, hausdorff95_per_class, iou_per_class, roc_auc

HIPPO_LABELS = sorted(glob.glob("/work/shared/data/hippocampus/labels/*.nii.gz"))


# ------------------------------------------------------------ dice / iou


def test_dice_iou_2d_hand_computed():
    pred = np.array([[0, 1, 1], [2, 2, 0], [0, 0, 0]])
    ref = np.array([[0, 1, 0], [2, 2, 2], [0, 0, 0]])
    # class 1: |P|=2 |R|=1 both=1; class 2: |P|=2 |R|=3 both=2
    # class 0: |P|=5 |R|=5 both=4
    dice = dice_per_class(pred, ref, 3)
    iou = iou_per_class(pred, ref, 3)
    np.testing.assert_allclose(dice, [8 / 10, 2 / 3, 4 / 5])
    np.testing.assert_allclose(iou, [4 / 6, 1 / 2, 2 / 3])
    assert dice.dtype == np.float64 and iou.dtype == np.float64


def test_dice_iou_3d_multiclass_and_empty_conventions():
    pred = np.zeros((2, 3, 3), dtype=np.uint8)
    ref = np.zeros_like(pred)
    pred[0, :2, :2] = 1  # 4 voxels
    ref[0, :2, :1] = 1  # 2 voxels, both inside pred
    pred[1, 0, 0] = 2  # class 2 only in pred -> 0
    # class 3 in neither -> 1
    dice = dice_per_class(pred, ref, 4)
    iou = iou_per_class(pred, ref, 4)
    assert dice[1] == pytest.approx(2 * 2 / 6)
    assert iou[1] == pytest.approx(2 / 4)
    assert dice[2] == 0.0 and iou[2] == 0.0
    assert dice[3] == 1.0 and iou[3] == 1.0


def test_dice_rejects_bad_input():
    with pytest.raises(InputError):
        dice_per_class(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(InputError):
        dice_per_class(np.full((2, 2), 2), np.zeros((2, 2)), 2)


@pytest.mark.skipif(not HIPPO_LABELS, reason="hippocampus data not available")
def test_dice_iou_on_real_label_match_direct_formula():
    import SimpleITK as sitk

    ref = sitk.GetArrayFromImage(sitk.ReadImage(HIPPO_LABELS[0])).astype(np.int64)
    pred = np.roll(ref, 2, axis=1)
    dice = dice_per_class(pred, ref, 3)
    iou = iou_per_class(pred, ref, 3)
    for cls in range(3):
        a, b = pred == cls, ref == cls
        both = np.logical_and(a, b).sum()
        assert dice[cls] == pytest.approx(2 * both / (a.sum() + b.sum()))
        assert iou[cls] == pytest.approx(both / np.logical_or(a, b).sum())
    assert 0 < dice[1] < 1 and 0 < dice[2] < 1


# ------------------------------------------------------------ hausdorff95


def _plane_pair(axis, offset, shape=(12, 14, 16)):
    """Two parallel one-voxel planes, `offset` voxels apart along `axis`."""
    a = np.zeros(shape, dtype=bool)
    b = np.zeros(shape, dtype=bool)
    inner = [slice(3, s - 3) for s in shape]
    inner[axis] = 2
    a[tuple(inner)] = True
    inner[axis] = 2 + offset
    b[tuple(inner)] = True
    return a, b


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_hd95_exact_for_shifted_planes_on_anisotropic_grid(axis):
    spacing = (0.5, 1.0, 2.5)  # SimpleITK order (x, y, z)
    numpy_spacing = spacing[::-1]  # (z, y, x)
    a, b = _plane_pair(axis, 3)
    expected = 3 * numpy_spacing[axis]
    assert hausdorff95(a, b, spacing) == pytest.approx(expected)
    assert hausdorff95(b, a, spacing) == pytest.approx(expected)


def test_hd95_shifted_cube_uses_spacing():
    # A cube moved 2 voxels along x: the farthest boundary voxels are 2 voxels
    # from the other cube's boundary; HD95 lies between 0 and that.
    a = np.zeros((20, 20, 20), dtype=bool)
    a[5:15, 5:15, 5:15] = True
    b = np.roll(a, 2, axis=2)
    spacing = (0.5, 1.0, 2.5)
    d = hausdorff95(a, b, spacing)
    assert 0 < d <= 2 * 0.5 + 1e-9
    assert hausdorff95(a, b, tuple(2 * s for s in spacing)) == pytest.approx(2 * d)


def test_hd95_concentric_spheres_close_to_analytic():
    spacing = (0.5, 1.0, 2.5)  # x, y, z in mm
    zyx = spacing[::-1]
    shape = (18, 44, 88)
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, zyx)], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    inner, outer = radius <= 10.0, radius <= 15.0
    d = hausdorff95(inner, outer, spacing)
    # Voxelised surfaces deviate from the spheres by about half a voxel.
    assert d == pytest.approx(5.0, abs=0.5 * max(zyx))
    assert hausdorff95(outer, inner, spacing) == d


def _brute_hd95(a, b, zyx):
    """Reference HD95 from all surface point pairs."""
    from scipy import ndimage

    st = ndimage.generate_binary_structure(a.ndim, 1)
    pts = [np.argwhere(m & ~ndimage.binary_erosion(m, st)) * np.asarray(zyx) for m in (a, b)]
    d = cdist(pts[0], pts[1])
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


def test_hd95_matches_brute_force_on_random_blobs():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for _ in range(3):
        noise = rng.random((2, 14, 16, 18))
        a, b = (ndimage.gaussian_filter(n, 2) > 0.52 for n in noise)
        spacing = (0.7, 1.3, 2.0)
        assert hausdorff95(a, b, spacing) == pytest.approx(_brute_hd95(a, b, spacing[::-1]))


def test_hd95_edge_cases():
    a = np.zeros((5, 6), dtype=bool)
    a[1:4, 2:5] = True
    empty = np.zeros_like(a)
    assert hausdorff95(a, a, (1.0, 1.0)) == 0.0
    assert hausdorff95(empty, empty, (1.0, 1.0)) == 0.0
    assert hausdorff95(a, empty, (1.0, 1.0)) == math.inf
    assert hausdorff95(empty, a, (1.0, 1.0)) == math.inf
    with pytest.raises(InputError):
        hausdorff95(a, a, (1.0, 1.0, 1.0))


def test_hd95_per_class():
    pred = np.zeros((10, 10), dtype=np.int64)
    ref = np.zeros_like(pred)
    pred[2, 2:8] = 1
    ref[5, 2:8] = 1
    ref[8, 8] = 2
    hd = hausdorff95_per_class(pred, ref, 4, (2.0, 0.5))  # x=2, y=0.5
    assert math.isnan(hd[0])
    assert hd[1] == pytest.approx(3 * 0.5)
    assert hd[2] == math.inf
    assert hd[3] == 0.0


# ------------------------------------------------------------ roc_auc


def test_roc_auc_matches_pairwise_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=300).astype(float)  # many ties
    positives = rng.random(300) < 0.3 + 0.08 * scores
    pos, neg = scores[positives], scores[~positives]
    diff = pos[:, None] - neg[None, :]
    brute = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert roc_auc(scores, positives) == pytest.approx(brute)
    assert roc_auc([1, 2, 3], [0, 1, 1]) == 1.0
    assert roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert math.isnan(roc_auc([1, 2], [1, 1]))


# ------------------------------------------------------------ evaluation


def _case_pair():
    ref = np.zeros((4, 12, 12), dtype=np.int64)
    ref[1:3, 2:6, 2:6] = 1
    ref[1:3, 7:10, 7:10] = 2
    pred = np.roll(ref, 1, axis=2)
    return pred, ref


def test_evaluate_case_columns():
    pred, ref = _case_pair()
    row = evaluate_case("c1", pred, ref, (1.0, 1.0, 2.0), ["background", "ant", "post"])
    assert row["case"] == "c1"
    expected = {
        "case",
        "dice_ant",
        "iou_ant",
        "hd95_ant",
        "dice_post",
        "iou_post",
        "hd95_post",
        "dice_mean",
        "iou_mean",
        "hd95_mean",
    }
    assert set(row) == expected
    dice = dice_per_class(pred, ref, 3)
    assert row["dice_ant"] == pytest.approx(dice[1])
    assert row["dice_mean"] == pytest.approx(dice[1:].mean())
    assert row["hd95_mean"] == pytest.approx((row["hd95_ant"] + row["hd95_post"]) / 2)


def test_summarize_matches_numpy_and_handles_inf():
    rng = np.random.default_rng(1)
    dice = rng.random(25)
    hd = rng.random(25) * 10
    hd[[3, 7]] = np.inf
    rows = [{"case": f"c{i}", "dice_mean": dice[i], "hd95_mean": hd[i]} for i in range(25)]
    s = summarize(rows)
    assert list(s) == ["dice_mean", "hd95_mean"]
    d = s["dice_mean"]
    assert d["mean"] == pytest.approx(dice.mean())
    assert d["sd"] == pytest.approx(dice.std(ddof=1))
    assert d["median"] == pytest.approx(np.median(dice))
    assert d["ci95_low"] < d["mean"] < d["ci95_high"]
    assert d["n"] == 25 and d["n_inf"] == 0
    h = s["hd95_mean"]
    finite = hd[np.isfinite(hd)]
    assert h["n_inf"] == 2 and h["n"] == 23
    assert h["mean"] == pytest.approx(finite.mean())
    assert h["ci95_low"] < h["mean"] < h["ci95_high"]
    assert summarize(rows) == s  # seeded bootstrap
    text = format_summary(s)
    assert "dice_mean" in text and "hd95_mean" in text


def test_summarize_single_and_empty_columns():
    s = summarize([{"case": "a", "x": 0.5, "y": math.inf}])
    assert s["x"]["mean"] == 0.5 and math.isnan(s["x"]["sd"])
    assert s["x"]["ci95_low"] == s["x"]["ci95_high"] == 0.5
    assert s["y"]["n"] == 0 and s["y"]["n_inf"] == 1 and math.isnan(s["y"]["mean"])


def test_write_csv_and_json(tmp_path):
    rows = [{"case": "a", "dice_mean": 0.5, "hd95_mean": math.inf}, {"case": "b", "dice_mean": 1 / 3, "hd95_mean": 2.0}]
    csv_path = tmp_path / "table.csv"
    write_table_csv(rows, csv_path)
    with open(csv_path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert read[0]["case"] == "a" and float(read[0]["hd95_mean"]) == math.inf
    assert float(read[1]["dice_mean"]) == 1 / 3

    json_path = tmp_path / "summary.json"
    write_json({"summary": summarize(rows), "arr": np.arange(2)}, json_path)
    loaded = json.loads(json_path.read_text())
    assert loaded["summary"]["hd95_mean"]["n_inf"] == 1
    assert loaded["arr"] == [0, 1]
    assert sorted(os.listdir(tmp_path)) == ["summary.json", "table.csv"]


def test_writers_report_missing_folder(tmp_path):
    with pytest.raises(OutputError):
        write_table_csv([{"case": "a"}], tmp_path / "missing" / "t.csv")
    with pytest.raises(OutputError):
        write_json({}, tmp_path / "missing" / "s.json")
    assert os.listdir(tmp_path) == []
