"""From an image latent to class probabilities: N samples of the diffusion
sampler, decoded and reduced to their mean and per-voxel SD (and, for the
deterministic Res-UNet baseline, the one forward pass that replaces them).

Shared by the trainer (validation) and the Segmenter. Samples are processed
in batches under a memory bound, the image latent is computed once by the
caller, and the mean/SD are accumulated chunk by chunk (Chan's merge) so N
can be large without holding every sample. Nothing inside the sampling loop
reads a tensor back to the host, so on a GPU the steps queue up without
synchronizing. ``model`` may be an LDSegNet or anything with its
``config``/``predict_noise``/``decode`` (e.g. :class:`ldseg.inference.fastpath.InferenceNetworks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..device import autocast, to_device_async
from ..diffusion.schedule import NoiseSchedule, sample
from ..nn.ldseg_net import LDSegNet


@dataclass
class SamplingOptions:
    samples: int = 1
    sampler: str = "ddim"
    steps: int = 2
    eta: float = 0.0
    restandardize: bool = True
    seed: int | None = 0
    bf16: bool = False
    max_batch: int = 0  # 0: from the memory budget
    memory_budget: float = 2e9  # bytes for one batch of decoder activations
    denoiser_bf16: bool | None = None  # None: bf16 where it pays (see denoiser_uses_bf16)


#: On the CPU, bf16 makes the denoiser faster only on large latents (measured
#: on AVX-512 BF16: 2.8x at 16x16x32 voxels, equal at 64x64, slower below).
CPU_BF16_DENOISER_MIN_VOXELS = 8192


def denoiser_uses_bf16(options: SamplingOptions, device: torch.device, latent_voxels: int) -> bool:
    """bf16 autocast for the denoiser: never without ``options.bf16``; on a GPU
    always; on the CPU only for large latents (unless forced either way)."""
    if not options.bf16:
        return False
    if options.denoiser_bf16 is not None:
        return options.denoiser_bf16
    return device.type != "cpu" or latent_voxels >= CPU_BF16_DENOISER_MIN_VOXELS


def decoder_bytes_per_sample(model: LDSegNet) -> int:
    """Rough peak activation memory of decoding one sample on the full grid."""
    voxels = 1
    for g in model.config.preprocessing.grid:
        voxels *= g
    width = max(model.config.network.decoder_widths[-2:])
    return int(voxels * width * 4 * 6)


def batch_size_for(model: LDSegNet, options: SamplingOptions) -> int:
    if options.max_batch > 0:
        return min(options.max_batch, options.samples)
    return max(1, min(options.samples, int(options.memory_budget // decoder_bytes_per_sample(model))))


def sample_noise(options: SamplingOptions, index: int, shape) -> torch.Tensor:
    """z_T of sample ``index``: its own seeded stream, so a sample does not
    depend on how samples are batched (same result on any memory budget)."""
    g = torch.Generator()
    if options.seed is None:
        g.seed()
    else:
        g.manual_seed(options.seed * 1_000_003 + index)
    return torch.randn(shape, generator=g)


@torch.inference_mode()
def denoise_samples(
    model: LDSegNet,
    z_i: torch.Tensor,
    z_T: torch.Tensor,
    schedule: NoiseSchedule,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The sampler's clean latents (b, ...) from z_T (b, ...), all steps."""
    b = z_T.shape[0]
    cond = z_i.expand(b, *z_i.shape[1:])
    bf16 = denoiser_uses_bf16(options, z_i.device, z_i[0, 0].numel())
    start_state = generator.get_state() if generator is not None else None

    def run(in_bf16: bool) -> torch.Tensor:
        with autocast(z_i.device, in_bf16):
            return sample(
                lambda z, t: model.predict_noise(z, cond, t),
                z_T,
                schedule,
                sampler=options.sampler,
                steps=options.steps,
                eta=options.eta,
                restandardize=options.restandardize,
                generator=generator,
            )

    z0 = run(bf16)
    if bf16 and z_i.device.type == "cpu" and not bool(torch.isfinite(z0).all()):
        # oneDNN's bf16 3D convolutions have given inf/NaN on tiny inputs (seen
        # in training): redo this batch in fp32 from the same noise. Checked
        # once per batch, never inside the step loop.
        if generator is not None:
            generator.set_state(start_state)
        z0 = run(False)
    return z0


@torch.inference_mode()
def decode_latents(model: LDSegNet, z0: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
    """Class probabilities (b, C, *grid) of clean latents (b, ...)."""
    with autocast(z0.device, options.bf16):
        return model.decode(z0).float().softmax(dim=1)


@torch.inference_mode()
def decode_samples(
    model: LDSegNet,
    z_i: torch.Tensor,
    z_T: torch.Tensor,
    schedule: NoiseSchedule,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Class probabilities (b, C, *grid) of the samples started from z_T (b, ...)."""
    return decode_latents(model, denoise_samples(model, z_i, z_T, schedule, options, generator), options)


@torch.inference_mode()
def sample_probabilities(
    model: LDSegNet,
    z_i: torch.Tensor,
    schedule: NoiseSchedule,
    options: SamplingOptions,
    on_progress: Callable[[float], None] | None = None,
    noise: Callable[[int], torch.Tensor] | None = None,
):
    """z_i: image latent of ONE image, shape (1, Ci, *latent).

    Returns (mean, sd): mean class probabilities (C, *grid) and their per-class
    standard deviation over the samples (C, *grid); sd is zero for N = 1.
    ``noise(i)`` gives sample i's z_T (default: :func:`sample_noise`).
    """
    device = z_i.device
    n = options.samples
    batch = batch_size_for(model, options)
    latent_shape = (model.config.network.latent_channels, *z_i.shape[2:])
    noise = noise or (lambda i: sample_noise(options, i, latent_shape))
    # Stochastic steps (DDPM, DDIM eta > 0) draw from one seeded stream.
    generator = torch.Generator().manual_seed(options.seed if options.seed is not None else 0)
    count, mean, m2 = 0, None, None
    done = 0
    while done < n:
        b = min(batch, n - done)
        z_T = to_device_async(torch.stack([noise(done + i) for i in range(b)]), device)
        probs = decode_samples(model, z_i, z_T, schedule, options, generator)
        count, mean, m2 = _merge(count, mean, m2, probs.double())
        done += b
        if on_progress is not None:
            on_progress(done / n)
    sd = (m2 / count).clamp_min(0).sqrt() if count > 1 else torch.zeros_like(mean)
    return mean.float(), sd.float()


@torch.inference_mode()
def forward_probabilities(model: torch.nn.Module, image: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """Class probabilities (C, *grid) of a deterministic network (the Res-UNet
    baseline) for ONE prepared image (1, C, *grid).

    One forward pass: any number of "samples" would all be this same map, so
    callers report an SD of exactly zero instead of running it N times.
    """
    with autocast(image.device, bf16):
        return model(image).float().softmax(dim=1)[0]


def _merge(count, mean, m2, chunk: torch.Tensor):
    """Merge a chunk of samples (b, C, *grid) into running mean and M2."""
    b = chunk.shape[0]
    c_mean = chunk.mean(dim=0)
    c_m2 = ((chunk - c_mean) ** 2).sum(dim=0)
    if count == 0:
        return b, c_mean, c_m2
    total = count + b
    delta = c_mean - mean
    mean = mean + delta * (b / total)
    m2 = m2 + c_m2 + delta**2 * (count * b / total)
    return total, mean, m2
