"""The measurements, each run inside one fresh worker process.

- ``machine``: the achieved GFLOP/s of a plain convolution (the yardstick).
- ``config``: one model size: time per image by component for every K, the
  real Segmenter path for every N, the decoder's convolution FLOPs, training
  iterations per second, and the same for the Res-UNet of matching size.
- ``large_input``: one large image through the Segmenter, for its peak memory.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ldseg.data.preprocess import prepare_image
from ldseg.device import autocast, resolve_device
from ldseg.inference.sampling import SamplingOptions, decode_latents, denoise_samples, sample_noise
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import Geometry, MedicalImage
from ldseg.io.modelheader import read_config
from ldseg.nn.ldseg_net import count_parameters

from .flops import conv_throughput, count_flops
from .measure import PeakMeter, current_rss_mb, linear_fit, repeat_timing, timed
from .models import model_files


def run_job(job: dict) -> dict:
    kind = job["kind"]
    if kind == "machine":
        return machine_job(job)
    if kind == "config":
        return config_job(job)
    if kind == "large_input":
        return large_input_job(job)
    raise ValueError(f"unknown job kind {kind!r}")


def _guarded(results: dict, key: str, fn: Callable[[], Any]) -> None:
    """Run one part; an error is recorded (and the other parts still run)."""
    try:
        results[key] = fn()
    except Exception as e:  # a benchmark reports failures instead of stopping
        results.setdefault("errors", {})[key] = f"{type(e).__name__}: {e}".strip()[:500]
        traceback.print_exc()


# -- machine ---------------------------------------------------------------------


def machine_job(job: dict) -> dict:
    device = resolve_device(job["device"])
    plan = job["plan"]
    out: dict[str, Any] = {}
    for dims, key in ((2, "conv2d"), (3, "conv3d")):
        spec = plan[key]
        _guarded(
            out,
            key,
            lambda: conv_throughput(
                dims, tuple(spec["shape"]), spec["channels"], device, cap_s=plan["cap_s"], max_repeats=plan["repeats"]
            ),
        )
    return out


# -- one configuration -----------------------------------------------------------------


def synthetic_image(channels: int, shape, seed: int = 0) -> np.ndarray:
    """A smooth random image (C, *shape) in [0, 1]: content does not change
    the cost, but a constant image would be refused."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((channels, *[max(2, s // 8) for s in shape]), dtype=np.float32)
    tensor = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None], size=tuple(shape), mode="bilinear" if len(shape) == 2 else "trilinear"
    )
    return tensor[0].numpy()


def config_job(job: dict) -> dict:
    device = resolve_device(job["device"])
    plan = job["plan"]
    cfg = job["config"]
    out: dict[str, Any] = {"name": cfg["name"], "model": cfg["model"]}
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ldseg-bench-") as tmp:
        path, twin, config = model_files(cfg["model"], Path(tmp))
        pre = config.preprocessing
        out.update(
            dims=config.dims,
            grid=list(pre.grid),
            latent_grid=list(config.latent_grid),
            channels=pre.channels,
            classes=config.num_classes,
        )
        image = synthetic_image(pre.channels, pre.grid)

        def segmenter(model_path):
            return Segmenter(
                model_path,
                device=job["device"],
                precision=job["precision"],
                compile=job["compile"],
                on_warning=warnings.append,
            )

        # inference first: its peaks must not include training's leftovers
        _guarded(out, "inference", lambda: ldseg_inference(segmenter(path), image, plan, device))
        _guarded(out, "resunet", lambda: resunet_inference(segmenter(twin), image, plan, device))
        _guarded(
            out,
            "training",
            lambda: training_speed(
                config, device, job["precision"], cfg["train_batch"], cfg["train_steps"], Path(tmp) / "train"
            ),
        )
        twin_config = read_config(twin)
        _guarded(
            out,
            "resunet_training",
            lambda: training_speed(
                twin_config,
                device,
                job["precision"],
                cfg["train_batch"],
                cfg["train_steps"],
                Path(tmp) / "train-resunet",
            ),
        )
    if warnings:
        out["warnings"] = warnings
    return out


