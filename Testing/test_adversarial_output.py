"""Writing results when the output folder is not empty, the disk is full or
the process dies (issue 12, items 2, 5, 6 and 14's result.json; issue 9
item 6): nothing of the user's is overwritten without --overwrite, a result
set is published whole or not at all, and result.json says what ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldseg.config import DiffusionConfig, ModelConfig
from ldseg.data.preprocess import Preprocessing
from ldseg.errors import OutputError
from ldseg.inference.segmenter import Segmenter
from ldseg.io.export import STAGING_PREFIX, clean_stale_staging, write_result
from ldseg.io.images import Geometry, read_image, write_image
from ldseg.io.modelfile import save_model
from ldseg.nn.ldseg_net import LDSegNet
from ldseg.training.presets import network_preset

HIPPO = "hippocampus_001.nii.gz"


def _ldseg(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ldseg", *map(str, args)], capture_output=True, text=True, **kwargs)


def _segment(image, out, model, *extra, **kwargs):
    return _ldseg(
        "segment", image, "-o", out, "--model", model, "--samples", "2", "--progress", "none", *extra, **kwargs
    )


@pytest.fixture
def hippo_case(shared_data, tmp_path):
    """A real case and its ground truth in one folder, as a user keeps them."""
    folder = tmp_path / "case"
    folder.mkdir()
    image = folder / "case.nii.gz"
    image.write_bytes((shared_data / "hippocampus" / "images" / HIPPO).read_bytes())
    truth = folder / "case_labels.nii.gz"
    truth.write_bytes((shared_data / "hippocampus" / "labels" / HIPPO).read_bytes())
    return image, truth


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_existing_files_of_the_same_names_are_refused_before_any_work(hippo_case, tiny_3d_model):
    image, truth = hippo_case
    before = truth.read_bytes()
    proc = _segment(image, image.parent, tiny_3d_model)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "case_labels.nii.gz" in proc.stderr and "--overwrite" in proc.stderr
    assert truth.read_bytes() == before
    assert _visible(image.parent) == ["case.nii.gz", "case_labels.nii.gz"]  # nothing written, no staging


def test_overwrite_replaces_the_whole_set(hippo_case, tiny_3d_model):
    image, truth = hippo_case
    before = truth.read_bytes()
    proc = _segment(image, image.parent, tiny_3d_model, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert truth.read_bytes() != before
    manifest = json.loads((image.parent / "case_result.json").read_text())
    for path in manifest["files"].values():
        assert Path(path).is_file()
    assert not [n for n in _visible(image.parent) if n.startswith(".")]


def test_a_folder_in_the_way_fails_before_anything_is_published(hippo_case, tiny_3d_model, tmp_path):
    image, _ = hippo_case
    out = tmp_path / "out"
    (out / "case_sd.nii.gz").mkdir(parents=True)
    for flags in ((), ("--overwrite",)):
        proc = _segment(image, out, tiny_3d_model, *flags)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "folder is in the way" in proc.stderr
        assert _visible(out) == ["case_sd.nii.gz"]


def test_output_folders_created_for_a_failed_run_are_removed(hippo_case, tiny_3d_model, tmp_path):
    """A disk that fills while writing (RLIMIT_FSIZE: files beyond 4 kB fail):
    exit 2, one line, and the folders the run created are gone again."""
    image, _ = hippo_case
    out = tmp_path / "new" / "deeper" / "out"
    script = textwrap.dedent(
        """
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from ldseg.cli.main import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    args = ["segment", image, "-o", out, "--model", tiny_3d_model, "--samples", "2", "--progress", "none"]
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr
    assert not (tmp_path / "new").exists()


