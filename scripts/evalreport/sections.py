"""The report's multi-rater (LIDC) and few-cases sections: models, runs, files.

Like the per-data-set evaluation of ``evaluation_report.py``: a missing or
unusable model file skips its part with a line saying why, and test cases
among a model's training or validation cases stop the section.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ldseg.errors import LDSegError
from ldseg.evaluation.cases import summarize, write_json, write_table_csv
from ldseg.evaluation.distribution import save_reliability_diagram
from ldseg.inference.segmenter import Segmenter

from .environment import display_path, model_info
from .fewcases import evaluate_models
from .raterruns import evaluate_raters, rater_summary

FIGURE_FOLDER = "evaluation"
ROLE_NAMES = {"model": "LDSeg model", "baseline": "Res-UNet baseline"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_path(args, spec, role: str) -> Path:
    """The path given by ``--KEY-model`` / ``--KEY-baseline``, else the spec's default."""
    given = getattr(args, f"{spec.key}_{role}")
    if given is not None:
        return given
    return spec.default_model() if role == "model" else spec.default_baseline()


def load_segmenter(args, spec, role: str, models: list[dict]) -> tuple[Segmenter | None, str]:
    """The model of ``role``, recorded in ``models``; None and the reason if it cannot be used."""
    path = model_path(args, spec, role)
    name = ROLE_NAMES[role]
    entry = {"dataset": spec.key, "role": name, "path": display_path(path)}
    if not path.is_file():
        models.append({**entry, "missing": True})
        return None, f"{name} `{display_path(path)}` not found"
    try:
        info = model_info(path)
        segmenter = Segmenter(path, device=args.device)
    except LDSegError as e:  # a foreign or damaged file: skip this part, say why
        models.append({**entry, "missing": True})
        return None, f"{name} `{display_path(path)}` is not usable ({e})"
    models.append({**entry, **info})
    return segmenter, ""


def leak_check(pairs, *configs) -> tuple[bool, str]:
    """Test cases must not be among the models' training or validation cases."""
    test = {p.name for p in pairs}
    used, recorded = set(), 0
    for config in configs:
        training = config.training or {}
        names = set(training.get("train_names", [])) | set(training.get("val_names", []))
        recorded += bool(names)
        used |= names
    overlap = sorted(test & used)
    if overlap:
        return False, (
            f"{len(overlap)} test case(s) are among the models' training/validation cases "
            f"({', '.join(overlap[:5])}{' …' if len(overlap) > 5 else ''})"
        )
    if not recorded:
        return True, "the model files do not list their training cases; not checked."
    return True, (
        f"no test case is among the {len(used)} training/validation cases listed in "
        f"{recorded} of the {len(configs)} model file(s)."
    )


def _same_classes(ldseg: Segmenter, baseline: Segmenter | None) -> str:
    if baseline is None or baseline.config.class_names == ldseg.config.class_names:
        return ""
    return (
        f"baseline classes {list(baseline.config.class_names)} differ from the "
        f"LDSeg model's {list(ldseg.config.class_names)}"
    )


def _model_label(segmenter: Segmenter | None, samples: int, fallback: str) -> str:
    """What actually ran, e.g. a sampling model standing in for the baseline while developing."""
    if segmenter is None:
        return fallback
    if segmenter.architecture.stochastic:
        return f"LDSeg `{segmenter.config.name}` (N = {samples})"
    return f"Res-UNet `{segmenter.config.name}`"


