"""Label decoder: latent -> class logits on the model grid (ResUNet decoder
without skips; softmax is applied by the loss and at inference)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import NetworkConfig
from .layers import ResBlock, Upsample, conv


class LabelDecoder(nn.Module):
    def __init__(self, dims: int, num_classes: int, net: NetworkConfig):
        super().__init__()
        widths = net.decoder_widths
        layers: list[nn.Module] = [conv(dims, net.latent_channels, widths[0])]
        prev = widths[0]
        for level, width in enumerate(widths):
            if level > 0:
                layers.append(Upsample(dims, prev))
            layers.append(ResBlock(dims, prev, width, net.norm, net.dropout))
            prev = width
        layers.append(conv(dims, prev, num_classes, kernel=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
