"""Measures of a segmentation *distribution* against several raters.

A model that samples (LDSeg) gives N segmentations S_1..S_N of one image;
the raters give M segmentations Y_1..Y_M. These functions compare the two
sets (definitions, with worked examples, in docs/metrics.md):

- :func:`segmentation_distance` d(A, B) = 1 - IoU (empty vs empty: 0);
- :func:`generalized_energy_distance` GED^2 = 2 E d(S, Y) - E d(S, S') - E d(Y, Y');
- :func:`hungarian_matched_iou`: mean IoU of the best one-to-one matching;
- :func:`diversity`: mean d over distinct pairs of one set;
- :class:`CalibrationBins`: the mean foreground probability against the
  share of raters marking the voxel, its expected calibration error and
  reliability diagram (:func:`save_reliability_diagram`).

Maps are integer class-index arrays of one shape; class 0 is background.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import InputError
from ..io.atomic import atomic_path

__all__ = [
    "segmentation_distance",
    "distance_matrix",
    "generalized_energy_distance",
    "hungarian_matched_iou",
    "diversity",
    "CalibrationBins",
    "save_reliability_diagram",
]

#: Equal-width probability bins of the calibration error and diagram.
CALIBRATION_BINS = 10


def _as_set(maps, what: str) -> np.ndarray:
    """A non-empty set of maps as (count, voxels) int64."""
    arr = np.asarray(maps)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise InputError(f"{what}: need a non-empty set of maps (count, *spatial), got shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        raise InputError(f"{what}: maps must hold integer class indices, not {arr.dtype}")
    return arr.reshape(arr.shape[0], -1).astype(np.int64, copy=False)


def _present(maps: np.ndarray) -> np.ndarray:
    """The distinct values of ``maps``, sorted. Class indices are small and
    non-negative: counting them is many times faster than np.unique's hashing,
    which dominated the multi-rater evaluation's time."""
    if maps.size and maps.min() >= 0:
        return np.flatnonzero(np.bincount(maps.ravel()))
    return np.unique(maps)


def distance_matrix(first, second) -> np.ndarray:
    """d(first[i], second[j]) for all pairs, shape (len(first), len(second)).

    d = 1 - IoU, where with several foreground classes the IoU is the mean
    over the classes present in either map; two maps without foreground
    have d = 0 (they agree: nothing there).
    """
    a = _as_set(first, "first set")
    b = _as_set(second, "second set")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"maps of {a.shape[1]} and {b.shape[1]} voxels cannot be compared")
    classes = np.union1d(_present(a), _present(b))
    iou_sum = np.zeros((a.shape[0], b.shape[0]))
    present = np.zeros((a.shape[0], b.shape[0]))
    for c in classes[classes != 0]:
        in_a = (a == c).astype(np.float64)
        in_b = (b == c).astype(np.float64)
        both = in_a @ in_b.T  # intersections of every pair at once
        union = in_a.sum(axis=1)[:, None] + in_b.sum(axis=1)[None, :] - both
        has = union > 0
        iou_sum += np.where(has, both / np.maximum(union, 1), 0.0)
        present += has
    return np.where(present > 0, 1.0 - iou_sum / np.maximum(present, 1), 0.0)


