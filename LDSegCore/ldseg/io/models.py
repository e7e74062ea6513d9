"""Where models live: the ones shipped with LDSeg, the user's own folder, and
any file path. Used by ``ldseg`` and the Slicer module alike.

Torch-free: listing reads each file's header only (:mod:`.modelheader`), so
the Slicer module can list models in its own process before torch is
installed, and a large file costs no memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelFileError
from .modelheader import read_config

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
