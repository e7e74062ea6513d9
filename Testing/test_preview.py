"""Tests of ldseg.io.preview and ldseg.training.plots (small PNGs, Agg, fast)."""

import os

import numpy as np
import pytest
from skimage import io

from ldseg.errors import InputError, OutputError
from ldseg.io.preview import pick_slice, save_preview_png
from ldseg.training.plots import save_training_curves

GREEN = (0, 255, 0)
COLORS = [(0, 0, 0), GREEN, (0, 0, 255)]


def _greenish(png):
    """Mask of pixels clearly green (class 1 colour, filled or contour)."""
    rgb = png[..., :3].astype(int)
    return rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2]) > 60


def _disc_labels(shape, cls=1):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int64)
    inside = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (shape[0] / 4) ** 2
    labels[inside] = cls
    return labels


def test_preview_2d_rgb_shows_class_colour_in_overlay_panel(tmp_path):
    rng = np.random.default_rng(0)
    # Gray noise stored as RGB, so only the overlay can be green.
    image = np.repeat(rng.random((1, 40, 50)) * 255, 3, axis=0)
    labels = _disc_labels((40, 50))
    path = tmp_path / "preview.png"
    save_preview_png(image, labels, None, COLORS, path, title="case 1")
    assert path.stat().st_size > 0
    png = io.imread(path)
    green = _greenish(png)
    assert green.any()
    # Two panels side by side: the colour is in the right (overlay) half only.
    half = png.shape[1] // 2
    assert not green[:, :half].any() and green[:, half:].any()
    assert os.listdir(tmp_path) == ["preview.png"]


def test_preview_3d_gray_with_sd(tmp_path):
    image = np.random.default_rng(1).normal(size=(1, 6, 32, 32)).astype(np.float32)
    labels = np.zeros((6, 32, 32), dtype=np.int64)
    labels[4] = _disc_labels((32, 32))
    labels[1, :3, :3] = 2
    sd = np.abs(np.random.default_rng(2).normal(size=(6, 32, 32)))
    path = tmp_path / "preview3d.png"
    save_preview_png(image, labels, sd, COLORS, path)
    png = io.imread(path)
    assert path.stat().st_size > 0
    assert png.shape[1] > png.shape[0] * 2  # three panels wide
    green = _greenish(png)
    third = png.shape[1] // 3
    assert green[:, third : 2 * third].any() and not green[:, :third].any()


def test_pick_slice():
    labels = np.zeros((5, 4, 4), dtype=np.int64)
    assert pick_slice(labels) == 2
    labels[3, :2] = 1
    labels[1, 0, 0] = 2
    assert pick_slice(labels) == 3


def test_preview_missing_folder_leaves_nothing(tmp_path):
    target = tmp_path / "missing" / "p.png"
    with pytest.raises(OutputError):
        save_preview_png(np.zeros((1, 8, 8)), np.zeros((8, 8), int), None, COLORS, target)
    assert os.listdir(tmp_path) == []


def test_preview_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(InputError):
        save_preview_png(np.zeros((1, 8, 8)), np.zeros((8, 9), int), None, COLORS, tmp_path / "p.png")
    assert os.listdir(tmp_path) == []


def test_training_curves_png(tmp_path):
    rows = [
        {
            "epoch": e,
            "loss": 1.0 / e,
            "loss_ce": 0.6 / e,
            "loss_dice": 0.3 / e,
            "loss_mse": 0.1 / e,
            "val_dice": 0.5 + 0.04 * e,
            "seconds": 3.0,
        }
        for e in range(1, 8)
    ]
    rows[2].pop("val_dice")  # missing values are skipped
    path = tmp_path / "curves.png"
    save_training_curves(rows, path)
    assert path.stat().st_size > 0
    assert io.imread(path).ndim == 3
    with pytest.raises(OutputError):
        save_training_curves(rows, tmp_path / "missing" / "c.png")
    assert os.listdir(tmp_path) == ["curves.png"]
