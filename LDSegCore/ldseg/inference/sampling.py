"""From an image latent to class probabilities: N samples of the diffusion
sampler, decoded and reduced to their mean and per-voxel SD (and, for the
deterministic Res-UNet baseline, see :mod:`ldseg.architectures.resunet`).

Shared by the trainer (validation) and the Segmenter. Samples are processed
in batches under a memory bound, the image latent is computed once by the
caller, and the mean/SD are accumulated chunk by chunk (Chan's merge) so N
can be large without holding every sample. Nothing inside the sampling loop
reads a tensor back to the host, so on a GPU the steps queue up without
synchronizing. ``model`` may be an LDSegNet or anything with its
``config``/``denoise``/``decode`` (e.g. :class:`ldseg.inference.fastpath.InferenceNetworks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..config import DEFAULT_MEMORY_BUDGET_GB
from ..device import autocast, inference_policy, to_device_async
from ..diffusion.samplers import sample
from ..diffusion.schedule import NoiseSchedule
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
    memory_budget: float = DEFAULT_MEMORY_BUDGET_GB * 1e9  # bytes for one batch of decoder activations
    denoiser_bf16: bool | None = None  # None: where it pays (ldseg.device.inference_policy)


def decoder_bytes_per_sample(model: LDSegNet) -> int:
    """Rough peak activation memory of decoding one sample on the full grid."""
    voxels = 1
    for g in model.config.preprocessing.grid:
        voxels *= g
    net = model.config.network
    width = max(net.decoder_widths[-2:])
    if net.refine_width:  # the refiner's full-grid features beside the coarse logits (its mix block's input)
        width = max(width, net.refine_width + model.config.num_classes)
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
    policy = inference_policy(z_i.device, options.bf16, z_i[0, 0].numel(), options.denoiser_bf16)
    start_state = generator.get_state() if generator is not None else None

    def run(in_bf16: bool) -> torch.Tensor:
        with autocast(z_i.device, in_bf16):
            return sample(
                lambda z, t: model.denoise(z, cond, t),
                z_T,
                schedule,
                sampler=options.sampler,
                steps=options.steps,
                eta=options.eta,
                restandardize=options.restandardize,
                generator=generator,
            )

    z0 = run(policy.denoiser)
    if policy.retry_fp32 and not bool(torch.isfinite(z0).all()):
        # checked once per batch, never inside the step loop; the same noise again
        if generator is not None:
            generator.set_state(start_state)
        z0 = run(False)
    return z0


@torch.inference_mode()
def decode_latents(
    model: LDSegNet, z0: torch.Tensor, options: SamplingOptions, image: torch.Tensor | None = None
) -> torch.Tensor:
    """Class probabilities (b, C, *grid) of clean latents (b, ...); ``image``
    (1, C, *grid) is needed by a model whose decoder refines with it."""
    with autocast(z0.device, options.bf16):
        return model.decode(z0, image).float().softmax(dim=1)


@torch.inference_mode()
def decode_samples(
    model: LDSegNet,
    z_i: torch.Tensor,
    z_T: torch.Tensor,
    schedule: NoiseSchedule,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
    image: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class probabilities (b, C, *grid) of the samples started from z_T (b, ...)."""
    return decode_latents(model, denoise_samples(model, z_i, z_T, schedule, options, generator), options, image)


@torch.inference_mode()
def sample_probabilities(
    model: LDSegNet,
    z_i: torch.Tensor,
    schedule: NoiseSchedule,
    options: SamplingOptions,
    on_progress: Callable[[float], None] | None = None,
    noise: Callable[[int], torch.Tensor] | None = None,
    image: torch.Tensor | None = None,
    on_batch: Callable[[torch.Tensor], None] | None = None,
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
        probs = decode_samples(model, z_i, z_T, schedule, options, generator, image)
        if on_batch is not None:  # e.g. to keep every sample's segmentation
            on_batch(probs)
        count, mean, m2 = _merge(count, mean, m2, probs.double())
        done += b
        if on_progress is not None:
            on_progress(done / n)
    sd = (m2 / count).clamp_min(0).sqrt() if count > 1 else torch.zeros_like(mean)
    return mean.float(), sd.float()


def _merge(count, mean, m2, chunk: torch.Tensor):
    """Merge a chunk of samples (b, C, *grid) into running mean and M2."""
    c_mean = chunk.mean(dim=0)
    return merge_moments(count, mean, m2, chunk.shape[0], c_mean, ((chunk - c_mean) ** 2).sum(dim=0))


def merge_moments(count, mean, m2, b, b_mean, b_m2):
    """Chan's merge of a running (count, mean, M2) with a group's (b, mean, M2)."""
    if count == 0:
        return b, b_mean, b_m2
    total = count + b
    delta = b_mean - mean
    return total, mean + delta * (b / total), m2 + b_m2 + delta**2 * (count * b / total)
