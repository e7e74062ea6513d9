"""Training as careless users run it (issue 12, items 4, 8, 13's checkpoint,
16, and the 3D fine-tune to a new task): one training per run folder, a
resume that is really the run it continues, progress that never goes
backwards, and a crash that still ends with a JSON error event."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from ldseg.cli.main import main
from ldseg.cli.train import _config
from ldseg.data.dataset import find_pairs
from ldseg.inference.segmenter import Segmenter
from ldseg.io.modelfile import load_model_file
from ldseg.io.models import resolve_model
from ldseg.training.rundir import RECORD, lock_run_dir, release_run_dir

CASES = ("hippocampus_001", "hippocampus_003", "hippocampus_004")
TINY = ["--size", "tiny", "--grid", "16", "16", "16", "--batch-size", "2", "--val-fraction", "0"]


def _ldseg(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ldseg", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def _json_events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _copy_cases(shared_data, root: Path) -> Path:
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
        for name in CASES:
            src = shared_data / "hippocampus" / sub / f"{name}.nii.gz"
            (root / sub / src.name).write_bytes(src.read_bytes())
    return root


@pytest.fixture
def dataset(tmp_path, shared_data):
    """Three real hippocampus cases, copied so a test may change them."""
    return _copy_cases(shared_data, tmp_path / "data")


def _train_args(dataset, out, *extra, epochs=1):
    return ["train", dataset, "-o", out, "--epochs", epochs, *TINY, "--progress", "json", *extra]


def _train(dataset, out, *extra, epochs=1):
    return _ldseg(*_train_args(dataset, out, *extra, epochs=epochs))


# -- item 4: one training per run folder -----------------------------------------------


def test_a_second_training_into_a_locked_run_dir_is_refused(dataset, tmp_path):
    run_dir = tmp_path / "m.run"
    run_dir.mkdir()
    lock_run_dir(run_dir)  # this test process is "the other training"
    try:
        proc = _train(dataset, tmp_path / "m.safetensors", "--run-dir", run_dir)
    finally:
        release_run_dir(run_dir)
    assert proc.returncode == 2
    assert _json_events(proc.stderr)[-1]["stage"] == "error"
    assert "another training is using this run folder" in _json_events(proc.stderr)[-1]["message"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.lock"]  # nothing of the other run touched
    assert not (tmp_path / "m.safetensors").exists()


def test_the_lock_goes_with_the_process(tmp_path):
    """A training killed with -9 leaves no stale lock: the next one runs."""
    run_dir = tmp_path / "m.run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from ldseg.training.rundir import lock_run_dir; lock_run_dir({str(run_dir)!r}); print('held', flush=True); "
            "import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    lock_run_dir(run_dir)  # free again
    release_run_dir(run_dir)


# -- item 8: resume is the run it continues -----------------------------------------


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One real one-epoch run (data, run folder, its JSON progress), made once."""
    shared_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # as conftest's shared_data
    if not shared_data.is_dir():
        pytest.skip(f"shared data not found at {shared_data}")
    root = tmp_path_factory.mktemp("run")
    data = _copy_cases(shared_data, root / "data")
    proc = _train(data, root / "m.safetensors")
    assert proc.returncode == 0, proc.stderr
    return root, proc.stderr


@pytest.fixture
def started_run(base_run, tmp_path):
    """A copy of the base run (data and run folder) this test may change."""
    root, _ = base_run
    shutil.copytree(root / "data", tmp_path / "data")
    shutil.copytree(root / "m.run", tmp_path / "m.run")
    return tmp_path / "data", tmp_path / "m.safetensors", tmp_path / "m.run"


def _main(capsys, *args) -> tuple[int, list[dict]]:
    """``ldseg`` in this process (no start-up cost); returns the exit code and the JSON events."""
    code = main([str(a) for a in args])
    return code, _json_events(capsys.readouterr().err)


def test_resume_with_a_changed_learning_rate_is_refused(started_run, capsys):
    dataset, out, run_dir = started_run
    before = (run_dir / "checkpoint.pt").read_bytes()
    code, events = _main(capsys, *_train_args(dataset, out, "--resume", "--lr", "0.01", epochs=2))
    assert code == 2
    assert "--lr 0.001 -> 0.01" in events[-1]["message"] and "\n" not in events[-1]["message"]
    assert (run_dir / "checkpoint.pt").read_bytes() == before


