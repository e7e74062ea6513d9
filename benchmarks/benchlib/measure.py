"""Clocks and memory meters for the benchmarks.

Peak resident memory is the kernel's own high-water mark (VmHWM in
/proc/self/status). Writing "5" to /proc/self/clear_refs resets it to the
current resident size, which gives each measurement its own peak inside one
process; where that is not allowed, the peak covers the process so far and
the result says so (``peak_scope``).
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak; True if the resident-memory peak could be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float | None:
    """A memory line of /proc/self/status (e.g. VmHWM, VmRSS) in MB; None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (or process start), MB."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kB


def peak_gpu_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


class PeakMeter:
    """``with PeakMeter(device) as m: ...`` then ``m.result()``: peaks of the block."""

    def __init__(self, device: torch.device):
        self.device = device
        self.scoped = False

    def __enter__(self) -> "PeakMeter":
        self.scoped = reset_peak_memory(self.device)
        return self

    def __exit__(self, *exc) -> None:
        self.rss = peak_rss_mb()
        self.gpu = peak_gpu_mb(self.device)

    def result(self) -> dict[str, Any]:
        return {
            "peak_rss_mb": self.rss,
            "peak_gpu_mb": self.gpu,
            "peak_scope": "measurement" if self.scoped else "process",
        }


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes (GPU work included) and its result."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def repeat_timing(fn: Callable[[], Any], device: torch.device, *, cap_s: float, max_repeats: int) -> tuple[float, int]:
    """Median seconds over up to ``max_repeats`` calls, stopping early once
    ``cap_s`` seconds have been spent (at least one call). The caller warms up."""
    times: list[float] = []
    while len(times) < max_repeats and (not times or sum(times) + times[-1] <= cap_s):
        times.append(timed(fn, device)[0])
    return statistics.median(times), len(times)


def current_rss_mb() -> float:
    """Resident memory now, MB (0 where /proc is missing)."""
    return _status_mb("VmRSS") or 0.0


def linear_fit(xs: list[float], ys: list[float], slope: float | None = None) -> Callable[[float], float]:
    """How a cost grows with the number of steps or samples, to extrapolate
    past a time cap: the line through the last two points (x, y), or through
    the only point with the given ``slope``."""
    if len(xs) >= 2:
        (x0, y0) = xs[-2], ys[-2]
        slope = max(0.0, (ys[-1] - y0) / (xs[-1] - x0)) if xs[-1] != x0 else 0.0
    elif slope is None:
        slope = ys[-1] / xs[-1]
    x1, y1 = xs[-1], ys[-1]
    return lambda x: y1 + slope * (x - x1)
