"""One object per architecture: what it builds, how it is trained (its loss)
and how it predicts (mean probabilities and, where it has one, the SD).

The trainer, the Segmenter and the command line ask the model config's
architecture instead of testing which one it is, so a new architecture (a
paper ablation, a future model) is one new module registered here.
"""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .base import Architecture, Prediction, TrainingStep
from .latent_diffusion import LatentDiffusion
from .resunet import ResUNetArchitecture

#: config.architecture -> its class (the keys are config.ARCHITECTURES).
REGISTRY: dict[str, type[Architecture]] = {"ldseg": LatentDiffusion, "resunet": ResUNetArchitecture}

__all__ = ["Architecture", "Prediction", "TrainingStep", "REGISTRY", "architecture_of", "build_network"]


def architecture_of(config: ModelConfig) -> Architecture:
    config.validate()
    return REGISTRY[config.architecture](config)


def build_network(config: ModelConfig) -> nn.Module:
    """The network a config describes, freshly initialized."""
    return architecture_of(config).build()
