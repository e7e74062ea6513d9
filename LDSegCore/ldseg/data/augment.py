"""Training-time augmentation on batches.

All randomness comes from the ``generator`` passed in, and every call draws
the same number of random values whatever the outcome, so a run resumed with
a saved generator state reproduces its augmentations exactly.
"""

from __future__ import annotations

import torch

__all__ = ["random_flip", "random_intensity"]


def _uniform(shape, generator: torch.Generator) -> torch.Tensor:
    """U[0, 1) samples on the generator's device."""
    return torch.rand(shape, generator=generator, device=generator.device)


def random_flip(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    allowed: torch.Tensor | None = None,
    mirror: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample along each spatial axis with probability ``p``.

    ``images`` is ``(B, C, *spatial)`` and ``labels`` ``(B, *spatial)`` class
    indices; a sample's image and label always get the same flips. ``allowed``,
    a ``(B, spatial)`` bool tensor, limits each sample to some axes (None: all);
    the same random values are drawn either way. ``mirror`` = ``(axis, swap)``:
    a sample flipped along its left-right ``axis`` (``(B,)``) has its labels
    mapped through ``swap`` (class index -> class index), so a left kidney
    that a flip puts on the right is labelled right.
    """
    batch, spatial = images.shape[0], images.dim() - 2
    if tuple(labels.shape) != (batch, *images.shape[2:]):
        raise ValueError(f"labels {tuple(labels.shape)} do not match images {tuple(images.shape)}")
    flips = _uniform((batch, spatial), generator) < p
    if allowed is not None:
        if tuple(allowed.shape) != (batch, spatial):
            raise ValueError(f"allowed axes {tuple(allowed.shape)} do not match {batch} samples of {spatial} axes")
        flips = flips & allowed.to(flips.device, torch.bool)
    flips = flips.to(images.device)
    for axis in range(spatial):
        mask = flips[:, axis]
        image_mask = mask.view(batch, *([1] * (images.dim() - 1)))
        label_mask = mask.view(batch, *([1] * (labels.dim() - 1)))
        images = torch.where(image_mask, images.flip(axis + 2), images)
        labels = torch.where(label_mask, labels.flip(axis + 1), labels)
    if mirror is not None:
        axis, swap = mirror
        mirrored = flips.gather(1, axis.to(flips.device).view(batch, 1)).to(labels.device)
        labels = torch.where(mirrored.view(batch, *([1] * (labels.dim() - 1))), swap.to(labels.device)[labels], labels)
    return images, labels


def random_intensity(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: float = 0.1,
    shift: float = 0.1,
) -> torch.Tensor:
    """Mild per-sample contrast (about the sample mean) and brightness jitter.

    Contrast factor is drawn from ``1 +- scale``, brightness offset from
    ``+- shift`` (in normalized intensity units).
    """
    batch = images.shape[0]
    draws = _uniform((batch, 2), generator).to(images.device, images.dtype)
    view = (batch, *([1] * (images.dim() - 1)))
    factor = (1 + scale * (2 * draws[:, 0] - 1)).view(view)
    offset = (shift * (2 * draws[:, 1] - 1)).view(view)
    mean = images.mean(dim=tuple(range(1, images.dim())), keepdim=True)
    return (images - mean) * factor + mean + offset
