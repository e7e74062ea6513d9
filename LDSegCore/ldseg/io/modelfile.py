"""Model files: one safetensors file whose header metadata carries the JSON
model config.

We read and write the safetensors layout ourselves (8-byte header length,
JSON header, raw little-endian tensor bytes): loading parses JSON and copies
bytes, so a model file can never execute code (unlike a pickle), and the
engine needs no extra dependency for it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import MODEL_FORMAT_VERSION
from ..config import ModelConfig
from ..errors import ModelFileError
from .atomic import atomic_path

MAGIC = "ldseg-model"
MAX_HEADER = 64 * 1024 * 1024

_DTYPES = {
    "F64": (torch.float64, np.float64),
    "F32": (torch.float32, np.float32),
    "F16": (torch.float16, np.float16),
    "I64": (torch.int64, np.int64),
    "I32": (torch.int32, np.int32),
    "I16": (torch.int16, np.int16),
    "I8": (torch.int8, np.int8),
    "U8": (torch.uint8, np.uint8),
    "BOOL": (torch.bool, np.bool_),
}
_CODES = {torch_dtype: code for code, (torch_dtype, _) in _DTYPES.items()}


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write tensors atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    header: dict[str, Any] = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        if t.dtype not in _CODES:
            raise ValueError(f"cannot store tensor {name} of dtype {t.dtype}")
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)  # align the data section
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for chunk in (struct.pack("<Q", len(raw)), raw, *blobs):
            f.write(chunk)


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and metadata; any malformation is a ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    data = path.read_bytes()
    name = path.name
    if data[:2] == b"PK" or data[:1] == b"\x80":
        raise ModelFileError(
            f"{name}: this is a pickled PyTorch file, not an LDSeg model file; "
            "it is refused because loading a pickle can run code"
        )
    if len(data) < 8:
        raise ModelFileError(f"{name}: not an LDSeg model file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER, len(data) - 8):
        raise ModelFileError(f"{name}: not an LDSeg model file (bad header size)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{name}: not an LDSeg model file (unreadable header)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name}: not an LDSeg model file (bad header)")
    metadata = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + n :]
    tensors = {}
    for key, spec in header.items():
        try:
            torch_dtype, np_dtype = _DTYPES[spec["dtype"]]
            begin, end = (int(v) for v in spec["data_offsets"])
            shape = [int(s) for s in spec["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{name}: corrupt model file (bad entry for {key!r})") from None
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(body) or end - begin != count * np.dtype(np_dtype).itemsize:
            raise ModelFileError(f"{name}: corrupt or truncated model file (tensor {key!r})")
        arr = np.frombuffer(body[begin:end], dtype=np.dtype(np_dtype).newbyteorder("<")).reshape(shape)
        tensors[key] = torch.from_numpy(arr.astype(np_dtype, copy=True))
    return tensors, metadata


def save_model(path: Path, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    config.validate()
    metadata = {"format": MAGIC, "format_version": str(config.format_version), "config": json.dumps(config.to_dict())}
    write_safetensors(Path(path), state, metadata)


def read_config(path: Path) -> ModelConfig:
    """Config of a model file (checks format and version, not the weights)."""
    return _config_from_metadata(Path(path), read_safetensors(Path(path))[1])


def load_model_file(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    tensors, metadata = read_safetensors(Path(path))
    return _config_from_metadata(Path(path), metadata), tensors


def _config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    if metadata.get("format") != MAGIC:
        raise ModelFileError(f"{path.name}: not an LDSeg model file (a safetensors file of another kind)")
    try:
        version = int(metadata.get("format_version", "0"))
    except ValueError:
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
