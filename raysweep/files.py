"""The one way raysweep writes a file that others read: aside, flushed to disk, then renamed into place.

A reader, or a relaunch after a kill or a power loss, finds the previous file or the whole new one, never a part:
"is this trial done?" can then be a file lookup.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

OUTAGE_ERRORS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT,
                           errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENETDOWN, errno.ENETUNREACH})
"""What a write into a folder that should exist gets while the shared file system behind it is away: the folder
gone (unmounted), a stale NFS handle, an unreachable server, a FUSE daemon restarting."""


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(staging)`` to a hidden file beside ``path``, fsync it, rename it to ``path``, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_atomically(path, write)


def write_through_outage(path: Path, write: Callable[[Path], object], patience_s: float,
                         on_outage: Callable[[OSError], None]) -> float:
    """``write_atomically`` into ``path``'s folder, which must exist, retrying with backoff while the storage is
    away (``OUTAGE_ERRORS``) for up to ``patience_s``; ``on_outage`` hears the first error. Returns the seconds
    waited.

    The folder is never created here: a write into an unmounted share's mount point would land on the local disk
    and vanish when the share comes back, which is worse than waiting for it.
    """
    start, delay, heard = time.monotonic(), 0.1, False
    while True:
        try:
            replace_atomically(Path(path), write)
            return time.monotonic() - start
        except OSError as err:
            waited = time.monotonic() - start
            if err.errno not in OUTAGE_ERRORS:
                raise
            if waited >= patience_s:
                raise OSError(err.errno, f"storage unavailable for {waited:.0f} s ({err.strerror})",
                              str(path)) from err
            if not heard:
                on_outage(err)
                heard = True
            time.sleep(min(delay, patience_s - waited))
            delay = min(2 * delay, 5.0)


def replace_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write_atomically`` into a folder that must exist."""
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        write(staging)
        with open(staging, "rb") as written:
            os.fsync(written.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def json_writer(record: dict) -> Callable[[Path], object]:
    """The ``write`` of the functions above for one JSON record."""
    return lambda staging: staging.write_text(json.dumps(record, indent=2))


def write_json(path: Path, record: dict) -> Path:
    return write_atomically(path, json_writer(record))
