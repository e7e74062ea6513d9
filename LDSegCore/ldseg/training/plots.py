"""Training-curve PNG: losses and validation Dice against epoch.

matplotlib is imported inside the function (so ``import ldseg`` stays fast)
and used without pyplot, so no global backend is switched.
"""

import math

from ..io.atomic import atomic_path

__all__ = ["save_training_curves"]


def _series(log_rows, key, positive_only=False):
    """(epochs, values) of one column, skipping missing or unplottable values."""
    epochs, values = [], []
    for position, row in enumerate(log_rows, start=1):
        value = row.get(key)
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        # A log axis cannot show zero or negative losses.
        if not math.isfinite(value) or (positive_only and value <= 0):
            continue
        epochs.append(row.get("epoch", position))
        values.append(value)
    return epochs, values


def _loss_keys(log_rows):
    """Columns named loss*, 'loss' (the total) first."""
    keys = []
    for row in log_rows:
        keys.extend(k for k in row if k.startswith("loss") and k not in keys)
    return sorted(keys, key=lambda k: (k != "loss", keys.index(k)))


def _draw_losses(ax, log_rows):
    drawn = False
    for key in _loss_keys(log_rows):
        epochs, values = _series(log_rows, key, positive_only=True)
        if values:
            ax.plot(
                epochs,
                values,
                marker="." if len(values) < 30 else None,
                label=key,
                linewidth=2.0 if key == "loss" else 1.2,
            )
            drawn = True
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no loss values", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("training losses")
    ax.grid(True, which="both", alpha=0.3)


def _draw_dice(ax, log_rows):
    epochs, values = _series(log_rows, "val_dice")
    if values:
        ax.plot(epochs, values, marker="." if len(values) < 30 else None, color="tab:green")
        best = max(range(len(values)), key=values.__getitem__)
        ax.scatter(
            [epochs[best]],
            [values[best]],
            color="tab:red",
            zorder=3,
            label=f"best {values[best]:.4f} (epoch {epochs[best]})",
        )
        ax.legend(fontsize="small", loc="lower right")
    else:
        ax.text(0.5, 0.5, "no validation Dice", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice")
    ax.set_title("validation Dice")
    ax.grid(True, alpha=0.3)


def save_training_curves(log_rows, path):
    """Write losses (log y) | validation Dice against epoch as a PNG.

    Rows look like ``{"epoch": 1, "loss": .., "loss_ce": .., "val_dice": ..}``;
    missing values are skipped. The file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    log_rows = list(log_rows)
    fig = Figure(figsize=(10, 4), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    loss_ax, dice_ax = fig.subplots(1, 2)
    _draw_losses(loss_ax, log_rows)
    _draw_dice(dice_ax, log_rows)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
