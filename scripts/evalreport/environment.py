"""What the report was produced on and with: machine, software, model files."""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

import ldseg
from ldseg.io.modelheader import read_config

from .datasets import REPO_ROOT

SHA_SHOWN = 12  # hex digits of the SHA-256 shown in the report


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    """Short commit of the working tree, marked when it has uncommitted changes."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return commit + (" + uncommitted changes" if dirty else "")


def command_line() -> str:
    """The command as typed (relative script path), with the thread setting."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    command = shlex.join(["python", *sys.argv])
    return f"{env} {command}".strip()


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine_info(device_description: str, started_utc: str) -> dict:
    return {
        "date_utc": started_utc,
        "command": command_line(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ldseg": ldseg.__version__,
        "git": git_revision(),
        "device": device_description,
        "platform": platform.platform(),
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def display_path(path: Path) -> str:
    """Path relative to the repository when inside it (stable across machines)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def model_info(path: Path) -> dict:
    config = read_config(path)
    training = config.training or {}
    return {
        "path": display_path(path),
        "sha256": sha256(path),
        "name": config.name,
        "architecture": config.architecture,
        "epochs": training.get("epochs"),
        "best_epoch": training.get("best_epoch"),
        "best_val_dice": training.get("best_val_dice"),
        "train_cases": training.get("train_cases"),
    }
