"""Model files as a hostile or careless user brings them (issue 12, items 1, 7,
10 and 13): every bad file is one clear line, nothing of it executes, and one
bad file never hides the good models beside it."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ldseg.errors import ModelFileError
from ldseg.io.loading import load_model
from ldseg.io.modelfile import load_model_file, read_safetensors, write_safetensors
from ldseg.io.modelheader import read_config
from ldseg.io.models import list_models


def _raw_file(path, header: dict, body: bytes, pad_to: int | None = None) -> None:
    """A safetensors file written byte by byte (header padded with spaces to
    ``pad_to`` bytes, so any header length can be made)."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    if pad_to is not None:
        assert pad_to >= len(raw)
        raw += b" " * (pad_to - len(raw))
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def _rewrite(src, dst, edit_meta=None, edit_tensors=None):
    tensors, meta = read_safetensors(src)
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    write_safetensors(dst, tensors, meta)
    return dst


def _edit_config(edit):
    def apply(meta):
        config = json.loads(meta["config"])
        edit(config)
        meta["config"] = json.dumps(config)

    return apply


def _ldseg(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ldseg", *map(str, args)], capture_output=True, text=True, env=env)


# -- item 1: our own files are never taken for pickles ---------------------------


def test_every_header_length_mod_256_reads(tiny_3d_model, tmp_path):
    """The first byte of a safetensors file is its header length mod 256; any
    value (0x80 and 'P' included) must read as the model it is."""
    tensors, meta = read_safetensors(tiny_3d_model)
    header = {"__metadata__": meta}
    body, offset = b"", 0
    for key, tensor in tensors.items():
        data = tensor.numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        body += data
        offset += len(data)
    base = len(json.dumps(header, separators=(",", ":")))
    start = (base // 256 + 1) * 256
    path = tmp_path / "m.safetensors"
    for length in range(start, start + 256):
        _raw_file(path, header, body, pad_to=length)
        assert path.read_bytes()[0] == length % 256
        config = read_config(path)
        assert config.class_names == ("background", "class 1"), length
    # and the weights of the 0x80 case load, equal to the original
    _raw_file(path, header, body, pad_to=start + 0x80)
    _, loaded = load_model_file(path)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def test_descriptions_of_every_length_save_and_load(tiny_3d_model, tmp_path):
    """Re-saving with a slightly different description (the reported case):
    the writer's 8-byte alignment gives 32 residues mod 256; all must load."""
    seen = set()
    path = tmp_path / "described.safetensors"
    for extra in range(0, 256, 8):
        _rewrite(tiny_3d_model, path, _edit_config(lambda c, n=extra: c.update(description="x" * n)))
        seen.add(path.read_bytes()[0])
        load_model(path)
    assert len(seen) == 32 and 0x80 in seen


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_of_every_protocol_are_named_and_refused(tmp_path, protocol):
    bad = tmp_path / "p.safetensors"
    bad.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=protocol))
    with pytest.raises(ModelFileError, match="pickled file.*refused"):
        read_config(bad)


def test_torch_zip_checkpoint_is_named_and_refused(tmp_path):
    bad = tmp_path / "model.safetensors"
    torch.save({"w": torch.ones(2)}, bad)
    with pytest.raises(ModelFileError, match="zip archive.*refused"):
        read_config(bad)


# -- item 7: broken weights ------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(tiny_3d_model, tmp_path, value):
    def poison(tensors):
        key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
        tensors[key].view(-1)[0] = value

    bad = _rewrite(tiny_3d_model, tmp_path / "nan.safetensors", edit_tensors=poison)
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        load_model(bad)


def test_non_finite_weights_fail_segment_with_one_line_and_nothing_written(tiny_3d_model, tmp_path, shared_data):
    def poison(tensors):
        for v in tensors.values():
            if v.is_floating_point():
                v.view(-1)[0] = float("nan")

    bad = _rewrite(tiny_3d_model, tmp_path / "nan.safetensors", edit_tensors=poison)
    image = shared_data / "hippocampus" / "images" / "hippocampus_001.nii.gz"
    out = tmp_path / "out"
    proc = _ldseg("segment", image, "-o", out, "--model", bad, "--samples", "1", "--progress", "none")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "NaN" in proc.stderr
    assert not out.exists()


