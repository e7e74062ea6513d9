"""Convolution FLOPs: counted in a network with forward hooks, and the
machine's own achieved convolution throughput as the yardstick."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ldseg.device import autocast
from ldseg.inference.fastpath import memory_format

from .measure import repeat_timing

CONVOLUTIONS = (nn.Conv2d, nn.Conv3d)


def conv_flops(module: nn.Conv2d | nn.Conv3d, output: torch.Tensor) -> int:
    """Multiply-adds x 2 of one convolution call (bias and padding ignored)."""
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return 2 * per_output * output.numel()


@contextmanager
def count_conv_flops(network: nn.Module) -> Iterator[list[int]]:
    """``with count_conv_flops(net) as total: net(x)``; then ``total[0]``
    holds the convolution FLOPs of every call made inside the block."""
    total = [0]

    def hook(module, inputs, output):
        total[0] += conv_flops(module, output)

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, CONVOLUTIONS)]
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def conv_throughput(
    dims: int, shape: tuple[int, ...], channels: int, device: torch.device, *, cap_s: float, max_repeats: int
) -> dict:
    """Achieved GFLOP/s of a plain 3x3(x3) convolution, channels -> channels,
    on an input of spatial ``shape``, in fp32 and bf16 (autocast), each in the
    contiguous and the channels-last memory format; the best format counts."""
    torch.manual_seed(0)
    conv_cls = nn.Conv2d if dims == 2 else nn.Conv3d
    out = {"shape": [1, channels, *shape], "kernel": 3, "channels": channels}
    with torch.inference_mode():
        for precision in ("fp32", "bf16"):
            by_format = {}
            for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", memory_format(dims))):
                conv = conv_cls(channels, channels, 3, padding=1).to(device).to(memory_format=fmt)
                x = torch.randn(1, channels, *shape, device=device).contiguous(memory_format=fmt)
                with autocast(device, precision == "bf16"):
                    flops = conv_flops(conv, conv(x))  # also the warm-up
                    seconds, _ = repeat_timing(lambda: conv(x), device, cap_s=cap_s, max_repeats=max_repeats)
                by_format[fmt_name] = round(flops / seconds / 1e9, 2)
            best = max(by_format, key=by_format.get)
            out[precision] = {"gflops": by_format[best], "best_format": best, "by_format": by_format}
    return out


def count_flops(network: nn.Module, call) -> int:
    """Convolution FLOPs of ``network`` during one ``call()`` (not timed: the
    hooks cost time of their own)."""
    with count_conv_flops(network) as total:
        call()
    return total[0]


__all__ = ["conv_flops", "count_conv_flops", "conv_throughput", "count_flops"]
