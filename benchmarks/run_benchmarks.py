"""LDSeg benchmarks: speed and memory of segmentation, uncertainty and training.

    python benchmarks/run_benchmarks.py [--quick] [--json OUT.json] [--device auto|cpu|cuda]
                                        [--precision auto|fp32|bf16] [--compile] [--configs TEXT ...]

For the shipped models and for random-init models of fixed sizes (2D 256^2
and 512^2, 3D 64^3 and 128x128x256; --quick: smaller), each in a fresh
process: seconds per image for K = 1, 2, 10, 1000 DDIM steps split into
image encoder / denoiser / decoder; the Segmenter with N = 1, 10, 20, 100
samples; peak resident (and GPU) memory; training iterations per second;
the same for a Res-UNet of matching size; the decoder's achieved GFLOP/s as
a share of this machine's measured convolution throughput; and the peak
memory of segmenting a large input. Prints a table and writes JSON
(default: out/benchmarks/benchmarks[-quick].json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # benchlib
sys.path.insert(0, str(REPO / "LDSegCore"))  # ldseg, also from a plain checkout


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and tight time caps (about a minute)")
    p.add_argument("--json", type=Path, default=None, help="where to write the results")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="bf16 autocast where the hardware has fast bf16 (auto), or force one",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the denoiser (as ldseg segment --compile)")
    p.add_argument(
        "--configs",
        nargs="+",
        default=None,
        metavar="TEXT",
        help="only configurations whose name contains one of these texts",
    )
    p.add_argument(
        "--no-large-inputs", dest="large_inputs", action="store_false", help="skip the large-input memory measurements"
    )
    p.add_argument(
        "--memory-limit",
        type=float,
        default=None,
        metavar="GB",
        help="address-space limit of each worker on the CPU, so an oversized configuration "
        "fails alone instead of pushing the machine out of memory (default: 75%% of the "
        "memory available at start)",
    )
    p.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # worker mode: run one job file
    return p.parse_args(argv)


# -- worker side ------------------------------------------------------------------------


def limit_memory(gigabytes: float) -> None:
    """Cap the address space at its current size plus ``gigabytes``: an
    allocation past it fails with an error inside this worker instead of the
    kernel's OOM killer picking some other process."""
    status = Path("/proc/self/status").read_text()
    vm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmSize:"))
    limit = int(vm_kb * 1024 + gigabytes * 1e9)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_worker(job_file: Path) -> int:
    job = json.loads(job_file.read_text())
    import torch
    from benchlib.jobs import run_job

    if job.get("memory_limit_gb") and not job["device"].startswith("cuda"):
        limit_memory(job["memory_limit_gb"])
    torch.manual_seed(0)
    result = run_job(job)
    Path(job["result_file"]).write_text(json.dumps(result))
    return 0


# -- driver side -----------------------------------------------------------------------


def available_memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def run_in_fresh_process(job: dict, timeout_s: float) -> dict:
    """Run one job in a new Python process; its result, or an error entry."""
    with tempfile.TemporaryDirectory(prefix="ldseg-bench-job-") as tmp:
        job = {**job, "result_file": str(Path(tmp) / "result.json")}
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job))
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--job", str(job_file)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f} s"}
        result_file = Path(job["result_file"])
        if proc.returncode != 0 or not result_file.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"worker exited with {proc.returncode}: " + " | ".join(tail)}
        result = json.loads(result_file.read_text())
        result["job_wall_s"] = round(time.perf_counter() - start, 2)
        if proc.stderr.strip() and result.get("errors"):
            result["stderr_tail"] = proc.stderr.strip().splitlines()[-5:]
        return result


def describe_device(name: str) -> tuple[str, bool]:
    from ldseg.device import cpu_has_fast_bf16, describe, resolve_device

    device = resolve_device(name)
    return describe(device), (device.type == "cpu" and cpu_has_fast_bf16())


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.job:
        return run_worker(args.job)
    import torch
    from benchlib.plan import make_plan
    from benchlib.report import derive, format_report

    from ldseg.errors import LDSegError

    try:
        device_description, fast_bf16 = describe_device(args.device)
    except LDSegError as e:
        print(f"run_benchmarks: error: {e}", file=sys.stderr)
        return 2
    plan = make_plan(args.quick)
    if args.configs:
        plan.configs = [c for c in plan.configs if any(t.lower() in c.name.lower() for t in args.configs)]
        plan.large_inputs = [c for c in plan.large_inputs if any(t.lower() in c.name.lower() for t in args.configs)]
    if not args.large_inputs:
        plan.large_inputs = []
    available = available_memory_gb()
    memory_limit = args.memory_limit or (0.75 * available if available else None)
    common = {
        "device": args.device,
        "precision": args.precision,
        "compile": args.compile,
        "plan": plan.to_dict(),
        "memory_limit_gb": memory_limit,
    }
    default_name = "benchmarks-quick.json" if args.quick else "benchmarks.json"
    out_path = args.json or REPO / "out" / "benchmarks" / default_name

    timeout_s = plan.job_timeout_s * (3 if args.compile else 1)  # compiling takes minutes on a CPU
    started = time.perf_counter()
    results = {
        "meta": {
            "quick": plan.quick,
            "device": args.device,
            "device_description": device_description,
            "precision": args.precision,
            "compile": args.compile,
            "cpu_fast_bf16": fast_bf16,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "memory_available_gb": round(available, 1) if available else None,
            "worker_memory_limit_gb": round(memory_limit, 1) if memory_limit else None,
            "cap_s": plan.cap_s,
            "repeats": plan.repeats,
            "steps": list(plan.steps),
            "samples": list(plan.samples),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "machine": {},
        "configs": [],
        "large_inputs": [],
    }
    _say("machine convolution throughput")
    results["machine"] = run_in_fresh_process({**common, "kind": "machine"}, timeout_s)
    for cfg in plan.configs:
        _say(cfg.name)
        entry = run_in_fresh_process({**common, "kind": "config", "config": vars(cfg)}, timeout_s)
        entry.setdefault("name", cfg.name)
        results["configs"].append(entry)
    for item in plan.large_inputs:
        _say(item.name)
        entry = run_in_fresh_process({**common, "kind": "large_input", "input": vars(item)}, timeout_s)
        entry.setdefault("name", item.name)
        results["large_inputs"].append(entry)
    results["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    derive(results)
    print(format_report(results))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out_path} ({results['meta']['wall_s']} s)")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _say(what: str) -> None:
    print(f"[run_benchmarks] {what} ...", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