def test_resume_on_changed_data_files_is_refused(started_run, capsys):
    dataset, out, run_dir = started_run
    label = dataset / "labels" / f"{CASES[1]}.nii.gz"
    img = nib.load(str(label))
    data = np.asanyarray(img.dataobj).copy()
    data[data == 2] = 1  # same name, other content
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(label))
    code, events = _main(capsys, *_train_args(dataset, out, "--resume", epochs=2))
    assert code == 2
    assert "data set changed" in events[-1]["message"] and CASES[1] in events[-1]["message"]


def test_resume_with_the_same_arguments_continues(started_run, capsys):
    dataset, out, run_dir = started_run
    record = json.loads((run_dir / RECORD).read_text())
    assert record["arguments"]["lr"] == 0.001 and len(record["data"]) == len(CASES)
    code, events = _main(capsys, *_train_args(dataset, out, "--resume", epochs=2))
    assert code == 0, events
    assert any("resuming" in e["message"] for e in events)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2]


def test_resume_of_a_run_started_before_an_option_existed_continues(started_run, capsys):
    """An option the engine gained since (absent from the run record) at its default is no change;
    given another value it is."""
    dataset, out, run_dir = started_run
    record = json.loads((run_dir / RECORD).read_text())
    del record["arguments"]["energy_weight"]
    (run_dir / RECORD).write_text(json.dumps(record))
    code, events = _main(capsys, *_train_args(dataset, out, "--resume", "--energy-weight", "0.5", epochs=2))
    assert code == 2 and "--energy-weight (not given) -> 0.5" in events[-1]["message"]
    code, events = _main(capsys, *_train_args(dataset, out, "--resume", epochs=2))
    assert code == 0, events
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1, 2]


