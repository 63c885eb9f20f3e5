"""Value rules of the schema's fields: each returns an error message or None; ``raysweep.config.loading`` runs
them on every converted value, so every problem of a file is reported at once."""

from __future__ import annotations

import math
import re
import reprlib
import typing
from dataclasses import field
from typing import Any

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 2, 4, 4


def shown(value: Any) -> str:
    """A value as a message shows it: short, whatever its size (a YAML alias can expand to millions of items)."""
    return _SHOWN.repr(value)


def positive(value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if not (v > 0 and math.isfinite(v))]
    return f"must be > 0 (got {bad[0]!r})" if bad else None


def non_negative(value: Any) -> str | None:
    return f"must be >= 0 (got {value!r})" if value < 0 else None


def non_empty(value: Any) -> str | None:
    return "must not be empty" if len(value) == 0 else None


def fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be within [0, 1] (got {value!r})"


def at_least_two(value: int) -> str | None:
    return None if value >= 2 else f"must be >= 2 (got {value!r})"


def confidence(value: float) -> str | None:
    return None if 0.5 < value < 1.0 else f"must be within (0.5, 1) (got {value!r})"


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
"""Names that become folder and file names (sweeps, recipes, sources, validation domains): no path separator,
no leading dot, at most 128 characters."""


def safe_name(value: str) -> str | None:
    if SAFE_NAME.fullmatch(value):
        return None
    return (f"must be a plain name: letters, digits and . _ + -, starting with a letter or digit, at most 128 "
            f"characters (it names folders; got {shown(value)}, {len(value)} characters)")


MAX_SEQ_LEN = 2**20
"""Longer than any model's context: a larger seq_len is a typo, and would allocate its position table."""


def sequence_length(value: int) -> str | None:
    return None if value <= MAX_SEQ_LEN else f"must be at most {MAX_SEQ_LEN:,} tokens (got {value:,})"


def port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a TCP port within [0, 65535] (got {value!r})"


def ray_address(value: str) -> str | None:
    if value in ("auto", "local") or re.fullmatch(r"(ray://)?[A-Za-z0-9._-]+:\d{1,5}", value):
        return None
    return f"must be auto, local, HOST:PORT or ray://HOST:PORT (got {shown(value)})"


def rules(*checks: typing.Callable[[Any], str | None], **kwargs: Any) -> Any:
    return field(metadata={"checks": checks}, **kwargs)


def added(*checks: typing.Callable[[Any], str | None], default: Any = None) -> Any:
    """A field added after content hashes (trial keys, shard keys) were first stored: at its default it is left
    out of them (see ``hashable``), so every key computed before it existed stays the same."""
    return field(default=default, metadata={"checks": checks, "hashed_when_set": True})
