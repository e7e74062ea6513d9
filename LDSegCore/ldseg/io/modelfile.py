"""Model files: one safetensors file whose header metadata carries the JSON
model config.

We read and write the safetensors layout ourselves (8-byte header length,
JSON header, raw little-endian tensor bytes): loading parses JSON and copies
bytes, so a model file can never execute code (unlike a pickle), and the
engine needs no extra dependency for it.

Every file is distrusted until checked: the header is bounded and parsed
before any tensor byte is read, each tensor's bytes must lie inside the file
and not overlap another's, and weights must be finite. Listing models reads
headers only, so a huge file in the models folder costs nothing. torch is
imported only where tensors are made, so reading a config stays light.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .. import MODEL_FORMAT_VERSION
from ..config import ModelConfig
from ..errors import ModelFileError
from .atomic import atomic_path

if TYPE_CHECKING:
    import torch

MAGIC = "ldseg-model"
MAX_HEADER = 64 * 1024 * 1024

#: safetensors dtype codes and their little-endian numpy storage (BF16 is
#: stored as raw 16-bit words and viewed as bfloat16 by torch).
_NUMPY = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
_FLOAT_CODES = ("F64", "F32", "F16", "BF16")


def _torch_codes() -> dict:
    import torch

    return {
        torch.float64: "F64",
        torch.float32: "F32",
        torch.float16: "F16",
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
        if t.dtype == torch.bfloat16:
            t = t.float()
        if t.dtype not in codes:
            raise ValueError(f"cannot store tensor {name} of dtype {t.dtype}")
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)  # align the data section
    with atomic_path(path, expected_size=8 + len(raw) + offset) as tmp, open(tmp, "wb") as f:
        for chunk in (struct.pack("<Q", len(raw)), raw, *blobs):
            f.write(chunk)


# -- reading ---------------------------------------------------------------------


def _foreign_kind(head: bytes) -> str:
    """What a file that is not safetensors looks like, by its real signature
    (only asked after the safetensors header failed to parse)."""
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (e.g. a PyTorch .pt/.pth file)"
    # pickle protocol 2+ opens with PROTO (0x80) and the protocol number
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickled file (e.g. a PyTorch .pt/.pth file)"
    return ""


def _open_model_file(path: Path) -> tuple[BinaryIO, int]:
    """Open a regular file for reading (a FIFO or device is refused before
    opening, so it cannot hang us); returns the file and its size."""
    name = path.name
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file not found") from None
    except OSError as e:
        raise ModelFileError(f"{name}: cannot read the model file ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelFileError(f"{path}: model file not found (this is a folder)")
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError(f"{name}: not a regular file (a pipe or device cannot be a model file)")
    try:
        return open(path, "rb"), info.st_size
    except OSError as e:
        raise ModelFileError(f"{name}: cannot read the model file ({e.strerror})") from None


def _read_exactly(f: BinaryIO, count: int, name: str) -> bytes:
    try:
        data = f.read(count)
    except OSError as e:
        raise ModelFileError(f"{name}: cannot read the model file ({e.strerror})") from None
    if len(data) != count:
        raise ModelFileError(f"{name}: corrupt or truncated model file")
    return data


def _parse_header(f: BinaryIO, size: int, name: str) -> tuple[dict[str, Any], int]:
    """The JSON header (a dict) and the size of the data section after it."""
    head = _read_exactly(f, min(size, 8), name)
    header = None
    if len(head) == 8:
        (n,) = struct.unpack("<Q", head)
        if 2 <= n <= min(MAX_HEADER, size - 8):
            raw = _read_exactly(f, n, name)
            try:
                header = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                header = None
            if isinstance(header, dict):
                return header, size - 8 - n
    kind = _foreign_kind(head)
    if kind:
        raise ModelFileError(
            f"{name}: this is {kind}, not an LDSeg model file; it is refused because loading a pickle can run code"
        )
    if size < 8:
        raise ModelFileError(f"{name}: not an LDSeg model file (too short)")
    raise ModelFileError(f"{name}: not an LDSeg model file (no readable safetensors header)")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_entries(header: dict[str, Any], body_size: int, name: str) -> list[tuple[str, str, list, int, int]]:
    """Checked (key, dtype, shape, begin, end) of every tensor: shapes match
    their byte counts, bytes lie inside the file and no two tensors overlap."""
    entries = []
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(spec, dict):
            raise ModelFileError(f"{name}: corrupt model file (bad entry for {key!r})")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if (
            dtype not in _NUMPY
            or not isinstance(shape, list)
            or not all(_is_count(s) for s in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(v) for v in offsets)
        ):
            raise ModelFileError(f"{name}: corrupt model file (bad entry for {key!r})")
        begin, end = offsets
        nbytes = math.prod(shape) * np.dtype(_NUMPY[dtype]).itemsize  # Python ints: no overflow
        if not begin <= end <= body_size or end - begin != nbytes:
            raise ModelFileError(f"{name}: corrupt or truncated model file (tensor {key!r})")
        entries.append((key, dtype, shape, begin, end))
    ordered = sorted((b, e, k) for k, _, _, b, e in entries if e > b)
    for (_, end_a, key_a), (begin_b, _, key_b) in zip(ordered, ordered[1:]):
        if begin_b < end_a:
            raise ModelFileError(f"{name}: corrupt model file (tensors {key_a!r} and {key_b!r} overlap)")
    return entries


def _metadata(header: dict[str, Any], name: str) -> dict[str, str]:
    metadata = header.get("__metadata__", {})
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ModelFileError(f"{name}: corrupt model file (__metadata__ must map names to strings)")
    return metadata


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """Metadata of a safetensors file, reading its header only."""
    path = Path(path)
    f, size = _open_model_file(path)
    with f:
        header, body_size = _parse_header(f, size, path.name)
        _tensor_entries(header, body_size, path.name)
        return _metadata(header, path.name)


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and metadata; any malformation is a ModelFileError."""
    import torch

    path = Path(path)
    name = path.name
    f, size = _open_model_file(path)
    with f:
        header, body_size = _parse_header(f, size, name)
        entries = _tensor_entries(header, body_size, name)
        metadata = _metadata(header, name)
        data_start = size - body_size
        tensors = {}
        try:
            for key, dtype, shape, begin, end in entries:
                array = np.empty(shape, dtype=_NUMPY[dtype])
                f.seek(data_start + begin)
                if end > begin and f.readinto(memoryview(array.reshape(-1).view(np.uint8))) != end - begin:
                    raise ModelFileError(f"{name}: corrupt or truncated model file (tensor {key!r})")
                array = array.astype(array.dtype.newbyteorder("="), copy=False)
                tensor = torch.from_numpy(array)
                tensors[key] = tensor.view(torch.bfloat16) if dtype == "BF16" else tensor
        except MemoryError:
            raise ModelFileError(f"{name}: not enough memory to load the model file ({size / 1e9:.1f} GB)") from None
        except OSError as e:
            raise ModelFileError(f"{name}: cannot read the model file ({e.strerror})") from None
    return tensors, metadata


