"""Dimension-generic building blocks shared by the LDSeg networks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv(dims: int, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    cls = nn.Conv2d if dims == 2 else nn.Conv3d
    return cls(cin, cout, kernel, stride=stride, padding=kernel // 2)


def norm(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """GroupNorm by default: it behaves the same in training and inference and
    with the batches of 1-4 that fit 3D volumes on a workstation."""
    if kind == "group":
        g = math.gcd(channels, groups)
        return nn.GroupNorm(g, channels)
    if kind == "batch":
        return _FlatBatchNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalization {kind!r} (known: group, batch, none)")


class _FlatBatchNorm(nn.Module):
    """BatchNorm for 2D and 3D input alike (statistics over batch and space)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return self.bn(x.reshape(shape[0], shape[1], -1)).reshape(shape)


class ResBlock(nn.Module):
    """conv-norm-swish-conv-norm(-dropout) with a 1x1 shortcut when widths
    differ (the ResUNet block of the paper's encoders and decoder)."""

    def __init__(self, dims: int, cin: int, cout: int, norm_kind: str = "group", dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            conv(dims, cin, cout),
            norm(norm_kind, cout),
            nn.SiLU(),
            conv(dims, cout, cout),
            norm(norm_kind, cout),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        self.skip = conv(dims, cin, cout, kernel=1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class Downsample(nn.Module):
    """Halve every spatial axis: max-pooling or a strided convolution."""

    def __init__(self, dims: int, channels: int, mode: str = "conv"):
        super().__init__()
        if mode == "maxpool":
            self.op = (nn.MaxPool2d if dims == 2 else nn.MaxPool3d)(2)
        elif mode == "conv":
            self.op = conv(dims, channels, channels, kernel=3, stride=2)
        else:
            raise ValueError(f"unknown down-sampling {mode!r} (known: maxpool, conv)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double every spatial axis: nearest neighbour then a 3x3 convolution
    (no checkerboard artefacts of transposed convolutions)."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.conv = conv(dims, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all spatial positions, pre-norm, residual.

    The weights live in an ``nn.MultiheadAttention`` (its parameter names are
    what model files carry), but they always run through
    ``F.scaled_dot_product_attention``: the same computation (no dropout)
    with a memory-efficient fused kernel, in training and inference alike.
    nn.MultiheadAttention's own inference "fast path" instead holds the whole
    (tokens x tokens) attention matrix: 8.6 GB for a 512 x 512 image's
    128 x 128 stage (the fused kernel: 0.4 GB, and ten times faster).
    """

    def __init__(self, channels: int, heads: int = 8, groups: int = 8):
        super().__init__()
        heads = max(1, math.gcd(channels, heads))
        self.norm = nn.GroupNorm(math.gcd(channels, groups), channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        tokens = self.norm(x).reshape(b, c, -1).transpose(1, 2)
        out = self._fused_attention(tokens)
        return x + out.transpose(1, 2).reshape(x.shape)

    def _fused_attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """nn.MultiheadAttention's computation (its weights, no dropout) with
        a memory-efficient kernel; tokens (B, N, C) -> (B, N, C)."""
        attn = self.attn
        b, n, c = tokens.shape
        heads = attn.num_heads
        qkv = F.linear(tokens, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = (part.reshape(b, n, heads, c // heads).transpose(1, 2) for part in qkv.chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)
        return attn.out_proj(out.transpose(1, 2).reshape(b, n, c))


def standardize_latent(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over (C, spatial) per sample without affine parameters: the
    label latent gets mean 0 and SD 1 (the paper's standardized latent)."""
    return F.layer_norm(z, z.shape[1:], eps=eps)
