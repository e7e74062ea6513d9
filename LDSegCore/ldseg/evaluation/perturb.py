"""Test-time image perturbations for robustness evaluation.

The LDSeg paper's noise experiment (eq. 19, Fig. 8): I_sigma = I + N(0, sigma)
on images whose intensities lie in [0, 1]. Our images come in their own
units (MR values, 8-bit RGB), so an image is first min-max scaled to [0, 1]
over all of its voxels and channels together (keeping the ratios between
RGB channels), then noise is added. The model's own intensity normalization
then runs on the noisy image, exactly as it would on a user's image.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["scale_to_unit", "add_gaussian_noise"]


def scale_to_unit(array) -> np.ndarray:
    """Min-max scale the whole array to [0, 1] (float32); a flat image is all 0."""
    array = np.asarray(array, dtype=np.float64)
    if array.size == 0 or not np.isfinite(array).all():
        raise InputError("cannot scale an empty image or one with NaN/inf values")
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros(array.shape, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def add_gaussian_noise(array, sigma: float, seed) -> np.ndarray:
    """``scale_to_unit(array)`` plus Gaussian noise of standard deviation
    ``sigma`` (float32, not clipped, as in the paper's eq. 19).

    ``seed`` (an int or a sequence of ints, e.g. ``(base, case, level)``)
    fixes the noise, so every model sees the same noisy image.
    """
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma < 0:
        raise InputError(f"noise sigma must be >= 0, not {sigma}")
    scaled = scale_to_unit(array)
    if sigma == 0:
        return scaled
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(scaled.shape) * sigma
    return (scaled + noise).astype(np.float32)
