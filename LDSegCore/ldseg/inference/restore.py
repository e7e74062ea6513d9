"""Results from the model grid back to the input grid, slab by slab.

The model works on its small fixed grid, so for a large input (a 4000 x 4000
RGB slide, a 512^3 CT) the memory goes into the input-sized results: C class
probabilities, the SD map, the class map. Instead of interpolating the whole
(C, *input) block at once (with several full-size temporaries for clamping,
normalizing and the arg-max), the output is produced in slabs along the first
spatial axis, each bounded by a memory budget, and written straight into the
result arrays.

Linear resampling is separable, so a slab is exact: the first axis is
interpolated by hand for just the slab's rows, the remaining axes by
``F.interpolate`` with the same sizes as the whole-volume call; the result
matches one-piece interpolation of the whole grid to float rounding (Testing/test_fastpath.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.preprocess import smallest_integer_dtype

#: Working memory for restoring when none is given (bytes).
DEFAULT_RESTORE_BUDGET = 256e6


@dataclass
class RestoredResult:
    probabilities: np.ndarray  # (C, *shape) float32, non-negative, sums to 1 over C
    sd: np.ndarray  # (*shape) float32, >= 0
    classes: np.ndarray  # (*shape) arg-max of the probabilities; uint8 up to 256 classes


def linear_weights(in_size: int, out_size: int, start: int, stop: int):
    """Source indices and weights of output positions ``start..stop-1`` for
    linear resampling with align_corners=False, as PyTorch computes them."""
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(start, stop, dtype=np.float32)
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    frac = np.clip(src - low, 0, 1).astype(np.float32)
    high = np.where(low < in_size - 1, low + 1, low)
    return low, high, frac


def resample_slab(grid_values: torch.Tensor, shape: Sequence[int], start: int, stop: int) -> torch.Tensor:
    """Rows ``start..stop-1`` (first spatial axis) of ``grid_values``
    (C, *grid) linearly resampled to the spatial ``shape``: (C, stop-start, *shape[1:])."""
    shape = tuple(int(s) for s in shape)
    grid = grid_values.shape[1:]
    if tuple(grid) == shape:
        return grid_values[:, start:stop].to(torch.float32, copy=True)  # callers modify it in place
    low, high, frac = linear_weights(grid[0], shape[0], start, stop)
    device = grid_values.device
    w1 = torch.from_numpy(frac).to(device).view(1, -1, *([1] * (len(shape) - 1)))
    v0 = grid_values[:, torch.from_numpy(low).to(device)].float()
    v1 = grid_values[:, torch.from_numpy(high).to(device)].float()
    rows = v0 * (1 - w1) + v1 * w1  # (C, rows, *grid[1:])
    rest = shape[1:]
    if tuple(rows.shape[2:]) == rest:
        return rows
    c, n = rows.shape[:2]
    mode = "bilinear" if len(rest) == 2 else "linear"
    flat = F.interpolate(rows.reshape(1, c * n, *rows.shape[2:]), size=rest, mode=mode, align_corners=False)
    return flat.reshape(c, n, *rest)


def slab_rows(shape: Sequence[int], bytes_per_voxel: int, budget: float) -> int:
    """Rows of the first axis per slab so that a slab's working memory stays
    within ``budget`` (at least one row)."""
    row_voxels = int(np.prod(shape[1:], dtype=np.int64))
    return int(max(1, min(shape[0], budget // max(1, row_voxels * bytes_per_voxel))))


def slabs(length: int, rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, length, rows):
        yield start, min(length, start + rows)


def normalize_probabilities(p: torch.Tensor) -> torch.Tensor:
    """Clamp to >= 0 and rescale to sum 1 over the classes (uniform where all
    are zero)."""
    p = p.clamp_min_(0)
    total = p.sum(dim=0, keepdim=True)
    p.div_(total.clamp_min(1e-12))
    return torch.where(total > 0, p, torch.full_like(p[:1], 1.0 / p.shape[0]))


@torch.inference_mode()
def restore_result(
    mean: torch.Tensor, sd_per_class: torch.Tensor | None, shape: Sequence[int], budget: float = DEFAULT_RESTORE_BUDGET
) -> RestoredResult:
    """Mean class probabilities (C, *grid) and their per-class SD (C, *grid;
    None: zero) on the input's spatial ``shape``, within ``budget`` bytes of
    working memory besides the returned arrays.

    The SD map is the largest per-class SD at each model-grid voxel,
    resampled linearly (as before slabs existed), clamped to >= 0.
    """
    shape = tuple(int(s) for s in shape)
    if mean.dim() != len(shape) + 1:
        raise ValueError(f"probabilities of shape {tuple(mean.shape)} do not fit spatial shape {shape}")
    c = mean.shape[0]
    probabilities = np.empty((c, *shape), dtype=np.float32)
    sd = np.zeros(shape, dtype=np.float32)
    # 1 byte per voxel, not 8: for a 512^3 volume the class map is 128 MB, not 1 GB
    classes = np.empty(shape, dtype=smallest_integer_dtype([0, c - 1]))
    sd_grid = sd_per_class.amax(dim=0, keepdim=True) if sd_per_class is not None else None
    # per output voxel: C interpolated + C for the where(), the total, the
    # SD, 8 bytes of arg-max; x 4 bytes, and twice for the slab's inputs
    rows = slab_rows(shape, 4 * (2 * c + 4) * 2, budget)
    for start, stop in slabs(shape[0], rows):
        p = normalize_probabilities(resample_slab(mean, shape, start, stop))
        classes[start:stop] = p.argmax(dim=0).cpu().numpy()
        probabilities[:, start:stop] = p.cpu().numpy()
        del p
        if sd_grid is not None:
            sd[start:stop] = resample_slab(sd_grid, shape, start, stop)[0].clamp_min(0).cpu().numpy()
    return RestoredResult(probabilities=probabilities, sd=sd, classes=classes)
