"""Training-time augmentation on batches.

All randomness comes from the ``generator`` passed in, and every call draws
the same number of random values whatever the outcome, so a run resumed with
a saved generator state reproduces its augmentations exactly.
"""

from __future__ import annotations

import torch

from ..config import IntensityJitter

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


def random_intensity(images: torch.Tensor, generator: torch.Generator, jitter: IntensityJitter) -> torch.Tensor:
    """Per-sample appearance changes an image of the same anatomy may show:
    gamma, per-channel contrast and brightness (stain and scanner changes),
    and Gaussian noise. Labels are unchanged.

    ``images`` is ``(B, C, *spatial)``. Strengths are fractions of each
    sample's own intensity range, so they mean the same whatever the
    normalization. Every call draws the same random values, applied or not.
    """
    batch, channels = images.shape[:2]
    draws = _uniform((batch, 2 * channels + 4), generator).to(images.device, images.dtype)
    field = torch.randn(images.shape, generator=generator, device=generator.device).to(images.device, images.dtype)
    view = (batch, *([1] * (images.dim() - 1)))
    channel_view = (batch, channels, *([1] * (images.dim() - 2)))
    low = images.amin(dim=tuple(range(1, images.dim())), keepdim=True)
    span = (images.amax(dim=tuple(range(1, images.dim())), keepdim=True) - low).clamp_min(1e-6)

    gamma_on = draws[:, 2 * channels] < jitter.gamma_p
    exponent = torch.where(gamma_on, torch.exp(jitter.gamma * (2 * draws[:, 2 * channels + 1] - 1)), 1.0)
    images = low + span * ((images - low) / span).clamp(0, 1) ** exponent.view(view)

    factor = (1 + jitter.contrast * (2 * draws[:, :channels] - 1)).view(channel_view)
    offset = (jitter.brightness * (2 * draws[:, channels : 2 * channels] - 1)).view(channel_view) * span
    mean = images.mean(dim=tuple(range(2, images.dim())), keepdim=True)
    images = (images - mean) * factor + mean + offset

    noise_on = draws[:, 2 * channels + 2] < jitter.noise_p
    sigma = torch.where(noise_on, jitter.noise * draws[:, 2 * channels + 3], 0.0).view(view) * span
    return images + sigma * field
