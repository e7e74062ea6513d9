"""The "new task from few cases" runs: each model on the held-out test cases.

Models trained on a few cases of a new task (GlaS: 20 training images) are
tested on GlaS testA like the full models: LDSeg with N samples and its own
DDIM steps, the Res-UNet with its one pass, Dice/IoU/HD95 on each case's own
grid. Either model may be missing; the other still runs.
"""

from __future__ import annotations

import time
from typing import Callable

from ldseg.data.dataset import CasePair
from ldseg.evaluation.cases import evaluate_case
from ldseg.inference.segmenter import Segmenter

from .runs import load_case


def evaluate_models(
    pairs: list[CasePair], models: dict[str, Segmenter], samples: int, seed: int, log: Callable[[str], None]
) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Per model name: one row per test case; and the seconds per model."""
    rows: dict[str, list[dict]] = {name: [] for name in models}
    seconds = {name: 0.0 for name in models}
    for index, pair in enumerate(pairs):
        for name, segmenter in models.items():
            case = load_case(index, pair, segmenter.config)
            t0 = time.perf_counter()
            result = segmenter.segment(case.path, samples=samples, seed=seed)
            seconds[name] += time.perf_counter() - t0
            row = evaluate_case(case.name, result.classes, case.ref, case.spacing, list(segmenter.config.class_names))
            row["seconds"] = result.seconds["total"]
            rows[name].append(row)
        dice = ", ".join(f"{name} {rows[name][-1]['dice_mean']:.3f}" for name in models)
        log(f"{index + 1}/{len(pairs)} {pair.name}: Dice {dice}")
    return rows, seconds
