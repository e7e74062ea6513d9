"""The noise schedule, forward noising and the parameterization of LDSeg.

Our own small scheduler (library schedulers clip x0 and, for DDIM with K < T,
disagree between their timestep lists and step sizes; see the method notes).
It is the one place that knows the diffusion math: the trainer noises with
:meth:`NoiseSchedule.add_noise` and asks :meth:`NoiseSchedule.target` what the
denoiser should output; the samplers turn the denoiser's output into x0 and
eps estimates with :meth:`NoiseSchedule.split`. Networks only map z_t to
their prediction.

Conventions:
- Noise levels are indexed t = 0..T with alpha_bar[0] = 1 (clean); training
  draws t uniformly from 1..T (paper, Algorithm 1).
- z_t = a z0 + s eps with a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t).
- Parameterizations (what the denoiser predicts): ``eps`` (the noise, paper),
  ``x0`` (the clean latent) and ``v`` = a eps - s z0 (Salimans & Ho 2022),
  which stays well conditioned at t = T where eps-prediction divides by a.
- All coefficients are computed in float64 and applied in the latent's dtype,
  so a float64 latent gives float64-exact sampling (used by the oracle test).
"""

from __future__ import annotations

import math

import torch

from ..config import PREDICTIONS, SCHEDULES, ScheduleConfig


class NoiseSchedule:
    """alpha_bar over t = 0..T, computed in float64, and the parameterization."""

    def __init__(self, config: ScheduleConfig = ScheduleConfig(), prediction: str = "eps"):  # noqa: B008 (frozen)
        if config.kind not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {config.kind!r} (known: {', '.join(SCHEDULES)})")
        if config.steps < 1:
            raise ValueError("the number of diffusion steps T must be at least 1")
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r} (known: {', '.join(PREDICTIONS)})")
        self.config = config
        self.prediction = prediction
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

    @classmethod
    def of(cls, diffusion) -> NoiseSchedule:
        """The schedule and parameterization a model's DiffusionConfig describes."""
        return cls(diffusion.schedule_config(), diffusion.prediction)

    # -- coefficients ------------------------------------------------------------
    def coefficients(self, t: int) -> tuple[float, float]:
        """(a, s) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) as Python floats."""
        ab = float(self.alpha_bar[t])
        return math.sqrt(ab), math.sqrt(1 - ab)

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

    # -- training ------------------------------------------------------------------
    def sample_timesteps(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        terminal_fraction: float = 0.0,
    ) -> torch.Tensor:
        """t ~ U{1..T}, one per sample; with ``terminal_fraction`` p > 0 each
        sample is instead at t = T with probability p. DDIM with K = 2 decides
        its sample in the one step from T (the step to t = 1 barely moves it),
        so uniform levels train that step in only a few samples per thousand
        levels; p trains it directly, end to end through the decoder."""
        t = torch.randint(1, self.T + 1, (batch,), generator=generator)
        if terminal_fraction > 0:  # no extra draw at 0: runs without it stay bit-identical
            at_end = torch.rand(batch, generator=generator) < terminal_fraction
            t = torch.where(at_end, torch.full_like(t, self.T), t)
        return t.to(device)

    def add_noise(self, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process: z_t = a z0 + s eps."""
        return self._coef("sqrt_ab", t, z0) * z0 + self._coef("sqrt_1m_ab", t, z0) * noise

    def target(self, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser is trained to output at t (its MSE target)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return z0
        return self._coef("sqrt_ab", t, z0) * noise - self._coef("sqrt_1m_ab", t, z0) * z0

    # -- the denoiser's output -> (x0, eps) -------------------------------------------
    def split(self, z_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 estimate, eps estimate) from the denoiser's output at levels t (B,)."""
        return self._split(z_t, output, self._coef("sqrt_ab", t, z_t), self._coef("sqrt_1m_ab", t, z_t))

    def split_at(self, z_t: torch.Tensor, output: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`split` at one level t for the whole batch (the samplers' form)."""
        return self._split(z_t, output, *self.coefficients(t))

    def _split(self, z, out, a, s):
        if self.prediction == "eps":
            return (z - s * out) / a, out
        if self.prediction == "x0":
            return out, (z - a * out) / s
        return a * z - s * out, s * z + a * out

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
