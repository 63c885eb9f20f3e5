"""Content hashes: the one way raysweep names trials, shards and caches by what they contain."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def content_hash(*parts: Any) -> str:
    """Short stable hash of dataclasses and plain values: names caches and trials by what they contain."""
    text = json.dumps(hashable(list(parts)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hashable(obj: Any) -> Any:
    """`obj` as the plain data a content hash covers: ``dataclasses.asdict``, at any depth, except that fields
    declared with ``config.rules.added`` are left out while they hold their default."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: hashable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("hashed_when_set") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return [hashable(value) for value in obj]
    if isinstance(obj, dict):
        return {key: hashable(value) for key, value in obj.items()}
    return obj
