"""Device and precision: CUDA when present, else the CPU, and which network
part runs in bf16 (the precision policy, one place for every bf16 rule)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import PRECISIONS
from .errors import LDSegError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the first CUDA GPU when torch can use one, else the CPU."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LDSegError(
                "CUDA was requested but this PyTorch sees no usable GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                "use --device cpu or auto"
            )
        dev = torch.device(name if ":" in name else "cuda:0")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LDSegError(f"{name}: there are only {torch.cuda.device_count()} CUDA devices")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    raise LDSegError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16 instructions make bf16 matmuls/convolutions fast;
    without them bf16 on the CPU is emulated and slower than fp32."""
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def cpu_kind() -> str:
    """Which CPU kernels run here: ATen's CPU capability (AVX2, AVX512, ...),
    plus "+amx" where the CPU has AMX, else "+bf16" where it has AVX-512 BF16.
    Results of two kinds may differ in the last bits: oneDNN picks other
    kernels on AMX (an Intel AMX and an AMD AVX-512 BF16 machine gave other
    probability bits in fp32, and other labels in bf16)."""
    flags = _cpu_flags()
    extra = "+amx" if "amx_bf16" in flags else "+bf16" if "avx512_bf16" in flags else ""
    return torch.backends.cpu.get_cpu_capability() + extra


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    if precision not in PRECISIONS:
        raise LDSegError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "fp32":
        return False
    supported = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16()
    if precision == "bf16":
        return True
    return supported


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device`` without making the host wait for the
    GPU: a plain ``.to('cuda')`` of pageable memory synchronizes the stream,
    a non-blocking copy from pinned memory does not."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


#: On the CPU, bf16 makes the denoiser faster only on large latents (measured
#: on AVX-512 BF16: 2.8x at 16x16x32 voxels, equal at 64x64, slower below).
CPU_BF16_DENOISER_MIN_VOXELS = 8192


@dataclass(frozen=True)
class PrecisionPolicy:
    """Which parts run under bf16 autocast.

    ``bf16``: the encoders and the decoder (and the Res-UNet); ``denoiser``:
    the denoiser; ``retry_fp32``: redo a CPU bf16 sampling batch in fp32 when
    it came out non-finite (oneDNN's bf16 3D convolutions have given inf/NaN
    on tiny inputs).
    """

    bf16: bool
    denoiser: bool
    retry_fp32: bool = False

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"


def training_policy(device: torch.device, precision: str = "auto") -> PrecisionPolicy:
    """bf16 where the hardware has it, but the denoiser in fp32 on the CPU:
    oneDNN's bf16 Conv3d weight gradient on 2x2x2 inputs (the denoiser's
    lowest level) is sometimes inf/NaN, and the latent is small, so fp32
    there costs little."""
    bf16 = use_bf16(device, precision)
    return PrecisionPolicy(bf16=bf16, denoiser=bf16 and device.type != "cpu")


def inference_policy(
    device: torch.device, bf16: bool, latent_voxels: int, denoiser: bool | None = None
) -> PrecisionPolicy:
    """The denoiser in bf16 only with ``bf16``: always on a GPU, on the CPU
    only for large latents, unless ``denoiser`` forces it either way."""
    if not bf16:
        return PrecisionPolicy(bf16=False, denoiser=False)
    if denoiser is None:
        denoiser = device.type != "cpu" or latent_voxels >= CPU_BF16_DENOISER_MIN_VOXELS
    return PrecisionPolicy(bf16=True, denoiser=bool(denoiser), retry_fp32=bool(denoiser) and device.type == "cpu")
