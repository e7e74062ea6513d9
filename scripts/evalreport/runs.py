"""The evaluation runs of one data set, case by case.

Everything goes through :class:`ldseg.inference.segmenter.Segmenter`, the API behind
``ldseg segment``, so the numbers are those of what users run. Per case:

* main: LDSeg with N samples and the model's DDIM steps -> Dice, IoU, HD95,
  seconds, and the SD map against the wrong voxels (AUROC);
* steps: one sample (fixed seed) per sampler variant (DDIM K, single-step);
  K >= SLOW_STEPS only on the first ``slow_cases`` cases;
* baseline: the Res-UNet (one forward pass);
* noise: both models on the image with Gaussian noise of each sigma;
* error detectors: beside LDSeg's SD map, 1 - max probability, the entropy
  and minus the distance to the predicted boundary, of each model, scored
  against that model's own wrong voxels (pooled AUROC);
* autoencoder ceiling: the reference label through LDSeg's label autoencoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ldseg.data.dataset import CasePair
from ldseg.data.preprocess import labels_to_classes
from ldseg.evaluation.cases import evaluate_case
from ldseg.evaluation.ceiling import autoencoded_classes
from ldseg.evaluation.metrics import dice_per_class, roc_auc
from ldseg.evaluation.perturb import add_gaussian_noise
from ldseg.evaluation.uncertainty import (
    PooledAUROC,
    boundary_score,
    error_mask,
    max_probability_doubt,
    probability_entropy,
)
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import read_image, read_label

#: DDIM step counts from here up are slow (seconds per step on a CPU) and run
#: on the first ``slow_cases`` test cases only.
SLOW_STEPS = 50

#: The error detectors: score key -> what it is. "sd" only for a sampling model.
DETECTORS = {
    "sd": "SD map (largest per-class SD of the samples' probabilities)",
    "doubt": "1 − max probability",
    "entropy": "entropy of the probabilities",
    "boundary": "− distance to the predicted boundary",
}


@dataclass(frozen=True)
class StepVariant:
    sampler: str  # "ddim" or "single"
    steps: int

    @property
    def label(self) -> str:
        return "single-step estimate" if self.sampler == "single" else f"DDIM K={self.steps}"

    @property
    def slow(self) -> bool:
        return self.sampler == "ddim" and self.steps >= SLOW_STEPS


@dataclass
class Settings:
    samples: int = 10
    steps: int | None = None  # None: the model's own (the paper's K = 2)
    step_counts: tuple[int, ...] = (1, 2, 5, 10, 50, 1000)
    slow_cases: int = 10
    sigmas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2)
    seed: int = 0


@dataclass
class DatasetRun:
    """Everything measured on one data set (rows are plain dicts for CSV/JSON)."""

    cases: list[str]
    main_steps: int
    variants: list[StepVariant]
    ldseg_rows: list[dict] = field(default_factory=list)
    baseline_rows: list[dict] = field(default_factory=list)
    step_rows: list[dict] = field(default_factory=list)
    noise_rows: list[dict] = field(default_factory=list)
    uncertainty_rows: list[dict] = field(default_factory=list)
    ceiling_rows: list[dict] = field(default_factory=list)
    detectors: dict[tuple[str, str], PooledAUROC] = field(default_factory=dict)  # (model, score) -> pooled
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per part
    notes: list[str] = field(default_factory=list)

    @property
    def single_variant(self) -> StepVariant:
        """The one-sample run that matches the main run's sampler."""
        return StepVariant("ddim", self.main_steps)

    @property
    def pooled_auroc(self) -> PooledAUROC:
        """LDSeg's SD map against its wrong voxels."""
        return self.detectors.setdefault(("ldseg", "sd"), PooledAUROC())

    def add_time(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds


def detector_scores(probabilities, classes, spacing, sd=None) -> dict[str, np.ndarray]:
    """Every error detector's per-voxel score for one model's output on one case."""
    scores = {} if sd is None else {"sd": sd}
    scores["doubt"] = max_probability_doubt(probabilities)
    scores["entropy"] = probability_entropy(probabilities)
    scores["boundary"] = boundary_score(classes, spacing)
    return scores


def add_detectors(detectors: dict, model: str, scores: dict, wrong) -> None:
    """Pool one case's scores of ``model`` against that model's own wrong voxels."""
    for key, score in scores.items():
        detectors.setdefault((model, key), PooledAUROC()).add(score, wrong)


def ceiling_row(name: str, ldseg: Segmenter, image, ref) -> dict:
    """Dice per class (and mean) of the reference label after the label autoencoder."""
    recon = autoencoded_classes(ldseg, image, ref)
    names = list(ldseg.config.class_names)
    dice = dice_per_class(recon, ref, len(names))
    row = {"case": name, **{f"dice_{n}": float(d) for n, d in zip(names[1:], dice[1:])}}
    row["dice_mean"] = float(np.mean(dice[1:]))
    return row


@dataclass
class Case:
    index: int  # position in the test list (seeds the noise)
    name: str
    image: object  # MedicalImage
    path: Path
    ref: np.ndarray  # class indices
    spacing: tuple


@dataclass
class ExampleCase:
    name: str
    dice: float
    image: np.ndarray  # (C, *spatial)
    ref: np.ndarray
    pred: np.ndarray
    sd: np.ndarray


def mean_foreground_dice(pred, ref, num_classes: int) -> float:
    return float(np.mean(dice_per_class(pred, ref, num_classes)[1:]))


def step_variants(step_counts, main_steps: int, max_steps: int) -> tuple[list[StepVariant], list[str]]:
    """The single-step estimate, then DDIM for each K (with the main K added);
    K above the model's T cannot run and is noted."""
    counts = sorted(set(int(k) for k in step_counts) | {main_steps})
    notes = [f"DDIM K={k} skipped: the model has T = {max_steps} noise levels" for k in counts if k > max_steps]
    variants = [StepVariant("single", 1)] + [StepVariant("ddim", k) for k in counts if k <= max_steps]
    return variants, notes


def load_case(index: int, pair: CasePair, config) -> Case:
    image = read_image(pair.image)
    labels, geometry = read_label(pair.label)
    ref = labels_to_classes(labels, config.preprocessing, pair.label.name)
    return Case(index, pair.name, image, pair.image, ref, geometry.spacing)


def warm_up(segmenter: Segmenter, pair: CasePair, samples: int) -> None:
    """One untimed call of the main run's size, so one-time costs
    (allocations, kernel selection) do not land on the first case's seconds."""
    segmenter.segment(pair.image, samples=samples, seed=0)


def evaluate_dataset(
    pairs: list[CasePair], ldseg: Segmenter, baseline: Segmenter | None, settings: Settings, log: Callable[[str], None]
) -> DatasetRun:
    config = ldseg.config
    main_steps = settings.steps or config.diffusion.sampling_steps
    variants, notes = step_variants(settings.step_counts, main_steps, config.diffusion.steps)
    run = DatasetRun(cases=[p.name for p in pairs], main_steps=main_steps, variants=variants, notes=notes)
    warm_up(ldseg, pairs[0], settings.samples)
    if baseline is not None:
        warm_up(baseline, pairs[0], 1)
    started = time.perf_counter()
    for index, pair in enumerate(pairs):
        case = load_case(index, pair, config)
        main_dice = _main_run(run, case, ldseg, settings)
        single_dice = _step_runs(run, case, ldseg, settings)
        baseline_dice = _baseline_run(run, case, baseline, settings) if baseline is not None else None
        _noise_runs(run, case, ldseg, baseline, settings, main_dice, baseline_dice)
        run.uncertainty_rows[-1]["dice_single_sample"] = single_dice
        log(
            f"{index + 1}/{len(pairs)} {case.name}: LDSeg Dice {main_dice:.3f} (1 sample {single_dice:.3f})"
            + (f", baseline {baseline_dice:.3f}" if baseline_dice is not None else "")
            + f"; {time.perf_counter() - started:.0f} s so far"
        )
    return run


def _main_run(run: DatasetRun, case: Case, ldseg: Segmenter, settings: Settings) -> float:
    t0 = time.perf_counter()
    result = ldseg.segment(
        case.path, samples=settings.samples, steps=run.main_steps, sampler="ddim", seed=settings.seed
    )
    run.add_time("LDSeg main run", time.perf_counter() - t0)
    t1 = time.perf_counter()
    config = ldseg.config
    row = evaluate_case(case.name, result.classes, case.ref, case.spacing, list(config.class_names))
    row["seconds"] = result.seconds["total"]
    run.ldseg_rows.append(row)
    wrong = error_mask(result.classes, case.ref)
    add_detectors(
        run.detectors, "ldseg", detector_scores(result.probabilities, result.classes, case.spacing, result.sd), wrong
    )
    run.uncertainty_rows.append(
        {
            "case": case.name,
            "auroc_sd_wrong": roc_auc(result.sd, wrong),
            "wrong_fraction": float(wrong.mean()),
            "mean_sd": float(result.sd.mean()),
            "dice_mean_of_samples": row["dice_mean"],
        }
    )
    run.add_time("metrics", time.perf_counter() - t1)
    t2 = time.perf_counter()
    run.ceiling_rows.append(ceiling_row(case.name, ldseg, case.image, case.ref))
    run.add_time("autoencoder ceiling", time.perf_counter() - t2)
    return row["dice_mean"]


def _step_runs(run: DatasetRun, case: Case, ldseg: Segmenter, settings: Settings) -> float:
    """One sample per variant; returns the Dice of the main variant's single sample."""
    num_classes = ldseg.config.num_classes
    single = float("nan")
    for variant in run.variants:
        if variant.slow and case.index >= settings.slow_cases:
            continue
        t0 = time.perf_counter()
        result = ldseg.segment(case.path, samples=1, steps=variant.steps, sampler=variant.sampler, seed=settings.seed)
        run.add_time(f"steps: {variant.label}", time.perf_counter() - t0)
        dice = mean_foreground_dice(result.classes, case.ref, num_classes)
        run.step_rows.append(
            {
                "case": case.name,
                "variant": variant.label,
                "sampler": variant.sampler,
                "steps": variant.steps,
                "dice_mean": dice,
                "seconds": result.seconds["total"],
            }
        )
        if variant == run.single_variant:
            single = dice
    return single


def _baseline_run(run: DatasetRun, case: Case, baseline: Segmenter, settings: Settings) -> float:
    t0 = time.perf_counter()
    result = baseline.segment(case.path, samples=1, seed=settings.seed)
    run.add_time("baseline", time.perf_counter() - t0)
    row = evaluate_case(case.name, result.classes, case.ref, case.spacing, list(baseline.config.class_names))
    row["seconds"] = result.seconds["total"]
    run.baseline_rows.append(row)
    t1 = time.perf_counter()
    wrong = error_mask(result.classes, case.ref)
    # one pass (or one sample): no SD map to score
    add_detectors(run.detectors, "baseline", detector_scores(result.probabilities, result.classes, case.spacing), wrong)
    run.add_time("metrics", time.perf_counter() - t1)
    return row["dice_mean"]


#: Intensity normalizations that undo an affine rescaling of the image
#: (Testing/test_perturb.py checks it): for these, sigma = 0 is the clean run.
SCALE_INVARIANT_NORMALIZATIONS = ("minmax", "percentile", "zscore")


def _noise_runs(run, case, ldseg, baseline, settings, main_dice, baseline_dice) -> None:
    models = [("ldseg", ldseg, main_dice)]
    if baseline is not None:
        models.append(("baseline", baseline, baseline_dice))
    for sigma in settings.sigmas:
        # The same noisy image for both models; the seed depends on the case and level only.
        noisy = add_gaussian_noise(case.image.array, sigma, seed=(settings.seed, case.index, round(sigma * 1e6)))
        noisy_image = replace(case.image, array=noisy)
        for name, segmenter, clean_dice in models:
            if sigma == 0 and segmenter.config.preprocessing.intensity in SCALE_INVARIANT_NORMALIZATIONS:
                run.noise_rows.append({"case": case.name, "model": name, "sigma": 0.0, "dice_mean": clean_dice})
                continue
            t0 = time.perf_counter()
            # as in the clean runs: LDSeg with N samples, the baseline with one
            # (a Res-UNet ignores samples, steps and sampler: one forward pass)
            samples = settings.samples if name == "ldseg" else 1
            result = segmenter.segment(
                noisy_image, samples=samples, steps=run.main_steps, sampler="ddim", seed=settings.seed
            )
            run.add_time(f"noise: {name}", time.perf_counter() - t0)
            dice = mean_foreground_dice(result.classes, case.ref, segmenter.config.num_classes)
            run.noise_rows.append({"case": case.name, "model": name, "sigma": float(sigma), "dice_mean": dice})


def example_case(run: DatasetRun, pairs: list[CasePair], ldseg: Segmenter, settings: Settings) -> ExampleCase:
    """The case of median main-run Dice (the lower middle one for an even
    count), segmented again exactly as in the main run (same seed)."""
    order = sorted(range(len(run.ldseg_rows)), key=lambda i: run.ldseg_rows[i]["dice_mean"])
    index = order[(len(order) - 1) // 2]
    case = load_case(index, pairs[index], ldseg.config)
    result = ldseg.segment(
        case.path, samples=settings.samples, steps=run.main_steps, sampler="ddim", seed=settings.seed
    )
    return ExampleCase(
        name=case.name,
        dice=run.ldseg_rows[index]["dice_mean"],
        image=case.image.array,
        ref=case.ref,
        pred=result.classes,
        sd=result.sd,
    )
