"""The deterministic Res-UNet baseline: image -> class logits in one pass.

The paper's main comparison (GlaS: Res-UNet Dice 0.86 against LDSeg's 0.91).
To compare architectures and not sizes, it is built from the same config
fields and blocks as LDSeg's networks: an encoder shaped like the image
encoder (``encoder_widths``, ``norm``, ``dropout``, ``downsample``; no
self-attention, as in a plain Res-UNet) and a decoder shaped like the label
decoder (``decoder_widths``), but with the U-Net's skip connections: at every
resolution above the bottleneck the decoder concatenates the encoder's
features of that resolution. Those skips carry the fine detail that LDSeg
has to recover from its 2**D times smaller latent.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .layers import Downsample, ResBlock, Upsample, conv


class ResUNet(nn.Module):
    """Image (B, C, *grid) -> class logits (B, K, *grid); 2D or 3D from the config.

    Encoder level i works at 1/2**i of the grid; decoder level j at
    1/2**(D - j), where D is the number of down-samplings. Decoder level 0 is
    the bottleneck (the encoder's deepest features, nothing to concatenate);
    every later level up-samples, concatenates encoder level D - j and
    applies a ResBlock.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        dims, net = config.dims, config.network
        enc, dec = net.encoder_widths, net.decoder_widths
        self.down = nn.ModuleList()
        self.encoder = nn.ModuleList()
        prev = config.preprocessing.channels
        for level, width in enumerate(enc):
            self.down.append(Downsample(dims, prev, net.downsample) if level > 0 else nn.Identity())
            self.encoder.append(ResBlock(dims, prev, width, net.norm, net.dropout))
            prev = width
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level, width in enumerate(dec):
            skip = enc[len(enc) - 1 - level] if level > 0 else 0
            self.up.append(Upsample(dims, prev) if level > 0 else nn.Identity())
            self.decoder.append(ResBlock(dims, prev + skip, width, net.norm, net.dropout))
            prev = width
        self.head = conv(dims, prev, config.num_classes, kernel=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for down, block in zip(self.down, self.encoder):
            x = block(down(x))
            skips.append(x)
        x = skips.pop()  # the bottleneck feeds decoder level 0 directly
        for level, (up, block) in enumerate(zip(self.up, self.decoder)):
            if level > 0:
                x = torch.cat([up(x), skips.pop()], dim=1)
            x = block(x)
        return self.head(x)
