"""Atomic file writes: write beside the destination, check, then rename.

The rename is atomic on one file system, so a reader (Slicer watching a
folder, a resumed training run) never sees a half-written file, and a crash
or cancel leaves the previous file, or none, in place. Before the rename the
file is checked: writers that ignore a full disk (ITK does) leave a short or
empty file, which must never be published. (Python's own writes raise on a
full disk; no fsync: every training epoch writes here, and a kill -9 keeps
what the page cache holds.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Callable

from ..errors import OutputError


def _check_written(tmp: str, expected_size: int | None, verify: Callable[[str], None] | None) -> None:
    """Raise OSError(ENOSPC-like) when the temporary file is not complete."""
    if not os.path.isfile(tmp):
        raise OSError(errno.EIO, "the writer produced no file")
    size = os.path.getsize(tmp)
    if expected_size is not None and size != expected_size:
        raise OSError(errno.ENOSPC, f"incomplete file ({size} of {expected_size} bytes; is the disk full?)")
    if size == 0 and expected_size != 0:
        raise OSError(errno.ENOSPC, "empty file (is the disk full?)")
    if verify is not None:
        verify(tmp)


@contextlib.contextmanager
def atomic_path(path, suffix="", *, expected_size: int | None = None, verify: Callable[[str], None] | None = None):
    """Yield a temporary path beside ``path``; move it there on success.

    The caller creates the temporary file (so it gets the usual permissions,
    unlike mkstemp's 0600). Before the move the file must exist, be non-empty,
    have ``expected_size`` bytes if given, and pass ``verify(tmp)`` (which
    raises OSError when the file is incomplete). On any error it is removed;
    OS errors become :class:`OutputError` naming the destination.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    # the suffix ends the name so writers that go by extension (ITK) still can;
    # the name is cut so a destination name near the file-name limit still fits
    tmp = path.parent / f".{path.name[:64]}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}"
    try:
        yield str(tmp)
        _check_written(str(tmp), expected_size, verify)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        # After a successful replace the temporary name no longer exists.
        with contextlib.suppress(OSError):
            os.remove(tmp)


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path, expected_size=len(data)) as tmp:
        Path(tmp).write_bytes(data)
