"""The engine's single homes: the config owns every default, the command line
derives its flags from it, and model files read and list without torch."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ldseg.cli.main import build_parser
from ldseg.cli.options import SEGMENT_HELP, TRAIN_HELP, recipe_settings, segment_options, train_options
from ldseg.config import (
    LEGACY_VALUES,
    PREDICTIONS,
    SAMPLERS,
    DiffusionConfig,
    ModelConfig,
    NetworkConfig,
    SegmentOptions,
    TrainOptions,
)
from ldseg.errors import InputError
from ldseg.io.modelfile import read_safetensors, write_safetensors
from ldseg.io.models import resolve_model

#: Runs code in a fresh interpreter in which importing torch fails.
NO_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed (blocked by the test)")
sys.meta_path.insert(0, _NoTorch())
"""


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, timeout=120)


def test_models_list_and_config_read_without_torch():
    done = _run_without_torch(
        "from ldseg.io.models import list_models\n"
        "import json\n"
        "print(json.dumps([m['name'] for m in list_models() if 'error' not in m]))\n"
    )
    assert done.returncode == 0, done.stderr
    assert {"hippocampus", "glas"} <= set(json.loads(done.stdout))
    cli = _run_without_torch("from ldseg.cli.main import main\nraise SystemExit(main(['models', '--json']))")
    assert cli.returncode == 0, cli.stderr
    assert {m["name"] for m in json.loads(cli.stdout)} >= {"hippocampus", "glas"}


def test_every_option_field_has_one_flag_whose_default_is_the_configs():
    parser = build_parser()
    train = parser.parse_args(["train", "data", "-o", "m.safetensors"])
    assert train_options(train) == TrainOptions()
    segment = parser.parse_args(["segment", "image.nii.gz", "-o", "out"])
    assert segment_options(segment) == SegmentOptions()
    evaluate = parser.parse_args(["evaluate", "model", "data"])
    assert segment_options(evaluate) == SegmentOptions()  # evaluate samples like segment (N = 10)
    assert set(TRAIN_HELP) == {f.name for f in dataclasses.fields(TrainOptions)}
    assert set(SEGMENT_HELP) == {f.name for f in dataclasses.fields(SegmentOptions)}
    d, n = DiffusionConfig(), NetworkConfig()
    assert train.schedule == d.schedule
    assert recipe_settings(train) == {
        "prediction": d.prediction,
        "decoder_input": d.decoder_input,
        "terminal_fraction": d.terminal_fraction,
        "refine_width": n.refine_width,
        "label_encoder": "learned",
        "image_encoder": "learned",
        "image_attention_levels": n.image_attention_levels,
    }
    paper = build_parser().parse_args(["train", "data", "-o", "m.safetensors", "--recipe", "paper"])
    assert recipe_settings(paper) == {
        "prediction": "eps",
        "decoder_input": "paper",
        "terminal_fraction": 0.0,  # the paper's uniform levels
        "refine_width": 0,
        "label_encoder": "learned",
        "image_encoder": "learned",
        "image_attention_levels": 2,  # the reference's last two stages
    }
    ablation = build_parser().parse_args(["train", "data", "-o", "m.safetensors", "--recipe", "paper-ld-id"])
    assert recipe_settings(ablation) == {
        **recipe_settings(paper),
        "label_encoder": "downsample",
        "image_encoder": "downsample",
    }
    # the paper trained with flips only; a flag still wins over the recipe
    assert train_options(train).intensity_augment and not train_options(paper).intensity_augment
    paper_jitter = build_parser().parse_args(
        ["train", "d", "-o", "m.safetensors", "--recipe", "paper", "--intensity-augment"]
    )
    assert train_options(paper_jitter).intensity_augment
    plain = build_parser().parse_args(["train", "d", "-o", "m.safetensors", "--no-intensity-augment"])
    assert not train_options(plain).intensity_augment
    # the refiner's default width depends on the images' dims; a recipe or the flag still wins
    assert (recipe_settings(train, 2)["refine_width"], recipe_settings(train, 3)["refine_width"]) == (32, 16)
    assert recipe_settings(paper, 2)["refine_width"] == 0
    narrow = build_parser().parse_args(["train", "d", "-o", "m.safetensors", "--refine-width", "8"])
    assert recipe_settings(narrow, 2)["refine_width"] == 8
    mixed = build_parser().parse_args(["train", "d", "-o", "m.safetensors", "--recipe", "paper", "--prediction", "v"])
    assert recipe_settings(mixed)["prediction"] == "v" and recipe_settings(mixed)["refine_width"] == 0
    sampler = next(a for a in parser._subparsers._group_actions[0].choices["segment"]._actions if a.dest == "sampler")
    assert tuple(sampler.choices) == SAMPLERS
    prediction = next(
        a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "prediction"
    )
    assert tuple(prediction.choices) == PREDICTIONS


