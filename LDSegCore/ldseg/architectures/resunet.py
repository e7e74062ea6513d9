"""The deterministic Res-UNet baseline (the paper's comparison).

Trained with the same CE + gamma * Dice on its logits and no diffusion
terms; predicts in one forward pass. Any number of "samples" would all be
that same map, so it runs once and reports no SD (an SD of exactly zero).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..device import PrecisionPolicy, autocast
from ..errors import InputError
from ..inference.fastpath import CompiledOrEager, compile_backend, memory_format
from ..nn.resunet import ResUNet
from ..training.losses import segmentation_loss
from .base import Architecture, Prediction, Predictor, Sampling, TrainingStep


class ResUNetArchitecture(Architecture):
    name = "resunet"
    title = "Res-UNet (deterministic baseline)"
    stochastic = False

    def build(self) -> nn.Module:
        return ResUNet(self.config)

    def training_step(self, net, images, labels, generator, options, policy: PrecisionPolicy) -> TrainingStep:
        with autocast(images.device, policy.bf16):
            logits = net(images)
        ce, dice = segmentation_loss(logits, labels)
        return TrainingStep(ce + options.gamma * dice, {"loss_ce": ce, "loss_dice": dice})

    def sampling(self, samples: int, sampler: str | None, steps: int | None, flip_samples: str = "model") -> Sampling:
        if flip_samples == "on":
            raise InputError("--flip-samples on needs a sampling model; a deterministic Res-UNet draws no samples")
        note = "deterministic Res-UNet: one forward pass" + (
            f"; the {samples} samples asked for would all be equal, so the SD is exactly 0" if samples > 1 else ""
        )
        return Sampling(samples=1, sampler="none", steps=0, steps_run=0, note=note)

    def predictor(self, model, *, channels_last=False, compile=False, on_warning=None) -> Predictor:
        return _ForwardPredictor(model, self.config.dims, channels_last, compile, on_warning)


class _ForwardPredictor(Predictor):
    def __init__(self, model: nn.Module, dims: int, channels_last: bool, compile, on_warning):
        self.format = memory_format(dims) if channels_last else None
        if self.format is not None:
            model.to(memory_format=self.format)
        backend = compile_backend(compile)
        self.forward = model if backend is None else CompiledOrEager(model, "network", backend, on_warning)

    def predict(
        self, image, sampling, *, bf16, eta, seed, memory_budget, progress=None, times=None, on_batch=None
    ) -> Prediction:
        progress = progress or (lambda *a, **k: None)
        times = times if times is not None else {}
        t1 = time.perf_counter()
        progress("encode", 0.05, "running the network")
        if self.format is not None:
            image = image.contiguous(memory_format=self.format)
        with torch.inference_mode(), autocast(image.device, bf16):
            mean = self.forward(image).float().softmax(dim=1)[0]
        times["forward"] = time.perf_counter() - t1
        if on_batch is not None:
            on_batch(mean[None])  # its one "sample"
        progress("sample", 0.9, sampling.note)
        return Prediction(mean, None)