def test_kill_during_publishing_is_completed_by_the_next_run(hippo_case, tiny_3d_model, tmp_path):
    """kill -9 after two of the five renames leaves new labels beside old SD;
    the next write into the folder finishes the interrupted set first."""
    image, _ = hippo_case
    out = tmp_path / "out"
    assert _segment(image, out, tiny_3d_model, "--seed", "1").returncode == 0
    old = _visible(out)
    script = textwrap.dedent(
        """
        import os, signal, sys
        import ldseg.io.export as export
        real, calls = export.os.replace, []
        def dying_replace(a, b):  # dies at the third rename into the output folder
            if not os.path.basename(os.path.dirname(b)).startswith(".ldseg-"):
                calls.append(b)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            real(a, b)
        export.os.replace = dying_replace
        from ldseg.cli.main import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    args = ["segment", image, "-o", out, "--model", tiny_3d_model, "--samples", "2", "--seed", "2", "--overwrite"]
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args), "--progress", "none"], capture_output=True)
    assert proc.returncode == -9
    (staging,) = [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
    unpublished = {p.name: p.read_bytes() for p in staging.iterdir() if p.name != "publish.json"}
    assert len(unpublished) == 3 and "case_result.json" in unpublished  # two new files beside three old ones
    assert json.loads((out / "case_result.json").read_text())["seed"] == 1
    notes = clean_stale_staging(out)
    assert notes and "finished publishing" in notes[0]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert all((out / n).read_bytes() == data for n, data in unpublished.items())
    assert json.loads((out / "case_result.json").read_text())["seed"] == 2
    assert _visible(out) == sorted(old)


def test_stale_staging_of_a_dead_run_is_removed_and_a_live_one_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{STAGING_PREFIX}{dead.stdout.strip()}-0000"
    stale.mkdir()
    (stale / "half_labels.nrrd").write_bytes(b"partial")
    live = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-1111"
    live.mkdir()
    assert clean_stale_staging(tmp_path) == [f"removed the staging folder {stale.name} of an interrupted run"]
    assert not stale.exists() and live.is_dir()


def test_write_result_from_the_api_writes_what_the_cli_writes(shared_data, tiny_3d_model, tmp_path):
    segmenter = Segmenter(tiny_3d_model, device="cpu")
    image = read_image(shared_data / "samples" / "breast1_image.nrrd")
    result = segmenter.segment(image, samples=2)
    files = write_result(result, image, tmp_path / "api", segmenter.config, model_path=segmenter.model_path)
    assert sorted(files) == ["labels", "preview", "probabilities", "result", "sd"]
    assert files["labels"].name == "breast1_image_labels.nrrd"
    written = sitk.ReadImage(str(files["labels"]))
    reference = sitk.ReadImage(str(shared_data / "samples" / "breast1_image.nrrd"))
    assert written.GetSize() == reference.GetSize() and written.GetDirection() == reference.GetDirection()
    with pytest.raises(OutputError, match="already exist"):
        write_result(result, image, tmp_path / "api", segmenter.config)
    assert write_result(result, image, tmp_path / "api", segmenter.config, overwrite=True) == files


def test_a_name_too_long_for_the_file_system_is_refused_before_work(tiny_3d_model, tmp_path):
    long = tmp_path / ("n" * 240 + ".nrrd")
    write_image(np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32), Geometry.identity(3), long)
    proc = _segment(long, tmp_path / "out", tiny_3d_model)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "too long" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_229_character_name_is_segmented(tiny_3d_model, tmp_path):
    long = tmp_path / ("n" * 224 + ".nrrd")  # 229 characters, as reported
    write_image(np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32), Geometry.identity(3), long)
    assert len(long.name) == 229
    proc = _segment(long, tmp_path / "out", tiny_3d_model)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").iterdir())) == 5


@pytest.fixture(scope="module")
def short_schedule_model(tmp_path_factory):
    """A real tiny model with T = 20 diffusion steps, so DDPM runs quickly."""
    torch.manual_seed(0)
    config = ModelConfig(
        preprocessing=Preprocessing(dims=3, channels=1, grid=(16, 32, 32), label_values=(0, 1)),
        class_names=("background", "structure"),
        network=network_preset("tiny", image_attention=False),
        diffusion=DiffusionConfig(steps=20),
    )
    path = tmp_path_factory.mktemp("models") / "t20.safetensors"
    save_model(path, config, LDSegNet(config).state_dict())
    return path


@pytest.mark.parametrize("sampler, steps", [("ddim", 2), ("ddpm", 20), ("single", 1)])
def test_result_json_records_the_steps_that_ran(shared_data, short_schedule_model, tmp_path, sampler, steps):
    image = shared_data / "samples" / "breast1_image.nrrd"
    out = tmp_path / "out"
    proc = _segment(image, out, short_schedule_model, "--sampler", sampler, "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "breast1_image_result.json").read_text())
    assert manifest["sampler"] == sampler and manifest["steps"] == steps
