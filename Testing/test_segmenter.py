"""Segmenter: results on the input's own grid and geometry; uncertainty."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldseg.errors import InputError
from ldseg.inference.sampling import SamplingOptions, decode_samples, sample_noise, sample_probabilities
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import Geometry, read_image

SAMPLES = ["brain1_image.nrrd", "breast1_image.nrrd", "prostate_phantom_subvolume.nrrd"]


def test_sample_volumes_have_anisotropic_spacing_and_oblique_direction(shared_data):
    geos = [read_image(shared_data / "samples" / n).geometry for n in SAMPLES]
    assert any(len(set(np.round(g.spacing, 4))) > 1 for g in geos)
    assert any(not np.allclose(g.direction, np.eye(3).ravel()) for g in geos)


@pytest.mark.parametrize("name", SAMPLES)
def test_result_has_the_input_grid_and_geometry(shared_data, tiny_3d_model, name):
    path = shared_data / "samples" / name
    ref = sitk.ReadImage(str(path))
    result = Segmenter(tiny_3d_model, device="cpu").segment(path, samples=2)
    size = tuple(reversed(ref.GetSize()))
    assert result.labels.shape == size and result.sd.shape == size
    assert result.probabilities.shape == (2, *size)
    assert result.geometry.spacing == ref.GetSpacing()
    assert result.geometry.origin == ref.GetOrigin()
    assert result.geometry.direction == ref.GetDirection()
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-5)
    assert set(np.unique(result.labels)) <= {0, 1}


def test_array_input_with_geometry(tiny_3d_model):
    geometry = Geometry(
        spacing=(0.7, 0.7, 3.0), origin=(10.0, -5.0, 2.0), direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    )
    array = np.random.default_rng(0).normal(size=(9, 20, 30)).astype(np.float32)
    result = Segmenter(tiny_3d_model, device="cpu").segment(array, geometry, samples=1)
    assert result.labels.shape == (9, 20, 30) and result.geometry == geometry
    with pytest.raises(InputError, match="2-D array"):
        Segmenter(tiny_3d_model, device="cpu").segment(array[0], geometry)


def test_sd_is_exactly_zero_for_one_sample(shared_data, tiny_3d_model):
    result = Segmenter(tiny_3d_model, device="cpu").segment(shared_data / "samples" / SAMPLES[1], samples=1)
    assert not result.sd.any()


def _latent(segmenter, image):
    """(image latent, prepared image): the decoder's refiner reads the image too."""
    from ldseg.data.preprocess import prepare_image

    x = prepare_image(image, segmenter.config.preprocessing)[None]
    with torch.inference_mode():
        return segmenter.model.encode_image(x), x


def test_sd_is_nonzero_exactly_where_samples_disagree(shared_data, tiny_3d_model):
    seg = Segmenter(tiny_3d_model, device="cpu", precision="fp32")
    z_i, x = _latent(seg, read_image(shared_data / "samples" / SAMPLES[1]))
    opts = SamplingOptions(samples=6, seed=3, max_batch=4)  # two batches: 4 + 2
    mean, sd = sample_probabilities(seg.model, z_i, seg.schedule, opts, image=x)
    # each sample on its own, from its own noise
    shape = (seg.config.network.latent_channels, *z_i.shape[2:])
    each = torch.cat(
        [
            decode_samples(seg.model, z_i, sample_noise(opts, i, shape)[None], seg.schedule, opts, image=x)
            for i in range(6)
        ]
    )
    torch.testing.assert_close(mean, each.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(sd, each.std(0, unbiased=False), atol=1e-5, rtol=0)
    disagree = (each.argmax(1) != each.argmax(1)[0]).any(0)
    assert disagree.any(), "an untrained model's samples should differ somewhere"
    assert (sd.amax(0)[disagree] > 0).all()


def test_mean_of_equal_samples_is_the_single_sample(shared_data, tiny_3d_model):
    seg = Segmenter(tiny_3d_model, device="cpu", precision="fp32")
    z_i, x = _latent(seg, read_image(shared_data / "samples" / SAMPLES[1]))
    shape = (seg.config.network.latent_channels, *z_i.shape[2:])
    z_T = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    one, sd1 = sample_probabilities(
        seg.model, z_i, seg.schedule, SamplingOptions(samples=1), noise=lambda i: z_T, image=x
    )
    many, sd8 = sample_probabilities(
        seg.model, z_i, seg.schedule, SamplingOptions(samples=8, max_batch=3), noise=lambda i: z_T, image=x
    )
    # equal up to float32 rounding (batched convolutions sum in another order)
    torch.testing.assert_close(many, one, atol=1e-5, rtol=0)
    assert not sd1.any() and sd8.abs().max() < 1e-5


def test_samples_do_not_depend_on_the_batch_size(shared_data, tiny_3d_model):
    path = shared_data / "samples" / SAMPLES[1]
    a = Segmenter(tiny_3d_model, device="cpu", precision="fp32", memory_budget=1).segment(path, samples=4, seed=7)
    b = Segmenter(tiny_3d_model, device="cpu", precision="fp32").segment(path, samples=4, seed=7)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    np.testing.assert_allclose(a.sd, b.sd, atol=1e-5)
