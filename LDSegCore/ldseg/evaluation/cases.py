"""Per-case evaluation table, summary statistics and their files.

Pure functions on arrays and rows (dicts); no model code. Files are written
atomically (temporary file in the same folder, then ``os.replace``) so a
crash or a full disk never leaves a half-written report behind.
"""

import csv
import json
import math
from numbers import Number
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from .metrics import dice_per_class, hausdorff95_per_class, iou_per_class

__all__ = [
    "evaluate_case",
    "summarize",
    "write_table_csv",
    "write_json",
    "format_summary",
]

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


# ---------------------------------------------------------------- per case


def evaluate_case(name, pred, ref, spacing, class_names):
    """Dice, IoU and HD95 of every foreground class of one case, plus means.

    ``class_names[i]`` names class ``i``; class 0 is background and is left
    out of both the per-class columns and the means.
    """
    class_names = [str(n) for n in class_names]
    num_classes = len(class_names)
    dice = dice_per_class(pred, ref, num_classes)
    iou = iou_per_class(pred, ref, num_classes)
    hd95 = hausdorff95_per_class(pred, ref, num_classes, spacing)
    row = {"case": str(name)}
    for cls in range(1, num_classes):
        row[f"dice_{class_names[cls]}"] = float(dice[cls])
        row[f"iou_{class_names[cls]}"] = float(iou[cls])
        row[f"hd95_{class_names[cls]}"] = float(hd95[cls])
    foreground = slice(1, num_classes)
    row["dice_mean"] = _mean_or_nan(dice[foreground])
    row["iou_mean"] = _mean_or_nan(iou[foreground])
    # An inf HD95 in any class makes the case mean inf, which summarize counts.
    row["hd95_mean"] = _mean_or_nan(hd95[foreground])
    return row


def _mean_or_nan(values):
    return float(np.mean(values)) if len(values) else float("nan")


# ---------------------------------------------------------------- summary


def _is_number(value):
    return isinstance(value, Number) and not isinstance(value, bool)


def _metric_columns(rows):
    """Numeric columns other than 'case', in order of first appearance."""
    columns = []
    for row in rows:
        for key, value in row.items():
            if key != "case" and key not in columns and _is_number(value):
                columns.append(key)
    return columns


def _bootstrap_ci(values, resamples, seed):
    """Percentile bootstrap 95% interval of the mean over cases."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(resamples, values.size))
    means = values[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _summarize_column(values, resamples, seed):
    values = np.asarray(values, dtype=np.float64)
    n_inf = int(np.isinf(values).sum())
    finite = values[np.isfinite(values)]
    stats = {
        "mean": math.nan,
        "sd": math.nan,
        "median": math.nan,
        "ci95_low": math.nan,
        "ci95_high": math.nan,
        "n": int(finite.size),
        "n_inf": n_inf,
    }
    if finite.size == 0:
        return stats
    stats["mean"] = float(finite.mean())
    # Sample standard deviation (ddof=1): the cases are a sample.
    stats["sd"] = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    stats["median"] = float(np.median(finite))
    stats["ci95_low"], stats["ci95_high"] = _bootstrap_ci(finite, resamples, seed)
    return stats


def summarize(rows, *, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """Statistics of every metric column over the cases.

    Per column: mean, sd (ddof=1), median, percentile-bootstrap 95% CI of the
    mean, n (finite values used) and n_inf (infinite values, e.g. HD95 of a
    class missing from one map, left out of the statistics). nan values
    (missing metrics) are left out and not counted.
    """
    rows = list(rows)
    summary = {}
    for column in _metric_columns(rows):
        values = [row[column] for row in rows if _is_number(row.get(column))]
        summary[column] = _summarize_column(values, resamples, seed)
    return summary


def format_summary(summary):
    """Short text table: one line per metric."""
    header = f"{'metric':<24}{'n':>5}{'mean':>10}{'sd':>10}{'median':>10}{'95% CI':>22}{'n_inf':>7}"
    lines = [header, "-" * len(header)]
    for column, s in summary.items():
        ci = f"[{_fmt(s['ci95_low'])}, {_fmt(s['ci95_high'])}]"
        lines.append(
            f"{column:<24}{s['n']:>5}{_fmt(s['mean']):>10}"
            f"{_fmt(s['sd']):>10}{_fmt(s['median']):>10}{ci:>22}"
            f"{s.get('n_inf', 0):>7}"
        )
    return "\n".join(lines)


def _fmt(value):
    return "nan" if value is None or math.isnan(value) else f"{value:.4f}"


# ---------------------------------------------------------------- files


def _csv_cell(value):
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # full precision; 'inf' / 'nan' as text
    return value


def write_table_csv(rows, path):
    """Write rows (dicts) as CSV; columns in order of first appearance."""
    rows = list(rows)
    columns = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    if "case" in columns:
        columns.insert(0, columns.pop(columns.index("case")))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _jsonable(obj):
    """Plain JSON types; nan -> null and +-inf -> "inf"/"-inf" so the file
    stays valid JSON for strict readers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj, path):
    """Write ``obj`` as indented JSON (see :func:`_jsonable` for non-finite)."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