@pytest.mark.parametrize("damage", ["missing_keys", "wrong_shape"])
def test_a_checkpoint_that_does_not_fit_is_one_line(started_run, capsys, damage):
    dataset, out, run_dir = started_run
    path = run_dir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    key = sorted(state["model"])[0]
    if damage == "missing_keys":
        del state["model"][key]
    else:
        state["model"][key] = torch.zeros(3, 1, 1)
    torch.save(state, path)
    code = main([str(a) for a in _train_args(dataset, out, "--resume", "--progress", "none", epochs=2)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "checkpoint does not fit" in err


# -- item 16: progress and crashes -----------------------------------------------------


def test_train_json_progress_never_goes_backwards(base_run):
    events = _json_events(base_run[1])
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"load", "train", "done"} <= {e["stage"] for e in events}


def test_a_crash_in_training_ends_with_a_json_error_event(dataset, tmp_path):
    """An internal error (here: the optimizer step fails) prints its
    traceback and then a final JSON error event, exit 1."""
    script = textwrap.dedent(
        """
        import sys
        import torch
        def broken_step(self, *args, **kwargs):
            raise ZeroDivisionError("simulated internal failure")
        torch.optim.Adam.step = broken_step
        torch.optim.AdamW.step = broken_step
        from ldseg.cli.main import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    args = ["train", dataset, "-o", tmp_path / "m.safetensors", "--epochs", "1", *TINY, "--progress", "json"]
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    last = json.loads(proc.stderr.strip().splitlines()[-1])
    assert last["stage"] == "error" and "ZeroDivisionError" in last["message"]


# -- fine-tuning the shipped 3D model to a new task --------------------------------------


def _relabeled(dataset: Path) -> Path:
    """The cases relabeled into a new class set: both hippocampus parts as
    one structure stored as 5."""
    for label in (dataset / "labels").iterdir():
        img = nib.load(str(label))
        data = np.asanyarray(img.dataobj)
        nib.save(nib.Nifti1Image((data > 0).astype(np.uint8) * 5, img.affine), str(label))
    return dataset


def test_fine_tune_the_shipped_3d_model_to_new_classes(dataset, tmp_path, capsys):
    data = _relabeled(dataset)
    out = tmp_path / "knee.safetensors"
    new_task = ["--init", "hippocampus", "--class-names", "background", "structure", "--label-values", "0", "5"]
    small = ["--grid", "16", "24", "16", "--size", "small", "--epochs", "2", "--cases", "2", "--batch-size", "2"]
    code = main(["train", str(data), "-o", str(out), *new_task, *small, "--val-fraction", "0", "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    config, state = load_model_file(out)
    base, base_state = load_model_file(resolve_model("hippocampus"))
    assert config.class_names == ("background", "structure")
    assert config.preprocessing.label_values == (0, 5)
    assert config.preprocessing.grid == (16, 24, 16)
    assert config.network == base.network  # the init model's network, not the --size preset
    reused = [k for k in state if k in base_state and state[k].shape == base_state[k].shape]
    assert len(reused) > 0.9 * len(state)
    result = Segmenter(out, device="cpu").segment(data / "images" / f"{CASES[0]}.nii.gz", samples=1)
    assert set(np.unique(result.labels)) <= {0, 5}


def test_fine_tune_to_new_classes_without_a_grid_takes_the_init_models(dataset):
    """The reported command (other class names, no --grid): the config takes
    the init model's grid (a multiple of its 2^3, not of the paper preset's 2^4)."""
    args = argparse.Namespace(
        output="knee.safetensors",
        name=None,
        architecture=None,
        init="hippocampus",
        class_names=["background", "femoral", "tibial"],
        label_values=[0, 1, 2],
        grid=None,
        size="small",
        modality="",
        title="",
        description="",
    )
    config, state = _config(args, find_pairs(dataset))
    base, _ = load_model_file(resolve_model("hippocampus"))
    assert config.class_names == ("background", "femoral", "tibial")
    assert config.preprocessing.grid == base.preprocessing.grid
    assert config.network == base.network and state is not None


def test_an_epoch_whose_every_step_is_skipped_finishes_and_says_so(dataset, tmp_path, capsys, monkeypatch):
    """Non-finite gradients skip the update (as a grad scaler would); an epoch
    of only skipped steps has no loss, and must not crash the run."""
    from ldseg.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "_gradients_finite", lambda self: False)
    out = tmp_path / "m.safetensors"
    args = ["--size", "tiny", "--grid", "16", "24", "16", "--epochs", "1", "--cases", "2", "--batch-size", "2"]
    code = main(["train", str(dataset), "-o", str(out), *args, "--val-fraction", "0", "--progress", "json"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "epoch 1/1 no update (non-finite gradients)" in err
    log = [json.loads(line) for line in (tmp_path / "m.run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and "loss" not in log[0]


# -- recipe settings of a new model ----------------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--terminal-fraction", "1.5"),
        ("--terminal-fraction", "nan"),
        ("--image-latent-channels", "0"),
        ("--energy-weight", "-1"),
        ("--energy-weight", "inf"),
    ],
)
def test_an_impossible_recipe_setting_is_one_line_and_writes_nothing(dataset, tmp_path, flag, value):
    out = tmp_path / "m.safetensors"
    done = _ldseg(*_train_args(dataset, out, flag, value))
    assert done.returncode == 2
    assert flag in done.stderr.strip().splitlines()[-1]
    assert not out.exists() and not (tmp_path / "m.run").exists()


def test_the_recipe_settings_of_a_new_model_are_in_its_file_and_it_segments(dataset, tmp_path):
    out = tmp_path / "m.safetensors"
    extra = ("--terminal-fraction", "0.5", "--latent-channels", "3", "--image-latent-channels", "6")
    done = _train(dataset, out, *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    config, _ = load_model_file(out)
    assert config.diffusion.terminal_fraction == 0.5
    assert (config.network.latent_channels, config.network.image_latent_channels) == (3, 6)
    assert config.network.refine_width == 16  # the 3D default (2D: 32)
    image = dataset / "images" / f"{CASES[0]}.nii.gz"
    result = Segmenter(out, device="cpu").segment(image, samples=2)
    assert result.classes.shape == nib.load(str(image)).shape


def test_energy_score_training_logs_its_term_records_its_weight_and_segments(dataset, tmp_path):
    """--energy-weight: two more samples per case from t = T, scored against the label's latent (3D path)."""
    out = tmp_path / "m.safetensors"
    done = _train(dataset, out, "--energy-weight", "0.5", epochs=2)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "m.run" / "log.jsonl").read_text().splitlines()]
    assert all(row["loss_energy"] > 0 for row in log if "loss" in row)
    config, _ = load_model_file(out)
    assert config.training["options"]["energy_weight"] == 0.5
    image = dataset / "images" / f"{CASES[0]}.nii.gz"
    result = Segmenter(out, device="cpu").segment(image, samples=2)
    assert result.classes.shape == nib.load(str(image)).shape