def _two_tensor_file(path, offsets_a, offsets_b, body_len=64, meta=None):
    header = {
        "__metadata__": meta or {"format": "pt"},
        "a": {"dtype": "F32", "shape": [(offsets_a[1] - offsets_a[0]) // 4], "data_offsets": list(offsets_a)},
        "b": {"dtype": "F32", "shape": [(offsets_b[1] - offsets_b[0]) // 4], "data_offsets": list(offsets_b)},
    }
    _raw_file(path, header, b"\0" * body_len)


def test_overlapping_tensors_are_refused(tmp_path):
    path = tmp_path / "overlap.safetensors"
    _two_tensor_file(path, (0, 32), (16, 48))
    with pytest.raises(ModelFileError, match="overlap"):
        read_safetensors(path)
    _two_tensor_file(path, (0, 32), (32, 64))  # adjacent is fine
    assert set(read_safetensors(path)[0]) == {"a", "b"}


def test_tensor_bytes_beyond_the_file_are_refused(tmp_path):
    path = tmp_path / "beyond.safetensors"
    _two_tensor_file(path, (0, 32), (32, 96))
    with pytest.raises(ModelFileError, match="truncated"):
        read_safetensors(path)


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]},  # huge shape, no data
        {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]},
        {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]},
        {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]},
        {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]},
        [1, 2, 3],
    ],
)
def test_malformed_tensor_entries_are_refused_before_allocating(tmp_path, entry):
    path = tmp_path / "bad.safetensors"
    _raw_file(path, {"__metadata__": {"format": "pt"}, "w": entry}, b"\0" * 8)
    with pytest.raises(ModelFileError, match="corrupt"):
        read_safetensors(path)


# -- item 13: malformed configs, one line each; listing survives them --------------


BAD_CONFIGS = {
    "metadata_is_a_list": lambda meta: ("__metadata__", ["ldseg-model"]),
    "format_version_is_a_number": lambda meta: ("format_version", 1),
    "format_version_is_a_list": lambda meta: ("format_version", [1]),
    "format_version_is_text": lambda meta: ("format_version", "one"),
    "config_is_a_list": lambda meta: ("config", "[1, 2]"),
    "config_is_not_json": lambda meta: ("config", "{not json"),
}


