"""Sampler oracle: a denoiser that returns the true target must give back z0.

With the exact prediction of z0 at every level (the true noise for eps, z0
itself for x0, a eps - s z0 for v) every x0 estimate equals z0, so any
correct sampler ends at z0 whatever K, schedule, parameterization or
dimension.
"""

import math

import pytest
import torch

from ldseg.config import DiffusionConfig, ScheduleConfig
from ldseg.diffusion.samplers import sample
from ldseg.diffusion.schedule import NoiseSchedule, standardize


def _oracle(schedule, z0):
    """The exact prediction in the schedule's parameterization, written out
    here from the definitions (not through the schedule's own code)."""

    def predict(z_t, t):
        ab = schedule.alpha_bar[t].to(z_t.dtype).view(-1, *([1] * (z_t.dim() - 1)))
        a, s = ab.sqrt(), (1 - ab).sqrt()
        eps = (z_t - a * z0) / s
        return {"eps": eps, "x0": z0.expand_as(z_t), "v": a * eps - s * z0}[schedule.prediction]

    return predict


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("sampler,k", [("ddim", 1), ("ddim", 2), ("ddim", 50), ("ddpm", 0), ("single", 0)])
def test_every_parameterization_and_sampler_recovers_z0(prediction, sampler, k):
    schedule = NoiseSchedule(ScheduleConfig(kind="cosine"), prediction=prediction)
    g = torch.Generator().manual_seed(3)
    z0 = standardize(torch.randn(SHAPES["2d"], generator=g, dtype=torch.float64))
    z_T = torch.randn(z0.shape, generator=g, dtype=torch.float64)
    out = sample(_oracle(schedule, z0), z_T, schedule, sampler=sampler, steps=max(k, 1), generator=g)
    torch.testing.assert_close(out, z0, atol=1e-9, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_training_target_and_split_invert_each_other(prediction):
    """target() is what split() reads back: from (z_t, target) the schedule
    returns the z0 and the noise that made z_t, at every level."""
    schedule = NoiseSchedule(ScheduleConfig(), prediction=prediction)
    g = torch.Generator().manual_seed(4)
    z0 = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(z0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 10, 500, 999, 1000])
    z_t = schedule.add_noise(z0, noise, t)
    x0, eps = schedule.split(z_t, schedule.target(z0, noise, t), t)
    torch.testing.assert_close(x0, z0, atol=1e-7, rtol=0)  # eps at t = T divides by a = 5e-5
    torch.testing.assert_close(eps, noise, atol=1e-9, rtol=0)


def test_v_prediction_is_well_conditioned_at_t_T_where_eps_prediction_is_not():
    """The reason to offer v: an error of 0.01 in the prediction at t = T
    moves eps-prediction's x0 by 0.01 / sqrt(ab_T) (about 200) but v's by 0.01."""
    z_T = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([1000])
    errors = {}
    for prediction in ("eps", "v"):
        s = NoiseSchedule(ScheduleConfig(), prediction=prediction)
        out = torch.zeros_like(z_T)
        errors[prediction] = (s.split(z_T, out + 0.01, t)[0] - s.split(z_T, out, t)[0]).abs().max().item()
    assert errors["v"] == pytest.approx(0.01, rel=1e-3)
    assert errors["eps"] > 100


def test_a_model_files_schedule_constants_come_from_its_config():
    """beta_start/beta_end/cosine_s/max_beta are model settings: a config
    that stores other values gets another schedule."""
    default = NoiseSchedule.of(DiffusionConfig(schedule="linear"))
    other = NoiseSchedule.of(DiffusionConfig(schedule="linear", beta_end=0.03))
    assert other.betas[-1].item() == pytest.approx(0.03) and default.betas[-1].item() == pytest.approx(0.02)
    clipped = NoiseSchedule.of(DiffusionConfig(max_beta=0.5))
    assert clipped.betas.max().item() == pytest.approx(0.5)


