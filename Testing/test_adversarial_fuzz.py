"""Property-based tests (hypothesis) of the file readers: whatever bytes a
model file or an image holds, reading it gives the data or the readers' own
one-line error (ModelFileError, InputError), never another exception, a
hang or an allocation the file cannot back. Bounded (a few dozen examples
each, no deadline) so the suite stays quick on two cores."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldseg.errors import InputError, ModelFileError
from ldseg.io.images import read_image, read_label
from ldseg.io.modelfile import read_safetensors, write_safetensors
from ldseg.io.modelheader import read_config

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model_bytes(tiny_3d_model) -> bytes:
    return tiny_3d_model.read_bytes()


def _header_size(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def _read_model(data: bytes, name="m.safetensors"):
    """Read ``data`` as a model file: config, then tensors. Returns the
    tensors, or None when refused with a ModelFileError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            read_config(path)
        except ModelFileError as e:
            assert "\n" not in str(e)
        try:
            return read_safetensors(path)[0]
        except ModelFileError as e:
            assert "\n" not in str(e)
            return None


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**9))
def test_model_file_cut_anywhere(model_bytes, cut):
    tensors = _read_model(model_bytes[: cut % (len(model_bytes) + 1)])
    if tensors is not None:  # only a complete file reads
        assert cut % (len(model_bytes) + 1) == len(model_bytes)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=8))
def test_model_file_header_bytes_changed(model_bytes, edits):
    data = bytearray(model_bytes)
    header_end = _header_size(model_bytes)
    for position, value in edits:
        data[position % header_end] = value  # the header is where parsing can go wrong
    tensors = _read_model(bytes(data))
    if tensors is not None:
        assert all(t.numel() >= 0 for t in tensors.values())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "X"]),
        "shape": st.lists(st.integers(-2, 2**40), max_size=4) | JSON,
        "data_offsets": st.lists(st.integers(-2, 2**40), min_size=0, max_size=3) | JSON,
    }
)


@FUZZ
@given(
    entries=st.dictionaries(st.text(min_size=1, max_size=6), ENTRY | JSON, max_size=4),
    metadata=JSON,
    body=st.binary(max_size=64),
)
def test_model_file_with_any_json_header(entries, metadata, body):
    header = dict(entries)
    header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    tensors = _read_model(struct.pack("<Q", len(raw)) + raw + body)
    if tensors is not None:
        assert sum(t.numel() * t.element_size() for t in tensors.values()) <= len(body)


@FUZZ
@given(length=st.integers(0, 2**64 - 1), tail=st.binary(max_size=32))
def test_model_file_with_any_header_length(length, tail):
    assert _read_model(struct.pack("<Q", length) + tail) is None or length <= len(tail)


def test_fuzzed_files_still_include_our_own_writes(tmp_path):
    """The property tests above would pass on a reader that refuses all; ours reads its own files."""
    import torch

    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"w": torch.arange(6.0).reshape(2, 3)}, {"format": "pt"})
    assert torch.equal(read_safetensors(path)[0]["w"], torch.arange(6.0).reshape(2, 3))


# -- image readers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """A small float NIfTI (plain and gzip) and NRRD of real-looking data."""
    import SimpleITK as sitk

    folder = tmp_path_factory.mktemp("images")
    data = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.2, 0.9, 2.0, 1.0])), str(folder / "a.nii"))
    nib.save(nib.Nifti1Image(data, np.diag([1.2, 0.9, 2.0, 1.0])), str(folder / "a.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(data), str(folder / "a.nrrd"), True)
    return {name: (folder / name).read_bytes() for name in ("a.nii", "a.nii.gz", "a.nrrd")}


def _read_as_image(data: bytes, name: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        for reader in (read_image, read_label):
            try:
                reader(path)
            except InputError as e:
                assert "\n" not in str(e)


@FUZZ
@given(name=st.sampled_from(["a.nii", "a.nii.gz", "a.nrrd"]), cut=st.integers(0, 10**9))
def test_image_cut_anywhere(image_files, name, cut):
    data = image_files[name]
    _read_as_image(data[: cut % (len(data) + 1)], name)


@FUZZ
@given(
    name=st.sampled_from(["a.nii", "a.nrrd"]),
    edits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_image_header_bytes_changed(image_files, name, edits):
    data = bytearray(image_files[name])
    header_end = 352 if name == "a.nii" else data.index(b"\n\n") + 2
    for position, value in edits:
        data[position % header_end] = value
    _read_as_image(bytes(data), name)
