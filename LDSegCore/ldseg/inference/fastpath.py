"""Inference fast paths that change results only within rounding noise.

- **Channels-last** memory format for the convolution-heavy image encoder and
  label decoder (oneDNN and cuDNN pick faster kernels for it; measured on a
  2-core AVX-512 BF16 CPU: 1.1-1.6x for 2D, 1.3-1.6x for 3D with bf16). The
  denoiser stays contiguous: it runs on the tiny latent, where the format
  conversions cost more than they save.
- **torch.compile** (opt-in) of the denoiser, which runs K times per sample
  on small tensors, where fusing its many small operations pays (mostly on
  GPUs, where each is a kernel launch). Not the encoder and decoder: they are
  convolution-bound, and compiled they were slower (1.6x for the decoder,
  CPU bf16 channels-last, measured). Falls back to eager execution with a
  warning when compilation fails (no compiler, unsupported platform, ...),
  so ``--compile`` never breaks a run.

bf16 autocast is chosen in :mod:`ldseg.device` and applied by
:mod:`ldseg.inference.sampling`; everything here runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn

from ..errors import LDSegError

#: torch.compile backend used by ``compile=True``.
DEFAULT_COMPILE_BACKEND = "inductor"


def memory_format(dims: int) -> torch.memory_format:
    """The channels-last format of a 2D or 3D convolution network."""
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def wants_channels_last(dims: int, bf16: bool, setting: bool | None = None) -> bool:
    """``setting`` forces it on or off; None (auto) uses it where it was
    measured to help on the CPU: 2D always, 3D with bf16 (3D fp32 gains
    nothing there). The same rule on GPUs, where bf16 channels-last is what
    cuDNN's tensor-core kernels want."""
    if setting is not None:
        return bool(setting)
    return dims == 2 or bf16


def compile_backend(compile: bool | str | Callable) -> str | Callable | None:
    """The torch.compile backend a ``compile`` setting asks for (None: off)."""
    if compile is False or compile is None:
        return None
    return DEFAULT_COMPILE_BACKEND if compile is True else compile


class CompiledOrEager:
    """Call a module through ``torch.compile``; if compiling or running the
    compiled version fails, warn once (``on_warning``, else a RuntimeWarning)
    and use the plain module from then on.

    Compilation happens lazily on the first call (and again for a new input
    shape), so failures can only be caught there, not when wrapping.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        backend: str | Callable = DEFAULT_COMPILE_BACKEND,
        on_warning: Callable[[str], None] | None = None,
    ):
        self.module = module
        self.name = name
        self.on_warning = on_warning
        self.failed: str | None = None  # why compilation was given up, if it was
        try:
            # default dynamic=None: a second batch size recompiles once with a
            # dynamic batch dimension, not once per size
            self.compiled = torch.compile(module, backend=backend)
        except Exception as e:  # e.g. an unknown backend name
            self.compiled = None
            self._give_up(e)

    def __call__(self, *args: Any) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except (LDSegError, MemoryError):
                raise  # cancellation or memory: not a compiler problem
            except Exception as e:
                self.compiled = None
                self._give_up(e)
        return self.module(*args)

    def _give_up(self, error: Exception) -> None:
        self.failed = _describe(error)
        message = f"torch.compile of the {self.name} failed ({self.failed}); running it uncompiled"
        if self.on_warning is not None:  # e.g. the command's progress stream
            self.on_warning(message)
        else:
            warnings.warn(message, RuntimeWarning, stacklevel=3)


class InferenceNetworks:
    """An LDSeg model's three inference entry points with the fast paths on.

    Duck-types the parts of :class:`~ldseg.nn.ldseg_net.LDSegNet` that
    :mod:`ldseg.inference.sampling` uses (``config``, ``encode_image``,
    ``denoise``, ``decode``), so it can be passed in the model's place.
    Converting to channels-last changes the model's weights' memory layout
    in place (values are untouched).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        channels_last: bool = False,
        compile: bool | str = False,
        on_warning: Callable[[str], None] | None = None,
    ):
        self.model = model
        self.config = model.config
        self.channels_last = bool(channels_last)
        self.format = memory_format(self.config.dims)
        if self.channels_last:
            for part in (model.image_encoder, model.decoder, getattr(model, "refiner", None)):
                if part is not None:
                    part.to(memory_format=self.format)
        self._denoiser: Callable = model.denoiser
        self.compile_backend = compile_backend(compile)
        if self.compile_backend is not None:
            self._denoiser = CompiledOrEager(model.denoiser, "denoiser", self.compile_backend, on_warning)

    @property
    def compiled(self) -> bool:
        """True while the denoiser runs compiled."""
        return isinstance(self._denoiser, CompiledOrEager) and self._denoiser.compiled is not None

    def _formatted(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.format) if self.channels_last else x

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(self._formatted(image)).contiguous()

    def denoise(self, z_t: torch.Tensor, z_i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._denoiser(z_t, z_i, t)

    def decode(self, z: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        image = self._formatted(image) if image is not None else None
        return self.model.decode(self._formatted(z), image).contiguous()


def _describe(error: BaseException) -> str:
    """'Outer (Root: first line)': compiler errors wrap the real cause (as
    ``__cause__``, or dynamo's ``inner_exception``)."""
    root, seen = error, {id(error)}
    while True:
        inner = root.__cause__ or getattr(root, "inner_exception", None)
        if not isinstance(inner, BaseException) or id(inner) in seen:
            break
        root = inner
        seen.add(id(root))
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    text = f"{type(root).__name__}: {lines[0][:200] if lines else ''}"
    return text if root is error else f"{type(error).__name__} ({text})"
