"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    # Integration tests run a whole script on real data (tens of seconds);
    # deselect them with -m "not integration".
    config.addinivalue_line("markers", "integration: end-to-end run of a script on real data (slow)")


@pytest.fixture
def shared_data() -> Path:
    """The project's real data (../shared/data from the repository root)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {path}")  # CI must test on the real data
        pytest.skip(f"shared data not found at {path}")
    return path


import torch  # noqa: E402

from ldseg.config import ModelConfig, Preprocessing  # noqa: E402
from ldseg.io.modelfile import save_model  # noqa: E402
from ldseg.nn.ldseg_net import LDSegNet  # noqa: E402
from ldseg.training.presets import network_preset  # noqa: E402


def make_model_file(
    path, *, dims=3, channels=1, grid=(16, 32, 32), label_values=(0, 1), class_names=None, seed=0, orientation="none"
):
    """A real (untrained, randomly initialized) tiny model saved as a model file."""
    torch.manual_seed(seed)
    names = class_names or ("background",) + tuple(f"class {v}" for v in label_values[1:])
    config = ModelConfig(
        preprocessing=Preprocessing(
            dims=dims, channels=channels, grid=grid, label_values=label_values, orientation=orientation
        ),
        class_names=names,
        name=Path(path).stem,
        network=network_preset("tiny", image_attention=dims == 2),
    )
    model = LDSegNet(config)
    save_model(path, config, model.state_dict())
    return path


@pytest.fixture(scope="session")
def tiny_3d_model(tmp_path_factory):
    return make_model_file(tmp_path_factory.mktemp("models") / "tiny3d.safetensors")


@pytest.fixture(scope="session")
def tiny_2d_rgb_model(tmp_path_factory):
    return make_model_file(
        tmp_path_factory.mktemp("models") / "tiny2d.safetensors",
        dims=2,
        channels=3,
        grid=(32, 32),
        label_values=(0, 255),
        class_names=("background", "gland"),
    )
