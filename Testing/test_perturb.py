"""Noise injection for the robustness evaluation: scaled, seeded, unclipped."""

import numpy as np
import pytest

from ldseg.config import Preprocessing
from ldseg.data.preprocess import normalize_intensity
from ldseg.errors import InputError
from ldseg.evaluation.perturb import add_gaussian_noise, scale_to_unit


def test_scale_to_unit_over_all_channels():
    rgb = np.stack([np.full((3, 4), 10.0), np.full((3, 4), 60.0), np.linspace(20, 110, 12).reshape(3, 4)])
    scaled = scale_to_unit(rgb)
    assert scaled.dtype == np.float32
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    # one min and max for the whole image: channel 1 keeps its place between the others
    assert scaled[0, 0, 0] == 0.0
    assert scaled[1, 0, 0] == pytest.approx(50 / 100)
    assert scale_to_unit(np.full((2, 2), 7.0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_noise_is_deterministic_per_seed_and_has_the_asked_sd():
    image = np.random.default_rng(0).normal(500.0, 120.0, size=(1, 40, 50, 30))
    noisy = add_gaussian_noise(image, 0.1, seed=(0, 3, 100))
    again = add_gaussian_noise(image, 0.1, seed=(0, 3, 100))
    other = add_gaussian_noise(image, 0.1, seed=(0, 4, 100))
    assert noisy.dtype == np.float32 and noisy.shape == image.shape
    assert np.array_equal(noisy, again)
    assert not np.array_equal(noisy, other)
    residual = noisy.astype(np.float64) - scale_to_unit(image)
    assert residual.mean() == pytest.approx(0.0, abs=0.003)
    assert residual.std() == pytest.approx(0.1, rel=0.02)
    # not clipped: noise pushes some values outside [0, 1], as in the paper
    assert noisy.min() < 0.0 and noisy.max() > 1.0


def test_zero_noise_is_the_scaled_image_and_bad_sigma_is_refused():
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(add_gaussian_noise(image, 0.0, seed=0), scale_to_unit(image))
    with pytest.raises(InputError):
        add_gaussian_noise(image, -0.1, seed=0)
    with pytest.raises(InputError):
        scale_to_unit(np.array([1.0, np.nan]))


@pytest.mark.parametrize("method", ["minmax", "percentile", "zscore"])
def test_model_normalization_undoes_the_scaling(method):
    # The report reuses the clean run for sigma = 0 because of this.
    image = np.random.default_rng(2).gamma(2.0, 150.0, size=(1, 12, 20, 16)) + 40.0
    pre = Preprocessing(dims=3, channels=1, grid=(8, 8, 8), intensity=method)
    raw = normalize_intensity(image.astype(np.float32), pre)
    scaled = normalize_intensity(add_gaussian_noise(image, 0.0, seed=0), pre)
    assert np.allclose(raw, scaled, atol=1e-5)
