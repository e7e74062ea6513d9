"""Every sample's segmentation of one image, for measures of the distribution.

:meth:`ldseg.inference.segmenter.Segmenter.segment` returns the mean and SD
of the N samples only; comparing a model's distribution with several raters
needs each sample's class map as well. This draws the same samples as
``segment`` (same seeded noise per sample, same batching and stochastic
stream, see :func:`ldseg.inference.sampling.sample_probabilities`) through
the lower-level sampling functions, and returns each sample's class map on
the input grid beside the mean probabilities and the uncertainty map.

A deterministic Res-UNet has one output: its "samples" are N copies of its
class map, its softmax is its probability, and its uncertainty map is
1 - (largest class probability) instead of an SD that would be zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.preprocess import prepare_image
from ..device import autocast, to_device_async
from ..inference.restore import restore_result
from ..inference.sampling import SamplingOptions, batch_size_for, decode_latents, denoise_samples, sample_noise
from ..inference.segmenter import Segmenter
from ..io.images import MedicalImage

__all__ = ["SampledSegmentation", "sample_segmentations"]


@dataclass
class SampledSegmentation:
    samples: np.ndarray  # (N, *spatial) class indices of every sample, input grid
    probabilities: np.ndarray  # (C, *spatial) mean class probabilities, input grid
    uncertainty: np.ndarray  # (*spatial) SD map (LDSeg) or 1 - max probability (Res-UNet)
    uncertainty_kind: str  # "sd" or "1 - max probability"
    classes: np.ndarray  # (*spatial) class map of the mean probabilities (what segment returns)


def sample_segmentations(
    segmenter: Segmenter,
    image: MedicalImage,
    *,
    samples: int,
    steps: int | None = None,
    sampler: str | None = None,
    seed: int | None = 0,
) -> SampledSegmentation:
    """N samples of ``image`` with the model of ``segmenter`` (see module doc)."""
    config = segmenter.config
    if not config.uses_diffusion:
        result = segmenter.segment(image, samples=1, seed=seed)
        copies = np.repeat(result.classes[None], samples, axis=0)
        return SampledSegmentation(
            samples=copies,
            probabilities=result.probabilities,
            uncertainty=1.0 - result.probabilities.max(axis=0),
            uncertainty_kind="1 - max probability",
            classes=result.classes,
        )
    diff = config.diffusion
    options = SamplingOptions(
        samples=samples,
        sampler=sampler or diff.sampler,
        steps=steps or diff.sampling_steps,
        restandardize=diff.restandardize,
        seed=seed,
        bf16=segmenter.bf16,
        memory_budget=segmenter.memory_budget,
    )
    networks = segmenter.networks
    device = segmenter.device
    shape = image.spatial_shape
    with torch.inference_mode():
        x = prepare_image(image, config.preprocessing)[None].to(device)
        with autocast(device, segmenter.bf16):
            z_i = networks.encode_image(x).float()
        latent_shape = (config.network.latent_channels, *z_i.shape[2:])
        # the stochastic steps' stream, created as sample_probabilities creates it
        generator = torch.Generator().manual_seed(seed if seed is not None else 0)
        batch = batch_size_for(networks, options)
        grid_probabilities = []
        maps = []
        for start in range(0, samples, batch):
            count = min(batch, samples - start)
            z_T = to_device_async(
                torch.stack([sample_noise(options, start + i, latent_shape) for i in range(count)]), device
            )
            probs = decode_latents(
                networks, denoise_samples(networks, z_i, z_T, segmenter.schedule, options, generator), options
            )
            for one in probs:
                maps.append(restore_result(one, None, shape, segmenter.restore_budget).classes)
            grid_probabilities.append(probs.double().cpu())
        stacked = torch.cat(grid_probabilities)
        mean = stacked.mean(dim=0).float()
        sd = stacked.std(dim=0, unbiased=False).float() if samples > 1 else None  # population SD, as segment's
        restored = restore_result(mean, sd, shape, segmenter.restore_budget)
    return SampledSegmentation(
        samples=np.stack(maps),
        probabilities=restored.probabilities,
        uncertainty=restored.sd,
        uncertainty_kind="sd",
        classes=restored.classes,
    )
