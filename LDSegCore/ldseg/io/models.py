"""Where models live: the ones shipped with LDSeg, the user's own folder, and
any file path. Used by ``ldseg`` and the Slicer module alike."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import LDSegError, ModelFileError
from ..nn import build_network
from .modelfile import load_model_file, read_config

#: Name of the model used when none is given.
DEFAULT_MODEL = "hippocampus"
MODEL_SUFFIX = ".safetensors"


def user_model_dir() -> Path:
    """$LDSEG_HOME/models, or ~/.ldseg/models."""
    home = os.environ.get("LDSEG_HOME")
    return (Path(home) if home else Path.home() / ".ldseg") / "models"


def shipped_model_dirs() -> list[Path]:
    """Models installed with the package, and Resources/Models of a source checkout."""
    package = Path(__file__).resolve().parents[1]  # ldseg/
    candidates = [package / "shipped_models", package.parents[1] / "Resources" / "Models"]
    return [p for p in candidates if p.is_dir()]


def _model_files() -> list[tuple[Path, str]]:
    found = []
    for folder in shipped_model_dirs():
        found += [(p, "shipped") for p in sorted(folder.glob(f"*{MODEL_SUFFIX}"))]
    user = user_model_dir()
    if user.is_dir():
        found += [(p, "user") for p in sorted(user.glob(f"*{MODEL_SUFFIX}"))]
    return found


def list_models() -> list[dict[str, Any]]:
    """Summaries of every usable model; unreadable files are listed with their error."""
    out = []
    for path, source in _model_files():
        try:
            summary = read_config(path).summary()
        except ModelFileError as e:
            summary = {"name": path.stem, "error": str(e)}
        out.append({**summary, "path": str(path), "source": source})
    return out


def resolve_model(spec: str | os.PathLike | None = None) -> Path:
    """A model file path from a path, a model name, or None (the default)."""
    if spec is not None and Path(spec).is_file():
        return Path(spec)
    name = str(spec) if spec is not None else os.environ.get("LDSEG_DEFAULT_MODEL", DEFAULT_MODEL)
    if spec is not None and (Path(name).suffix == MODEL_SUFFIX or os.sep in name):
        raise ModelFileError(f"{name}: model file not found")
    matches = [p for p, _ in _model_files() if p.stem == name]
    if not matches:
        for entry in list_models():
            if entry.get("name") == name:
                matches.append(Path(entry["path"]))
    if not matches:
        known = sorted({p.stem for p, _ in _model_files()})
        raise ModelFileError(
            f"no model named {name!r}"
            + (f" (available: {', '.join(known)})" if known else " and no models are installed")
        )
    return matches[-1]  # the user's own copy wins over a shipped one of the same name


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
