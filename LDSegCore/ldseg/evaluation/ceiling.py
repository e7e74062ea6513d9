"""The autoencoder ceiling: how well LDSeg's label latent can hold a label.

The reference label map goes through the label encoder to its latent z_0
and straight back through the decoder (with the image where the decoder
refines boundaries), no diffusion. Sampling can at best find that z_0, so
the Dice of this reconstruction bounds the Dice the latent allows. Like
every other number of the evaluation it is taken on the case's own grid:
the label is resampled to the model grid as in training, and the decoded
probabilities are resampled back as ``Segmenter.segment`` does.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.preprocess import axis_turn, prepare_image, resample_classes
from ..errors import InputError
from ..inference.restore import restore_result
from ..inference.segmenter import Segmenter
from ..io.images import MedicalImage

__all__ = ["autoencoded_classes"]


def autoencoded_classes(segmenter: Segmenter, image: MedicalImage, classes) -> np.ndarray:
    """The class map (input grid) of ``classes`` (class indices of ``image``'s
    grid) after the label autoencoder of ``segmenter``'s LDSeg model."""
    if not hasattr(segmenter.model, "autoencode"):
        raise InputError(f"a {segmenter.config.architecture} model has no label autoencoder")
    classes = np.asarray(classes)
    if classes.shape != tuple(image.spatial_shape):
        raise InputError(f"label shape {classes.shape} differs from the image's {tuple(image.spatial_shape)}")
    pre = segmenter.config.preprocessing
    turn = axis_turn(image.geometry, pre)
    x = prepare_image(image, pre)[None].to(segmenter.device)
    labels = resample_classes(turn.apply(torch.from_numpy(classes.astype(np.int64))), pre)[None].to(segmenter.device)
    with torch.inference_mode():
        probabilities = segmenter.model.autoencode(labels, x).float().softmax(dim=1)[0]
        return restore_result(turn.undo(probabilities), None, image.spatial_shape, segmenter.restore_budget).classes
