"""The samplers of LDSeg: DDIM with K steps, DDPM ancestral, single step.

- The latent is never clipped. Samplers optionally re-standardize each
  sample's latent (zero mean, unit SD) after every step, as the authors' code
  does, but per sample, so samples stay independent.
- The denoiser's output is turned into (x0, eps) by the schedule's
  parameterization (:meth:`NoiseSchedule.split_at`), so every sampler works
  for every parameterization.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..config import SAMPLERS
from .schedule import NoiseSchedule, standardize

#: A denoiser as the samplers see it: (z_t, t) -> its prediction (in the
#: schedule's parameterization). ``t`` is a long tensor of shape (B,). The
#: image condition is bound in by the caller.
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    x0: torch.Tensor,
    eps: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step from level t to level t_prev < t, given the x0 and eps
    estimates at t (t_prev = 0 returns x0)."""
    ab_t = float(schedule.alpha_bar[t])
    ab_p = float(schedule.alpha_bar[t_prev])
    sigma = 0.0
    if eta > 0 and t_prev > 0:
        sigma = eta * math.sqrt((1 - ab_p) / (1 - ab_t)) * math.sqrt(max(0.0, 1 - ab_t / ab_p))
    direction = math.sqrt(max(0.0, 1 - ab_p - sigma**2))
    z = math.sqrt(ab_p) * x0 + direction * eps
    if sigma > 0:
        z = z + sigma * _randn_like(x0, generator)
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
    denoise: Denoise,
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
        output = denoise(z, _time(t, z)).to(z.dtype)
        if sampler == "single":
            z = schedule.split(z, output, _time(t, z))[0]
        elif sampler == "ddpm":
            z = ddpm_step(schedule, z, schedule.split_at(z, output, t)[1], t, generator)
        else:
            t_prev = timesteps[i + 1] if i + 1 < n else 0
            x0, eps = schedule.split_at(z, output, t)
            z = ddim_step(schedule, x0, eps, t, t_prev, eta, generator)
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
