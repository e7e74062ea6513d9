"""From per-case rows to the report's numbers and the targets' verdicts.

Statistics come from :func:`ldseg.evaluation.cases.summarize` (mean, SD with
ddof = 1, median, percentile-bootstrap 95% CI of the mean over cases).
"""

from __future__ import annotations

import math

from ldseg.evaluation.cases import summarize

from .datasets import DISAGREEMENT_AUROC_TARGET, GED_TARGET, ROBUSTNESS_SIGMA, SD_AUROC_TARGET
from .runs import DETECTORS, DatasetRun


def stats(values) -> dict:
    """summarize()'s statistics of one list of numbers."""
    values = list(values)
    if not values:
        return {
            "mean": math.nan,
            "sd": math.nan,
            "median": math.nan,
            "ci95_low": math.nan,
            "ci95_high": math.nan,
            "n": 0,
            "n_inf": 0,
        }
    return summarize([{"value": v} for v in values])["value"]


def _column(rows, key, cases=None):
    return [r[key] for r in rows if cases is None or r["case"] in cases]


def slow_subset(run: DatasetRun) -> list[str] | None:
    """The cases the slow step counts ran on, if fewer than all."""
    counts = {}
    for r in run.step_rows:
        counts.setdefault(r["variant"], []).append(r["case"])
    smallest = min(counts.values(), key=len, default=[])
    return smallest if 0 < len(smallest) < len(run.cases) else None


def steps_summary(run: DatasetRun, cases: list[str] | None = None) -> list[dict]:
    """Per sampler variant: cases, Dice and seconds, and the main variant's
    one-sample Dice on the same cases (the fair comparison for subsets).
    ``cases`` limits everything to those cases."""
    reference = run.single_variant.label
    wanted = set(cases if cases is not None else run.cases)
    out = []
    for variant in run.variants:
        rows = [r for r in run.step_rows if r["variant"] == variant.label and r["case"] in wanted]
        cases = {r["case"] for r in rows}
        ref_rows = [r for r in run.step_rows if r["variant"] == reference and r["case"] in cases]
        out.append(
            {
                "variant": variant.label,
                "sampler": variant.sampler,
                "steps": variant.steps,
                "cases": len(rows),
                "subset": len(rows) < len(wanted),
                "dice": stats(_column(rows, "dice_mean")),
                "seconds": stats(_column(rows, "seconds")),
                "reference_variant": reference,
                "reference_dice_same_cases": stats(_column(ref_rows, "dice_mean")),
            }
        )
    return out


def noise_summary(run: DatasetRun) -> dict:
    """Per model: Dice statistics per sigma and the Dice lost at ROBUSTNESS_SIGMA."""
    out = {}
    for model in sorted({r["model"] for r in run.noise_rows}, key=["ldseg", "baseline"].index):
        rows = [r for r in run.noise_rows if r["model"] == model]
        sigmas = sorted({r["sigma"] for r in rows})
        levels = [{"sigma": s, "dice": stats(r["dice_mean"] for r in rows if r["sigma"] == s)} for s in sigmas]
        by_sigma = {lv["sigma"]: lv["dice"]["mean"] for lv in levels}
        loss = (
            by_sigma[0.0] - by_sigma[ROBUSTNESS_SIGMA] if 0.0 in by_sigma and ROBUSTNESS_SIGMA in by_sigma else math.nan
        )
        # per case loss, for its spread
        clean = {r["case"]: r["dice_mean"] for r in rows if r["sigma"] == 0.0}
        noisy = {r["case"]: r["dice_mean"] for r in rows if r["sigma"] == ROBUSTNESS_SIGMA}
        out[model] = {
            "levels": levels,
            "dice_lost_at_sigma": ROBUSTNESS_SIGMA,
            "dice_lost": loss,
            "dice_lost_per_case": stats(clean[c] - noisy[c] for c in clean if c in noisy),
        }
    return out