def save_model(path: Path, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    config.validate()
    metadata = {"format": MAGIC, "format_version": str(config.format_version), "config": json.dumps(config.to_dict())}
    write_safetensors(Path(path), state, metadata)


def read_config(path: Path) -> ModelConfig:
    """Config of a model file (checks format, version and the header; reads no weights)."""
    return _config_from_metadata(Path(path), read_safetensors_metadata(Path(path)))


def load_model_file(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and weights; weights holding NaN or infinity are refused (they
    would give an all-background segmentation and an all-NaN SD)."""
    import torch

    path = Path(path)
    tensors, metadata = read_safetensors(path)
    config = _config_from_metadata(path, metadata)
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path.name}: corrupt model file (weights {key!r} hold NaN or infinite values)")
    return config, tensors


def _config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    if metadata.get("format") != MAGIC:
        raise ModelFileError(f"{path.name}: not an LDSeg model file (a safetensors file of another kind)")
    text = metadata.get("format_version", "0")
    if not text.strip().isdigit():
        raise ModelFileError(f"{path.name}: corrupt model file (bad format version {text[:20]!r})")
    version = int(text)
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name}: model format {version} is newer than this LDSeg engine "
            f"reads ({MODEL_FORMAT_VERSION}); update LDSeg"
        )
    try:
        config = json.loads(metadata["config"])
        if not isinstance(config, dict):
            raise ValueError("the config must be a JSON object")
        return ModelConfig.from_dict(config)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ModelFileError(f"{path.name}: corrupt model file (bad config: {reason})") from None
