#!/usr/bin/env python
"""Write the evaluation report: docs/evaluation.md, figures and raw numbers in docs/evaluation/.

Per data set (hippocampus test split, GlaS testA): accuracy of LDSeg and the
Res-UNet baseline, Dice and time against the number of sampling steps,
robustness to image noise, quality of the SD map as an error detector beside
simple baselines (1 - max p, entropy, distance to the predicted boundary),
and the label autoencoder's Dice ceiling. LIDC (four raters): GED, HM-IoU,
calibration, disagreement AUROC against the Res-UNet. New task from few
cases: models trained on 20 GlaS images, on GlaS testA. Plus the machine,
the exact command, the model files' hashes and the targets' verdicts. A part
(or its baseline) whose model file is missing is skipped with a line saying
so; ``--datasets`` runs only some parts.

From the repository root, with LDSeg installed in .venv:

    OMP_NUM_THREADS=2 .venv/bin/python scripts/evaluation_report.py --threads 2

Quick check on two cases per data set: add ``--limit 2 --out /tmp/report``.
One part anew, the others kept as they are (e.g. after retraining one model):
``--datasets glas --keep-others``.
The few-cases models are options (``--fewcases-model``, ``--fewcases-baseline``;
default ``runs/fewcases-ldseg.safetensors``, ``runs/fewcases-resunet.safetensors``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from evalreport import figures, markdown
from evalreport.datasets import ALL_PARTS, DATASETS, DEFAULT_DATA_ROOT, FEWCASES, LIDC, REPO_ROOT
from evalreport.environment import display_path, machine_info, utc_now
from evalreport.previous import kept_parts, provenance
from evalreport.runs import SLOW_STEPS, Settings, evaluate_dataset, example_case
from evalreport.sections import FewCasesSection, RaterSection, leak_check, load_segmenter
from evalreport.summaries import dataset_summary, dataset_targets, rater_targets, versus_baseline_target

from ldseg.errors import LDSegError
from ldseg.evaluation.cases import write_json, write_table_csv
from ldseg.inference.segmenter import Segmenter
from ldseg.io.atomic import atomic_path

FIGURE_FOLDER = "evaluation"
REPORT_NAME = "evaluation.md"
#: LIDC: every K-th test patient by default. All 1634 test slices x 16 samples
#: took about 2 s per slice on the 2-core development machine (busy), about an
#: hour; a quarter of the patients keeps the LIDC part near the other data
#: sets' time. The report prints the measured time per slice and the estimate for all.
LIDC_EVERY = 4


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=list(ALL_PARTS),
        default=list(ALL_PARTS),
        help="the parts to run (the others are listed as not selected)",
    )
    for spec in (*DATASETS.values(), LIDC, FEWCASES):
        key = spec.key
        p.add_argument(
            f"--{key}-model",
            type=Path,
            default=None,
            help=f"LDSeg model (default: first existing of {', '.join(spec.default_models)})",
        )
        p.add_argument(
            f"--{key}-baseline",
            type=Path,
            default=None,
            help=f"Res-UNet baseline model (default: {', '.join(spec.default_baselines)})",
        )
    p.add_argument(
        "--lidc-every",
        type=int,
        default=LIDC_EVERY,
        help="LIDC: only every K-th test patient (sorted by name, from the first)",
    )
    p.add_argument("--lidc-samples", type=int, default=16, help="LIDC: LDSeg samples N (GED, HM-IoU, calibration)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT, help="the shared data folder")
    p.add_argument("--samples", type=int, default=10, help="LDSeg samples N (accuracy, noise, uncertainty)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps K of the main runs (default: the model's)")
    p.add_argument(
        "--step-counts",
        type=int,
        nargs="+",
        default=[1, 2, 5, 10, 50, 1000],
        help="DDIM step counts of the steps sweep",
    )
    p.add_argument(
        "--slow-cases", type=int, default=10, help=f"run step counts K >= {SLOW_STEPS} on the first M test cases only"
    )
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.0, 0.05, 0.1, 0.15, 0.2],
        help="noise SDs on images scaled to [0, 1]",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first M test cases (quick checks)")
    p.add_argument(
        "--keep-others",
        action="store_true",
        help="keep the parts not selected (sections, targets, model rows) from the earlier report in --out",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: PyTorch's)")
    p.add_argument(
        "--out", type=Path, default=REPO_ROOT / "docs", help=f"folder for {REPORT_NAME} and {FIGURE_FOLDER}/"
    )
    args = p.parse_args(argv)
    if args.samples < 1 or args.slow_cases < 0 or (args.limit is not None and args.limit < 1):
        p.error("--samples and --limit must be at least 1, --slow-cases at least 0")
    if args.lidc_every < 1 or args.lidc_samples < 1:
        p.error("--lidc-every and --lidc-samples must be at least 1")
    if args.keep_others and args.limit is not None:
        p.error("--keep-others keeps parts of a full report: it cannot be combined with --limit")
    if any(k < 1 for k in args.step_counts) or any(not math.isfinite(s) or s < 0 for s in args.sigmas):
        p.error("step counts must be at least 1 and sigmas non-negative")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class DatasetEvaluation:
    """One data set: models, test cases, the runs, and the files they give."""

    def __init__(self, key: str, args, settings: Settings, figure_dir: Path):
        self.spec = DATASETS[key]
        self.args, self.settings, self.figure_dir = args, settings, figure_dir
        self.models: list[dict] = []
        self.segmenter: Segmenter | None = None

    def _log(self, message):
        log(f"[{self.spec.key}] {message}")

    def _file(self, suffix: str) -> Path:
        return self.figure_dir / f"{self.spec.key}-{suffix}"

    def _link(self, path: Path) -> str:
        return f"{FIGURE_FOLDER}/{path.name}"

    def _load(self, role: str) -> tuple[Segmenter | None, str]:
        return load_segmenter(self.args, self.spec, role, self.models)

    def run(self) -> dict:
        spec, args, settings = self.spec, self.args, self.settings
        section = {"spec": spec, "seed": settings.seed, "samples": settings.samples, "slow_steps": SLOW_STEPS}
        ldseg, reason = self._load("model")
        if ldseg is None:
            return {**section, "skipped": reason}
        self.segmenter = ldseg
        baseline, baseline_reason = self._load("baseline")
        if baseline is not None and baseline.config.class_names != ldseg.config.class_names:
            baseline_reason = (
                f"baseline classes {list(baseline.config.class_names)} differ from the "
                f"LDSeg model's {list(ldseg.config.class_names)}"
            )
            baseline = None
        all_pairs = spec.test_pairs(args.data)
        pairs = all_pairs[: args.limit] if args.limit else all_pairs
        ok, leak_text = leak_check(pairs, *[m.config for m in (ldseg, baseline) if m is not None])
        if not ok:
            return {**section, "skipped": leak_text}
        self._log(
            f"{len(pairs)} test cases; LDSeg {display_path(ldseg.model_path)}"
            + (f", baseline {display_path(baseline.model_path)}" if baseline else f"; {baseline_reason}")
        )

        run = evaluate_dataset(pairs, ldseg, baseline, settings, self._log)
        summary = dataset_summary(run)
        example = example_case(run, pairs, ldseg, settings)
        labels = self._labels(ldseg, baseline, run)
        files = self._write_files(run, summary, example, labels, ldseg)
        limited = len(pairs) < len(all_pairs)
        section.update(
            {
                "summary": summary,
                "class_names": list(ldseg.config.class_names),
                "cases": len(pairs),
                "labels": labels,
                "files": files,
                "notes": run.notes,
                "seconds": run.seconds,
                "leak_check": leak_text,
                "slow_cases_run": min(settings.slow_cases, len(pairs)),
                "single_label": run.single_variant.label,
                "main_steps": run.main_steps,
                "example": {"case": example.name, "dice": example.dice},
                "k1_single_gap": _k1_single_gap(run),
                "baseline_note": f"Res-UNet baseline not run: {baseline_reason}." if baseline is None else "",
                "limit_note": (
                    f"Only the first {len(pairs)} of the {len(all_pairs)} test cases (--limit)." if limited else ""
                ),
                "limited": limited,
            }
        )
        return section

    def _labels(self, ldseg, baseline, run) -> dict:
        views = ldseg.architecture.sampling(self.settings.samples, None, run.main_steps).flips
        over = f", samples over {len(views)} flips" if len(views) > 1 else ""
        labels = {
            "ldseg": f"LDSeg (N = {self.settings.samples}, DDIM K = {run.main_steps}{over})",
            "baseline": "Res-UNet baseline",
        }
        if baseline is not None and baseline.architecture.stochastic:
            # e.g. developing without a trained baseline: say what actually ran
            labels["baseline"] = f"baseline: {baseline.config.name} (LDSeg, 1 sample)"
        return labels

    def _write_files(self, run, summary, example, labels, ldseg) -> dict:
        raw = {}
        tables = {
            "ldseg-cases.csv": run.ldseg_rows,
            "baseline-cases.csv": run.baseline_rows,
            "steps-cases.csv": run.step_rows,
            "noise-cases.csv": run.noise_rows,
            "uncertainty-cases.csv": run.uncertainty_rows,
            "ceiling-cases.csv": run.ceiling_rows,
        }
        for suffix, rows in tables.items():
            if rows:
                write_table_csv(rows, self._file(suffix))
                raw[suffix] = self._link(self._file(suffix))
        write_json(
            {
                "dataset": self.spec.key,
                "cases": run.cases,
                "main_steps": run.main_steps,
                "samples": self.settings.samples,
                "seed": self.settings.seed,
                "models": list(self.models),
                "summary": summary,
                "notes": run.notes,
                "seconds": run.seconds,
                "example_case": example.name,
            },
            self._file("results.json"),
        )
        raw["results.json"] = self._link(self._file("results.json"))

        title = self.spec.title
        figures.save_steps_figure(
            summary["steps"], summary["steps_on_slow_subset"], f"{title}: sampling steps", self._file("steps.png")
        )
        figures.save_noise_figure(summary["noise"], labels, f"{title}: robustness to noise", self._file("noise.png"))
        figures.save_example_figure(
            example,
            ldseg.config.class_colors,
            f"{example.name}: Dice {example.dice:.3f}",
            self._file("uncertainty-example.png"),
        )
        return {
            "steps_png": self._link(self._file("steps.png")),
            "noise_png": self._link(self._file("noise.png")),
            "example_png": self._link(self._file("uncertainty-example.png")),
            "raw": raw,
        }


def _k1_single_gap(run) -> float | None:
    """Largest per-case |Dice(DDIM K=1) - Dice(single-step)|, if both ran."""
    by = {}
    for r in run.step_rows:
        by.setdefault((r["sampler"], r["steps"]), {})[r["case"]] = r["dice_mean"]
    k1, single = by.get(("ddim", 1)), by.get(("single", 1))
    if not k1 or not single:
        return None
    return max(abs(k1[c] - single[c]) for c in k1 if c in single)


def _extra_section(key, args, make):
    """(section, its evaluation) of the LIDC or few-cases part; not selected: (a line, None)."""
    spec = _spec(key)
    if key not in args.datasets:
        return {"spec": spec, "skipped": "not selected (--datasets)"}, None
    evaluation = make()
    return evaluation.run(), evaluation


def _spec(key: str):
    return DATASETS.get(key) or (LIDC if key == LIDC.key else FEWCASES)


def _subset_note(section: dict) -> str:
    """The LIDC and few-cases verdicts' qualifier when not all test cases ran."""
    if section.get("limited") or section.get("cases", 0) < section.get("all_cases", 0):
        return f"first {section['cases']} test {'slices' if section['spec'] is LIDC else 'cases'} only"
    if section.get("every", 1) > 1:
        return f"every {section['every']}-th test patient"
    return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    started, started_utc = time.perf_counter(), utc_now()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(
        samples=args.samples,
        steps=args.steps,
        step_counts=tuple(args.step_counts),
        slow_cases=args.slow_cases,
        sigmas=tuple(args.sigmas),
        seed=args.seed,
    )
    figure_dir = args.out / FIGURE_FOLDER
    kept = {}
    if args.keep_others:  # read before anything runs or is written
        titles = {key: _spec(key).title for key in ALL_PARTS}
        others = [key for key in ALL_PARTS if key not in args.datasets]
        try:
            kept = kept_parts(args.out / REPORT_NAME, figure_dir / "report.json", titles, others)
        except LDSegError as e:
            log(f"error: {e}")
            return 2
    try:
        figure_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log(f"error: cannot create {figure_dir} ({e.strerror})")
        return 2

    sections, models, targets, device = [], [], [], "not used (no model ran)"
    try:
        for key in DATASETS:
            spec = DATASETS[key]
            if key in kept:
                sections.append({"spec": spec, "kept": kept[key].lines})
                targets += kept[key].targets
                models += kept[key].models
                continue
            if key not in args.datasets:
                sections.append({"spec": spec, "skipped": "not selected (--datasets)"})
                targets += dataset_targets(spec, None, "not selected", "")
                continue
            evaluation = DatasetEvaluation(key, args, settings, figure_dir)
            section = evaluation.run()
            sections.append(section)
            models += evaluation.models
            if evaluation.segmenter is not None:
                device = evaluation.segmenter.device_description
            subset = f"first {section['cases']} test cases only" if section.get("limited") else ""
            targets += dataset_targets(spec, section.get("summary"), section.get("skipped", ""), subset)
        for key, make in (
            (LIDC.key, lambda: RaterSection(LIDC, args, figure_dir)),
            (FEWCASES.key, lambda: FewCasesSection(FEWCASES, args, settings, figure_dir)),
        ):
            if key in kept:
                sections.append({"spec": _spec(key), "kept": kept[key].lines})
                targets += kept[key].targets
                models += kept[key].models
                continue
            section, evaluation = _extra_section(key, args, make)
            sections.append(section)
            if evaluation is not None:
                models += evaluation.models
                if evaluation.segmenter is not None:
                    device = evaluation.segmenter.device_description
            if key == LIDC.key:
                targets += rater_targets(
                    LIDC, section.get("summary"), section.get("skipped", ""), _subset_note(section)
                )
            else:
                targets.append(
                    versus_baseline_target(
                        FEWCASES, section.get("summary"), section.get("skipped", ""), _subset_note(section)
                    )
                )
    except LDSegError as e:
        log(f"error: {e}")
        return 2

    wall = time.perf_counter() - started
    machine = machine_info(device, started_utc)
    steps = sorted({s["main_steps"] for s in sections if "main_steps" in s})
    header_settings = {
        "samples": args.samples,
        "seed": args.seed,
        "step_counts": args.step_counts,
        "slow_steps": SLOW_STEPS,
        "slow_cases": args.slow_cases,
        "sigmas": args.sigmas,
        "steps_text": ", ".join(map(str, steps)) or "the model's",
        "lidc_every": args.lidc_every,
        "lidc_samples": args.lidc_samples,
    }
    limit_note = (
        f"Quick check: only the first {args.limit} test case(s) of each data set (--limit {args.limit});"
        " these are not test-set results."
        if args.limit
        else ""
    )
    made_by = {key: provenance(machine) for key in ALL_PARTS if key in args.datasets}
    made_by.update({key: part.made_by for key, part in kept.items()})
    made_by = {key: made_by[key] for key in ALL_PARTS if key in made_by}  # report order
    text = markdown.report_text(
        machine, header_settings, wall, limit_note, models, targets, sections, {k: p.made_by for k, p in kept.items()}
    )
    write_json(
        {
            "machine": machine,
            "settings": header_settings,
            "wall_seconds": wall,
            "models": models,
            "targets": targets,
            "limit": args.limit,
            "parts": made_by,
        },
        figure_dir / "report.json",
    )
    report = args.out / REPORT_NAME
    with atomic_path(report, suffix=".md") as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    log(f"wrote {report} and {figure_dir}/ in {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
