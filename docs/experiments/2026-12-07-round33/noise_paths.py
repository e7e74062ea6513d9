"""Round 33, diagnostic: which path of the model carries the noise loss?

The image reaches an LDSeg model by two paths: the image encoder's latent,
which conditions the denoiser (and so the sampled label latent), and the
image itself, which the decoder's boundary refiner reads. Each validation
case is segmented (N samples, seed 0) four ways: clean; noisy; the noisy
image with the clean image's latent swapped in (noise on the refiner's path
only); the clean image with the noisy image's latent (noise on the
denoiser's path only). Noise as heldout_probe.py's (same seeds).

    python docs/experiments/2026-12-07-round33/noise_paths.py MODEL [MODEL ...] --sigma 0.2 --json OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts"))

from evalreport.runs import load_case, mean_foreground_dice  # noqa: E402
from heldout_probe import noisy_image, validation_pairs  # noqa: E402

from ldseg.inference.segmenter import Segmenter  # noqa: E402

WAYS = ("clean", "noisy", "noise_on_refiner_only", "noise_on_denoiser_only")


class LatentSwap:
    """Wraps a model's image encoder: records its latents in one run, replays
    them in the same order in the next (the swapped-in latents)."""

    def __init__(self, model):
        self.encode, self.mode, self.latents = model.encode_image, "pass", []
        model.encode_image = self

    def __call__(self, image):
        if self.mode == "replay":
            return self.latents.pop(0)
        latent = self.encode(image)
        if self.mode == "record":
            self.latents.append(latent)
        return latent


def segment(seg, swap, image, samples, mode, other=None):
    if other is not None:  # record the other image's latents first
        swap.mode, swap.latents = "record", []
        seg.segment(other, samples=samples, seed=0)
    swap.mode = mode
    result = seg.segment(image, samples=samples, seed=0)
    swap.mode = "pass"
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "hippocampus")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--sigma", type=float, default=0.2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    segmenters = [Segmenter(m) for m in args.models]
    swaps = [LatentSwap(s.model) for s in segmenters]
    pairs = validation_pairs(args.dataset, segmenters)
    dice = {str(m): {w: [] for w in WAYS} for m in args.models}
    for index, pair in enumerate(pairs):
        for model, seg, swap in zip(args.models, segmenters, swaps):
            case = load_case(index, pair, seg.config)
            noisy = noisy_image(case.image, args.sigma, index)
            runs = {
                "clean": segment(seg, swap, case.image, args.samples, "pass"),
                "noisy": segment(seg, swap, noisy, args.samples, "pass"),
                "noise_on_refiner_only": segment(seg, swap, noisy, args.samples, "replay", other=case.image),
                "noise_on_denoiser_only": segment(seg, swap, case.image, args.samples, "replay", other=noisy),
            }
            for way, result in runs.items():
                dice[str(model)][way].append(mean_foreground_dice(result.classes, case.ref, seg.config.num_classes))
    out = {"cases": len(pairs), "sigma": args.sigma, "samples": args.samples, "models": {}}
    for model, d in dice.items():
        out["models"][model] = {w: round(float(np.mean(v)), 4) for w, v in d.items()}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