def _metadata_variant(src, dst, kind):
    """``src`` rewritten with one malformed metadata field (written raw: our
    writer would not produce these)."""
    tensors, meta = read_safetensors(src)
    key, value = BAD_CONFIGS[kind](meta)
    header = {"__metadata__": value if key == "__metadata__" else {**meta, key: value}}
    body, offset = b"", 0
    for name, tensor in tensors.items():
        data = tensor.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        body += data
        offset += len(data)
    _raw_file(dst, header, body)
    return dst


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_wrong_json_types_in_metadata_are_one_line_errors(tiny_3d_model, tmp_path, kind):
    bad = _metadata_variant(tiny_3d_model, tmp_path / f"{kind}.safetensors", kind)
    with pytest.raises(ModelFileError, match="corrupt model file|not an LDSeg model file") as info:
        read_config(bad)
    assert "\n" not in str(info.value)
    proc = _ldseg("info", bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


NETWORK_EDITS = {
    "unknown_norm": lambda c: c["network"].update(norm="weird"),
    "dropout_5": lambda c: c["network"].update(dropout=5),
    "negative_width": lambda c: c["network"].update(encoder_widths=[-8, 16, 32]),
    "fractional_width": lambda c: c["network"].update(time_dim=16.5),
    "zero_heads": lambda c: c["network"].update(attention_heads=0),
    "unknown_downsample": lambda c: c["network"].update(downsample="bilinear"),
    "preprocessing_is_a_list": lambda c: c.update(preprocessing=[1, 2]),
    "no_classes": lambda c: c.update(class_names=[]),
}


@pytest.mark.parametrize("kind", sorted(NETWORK_EDITS))
def test_unbuildable_configs_are_refused_when_read(tiny_3d_model, tmp_path, kind):
    bad = _rewrite(tiny_3d_model, tmp_path / f"{kind}.safetensors", _edit_config(NETWORK_EDITS[kind]))
    with pytest.raises(ModelFileError, match="bad config") as info:
        read_config(bad)
    assert "\n" not in str(info.value)


def test_one_bad_model_does_not_break_the_listing(tiny_3d_model, tmp_path, monkeypatch):
    home = tmp_path / "home"
    models = home / "models"
    models.mkdir(parents=True)
    (models / "good.safetensors").write_bytes(tiny_3d_model.read_bytes())
    for kind in sorted(BAD_CONFIGS):
        _metadata_variant(tiny_3d_model, models / f"bad_{kind}.safetensors", kind)
    _rewrite(tiny_3d_model, models / "bad_norm.safetensors", _edit_config(NETWORK_EDITS["unknown_norm"]))
    torch.save({"w": torch.ones(1)}, models / "bad_pickle.safetensors")
    os.mkfifo(models / "bad_fifo.safetensors")  # must not hang the listing
    monkeypatch.setenv("LDSEG_HOME", str(home))
    entries = {Path(e["path"]).stem: e for e in list_models() if e["source"] == "user"}
    assert "error" not in entries["good"] and entries["good"]["classes"][1]["name"] == "class 1"
    bad = {n for n in entries if n.startswith("bad_")}
    assert len(bad) == len(BAD_CONFIGS) + 3
    assert all("error" in entries[n] and "\n" not in entries[n]["error"] for n in bad)
    proc = _ldseg("models", "--json", env={**os.environ, "LDSEG_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    listed = {Path(m["path"]).stem: m for m in json.loads(proc.stdout)}
    assert "error" not in listed["good"] and all("error" in listed[n] for n in bad)


def test_listing_reads_headers_only(tiny_3d_model, tmp_path):
    """A 4 GB model file (sparse, so it costs no disk) is listed by reading
    its header; the bytes this process reads stay far below the file size."""
    tensors, meta = read_safetensors(tiny_3d_model)
    big = tmp_path / "big.safetensors"
    count = 2**30  # float32: 4 GiB of data
    header = {"__metadata__": meta, "huge": {"dtype": "F32", "shape": [count], "data_offsets": [0, 4 * count]}}
    _raw_file(big, header, b"")
    with open(big, "r+b") as f:
        f.truncate(big.stat().st_size + 4 * count)

    def bytes_read():
        with open("/proc/self/io") as f:
            return int(next(line for line in f if line.startswith("rchar")).split()[1])

    before = bytes_read()
    assert read_config(big).name == "tiny3d"
    assert bytes_read() - before < 16 * 2**20


def _without_root_read_rights(command):
    """Root reads any file: drop its override rights (as a user has none)."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]


def test_unreadable_model_file_is_one_line(tiny_3d_model, tmp_path):
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(tiny_3d_model.read_bytes())
    locked.chmod(0o000)
    command = _without_root_read_rights([sys.executable, "-m", "ldseg", "info", str(locked)])
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Permission denied" in proc.stderr


def test_allocation_failure_is_one_line(tmp_path):
    """A valid 400 MB model file loaded with too little address space left:
    "not enough memory", not a traceback."""
    path = tmp_path / "large.safetensors"
    count = 100 * 2**20
    header = {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [count], "data_offsets": [0, 4 * count]}}
    _raw_file(path, header, b"")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size + 4 * count)
    script = textwrap.dedent(
        f"""
        import resource
        import torch  # loaded before the limit: only the tensors must not fit
        from ldseg.errors import ModelFileError
        from ldseg.io.modelfile import read_safetensors
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + 64 * 2**20, resource.RLIM_INFINITY))
        try:
            read_safetensors({str(path)!r})
        except ModelFileError as e:
            print("REFUSED", e)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "REFUSED" in proc.stdout and "not enough memory" in proc.stdout, proc.stdout + proc.stderr


def test_fifo_model_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_config(fifo)