def ldseg_inference(seg: Segmenter, image: np.ndarray, plan: dict, device: torch.device) -> dict:
    out: dict[str, Any] = {
        "parameters": count_parameters(seg.model),
        "precision": seg.precision,
        "channels_last": seg.channels_last,
        "device": str(seg.device),
    }
    # warm-up: first calls allocate, pick kernels (and compile, with --compile)
    out["first_call_s"] = round(timed(lambda: seg.segment(image, samples=1), device)[0], 4)
    out["compiled"] = bool(seg.networks.compiled)
    out.update(step_breakdown(seg, image, plan, device))
    k2 = next((row for row in out["steps"] if row["K"] == 2), out["steps"][0])
    out["uncertainty"] = uncertainty_sweep(seg, image, plan, device, per_sample_s=k2["denoiser_s"] + k2["decoder_s"])
    return out


def step_breakdown(seg: Segmenter, image: np.ndarray, plan: dict, device: torch.device) -> dict:
    """Seconds per image (one sample) for each K: image encoder, denoiser
    (all K steps), decoder; exactly the calls the Segmenter makes."""
    cap, repeats = plan["cap_s"], plan["repeats"]
    nets, config = seg.networks, seg.config
    medical = MedicalImage(array=image, geometry=Geometry.identity(config.dims), source=None)
    x = prepare_image(medical, config.preprocessing)[None].to(device)

    def encode():
        with torch.inference_mode(), autocast(device, seg.bf16):
            return nets.encode_image(x).float()

    z_i = encode()
    options = SamplingOptions(samples=1, steps=2, bf16=seg.bf16, restandardize=config.diffusion.restandardize)
    z_T = sample_noise(options, 0, (config.network.latent_channels, *z_i.shape[2:]))[None].to(device)
    encoder_s, _ = repeat_timing(encode, device, cap_s=cap, max_repeats=repeats)
    z0 = denoise_samples(nets, z_i, z_T, seg.schedule, options)

    def decode():
        return decode_latents(nets, z0, options, x)

    decoder_s, _ = repeat_timing(decode, device, cap_s=cap, max_repeats=repeats)
    with torch.inference_mode():
        decoder_flops = count_flops(seg.model.decoder, lambda: seg.model.decode(z0, x))

    rows, measured_k, measured_s = [], [], []
    for k in plan["steps"]:
        extrapolated, run_k = False, k
        if measured_k:
            per_step = measured_s[-1] / measured_k[-1]
            if per_step * k > cap:  # run fewer steps, scale up
                run_k = int(min(k, max(measured_k[-1], cap // max(per_step, 1e-9))))
                extrapolated = run_k < k
        options.steps = run_k
        denoiser_s, _ = repeat_timing(
            lambda: denoise_samples(nets, z_i, z_T, seg.schedule, options),
            device,
            cap_s=cap,
            max_repeats=repeats if run_k <= 10 else 1,
        )
        measured_k.append(run_k)
        measured_s.append(denoiser_s)
        if extrapolated:
            denoiser_s = denoiser_s * k / run_k
        rows.append(
            {
                "K": k,
                "encoder_s": _r(encoder_s),
                "denoiser_s": _r(denoiser_s),
                "decoder_s": _r(decoder_s),
                "total_s": _r(encoder_s + denoiser_s + decoder_s),
                "measured_steps": run_k,
                "extrapolated": extrapolated,
            }
        )
    return {
        "steps": rows,
        "decoder_flops": decoder_flops,
        "decoder_s": _r(decoder_s),
        "decoder_gflops": round(decoder_flops / decoder_s / 1e9, 2),
    }


def uncertainty_sweep(
    seg: Segmenter, image: np.ndarray, plan: dict, device: torch.device, per_sample_s: float
) -> list[dict]:
    """The Segmenter with N samples (image encoded once, samples batched under
    the memory budget): seconds per image and peak memory for each N. Past
    the time cap, N is extrapolated along the line through the last two
    measured N (or from one N with ``per_sample_s``, the K = 2 sample cost)."""
    cap, repeats = plan["cap_s"], plan["repeats"]
    rows, xs, ys = [], [], []
    for n in plan["samples"]:
        if xs and linear_fit(xs, ys, per_sample_s)(n) > cap:
            rows.append(
                {
                    "N": n,
                    "seconds": _r(linear_fit(xs, ys, per_sample_s)(n)),
                    "extrapolated": True,
                    "extrapolated_from": list(xs[-2:]),
                }
            )
            continue
        holder = {}

        def run():
            holder["result"] = seg.segment(image, samples=n, seed=0)

        first_s = None
        if seg.networks.compiled:  # a new batch size may recompile: keep that out of the timing
            first_s, _ = timed(run, device)
        with PeakMeter(device) as meter:
            seconds, count = repeat_timing(run, device, cap_s=cap, max_repeats=repeats)
        xs.append(n)
        ys.append(seconds)
        split = holder["result"].seconds
        rows.append(
            {
                "N": n,
                "seconds": _r(seconds),
                "repeats": count,
                "extrapolated": False,
                "first_call_s": None if first_s is None else _r(first_s),
                "encode_s": split.get("encode"),
                "sample_s": split.get("sample"),
                "restore_s": split.get("restore"),
                **meter.result(),
            }
        )
    return rows


def resunet_inference(seg: Segmenter, image: np.ndarray, plan: dict, device: torch.device) -> dict:
    """The deterministic Res-UNet of matching size: one forward pass per image."""
    first_s, _ = timed(lambda: seg.segment(image, samples=1), device)
    with PeakMeter(device) as meter:
        seconds, count = repeat_timing(
            lambda: seg.segment(image, samples=1), device, cap_s=plan["cap_s"], max_repeats=plan["repeats"]
        )
    return {
        "parameters": count_parameters(seg.model),
        "precision": seg.precision,
        "first_call_s": _r(first_s),
        "segment_s": _r(seconds),
        "repeats": count,
        **meter.result(),
    }


def training_speed(config, device: torch.device, precision: str, batch: int, steps: int, run_dir: Path) -> dict:
    """Optimizer steps per second of the real trainer (its loss, backward,
    Adam step, EMA) on random data, timed between its per-step progress
    calls; the first step is a warm-up and not counted."""
    from ldseg.config import TrainOptions
    from ldseg.training.trainer import Trainer

    g = torch.Generator().manual_seed(0)
    pre = config.preprocessing
    item = (
        torch.rand(pre.channels, *pre.grid, generator=g),
        torch.randint(0, config.num_classes, tuple(pre.grid), generator=g),
    )
    stamps: list[float] = []

    def progress(stage, fraction, message="", **extra):
        if stage == "train" and not extra:  # the start, then one call per optimizer step
            stamps.append(time.perf_counter())

    options = TrainOptions(epochs=1, batch_size=batch, precision=precision, seed=0)
    run_dir.mkdir(parents=True, exist_ok=True)
    with PeakMeter(device) as meter:
        trainer = Trainer(config, [item] * (batch * (steps + 1)), None, options, run_dir, device, progress=progress)
        trainer.fit()
    durations = np.diff(stamps)[1:]  # drop the warm-up step
    per_step = statistics.median(durations.tolist())
    return {
        "batch_size": batch,
        "steps_timed": len(durations),
        "seconds_per_iteration": _r(per_step),
        "iterations_per_s": _r(1 / per_step),
        "images_per_s": _r(batch / per_step),
        "precision": "bf16" if trainer.bf16 else "fp32",
        **meter.result(),
    }


# -- a large input ------------------------------------------------------------------


def large_input_job(job: dict) -> dict:
    device = resolve_device(job["device"])
    spec = job["input"]
    out: dict[str, Any] = {
        "name": spec["name"],
        "input_shape": [spec["channels"], *spec["shape"]],
        "samples": spec["samples"],
    }
    with tempfile.TemporaryDirectory(prefix="ldseg-bench-") as tmp:
        path, _, config = model_files(spec["model"], Path(tmp))
        seg = Segmenter(path, device=job["device"], precision=job["precision"], compile=job["compile"])
        image = synthetic_image(spec["channels"], spec["shape"])
        out["model_grid"] = list(config.preprocessing.grid)
        out["input_mb"] = round(image.nbytes / 2**20, 1)

        def run():
            return seg.segment(image, samples=spec["samples"], seed=0)

        out["rss_before_mb"] = current_rss_mb()  # model and input already in memory
        with PeakMeter(device) as meter:
            seconds, result = timed(run, device)
        out["seconds"] = _r(seconds)
        out["timings"] = result.seconds
        out["output_mb"] = round(
            sum(a.nbytes for a in (result.probabilities, result.sd, result.classes, result.labels)) / 2**20, 1
        )
        out.update(meter.result())
        out["precision"] = seg.precision
    return out


def _r(seconds: float) -> float:
    return round(float(seconds), 5)
