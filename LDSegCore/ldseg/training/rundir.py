"""A training run's folder: one training at a time, and what it was started with.

Two trainings into one run folder would mix their files (the model of one,
the log and checkpoint of the other), so the folder is locked for as long
as a training runs (an OS lock: it goes with the process, even after
kill -9). A run records the arguments it was started with and a fingerprint
of its data (a hash of every file's content) in ``run.json``; ``--resume``
refuses arguments that change what the finished epochs mean, or data whose
files changed while keeping their names. Settings that only say how far or
where to go on (epochs, device, progress, names of the output) may change.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import __version__
from ..config import TrainOptions
from ..errors import LDSegError, OutputError
from ..io.atomic import write_bytes_atomic
from .trainer import CHECKPOINT

LOCK = "run.lock"
RECORD = "run.json"

#: Arguments a resumed run may change: how long and where it runs, how it
#: reports, what the written model is called. All others must match.
MAY_CHANGE_ON_RESUME = frozenset(
    {
        "epochs",
        "time_budget",
        "validate_every",
        "val_samples",
        "val_steps",
        "device",
        "precision",
        "progress",
        "output",
        "overwrite",
        "resume",
        "run_dir",
        "name",
        "title",
        "description",
        "modality",
        "command",
        "func",
        "dataset",  # where the data is may change; what it holds is checked by its fingerprint
    }
)

_held: dict[str, Any] = {}  # run folder -> open lock file, held until the process ends


def _try_lock(handle) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            handle.seek(0)  # msvcrt locks bytes from the current position
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir``'s lock until this process ends, or refuse in one line
    when another training holds it."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _held:
        return
    try:
        handle = open(run_dir / LOCK, "a+")
    except OSError as e:
        raise OutputError(f"{run_dir}: cannot lock the run folder ({e.strerror})") from None
    if not _try_lock(handle):
        handle.seek(0)
        owner = handle.read().strip()
        handle.close()
        raise OutputError(
            f"{run_dir}: another training is using this run folder"
            + (f" (process {owner})" if owner.isdigit() else "")
            + "; wait for it to end or choose another --run-dir"
        )
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _held[key] = handle


def release_run_dir(run_dir: Path) -> None:
    handle = _held.pop(str(Path(run_dir).resolve()), None)
    if handle is not None:
        handle.close()  # closing drops the lock


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def run_arguments(args) -> dict[str, Any]:
    """The arguments that must stay the same for a run to be resumed."""
    return {k: _jsonable(v) for k, v in sorted(vars(args).items()) if k not in MAY_CHANGE_ON_RESUME}


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def data_fingerprint(pairs: Sequence) -> dict[str, str]:
    """Case name -> hash of its image and label content."""
    return {p.name: _file_hash(Path(p.image)) + ":" + _file_hash(Path(p.label)) for p in pairs}


def _describe(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "(not given)" if value is None else str(value)


def _argument_changes(started: dict[str, Any], now: dict[str, Any]) -> list[str]:
    # A training option added to the engine after the run started is absent
    # from its record; left at its default it trains as the run did.
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    changes = []
    for key in sorted(set(started) | set(now)):
        if key not in started and key in defaults and now.get(key) == defaults[key]:
            continue
        if started.get(key) != now.get(key):
            flag = "--" + key.replace("_", "-")
            changes.append(f"{flag} {_describe(started.get(key))} -> {_describe(now.get(key))}")
    return changes


def _data_changes(started: dict[str, str], now: dict[str, str]) -> list[str]:
    changed = sorted(n for n in set(started) & set(now) if started[n] != now[n])
    added, removed = sorted(set(now) - set(started)), sorted(set(started) - set(now))
    parts = []
    for what, names in (("changed", changed), ("new", added), ("gone", removed)):
        if names:
            parts.append(f"{what}: {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else ""))
    return parts


def record_or_check(
    run_dir: Path, args, pairs: Sequence, *, resuming: bool, warn: Callable[[str], None] = lambda message: None
) -> None:
    """A new run records its arguments and data; a resumed one must match
    what was recorded (one-line OutputError naming what differs)."""
    run_dir = Path(run_dir)
    record_path = run_dir / RECORD
    now = {"arguments": run_arguments(args), "data": data_fingerprint(pairs), "engine_version": __version__}
    if resuming and record_path.is_file():
        try:
            started = json.loads(record_path.read_text())
            started_args, started_data = dict(started["arguments"]), dict(started["data"])
        except (OSError, ValueError, KeyError, TypeError):
            raise OutputError(f"{record_path}: unreadable run record; choose another --run-dir") from None
        changes = _argument_changes(started_args, now["arguments"])
        if changes:
            raise OutputError(
                f"{run_dir}: cannot resume with other arguments than the run was started with "
                f"({'; '.join(changes[:4])}); use the same ones or choose another --run-dir"
            )
        data = _data_changes(started_data, now["data"])
        if data:
            raise OutputError(
                f"{run_dir}: the data set changed since the run started ({'; '.join(data)}); "
                "resume on the same data or start a new run with another --run-dir"
            )
        if started.get("precision") not in (None, getattr(args, "precision", None)):
            warn(f"resuming with --precision {args.precision} (the run started with {started['precision']})")
        return
    if resuming:
        warn(f"{run_dir} has no run record (an older run): its arguments and data cannot be checked")
    now["precision"] = getattr(args, "precision", None)
    write_bytes_atomic(record_path, json.dumps(now, indent=1).encode())


def resume_or_refuse(trainer) -> bool:
    """``trainer.resume()``, with a checkpoint that does not fit this run
    (missing keys, wrong shapes, wrong types) as one line instead of a traceback."""
    try:
        return trainer.resume()
    except LDSegError:
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
        if "out of memory" in str(e).lower():
            raise  # not the checkpoint's fault: the command line reports it as such
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise LDSegError(
            f"{Path(trainer.run_dir) / CHECKPOINT}: the checkpoint does not fit this run ({reason}); "
            "choose another --run-dir"
        ) from None
