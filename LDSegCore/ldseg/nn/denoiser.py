"""Conditional denoiser: the DDPM UNet of Ho et al. on the latent grid.

Input concat(z_t, z_i), output the predicted noise. Sinusoidal time embedding
+ MLP, GroupNorm residual blocks with the time added after the first
convolution, self-attention at the lower levels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import NetworkConfig
from .layers import SelfAttention, Upsample, conv


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class TimeResBlock(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int, time_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(cin, groups), cin)
        self.conv1 = conv(dims, cin, cout)
        self.time = nn.Linear(time_dim, cout)
        self.norm2 = nn.GroupNorm(math.gcd(cout, groups), cout)
        self.conv2 = conv(dims, cout, cout)
        self.skip = conv(dims, cin, cout, kernel=1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb).view(*temb.shape[:1], -1, *([1] * (x.dim() - 2)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Denoiser(nn.Module):
    def __init__(self, dims: int, net: NetworkConfig):
        super().__init__()
        self.dims = dims
        chans, attn = net.denoiser_channels, net.denoiser_attention
        cin = net.latent_channels + net.image_latent_channels
        self.time_dim = net.time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(net.time_dim, net.time_dim * 4), nn.SiLU(), nn.Linear(net.time_dim * 4, net.time_dim * 4)
        )
        tdim = net.time_dim * 4
        self.stem = conv(dims, cin, chans[0])
        self.down = nn.ModuleList()
        skips = [chans[0]]
        prev = chans[0]
        for level, (c, a) in enumerate(zip(chans, attn)):
            for _ in range(net.denoiser_res_blocks):
                self.down.append(_Stage(dims, prev, c, tdim, net.denoiser_groups, a, net.attention_heads))
                prev = c
                skips.append(c)
            if level < len(chans) - 1:
                self.down.append(_Down(dims, prev))
                skips.append(prev)
        self.mid = nn.ModuleList(
            [
                _Stage(dims, prev, prev, tdim, net.denoiser_groups, True, net.attention_heads),
                _Stage(dims, prev, prev, tdim, net.denoiser_groups, False, net.attention_heads),
            ]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            c, a = chans[level], attn[level]
            for _ in range(net.denoiser_res_blocks + 1):
                self.up.append(_Stage(dims, prev + skips.pop(), c, tdim, net.denoiser_groups, a, net.attention_heads))
                prev = c
            if level > 0:
                self.up.append(Upsample(dims, prev))
        self.out = nn.Sequential(
            nn.GroupNorm(math.gcd(prev, net.denoiser_groups), prev), nn.SiLU(), conv(dims, prev, net.latent_channels)
        )
        self.multiple = 2 ** (len(chans) - 1)

    def forward(self, z_t: torch.Tensor, z_i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z_t, z_i], dim=1)
        # Latent grids need not be multiples of the UNet's depth: pad, then crop.
        spatial = x.shape[2:]
        pad = [(-s) % self.multiple for s in spatial]
        if any(pad):
            x = F.pad(x, [p for s in reversed(pad) for p in (0, s)], mode="replicate")
        temb = self.time_mlp(timestep_embedding(t, self.time_dim).to(x.dtype))
        h = self.stem(x)
        hs = [h]
        for block in self.down:
            h = block(h, temb)
            hs.append(h)
        for block in self.mid:
            h = block(h, temb)
        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h)
            else:
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
        out = self.out(h)
        if any(pad):
            out = out[(...,) + tuple(slice(0, s) for s in spatial)]
        return out


class _Stage(nn.Module):
    def __init__(self, dims, cin, cout, tdim, groups, attention, heads):
        super().__init__()
        self.res = TimeResBlock(dims, cin, cout, tdim, groups)
        self.attn = SelfAttention(cout, heads, groups) if attention else None

    def forward(self, x, temb):
        h = self.res(x, temb)
        return self.attn(h) if self.attn is not None else h


class _Down(nn.Module):
    """A strided convolution taking the time embedding like every block here.
    Not layers.Downsample: its weights are named ``conv``, where Downsample's
    are ``op``, and trained model files carry these names."""

    def __init__(self, dims, channels):
        super().__init__()
        self.conv = conv(dims, channels, channels, stride=2)

    def forward(self, x, temb):
        return self.conv(x)
