"""The header of a model file, read without torch and without the weights.

A model file is one safetensors file (8-byte little-endian header length,
JSON header, raw tensor bytes) whose ``__metadata__`` carries the JSON model
config. Listing models (``ldseg models``, the Slicer model list) needs only
the config, so it reads the header alone: no torch import, no weight bytes,
and a huge file in the models folder costs nothing.

Every file is distrusted until checked: only a regular file is opened (a
FIFO would hang us), the header is bounded and parsed before anything else,
each tensor's bytes must lie inside the file and not overlap another's, and
only when the header fails to parse is the file named by its real signature
(pickle, zip), so the first byte of a good file, its header length mod 256,
can be anything.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .. import MODEL_FORMAT_VERSION
from ..config import ModelConfig
from ..errors import ModelFileError

MAGIC = "ldseg-model"
MAX_HEADER = 64 * 1024 * 1024

#: safetensors dtype codes and their little-endian numpy storage (BF16 is
#: stored as raw 16-bit words; torch views them as bfloat16).
NUMPY_DTYPES = {
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


@dataclass
class TensorEntry:
    name: str
    dtype: str  # safetensors code
    shape: list[int]
    begin: int  # byte offsets in the data section
    end: int


@dataclass
class Header:
    tensors: dict[str, Any]  # name -> {"dtype", "shape", "data_offsets"} as in the file
    metadata: dict[str, str]
    data_start: int  # file offset of the tensor bytes
    file_size: int
    entries: list[TensorEntry] = field(default_factory=list)  # the same, checked


def open_model_file(path: Path) -> tuple[BinaryIO, int]:
    """Open a regular file for reading (a pipe or device is refused before
    opening, so it cannot hang us); returns the file and its size."""
    path = Path(path)
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


def _foreign_kind(head: bytes) -> str:
    """What a file that is not safetensors is, by its real signature."""
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (e.g. a PyTorch .pt/.pth file)"
    # pickle protocol 2+ opens with PROTO (0x80) and the protocol number
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickled file (e.g. a PyTorch .pt/.pth file)"
    return ""


def _parse_json_header(f: BinaryIO, size: int, name: str) -> tuple[dict[str, Any], int]:
    """The JSON header (a dict) and the file offset of the data after it."""
    head = _read_exactly(f, min(size, 8), name)
    if len(head) == 8:
        (n,) = struct.unpack("<Q", head)
        if 2 <= n <= min(MAX_HEADER, size - 8):
            raw = _read_exactly(f, n, name)
            try:
                header = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                header = None
            if isinstance(header, dict):
                return header, 8 + n
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


def _tensor_entries(tensors: dict[str, Any], body_size: int, name: str) -> list[TensorEntry]:
    """Each tensor's shape matches its byte count, its bytes lie inside the
    file (so a huge shape without data is refused before allocating) and no
    two tensors share bytes."""
    entries = []
    for key, spec in tensors.items():
        if not isinstance(spec, dict):
            raise ModelFileError(f"{name}: corrupt model file (bad entry for {key!r})")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if (
            dtype not in NUMPY_DTYPES
            or not isinstance(shape, list)
            or not all(_is_count(s) for s in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(v) for v in offsets)
        ):
            raise ModelFileError(f"{name}: corrupt model file (bad entry for {key!r})")
        begin, end = offsets
        nbytes = math.prod(shape) * np.dtype(NUMPY_DTYPES[dtype]).itemsize  # Python ints: no overflow
        if not begin <= end <= body_size or end - begin != nbytes:
            raise ModelFileError(f"{name}: corrupt or truncated model file (tensor {key!r})")
        entries.append(TensorEntry(key, dtype, shape, begin, end))
    ordered = sorted((e.begin, e.end, e.name) for e in entries if e.end > e.begin)
    for (_, end_a, key_a), (begin_b, _, key_b) in zip(ordered, ordered[1:]):
        if begin_b < end_a:
            raise ModelFileError(f"{name}: corrupt model file (tensors {key_a!r} and {key_b!r} overlap)")
    return entries


def _metadata(value, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ModelFileError(f"{name}: corrupt model file (__metadata__ must map names to strings)")
    return value


def parse_header(f: BinaryIO, size: int, name: str) -> Header:
    """The checked header of an open file of ``size`` bytes."""
    header, data_start = _parse_json_header(f, size, name)
    metadata = _metadata(header.pop("__metadata__", None), name)
    entries = _tensor_entries(header, size - data_start, name)
    return Header(tensors=header, metadata=metadata, data_start=data_start, file_size=size, entries=entries)


def read_header(path: Path) -> Header:
    """Parse and check a safetensors header; any malformation is a ModelFileError."""
    path = Path(path)
    f, size = open_model_file(path)
    with f:
        return parse_header(f, size, path.name)


def config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    """The model config a file's metadata carries (checks format and version);
    a config of wrong JSON types or one no network can be built from is a
    one-line ModelFileError."""
    path = Path(path)
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


def read_config(path: Path) -> ModelConfig:
    """Config of a model file, from its header alone (the weights are not read)."""
    return config_from_metadata(Path(path), read_header(Path(path)).metadata)
