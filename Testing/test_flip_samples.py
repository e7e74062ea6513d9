"""Samples spread over the image flips a model was trained with
(ldseg.inference.flips): which views a model has, that each sample is its
view's answer flipped back onto the image, that the mean and SD are those of
the samples, and that model files without the setting sample as before."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ldseg.cli.main import main
from ldseg.data.preprocess import prepare_image
from ldseg.inference.flips import NO_FLIPS, flip_views, sample_over_views
from ldseg.inference.sampling import SamplingOptions, sample_noise, sample_probabilities
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import read_image
from ldseg.io.loading import load_model

REPO = Path(__file__).resolve().parents[1]
GLAS_BASELINE = REPO / "Resources" / "Baselines" / "glas-resunet.safetensors"


def test_views_are_the_flips_the_model_was_trained_with():
    glas = load_model("glas")[0].config  # trained with flips of both axes
    assert flip_views(glas) == ((), (0,), (1,), (0, 1))
    hippocampus = load_model("hippocampus")[0].config  # left-right only, in RAS order: the last axis
    assert hippocampus.training["flip_axes"] == "left-right" and hippocampus.preprocessing.orientation == "RAS"
    assert flip_views(hippocampus) == ((), (2,))
    no_augment = copy.deepcopy(glas)
    no_augment.training = {**glas.training, "options": {**glas.training["options"], "augment": False}}
    assert flip_views(no_augment) == NO_FLIPS
    sided = copy.deepcopy(glas)
    sided.class_names = ("background", "left gland")  # a flip would make it a right one
    assert flip_views(sided) == NO_FLIPS


@pytest.fixture(scope="module")
def glas_case(tmp_path_factory):
    shared = REPO.parent / "shared" / "data" / "glas" / "testA" / "images" / "testA_1.png"
    if not shared.exists():
        pytest.skip("shared data not found")
    model = load_model("glas")[0].eval()
    return model, prepare_image(read_image(shared), model.config.preprocessing)[None]


def test_each_sample_is_its_views_answer_flipped_back(glas_case):
    model, x = glas_case
    from ldseg.architectures import architecture_of

    schedule = architecture_of(model.config).schedule
    options = SamplingOptions(samples=6, seed=3)  # 6 samples on 4 views: groups of 2, 2, 1, 1
    kept = []
    mean, sd = sample_over_views(
        model, x, model.encode_image, schedule, options, flip_views(model.config), on_batch=kept.append
    )
    samples = torch.cat(kept)  # in sample order, as without flips; sample k saw view k mod 4
    assert samples.shape[0] == 6
    # the mean and SD are those of the samples (population SD, largest over the classes is the map)
    assert torch.allclose(mean, samples.mean(0), atol=1e-5)
    assert torch.allclose(sd, samples.std(0, unbiased=False), atol=1e-5)
    # sample 3 saw the image flipped along both axes, with sample 3's own noise: redo it by hand
    flipped = torch.from_numpy(np.ascontiguousarray(x.numpy()[:, :, ::-1, ::-1]))
    z = model.encode_image(flipped)
    shape = (model.config.network.latent_channels, *z.shape[2:])
    by_hand, _ = sample_probabilities(
        model,
        z,
        schedule,
        SamplingOptions(samples=1, seed=3),
        noise=lambda i: sample_noise(options, 3, shape),
        image=flipped,
    )
    assert torch.allclose(samples[3], torch.from_numpy(np.ascontiguousarray(by_hand.numpy()[:, ::-1, ::-1])), atol=1e-5)
    # and the unflipped view's samples are plain sampling's samples 0 and 4
    plain_kept = []
    sample_probabilities(model, model.encode_image(x), schedule, options, image=x, on_batch=plain_kept.append)
    plain = torch.cat(plain_kept)
    assert torch.allclose(samples[0], plain[0], atol=1e-5) and torch.allclose(samples[4], plain[4], atol=1e-5)
    assert not torch.allclose(samples[1], plain[1], atol=1e-3)  # sample 1 saw the image flipped


def test_files_without_the_setting_sample_as_before(shared_data):
    """``lidc`` predates the setting: by default it samples without flips, exactly
    as measured, and a request can still turn them on (it was trained flipping
    every axis). The shipped ``glas`` has the setting on (round 29)."""
    image = shared_data / "lidc" / "images" / "LIDC-IDRI-0848_nodule-0_slice-1.png"
    segmenter = Segmenter("lidc")
    assert segmenter.config.diffusion.flip_samples is False
    default = segmenter.segment(image, samples=4)
    off = segmenter.segment(image, samples=4, flip_samples="off")
    on = segmenter.segment(image, samples=4, flip_samples="on")
    assert default.flip_views == off.flip_views == 1 and on.flip_views == 4
    assert np.array_equal(default.probabilities, off.probabilities)
    assert not np.array_equal(on.probabilities, off.probabilities)
    fewer = segmenter.segment(image, samples=2, flip_samples="on")
    assert fewer.flip_views == 2  # with N < F only the first N views are seen
    glas = Segmenter("glas")
    assert glas.config.diffusion.flip_samples is True
    assert glas.segment(shared_data / "glas" / "testA" / "images" / "testA_2.png", samples=4).flip_views == 4


def test_flip_samples_on_the_command_line(shared_data, tmp_path, capsys):
    image = shared_data / "glas" / "testA" / "images" / "testA_3.png"
    out = tmp_path / "out"
    args = ["segment", str(image), "-o", str(out), "--samples", "4", "--progress", "none", "--model", "glas"]
    assert main([*args, "--flip-samples", "on"]) == 0
    assert json.loads((out / "testA_3_result.json").read_text())["flip_views"] == 4
    # a deterministic baseline draws no samples to spread: one line, exit 2, nothing written
    refused = tmp_path / "refused"
    code = main(["segment", str(image), "-o", str(refused), "--model", str(GLAS_BASELINE), "--flip-samples", "on"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Res-UNet" in err, err
    assert not refused.exists()
    with pytest.raises(SystemExit) as refused_choice:
        main([*args, "--flip-samples", "sideways"])
    assert refused_choice.value.code == 2
