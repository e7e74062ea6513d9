"""The deterministic Res-UNet baseline: shapes, skip connections, real
learning, model files, exact resume, and the ``ldseg`` commands with it."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldseg.architectures import build_network
from ldseg.cli.main import main
from ldseg.config import ModelConfig, Preprocessing, TrainOptions
from ldseg.data.dataset import SegmentationDataset, find_pairs
from ldseg.errors import ModelFileError
from ldseg.io.loading import load_model
from ldseg.io.modelfile import load_model_file, save_model
from ldseg.io.modelheader import read_config
from ldseg.nn.ldseg_net import LDSegNet
from ldseg.nn.resunet import ResUNet
from ldseg.training.presets import config_for_dataset, network_preset
from ldseg.training.trainer import CHECKPOINT, Trainer


def _config(dims, channels, grid, classes, size="tiny", **kw):
    return ModelConfig(
        preprocessing=Preprocessing(dims=dims, channels=channels, grid=grid, label_values=tuple(range(classes))),
        class_names=tuple(f"c{i}" for i in range(classes)),
        network=network_preset(size),
        **kw,
    )


@pytest.mark.parametrize(
    "dims,channels,grid,classes",
    [(2, 3, (32, 48), 2), (2, 1, (16, 16), 5), (3, 1, (16, 24, 8), 3), (3, 2, (8, 8, 8), 4)],
)
def test_shapes_2d_3d_multiclass(dims, channels, grid, classes):
    model = build_network(_config(dims, channels, grid, classes, architecture="resunet"))
    assert isinstance(model, ResUNet)
    assert model(torch.randn(2, channels, *grid)).shape == (2, classes, *grid)


def test_build_network_picks_the_architecture_and_rejects_unknown_ones():
    assert isinstance(build_network(_config(2, 1, (16, 16), 2)), LDSegNet)  # the default
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network(_config(2, 1, (16, 16), 2, architecture="unet"))


def test_same_encoder_and_decoder_sizes_as_ldseg_with_a_skip_at_every_level():
    """The decoder block of every level but the bottleneck gets the previous
    level's features AND, unchanged, the encoder's features of its resolution."""
    config = _config(2, 3, (32, 32), 2, size="small", architecture="resunet")
    net = config.network
    model = ResUNet(config).eval()
    assert [b.body[0].out_channels for b in model.encoder] == list(net.encoder_widths)
    assert [b.body[0].out_channels for b in model.decoder] == list(net.decoder_widths)
    encoded, decoder_inputs = {}, {}
    for i, block in enumerate(model.encoder):
        block.register_forward_hook(lambda m, a, out, i=i: encoded.__setitem__(i, out))
    for j, block in enumerate(model.decoder):
        block.register_forward_hook(lambda m, a, out, j=j: decoder_inputs.__setitem__(j, a[0]))
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model(image)
    depth = net.downsamplings
    assert torch.equal(decoder_inputs[0], encoded[depth])  # the bottleneck
    for j in range(1, depth + 1):
        width = net.decoder_widths[j - 1]
        assert decoder_inputs[j].shape[1] == width + net.encoder_widths[depth - j]
        assert decoder_inputs[j].shape[2:] == (32 // 2 ** (depth - j),) * 2
        assert torch.equal(decoder_inputs[j][:, width:], encoded[depth - j])  # concatenated skip


def test_four_real_glands_at_32x32_reach_a_clearly_better_dice(shared_data, tmp_path):
    """A few seconds of training through the engine's trainer (CE + 2 Dice,
    no EMA) must clearly improve the training Dice of 4 real GlaS cases."""
    pairs = find_pairs(shared_data / "glas" / "train")[:4]
    config = config_for_dataset(
        pairs, size="tiny", grid=(32, 32), class_names=("background", "gland"), architecture="resunet"
    )
    data = SegmentationDataset(pairs, config.preprocessing)
    epochs = 20
    options = TrainOptions(
        epochs=epochs, batch_size=2, lr=3e-3, lr_decay=1.0, augment=False, validate_every=epochs, seed=0
    )
    trainer = Trainer(config, data, data, options, tmp_path, torch.device("cpu"))
    before = trainer.validate()
    trainer.fit()
    after = trainer.log[-1]["val_dice"]
    print(f"training Dice {before:.3f} -> {after:.3f} after {epochs} epochs")
    assert after >= 0.9 and after > before + 0.15
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {"loss", "loss_ce", "loss_dice"} <= set(rows[0]) and "loss_mse" not in rows[0]
    assert trainer.ema is None


def test_model_file_round_trip(tmp_path):
    config = _config(3, 1, (16, 16, 8), 3, architecture="resunet")
    torch.manual_seed(0)
    model = build_network(config).eval()
    path = tmp_path / "r.safetensors"
    save_model(path, config, model.state_dict())
    assert read_config(path).architecture == "resunet"
    assert read_config(path).summary()["architecture"] == "resunet"
    loaded, _ = load_model(path)
    assert isinstance(loaded, ResUNet)
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    # the weights of one architecture do not load as the other
    other, state = load_model_file(path)
    other.architecture = "ldseg"
    save_model(tmp_path / "wrong.safetensors", other, state)
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(tmp_path / "wrong.safetensors")


def test_files_without_the_key_are_ldseg_and_bad_values_are_refused():
    d = _config(2, 1, (16, 16), 2).to_dict()
    del d["architecture"]
    assert ModelConfig.from_dict(d).architecture == "ldseg"
    with pytest.raises(ValueError, match="unknown architecture"):
        ModelConfig.from_dict({**d, "architecture": "transformer"})


def _glas_trainer(shared_data, run_dir, epochs, architecture, intensity_augment=False):
    """A tiny trainer on 4 GlaS cases (flips on, no validation set)."""
    pairs = find_pairs(shared_data / "glas" / "train")[:4]
    config = config_for_dataset(pairs, size="tiny", grid=(32, 32), architecture=architecture)
    data = SegmentationDataset(pairs, config.preprocessing)
    options = TrainOptions(epochs=epochs, batch_size=2, seed=1, intensity_augment=intensity_augment)
    run_dir.mkdir(exist_ok=True)
    return Trainer(config, data, None, options, run_dir, torch.device("cpu"))


def test_a_resumed_baseline_run_ends_with_the_same_weights(shared_data, tmp_path):
    # intensity augmentation on too: its draws must replay exactly after a resume
    straight = _glas_trainer(shared_data, tmp_path / "a", 4, "resunet", intensity_augment=True)
    straight.fit()
    first = _glas_trainer(shared_data, tmp_path / "b", 2, "resunet", intensity_augment=True)
    first.fit()
    resumed = _glas_trainer(shared_data, tmp_path / "b", 4, "resunet", intensity_augment=True)
    assert resumed.resume() and resumed.epoch == 2
    resumed.fit()
    a, b = straight.inference_state(), resumed.inference_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_written_before_the_architecture_key_still_resumes(shared_data, tmp_path):
    trainer = _glas_trainer(shared_data, tmp_path, 1, "ldseg")
    trainer.fit()
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    config = json.loads(state["config"])
    del config["architecture"]
    state["config"] = json.dumps(config)
    torch.save(state, tmp_path / CHECKPOINT)
    again = _glas_trainer(shared_data, tmp_path, 2, "ldseg")
    assert again.resume() and again.epoch == 1


def test_train_segment_evaluate_and_info_with_the_cli(shared_data, tmp_path, capsys):
    model = tmp_path / "baseline.safetensors"
    assert (
        main(
            [
                "train",
                str(shared_data / "glas" / "train"),
                "-o",
                str(model),
                "--architecture",
                "resunet",
                "--cases",
                "6",
                "--size",
                "tiny",
                "--grid",
                "32",
                "32",
                "--epochs",
                "2",
                "--batch-size",
                "2",
                "--val-fraction",
                "0.34",
                "--progress",
                "none",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert read_config(model).architecture == "resunet"
    assert len((tmp_path / "baseline.run" / "log.jsonl").read_text().splitlines()) == 2

    src = shared_data / "glas" / "testA" / "images" / "testA_1.png"
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(src),
                "-o",
                str(out),
                "--model",
                str(model),
                "--samples",
                "4",
                "--steps",
                "7",
                "--sampler",
                "ddpm",
                "--progress",
                "none",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "testA_1_result.json").read_text())
    assert manifest["architecture"] == "resunet" and manifest["samples"] == 1
    assert "SD is exactly 0" in manifest["note"]
    ref = sitk.ReadImage(str(src))
    for key in ("labels", "sd", "probabilities"):
        assert sitk.ReadImage(manifest["files"][key]).GetSize() == ref.GetSize()
    assert not sitk.GetArrayFromImage(sitk.ReadImage(manifest["files"]["sd"])).any()
    probs = sitk.GetArrayFromImage(sitk.ReadImage(manifest["files"]["probabilities"]))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)

    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(model),
                str(shared_data / "glas" / "train"),
                "-o",
                str(tmp_path / "eval"),
                "--cases",
                "train_1",
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
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["cases"] == 1 and summary["architecture"] == "resunet"
    assert summary["samples"] == 1 and summary["steps"] == 0

    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    assert "Res-UNet (deterministic baseline)" in capsys.readouterr().out
    assert main(["info", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "resunet"

    # fine-tuning keeps the architecture; asking for the other one is a user error
    assert (
        main(
            [
                "train",
                str(shared_data / "glas" / "train"),
                "-o",
                str(tmp_path / "x.safetensors"),
                "--init",
                str(model),
                "--architecture",
                "ldseg",
                "--cases",
                "4",
                "--epochs",
                "1",
                "--progress",
                "none",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "cannot start a ldseg model" in capsys.readouterr().err
