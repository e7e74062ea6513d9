"""Model files: one safetensors file whose header metadata carries the JSON
model config.

We read and write the safetensors layout ourselves (8-byte header length,
JSON header, raw little-endian tensor bytes): loading parses JSON and copies
bytes, so a model file can never execute code (unlike a pickle), and the
engine needs no extra dependency for it.

The header is read and checked first (:mod:`.modelheader`: bounded,
typed, tensors inside the file and not overlapping), so no tensor is
allocated for bytes the file does not have; weights must be finite. torch
is imported only where tensors are made.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ModelConfig
from ..errors import ModelFileError
from .atomic import atomic_path
from .modelheader import (
    MAGIC,
    NUMPY_DTYPES,
    config_from_metadata,
    open_model_file,
    parse_header,
    read_header,
)

if TYPE_CHECKING:
    import torch


def _torch_codes() -> dict:
    import torch

    return {
        torch.float64: "F64",
        torch.float32: "F32",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.int16: "I16",
        torch.int8: "I8",
        torch.uint8: "U8",
        torch.bool: "BOOL",
    }


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write tensors atomically (temp file in the same folder, then rename)."""
    import torch

    codes = _torch_codes()
    path = Path(path)
    header: dict[str, Any] = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, tensor in tensors.items():
        t = tensor.detach().cpu().contiguous()
        if t.dtype not in codes:
            raise ValueError(f"cannot store tensor {name} of dtype {t.dtype}")
        # numpy has no bfloat16: its 16 bits are stored as they are
        array = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)  # align the data section
    with atomic_path(path, expected_size=8 + len(raw) + offset) as tmp, open(tmp, "wb") as f:
        for chunk in (struct.pack("<Q", len(raw)), raw, *blobs):
            f.write(chunk)


# -- reading ---------------------------------------------------------------------


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """Metadata of a safetensors file, reading its header only."""
    return read_header(Path(path)).metadata


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and metadata; any malformation is a ModelFileError. The
    header is checked first (:mod:`.modelheader`), so no tensor is allocated
    for bytes the file does not have."""
    import torch

    path = Path(path)
    name = path.name
    f, size = open_model_file(path)
    with f:
        header = parse_header(f, size, name)
        tensors = {}
        try:
            for entry in header.entries:
                array = np.empty(entry.shape, dtype=NUMPY_DTYPES[entry.dtype])
                f.seek(header.data_start + entry.begin)
                wanted = entry.end - entry.begin
                if wanted and f.readinto(memoryview(array.reshape(-1).view(np.uint8))) != wanted:
                    raise ModelFileError(f"{name}: corrupt or truncated model file (tensor {entry.name!r})")
                tensor = torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=False))
                tensors[entry.name] = tensor.view(torch.bfloat16) if entry.dtype == "BF16" else tensor
        except MemoryError:
            raise ModelFileError(f"{name}: not enough memory to load the model file ({size / 1e9:.1f} GB)") from None
        except OSError as e:
            raise ModelFileError(f"{name}: cannot read the model file ({e.strerror})") from None
    return tensors, header.metadata


def save_model(path: Path, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    config.validate()
    metadata = {"format": MAGIC, "format_version": str(config.format_version), "config": json.dumps(config.to_dict())}
    write_safetensors(Path(path), state, metadata)


def load_model_file(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and weights; weights holding NaN or infinity are refused (they
    would give an all-background segmentation and an all-NaN SD)."""
    import torch

    path = Path(path)
    tensors, metadata = read_safetensors(path)
    config = config_from_metadata(path, metadata)
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path.name}: corrupt model file (weights {key!r} hold NaN or infinite values)")
    return config, tensors
