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

from ..config import ModelConfig
from ..errors import ModelFileError
from .atomic import atomic_path
from .modelheader import MAGIC, config_from_metadata, read_header

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
    name = path.name
    parsed = read_header(path)
    header, metadata = parsed.tensors, parsed.metadata
    data = path.read_bytes()
    n = parsed.data_start - 8
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


def load_model_file(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    tensors, metadata = read_safetensors(Path(path))
    return config_from_metadata(Path(path), metadata), tensors
