"""Measure a trained model on its own validation cases, on the model grid:
what the recipe experiments of docs/experiments.md report.

For an LDSeg model: Dice of one sample and of the mean of N, Dice when the
sampled latent is replaced by pure noise (it must collapse, or the latent is
decorative), sample diversity (mean pairwise 1 - IoU of the foreground), and
how well the SD map, 1 - max p, the entropy of the mean, the samples' expected
entropy and their mutual information (entropy of the mean minus expected
entropy: the part that comes from the samples differing) find the wrong voxels
(pooled AUROC), and the share of the wrong voxels on which all N samples agree
(errors no spread of samples can reveal: the model's bias). For a Res-UNet: its
Dice and its softmax's 1 - max p and entropy AUROC.

With ``--flips``, sample k sees the image flipped by the k-th (mod F) of the F
flip combinations the model was trained with (every subset of its flip axes),
its output flipped back; a Res-UNet averages its softmax over the F flips.

    python scripts/recipe_probe.py MODEL.safetensors DATASET [--samples 10] [--json OUT]
        [--sampler ddim|ddpm] [--steps K] [--eta ETA] [--flips]   (default: the model's sampler, K, eta 0)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ldseg.architectures import architecture_of
from ldseg.data.dataset import SegmentationDataset, find_pairs
from ldseg.diffusion.schedule import standardize
from ldseg.evaluation.metrics import dice_per_class, roc_auc
from ldseg.evaluation.uncertainty import probability_entropy
from ldseg.inference.flips import NO_FLIPS, flip_views, flipped
from ldseg.inference.sampling import SamplingOptions, decode_latents, denoise_samples, sample_noise
from ldseg.io.loading import load_model


def foreground_dice(pred: np.ndarray, ref: np.ndarray, classes: int) -> float:
    return float(dice_per_class(pred, ref, classes)[1:].mean())


def flip_combinations(config) -> tuple[tuple[int, ...], ...]:
    """The engine's flip views of this model (ldseg.inference.flips), or a clear refusal."""
    views = flip_views(config)
    if views == NO_FLIPS:
        raise SystemExit("--flips: this model's flips are not known, or a class named by a side would change meaning")
    return views


def probe(
    model_path: Path,
    dataset: Path,
    samples: int,
    sampler: str | None = None,
    steps: int | None = None,
    eta=0.0,
    flips: bool = False,
) -> dict:
    model, _ = load_model(model_path)
    config = model.config
    arch = architecture_of(config)
    val_names = set(config.training.get("val_names") or [])
    pairs = [p for p in find_pairs(dataset) if p.name in val_names]
    if not pairs:
        raise SystemExit(f"{model_path}: no validation cases of this model in {dataset}")
    data = SegmentationDataset(pairs, config.preprocessing)
    c = config.num_classes
    rows, wrong = [], []
    wrong_count = wrong_unanimous = 0
    scores: dict[str, list[np.ndarray]] = {}
    combos = flip_combinations(config) if flips else [()]

    def score(name: str, values) -> None:
        scores.setdefault(name, []).append(np.asarray(values).ravel())

    for i in range(len(data)):
        image, labels = data[i]
        ref = labels.numpy()
        x = image[None]
        with torch.inference_mode():
            if not arch.stochastic:
                p = torch.stack([flipped(model(flipped(x, f)).float().softmax(1), f)[0] for f in combos]).mean(0)
                pred = p.argmax(0).numpy()
                rows.append({"dice_mean": foreground_dice(pred, ref, c)})
                score("auroc_1_minus_max_p", 1 - p.amax(0))
                score("auroc_entropy", probability_entropy(p.numpy()))
                wrong.append((pred != ref).ravel())
                continue
            opts = SamplingOptions(
                samples=samples,
                steps=steps or config.diffusion.sampling_steps,
                eta=eta,
                seed=0,
                sampler=sampler or config.diffusion.sampler,
                restandardize=config.diffusion.restandardize,
            )
            z_i = model.encode_image(x).float()
            shape = (config.network.latent_channels, *z_i.shape[2:])
            z_T = torch.stack([sample_noise(opts, k, shape) for k in range(samples)])
            probs = torch.empty((samples, c, *x.shape[2:]))  # (N, C, *grid)
            for j, f in enumerate(combos):
                ks = list(range(j, samples, len(combos)))
                if not ks:
                    continue
                x_f = flipped(x, f)
                z_f = model.encode_image(x_f).float() if f else z_i
                z0 = denoise_samples(model, z_f, z_T[ks], arch.schedule, opts)
                probs[ks] = flipped(decode_latents(model, z0, opts, x_f), f)
            noise_latent = standardize(torch.randn((1, *shape), generator=torch.Generator().manual_seed(i)))
            p_noise = decode_latents(model, noise_latent, opts, x)[0]
        mean, sd = probs.mean(0), probs.std(0, unbiased=False).amax(0)
        pred = mean.argmax(0).numpy()
        sample_labels = probs.argmax(1).numpy()
        case_wrong = pred != ref
        wrong_count += int(case_wrong.sum())
        wrong_unanimous += int((case_wrong & (sample_labels == sample_labels[0]).all(0)).sum())
        fg = [labels_k > 0 for labels_k in sample_labels]
        pairs_iou = [
            np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()) for a, b in itertools.combinations(fg, 2)
        ]
        rows.append(
            {
                "dice_one": foreground_dice(probs[0].argmax(0).numpy(), ref, c),
                "dice_mean": foreground_dice(pred, ref, c),
                "dice_noise_latent": foreground_dice(p_noise.argmax(0).numpy(), ref, c),
                "diversity": float(1 - np.mean(pairs_iou)) if pairs_iou else 0.0,
            }
        )
        entropy_of_mean = probability_entropy(mean.numpy())
        expected_entropy = np.mean([probability_entropy(q) for q in probs.numpy()], axis=0)
        score("auroc_sd", sd)
        score("auroc_1_minus_max_p", 1 - mean.amax(0))
        score("auroc_entropy", entropy_of_mean)
        score("auroc_expected_entropy", expected_entropy)
        score("auroc_mutual_information", entropy_of_mean - expected_entropy)
        wrong.append(case_wrong.ravel())
    out = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}
    positives = np.concatenate(wrong)
    for name, values in scores.items():
        out[name] = round(roc_auc(np.concatenate(values), positives), 4)
    if arch.stochastic:
        out["wrong_unanimous_share"] = round(wrong_unanimous / max(1, wrong_count), 4)
    out.update(
        cases=len(rows),
        model=str(model_path),
        architecture=config.architecture,
        epochs=config.training.get("epochs"),
        best_epoch=config.training.get("best_epoch"),
        sampling={"sampler": sampler or config.diffusion.sampler, "steps": steps, "eta": eta},
        flips=[list(f) for f in combos],
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sampler", choices=("ddim", "ddpm"), default=None)
    ap.add_argument("--steps", type=int, default=None, help="sampling steps K (default: the model's)")
    ap.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic steps, 1: DDPM-like)")
    ap.add_argument(
        "--flips", action="store_true", help="spread the samples (Res-UNet: average) over the model's flips"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    result = probe(args.model, args.dataset, args.samples, args.sampler, args.steps, args.eta, args.flips)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
