"""Derived figures (shares, ratios) and the printed table of a benchmark run."""

from __future__ import annotations

from typing import Any


def derive(results: dict) -> None:
    """Add to every configuration the decoder's share of the machine's
    convolution throughput and the LDSeg / Res-UNet ratios (in place)."""
    machine = results.get("machine", {})
    for cfg in results.get("configs", []):
        inf = cfg.get("inference")
        if inf:
            peak = machine.get(f"conv{cfg.get('dims')}d", {}).get(inf["precision"], {}).get("gflops")
            if peak:
                inf["conv_peak_gflops"] = peak
                inf["decoder_share_of_conv_peak"] = round(inf["decoder_gflops"] / peak, 3)
        cfg["ratio_ldseg_to_resunet"] = _ratios(cfg)


def _ratios(cfg: dict) -> dict[str, float | None]:
    inf, res = cfg.get("inference") or {}, cfg.get("resunet") or {}
    train, res_train = cfg.get("training") or {}, cfg.get("resunet_training") or {}
    by_n = {row["N"]: row["seconds"] for row in inf.get("uncertainty", [])}

    def ratio(a, b):
        return round(a / b, 2) if a is not None and b else None

    return {
        "segment_N1": ratio(by_n.get(1), res.get("segment_s")),
        "segment_N10": ratio(by_n.get(10), res.get("segment_s")),
        "training_seconds_per_iteration": ratio(
            train.get("seconds_per_iteration"), res_train.get("seconds_per_iteration")
        ),
    }


# -- table ---------------------------------------------------------------------------


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _row(label: str, cells: list[str], width: int = 10) -> str:
    return f"    {label:<24}" + "".join(c.rjust(width) for c in cells)


def format_report(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"LDSeg benchmarks ({'quick' if meta['quick'] else 'full'}) on {meta['device_description']}, "
        f"torch {meta['torch']}, {meta['threads']} threads, precision {meta['precision']}"
        + (", compile" if meta["compile"] else "")
    ]
    lines += _machine_lines(results.get("machine", {}))
    for cfg in results.get("configs", []):
        lines += [""] + _config_lines(cfg)
    if results.get("large_inputs"):
        lines += ["", "Large inputs (one image through the Segmenter; peak = resident memory during it)"]
        for item in results["large_inputs"]:
            if "error" in item:
                lines.append(f"    {item['name']}: error {item['error']}")
                continue
            lines.append(
                f"    {item['name']}: {_s(item['seconds'])} s for N={item['samples']}, "
                f"input {item['input_mb']} MB, results {item['output_mb']} MB, "
                f"peak RSS {item['peak_rss_mb']} MB (before: {item['rss_before_mb']} MB)"
                + (f", peak GPU {item['peak_gpu_mb']} MB" if item.get("peak_gpu_mb") else "")
            )
    lines += [
        "",
        "* extrapolated from fewer measured steps/samples (see the JSON's measured_steps / "
        "extrapolated_from); peaks are per measurement where the kernel allows resetting them.",
    ]
    return "\n".join(lines)


def _machine_lines(machine: dict) -> list[str]:
    lines = ["", "This machine's convolution throughput (plain 3x3 conv, best memory format)"]
    for key in ("conv2d", "conv3d"):
        m = machine.get(key)
        if not m:
            continue
        shape = "x".join(str(s) for s in m["shape"])
        lines.append(
            f"    {key} {shape}: fp32 {m['fp32']['gflops']} GFLOP/s ({m['fp32']['best_format']}), "
            f"bf16 {m['bf16']['gflops']} GFLOP/s ({m['bf16']['best_format']})"
        )
    for key, error in machine.get("errors", {}).items():
        lines.append(f"    {key}: error {error}")
    if "error" in machine:
        lines.append(f"    error: {machine['error']}")
    return lines


def _config_lines(cfg: dict) -> list[str]:
    grid = "x".join(str(g) for g in cfg.get("grid", []))
    inf = cfg.get("inference") or {}
    head = f"== {cfg['name']}: {cfg.get('dims', '?')}D grid {grid}, {cfg.get('classes', '?')} classes"
    if inf:
        head += (
            f", {inf['parameters'] / 1e6:.2f} M parameters; {inf['device']} {inf['precision']}"
            + (", channels-last" if inf["channels_last"] else "")
            + (", compiled" if inf["compiled"] else "")
        )
    lines = [head]
    if inf:
        steps = inf["steps"]
        lines.append(
            _row("seconds/image, 1 sample", [f"K={r['K']}" + ("*" if r["extrapolated"] else "") for r in steps])
        )
        for label, key in (
            ("image encoder", "encoder_s"),
            ("denoiser (all steps)", "denoiser_s"),
            ("decoder", "decoder_s"),
            ("total", "total_s"),
        ):
            lines.append(_row(label, [_s(r[key]) for r in steps]))
        unc = inf["uncertainty"]
        lines.append(_row("uncertainty, K=2", [f"N={r['N']}" + ("*" if r["extrapolated"] else "") for r in unc]))
        lines.append(_row("seconds/image", [_s(r["seconds"]) for r in unc]))
        lines.append(_row("peak RSS MB", [str(r.get("peak_rss_mb", "-")) for r in unc]))
        if any(r.get("peak_gpu_mb") for r in unc):
            lines.append(_row("peak GPU MB", [str(r.get("peak_gpu_mb", "-")) for r in unc]))
        share = inf.get("decoder_share_of_conv_peak")
        lines.append(
            f"    decoder: {inf['decoder_flops'] / 1e9:.2f} GFLOP per sample, "
            f"{inf['decoder_gflops']} GFLOP/s"
            + (
                f" = {100 * share:.0f}% of this machine's {inf['precision']} conv ({inf['conv_peak_gflops']} GFLOP/s)"
                if share is not None
                else ""
            )
        )
    lines += _training_lines(cfg)
    if "error" in cfg:
        lines.append(f"    error: {cfg['error']}")
    for key, error in cfg.get("errors", {}).items():
        lines.append(f"    {key}: error {error}")
    for warning in cfg.get("warnings", []):
        lines.append(f"    warning: {warning}")
    return lines


def _training_lines(cfg: dict) -> list[str]:
    lines = []
    train, res, res_train = cfg.get("training"), cfg.get("resunet"), cfg.get("resunet_training")
    if train:
        lines.append(
            f"    training: {train['iterations_per_s']:.3g} it/s at batch {train['batch_size']} "
            f"({train['images_per_s']:.3g} images/s, {train['precision']}), "
            f"peak RSS {train['peak_rss_mb']} MB"
        )
    if res or res_train:
        parts = []
        if res:
            parts.append(f"segment {_s(res['segment_s'])} s/image")
        if res_train:
            parts.append(f"training {res_train['iterations_per_s']:.3g} it/s")
        lines.append("    Res-UNet (same sizes): " + ", ".join(parts))
    ratios: dict[str, Any] = cfg.get("ratio_ldseg_to_resunet") or {}
    shown = [
        f"{label} {ratios[key]}x"
        for key, label in (
            ("segment_N1", "segment N=1"),
            ("segment_N10", "N=10"),
            ("training_seconds_per_iteration", "training time/iteration"),
        )
        if ratios.get(key) is not None
    ]
    if shown:
        lines.append("    LDSeg / Res-UNet: " + ", ".join(shown))
    return lines