@pytest.mark.parametrize(
    "argv,flag_name",
    [
        (["segment", "i.nii.gz", "-o", "o", "--steps", "0"], "--steps"),
        (["segment", "i.nii.gz", "-o", "o", "--eta", "nan"], "--eta"),
        (["segment", "i.nii.gz", "-o", "o", "--memory-budget", "inf"], "--memory-budget"),
        (["segment", "i.nii.gz", "-o", "o", "--seed", str(2**64)], "--seed"),
        (["train", "d", "-o", "m.safetensors", "--epochs", "0"], "--epochs"),
        (["train", "d", "-o", "m.safetensors", "--lr", "-1"], "--lr"),
        (["train", "d", "-o", "m.safetensors", "--batch-size", "0"], "--batch-size"),
        (["train", "d", "-o", "m.safetensors", "--time-budget", "-5"], "--time-budget"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_flag(argv, flag_name):
    args = build_parser().parse_args(argv)
    build = segment_options if argv[0] == "segment" else train_options
    with pytest.raises(InputError) as e:
        build(args)
    assert str(e.value).startswith(flag_name + " ")


def test_steps_zero_is_an_error_on_the_command_line_not_the_model_default(tmp_path, shared_data):
    image = shared_data / "hippocampus" / "images" / "hippocampus_393.nii.gz"
    done = subprocess.run(
        [sys.executable, "-m", "ldseg", "segment", str(image), "-o", str(tmp_path / "out"), "--steps", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--steps" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_older_model_file_keeps_the_settings_it_was_made_with():
    """Fields a format-1 file lacks take the values of that time, not today's defaults."""
    config = ModelConfig.from_dict(json.loads(json.dumps(_minimal_v1_config())))
    for key, value in LEGACY_VALUES["diffusion"].items():
        assert getattr(config.diffusion, key) == value
    assert config.network.refine_width == LEGACY_VALUES["network"]["refine_width"]
    assert (config.network.label_encoder, config.network.image_encoder) == ("learned", "learned")
    assert config.architecture == "ldseg"
    # ... although today's defaults differ (the recipe of docs/experiments.md)
    assert (DiffusionConfig().prediction, NetworkConfig().refine_width) != ("eps", 0)


def test_a_file_from_before_image_attention_heads_keeps_its_image_encoders_heads():
    """Such files ran the image encoder with attention_heads; a file that stores
    its own image_attention_heads keeps that through a round trip."""
    from ldseg.nn.layers import SelfAttention
    from ldseg.nn.ldseg_net import LDSegNet

    old = {**_minimal_v1_config(), "network": {"attention_heads": 4}}
    config = ModelConfig.from_dict(json.loads(json.dumps(old)))
    assert config.network.image_attention_heads == 4
    heads = {m.attn.num_heads for m in LDSegNet(config).image_encoder.modules() if isinstance(m, SelfAttention)}
    assert heads == {4}
    config.network.image_attention_heads = 2
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert (again.network.attention_heads, again.network.image_attention_heads) == (4, 2)
    heads = {m.attn.num_heads for m in LDSegNet(again).image_encoder.modules() if isinstance(m, SelfAttention)}
    assert heads == {2}


def test_image_attention_flags_reach_a_new_models_config(shared_data):
    from ldseg.cli.train import _config
    from ldseg.data.dataset import find_pairs

    def config(dataset, *flags):
        args = build_parser().parse_args(["train", str(dataset), "-o", "m.safetensors", *flags])
        return _config(args, find_pairs(dataset)[:3])[0].network

    hippocampus, glas = shared_data / "hippocampus", shared_data / "glas" / "train"
    assert not config(hippocampus).image_attention  # the 3D reference has none
    assert config(hippocampus, "--image-attention").image_attention
    assert config(glas).image_attention and config(glas).image_attention_heads == 8
    assert not config(glas, "--no-image-attention").image_attention
    assert config(glas, "--image-attention-heads", "2").image_attention_heads == 2
    with pytest.raises(InputError, match="^--image-attention-heads "):
        config(glas, "--image-attention-heads", "0")
    assert config(glas).image_attention_levels == 1  # round 16: the coarsest stage only
    assert config(glas, "--recipe", "paper").image_attention_levels == 2  # the reference's last two stages
    assert config(glas, "--image-attention-levels", "2").image_attention_levels == 2
    for bad in ("0", "9"):
        with pytest.raises(InputError, match="^--image-attention-levels "):
            config(glas, "--image-attention-levels", bad)


def test_a_file_from_before_image_attention_levels_keeps_attention_in_two_stages():
    old = _minimal_v1_config()
    assert ModelConfig.from_dict(old).network.image_attention_levels == 2
    assert ModelConfig.from_dict({**old, "network": {"image_attention_levels": 1}}).network.image_attention_levels == 1


def test_the_image_encoder_has_attention_at_its_last_levels_only():
    from ldseg.nn.encoders import ImageEncoder
    from ldseg.nn.layers import SelfAttention

    def stages_with_attention(levels):
        net = NetworkConfig(image_attention_levels=levels)
        encoder = ImageEncoder(2, 1, net)
        return sum(isinstance(m, SelfAttention) for m in encoder.modules())

    assert stages_with_attention(1) == 1 and stages_with_attention(2) == 2
    assert stages_with_attention(len(NetworkConfig().encoder_widths)) == len(NetworkConfig().encoder_widths)


def _minimal_v1_config() -> dict:
    return {
        "preprocessing": {"dims": 2, "channels": 1, "grid": [32, 32], "label_values": [0, 1]},
        "class_names": ["background", "fg"],
        "diffusion": {"schedule": "cosine", "steps": 1000},
        "format_version": 1,
    }


def test_our_model_files_read_with_the_official_safetensors_package():
    st = pytest.importorskip("safetensors.torch")
    path = resolve_model("hippocampus")
    ours, metadata = read_safetensors(path)
    theirs = st.load_file(str(path))
    assert set(ours) == set(theirs)
    for name, tensor in ours.items():
        assert torch.equal(tensor, theirs[name]), name
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["config"] == metadata["config"]


def test_files_the_official_package_writes_read_with_ours_bf16_included(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    tensors = {
        "f32": torch.randn(3, 4),
        "bf16": torch.randn(5, 2).to(torch.bfloat16),
        "f16": torch.randn(7).half(),
        "i64": torch.arange(6).reshape(2, 3),
        "u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
    }
    path = tmp_path / "theirs.safetensors"
    st.save_file(tensors, str(path), metadata={"k": "v"})
    ours, metadata = read_safetensors(path)
    assert metadata == {"k": "v"}
    for name, tensor in tensors.items():
        assert ours[name].dtype == tensor.dtype and torch.equal(ours[name], tensor), name
    back = tmp_path / "ours.safetensors"
    write_safetensors(back, tensors, {"k": "v"})
    again = st.load_file(str(back))
    for name, tensor in tensors.items():
        assert again[name].dtype == tensor.dtype and torch.equal(again[name], tensor), name


def test_model_listing_reads_the_header_not_the_weights(tmp_path):
    """Listing costs the header, not the file: a model whose weight bytes are
    all NaN still lists with its config (the weights are not read), while
    loading it refuses the weights."""
    from ldseg.errors import ModelFileError
    from ldseg.io.modelfile import load_model_file
    from ldseg.io.modelheader import read_config

    source = Path(resolve_model("glas"))
    data = bytearray(source.read_bytes())
    n = int(np.frombuffer(bytes(data[:8]), dtype="<u8")[0])
    data[8 + n :] = b"\xff" * (len(data) - 8 - n)  # every float a NaN
    spoiled = tmp_path / "glas.safetensors"
    spoiled.write_bytes(bytes(data))
    assert read_config(spoiled).name == read_config(source).name
    with pytest.raises(ModelFileError):
        load_model_file(spoiled)


@pytest.mark.parametrize("fraction", ["1", "-1"])
def test_a_validation_fraction_outside_0_to_1_is_refused_before_any_work(fraction, tmp_path, shared_data):
    out = tmp_path / "m.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "ldseg", "train", str(shared_data / "glas" / "train"), "-o", str(out)]
        + ["--val-fraction", fraction],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "--val-fraction" in done.stderr and done.stderr.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []


def test_help_and_every_subcommands_help_work_without_torch():
    for argv in (["--help"], ["segment", "--help"], ["train", "--help"], ["evaluate", "--help"]):
        done = _run_without_torch(f"from ldseg.cli.main import main\nmain({argv!r})")
        assert done.returncode == 0, done.stderr
        assert "usage: ldseg" in done.stdout
