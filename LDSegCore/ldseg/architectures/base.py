"""What every architecture provides to the trainer and the Segmenter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..config import ModelConfig
from ..device import PrecisionPolicy


@dataclass
class TrainingStep:
    """One batch's loss and its named terms (for the log)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Prediction:
    """Mean class probabilities (C, *grid) and their per-class SD over the
    samples (None where the architecture draws no samples)."""

    mean: torch.Tensor
    sd: torch.Tensor | None


@dataclass
class Sampling:
    """What actually runs for a request: the number of samples, the sampler
    and its steps (as recorded in result files), and a note for the user."""

    samples: int
    sampler: str
    steps: int  # K as asked (the DDIM sampler's argument)
    steps_run: int  # denoiser evaluations per sample: K for ddim, T for ddpm, 1 for single, 0 for none
    note: str = ""
    # the image views the samples are spread over (ldseg.inference.flips); ((),): the image as it is
    flips: tuple[tuple[int, ...], ...] = ((),)

    @property
    def views_used(self) -> int:
        """Image views the samples actually see (N < F samples see only the first N)."""
        return min(len(self.flips), self.samples)


class Architecture:
    """Base class; subclasses set ``name``/``title`` and implement the rest."""

    name = ""
    title = ""
    #: True if its samples differ, so that their SD is an uncertainty map.
    stochastic = False

    def __init__(self, config: ModelConfig):
        self.config = config

    def build(self) -> nn.Module:
        raise NotImplementedError

    # -- training ----------------------------------------------------------------
    def ema_part(self, model: nn.Module) -> nn.Module | None:
        """The part whose exponential moving average the model file carries (None: no EMA)."""
        return None

    def with_ema(self, model: nn.Module, ema: nn.Module | None) -> nn.Module:
        """The model with its EMA part in place of the raw one (what inference uses)."""
        return model

    def training_step(
        self,
        net: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        options,
        policy: PrecisionPolicy,
    ) -> TrainingStep:
        """The loss of one batch (already on the device). ``net`` is the
        model or its DistributedDataParallel wrapper: call it, so that every
        gradient is synchronized."""
        raise NotImplementedError

    # -- inference ---------------------------------------------------------------
    def sampling(self, samples: int, sampler: str | None, steps: int | None, flip_samples: str = "model") -> Sampling:
        """What a request for N samples, a sampler and K steps (and the samples
        spread over the model's flips or not: FLIP_SAMPLES) will run."""
        raise NotImplementedError

    def predictor(
        self,
        model: nn.Module,
        *,
        channels_last: bool = False,
        compile: bool | str = False,
        on_warning: Callable[[str], None] | None = None,
    ) -> Predictor:
        raise NotImplementedError


class Predictor:
    """A loaded model ready to predict one prepared image (1, C, *grid)."""

    def predict(
        self,
        image: torch.Tensor,
        sampling: Sampling,
        *,
        bf16: bool,
        eta: float,
        seed: int | None,
        memory_budget: float,
        progress: Callable[..., None] | None = None,
        times: dict[str, float] | None = None,
        on_batch: Callable[[torch.Tensor], None] | None = None,
    ) -> Prediction:
        """``on_batch`` receives each batch of samples' class probabilities (b, C, *grid)."""
        raise NotImplementedError
