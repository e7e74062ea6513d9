"""The autoencoder ceiling: the reference label through LDSeg's label
autoencoder alone, on the case's own grid."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ldseg.data.preprocess import labels_to_classes, prepare_image, prepare_label
from ldseg.errors import InputError
from ldseg.evaluation.ceiling import autoencoded_classes
from ldseg.evaluation.metrics import dice_per_class
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import Geometry, MedicalImage, read_image, read_label

REPO = Path(__file__).resolve().parents[1]
HIPPOCAMPUS_MODEL = REPO / "Resources" / "Models" / "hippocampus.safetensors"
HIPPOCAMPUS_BASELINE = REPO / "Resources" / "Baselines" / "hippocampus-resunet.safetensors"


def _blob_case(shape=(50, 40)):
    rng = np.random.default_rng(0)
    image = MedicalImage(array=rng.random((3, *shape)).astype(np.float32), geometry=Geometry.identity(2), source=None)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    classes = (((yy - 20) ** 2 + (xx - 15) ** 2) < 100).astype(np.int64)
    return image, classes


def test_autoencode_is_decode_of_the_label_latent(tiny_2d_rgb_model):
    model = Segmenter(tiny_2d_rgb_model, device="cpu").model
    labels = torch.zeros((1, 32, 32), dtype=torch.int64)
    labels[0, 8:20, 5:25] = 1
    image = torch.rand((1, 3, 32, 32))
    with torch.inference_mode():
        expected = model.decode(model.encode_label(labels), image)
        assert torch.equal(model.autoencode(labels, image), expected)


def test_autoencoded_classes_equal_a_direct_computation(tiny_2d_rgb_model):
    segmenter = Segmenter(tiny_2d_rgb_model, device="cpu")
    pre = segmenter.config.preprocessing
    image, classes = _blob_case()
    got = autoencoded_classes(segmenter, image, classes)
    assert got.shape == classes.shape

    # by hand: label and image to the model grid, encoder, decoder, softmax, back to the input grid
    model = segmenter.model
    x = prepare_image(image, pre)[None]
    grid_labels = prepare_label(np.where(classes == 1, 255, 0), pre, "blob")[None]
    with torch.inference_mode():
        onehot = F.one_hot(grid_labels, 2).movedim(-1, 1).float()
        logits = model.refine(model.decoder(model.label_encoder(onehot)), x)
        p = F.interpolate(logits.softmax(1), size=classes.shape, mode="bilinear", align_corners=False)
    expected = p[0].argmax(0).numpy()
    assert np.mean(got == expected) > 0.999  # equal up to rounding at exact ties


def test_autoencoded_classes_checks_its_inputs(tiny_2d_rgb_model):
    segmenter = Segmenter(tiny_2d_rgb_model, device="cpu")
    image, classes = _blob_case()
    with pytest.raises(InputError):
        autoencoded_classes(segmenter, image, classes[:-1])


def test_shipped_hippocampus_latent_holds_a_test_label(shared_data):
    pair = shared_data / "hippocampus"
    image = read_image(pair / "images" / "hippocampus_321.nii.gz")
    labels, _ = read_label(pair / "labels" / "hippocampus_321.nii.gz")
    segmenter = Segmenter(HIPPOCAMPUS_MODEL, device="cpu")
    ref = labels_to_classes(labels, segmenter.config.preprocessing, "hippocampus_321")
    recon = autoencoded_classes(segmenter, image, ref)
    dice = dice_per_class(recon, ref, segmenter.config.num_classes)[1:]
    # a working label autoencoder keeps most of both classes (0.84 / 0.83 when written)
    assert dice.min() > 0.75
    if HIPPOCAMPUS_BASELINE.is_file():
        with pytest.raises(InputError, match="no label autoencoder"):
            autoencoded_classes(Segmenter(HIPPOCAMPUS_BASELINE, device="cpu"), image, ref)
