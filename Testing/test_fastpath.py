"""Inference fast paths: same results as plain fp32 within noise, chunked
restoring equal to whole-volume restoring, precision switches, compile fallback."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ldseg.cli.main import main
from ldseg.config import Preprocessing
from ldseg.data.preprocess import labels_to_classes, normalize_intensity, restore_probabilities
from ldseg.device import inference_policy, training_policy
from ldseg.diffusion.samplers import sample
from ldseg.diffusion.schedule import NoiseSchedule
from ldseg.inference.fastpath import CompiledOrEager, wants_channels_last
from ldseg.inference.restore import restore_result, slab_rows
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import read_image, read_label
from ldseg.nn.layers import SelfAttention


def _volume(shape, seed=0):
    """A smooth random volume (an untrained model gives structured output on it)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 1, *[max(2, s // 4) for s in shape]), dtype=np.float32))
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(coarse, size=shape, mode=mode)[0, 0].numpy()


# -- fast path against fp32 ------------------------------------------------------------


@pytest.mark.parametrize("fixture, shape", [("tiny_3d_model", (20, 30, 26)), ("tiny_2d_rgb_model", (3, 50, 40))])
def test_channels_last_bf16_matches_fp32_on_a_tiny_model(request, fixture, shape):
    model = request.getfixturevalue(fixture)
    fast = Segmenter(model, device="cpu", precision="bf16", channels_last=True)
    plain = Segmenter(model, device="cpu", precision="fp32", channels_last=False)
    assert fast.bf16 and fast.channels_last and not plain.bf16 and not plain.channels_last
    fmt = torch.channels_last if fast.config.dims == 2 else torch.channels_last_3d
    first_conv = fast.model.decoder.body[0].weight
    assert first_conv.is_contiguous(memory_format=fmt)  # the fast path is really on
    image = _volume(shape[1:]) if fast.config.dims == 2 else _volume(shape)
    if fast.config.dims == 2:
        image = np.stack([image, image**2, 1 - image])
    a = fast.segment(image, samples=4, seed=1)
    b = plain.segment(image, samples=4, seed=1)
    assert a.precision == "bf16" and b.precision == "fp32"
    diff = np.abs(a.probabilities - b.probabilities)
    assert diff.mean() < 0.01 and diff.max() < 0.1
    margin = np.abs(np.diff(np.sort(b.probabilities, axis=0)[-2:], axis=0))[0]
    clear = margin > 0.02  # not a near-tie in fp32
    assert clear.mean() > 0.3
    assert (a.classes[clear] == b.classes[clear]).mean() > 0.99
    assert np.corrcoef(a.sd.ravel(), b.sd.ravel())[0, 1] > 0.9


def test_fast_path_matches_fp32_on_the_shipped_model(shared_data):
    """The trained hippocampus model on a held-out test case: labels and SD
    maps of the fast path and of plain fp32 agree."""
    path = shared_data / "hippocampus" / "images" / "hippocampus_321.nii.gz"
    image = read_image(path)
    fast = Segmenter("hippocampus", device="cpu", precision="bf16")
    plain = Segmenter("hippocampus", device="cpu", precision="fp32", channels_last=False)
    a = fast.segment(image, samples=4, seed=0)
    b = plain.segment(image, samples=4, seed=0)
    assert (a.classes == b.classes).mean() > 0.995
    assert np.corrcoef(a.sd.ravel(), b.sd.ravel())[0, 1] > 0.95
    labels, _ = read_label(shared_data / "hippocampus" / "labels" / "hippocampus_321.nii.gz")
    ref = labels_to_classes(labels, fast.config.preprocessing, "hippocampus_321")
    for c in (1, 2):
        dice = [2 * np.sum((r.classes == c) & (ref == c)) / (np.sum(r.classes == c) + np.sum(ref == c)) for r in (a, b)]
        assert abs(dice[0] - dice[1]) < 0.01 and min(dice) > 0.6


def test_fused_attention_equals_multihead_attention():
    torch.manual_seed(0)
    attention = SelfAttention(32, heads=4).eval()
    x = torch.randn(2, 32, 6, 5, 4)
    with torch.no_grad():
        fused = attention(x)  # no gradients: scaled_dot_product_attention
    reference = attention(x)  # gradients on: nn.MultiheadAttention
    torch.testing.assert_close(fused, reference.detach(), atol=1e-5, rtol=1e-5)


# -- precision switches ------------------------------------------------------------------


def _conv_output_dtypes(segmenter, image):
    dtypes = set()
    convs = [m for m in segmenter.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    handles = [m.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype)) for m in convs]
    try:
        result = segmenter.segment(image, samples=2)
    finally:
        for h in handles:
            h.remove()
    return dtypes, result


def test_precision_fp32_forces_fp32_everywhere(tiny_3d_model):
    image = _volume((16, 24, 24))
    dtypes, result = _conv_output_dtypes(Segmenter(tiny_3d_model, device="cpu", precision="fp32"), image)
    assert dtypes == {torch.float32} and result.precision == "fp32"
    dtypes, result = _conv_output_dtypes(Segmenter(tiny_3d_model, device="cpu", precision="bf16"), image)
    assert torch.bfloat16 in dtypes and result.precision == "bf16"


def test_segment_command_records_forced_fp32(shared_data, tiny_3d_model, tmp_path):
    src = shared_data / "samples" / "breast1_image.nrrd"
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
                "2",
                "--progress",
                "none",
                "--device",
                "cpu",
                "--precision",
                "fp32",
                "--memory-budget",
                "0.001",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "breast1_image_result.json").read_text())
    assert manifest["precision"] == "fp32"


