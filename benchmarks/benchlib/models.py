"""The networks the benchmarks run: shipped model files, and random-init
models of fixed sizes built from the ``small`` preset (and their Res-UNet
twins), saved as real model files so they load like any user's model."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ldseg.architectures import build_network
from ldseg.config import ModelConfig, Preprocessing
from ldseg.io.modelfile import save_model
from ldseg.io.modelheader import read_config
from ldseg.io.models import resolve_model
from ldseg.training.presets import network_preset


def synthetic_config(grid: tuple[int, ...], size: str = "small") -> ModelConfig:
    """A two-class model on ``grid``: RGB for 2D (histology-like), gray for
    3D; image-encoder attention in 2D only, as ``ldseg train`` chooses."""
    dims = len(grid)
    pre = Preprocessing(dims=dims, channels=3 if dims == 2 else 1, grid=tuple(grid), label_values=(0, 1))
    name = "synthetic-" + "x".join(str(g) for g in grid)
    return ModelConfig(
        preprocessing=pre,
        class_names=("background", "foreground"),
        name=name,
        network=network_preset(size, image_attention=dims == 2),
    )


def resunet_twin(config: ModelConfig) -> ModelConfig:
    """The deterministic Res-UNet with the same grid, classes and sizes."""
    twin = copy.deepcopy(config)
    twin.architecture = "resunet"
    twin.name = config.name + "-resunet"
    return twin


def write_model(config: ModelConfig, path: Path, seed: int = 0) -> Path:
    """A random-init model file of ``config`` (weights seeded)."""
    torch.manual_seed(seed)
    save_model(path, config, build_network(config).state_dict())
    return path


def model_files(spec: dict, folder: Path) -> tuple[Path, Path, ModelConfig]:
    """(LDSeg model file, Res-UNet twin file, LDSeg config) of a benchmark
    configuration: ``{"shipped": name}`` or ``{"grid": [...]}``."""
    if "shipped" in spec:
        path = resolve_model(spec["shipped"])
        config = read_config(path)
    else:
        config = synthetic_config(tuple(spec["grid"]), spec.get("size", "small"))
        path = write_model(config, folder / f"{config.name}.safetensors")
    twin = write_model(resunet_twin(config), folder / f"{config.name}-resunet.safetensors")
    return path, twin, config
