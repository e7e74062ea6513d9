"""PNG preview of a segmentation result: image, overlay, uncertainty.

matplotlib is imported inside the functions (so ``import ldseg`` stays fast)
and used through its object-oriented API with the Agg canvas, never pyplot,
so no global backend is switched in the host application.
"""

import numpy as np

from ..errors import InputError
from .atomic import atomic_path

__all__ = ["save_preview_png", "pick_slice"]

OVERLAY_ALPHA = 0.4
PANEL_INCHES = 4.0
DPI = 100
#: Most pixels a side of the slice that is drawn (see _shown_slice).
MAX_SHOWN = 1024
# Used for classes beyond the given colour list.
_FALLBACK_COLORS = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
]


def pick_slice(labels):
    """Axial index (axis 0) with the most foreground; the middle if none."""
    counts = (np.asarray(labels) > 0).reshape(labels.shape[0], -1).sum(axis=1)
    if counts.max(initial=0) == 0:
        return labels.shape[0] // 2
    return int(np.argmax(counts))


def _check_inputs(image, labels, sd):
    """Return (image with channel axis, labels, sd) as arrays, checked (not
    converted: only the slice that is drawn is, see :func:`_shown_slice`)."""
    image = np.asarray(image)
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(f"preview needs 2D or 3D labels, got shape {labels.shape}")
    if image.ndim == labels.ndim:  # single channel given without its axis
        image = image[np.newaxis]
    if image.shape[1:] != labels.shape:
        raise InputError(f"preview image shape {image.shape} does not match labels shape {labels.shape}")
    if sd is not None:
        sd = np.asarray(sd)
        if sd.shape != labels.shape:
            raise InputError(f"preview SD shape {sd.shape} does not match labels shape {labels.shape}")
    return image, labels, sd


def _shown_slice(image, labels, sd):
    """The axial slice drawn (3D: the one with the most foreground), thinned
    to at most MAX_SHOWN pixels a side: the panels are ~400 pixels wide, and
    drawing a 4000 x 4000 slice in full would cost gigabytes."""
    if labels.ndim == 3:
        index = pick_slice(labels)
        image, labels = image[:, index], labels[index]
        sd = None if sd is None else sd[index]
    step = max(1, -(-max(labels.shape) // MAX_SHOWN))
    image = np.asarray(image[:, ::step, ::step], dtype=np.float64)
    labels = np.ascontiguousarray(labels[::step, ::step])
    sd = None if sd is None else np.asarray(sd[::step, ::step], dtype=np.float64)
    return image, labels, sd


def _display_image(channels):
    """(C, y, x) -> gray (y, x) or RGB (y, x, 3) in [0, 1], 1-99 % window."""
    shown = channels if channels.shape[0] == 3 else channels[:1]
    finite = shown[np.isfinite(shown)]
    if finite.size:
        low, high = np.percentile(finite, [1, 99])
    else:
        low, high = 0.0, 1.0
    if high <= low:  # flat image: avoid dividing by zero
        high = low + 1.0
    scaled = np.clip((np.nan_to_num(shown, nan=low) - low) / (high - low), 0, 1)
    return np.moveaxis(scaled, 0, -1) if shown.shape[0] == 3 else scaled[0]


def _class_color(colors, cls):
    if cls < len(colors):
        return tuple(c / 255.0 for c in colors[cls])
    return tuple(c / 255.0 for c in _FALLBACK_COLORS[cls % len(_FALLBACK_COLORS)])


def _overlay_rgba(labels, colors):
    """Filled class colours at OVERLAY_ALPHA; background transparent."""
    rgba = np.zeros(labels.shape + (4,), dtype=np.float64)
    for cls in np.unique(labels):
        if cls <= 0:
            continue
        rgba[labels == cls] = _class_color(colors, int(cls)) + (OVERLAY_ALPHA,)
    return rgba


def _draw_image(ax, shown, title):
    ax.imshow(shown, cmap=None if shown.ndim == 3 else "gray", interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()


def _draw_overlay(ax, shown, labels, colors):
    _draw_image(ax, shown, "segmentation")
    ax.imshow(_overlay_rgba(labels, colors), interpolation="nearest")
    for cls in np.unique(labels):
        mask = labels == cls
        # A contour needs both sides of the level somewhere in the slice.
        if cls > 0 and mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], linewidths=1.2, colors=[_class_color(colors, int(cls))])


def _draw_sd(fig, ax, sd):
    shown = ax.imshow(np.nan_to_num(sd), cmap="inferno", interpolation="nearest")
    ax.set_title("uncertainty (SD)")
    ax.set_axis_off()
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)


def save_preview_png(image, labels, sd, colors, path, *, title=None):
    """Write image | overlay | SD panels of one (axial) slice as a PNG.

    ``image`` is (C, *spatial) with C=3 shown as RGB and otherwise channel 0
    in gray; ``labels`` holds class indices; ``colors[i]`` is the RGB (0-255)
    of class ``i`` (class 0 is not drawn). 3D input shows the axial slice
    with the most foreground. The file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image, labels, sd = _shown_slice(*_check_inputs(image, labels, sd))
    shown = _display_image(image)

    n_panels = 2 if sd is None else 3
    # Panel height follows the slice's aspect so wide images leave no margins.
    aspect = labels.shape[0] / max(labels.shape[1], 1)
    height = float(np.clip(PANEL_INCHES * aspect, 2.0, 2.0 * PANEL_INCHES))
    fig = Figure(figsize=(PANEL_INCHES * n_panels, height + 0.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels)
    _draw_image(axes[0], shown, "image")
    _draw_overlay(axes[1], shown, labels, colors)
    if sd is not None:
        _draw_sd(fig, axes[2], sd)
    if title:
        fig.suptitle(title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
