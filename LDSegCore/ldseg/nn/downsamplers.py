"""Plain down-samplers in place of the learned encoders: the paper's Table V
ablation (LDSeg(ld), LDSeg(id)), kept so that anyone can rerun it.

Both sample the input at the centre of each 2**D block (nearest neighbour),
so the latent has the learned encoder's grid but carries no learned
representation.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import standardize_latent


def _nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Every ``factor``-th voxel along each spatial axis of (B, C, *grid), from the block centres."""
    index = (slice(None), slice(None)) + tuple(slice(factor // 2, None, factor) for _ in x.shape[2:])
    return x[index]


class LabelDownsampler(nn.Module):
    """Class-index map (B, *grid) -> latent: the down-sampled label scaled to
    [-1, 1] (background -1, the last class +1), the same in every latent
    channel. Not standardized: a slice without foreground would have no SD."""

    def __init__(self, num_classes: int, latent_channels: int, downsamplings: int):
        super().__init__()
        self.num_classes, self.channels, self.factor = num_classes, latent_channels, 2**downsamplings

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        z = _nearest(labels.unsqueeze(1).float(), self.factor) * (2.0 / (self.num_classes - 1)) - 1.0
        return z.expand(-1, self.channels, *z.shape[2:]).contiguous()


class ImageDownsampler(nn.Module):
    """Image (B, C, *grid) -> image latent: the down-sampled image,
    standardized like the learned image latent; it has the image's channels."""

    def __init__(self, downsamplings: int):
        super().__init__()
        self.factor = 2**downsamplings

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return standardize_latent(_nearest(image, self.factor))