def segmentation_distance(a, b) -> float:
    """d(a, b) = 1 - IoU of two class maps (see :func:`distance_matrix`)."""
    return float(distance_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def generalized_energy_distance(samples, raters) -> float:
    """GED^2 = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')], d = 1 - IoU.

    Every expectation is the mean over ALL ordered pairs, i = j included
    (where d = 0), as the Probabilistic U-Net's evaluation computes it:
    the energy distance of the two empirical distributions, never negative,
    and the value published results use. (Leaving out i = j instead would
    scale the last two terms by N/(N-1) and M/(M-1).) N copies of one map
    give the same value as that one map.
    """
    cross = distance_matrix(samples, raters).mean()
    within_samples = distance_matrix(samples, samples).mean()
    within_raters = distance_matrix(raters, raters).mean()
    return float(2.0 * cross - within_samples - within_raters)


def hungarian_matched_iou(samples, raters) -> float:
    """Mean IoU (1 - d) of the best one-to-one matching of samples to raters.

    For N samples and M raters both sets are replicated to lcm(N, M) members
    (e.g. 16 samples against 4 raters: each rater 4 times), as in the
    Hierarchical Probabilistic U-Net's evaluation, then matched with the
    Hungarian algorithm maximizing the total IoU.
    """
    iou = 1.0 - distance_matrix(samples, raters)
    n, m = iou.shape
    size = n * m // math.gcd(n, m)
    rows = np.arange(size) % n
    cols = np.arange(size) % m
    cost = iou[np.ix_(rows, cols)]
    matched_rows, matched_cols = linear_sum_assignment(cost, maximize=True)
    return float(cost[matched_rows, matched_cols].mean())


def diversity(maps) -> float:
    """Mean d over the distinct pairs (i < j) of one set; nan for one map.

    A set's own spread: the samples' beside the raters'. (GED's E[d(S, S')]
    includes the i = j pairs and so equals this times (N - 1) / N.)
    """
    d = distance_matrix(maps, maps)
    n = d.shape[0]
    if n < 2:
        return float("nan")
    return float(d[np.triu_indices(n, k=1)].mean())


class CalibrationBins:
    """Predicted foreground probability against the raters' share, pooled.

    Voxels go into ``bins`` equal-width bins of the predicted probability p
    ([0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]); per bin it keeps the voxel count,
    the sum of p and the sum of the target (the share of raters marking the
    voxel, or 0/1 for one reference). Cases are added one at a time, so a
    whole test set pools exactly without keeping its voxels.
    """

    def __init__(self, bins: int = CALIBRATION_BINS):
        if bins < 1:
            raise ValueError("bins must be at least 1")
        self.bins = int(bins)
        self.count = np.zeros(self.bins, np.int64)
        self.sum_probability = np.zeros(self.bins)
        self.sum_target = np.zeros(self.bins)

    def add(self, probability, target) -> None:
        """Add the voxels of one case (any shape, same for both)."""
        p = np.asarray(probability, dtype=np.float64).ravel()
        t = np.asarray(target, dtype=np.float64).ravel()
        if p.shape != t.shape:
            raise InputError(f"{p.size} probabilities for {t.size} targets")
        if p.size and not (np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1):
            raise InputError("probabilities must lie in [0, 1]")
        index = np.minimum((p * self.bins).astype(np.int64), self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.sum_probability += np.bincount(index, weights=p, minlength=self.bins)
        self.sum_target += np.bincount(index, weights=t, minlength=self.bins)

    def expected_calibration_error(self) -> float:
        """ECE = sum over bins of (voxels in bin / all voxels) * |mean target - mean p|."""
        total = self.count.sum()
        if total == 0:
            return float("nan")
        used = self.count > 0
        gap = np.abs(self.sum_target[used] - self.sum_probability[used])  # = count * |mean t - mean p|
        return float(gap.sum() / total)

    def table(self) -> list[dict]:
        """Per bin: its edges, voxel count, mean probability and mean target (None if empty)."""
        rows = []
        for b in range(self.bins):
            n = int(self.count[b])
            rows.append(
                {
                    "low": b / self.bins,
                    "high": (b + 1) / self.bins,
                    "voxels": n,
                    "mean_probability": float(self.sum_probability[b] / n) if n else None,
                    "mean_target": float(self.sum_target[b] / n) if n else None,
                }
            )
        return rows


def save_reliability_diagram(bins: CalibrationBins, path, title: str = "") -> None:
    """PNG: mean rater share against mean predicted probability per bin (the
    diagonal is perfect calibration), with the voxel count per bin below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in bins.table() if r["voxels"]]
    fig = Figure(figsize=(5, 6), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    width = 1.0 / bins.bins
    centers = [(r["low"] + r["high"]) / 2 for r in rows]
    top.bar(centers, [r["mean_target"] for r in rows], width=width * 0.9, color="tab:blue", label="raters' share")
    top.plot(
        [r["mean_probability"] for r in rows],
        [r["mean_target"] for r in rows],
        "o",
        color="tab:orange",
        label="mean probability per bin",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("share of raters marking the voxel")
    top.set_title(title or f"reliability (ECE {bins.expected_calibration_error():.4f})")
    top.legend(fontsize="small", loc="upper left")
    bottom.bar(centers, [r["voxels"] for r in rows], width=width * 0.9, color="tab:gray")
    bottom.set_yscale("log")
    bottom.set_xlabel("mean predicted foreground probability")
    bottom.set_ylabel("voxels")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
