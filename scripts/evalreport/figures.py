"""The report's PNG figures: Dice and time against sampling steps, Dice
against image noise, and one case's image / label / segmentation / SD.

matplotlib's object API with the Agg canvas (no pyplot, no global backend);
files are written atomically.
"""

from __future__ import annotations

import math

import numpy as np

from ldseg.io.atomic import atomic_path
from ldseg.io.preview import pick_slice

DPI = 110
LDSEG_COLOR = "tab:blue"
BASELINE_COLOR = "tab:orange"


def _figure(width, height, panels):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels)


def _save(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def save_steps_figure(steps_rows, subset_rows, title, path):
    """Dice | seconds per case against DDIM steps K (log x).

    ``steps_rows`` is summaries.steps_summary() on all cases; ``subset_rows``
    the same on the slow-K subset (every K on the same cases), or None.
    """
    fig, (dice_ax, time_ax) = _figure(10, 4, 2)
    n_all = max(r["cases"] for r in steps_rows)
    series = [(f"all {n_all} cases", steps_rows, "o-")]
    if subset_rows is not None:
        n = subset_rows[0]["cases"]
        series.append((f"first {n} case{'s' if n > 1 else ''} (every K)", subset_rows, "s--"))
    for label, rows, style in series:
        full = [r for r in rows if r["sampler"] == "ddim" and not r["subset"]]
        ks = [r["steps"] for r in full]
        dice_ax.plot(ks, [r["dice"]["mean"] for r in full], style, label=label)
        time_ax.plot(ks, [r["seconds"]["mean"] for r in full], style, label=label)
    single = next((r for r in steps_rows if r["sampler"] == "single"), None)
    if single is not None and math.isfinite(single["dice"]["mean"]):
        dice_ax.axhline(
            single["dice"]["mean"], color="gray", linestyle=":", label=f"single-step estimate ({n_all} cases)"
        )
        time_ax.axhline(
            single["seconds"]["mean"], color="gray", linestyle=":", label=f"single-step estimate ({n_all} cases)"
        )
    for ax, ylabel in ((dice_ax, "Dice (mean foreground, 1 sample)"), (time_ax, "seconds per case")):
        ax.set_xscale("log")
        ax.set_xlabel("DDIM sampling steps K")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    time_ax.set_yscale("log")
    fig.suptitle(title)
    _save(fig, path)


def save_noise_figure(noise, labels, title, path):
    """Dice (mean, 95% CI of the mean) against added noise sigma per model."""
    fig, ax = _figure(5.5, 4, 1)
    styles = {"ldseg": ("-", "o", LDSEG_COLOR), "baseline": ("--", "s", BASELINE_COLOR)}
    for model, summary in noise.items():
        line, marker, color = styles[model]
        sigmas = [lv["sigma"] for lv in summary["levels"]]
        means = np.array([lv["dice"]["mean"] for lv in summary["levels"]])
        low = np.array([lv["dice"]["ci95_low"] for lv in summary["levels"]])
        high = np.array([lv["dice"]["ci95_high"] for lv in summary["levels"]])
        ax.plot(sigmas, means, linestyle=line, marker=marker, color=color, label=labels[model])
        if np.isfinite(low).all() and np.isfinite(high).all():
            ax.fill_between(sigmas, low, high, color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("added Gaussian noise σ (image scaled to [0, 1])")
    ax.set_ylabel("Dice (mean foreground)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title, fontsize="medium")
    _save(fig, path)


def _display(channels):
    """(C, y, x) -> gray (y, x) or RGB (y, x, 3) in [0, 1], 1-99 % window."""
    shown = channels if channels.shape[0] == 3 else channels[:1]
    low, high = np.percentile(shown, [1, 99])
    high = high if high > low else low + 1.0
    scaled = np.clip((shown - low) / (high - low), 0, 1)
    return np.moveaxis(scaled, 0, -1) if shown.shape[0] == 3 else scaled[0]


def _class_rgba(classes, colors, alpha=0.45):
    rgba = np.zeros(classes.shape + (4,))
    for cls in range(1, len(colors)):
        rgba[classes == cls] = [c / 255 for c in colors[cls]] + [alpha]
    return rgba


def save_example_figure(example, colors, title, path):
    """image | label | segmentation | SD map | wrong voxels of one case
    (3D: the axial slice with the most labeled voxels)."""
    image, ref, pred, sd = example.image, example.ref, example.pred, example.sd
    if ref.ndim == 3:
        k = pick_slice(ref)
        image, ref, pred, sd = image[:, k], ref[k], pred[k], sd[k]
        title = f"{title} (axial slice {k})"
    shown = _display(np.asarray(image, dtype=np.float64))
    aspect = ref.shape[0] / max(ref.shape[1], 1)
    fig, axes = _figure(15, float(np.clip(3 * aspect, 2.0, 6.0)) + 0.9, 5)
    gray = None if shown.ndim == 3 else "gray"
    for ax, panel in zip(axes, ("image", "label", "segmentation (mean of samples)")):
        ax.imshow(shown, cmap=gray, interpolation="nearest")
        ax.set_title(panel, fontsize="medium")
    axes[1].imshow(_class_rgba(ref, colors), interpolation="nearest")
    axes[2].imshow(_class_rgba(pred, colors), interpolation="nearest")
    sd_image = axes[3].imshow(sd, cmap="inferno", interpolation="nearest")
    axes[3].set_title("uncertainty (SD)", fontsize="medium")
    fig.colorbar(sd_image, ax=axes[3], fraction=0.046, pad=0.04)
    axes[4].imshow(pred != ref, cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    axes[4].set_title("wrong voxels (white)", fontsize="medium")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    _save(fig, path)
