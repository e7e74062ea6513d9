"""Loading a model file into its network, ready for inference."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..architectures import build_network
from ..config import ModelConfig
from ..errors import LDSegError, ModelFileError
from .modelfile import load_model_file
from .models import resolve_model


def build_model(config: ModelConfig, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The config's network (LDSeg or the Res-UNet baseline) with ``state``
    loaded; any mismatch is a ModelFileError naming ``source``."""
    model = build_network(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        what = (missing or unexpected or wrong)[0]
        raise ModelFileError(
            f"{source}: weights do not match the model configuration "
            f"({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} of the wrong shape, e.g. {what})"
        )
    model.load_state_dict(state)
    return model.eval()


def load_model(spec: str | os.PathLike | None = None) -> tuple[nn.Module, Path]:
    path = resolve_model(spec)
    config, state = load_model_file(path)
    try:
        return build_model(config, state, path.name), path
    except (ValueError, RuntimeError) as e:
        raise LDSegError(f"{path.name}: cannot build the model ({e})") from None
