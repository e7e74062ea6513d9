"""Training: real learning on real cases, exact resume, distributed training
with torchrun, and fine-tuning."""

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import make_model_file

from ldseg.cli.main import build_parser
from ldseg.cli.options import train_options
from ldseg.config import DEFAULT_EPOCHS, TrainOptions
from ldseg.data.dataset import SegmentationDataset, find_pairs
from ldseg.io.modelfile import load_model_file
from ldseg.io.modelheader import read_config
from ldseg.nn.ldseg_net import LDSegNet
from ldseg.training.presets import config_for_dataset
from ldseg.training.trainer import Trainer, load_matching


def _ldseg(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "ldseg", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 300),
        **kw,
    )


EPOCHS, BATCH = 150, 2


def test_learns_real_glands_to_training_dice_0_9(shared_data, tmp_path):
    """8 real GlaS cases, the tiny network, a couple of minutes on 2 CPU cores:
    the full sampling pipeline (DDIM K=2 from noise, EMA denoiser) must
    reproduce the training labels with Dice >= 0.9."""
    pairs = find_pairs(shared_data / "glas" / "train")[:8]
    config = config_for_dataset(pairs, size="tiny", grid=(64, 64), class_names=("background", "gland"))
    data = SegmentationDataset(pairs, config.preprocessing)
    options = TrainOptions(
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=3e-3,
        lr_decay=1.0,
        ema_decay=0.99,
        augment=False,
        validate_every=EPOCHS,
        seed=0,
    )
    trainer = Trainer(config, data, data, options, tmp_path, torch.device("cpu"))
    trainer.fit()
    dice = trainer.log[-1]["val_dice"]
    print(f"training Dice after {EPOCHS} epochs: {dice:.3f}")
    assert dice >= 0.9
    # the written files: best model, JSON-lines log with every loss, curve picture
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rows) == EPOCHS and {"loss", "loss_ce", "loss_dice", "loss_mse", "seconds"} <= set(rows[0])
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert read_config(tmp_path / "best.safetensors").training["best_val_dice"] == pytest.approx(dice, abs=1e-4)


def _train_args(data, out, epochs, *extra):
    return [
        "train",
        data,
        "-o",
        out,
        "--cases",
        8,
        "--size",
        "tiny",
        "--grid",
        32,
        32,
        "--epochs",
        epochs,
        "--batch-size",
        2,
        "--val-fraction",
        0.25,
        "--seed",
        3,
        "--ema-decay",
        0.9,
        *extra,
    ]


