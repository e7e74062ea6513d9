"""Samples spread over the image flips a model was trained with.

A model trained with random flips has learned each flipped view of an image,
but not exactly the same way: where its answers for the views differ it is
unsure in a way the sampling noise alone does not show (test-time augmentation
as an uncertainty estimate). Sample k sees the image flipped by the (k mod F)-th
of the F flip combinations, and its output is flipped back; its noise is the
one it has without flips, so the two differ only in the views. Costs one image
encoding per view; the denoiser and decoder still run N times.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Callable

import torch

from ..config import ModelConfig
from ..data.laterality import laterality
from ..diffusion.schedule import NoiseSchedule
from .sampling import SamplingOptions, merge_moments, sample_noise, sample_probabilities

#: A flip view: the spatial axes (0 = first spatial axis) flipped; () is the image as it is.
View = tuple[int, ...]
NO_FLIPS: tuple[View, ...] = ((),)


def trained_flip_axes(config: ModelConfig) -> list[int] | None:
    """The spatial axes the model's training flipped every case along, or None
    where that is not known or a flip would change what a class means."""
    sides = laterality(config.class_names)
    if sides.pairs or sides.unpaired:  # a left-right flip swaps or falsifies such classes
        return None
    options = config.training.get("options") or {}
    if options.get("augment") is False:
        return None
    flip_axes = config.training.get("flip_axes")
    dims = config.preprocessing.dims
    if flip_axes in ("all", None):  # None: a file from before flip_axes, when every axis was flipped
        return list(range(dims))
    if flip_axes == "left-right" and config.preprocessing.orientation == "RAS":
        return [dims - 1]  # RAS order: the last axis runs toward the patient's right
    return None


def flip_views(config: ModelConfig) -> tuple[View, ...]:
    """Every combination of the trained flip axes, the unflipped view first
    (F = 4 for a 2D model flipped along both axes); NO_FLIPS where none is known."""
    axes = trained_flip_axes(config)
    if not axes:
        return NO_FLIPS
    return tuple(c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r))


def flipped(t: torch.Tensor, view: View) -> torch.Tensor:
    """``t`` (B, C, *spatial) flipped along the spatial axes of ``view``."""
    return t.flip([a + 2 for a in view]) if view else t


@torch.inference_mode()
def sample_over_views(
    model,
    image: torch.Tensor,
    encode: Callable[[torch.Tensor], torch.Tensor],
    schedule: NoiseSchedule,
    options: SamplingOptions,
    views: tuple[View, ...],
    on_progress: Callable[[float], None] | None = None,
    on_batch: Callable[[torch.Tensor], None] | None = None,
):
    """(mean, sd) over N samples of ``image`` (1, C, *grid), sample k seeing
    view k mod F; ``encode`` gives a view's image latent. With one view this is
    :func:`~ldseg.inference.sampling.sample_probabilities` exactly."""
    if tuple(views) == NO_FLIPS:
        return sample_probabilities(
            model, encode(image), schedule, options, on_progress=on_progress, image=image, on_batch=on_batch
        )
    n, f = options.samples, len(views)
    count, mean, m2 = 0, None, None
    kept: dict[int, torch.Tensor] = {}  # sample index -> its probabilities, only when asked for
    for j, view in enumerate(views[:n]):
        ks = list(range(j, n, f))  # the samples that see this view, each with its own noise
        keep = None if on_batch is None else _keeper(kept, ks)
        v_mean, v_sd = _sample_view(model, image, encode, schedule, options, view, j, ks, on_progress, keep, count)
        count, mean, m2 = merge_moments(count, mean, m2, len(ks), v_mean, v_sd**2 * len(ks))
    if on_batch is not None:  # in sample order, as without flips (a result's component k is sample k)
        for k in sorted(kept):
            on_batch(kept.pop(k)[None])
    sd = (m2 / count).clamp_min(0).sqrt() if count > 1 else torch.zeros_like(mean)
    return mean.float(), sd.float()


def _keeper(kept: dict[int, torch.Tensor], ks: list[int]) -> Callable[[torch.Tensor], None]:
    """An on_batch that files a view's batches under their sample indices ``ks``."""
    order = iter(ks)

    def keep(probs: torch.Tensor) -> None:
        for one in probs:
            kept[next(order)] = one

    return keep


def _sample_view(model, image, encode, schedule, options, view, j, ks, on_progress, on_batch, done):
    """(mean, sd) of samples ``ks`` on view ``view``, flipped back, in float64."""
    x = flipped(image, view)
    z_i = encode(x)
    shape = (model.config.network.latent_channels, *z_i.shape[2:])
    # each view its own stream for stochastic steps (DDPM, eta > 0), so views do not share noise
    seed = None if options.seed is None else options.seed + 7919 * j

    def view_progress(fraction: float) -> None:
        if on_progress is not None:
            on_progress((done + fraction * len(ks)) / options.samples)

    def view_batch(probs: torch.Tensor) -> None:
        if on_batch is not None:
            on_batch(flipped(probs, view))

    v_mean, v_sd = sample_probabilities(
        model,
        z_i,
        schedule,
        replace(options, samples=len(ks), seed=seed),
        on_progress=view_progress,
        noise=lambda i: sample_noise(options, ks[i], shape),
        image=x,
        on_batch=view_batch,
    )
    return flipped(v_mean[None], view)[0].double(), flipped(v_sd[None], view)[0].double()


__all__ = ["NO_FLIPS", "View", "flip_views", "flipped", "sample_over_views", "trained_flip_axes"]
