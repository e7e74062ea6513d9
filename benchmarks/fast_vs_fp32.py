"""Is the fast inference path right? Fast path against plain fp32 on a test split.

    python benchmarks/fast_vs_fp32.py [--model hippocampus] [--data ../shared/data/hippocampus]
                                      [--test-count 42] [--cases NAME ...] [--limit N]
                                      [--samples 10] [--seed 0] [--device auto] [--compile] [--json OUT]

Segments every test case twice with the same seeds: with the fast path
(bf16 autocast where the hardware has fast bf16, channels-last, optionally
torch.compile) and in plain fp32 (contiguous, no autocast). Reports per-class
Dice of each against the reference labels, their absolute difference
(target <= 0.005) and the Pearson correlation of the two SD maps (target
>= 0.95, over all test voxels pooled; per case too). Prints a table, writes
JSON (default out/benchmarks/fast_vs_fp32.json); exits 1 if a target is missed.

The test split of the shipped hippocampus model is the last 42 of the 208
cases sorted by name (hippocampus_321 onwards; see its model card).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "LDSegCore"))

from ldseg.data.dataset import find_pairs  # noqa: E402
from ldseg.data.preprocess import labels_to_classes  # noqa: E402
from ldseg.errors import LDSegError  # noqa: E402
from ldseg.evaluation.metrics import dice_per_class  # noqa: E402
from ldseg.inference.segmenter import Segmenter  # noqa: E402
from ldseg.io.images import read_image, read_label  # noqa: E402

DICE_TARGET = 0.005  # largest acceptable |Dice(fast) - Dice(fp32)| per class
SD_TARGET = 0.95  # smallest acceptable Pearson r of the SD maps


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="hippocampus", help="model name or file")
    p.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "hippocampus",
        help="data set folder with images/ and labels/",
    )
    p.add_argument("--test-count", type=int, default=42, help="the test split: the last N cases sorted by name")
    p.add_argument("--cases", nargs="+", help="only these case names (of the test split)")
    p.add_argument("--limit", type=int, help="only the first N cases of the test split")
    p.add_argument("--samples", type=int, default=10, help="N samples per case (as ldseg segment)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="also torch.compile on the fast path")
    p.add_argument("--json", type=Path, default=REPO / "out" / "benchmarks" / "fast_vs_fp32.json")
    return p.parse_args(argv)


def select_cases(args) -> list:
    pairs = find_pairs(args.data)
    if not 0 < args.test_count <= len(pairs):
        raise LDSegError(f"--test-count must be between 1 and {len(pairs)}")
    test = pairs[-args.test_count :]
    if args.cases:
        known = {p.name: p for p in test}
        missing = [n for n in args.cases if n not in known]
        if missing:
            raise LDSegError(
                f"not in the test split: {', '.join(missing)} (it runs from {test[0].name} to {test[-1].name})"
            )
        test = [known[n] for n in args.cases]
    if args.limit is not None:
        if args.limit < 1:
            raise LDSegError("--limit must be at least 1")
        test = test[: args.limit]
    return test


class PooledPearson:
    """Pearson correlation over all voxels of many cases, in float64 sums."""

    def __init__(self):
        self.sums = np.zeros(6)  # n, x, y, xx, yy, xy

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
        self.sums += [x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]

    def value(self) -> float:
        n, sx, sy, sxx, syy, sxy = self.sums
        cov = sxy - sx * sy / n
        var = (sxx - sx * sx / n) * (syy - sy * sy / n)
        return float(cov / np.sqrt(var)) if var > 0 else float("nan")


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    one = PooledPearson()
    one.add(x, y)
    return one.value()


def compare(args) -> dict:
    cases = select_cases(args)
    fast = Segmenter(args.model, device=args.device, precision="auto", compile=args.compile)
    plain = Segmenter(args.model, device=args.device, precision="fp32", channels_last=False)
    config = fast.config
    names = list(config.class_names)
    rows, pooled = [], PooledPearson()
    seconds = {"fast": 0.0, "fp32": 0.0}
    for i, pair in enumerate(cases):
        image = read_image(pair.image)
        labels, _ = read_label(pair.label)
        reference = labels_to_classes(labels, config.preprocessing, pair.label)
        row = {"case": pair.name}
        results = {}
        for key, segmenter in (("fast", fast), ("fp32", plain)):
            start = time.perf_counter()
            results[key] = segmenter.segment(image, samples=args.samples, steps=args.steps, seed=args.seed)
            seconds[key] += time.perf_counter() - start
            row[f"dice_{key}"] = dice_per_class(results[key].classes, reference, config.num_classes).tolist()
        row["label_agreement"] = float(np.mean(results["fast"].classes == results["fp32"].classes))
        row["sd_pearson"] = pearson(results["fast"].sd, results["fp32"].sd)
        pooled.add(results["fast"].sd, results["fp32"].sd)
        rows.append(row)
        print(
            f"[{i + 1}/{len(cases)}] {pair.name}: Dice fast {_fmt(row['dice_fast'][1:])} "
            f"fp32 {_fmt(row['dice_fp32'][1:])}, SD r {row['sd_pearson']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    return summarize(args, fast, rows, pooled, seconds, names)


def summarize(args, fast: Segmenter, rows, pooled: PooledPearson, seconds, names) -> dict:
    dice_fast = np.mean([r["dice_fast"] for r in rows], axis=0)
    dice_fp32 = np.mean([r["dice_fp32"] for r in rows], axis=0)
    diff = np.abs(dice_fast - dice_fp32)
    per_case_r = np.array([r["sd_pearson"] for r in rows], dtype=float)
    sd_r = pooled.value()
    foreground = range(1, len(names))
    max_diff = float(max(diff[c] for c in foreground))
    return {
        "model": str(fast.model_path),
        "data": str(args.data),
        "cases": [r["case"] for r in rows],
        "samples": args.samples,
        "steps": args.steps or fast.config.diffusion.sampling_steps,
        "seed": args.seed,
        "device": str(fast.device),
        "fast_path": {"precision": fast.precision, "channels_last": fast.channels_last, "compile": args.compile},
        "fp32_path": {"precision": "fp32", "channels_last": False, "compile": False},
        "fast_path_is_fp32": fast.precision == "fp32",
        "classes": [
            {
                "name": names[c],
                "dice_fast": round(float(dice_fast[c]), 5),
                "dice_fp32": round(float(dice_fp32[c]), 5),
                "abs_difference": round(float(diff[c]), 5),
            }
            for c in foreground
        ],
        "max_abs_dice_difference": round(max_diff, 5),
        "sd_pearson_pooled": round(sd_r, 5),
        "sd_pearson_per_case": {
            "min": round(float(np.nanmin(per_case_r)), 5),
            "median": round(float(np.nanmedian(per_case_r)), 5),
        },
        "label_agreement_mean": round(float(np.mean([r["label_agreement"] for r in rows])), 6),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "targets": {"max_abs_dice_difference": DICE_TARGET, "sd_pearson_pooled": SD_TARGET},
        "passed": bool(max_diff <= DICE_TARGET and sd_r >= SD_TARGET),
        "per_case": rows,
    }


def format_summary(s: dict) -> str:
    fp = s["fast_path"]
    lines = [
        f"fast path ({fp['precision']}, {'channels-last' if fp['channels_last'] else 'contiguous'}"
        f"{', compiled' if fp['compile'] else ''}) vs plain fp32 on {len(s['cases'])} test cases, "
        f"N={s['samples']} samples, K={s['steps']}, seed {s['seed']}, {s['device']}"
    ]
    if s["fast_path_is_fp32"]:
        lines.append(
            "note: this machine has no fast bf16, so the fast path runs fp32 too (only the memory format differs)"
        )
    lines.append(f"    {'class':<16}{'Dice fast':>11}{'Dice fp32':>11}{'|diff|':>9}")
    for c in s["classes"]:
        lines.append(f"    {c['name']:<16}{c['dice_fast']:>11.4f}{c['dice_fp32']:>11.4f}{c['abs_difference']:>9.4f}")
    lines.append(f"    largest |Dice difference|: {s['max_abs_dice_difference']:.4f} (target <= {DICE_TARGET})")
    per_case = s["sd_pearson_per_case"]
    lines.append(
        f"    SD maps, Pearson r: {s['sd_pearson_pooled']:.4f} pooled over all voxels "
        f"(target >= {SD_TARGET}); per case min {per_case['min']:.4f}, median {per_case['median']:.4f}"
    )
    lines.append(f"    labels agree on {100 * s['label_agreement_mean']:.3f}% of voxels")
    lines.append(
        f"    time: fast {s['seconds']['fast']} s, fp32 {s['seconds']['fp32']} s "
        f"({s['seconds']['fp32'] / max(s['seconds']['fast'], 1e-9):.2f}x)"
    )
    lines.append("    PASSED" if s["passed"] else "    FAILED: a target was missed")
    return "\n".join(lines)


def _fmt(values) -> str:
    return "/".join(f"{v:.3f}" for v in values)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = compare(args)
    except LDSegError as e:
        print(f"fast_vs_fp32: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.json}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
