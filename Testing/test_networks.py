"""The four networks: shapes for 2D/3D and any number of classes, the
standardized label latent, configuration saved and restored."""

import json

import pytest
import torch

from ldseg.config import ModelConfig, NetworkConfig, Preprocessing
from ldseg.diffusion.schedule import NoiseSchedule
from ldseg.nn.ldseg_net import LDSegNet
from ldseg.training.presets import network_preset


def _config(dims, channels, grid, classes, **net):
    return ModelConfig(
        preprocessing=Preprocessing(dims=dims, channels=channels, grid=grid, label_values=tuple(range(classes))),
        class_names=tuple(f"c{i}" for i in range(classes)),
        network=network_preset("tiny", **net),
    )


@pytest.mark.parametrize(
    "dims,channels,grid,classes",
    [(2, 3, (32, 48), 2), (2, 1, (16, 16), 5), (3, 1, (16, 24, 8), 3), (3, 2, (8, 8, 8), 4)],
)
def test_shapes_2d_3d_multiclass(dims, channels, grid, classes):
    config = _config(dims, channels, grid, classes, image_attention=dims == 2)
    model = LDSegNet(config)
    b = 2
    image = torch.randn(b, channels, *grid)
    labels = torch.randint(0, classes, (b, *grid))
    latent = (b, config.network.latent_channels, *config.latent_grid)
    z0 = model.encode_label(labels)
    assert z0.shape == latent
    z_i = model.encode_image(image)
    assert z_i.shape == (b, config.network.image_latent_channels, *config.latent_grid)
    t = torch.tensor([1, 1000])
    eps = model.denoise(torch.randn(latent), z_i, t)
    assert eps.shape == latent
    assert model.decode(z0, image).shape == (b, classes, *grid)
    logits, eps_hat, z0b, z_t, x0, coarse, terminal = model(image, labels, torch.randn(latent), t, NoiseSchedule())
    assert logits.shape == coarse.shape == (b, classes, *grid) and eps_hat.shape == latent and x0.shape == latent
    assert terminal is None  # no terminal noise given: no energy-score samples
    *_, terminal = model(image, labels, torch.randn(latent), t, NoiseSchedule(), True, torch.randn(2, *latent))
    assert terminal.shape == (2, *latent)


def test_label_latent_is_standardized_per_sample():
    model = LDSegNet(_config(2, 1, (32, 32), 3))
    z0 = model.encode_label(torch.randint(0, 3, (3, 32, 32)))
    flat = z0.flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_image_attention_is_switchable():
    with_attn = LDSegNet(_config(2, 1, (16, 16), 2, image_attention=True))
    without = LDSegNet(_config(2, 1, (16, 16), 2, image_attention=False))

    def names(m):
        return [n for n, _ in m.image_encoder.named_modules() if n.endswith("attn")]

    assert len(names(with_attn)) == NetworkConfig().image_attention_levels and names(without) == []


def test_denoiser_accepts_latent_grids_that_are_not_multiples_of_its_depth():
    config = _config(3, 1, (24, 40, 8), 2, image_attention=False)  # latent 6 x 10 x 2
    model = LDSegNet(config)
    latent = (1, config.network.latent_channels, *config.latent_grid)
    out = model.denoise(
        torch.randn(latent),
        torch.randn(1, config.network.image_latent_channels, *config.latent_grid),
        torch.tensor([10]),
    )
    assert out.shape == latent


def test_config_round_trips_through_json_and_validates_the_grid():
    config = _config(3, 1, (16, 24, 8), 3)
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.to_dict() == config.to_dict()
    assert isinstance(again.network, NetworkConfig) and again.network.encoder_widths == (8, 16, 32)
    bad = config.to_dict()
    bad["preprocessing"]["grid"] = [15, 24, 8]
    with pytest.raises(ValueError, match="multiple of 4"):
        ModelConfig.from_dict(bad)


def test_fewer_downsamplings_give_a_finer_latent():
    """--downsamplings keeps the size's finest levels: latent = grid / 2^N."""
    full = network_preset("small")
    finer = network_preset("small", 2)
    assert finer.encoder_widths == full.encoder_widths[:3]
    assert finer.decoder_widths == full.decoder_widths[-3:]
    config = ModelConfig(
        preprocessing=Preprocessing(dims=3, channels=1, grid=(16, 24, 8), label_values=(0, 1)),
        class_names=("bg", "fg"),
        network=finer,
    )
    assert config.latent_grid == (4, 6, 2)
    model = LDSegNet(config)
    assert model.encode_label(torch.randint(0, 2, (1, 16, 24, 8))).shape == (1, 2, 4, 6, 2)
    assert model.decode(torch.randn(1, 2, 4, 6, 2), torch.randn(1, 1, 16, 24, 8)).shape == (1, 2, 16, 24, 8)
    with pytest.raises(Exception, match="down-samplings"):
        network_preset("small", 4)


@pytest.mark.parametrize("label_encoder,image_encoder", [("downsample", "learned"), ("learned", "downsample")])
def test_table_v_ablations_replace_an_encoder_by_plain_down_sampling(label_encoder, image_encoder):
    """The paper's LDSeg(ld) / LDSeg(id): the latent is the label (image) at the
    centre of each 2**D block, no learned weights; the rest trains as before."""
    dims, channels, grid, classes = 2, 3, (32, 48), 3
    config = _config(dims, channels, grid, classes, label_encoder=label_encoder, image_encoder=image_encoder)
    config = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))  # the choice is in the model file
    model = LDSegNet(config)
    image, labels = torch.rand(2, channels, *grid), torch.randint(0, classes, (2, *grid))
    f = 2**config.network.downsamplings
    centres = (slice(None), slice(f // 2, None, f), slice(f // 2, None, f))
    if label_encoder == "downsample":
        z0 = model.encode_label(labels)
        expected = labels[centres].float() - 1.0  # classes 0, 1, 2 -> -1, 0, +1
        assert all(torch.equal(z0[:, c], expected) for c in range(config.network.latent_channels))
        assert not list(model.label_encoder.parameters())
    else:
        z_i = model.encode_image(image)
        assert z_i.shape == (2, channels, *config.latent_grid)  # the image's own channels condition the denoiser
        flat_image = image[(slice(None), slice(None)) + centres[1:]].flatten(1)
        flat = z_i.flatten(1)
        torch.testing.assert_close(
            flat,
            (flat_image - flat_image.mean(1, keepdim=True)) / flat_image.std(1, unbiased=False, keepdim=True),
            rtol=1e-3,
            atol=1e-4,  # LayerNorm's eps
        )
        assert not list(model.image_encoder.parameters())
    latent = (2, config.network.latent_channels, *config.latent_grid)
    logits, *_ = model(image, labels, torch.randn(latent), torch.tensor([3, 700]), NoiseSchedule())
    logits.logsumexp(1).mean().backward()  # every learned part still gets a gradient
    assert all(p.grad is not None for p in model.denoiser.parameters() if p.requires_grad)


def test_the_memory_estimate_of_decoding_counts_a_wide_refiner():
    """Sample batches are sized from this estimate: a refiner wider than the
    decoder's last levels must make each sample count for more."""
    from ldseg.inference.sampling import decoder_bytes_per_sample

    plain = LDSegNet(_config(2, 1, (32, 32), 2, refine_width=0))
    wide = LDSegNet(_config(2, 1, (32, 32), 2, refine_width=4 * max(plain.config.network.decoder_widths)))
    assert decoder_bytes_per_sample(wide) > decoder_bytes_per_sample(plain)
