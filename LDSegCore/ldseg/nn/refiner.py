"""Boundary refiner: image detail for the label decoder, where the latent is unsure.

The Res-UNet beats a plain latent decoder at boundaries because its skips
carry full-resolution image detail. Giving the decoder those skips outright
lets it learn to ignore the sampled latent (a Res-UNet with a decorative
diffusion, whose samples all agree). The refiner instead adds a correction
from local image features and the coarse prediction, scaled per voxel by the
coarse prediction's own uncertainty (1 - max p, rescaled to [0, 1], with no
gradient through the gate): where the decoded latent is confident the image
cannot overrule it, so the latent still decides the shape and what differs
between samples; in the band around its boundaries the image sharpens it.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ResBlock, conv


class BoundaryRefiner(nn.Module):
    def __init__(self, dims: int, channels: int, num_classes: int, width: int, norm: str = "group"):
        super().__init__()
        self.num_classes = num_classes
        self.image_features = ResBlock(dims, channels, width, norm)
        self.mix = ResBlock(dims, width + num_classes, width, norm)
        self.out = conv(dims, width, num_classes, kernel=1)
        nn.init.zeros_(self.out.weight)  # starts as the identity: refined = coarse
        nn.init.zeros_(self.out.bias)

    def gate(self, coarse_logits: torch.Tensor) -> torch.Tensor:
        """Per-voxel weight of the correction: 0 where the coarse prediction is
        certain, 1 where it is uniform over the classes."""
        p = coarse_logits.detach().float().softmax(dim=1)
        c = self.num_classes
        return ((1 - p.amax(dim=1, keepdim=True)) * (c / (c - 1))).clamp(0, 1)

    def forward(self, coarse_logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if image.shape[0] != coarse_logits.shape[0]:  # N samples of one image
            image = image.expand(coarse_logits.shape[0], *image.shape[1:])
        f = self.image_features(image)
        probs = coarse_logits.float().softmax(dim=1).to(f.dtype)
        delta = self.out(self.mix(torch.cat([f, probs], dim=1)))
        return coarse_logits + self.gate(coarse_logits).to(delta.dtype) * delta