SHAPES = {"2d": (3, 1, 8, 8), "3d": (2, 2, 4, 6, 4)}


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("k", [1, 2, 5, 50, 1000])
@pytest.mark.parametrize("restandardize", [False, True])
def test_ddim_oracle_recovers_z0(kind, dims, k, restandardize):
    schedule = NoiseSchedule(ScheduleConfig(kind=kind))
    g = torch.Generator().manual_seed(k)
    z0 = standardize(torch.randn(SHAPES[dims], generator=g, dtype=torch.float64))
    z_T = torch.randn(z0.shape, generator=g, dtype=torch.float64)
    out = sample(_oracle(schedule, z0), z_T, schedule, sampler="ddim", steps=k, restandardize=restandardize)
    torch.testing.assert_close(out, z0, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("sampler", ["ddpm", "single"])
def test_ddpm_and_single_step_oracle_recover_z0(kind, dims, sampler):
    schedule = NoiseSchedule(ScheduleConfig(kind=kind))
    g = torch.Generator().manual_seed(0)
    z0 = standardize(torch.randn(SHAPES[dims], generator=g, dtype=torch.float64))
    z_T = torch.randn(z0.shape, generator=g, dtype=torch.float64)
    out = sample(_oracle(schedule, z0), z_T, schedule, sampler=sampler, generator=g, restandardize=False)
    torch.testing.assert_close(out, z0, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("k", [1, 2, 5, 50, 1000])
def test_ddim_oracle_float32(kind, k):
    """In float32 the error is float rounding amplified by 1/sqrt(ab_T) at most."""
    schedule = NoiseSchedule(ScheduleConfig(kind=kind))
    g = torch.Generator().manual_seed(1)
    z0 = standardize(torch.randn(4, 1, 16, 16, generator=g))
    z_T = torch.randn(z0.shape, generator=g)
    out = sample(_oracle(schedule, z0), z_T, schedule, sampler="ddim", steps=k, restandardize=True)
    bound = 8 * torch.finfo(torch.float32).eps / math.sqrt(float(schedule.alpha_bar[-1]))
    assert (out - z0).abs().max().item() < max(bound, 1e-5)


def test_ddim_with_eta_oracle():
    schedule = NoiseSchedule(ScheduleConfig(kind="cosine"))
    g = torch.Generator().manual_seed(2)
    z0 = standardize(torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64))
    out = sample(
        _oracle(schedule, z0),
        torch.randn(z0.shape, generator=g, dtype=torch.float64),
        schedule,
        sampler="ddim",
        steps=10,
        eta=1.0,
        generator=g,
        restandardize=False,
    )
    torch.testing.assert_close(out, z0, atol=1e-9, rtol=0)


def test_schedules_and_steps_follow_the_paper():
    lin = NoiseSchedule(ScheduleConfig(kind="linear"))
    cos = NoiseSchedule(ScheduleConfig(kind="cosine"))
    for s in (lin, cos):
        assert s.alpha_bar[0] == 1.0
        assert len(s.alpha_bar) == 1001
        assert torch.all(s.alpha_bar[1:] < s.alpha_bar[:-1])  # strictly decreasing
        assert 0 < s.alpha_bar[-1] < 1e-3  # nearly pure noise at T
    assert lin.betas[1].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    assert cos.ddim_timesteps(2) == [1000, 1]
    assert cos.ddim_timesteps(5) == [1000, 750, 500, 251, 1]  # round(linspace(1, 1000, 5))
    assert cos.ddim_timesteps(1) == [1000]
    assert cos.ddim_timesteps(1000) == list(range(1000, 0, -1))


def test_forward_noise_is_independent_per_sample_and_never_clipped():
    s = NoiseSchedule()
    z0 = torch.full((2, 1, 4, 4), 5.0)  # far outside [-1, 1]
    t = torch.tensor([1, 1])
    noise = torch.randn(2, 1, 4, 4)
    z_t = s.add_noise(z0, noise, t)
    assert z_t.max() > 4.5
    x0, _ = s.split(z_t, noise, t)
    torch.testing.assert_close(x0, z0)


def test_restandardize_is_per_sample():
    z = torch.stack([torch.randn(1, 8, 8) * 3 + 2, torch.randn(1, 8, 8) * 0.1 - 5])
    out = standardize(z)
    for i in range(2):
        assert out[i].mean().abs() < 1e-5
        assert (out[i].std(unbiased=False) - 1).abs() < 1e-4


def test_terminal_fraction_puts_that_share_of_training_levels_at_T_and_leaves_the_rest_uniform():
    s = NoiseSchedule()
    # without it the draw is exactly the uniform one (runs trained before stay reproducible)
    plain = s.sample_timesteps(64, torch.Generator().manual_seed(3))
    assert torch.equal(plain, torch.randint(1, s.T + 1, (64,), generator=torch.Generator().manual_seed(3)))
    t = s.sample_timesteps(20000, torch.Generator().manual_seed(0), terminal_fraction=0.5)
    at_t = (t == s.T).float().mean().item()
    assert 0.48 < at_t < 0.52  # 0.5 drawn at T, plus the uniform draw's own 1/T
    rest = t[t != s.T]
    assert rest.min() >= 1 and abs(rest.float().mean().item() - (s.T / 2)) < 15  # still uniform on 1..T-1
    again = s.sample_timesteps(20000, torch.Generator().manual_seed(0), terminal_fraction=0.5)
    assert torch.equal(t, again)
    assert torch.equal(s.sample_timesteps(8, torch.Generator(), terminal_fraction=1.0), torch.full((8,), s.T))
