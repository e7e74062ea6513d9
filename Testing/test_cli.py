"""The ``ldseg`` command line: geometry round trips, outputs, progress, and
bad input refused with one clear line while writing nothing."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from ldseg.cli.main import main

SAMPLES = ["brain1_image.nrrd", "breast1_image.nrrd", "prostate_phantom_subvolume.nrrd"]


def _same_geometry(a: sitk.Image, b: sitk.Image):
    assert a.GetSize() == b.GetSize()
    assert a.GetSpacing() == b.GetSpacing()
    assert a.GetOrigin() == b.GetOrigin()
    assert a.GetDirection() == b.GetDirection()


@pytest.mark.parametrize("name", SAMPLES)
def test_segment_writes_outputs_on_the_input_geometry(shared_data, tiny_3d_model, tmp_path, name):
    src = shared_data / "samples" / name
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(src),
                "-o",
                str(out),
                "--model",
                str(tiny_3d_model),
                "--samples",
                "3",
                "--progress",
                "none",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    stem = name[: -len(".nrrd")]
    manifest = json.loads((out / f"{stem}_result.json").read_text())
    ref = sitk.ReadImage(str(src))
    for key in ("labels", "sd", "probabilities"):
        img = sitk.ReadImage(manifest["files"][key])
        _same_geometry(img, ref)
    assert sitk.ReadImage(manifest["files"]["probabilities"]).GetNumberOfComponentsPerPixel() == 2
    assert (out / f"{stem}_preview.png").stat().st_size > 1000
    assert manifest["device"] == "cpu" and manifest["samples"] == 3
    assert [c["name"] for c in manifest["classes"]] == ["background", "class 1"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}_{k}" for k in ("labels.nrrd", "sd.nrrd", "probabilities.nrrd", "preview.png", "result.json")
    )


def test_nifti_in_nifti_out_and_seg_nrrd_on_request(shared_data, tiny_3d_model, tmp_path):
    src = shared_data / "hippocampus" / "images" / "hippocampus_001.nii.gz"
    assert (
        main(
            [
                "segment",
                str(src),
                "-o",
                str(tmp_path),
                "--model",
                str(tiny_3d_model),
                "--samples",
                "1",
                "--progress",
                "none",
                "--no-probabilities",
            ]
        )
        == 0
    )
    labels = sitk.ReadImage(str(tmp_path / "hippocampus_001_labels.nii.gz"))
    _same_geometry(labels, sitk.ReadImage(str(src)))
    assert not (tmp_path / "hippocampus_001_probabilities.nii.gz").exists()
    assert (
        main(
            [
                "segment",
                str(src),
                "-o",
                str(tmp_path / "seg"),
                "--model",
                str(tiny_3d_model),
                "--samples",
                "1",
                "--progress",
                "none",
                "--format",
                "seg.nrrd",
            ]
        )
        == 0
    )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(tmp_path / "seg" / "hippocampus_001_labels.seg.nrrd"))
    reader.ReadImageInformation()
    assert reader.GetMetaData("Segment0_Name") == "class 1"


def test_json_progress_is_ordered_and_ends_done(shared_data, tiny_2d_rgb_model, tmp_path):
    src = shared_data / "glas" / "testA" / "images" / "testA_1.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ldseg",
            "segment",
            str(src),
            "-o",
            str(tmp_path),
            "--model",
            str(tiny_2d_rgb_model),
            "--samples",
            "4",
            "--progress",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    fractions = [e["fraction"] for e in events if e["stage"] != "info"]
    assert fractions == sorted(fractions) and events[-1]["stage"] == "done"
    stages = [e["stage"] for e in events]
    assert stages.index("encode") < stages.index("sample") < stages.index("write")
    assert any("cpu" in e["message"] for e in events if e["stage"] == "info")  # says which device runs
    labels = sitk.ReadImage(str(tmp_path / "testA_1_labels.nrrd"))
    assert labels.GetSize() == sitk.ReadImage(str(src)).GetSize()


# -- bad input -------------------------------------------------------------------


def _write(array, path, spacing=None):
    img = sitk.GetImageFromArray(array)
    if spacing:
        img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


def _one_line_error(capsys, argv, *expected):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("ldseg: error:"), err
    for text in expected:
        assert text in err, err
    return err


@pytest.mark.parametrize("case", ["nan", "inf", "constant", "2d", "missing"])
def test_segment_bad_image_gives_one_line_and_writes_nothing(case, tiny_3d_model, tmp_path, capsys, shared_data):
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(8, 16, 16)).astype(np.float32)
    if case == "nan":
        vol[3, 4, 5] = np.nan
        src, expect = _write(vol, tmp_path / "nan.nrrd"), ("nan.nrrd", "NaN")
    elif case == "inf":
        vol[0, 0, 0] = np.inf
        src, expect = _write(vol, tmp_path / "inf.nrrd"), ("inf.nrrd", "infinite")
    elif case == "constant":
        src, expect = _write(np.full((8, 16, 16), 7, np.float32), tmp_path / "flat.nrrd"), ("flat.nrrd", "same value")
    elif case == "2d":
        src, expect = shared_data / "glas" / "testA" / "images" / "testA_1.png", ("testA_1.png", "2D")
    else:
        src, expect = tmp_path / "nowhere.nii.gz", ("nowhere.nii.gz",)
    out = tmp_path / "out"
    _one_line_error(capsys, ["segment", str(src), "-o", str(out), "--model", str(tiny_3d_model)], *expect)
    assert not out.exists()


def test_unwritable_output_folder(shared_data, tiny_3d_model, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    src = shared_data / "samples" / SAMPLES[1]
    _one_line_error(
        capsys,
        ["segment", str(src), "-o", str(blocker / "out"), "--model", str(tiny_3d_model), "--samples", "1"],
        "cannot write",
        "not a folder",
    )
    assert blocker.read_text() == "not a folder"


def test_outputs_beside_the_input_leave_it_and_other_files_alone(tmp_path, tiny_3d_model):
    vol = np.random.default_rng(1).normal(size=(8, 16, 16)).astype(np.float32)
    src = _write(vol, tmp_path / "case.nrrd")
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    before = src.read_bytes()
    assert (
        main(
            [
                "segment",
                str(src),
                "-o",
                str(tmp_path),
                "--model",
                str(tiny_3d_model),
                "--samples",
                "1",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    assert src.read_bytes() == before and other.read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_result_set_refuses_to_replace_an_input(tmp_path):
    from ldseg.errors import OutputError
    from ldseg.io.export import check_result_set, plan_result_set

    src = tmp_path / "x_labels.nrrd"
    src.write_bytes(b"input")
    with pytest.raises(OutputError, match="overwrite an input"):
        check_result_set(plan_result_set(tmp_path, "x"), overwrite=True, protected=[src])
    assert src.read_bytes() == b"input"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_labels.nrrd"]


def _dataset(tmp_path, shared_data, n=3):
    """A small real data set: hippocampus cases copied into tmp (to be broken)."""
    root = tmp_path / "data"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
        for src in sorted((shared_data / "hippocampus" / sub).iterdir())[:n]:
            shutil.copy(src, root / sub / src.name)
    return root


@pytest.mark.parametrize("case", ["empty", "mismatch", "unknown", "unpaired"])
def test_train_bad_data_gives_one_line_and_writes_nothing(case, tmp_path, shared_data, capsys):
    root = _dataset(tmp_path, shared_data)
    labels = sorted((root / "labels").iterdir())
    victim = labels[1]
    img = sitk.ReadImage(str(victim))
    arr = sitk.GetArrayFromImage(img)
    if case == "empty":
        arr[:] = 0
        expect = (victim.name, "no foreground")
    elif case == "mismatch":
        arr = arr[:-2]
        expect = (victim.name, "size")
    elif case == "unknown":
        arr[arr == 2] = 7
        expect = (victim.name, "7")
    if case == "unpaired":
        victim.unlink()
        expect = (victim.name.split(".")[0], "label")
    else:
        new = sitk.GetImageFromArray(arr)
        if case != "mismatch":
            new.CopyInformation(img)
        sitk.WriteImage(new, str(victim))
    model = tmp_path / "m.safetensors"
    argv = [
        "train",
        str(root),
        "-o",
        str(model),
        "--size",
        "tiny",
        "--grid",
        "16",
        "16",
        "16",
        "--epochs",
        "1",
        "--progress",
        "none",
        "--val-fraction",
        "0",
    ]
    if case == "unknown":
        argv += ["--label-values", "0", "1", "2"]
    _one_line_error(capsys, argv, *expect)
    assert not model.exists() and not (tmp_path / "m.run").exists()
