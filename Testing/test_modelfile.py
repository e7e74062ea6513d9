"""Model files: round trip, and every kind of bad file refused with one clear
line, without executing anything from it."""

import json
import os
import pickle
import struct
import subprocess
import sys

import pytest
import torch

from ldseg import MODEL_FORMAT_VERSION
from ldseg.errors import ModelFileError
from ldseg.io.loading import load_model
from ldseg.io.modelfile import load_model_file, read_safetensors, write_safetensors


def test_round_trip_keeps_weights_and_config(tiny_3d_model):
    model, path = load_model(tiny_3d_model)
    config, state = load_model_file(path)
    assert config.to_dict() == model.config.to_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["raw_pickle", "torch_save"])
def test_pickle_payload_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.safetensors"
    if kind == "raw_pickle":
        evil.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save({"weights": _Payload(marker)}, evil)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(evil)
    # the command line too: one line, exit 2, and the payload never ran
    proc = subprocess.run([sys.executable, "-m", "ldseg", "info", str(evil)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "refused" in proc.stderr
    assert not marker.exists()


def test_truncated_file_is_refused(tiny_3d_model, tmp_path):
    data = tiny_3d_model.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(bad)
    bad.write_bytes(b"\x00" * 4)
    with pytest.raises(ModelFileError, match="not an LDSeg model"):
        load_model(bad)


def test_foreign_safetensors_is_refused(tmp_path):
    other = tmp_path / "other.safetensors"
    write_safetensors(other, {"w": torch.ones(3)}, {"format": "pt"})
    with pytest.raises(ModelFileError, match="another kind"):
        load_model(other)


def _rewrite_metadata(src, dst, edit):
    tensors, meta = read_safetensors(src)
    edit(meta)
    write_safetensors(dst, tensors, meta)


def test_newer_format_is_refused_with_update_hint(tiny_3d_model, tmp_path):
    newer = tmp_path / "newer.safetensors"
    _rewrite_metadata(tiny_3d_model, newer, lambda m: m.update(format_version=str(MODEL_FORMAT_VERSION + 1)))
    with pytest.raises(ModelFileError, match="newer.*update LDSeg"):
        load_model(newer)


def test_weights_that_do_not_fit_the_config_are_refused(tiny_3d_model, tmp_path):
    bad = tmp_path / "mismatch.safetensors"

    def widen(meta):
        cfg = json.loads(meta["config"])
        cfg["network"]["encoder_widths"] = [8, 16, 64]
        meta["config"] = json.dumps(cfg)

    _rewrite_metadata(tiny_3d_model, bad, widen)
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(bad)


def test_header_is_plain_json(tiny_3d_model):
    data = tiny_3d_model.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    assert header["__metadata__"]["format"] == "ldseg-model"
