"""Atomic file writes: write beside the destination, then rename.

The rename is atomic on one file system, so a reader (Slicer watching a
folder, a resumed training run) never sees a half-written file, and a crash
or cancel leaves the previous file, or none, in place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from ..errors import OutputError


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path beside ``path``; move it there on success.

    The caller creates the temporary file (so it gets the usual permissions,
    unlike mkstemp's 0600). On any error it is removed; OS errors become
    :class:`OutputError` naming the destination.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    # the suffix ends the name so writers that go by extension (ITK) still can
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}"
    try:
        yield str(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        # After a successful replace the temporary name no longer exists.
        with contextlib.suppress(OSError):
            os.remove(tmp)


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
