"""Every sample's segmentation of one image, for measures of the distribution.

Comparing a model's distribution with several raters needs each sample's
class map beside the mean probabilities and the uncertainty map: the
Segmenter keeps them on request (``keep_samples``), from the very samples
whose mean and SD it returns.

A deterministic Res-UNet has one output: its "samples" are N copies of its
class map, its softmax is its probability, and its uncertainty map is
1 - (largest class probability) instead of an SD that would be zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import SegmentOptions
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


def sample_segmentations(segmenter: Segmenter, image: MedicalImage, request: SegmentOptions) -> SampledSegmentation:
    """N = ``request.samples`` samples of ``image`` with the model of ``segmenter``."""
    result = segmenter.segment(image, request=request, keep_samples=True)
    if segmenter.architecture.stochastic:
        return SampledSegmentation(result.sample_classes, result.probabilities, result.sd, "sd", result.classes)
    return SampledSegmentation(
        samples=np.repeat(result.classes[None], request.samples, axis=0),
        probabilities=result.probabilities,
        uncertainty=1.0 - result.probabilities.max(axis=0),
        uncertainty_kind="1 - max probability",
        classes=result.classes,
    )
