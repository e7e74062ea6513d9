"""The header of a model file, read without torch and without the weights.

A model file is one safetensors file (8-byte little-endian header length,
JSON header, raw tensor bytes) whose ``__metadata__`` carries the JSON model
config. Listing models (``ldseg models``, the Slicer model list) needs only
the config, so it reads the header alone: no torch import, no weight bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import MODEL_FORMAT_VERSION
from ..config import ModelConfig
from ..errors import ModelFileError

MAGIC = "ldseg-model"
MAX_HEADER = 64 * 1024 * 1024


@dataclass
class Header:
    tensors: dict[str, Any]  # name -> {"dtype", "shape", "data_offsets"}
    metadata: dict[str, str]
    data_start: int  # file offset of the tensor bytes
    file_size: int


def read_header(path: Path) -> Header:
    """Parse a safetensors header; any malformation is a ModelFileError."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(8)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise ModelFileError(
                f"{name}: this is a pickled PyTorch file, not an LDSeg model file; "
                "it is refused because loading a pickle can run code"
            )
        if len(head) < 8:
            raise ModelFileError(f"{name}: not an LDSeg model file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER, size - 8):
            raise ModelFileError(f"{name}: not an LDSeg model file (bad header size)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{name}: not an LDSeg model file (unreadable header)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name}: not an LDSeg model file (bad header)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{name}: corrupt model file (__metadata__ is not an object)")
    return Header(tensors=header, metadata=metadata, data_start=8 + n, file_size=size)


def config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    """The model config a file's metadata carries (checks format and version)."""
    path = Path(path)
    if metadata.get("format") != MAGIC:
        raise ModelFileError(f"{path.name}: not an LDSeg model file (a safetensors file of another kind)")
    try:
        version = int(metadata.get("format_version", "0"))
    except (TypeError, ValueError):
        raise ModelFileError(f"{path.name}: corrupt model file (bad format version)") from None
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name}: model format {version} is newer than this LDSeg engine "
            f"reads ({MODEL_FORMAT_VERSION}); update LDSeg"
        )
    try:
        return ModelConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path.name}: corrupt model file (bad config: {e})") from None


def read_config(path: Path) -> ModelConfig:
    """Config of a model file, from its header alone (the weights are not read)."""
    return config_from_metadata(Path(path), read_header(Path(path)).metadata)
