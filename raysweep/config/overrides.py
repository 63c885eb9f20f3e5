"""``--set KEY.PATH=VALUE``: one key of the cluster profile or the sweep file changed on the command line, checked
exactly as if the file said it, its errors naming the override::

    raysweep launch cluster/local.yaml --set proxy.lrs=[1e-4,3e-4] --set max_concurrent_trials=1

A key whose first part is a cluster-profile key (``storage``, ``ray.num_cpus``, ``max_concurrent_trials``…) sets the
profile, any other the sweep file (``proxy.seeds``, ``recipes[0].weights.web``…). The value is read as YAML
(``[1e-4, 3e-4]``, ``{cpu: 2}``, ``null``); missing mappings on the way are created.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import yaml

from raysweep.config.schema import ClusterConfig
from raysweep.errors import ConfigError

_KEY = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*")
_PART = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]")
ORIGIN = "--set"


@dataclass(frozen=True)
class Override:
    text: str
    """As given: ``KEY.PATH=VALUE``."""
    key: str
    parts: tuple[str | int, ...]
    value: Any


def parse_overrides(texts: list[str]) -> list[Override]:
    """Every ``KEY.PATH=VALUE``; a malformed one is a ``ConfigError`` naming it (all of them at once)."""
    overrides, problems = [], []
    for text in texts:
        key, equals, value = text.partition("=")
        key = key.strip()
        if not equals or not _KEY.fullmatch(key):
            problems.append((text, "must be KEY.PATH=VALUE, e.g. proxy.lrs=[1e-4,3e-4] or recipes[0].epochs=2"))
            continue
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problems.append((text, f"the value is not valid YAML ({err})"))
            continue
        parts = tuple(name if name else int(index) for name, index in _PART.findall(key))
        overrides.append(Override(text, key, parts, parsed))
    if problems:
        raise ConfigError(ORIGIN, problems)
    return overrides


def split_overrides(overrides: list[Override]) -> tuple[list[Override], list[Override]]:
    """(the cluster profile's, the sweep file's), by the first part of each key."""
    profile_keys = {f.name for f in dataclasses.fields(ClusterConfig)}
    return ([o for o in overrides if o.parts[0] in profile_keys],
            [o for o in overrides if o.parts[0] not in profile_keys])


def apply_overrides(data: Any, overrides: list[Override], problems: list[tuple[str, str]]) -> Any:
    """A copy of the parsed file with every override set; one that cannot be (an index past a list's end, a key
    under a number) is appended to `problems`."""
    if not overrides:
        return data
    data = copy.deepcopy(data) if isinstance(data, dict) else {}
    for override in overrides:
        node = data
        for depth, part in enumerate(override.parts):
            last = depth == len(override.parts) - 1
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    size = f"a list of {len(node)}" if isinstance(node, list) else "not a list"
                    problems.append((override.key, f"index {part} cannot be set: the file's value is {size} "
                                                   f"(set by {ORIGIN} {override.text})"))
                    break
            elif not isinstance(node, dict):
                problems.append((override.key, f"{part!r} cannot be set inside a {type(node).__name__} "
                                               f"(set by {ORIGIN} {override.text})"))
                break
            if last:
                node[part] = override.value
            else:
                if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
    return data


def annotated(problems: list[tuple[str, str]], overrides: list[Override]) -> list[tuple[str, str]]:
    """Each problem at or under an overridden key says which override set it."""
    out = []
    for path, message in problems:
        source = next((o for o in overrides if path == o.key or path.startswith((f"{o.key}.", f"{o.key}["))), None)
        out.append((path, f"{message} (set by {ORIGIN} {source.text})" if source and ORIGIN not in message
                    else message))
    return out


def effective_text(text: str, overrides: list[Override], origin: str) -> str:
    """The file as a launch with `overrides` read it: the text itself without any, else its mapping re-written
    with them set (comments are lost), headed by where it came from."""
    if not overrides:
        return text
    data = apply_overrides(yaml.safe_load(text), overrides, [])
    header = f"# {origin} with {' '.join(f'{ORIGIN} {o.text}' for o in overrides)}\n"
    return header + yaml.safe_dump(data, sort_keys=False)
