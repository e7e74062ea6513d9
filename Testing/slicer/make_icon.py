"""Draws the module icon (128x128 PNG): a segmented blob whose rim glows with the Inferno colors of
the uncertainty map. Run: python Testing/slicer/make_icon.py"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "LDSegExtension" / "LDSeg"))
ICON = HERE.parents[1] / "LDSegExtension" / "LDSeg" / "Resources" / "Icons" / "LDSeg.png"


def infernoTable():
    from LDSegLib.colormaps import INFERNO_POINTS  # plain data; importing it needs no Slicer

    pts = np.array(INFERNO_POINTS, float)
    x = np.linspace(0, len(pts) - 1, 256)
    return np.stack([np.interp(x, np.arange(len(pts)), pts[:, c]) for c in range(3)], axis=1)


def makeIcon(path=ICON, size=128):
    s = 4 * size  # supersampled, then reduced (anti-aliasing)
    y, x = (np.mgrid[0:s, 0:s] + 0.5) / s * 2 - 1
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    boundary = 0.58 + 0.07 * np.sin(3 * theta + 0.6) + 0.04 * np.cos(5 * theta)  # a gland-like blob
    d = r - boundary  # signed distance (approx.)
    rgba = np.zeros((s, s, 4))
    # rounded-square dark tile
    corner = 0.22
    q = np.maximum(np.abs(np.stack([x, y])) - (1 - corner - 0.02), 0)
    tile = np.hypot(q[0], q[1]) <= corner
    rgba[tile] = (0.07, 0.08, 0.12, 1.0)
    # the uncertainty glow: SD peaks on the boundary and fades away from it
    sd = np.exp(-((d / 0.09) ** 2))
    lut = infernoTable() / 255.0
    glow = lut[np.clip((sd * 255).astype(int), 0, 255)]
    alpha = np.clip(sd * 1.2, 0, 1)[..., None]
    rgba[..., :3] = np.where(tile[..., None], rgba[..., :3] * (1 - alpha) + glow * alpha, rgba[..., :3])
    # the segment: teal fill inside, a crisp outline
    inside = (d < -0.045) & tile
    rgba[inside, :3] = rgba[inside, :3] * 0.35 + np.array([0.10, 0.75, 0.70]) * 0.65
    outline = (np.abs(d + 0.045) < 0.012) & tile
    rgba[outline, :3] = (0.85, 1.0, 0.95)
    image = (rgba.reshape(size, 4, size, 4, 4).mean(axis=(1, 3)) * 255).round().astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, "RGBA").save(path)
    return path


if __name__ == "__main__":
    print(makeIcon())
