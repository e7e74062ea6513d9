"""Label encoder and image encoder: ResUNet encoders without skip connections
that map a label map or an image to a latent 2**D times smaller per axis."""

from __future__ import annotations

import torch
from torch import nn

from ..config import NetworkConfig
from .layers import Downsample, ResBlock, SelfAttention, conv, norm, standardize_latent


class _Encoder(nn.Module):
    """ResBlock per level, down-sampling between levels, optional attention at
    the last ``attention_levels`` levels, then a 1x1 projection."""

    def __init__(self, dims: int, cin: int, cout: int, net: NetworkConfig, attention_levels: int, heads: int = 1):
        super().__init__()
        widths = net.encoder_widths
        layers: list[nn.Module] = []
        prev = cin
        for level, width in enumerate(widths):
            if level > 0:
                layers.append(Downsample(dims, prev, net.downsample))
            layers.append(ResBlock(dims, prev, width, net.norm, net.dropout))
            if level >= len(widths) - attention_levels:
                layers.append(SelfAttention(width, heads))
            prev = width
        layers.append(conv(dims, prev, cout, kernel=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LabelEncoder(nn.Module):
    """One-hot label map -> standardized label latent z_0 (mean 0, SD 1 per sample)."""

    def __init__(self, dims: int, num_classes: int, net: NetworkConfig):
        super().__init__()
        self.encoder = _Encoder(dims, num_classes, net.latent_channels, net, attention_levels=0)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return standardize_latent(self.encoder(onehot))


class ImageEncoder(nn.Module):
    """Image -> image latent z_i on the label latent's grid, with multi-head
    self-attention in its last ``image_attention_levels`` stages (switchable,
    for 3D memory)."""

    def __init__(self, dims: int, channels: int, net: NetworkConfig):
        super().__init__()
        self.encoder = _Encoder(
            dims,
            channels,
            net.image_latent_channels,
            net,
            attention_levels=net.image_attention_levels if net.image_attention else 0,
            heads=net.image_attention_heads,
        )
        self.final = net.image_latent_norm
        if self.final == "batch":
            self.norm = norm("batch", net.image_latent_channels)
        elif self.final not in ("layer", "none"):
            raise ValueError(f"unknown image_latent_norm {self.final!r} (known: layer, batch, none)")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        z = self.encoder(image)
        if self.final == "layer":
            return standardize_latent(z)
        if self.final == "batch":
            return self.norm(z)
        return z