class RaterSection:
    """LIDC: LDSeg's N samples and the Res-UNet against the raters."""

    def __init__(self, spec, args, figure_dir: Path):
        self.spec, self.args, self.figure_dir = spec, args, figure_dir
        self.models: list[dict] = []
        self.segmenter: Segmenter | None = None

    def _file(self, suffix: str) -> Path:
        return self.figure_dir / f"{self.spec.key}-{suffix}"

    def run(self) -> dict:
        spec, args = self.spec, self.args
        every, samples = args.lidc_every, args.lidc_samples
        section = {"spec": spec, "kind": "raters", "samples": samples, "seed": args.seed, "every": every}
        ldseg, reason = load_segmenter(args, spec, "model", self.models)
        if ldseg is None:
            return {**section, "skipped": reason}
        self.segmenter = ldseg
        baseline, baseline_reason = load_segmenter(args, spec, "baseline", self.models)
        baseline_reason = _same_classes(ldseg, baseline) or baseline_reason
        if baseline is not None and baseline_reason:
            baseline = None
        all_patients, patients = spec.test_patients(), spec.test_patients(every)
        all_slices = len(spec.test_pairs(args.data)) if every > 1 else None
        pairs = spec.test_pairs(args.data, every)
        pairs = pairs[: args.limit] if args.limit else pairs
        if not pairs:
            return {**section, "skipped": f"no test slice of the split's patients in `{args.data / spec.folder}`"}
        ok, leak_text = leak_check(pairs, *[m.config for m in (ldseg, baseline) if m is not None])
        if not ok:
            return {**section, "skipped": leak_text}
        log(f"[{spec.key}] {len(pairs)} test slices of {len(patients)} patients; N = {samples}")
        run = evaluate_raters(pairs, ldseg, baseline, samples, args.seed, lambda m: log(f"[{spec.key}] {m}"))
        summary = rater_summary(run)
        labels = {
            "ldseg": _model_label(ldseg, samples, "LDSeg"),
            "baseline": _model_label(baseline, samples, "Res-UNet baseline"),
        }
        section.update(
            {
                "summary": summary,
                "labels": labels,
                "class_names": list(ldseg.config.class_names),
                "cases": len(pairs),
                "patients": len(patients),
                "all_patients": len(all_patients),
                "limited": bool(args.limit) and len(pairs) == args.limit,
                "leak_check": leak_text,
                "raters": len(pairs[0].labels),
                "seconds": run.seconds,
                "seconds_per_slice": sum(run.seconds.values()) / len(pairs),
                "all_slices": all_slices or len(spec.test_pairs(args.data)),
                "files": self._write_files(run, summary, labels),
                "baseline_note": f"Res-UNet baseline not run: {baseline_reason}." if baseline is None else "",
            }
        )
        return section

    def _write_files(self, run, summary, labels) -> dict:
        raw, figures = {}, {}
        for name, rows in run.rows.items():
            write_table_csv(rows, self._file(f"{name}-cases.csv"))
            raw[f"{name}-cases.csv"] = f"{FIGURE_FOLDER}/{self._file(f'{name}-cases.csv').name}"
            png = self._file(f"{name}-reliability.png")
            ece = summary["models"][name]["ece"]
            save_reliability_diagram(run.raters[name].calibration, png, f"{labels[name]}: ECE {ece:.4f}")
            figures[name] = f"{FIGURE_FOLDER}/{png.name}"
        if run.ceiling_rows:
            write_table_csv(run.ceiling_rows, self._file("ceiling-cases.csv"))
            raw["ceiling-cases.csv"] = f"{FIGURE_FOLDER}/{self._file('ceiling-cases.csv').name}"
        write_json(
            {
                "dataset": self.spec.key,
                "cases": run.cases,
                "samples": run.samples,
                "seed": self.args.seed,
                "every_kth_patient": self.args.lidc_every,
                "models": list(self.models),
                "summary": summary,
                "seconds": run.seconds,
            },
            self._file("results.json"),
        )
        raw["results.json"] = f"{FIGURE_FOLDER}/{self._file('results.json').name}"
        return {"raw": raw, "reliability_png": figures}


class FewCasesSection:
    """Models for a new task trained from a few cases, on the held-out test set."""

    def __init__(self, spec, args, settings, figure_dir: Path):
        self.spec, self.args, self.settings, self.figure_dir = spec, args, settings, figure_dir
        self.models: list[dict] = []
        self.segmenter: Segmenter | None = None

    def run(self) -> dict:
        spec, args = self.spec, self.args
        section = {"spec": spec, "kind": "fewcases", "samples": self.settings.samples, "seed": self.settings.seed}
        loaded, reasons = {}, []
        for role, name in (("model", "ldseg"), ("baseline", "baseline")):
            segmenter, reason = load_segmenter(args, spec, role, self.models)
            if segmenter is None:
                reasons.append(reason)
            else:
                loaded[name] = segmenter
        if not loaded:
            return {**section, "skipped": "; ".join(reasons)}
        notes = [f"{reason}: not run." for reason in reasons]
        self.segmenter = next(iter(loaded.values()))
        all_pairs = spec.test_pairs(args.data)
        pairs = all_pairs[: args.limit] if args.limit else all_pairs
        ok, leak_text = leak_check(pairs, *[m.config for m in loaded.values()])
        if not ok:
            return {**section, "skipped": leak_text}
        log(f"[{spec.key}] {len(pairs)} test cases; {', '.join(display_path(m.model_path) for m in loaded.values())}")
        rows, seconds = evaluate_models(
            pairs, loaded, self.settings.samples, self.settings.seed, lambda m: log(f"[{spec.key}] {m}")
        )
        summary = {name: summarize(r) for name, r in rows.items()}
        raw = {}
        for name, r in rows.items():
            path = self.figure_dir / f"{spec.key}-{name}-cases.csv"
            write_table_csv(r, path)
            raw[path.name] = f"{FIGURE_FOLDER}/{path.name}"
        results = self.figure_dir / f"{spec.key}-results.json"
        write_json({"dataset": spec.key, "models": self.models, "summary": summary, "seconds": seconds}, results)
        raw[results.name] = f"{FIGURE_FOLDER}/{results.name}"
        trained = {
            name: {
                k: m.get(k) for k in ("train_cases", "epochs", "best_epoch", "best_val_dice", "path", "architecture")
            }
            for name, m in zip(loaded, [m for m in self.models if not m.get("missing")])
        }
        return {
            **section,
            "summary": summary,
            "trained": trained,
            "labels": {name: _model_label(s, self.settings.samples, name) for name, s in loaded.items()},
            "class_names": list(self.segmenter.config.class_names),
            "cases": len(pairs),
            "all_cases": len(all_pairs),
            "leak_check": leak_text,
            "notes": notes,
            "seconds": seconds,
            "files": {"raw": raw},
        }
