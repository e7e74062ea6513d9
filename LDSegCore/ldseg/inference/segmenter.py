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

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..architectures import architecture_of
from ..config import DEFAULT_MEMORY_BUDGET_GB, DEFAULT_SAMPLES, SegmentOptions
from ..data.orientation import AxisTurn
from ..data.preprocess import axis_turn, classes_to_labels, prepare_image
from ..device import describe, resolve_device, use_bf16
from ..errors import InputError
from ..io.images import Geometry, MedicalImage, check_geometry, read_image
from ..io.loading import load_model
from ..progress import null_progress
from .fastpath import wants_channels_last
from .restore import DEFAULT_RESTORE_BUDGET, restore_result


@dataclass
class SegmentationResult:
    labels: np.ndarray  # stored label values (the model's), input grid
    classes: np.ndarray  # class indices, input grid (uint8 up to 256 classes)
    probabilities: np.ndarray  # mean class probabilities (C, *spatial), float32
    sd: np.ndarray  # per-voxel SD: max over classes of the probability SD, float32
    geometry: Geometry
    samples: int
    sampler: str
    steps: int  # denoiser evaluations per sample (ddim: K, ddpm: T, single: 1, deterministic: 0)
    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""  # e.g. why a deterministic model's SD is zero
    precision: str = "fp32"  # fp32, or bf16 (autocast) where it was used
    sample_classes: np.ndarray | None = None  # (N, *spatial) each sample's class map, if kept
    flip_views: int = 1  # image views the samples were spread over (ldseg.inference.flips); 1: none


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
        memory_budget: float = DEFAULT_MEMORY_BUDGET_GB * 1e9,
        *,
        restore_budget: float = DEFAULT_RESTORE_BUDGET,
        channels_last: bool | None = None,
        compile: bool | str = False,
        on_warning: Callable[[str], None] | None = None,
    ):
        if not (memory_budget > 0 and restore_budget > 0) or not math.isfinite(memory_budget):
            raise InputError("the memory budget must be a positive, finite number")
        self.device = resolve_device(device)
        self.model, self.model_path = load_model(model)
        self.model.to(self.device)
        self.config = self.model.config
        self.architecture = architecture_of(self.config)
        self.bf16 = use_bf16(self.device, precision)
        self.memory_budget = memory_budget
        self.restore_budget = restore_budget
        self.channels_last = wants_channels_last(self.config.dims, self.bf16, channels_last)
        self.predictor = self.architecture.predictor(
            self.model, channels_last=self.channels_last, compile=compile, on_warning=on_warning
        )

    @property
    def networks(self):
        """LDSeg's inference networks (the fast paths), or None for other architectures."""
        return getattr(self.predictor, "networks", None)

    @property
    def schedule(self):
        """LDSeg's noise schedule, or None for other architectures."""
        return getattr(self.architecture, "schedule", None)

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
        request: SegmentOptions | None = None,
        samples: int = DEFAULT_SAMPLES,
        steps: int | None = None,
        sampler: str | None = None,
        eta: float = 0.0,
        seed: int | None = 0,
        flip_samples: str = "model",
        keep_samples: bool = False,
        progress: Callable[..., None] = null_progress,
    ) -> SegmentationResult:
        """Segment one image: a file/folder path, a MedicalImage, or an array
        (spatial for gray, channels-first (C, *spatial) otherwise) with its geometry
        (an array without one is taken as already in the model's axis order).

        The settings come as a ``request`` (checked when it was made) or as
        keywords (checked here: :class:`~ldseg.config.SegmentOptions`);
        ``steps``/``sampler`` None take the model's own, ``flip_samples`` "model"
        the model file's choice of spreading the samples over its flips; the architecture
        says what it runs (a deterministic model: one pass). ``keep_samples``
        (or the request's ``save_samples``) also returns every sample's class
        map on the input grid (``sample_classes``; a deterministic model has one).
        """
        if request is None:
            try:
                request = SegmentOptions(
                    samples=samples, steps=steps, sampler=sampler, eta=eta, seed=seed, flip_samples=flip_samples
                )
            except ValueError as e:
                raise InputError(str(e)) from None
        keep_samples = keep_samples or request.save_samples
        sampling = self.architecture.sampling(request.samples, request.sampler, request.steps, request.flip_samples)
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        progress("load", 0.0, "reading the image")
        pre = self.config.preprocessing
        # an array given without a geometry says nothing of its anatomy: taken in the model's axis order
        bare = geometry is None and not isinstance(image, (MedicalImage, str, os.PathLike))
        image = self._as_image(image, geometry)
        turn = AxisTurn.identity(pre.dims) if bare else axis_turn(image.geometry, pre)  # results: turn.undo
        x = prepare_image(image, pre, turn)[None].to(self.device)
        times["prepare"] = time.perf_counter() - t0

        kept: list[np.ndarray] = []

        def keep(batch: torch.Tensor) -> None:
            for one in batch:
                kept.append(restore_result(turn.undo(one), None, image.spatial_shape, self.restore_budget).classes)

        with torch.inference_mode():
            prediction = self.predictor.predict(
                x,
                sampling,
                bf16=self.bf16,
                eta=request.eta,
                seed=request.seed,
                memory_budget=self.memory_budget,
                progress=progress,
                times=times,
                on_batch=keep if keep_samples else None,
            )
            t3 = time.perf_counter()
            progress("decode", 0.92, "resampling to the input grid")
            sd = turn.undo(prediction.sd) if prediction.sd is not None else None
            restored = restore_result(turn.undo(prediction.mean), sd, image.spatial_shape, self.restore_budget)
            times["restore"] = time.perf_counter() - t3
        times["total"] = time.perf_counter() - t0
        return SegmentationResult(
            labels=classes_to_labels(restored.classes, pre),
            classes=restored.classes,
            probabilities=restored.probabilities,
            sd=restored.sd,
            geometry=image.geometry,
            samples=sampling.samples,
            sampler=sampling.sampler,
            steps=sampling.steps_run,
            device=str(self.device),
            seconds={k: round(v, 4) for k, v in times.items()},
            note=sampling.note,
            precision=self.precision,
            sample_classes=np.stack(kept) if keep_samples else None,
            flip_views=sampling.views_used,
        )

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
