"""LDSeg: latent diffusion (paper, Algorithms 1 and 2).

Training: CE + gamma * Dice on the decoded latent + lambda * MSE of the
denoiser's prediction (+ optionally SDSeg's L1 latent-estimation loss, and
an energy score of samples drawn from t = T), all four networks at once; the denoiser's EMA is what a model file carries.
Prediction: the image encoded once, N samples of the diffusion sampler
decoded, their mean and per-voxel SD.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch
from torch import nn

from ..config import ENERGY_SAMPLES
from ..device import PrecisionPolicy, autocast
from ..diffusion.samplers import sampler_timesteps
from ..diffusion.schedule import NoiseSchedule
from ..errors import InputError
from ..inference.fastpath import InferenceNetworks
from ..inference.flips import NO_FLIPS, flip_views, sample_over_views
from ..inference.sampling import SamplingOptions
from ..nn.ldseg_net import LDSegNet
from ..training.losses import energy_score, segmentation_loss
from .base import Architecture, Prediction, Predictor, Sampling, TrainingStep


class LatentDiffusion(Architecture):
    name = "ldseg"
    title = "LDSeg (latent diffusion)"
    stochastic = True

    def __init__(self, config):
        super().__init__(config)
        self.schedule = NoiseSchedule.of(config.diffusion)

    def build(self) -> nn.Module:
        return LDSegNet(self.config)

    def ema_part(self, model: nn.Module) -> nn.Module:
        return model.denoiser

    def with_ema(self, model: nn.Module, ema: nn.Module | None) -> nn.Module:
        """The model with another denoiser (the EMA one), sharing all other weights."""
        if ema is None:
            return model
        view = copy.copy(model)
        view._modules = dict(model._modules)
        view._modules["denoiser"] = ema
        return view

    def training_step(self, net, images, labels, generator, options, policy: PrecisionPolicy) -> TrainingStep:
        """t and noise drawn per sample from ``generator`` (on the CPU, so a
        run is reproducible on any device)."""
        b, dev = images.shape[0], images.device
        t = self.schedule.sample_timesteps(b, generator, terminal_fraction=self.config.diffusion.terminal_fraction)
        latent = (b, self.config.network.latent_channels, *self.config.latent_grid)
        noise = torch.randn(latent, generator=generator)  # independent per sample
        t, noise = t.to(dev), noise.to(dev)
        terminal_noise = None
        if options.energy_weight > 0:  # no draw at 0: runs without it stay bit-identical
            terminal_noise = torch.randn((ENERGY_SAMPLES, *latent), generator=generator).to(dev)
        with autocast(dev, policy.bf16):
            logits, output, z0, z_t, x0, coarse, terminal = net(
                images, labels, noise, t, self.schedule, policy.denoiser, terminal_noise
            )
        ce, dice = segmentation_loss(logits, labels)
        # The target's z0 carries no gradient (x0/v): the label encoder must not
        # shape its latent to be easy to predict instead of easy to decode.
        target = self.schedule.target(z0.detach().float(), noise, t)
        mse = torch.mean((output.float() - target) ** 2)
        loss = ce + options.gamma * dice + options.lam * mse
        terms = {"loss_ce": ce, "loss_dice": dice, "loss_mse": mse}
        if coarse is not logits:
            # the latent's own decoding must stay right and confident, or the
            # refiner's gate opens everywhere and the image takes over
            ce_c, dice_c = segmentation_loss(coarse, labels)
            loss = loss + ce_c + options.gamma * dice_c
            terms["loss_coarse"] = ce_c + options.gamma * dice_c
        if options.latent_l1 > 0:
            l1 = torch.mean(torch.abs(x0.float() - z0.float()))
            loss = loss + options.latent_l1 * l1
            terms["loss_latent"] = l1
        if terminal is not None:
            # the target carries no gradient, as in the MSE: the label encoder
            # must not make its latent easy to sample instead of easy to decode
            energy = energy_score(terminal, z0.detach())
            loss = loss + options.energy_weight * energy
            terms["loss_energy"] = energy
        return TrainingStep(loss, terms)

    def sampling(self, samples: int, sampler: str | None, steps: int | None, flip_samples: str = "model") -> Sampling:
        diff = self.config.diffusion
        sampler = sampler or diff.sampler
        steps = diff.sampling_steps if steps is None else steps
        if not 1 <= steps <= diff.steps:
            raise InputError(f"steps must be between 1 and {diff.steps} (this model's T)")
        ran = len(sampler_timesteps(self.schedule, sampler, steps))  # ddpm: T, single: 1
        flips = NO_FLIPS
        if flip_samples == "on" or (flip_samples == "model" and diff.flip_samples):
            flips = flip_views(self.config)
            if flips == NO_FLIPS and flip_samples == "on":
                raise InputError(
                    "--flip-samples on: this model's training flips are not known, or a class named by a side "
                    "would change its meaning under a flip"
                )
        return Sampling(samples=samples, sampler=sampler, steps=steps, steps_run=ran, flips=flips)

    def predictor(self, model, *, channels_last=False, compile=False, on_warning=None) -> Predictor:
        networks = InferenceNetworks(model, channels_last=channels_last, compile=compile, on_warning=on_warning)
        return _DiffusionPredictor(networks, self)


class _DiffusionPredictor(Predictor):
    def __init__(self, networks: InferenceNetworks, architecture: LatentDiffusion):
        self.networks = networks
        self.architecture = architecture

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
        """Encode the image once (once per view with flips), then N diffusion samples -> (mean, sd)."""
        progress = progress or (lambda *a, **k: None)
        times = times if times is not None else {}
        t1 = time.perf_counter()
        progress("encode", 0.05, "encoding the image")
        times["encode"] = 0.0

        def encode(view: torch.Tensor) -> torch.Tensor:  # once, or once per flip view
            t = time.perf_counter()
            with autocast(image.device, bf16):
                z = self.networks.encode_image(view).float()
            times["encode"] += time.perf_counter() - t
            return z

        n = sampling.samples
        options = SamplingOptions(
            samples=n,
            sampler=sampling.sampler,
            steps=sampling.steps,
            eta=eta,
            restandardize=self.architecture.config.diffusion.restandardize,
            seed=seed,
            bf16=bf16,
            memory_budget=memory_budget,
        )

        def on_progress(f: float) -> None:
            progress("sample", 0.1 + 0.8 * f, f"{round(f * n)}/{n} samples")

        mean, sd = sample_over_views(
            self.networks,
            image,
            encode,
            self.architecture.schedule,
            options,
            sampling.flips,
            on_progress=on_progress,
            on_batch=on_batch,
        )
        times["sample"] = time.perf_counter() - t1 - times["encode"]
        return Prediction(mean, sd if n > 1 else None)
