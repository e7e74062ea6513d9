"""The four LDSeg networks (2D or 3D, chosen by the model config) and the
deterministic Res-UNet baseline."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .ldseg_net import LDSegNet
from .resunet import ResUNet


def build_network(config: ModelConfig) -> nn.Module:
    """The network a config describes: :class:`LDSegNet` or :class:`ResUNet`.

    The one place that maps ``config.architecture`` to a class, so model
    loading, training and ``ldseg info`` cannot disagree about it.
    """
    config.validate()
    return ResUNet(config) if config.architecture == "resunet" else LDSegNet(config)
