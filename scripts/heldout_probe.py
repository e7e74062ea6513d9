"""Dice of models on the cases of a data set that none of them trained or
validated on, clean and with the paper's Gaussian noise: the figures the
recipe experiments use to pick a default without touching a test split.

Full resolution, as ``ldseg segment`` runs (LDSeg: mean of N samples), mean
foreground Dice per case; the noise is made as in the evaluation report (the
image scaled to [0, 1], N(0, sigma) added; its own seeds), the same noisy
image for every model.

    python scripts/heldout_probe.py DATASET MODEL [MODEL ...] [--samples 10]
        [--sigma 0.2] [--validation] [--json OUT]

``--validation`` scores the cases every model validated on (and none trained on)
instead: where a data set holds its test split among the unseen cases (the
hippocampus), a choice between models must not read it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalreport.runs import load_case, mean_foreground_dice  # noqa: E402

from ldseg.data.dataset import find_pairs  # noqa: E402
from ldseg.evaluation.perturb import add_gaussian_noise  # noqa: E402
from ldseg.inference.segmenter import Segmenter  # noqa: E402


def held_out_pairs(dataset: Path, segmenters: list[Segmenter]) -> list:
    seen: set[str] = set()
    for s in segmenters:
        seen |= set(s.config.training.get("train_names") or []) | set(s.config.training.get("val_names") or [])
    return [p for p in find_pairs(dataset) if p.name not in seen]


def noisy_image(image, sigma: float, index: int):
    """Case ``index``'s image with this probe's noise (its own seeds), so every
    model and every diagnostic that calls it sees the same noisy image."""
    return replace(image, array=add_gaussian_noise(image.array, sigma, seed=(0, index)))


def validation_pairs(dataset: Path, segmenters: list[Segmenter]) -> list:
    trained = set().union(*(s.config.training.get("train_names") or [] for s in segmenters))
    shared = set.intersection(*(set(s.config.training.get("val_names") or []) for s in segmenters)) - trained
    return [p for p in find_pairs(dataset) if p.name in shared]


def probe(dataset: Path, models: list[Path], samples: int, sigma: float, validation: bool = False) -> dict:
    segmenters = [Segmenter(m) for m in models]
    pairs = (validation_pairs if validation else held_out_pairs)(dataset, segmenters)
    if not pairs:
        raise SystemExit(f"{dataset}: no case {'all models validated on' if validation else 'unseen by every model'}")
    dice: dict[str, dict[str, list[float]]] = {str(m): {"clean": [], "noisy": []} for m in models}
    for index, pair in enumerate(pairs):
        noisy = None  # one noisy image per case, the same for every model
        for model, seg in zip(models, segmenters):
            case = load_case(index, pair, seg.config)  # the reference in this model's classes
            if noisy is None:
                noisy = noisy_image(case.image, sigma, index)
            n = samples if seg.architecture.stochastic else 1
            for key, image in (("clean", case.image), ("noisy", noisy)):
                result = seg.segment(image, samples=n, seed=0)
                dice[str(model)][key].append(mean_foreground_dice(result.classes, case.ref, seg.config.num_classes))
    out = {
        "cases": len(pairs),
        "split": "validation" if validation else "held-out",
        "case_names": [p.name for p in pairs],
        "sigma": sigma,
        "samples": samples,
        "models": {},
    }
    for model, d in dice.items():
        clean, noisy = np.array(d["clean"]), np.array(d["noisy"])
        out["models"][model] = {
            "dice": round(float(clean.mean()), 4),
            "dice_sd": round(float(clean.std()), 4),
            "dice_noisy": round(float(noisy.mean()), 4),
            "dice_lost": round(float((clean - noisy).mean()), 4),
            "per_case": [round(float(v), 4) for v in clean],
            "per_case_noisy": [round(float(v), 4) for v in noisy],
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--sigma", type=float, default=0.2)
    ap.add_argument("--validation", action="store_true", help="score the models' shared validation cases")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = probe(args.dataset, args.models, args.samples, args.sigma, args.validation)
    summary = {k: {n: v for n, v in m.items() if not n.startswith("per_case")} for k, m in result["models"].items()}
    shown = {k: v for k, v in result.items() if k != "case_names"}
    print(json.dumps({**shown, "models": summary}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
