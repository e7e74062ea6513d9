"""Noise schedules, forward noising and the samplers of LDSeg.

Our own small scheduler (library schedulers clip x0 and, for DDIM with K < T,
disagree between their timestep lists and step sizes; see the method notes).

Conventions:
- Noise levels are indexed t = 0..T with alpha_bar[0] = 1 (clean); training
  draws t uniformly from 1..T (paper, Algorithm 1).
- The latent is never clipped. Samplers optionally re-standardize each
  sample's latent (zero mean, unit SD) after every step, as the authors' code
  does, but per sample, so samples stay independent.
- All coefficients are computed in float64 and applied in the latent's dtype,
  so a float64 latent gives float64-exact sampling (used by the oracle test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

#: A denoiser as the samplers see it: (z_t, t) -> predicted noise. ``t`` is a
#: long tensor of shape (B,). The image condition is bound in by the caller.
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ddpm", "single")


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str = "cosine"
    steps: int = 1000  # T
    beta_start: float = 1e-4  # linear schedule
    beta_end: float = 0.02
    cosine_s: float = 0.008
    max_beta: float = 0.999  # Nichol & Dhariwal's clip, keeps alpha_bar[T] > 0


class NoiseSchedule:
    """alpha_bar over t = 0..T, computed in float64."""

    def __init__(self, config: ScheduleConfig = ScheduleConfig()):
        if config.kind not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {config.kind!r} (known: {', '.join(SCHEDULES)})")
        if config.steps < 1:
            raise ValueError("the number of diffusion steps T must be at least 1")
        self.config = config
        self.T = int(config.steps)
        T = self.T
        if config.kind == "linear":
            betas = torch.linspace(config.beta_start, config.beta_end, T, dtype=torch.float64)
        else:
            t = torch.arange(T + 1, dtype=torch.float64)
            f = torch.cos((t / T + config.cosine_s) / (1 + config.cosine_s) * math.pi / 2) ** 2
            ab = f / f[0]
            betas = (1 - ab[1:] / ab[:-1]).clamp(min=0.0, max=config.max_beta)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        self.alpha_bar = torch.cumprod(1 - self.betas, dim=0)  # alpha_bar[0] = 1

    # -- helpers -------------------------------------------------------------
    def _coef(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Coefficient ``name`` at t, shaped to broadcast over a (B, C, *spatial) tensor."""
        v = self._on(name, like.device)[t.to(like.device)]
        return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def _on(self, name: str, device: torch.device) -> torch.Tensor:
        """A float64 coefficient table on ``device``, copied there once: a
        fresh host-to-GPU copy in every sampling step would make the host
        wait for the GPU each time."""
        cache = self.__dict__.setdefault("_device_tables", {})
        key = (name, str(device))
        if key not in cache:
            ab = self.alpha_bar
            table = {"sqrt_ab": ab.sqrt(), "sqrt_1m_ab": (1 - ab).sqrt()}[name]
            cache[key] = table.to(device)
        return cache[key]

    def sample_timesteps(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """t ~ U{1..T}, one per sample."""
        return torch.randint(1, self.T + 1, (batch,), generator=generator).to(device)

    def add_noise(self, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process: z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps."""
        return self._coef("sqrt_ab", t, z0) * z0 + self._coef("sqrt_1m_ab", t, z0) * noise

    def predict_x0(self, z_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 estimate from the predicted noise (SDSeg's latent estimation)."""
        return (z_t - self._coef("sqrt_1m_ab", t, z_t) * eps) / self._coef("sqrt_ab", t, z_t)

    def ddim_timesteps(self, k: int) -> list[int]:
        """K evenly spaced steps between 1 and T inclusive, rounded (paper, after
        Nichol & Dhariwal), in sampling order. K = 1 is the single step from T."""
        if k < 1:
            raise ValueError("the number of sampling steps must be at least 1")
        if k > self.T:
            raise ValueError(f"the number of sampling steps ({k}) exceeds T = {self.T}")
        if k == 1:
            return [self.T]
        steps = torch.linspace(1, self.T, k, dtype=torch.float64).round().long().tolist()
        return sorted(set(steps), reverse=True)


def standardize(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample zero mean and unit SD over all non-batch dims."""
    dims = tuple(range(1, z.dim()))
    mean = z.mean(dim=dims, keepdim=True)
    std = z.std(dim=dims, keepdim=True, unbiased=False)
    return (z - mean) / std.clamp_min(eps)  # clamp, not add: a unit-SD latent stays exact


def _randn_like(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise shaped like z, drawn on the generator's device (a CPU
    generator gives the same stream on every device; its draws reach a GPU by
    a non-blocking copy, so a sampling step does not wait for the GPU)."""
    device = generator.device if generator is not None else z.device
    noise = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=device)
    if noise.device == z.device:
        return noise
    if z.device.type == "cuda":
        return noise.pin_memory().to(z.device, non_blocking=True)
    return noise.to(z.device)


def _time(t: int, z: torch.Tensor) -> torch.Tensor:
    return torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)


def ddim_step(
    schedule: NoiseSchedule,
    z_t: torch.Tensor,
    eps: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step from level t to level t_prev < t (t_prev = 0 returns x0)."""
    ab_t = float(schedule.alpha_bar[t])
    ab_p = float(schedule.alpha_bar[t_prev])
    x0 = (z_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    sigma = 0.0
    if eta > 0 and t_prev > 0:
        sigma = eta * math.sqrt((1 - ab_p) / (1 - ab_t)) * math.sqrt(max(0.0, 1 - ab_t / ab_p))
    direction = math.sqrt(max(0.0, 1 - ab_p - sigma**2))
    z = math.sqrt(ab_p) * x0 + direction * eps
    if sigma > 0:
        z = z + sigma * _randn_like(z_t, generator)
    return z


def ddpm_step(
    schedule: NoiseSchedule, z_t: torch.Tensor, eps: torch.Tensor, t: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Ancestral step t -> t-1 (paper, Algorithm 2), posterior variance beta-tilde."""
    beta = float(schedule.betas[t])
    ab_t = float(schedule.alpha_bar[t])
    ab_p = float(schedule.alpha_bar[t - 1])
    mean = (z_t - beta / math.sqrt(1 - ab_t) * eps) / math.sqrt(1 - beta)
    var = (1 - ab_p) / (1 - ab_t) * beta
    if t > 1 and var > 0:
        mean = mean + math.sqrt(var) * _randn_like(z_t, generator)
    return mean


def sample(
    predict_noise: NoisePredictor,
    z_T: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    sampler: str = "ddim",
    steps: int = 2,
    eta: float = 0.0,
    restandardize: bool = True,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run a sampler from z_T and return the clean latent estimate z_0.

    ddim: K = ``steps`` evenly spaced steps; ddpm: all T ancestral steps;
    single: one x0 estimate at t = T (SDSeg).
    ``on_step(i, n)`` is called after each step (progress), without reading
    any tensor back, so no host synchronization happens inside the loop.
    """
    z = z_T
    timesteps = sampler_timesteps(schedule, sampler, steps)
    n = len(timesteps)
    for i, t in enumerate(timesteps):
        eps = predict_noise(z, _time(t, z)).to(z.dtype)
        if sampler == "single":
            z = schedule.predict_x0(z, eps, _time(t, z))
        elif sampler == "ddpm":
            z = ddpm_step(schedule, z, eps, t, generator)
        else:
            t_prev = timesteps[i + 1] if i + 1 < n else 0
            z = ddim_step(schedule, z, eps, t, t_prev, eta, generator)
        if restandardize:
            z = standardize(z)
        if on_step is not None:
            on_step(i + 1, n)
    return z


def sampler_timesteps(schedule: NoiseSchedule, sampler: str, steps: int) -> Sequence[int]:
    """The levels a sampler visits, in order."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
    if sampler == "single":
        return [schedule.T]
    if sampler == "ddpm":
        return list(range(schedule.T, 0, -1))
    return schedule.ddim_timesteps(steps)