def test_denoiser_precision_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not inference_policy(cuda, False, 10**6).denoiser  # fp32 forced: never bf16
    assert inference_policy(cuda, True, 8).denoiser
    assert not inference_policy(cpu, True, 5 * 7 * 5).denoiser  # tiny latent: fp32 is faster
    big = inference_policy(cpu, True, 16 * 16 * 32)
    assert big.denoiser and big.retry_fp32  # a non-finite CPU bf16 batch is redone in fp32
    assert not inference_policy(cpu, True, 10**6, denoiser=False).denoiser
    # training: the CPU denoiser stays fp32 (oneDNN's bf16 Conv3d weight gradient can be inf/NaN)
    assert training_policy(cpu, "bf16") == type(big)(bf16=True, denoiser=False)
    assert training_policy(cpu, "fp32").bf16 is False
    assert wants_channels_last(3, bf16=False) is False
    assert wants_channels_last(3, bf16=True) is True and wants_channels_last(2, bf16=False) is True
    assert wants_channels_last(2, bf16=True, setting=False) is False


# -- chunked restoring -------------------------------------------------------------------


@pytest.mark.parametrize(
    "grid, shape", [((6, 8, 5), (13, 31, 9)), ((10, 10, 10), (4, 17, 3)), ((16, 12), (101, 37)), ((8, 8), (8, 8))]
)
def test_chunked_restore_equals_unchunked_restore(grid, shape):
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(3, *grid, generator=g)
    mean /= mean.sum(0)
    mean[:, 0] = 0  # a zero-probability slice: uniform after restoring
    sd = torch.rand(3, *grid, generator=g) * 0.2
    # the whole-volume path (what the Segmenter did before slabs)
    probs = restore_probabilities(mean, shape)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    sd_map = F.interpolate(sd.amax(0)[None, None], size=shape, mode=mode, align_corners=False)[0, 0].clamp_min(0)
    assert slab_rows(shape, 4 * 10 * 2, budget=1) == 1  # one row per slab at a tiny budget
    for budget in (1, 1e9):
        restored = restore_result(mean, sd, shape, budget)
        np.testing.assert_allclose(restored.probabilities, probs.numpy(), atol=1e-6)
        np.testing.assert_allclose(restored.sd, sd_map.numpy(), atol=1e-6)
        top2 = np.sort(probs.numpy(), axis=0)[-2:]
        clear = top2[1] - top2[0] > 1e-5
        np.testing.assert_array_equal(restored.classes[clear], probs.argmax(0).numpy()[clear])
    assert not restore_result(mean, None, shape).sd.any()  # one sample: SD exactly zero


