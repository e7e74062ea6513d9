"""Evaluation against several raters: the per-case row and the pooled summary.

Per case (columns of ``cases.csv``): GED^2, Hungarian-matched IoU, the
samples' and the raters' diversity, the expected calibration error of the
mean foreground probability against the share of raters, and the AUROC of
the uncertainty map (and of 1 - max probability) for the voxels where the
raters disagree. Pooled over all cases (``summary.json``): the calibration
bins with their ECE and reliability diagram, and both AUROCs over every
voxel of the test set. Definitions: docs/metrics.md.
"""

from __future__ import annotations

import numpy as np

from ..data.raters import rater_disagreement, rater_foreground_fraction
from .distribution import (
    CalibrationBins,
    diversity,
    generalized_energy_distance,
    hungarian_matched_iou,
    save_reliability_diagram,
)
from .metrics import roc_auc
from .uncertainty import PooledAUROC

__all__ = ["RaterEvaluation"]


class RaterEvaluation:
    """Adds cases one at a time; :meth:`summary` pools them."""

    def __init__(self, uncertainty_kind: str = "sd"):
        self.uncertainty_kind = uncertainty_kind
        self.calibration = CalibrationBins()
        self.uncertainty_auroc = PooledAUROC()
        self.max_probability_auroc = PooledAUROC()

    def add_case(self, samples, raters, probabilities, uncertainty) -> dict:
        """Measures of one case: ``samples`` (N, *spatial) and ``raters``
        (M, *spatial) class maps, mean ``probabilities`` (C, *spatial), the
        ``uncertainty`` map (*spatial). Returns the row's measure columns."""
        raters = np.asarray(raters)
        probabilities = np.asarray(probabilities)
        foreground = np.clip(1.0 - probabilities[0], 0.0, 1.0)
        share = rater_foreground_fraction(raters)
        disagree = rater_disagreement(raters)
        doubt = 1.0 - probabilities.max(axis=0)
        case_bins = CalibrationBins(self.calibration.bins)
        case_bins.add(foreground, share)
        self.calibration.add(foreground, share)
        self.uncertainty_auroc.add(uncertainty, disagree)
        self.max_probability_auroc.add(doubt, disagree)
        return {
            "ged": generalized_energy_distance(samples, raters),
            "hm_iou": hungarian_matched_iou(samples, raters),
            "sample_diversity": diversity(samples),
            "rater_diversity": diversity(raters),
            "ece": case_bins.expected_calibration_error(),
            "disagreement_auroc": roc_auc(uncertainty, disagree),
            "disagreement_auroc_maxp": roc_auc(doubt, disagree),
            "disagreement_voxels": int(disagree.sum()),
        }

    def summary(self) -> dict:
        """Pooled measures over all cases added."""
        return {
            "ece": self.calibration.expected_calibration_error(),
            "calibration_bins": self.calibration.table(),
            "uncertainty_map": self.uncertainty_kind,
            "disagreement_auroc": self.uncertainty_auroc.value(),
            "disagreement_auroc_maxp": self.max_probability_auroc.value(),
            "disagreement_voxels": self.uncertainty_auroc.positives,
            "agreement_voxels": self.uncertainty_auroc.negatives,
        }

    def save_reliability_diagram(self, path, title: str = "") -> None:
        save_reliability_diagram(self.calibration, path, title)
