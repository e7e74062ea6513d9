"""Segment images with a trained model: the :class:`Segmenter`.

Load a model once, segment many images. Each image is prepared exactly as in
training (intensity normalization, model grid), encoded ONCE, sampled N times
(batched under a memory bound), decoded, and the mean class probabilities and
per-voxel SD are resampled back to the input's own grid (slab by slab under a
memory budget, so large inputs fit); the result carries the input's geometry
unchanged. A deterministic Res-UNet baseline model runs one forward pass
instead (its SD is exactly zero; sampler options are moot).

Fast paths (see :mod:`ldseg.inference.fastpath`): bf16 autocast where the hardware has
fast bf16 (``precision``), channels-last convolutions (``channels_last``),
optional ``torch.compile`` (``compile``), all under ``torch.inference_mode``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.preprocess import classes_to_labels, prepare_image
from ..device import autocast, describe, resolve_device, use_bf16
from ..diffusion.schedule import NoiseSchedule
from ..errors import InputError
from ..io.images import Geometry, MedicalImage, check_geometry, read_image
from ..io.models import load_model
from ..progress import null_progress
from .fastpath import CompiledOrEager, InferenceNetworks, compile_backend, memory_format, wants_channels_last
from .restore import DEFAULT_RESTORE_BUDGET, restore_result
from .sampling import SamplingOptions, forward_probabilities, sample_probabilities


@dataclass
class SegmentationResult:
    labels: np.ndarray  # stored label values (the model's), input grid
    classes: np.ndarray  # class indices, input grid (uint8 up to 256 classes)
    probabilities: np.ndarray  # mean class probabilities (C, *spatial), float32
    sd: np.ndarray  # per-voxel SD: max over classes of the probability SD, float32
    geometry: Geometry
    samples: int
    sampler: str
    steps: int
    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""  # e.g. why a deterministic model's SD is zero
    precision: str = "fp32"  # fp32, or bf16 (autocast) where it was used


class Segmenter:
    """Load a model once, segment many images.

    ``precision``: auto (bf16 autocast where the hardware has fast bf16),
    fp32 or bf16. ``memory_budget``: bytes for one batch of decoded samples;
    ``restore_budget``: bytes of working memory for resampling results to
    the input grid. ``channels_last``: None (auto: where it helps), True,
    False. ``compile``: False, True (torch.compile with inductor) or a
    backend name; if compiling fails it warns (also through ``on_warning``)
    and runs uncompiled.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "auto",
        memory_budget: float = 2e9,
        *,
        restore_budget: float = DEFAULT_RESTORE_BUDGET,
        channels_last: bool | None = None,
        compile: bool | str = False,
        on_warning: Callable[[str], None] | None = None,
    ):
        if memory_budget <= 0 or restore_budget <= 0:
            raise InputError("the memory budget must be positive")
        self.device = resolve_device(device)
        self.model, self.model_path = load_model(model)
        self.model.to(self.device)
        self.config = self.model.config
        self.bf16 = use_bf16(self.device, precision)
        self.schedule = NoiseSchedule(self.config.diffusion.schedule_config())
        self.memory_budget = memory_budget
        self.restore_budget = restore_budget
        self.channels_last = wants_channels_last(self.config.dims, self.bf16, channels_last)
        if self.config.uses_diffusion:
            self.networks = InferenceNetworks(
                self.model, channels_last=self.channels_last, compile=compile, on_warning=on_warning
            )
            self._forward = None
        else:
            self.networks = None
            if self.channels_last:
                self.model.to(memory_format=memory_format(self.config.dims))
            backend = compile_backend(compile)
            self._forward = (
                self.model if backend is None else CompiledOrEager(self.model, "network", backend, on_warning)
            )

    @property
    def device_description(self) -> str:
        return describe(self.device) + (" bf16" if self.bf16 else "")

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def segment(
        self,
        image: MedicalImage | str | os.PathLike | np.ndarray,
        geometry: Geometry | None = None,
        *,
        samples: int = 1,
        steps: int | None = None,
        sampler: str | None = None,
        eta: float = 0.0,
        seed: int | None = 0,
        progress: Callable[..., None] = null_progress,
    ) -> SegmentationResult:
        """Segment one image: a file/folder path, a MedicalImage, or an array
        (spatial for gray, channels-first (C, *spatial) otherwise) with its geometry."""
        if samples < 1:
            raise InputError("the number of samples must be at least 1")
        diff = self.config.diffusion
        note = ""
        if self.config.uses_diffusion:
            sampler = sampler or diff.sampler
            steps = steps or diff.sampling_steps
            if not 1 <= steps <= diff.steps:
                raise InputError(f"steps must be between 1 and {diff.steps}")
        else:  # nothing to sample: steps and sampler do not apply, N samples would be equal
            note = "deterministic Res-UNet: one forward pass" + (
                f"; the {samples} samples asked for would all be equal, so the SD is exactly 0" if samples > 1 else ""
            )
            samples, sampler, steps = 1, "none", 0
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        progress("load", 0.0, "reading the image")
        image = self._as_image(image, geometry)
        x = prepare_image(image, self.config.preprocessing)[None].to(self.device)
        times["prepare"] = time.perf_counter() - t0

        with torch.inference_mode():
            if self.config.uses_diffusion:
                mean, sd = self._sample(x, samples, sampler, steps, eta, seed, progress, times)
            else:
                t1 = time.perf_counter()
                progress("encode", 0.05, "running the network")
                if self.channels_last:
                    x = x.contiguous(memory_format=memory_format(self.config.dims))
                mean = forward_probabilities(self._forward, x, self.bf16)
                sd = None
                times["forward"] = time.perf_counter() - t1
                progress("sample", 0.9, note)

            t3 = time.perf_counter()
            progress("decode", 0.92, "resampling to the input grid")
            restored = restore_result(mean, sd if samples > 1 else None, image.spatial_shape, self.restore_budget)
            times["restore"] = time.perf_counter() - t3
        times["total"] = time.perf_counter() - t0
        return SegmentationResult(
            labels=classes_to_labels(restored.classes, self.config.preprocessing),
            classes=restored.classes,
            probabilities=restored.probabilities,
            sd=restored.sd,
            geometry=image.geometry,
            samples=samples,
            sampler=sampler,
            steps=steps,
            device=str(self.device),
            seconds={k: round(v, 4) for k, v in times.items()},
            note=note,
            precision=self.precision,
        )

    def _sample(self, x, samples, sampler, steps, eta, seed, progress, times):
        """LDSeg: encode the image once, then N diffusion samples -> (mean, sd)."""
        t1 = time.perf_counter()
        progress("encode", 0.05, "encoding the image")
        with autocast(self.device, self.bf16):
            z_i = self.networks.encode_image(x).float()
        times["encode"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        options = SamplingOptions(
            samples=samples,
            sampler=sampler,
            steps=steps,
            eta=eta,
            restandardize=self.config.diffusion.restandardize,
            seed=seed,
            bf16=self.bf16,
            memory_budget=self.memory_budget,
        )
        mean, sd = sample_probabilities(
            self.networks,
            z_i,
            self.schedule,
            options,
            on_progress=lambda f: progress("sample", 0.1 + 0.8 * f, f"{round(f * samples)}/{samples} samples"),
        )
        times["sample"] = time.perf_counter() - t2
        return mean, sd

    def _as_image(self, image, geometry: Geometry | None) -> MedicalImage:
        if isinstance(image, MedicalImage):
            if np.iscomplexobj(image.array):
                raise InputError(f"{image.name}: complex-valued images are not supported")
            check_geometry(image.geometry, image.name)
            return image
        if isinstance(image, (str, os.PathLike)):
            return read_image(Path(image))
        array = np.asarray(image)
        dims = self.config.dims
        if np.iscomplexobj(array):
            raise InputError("<array>: complex-valued images are not supported (give the magnitude or real part)")
        if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number)):
            raise InputError(f"<array>: an image must hold numbers, not {array.dtype}")
        if array.ndim == dims:
            array = array[None]
        elif array.ndim != dims + 1:
            raise InputError(
                f"<array>: a {array.ndim}-D array cannot be a {dims}D image "
                f"(give {dims} spatial axes, channels first for RGB)"
            )
        if geometry is None:
            geometry = Geometry.identity(dims)
        if geometry.dims != dims:
            raise InputError(f"<array>: the geometry is {geometry.dims}D but the model expects {dims}D images")
        check_geometry(geometry)
        return MedicalImage(array=array.astype(np.float32, copy=False), geometry=geometry, source=None)