def test_segmenter_results_do_not_depend_on_the_restore_budget(tiny_2d_rgb_model):
    image = np.stack([_volume((300, 170), seed=s) for s in range(3)])
    whole = Segmenter(tiny_2d_rgb_model, device="cpu", precision="fp32").segment(image, samples=3)
    slabs = Segmenter(tiny_2d_rgb_model, device="cpu", precision="fp32", restore_budget=1).segment(image, samples=3)
    np.testing.assert_array_equal(whole.classes, slabs.classes)
    np.testing.assert_allclose(whole.probabilities, slabs.probabilities, atol=1e-6)
    np.testing.assert_allclose(whole.sd, slabs.sd, atol=1e-6)
    assert whole.probabilities.shape == (2, 300, 170) and whole.sd.shape == (300, 170)


def test_memory_lean_normalization_equals_the_formula():
    rng = np.random.default_rng(0)
    array = rng.normal(100, 30, size=(3, 40, 50)).astype(np.float32)
    array[0, 0, :5] = 1000  # outliers for the percentile clip
    for method in ("minmax", "percentile", "zscore"):
        pre = Preprocessing(dims=2, channels=3, grid=(8, 8), intensity=method)
        out = normalize_intensity(array, pre)
        ref = array.astype(np.float64)
        if method == "percentile":
            ref = np.clip(ref, *np.percentile(array, pre.percentiles))
        if method == "zscore":
            ref = (ref - ref.mean()) / ref.std()
        else:
            ref = (ref - ref.min()) / (ref.max() - ref.min())
        assert out.dtype == np.float32 and not np.shares_memory(out, array)
        np.testing.assert_allclose(out, ref, atol=1e-5)


# -- torch.compile fallback ----------------------------------------------------------------


def _broken_backend(graph_module, example_inputs):
    raise RuntimeError("no compiler on this machine")


def test_compile_failure_falls_back_to_eager_with_a_warning():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1).eval()
    x = torch.randn(1, 2, 8, 8)
    wrapped = CompiledOrEager(conv, "decoder", backend=_broken_backend)
    with torch.inference_mode(), pytest.warns(RuntimeWarning, match="torch.compile of the decoder failed"):
        out = wrapped(x)
    torch.testing.assert_close(out, conv(x).detach())
    assert wrapped.compiled is None and "no compiler" in wrapped.failed
    with torch.inference_mode():
        torch.testing.assert_close(wrapped(x), conv(x))  # stays eager, no second warning


def test_segmenter_with_failing_compile_gives_the_uncompiled_result(tiny_3d_model):
    image = _volume((16, 24, 24))
    messages = []
    compiled = Segmenter(
        tiny_3d_model, device="cpu", precision="fp32", compile=_broken_backend, on_warning=messages.append
    )
    plain = Segmenter(tiny_3d_model, device="cpu", precision="fp32")
    a = compiled.segment(image, samples=2, seed=3)
    b = plain.segment(image, samples=2, seed=3)
    assert len(messages) == 1 and "denoiser failed" in messages[0] and "running it uncompiled" in messages[0]
    assert not compiled.networks.compiled
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


# -- no host synchronization inside the sampling loop (needs a GPU) ---------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 0.5), ("ddpm", 0.0), ("single", 0.0)])
def test_sampling_loop_never_waits_for_the_gpu(sampler, eta):
    device = torch.device("cuda")
    schedule = NoiseSchedule()
    z_T = torch.randn(2, 1, 8, 8, device=device)
    generator = torch.Generator().manual_seed(0)
    steps = 10 if sampler == "ddim" else 2
    if sampler == "ddpm":
        schedule = NoiseSchedule(type(schedule.config)(steps=20))
    sample(lambda z, t: z * 0.1, z_T, schedule, sampler=sampler, steps=steps, eta=eta, generator=generator)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sample(lambda z, t: z * 0.1, z_T, schedule, sampler=sampler, steps=steps, eta=eta, generator=generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
