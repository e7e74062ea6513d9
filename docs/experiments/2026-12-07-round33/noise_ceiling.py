"""Round 33, diagnostic: where does the finer latent lose Dice to noise?

The autoencoder ceiling (reference label -> label latent -> decoder, no
diffusion; ldseg.evaluation.ceiling) on the clean and on the noisy image
(heldout_probe.py's noise: the same seeds, so the same noisy images). The
decoder's boundary refiner reads the image; the latent comes from the label.
If the ceiling falls little under noise, the Dice lost is the sampled latent's
(the denoiser reading the noisy image's latent), not the decoder's.

    python docs/experiments/2026-12-07-round33/noise_ceiling.py MODEL [MODEL ...] --sigma 0.2 --json OUT
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

from ldseg.evaluation.ceiling import autoencoded_classes  # noqa: E402
from ldseg.inference.segmenter import Segmenter  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "data" / "hippocampus")
    ap.add_argument("--sigma", type=float, default=0.2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    segmenters = [Segmenter(m) for m in args.models]
    pairs = validation_pairs(args.dataset, segmenters)
    dice = {str(m): {"clean": [], "noisy": []} for m in args.models}
    for index, pair in enumerate(pairs):
        for model, seg in zip(args.models, segmenters):
            case = load_case(index, pair, seg.config)
            noisy = noisy_image(case.image, args.sigma, index)
            for key, image in (("clean", case.image), ("noisy", noisy)):
                recon = autoencoded_classes(seg, image, case.ref)
                dice[str(model)][key].append(mean_foreground_dice(recon, case.ref, seg.config.num_classes))
    out = {"cases": len(pairs), "sigma": args.sigma, "models": {}}
    for model, d in dice.items():
        clean, noisy = np.array(d["clean"]), np.array(d["noisy"])
        out["models"][model] = {
            "ceiling": round(float(clean.mean()), 4),
            "ceiling_noisy": round(float(noisy.mean()), 4),
            "ceiling_lost": round(float((clean - noisy).mean()), 4),
        }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