def test_interrupted_and_resumed_run_ends_with_the_same_weights(shared_data, tmp_path):
    data = shared_data / "glas" / "train"
    epochs = 30
    straight = _ldseg(*_train_args(data, tmp_path / "a.safetensors", epochs, "--progress", "none"))
    assert straight.returncode == 0, straight.stderr
    assert read_config(tmp_path / "a.safetensors").network.refine_width == 32  # the 2D default (3D: 16)

    out = tmp_path / "b.safetensors"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ldseg", *map(str, _train_args(data, out, epochs, "--progress", "none"))],
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "b.run" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "cancelled" in err and not out.exists()
    done = len(log.read_text().splitlines())
    assert 3 <= done < epochs

    resumed = _ldseg(*_train_args(data, out, epochs, "--resume", "--progress", "none"))
    assert resumed.returncode == 0, resumed.stderr
    _, a = load_model_file(tmp_path / "a.safetensors")
    _, b = load_model_file(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert len(log.read_text().splitlines()) == epochs


def test_a_second_run_in_the_same_folder_needs_resume(shared_data, tmp_path):
    data = shared_data / "glas" / "train"
    first = _ldseg(*_train_args(data, tmp_path / "m.safetensors", 1, "--progress", "none"))
    assert first.returncode == 0, first.stderr
    again = _ldseg(
        *_train_args(data, tmp_path / "m2.safetensors", 1, "--progress", "none", "--run-dir", tmp_path / "m.run")
    )
    assert again.returncode == 2 and "--resume" in again.stderr


def test_distributed_training_with_two_gloo_processes(shared_data, tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "ldseg",
            *map(str, _train_args(shared_data / "glas" / "train", out, 2, "--progress", "json")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    training = read_config(out).training
    assert training["world_size"] == 2
    assert training["train_cases"] == 6
    # Both epochs ran (one log row each, written by rank 0 only); the file is the best
    # validation epoch, which of the two that is depends on the CPU's numerics.
    rows = [json.loads(line) for line in (tmp_path / "ddp.run" / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert training["epochs"] == training["best_epoch"] in (1, 2)


def test_fine_tune_same_classes_starts_from_the_model(shared_data, tmp_path):
    data = shared_data / "glas" / "train"
    base = tmp_path / "base.safetensors"
    assert _ldseg(*_train_args(data, base, 2, "--progress", "none")).returncode == 0
    tuned = tmp_path / "tuned.safetensors"
    proc = _ldseg(*_train_args(data, tuned, 1, "--progress", "none", "--init", base, "--lr", 1e-5))
    assert proc.returncode == 0, proc.stderr
    cfg = read_config(tuned)
    assert cfg.training["fine_tuned_from"] == "base.safetensors"
    assert cfg.class_names == read_config(base).class_names
    _, a = load_model_file(base)
    _, b = load_model_file(tuned)
    # a tiny learning rate for one epoch: close to the base, but changed
    diffs = [float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()]
    assert max(diffs) > 0 and max(diffs) < 0.05


def test_new_task_reuses_every_layer_that_fits(tmp_path, shared_data):
    base = make_model_file(tmp_path / "two.safetensors", grid=(16, 16, 16), label_values=(0, 1))
    base_cfg, state = load_model_file(base)
    pairs = find_pairs(shared_data / "hippocampus")[:2]
    new_cfg = config_for_dataset(pairs, size="tiny", grid=(16, 16, 16), class_names=("bg", "ant", "post"))
    new_cfg.network = base_cfg.network
    fresh = load_matching(LDSegNet(new_cfg), state)
    # only the layers that see the number of classes start afresh
    # the class-dependent layers only: the label encoder's first, the decoder's last, the refiner's
    # layers that read or write class probabilities
    class_dependent = ("label_encoder.encoder.body.0.", "decoder.body.", "refiner.mix.body.0.", "refiner.mix.skip.")
    assert fresh and all(k.startswith(class_dependent + ("refiner.out.",)) for k in fresh)
    assert len(fresh) < 12
    proc = _ldseg(
        "train",
        shared_data / "hippocampus",
        "-o",
        tmp_path / "three.safetensors",
        "--cases",
        4,
        "--init",
        base,
        "--class-names",
        "bg",
        "ant",
        "post",
        "--label-values",
        0,
        1,
        2,
        "--epochs",
        1,
        "--progress",
        "none",
        "--grid",
        16,
        16,
        16,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_config(tmp_path / "three.safetensors").class_names == ("bg", "ant", "post")


def test_time_budget_stops_after_the_epoch_that_reaches_it_and_keeps_the_best(shared_data, tmp_path):
    """--time-budget counts epochs and validation, stops after the epoch that
    reaches it (validated, as the last epoch always is), the model file is the
    best validation epoch, and a resumed run has no time left. Without --epochs
    the budget alone ends training."""
    pairs = find_pairs(shared_data / "glas" / "train")[:6]
    config = config_for_dataset(pairs, size="tiny", grid=(32, 32), class_names=("background", "gland"))
    data = SegmentationDataset(pairs, config.preprocessing)
    budget_minutes = 0.03  # a few tiny epochs, however fast this machine is

    def trainer():
        options = TrainOptions(time_budget=budget_minutes, batch_size=3, validate_every=10_000)
        return Trainer(config, data, data, options, tmp_path, torch.device("cpu"))

    run = trainer()
    run.fit()
    seconds = [row["seconds"] for row in run.log]
    assert run.epoch == len(seconds)
    assert sum(seconds) >= budget_minutes * 60 > sum(seconds[:-1])  # stopped by the epoch that reached it
    assert "val_dice" in run.log[-1] and all("val_dice" not in row for row in run.log[:-1])
    assert read_config(tmp_path / "best.safetensors").training["epochs"] == run.best_epoch == run.epoch
    resumed = trainer()
    assert resumed.resume() and resumed.out_of_time()


def test_a_time_budget_without_epochs_trains_for_the_budget():
    """ "Twenty minutes" means twenty minutes, however many epochs they buy;
    --epochs with a budget caps both ways, and neither flag keeps the default count."""
    parser = build_parser()

    def limit(*flags):
        args = parser.parse_args(["train", "data", "-o", "m.safetensors", *flags])
        return train_options(args).epoch_limit

    assert limit("--time-budget", "20") is None
    assert limit("--time-budget", "20", "--epochs", "30") == 30
    assert limit() == limit("--time-budget", "0") == DEFAULT_EPOCHS
    refused = subprocess.run(
        [sys.executable, "-m", "ldseg", "train", "data", "-o", "m.safetensors", "--epochs", "0"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "--epochs must be an integer >= 1" in refused.stderr


def test_3d_flips_keep_to_each_case_left_right_axis(shared_data, tmp_path):
    """Decathlon labels name the hippocampus's anterior and posterior parts, so
    flips along the front-back (or up-down) axis would teach a model that the
    head may lie at either end: for 3D images flips use only the left-right axis,
    whichever axis order the case is stored in (here a RAS crop and the same
    crop stored as a sagittal stack), and the model file says so."""
    import SimpleITK as sitk

    from ldseg.data.dataset import CasePair

    source = find_pairs(shared_data / "hippocampus")[0]
    for kind, path in (("images", source.image), ("labels", source.label)):
        (tmp_path / kind).mkdir()
        permuted = sitk.PermuteAxes(sitk.ReadImage(str(path)), [2, 1, 0])  # index z, y, x: a sagittal stack
        sitk.WriteImage(permuted, str(tmp_path / kind / "sagittal.nii.gz"))
    pairs = [
        source,
        CasePair("sagittal", tmp_path / "images" / "sagittal.nii.gz", tmp_path / "labels" / "sagittal.nii.gz"),
    ]
    config = config_for_dataset(pairs, size="tiny", grid=(8, 8, 8), class_names=("bg", "ant", "post"))
    data = SegmentationDataset(pairs, config.preprocessing)
    options = TrainOptions(epochs=1, batch_size=2, validate_every=1)
    (tmp_path / "run").mkdir()
    trainer = Trainer(config, data, data, options, tmp_path / "run", torch.device("cpu"))
    assert trainer.flip_axes == "left-right"
    assert config.preprocessing.orientation == "RAS"  # both cases reach the model in one axis order
    assert trainer._flip_allowed.tolist() == [[False, False, True], [False, False, True]]
    stored_order = copy.deepcopy(config)
    stored_order.preprocessing.orientation = "none"  # a model file from before the axis order existed
    in_stored_order = SegmentationDataset(pairs, stored_order.preprocessing)
    legacy = Trainer(stored_order, in_stored_order, None, options, tmp_path / "legacy", torch.device("cpu"))
    assert legacy._flip_allowed.tolist() == [[False, False, True], [True, False, False]]
    trainer.fit()
    saved = read_config(tmp_path / "run" / "best.safetensors")
    assert saved.training["flip_axes"] == "left-right"
    assert saved.diffusion.flip_samples is False  # 3D: one left-right flip changed nothing (round 23)
    every_axis = Trainer(config, data, data, TrainOptions(flip_axes="all"), tmp_path / "all", torch.device("cpu"))
    assert every_axis.flip_axes == "all" and every_axis._flip_allowed is None


def test_2d_flips_use_every_axis(shared_data, tmp_path):
    pairs = find_pairs(shared_data / "glas" / "train")[:2]
    config = config_for_dataset(pairs, size="tiny", grid=(16, 16), class_names=("background", "gland"))
    data = SegmentationDataset(pairs, config.preprocessing)
    trainer = Trainer(config, data, data, TrainOptions(), tmp_path, torch.device("cpu"))
    assert trainer.flip_axes == "all" and trainer._flip_allowed is None
    # a model that learned every flipped view spreads its samples over them; one that saw no flips does not
    trainer.save_model(tmp_path / "flipped.safetensors")
    assert read_config(tmp_path / "flipped.safetensors").diffusion.flip_samples is True
    unflipped = Trainer(config, data, data, TrainOptions(augment=False), tmp_path / "plain", torch.device("cpu"))
    unflipped.save_model(tmp_path / "plain.safetensors")
    assert read_config(tmp_path / "plain.safetensors").diffusion.flip_samples is False
