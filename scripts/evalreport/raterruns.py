"""The multi-rater evaluation (LIDC): both models against the four raters.

The measures are those of ``ldseg evaluate`` on a data set with several
raters (:class:`ldseg.evaluation.multirater.RaterEvaluation` on the output of
:func:`ldseg.evaluation.sampled.sample_segmentations`): GED, Hungarian-matched
IoU, calibration of the mean foreground probability against the share of
raters, AUROC of the uncertainty map for the voxels where the raters
disagree, sample and rater diversity. A Res-UNet has one output: its
"samples" are N copies of it, its softmax is its probability, its
uncertainty map 1 - max probability.

Per case also: Dice against the >= 50 % consensus and the mean over raters of
the Dice against each rater, the error detectors against each model's own
errors (vs the consensus), and the autoencoder ceiling of the consensus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ldseg.config import SegmentOptions
from ldseg.data.dataset import CasePair
from ldseg.data.preprocess import labels_to_classes
from ldseg.data.raters import rater_consensus
from ldseg.evaluation.cases import evaluate_case, summarize
from ldseg.evaluation.multirater import RaterEvaluation
from ldseg.evaluation.sampled import sample_segmentations
from ldseg.evaluation.uncertainty import error_mask
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import read_image, read_label

from .runs import add_detectors, ceiling_row, detector_scores, mean_foreground_dice
from .summaries import detectors_summary


@dataclass
class RaterRun:
    cases: list[str]
    samples: int
    rows: dict[str, list[dict]] = field(default_factory=dict)  # model -> per-case rows
    raters: dict[str, RaterEvaluation] = field(default_factory=dict)
    detectors: dict = field(default_factory=dict)
    ceiling_rows: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds


def read_raters(pair: CasePair, config) -> tuple[np.ndarray, tuple]:
    """The raters' class maps (M, *spatial) and the label files' spacing."""
    maps, spacing = [], None
    for path in pair.labels:
        labels, geometry = read_label(path)
        maps.append(labels_to_classes(labels, config.preprocessing, path.name))
        spacing = geometry.spacing
    return np.stack(maps), spacing


def mean_rater_dice(classes, stack, num_classes: int) -> float:
    """Mean over the raters of the mean foreground Dice against each (empty vs empty: 1)."""
    return float(np.mean([mean_foreground_dice(classes, rater, num_classes) for rater in stack]))


def _model_case(run, name, segmenter, case, image, stack, consensus, spacing, samples, seed) -> dict:
    config = segmenter.config
    t0 = time.perf_counter()
    sampled = sample_segmentations(segmenter, image, SegmentOptions(samples=samples, seed=seed))
    run.add_time(f"{name} sampling", time.perf_counter() - t0)
    t1 = time.perf_counter()
    evaluation = run.raters.setdefault(name, RaterEvaluation(sampled.uncertainty_kind))
    row = evaluate_case(case, sampled.classes, consensus, spacing, list(config.class_names))
    row["dice_vs_raters"] = mean_rater_dice(sampled.classes, stack, config.num_classes)
    row.update(evaluation.add_case(sampled.samples, stack, sampled.probabilities, sampled.uncertainty))
    sd = sampled.uncertainty if sampled.uncertainty_kind == "sd" else None
    scores = detector_scores(sampled.probabilities, sampled.classes, spacing, sd)
    add_detectors(run.detectors, name, scores, error_mask(sampled.classes, consensus))
    run.add_time("metrics", time.perf_counter() - t1)
    return row


def evaluate_raters(
    pairs: list[CasePair],
    ldseg: Segmenter,
    baseline: Segmenter | None,
    samples: int,
    seed: int,
    log: Callable[[str], None],
) -> RaterRun:
    run = RaterRun(cases=[p.name for p in pairs], samples=samples)
    models = [("ldseg", ldseg)] + ([("baseline", baseline)] if baseline is not None else [])
    started = time.perf_counter()
    for index, pair in enumerate(pairs):
        stack, spacing = read_raters(pair, ldseg.config)
        consensus = rater_consensus(stack, ldseg.config.num_classes)
        image = read_image(pair.image)
        for name, segmenter in models:
            row = _model_case(run, name, segmenter, pair.name, image, stack, consensus, spacing, samples, seed)
            run.rows.setdefault(name, []).append(row)
        t0 = time.perf_counter()
        run.ceiling_rows.append(ceiling_row(pair.name, ldseg, image, consensus))
        run.add_time("autoencoder ceiling", time.perf_counter() - t0)
        if (index + 1) % 50 == 0 or index + 1 == len(pairs):
            elapsed = time.perf_counter() - started
            log(f"{index + 1}/{len(pairs)} slices; {elapsed:.0f} s so far ({elapsed / (index + 1):.2f} s per slice)")
    return run


def rater_summary(run: RaterRun) -> dict:
    """Per model: the per-case statistics and the pooled rater measures; the detectors; the ceiling."""
    models = {}
    for name, rows in run.rows.items():
        models[name] = {"cases": summarize(rows), **run.raters[name].summary()}
    return {
        "models": models,
        "detectors": detectors_summary(run.detectors),
        "ceiling": summarize(run.ceiling_rows) if run.ceiling_rows else None,
    }