def uncertainty_summary(run: DatasetRun) -> dict:
    rows = run.uncertainty_rows
    pooled = run.pooled_auroc
    return {
        "pooled_auroc": pooled.value(),
        "wrong_voxels": pooled.positives,
        "voxels": pooled.positives + pooled.negatives,
        "per_case_auroc": stats(_column(rows, "auroc_sd_wrong")),
        "cases_without_auroc": sum(1 for r in rows if not math.isfinite(r["auroc_sd_wrong"])),
        "dice_mean_of_samples": stats(_column(rows, "dice_mean_of_samples")),
        "dice_single_sample": stats(_column(rows, "dice_single_sample")),
        "dice_gain_of_mean": stats(r["dice_mean_of_samples"] - r["dice_single_sample"] for r in rows),
    }


def detectors_summary(detectors: dict) -> list[dict]:
    """Pooled AUROC of each (model, score) for that model's own wrong voxels, LDSeg first."""
    out = []
    for (model, score), pooled in detectors.items():
        out.append(
            {
                "model": model,
                "score": score,
                "description": DETECTORS[score],
                "pooled_auroc": pooled.value(),
                "wrong_voxels": pooled.positives,
                "voxels": pooled.positives + pooled.negatives,
                "cases": pooled.cases,
            }
        )
    models, scores = ["ldseg", "baseline"], list(DETECTORS)
    return sorted(out, key=lambda r: (models.index(r["model"]), scores.index(r["score"])))


def ceiling_summary(rows: list[dict]) -> dict | None:
    """summarize()'s statistics of the autoencoder-ceiling Dice columns."""
    return summarize(rows) if rows else None


def dataset_summary(run: DatasetRun) -> dict:
    return {
        "ldseg": summarize(run.ldseg_rows),
        "baseline": summarize(run.baseline_rows) if run.baseline_rows else None,
        "steps": steps_summary(run),
        "slow_subset": slow_subset(run),
        "steps_on_slow_subset": steps_summary(run, slow_subset(run)) if slow_subset(run) else None,
        "noise": noise_summary(run),
        "uncertainty": uncertainty_summary(run),
        "detectors": detectors_summary(run.detectors),
        "ceiling": ceiling_summary(run.ceiling_rows),
    }


def _verdict(reached: bool | None, reason: str = "") -> str:
    if reached is None:
        return f"not measured ({reason})" if reason else "not measured"
    return "reached" if reached else "not reached"


def _target(spec, subset_note: str, text: str, value, reached, reason: str = "") -> dict:
    """One target row: its verdict, marked with the subset it was measured on."""
    status = _verdict(reached, reason)
    if reached is not None and subset_note:
        status += f" ({subset_note})"
    return {"dataset": spec.key, "target": text, "value": value, "status": status}


def _versus_text(spec) -> str:
    return f"{spec.key}: LDSeg Dice ≥ the same-budget Res-UNet's"


def _texts(spec) -> dict[str, str]:
    return {
        "dice": spec.dice_target_text,
        "versus": _versus_text(spec),
        "noise": f"{spec.key}: at σ = {ROBUSTNESS_SIGMA} LDSeg loses less Dice than the Res-UNet",
        "auroc": f"{spec.key}: SD AUROC for wrong voxels ≥ {SD_AUROC_TARGET}",
        "softmax": f"{spec.key}: SD AUROC for wrong voxels above the Res-UNet softmax's (1 − max p)",
    }


def versus_baseline_target(spec, summary: dict | None, skip_reason: str, subset_note: str = "") -> dict:
    """LDSeg's mean foreground Dice against its same-budget Res-UNet's."""
    text = _versus_text(spec)
    if summary is None:
        return _target(spec, subset_note, text, None, None, skip_reason)
    if summary.get("baseline") is None:  # a data set's summary holds None, the few-cases one no key
        return _target(spec, subset_note, text, None, None, "no baseline model")
    dice, base = summary["ldseg"]["dice_mean"]["mean"], summary["baseline"]["dice_mean"]["mean"]
    return _target(spec, subset_note, text, f"LDSeg {dice:.3f} vs Res-UNet {base:.3f}", dice >= base)


def _pooled(detectors, model: str, score: str) -> float:
    return next((d["pooled_auroc"] for d in detectors if d["model"] == model and d["score"] == score), math.nan)


