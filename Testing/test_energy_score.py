"""The energy score that trains LDSeg's step from t = T to sample (``--energy-weight``).

Why it is right: it is a proper scoring rule, so samples drawn from the
target's distribution score better than every sample at that distribution's
mean, which is what an MSE-trained step from pure noise returns; the squared
error ranks the two the other way round.
"""

import pytest
import torch

from ldseg.training.losses import energy_score


def _targets_and_samples(b=4000, d=64, m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(b, d, generator=g)  # what a condition (the image) says
    target = centre + torch.randn(b, d, generator=g)  # the label's latent: the centre plus what varies
    drawn = centre + torch.randn(m, b, d, generator=g)  # samples of the right distribution
    mean = centre.expand(m, b, d)  # every sample at the distribution's mean
    return target, drawn, mean


def test_samples_of_the_right_distribution_beat_samples_at_its_mean():
    target, drawn, mean = _targets_and_samples()
    assert energy_score(drawn, target) < energy_score(mean, target) - 0.2  # about 0.71 against 1.0
    # the squared error prefers the mean: why an MSE alone gives near-identical samples
    assert ((mean - target) ** 2).mean() < ((drawn - target) ** 2).mean()


def test_too_wide_samples_score_worse_than_the_right_ones():
    target, drawn, mean = _targets_and_samples()
    wide = mean + 2.0 * (drawn - mean)
    assert energy_score(drawn, target) < energy_score(wide, target)


def test_the_score_is_per_target_and_does_not_grow_with_the_latent_size():
    for d in (16, 256):
        target, drawn, _ = _targets_and_samples(b=2000, d=d)
        assert energy_score(drawn, target).item() == pytest.approx(2**0.5 / 2, abs=0.03)


def test_identical_samples_have_a_finite_gradient_and_one_sample_is_refused():
    target = torch.zeros(3, 2, 4, 4)
    samples = torch.zeros(2, 3, 2, 4, 4, requires_grad=True)
    energy_score(samples, target).backward()
    assert torch.isfinite(samples.grad).all()
    with pytest.raises(ValueError, match="at least two samples"):
        energy_score(torch.zeros(1, 3, 2, 4, 4), target)
