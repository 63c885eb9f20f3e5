"""The one way raysweep writes a file that others read: aside, flushed to disk, then renamed into place.

A reader, or a relaunch after a kill or a power loss, finds the previous file or the whole new one, never a part:
"is this trial done?" can then be a file lookup.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(staging)`` to a hidden file beside ``path``, fsync it, rename it to ``path``, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def write_json(path: Path, record: dict) -> Path:
    return write_atomically(path, lambda staging: staging.write_text(json.dumps(record, indent=2)))