def dataset_targets(spec, summary: dict | None, skip_reason: str, subset_note: str) -> list[dict]:
    """The dataset's targets with value and verdict, from the numbers."""
    texts = _texts(spec)
    targets = []

    def add(text, value, reached, reason=""):
        targets.append(_target(spec, subset_note, text, value, reached, reason))

    if summary is None:
        for text in texts.values():
            add(text, None, None, skip_reason)
        return targets

    dice = summary["ldseg"]["dice_mean"]["mean"]
    add(texts["dice"], f"{dice:.3f}", dice >= spec.dice_target)
    targets.append(versus_baseline_target(spec, summary, skip_reason, subset_note))

    noise = summary["noise"]
    ldseg_loss = noise.get("ldseg", {}).get("dice_lost", math.nan)
    base_loss = noise.get("baseline", {}).get("dice_lost", math.nan)
    if "baseline" not in noise:
        add(texts["noise"], None, None, "no baseline model")
    elif math.isnan(ldseg_loss) or math.isnan(base_loss):
        add(texts["noise"], None, None, f"σ = 0 and {ROBUSTNESS_SIGMA} were not both run")
    else:
        add(texts["noise"], f"LDSeg {ldseg_loss:+.3f} vs Res-UNet {base_loss:+.3f}", ldseg_loss < base_loss)

    auroc = summary["uncertainty"]["pooled_auroc"]
    if math.isnan(auroc):
        add(texts["auroc"], None, None, "no wrong or no right voxels")
        add(texts["softmax"], None, None, "no wrong or no right voxels")
        return targets
    add(texts["auroc"], f"{auroc:.3f} (pooled)", auroc >= SD_AUROC_TARGET)
    softmax = _pooled(summary.get("detectors") or [], "baseline", "doubt")
    if math.isnan(softmax):
        add(texts["softmax"], None, None, "no baseline model")
    else:
        add(texts["softmax"], f"LDSeg SD {auroc:.3f} vs Res-UNet {softmax:.3f} (pooled)", auroc > softmax)
    return targets


def rater_targets(spec, summary: dict | None, skip_reason: str, subset_note: str) -> list[dict]:
    """The multi-rater targets (GED, ECE against the Res-UNet's, disagreement AUROC), from the numbers."""
    targets = []
    ged_text = f"{spec.key}: GED (N samples vs the raters, mean over slices) ≤ {GED_TARGET}"
    ece_text = f"{spec.key}: ECE (mean foreground probability vs rater share) lower than the Res-UNet's"
    auroc_text = (
        f"{spec.key}: SD AUROC for rater-disagreement pixels ≥ {DISAGREEMENT_AUROC_TARGET} "
        "and above the Res-UNet's 1 − max p"
    )

    def add(text, value, reached, reason=""):
        targets.append(_target(spec, subset_note, text, value, reached, reason))

    if summary is None:
        for text in (ged_text, ece_text, auroc_text):
            add(text, None, None, skip_reason)
        return targets
    ldseg, base = summary["models"]["ldseg"], summary["models"].get("baseline")
    ged = ldseg["cases"]["ged"]["mean"]
    add(ged_text, f"{ged:.3f}", ged <= GED_TARGET)
    auroc = ldseg["disagreement_auroc"]
    if base is None:
        add(ece_text, None, None, "no baseline model")
    else:
        add(ece_text, f"LDSeg {ldseg['ece']:.4f} vs Res-UNet {base['ece']:.4f}", ldseg["ece"] < base["ece"])
    if math.isnan(auroc):
        add(auroc_text, None, None, "no disagreement or no agreement pixels")
    elif base is None:
        # below the bar is a verdict without the baseline; above it needs the comparison
        reached = False if auroc < DISAGREEMENT_AUROC_TARGET else None
        add(auroc_text, f"{auroc:.3f} (pooled)", reached, "no baseline model")
    else:
        base_auroc = base["disagreement_auroc"]
        add(
            auroc_text,
            f"LDSeg {auroc:.3f} vs Res-UNet {base_auroc:.3f} (pooled)",
            auroc >= DISAGREEMENT_AUROC_TARGET and auroc > base_auroc,
        )
    return targets
