"""Loading: YAML files into the schema's dataclasses, every problem reported at once with its key path.

``load_sweep`` also resolves recipes (``base``/``drop``/``weights`` into plain mixes) and makes data paths absolute
from the sweep file's folder.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from raysweep.config.checks import check_cluster, check_sweep
from raysweep.config.overrides import Override, annotated, apply_overrides
from raysweep.config.rules import shown
from raysweep.config.schema import (ClusterConfig, FileSource, FilteredSource, HFSource, MixComponent,
                                    RandomFeatureSweep, Recipe, Source, SweepConfig)
from raysweep.config.sizes import MODEL_SIZES
from raysweep.errors import ConfigError


def load_cluster(path: str | Path, overrides: list[Override] = ()) -> ClusterConfig:
    """The profile at `path`, with the ``--set`` `overrides` of its keys (``overrides.split_overrides``)."""
    cluster = _load_file(ClusterConfig, path, overrides)
    problems = check_cluster(cluster)
    if problems:
        raise ConfigError(path, annotated(problems, overrides))
    return cluster


def load_sweep(path: str | Path, overrides: list[Override] = ()) -> SweepConfig | RandomFeatureSweep:
    """A language-model sweep, or a random-feature sweep when the file has a ``random_features:`` block; with the
    ``--set`` `overrides` of its keys."""
    return _checked_sweep(_load_file(_sweep_class, path, overrides), path, Path(path).absolute().parent, overrides)


def sweep_from_dict(data: dict, base_dir: str | Path = ".") -> SweepConfig | RandomFeatureSweep:
    """A sweep given as a mapping (a notebook's or a pipeline's dict), checked exactly as a file is; relative data
    paths are taken from `base_dir`. Errors name the key paths, as for a file, with ``<dict>`` as its name."""
    origin = "<dict>"
    if not isinstance(data, dict):
        raise ConfigError(origin, [("", f"must be a mapping (got {type(data).__name__})")])
    problems: list[tuple[str, str]] = []
    sweep = _convert(_sweep_class(data), data, "", problems)
    if problems:
        raise ConfigError(origin, problems)
    return _checked_sweep(sweep, origin, Path(base_dir).absolute())


def _sweep_class(data: dict) -> type:
    return RandomFeatureSweep if "random_features" in data else SweepConfig


def _checked_sweep(sweep: SweepConfig | RandomFeatureSweep, origin: str | Path, base_dir: Path,
                   overrides: list[Override] = ()) -> SweepConfig | RandomFeatureSweep:
    """The sweep's cross-field checks, recipes resolved, data paths made absolute from `base_dir`."""
    if isinstance(sweep, RandomFeatureSweep):
        return sweep
    problems = check_sweep(sweep, set(MODEL_SIZES))
    recipes = _resolve_recipes(sweep.recipes, set(sweep.sources), problems)
    if problems:
        raise ConfigError(origin, annotated(problems, overrides))
    sources = {name: _absolute_paths(source, base_dir) for name, source in sweep.sources.items()}
    domains = {name: _absolute_paths(source, base_dir) for name, source in sweep.validation.domains.items()}
    tasks = [dataclasses.replace(task, path=os.path.normpath(base_dir / task.path)) if task.path else task
             for task in sweep.tasks]
    return dataclasses.replace(sweep, recipes=recipes, sources=sources, tasks=tasks,
                               validation=dataclasses.replace(sweep.validation, domains=domains))


def _absolute_paths(source: Source, base_dir: Path) -> Source:
    """Relative data paths are taken from the sweep file's folder, wherever raysweep is started."""
    if isinstance(source, (FileSource, HFSource)) and source.path is not None:
        return dataclasses.replace(source, path=os.path.normpath(base_dir / source.path))
    if isinstance(source, FilteredSource) and source.perplexity and source.perplexity.kenlm_model:
        perplexity = dataclasses.replace(source.perplexity,
                                         kenlm_model=os.path.normpath(base_dir / source.perplexity.kenlm_model))
        return dataclasses.replace(source, perplexity=perplexity)
    return source


def _resolve_recipes(recipes: list[Recipe], source_names: set[str], problems: list[tuple[str, str]]) -> list[Recipe]:
    """Expand `base`/`drop`/`weights` into plain mixes (normalised token shares), reporting what cannot be."""
    index = {r.name: i for i, r in enumerate(recipes)}
    resolved: dict[str, list[MixComponent] | None] = {}

    def mix_of(name: str, chain: tuple[str, ...]) -> list[MixComponent] | None:
        if name in resolved:
            return resolved[name]
        i = index[name]
        recipe, where = recipes[i], f"recipes[{i}]"
        resolved[name] = None  # marks the recipe in progress: a cycle resolves to nothing
        if recipe.base is None:
            mix = list(recipe.mix)
        elif recipe.mix:
            problems.append((f"{where}.mix", "give either `mix` or `base`, not both"))
            return None
        elif recipe.base not in index or recipe.base in (*chain, name):
            problems.append((f"{where}.base", f"must name another recipe, without cycles (got {recipe.base!r})"))
            return None
        else:
            base = mix_of(recipe.base, (*chain, name))
            if base is None:
                return None
            mix = _ablate(base, recipe, where, source_names, problems)
            if mix is None:
                return None
        if not mix:
            problems.append((f"{where}.mix", "the recipe has no sources left"))
            return None
        total = sum(c.weight for c in mix)
        resolved[name] = [MixComponent(c.source, c.weight / total) for c in mix]
        return resolved[name]

    out = []
    for recipe in recipes:
        mix = mix_of(recipe.name, ())
        out.append(dataclasses.replace(recipe, mix=mix or [], base=None, drop=[], weights={}))
    return out


def _ablate(base: list[MixComponent], recipe: Recipe, where: str, source_names: set[str],
            problems: list[tuple[str, str]]) -> list[MixComponent] | None:
    """The base mix without `drop`, then `weights` set as token shares, the rest scaled to fill the remainder."""
    present = {c.source for c in base}
    for j, name in enumerate(recipe.drop):
        if name not in present:
            problems.append((f"{where}.drop[{j}]", f"{name!r} is not in the base mix ({', '.join(sorted(present))})"))
    kept = [c for c in base if c.source not in recipe.drop]
    for name, share in recipe.weights.items():
        if name not in source_names:
            problems.append((f"{where}.weights.{name}", f"unknown source {name!r}"))
        elif not 0 < share <= 1:
            problems.append((f"{where}.weights.{name}", f"must be a token share in (0, 1] (got {share!r})"))
    if any(p[0].startswith(f"{where}.") for p in problems):
        return None
    others = [c for c in kept if c.source not in recipe.weights]
    fixed = sum(recipe.weights.values())
    rest = sum(c.weight for c in others)
    if fixed > 1 + 1e-9 or (fixed < 1 - 1e-9 and not others) or (others and fixed >= 1 - 1e-9):
        problems.append((f"{where}.weights", f"shares sum to {fixed:g}: they must leave room for the other "
                                             f"{len(others)} source(s), or cover all of them and sum to 1"))
        return None
    scale = (1 - fixed) / rest if others else 0.0
    return [MixComponent(c.source, c.weight * scale) for c in others] + [
        MixComponent(name, share) for name, share in recipe.weights.items()]


def _load_file(cls: type | typing.Callable[[dict], type], path: str | Path, overrides: list[Override] = ()) -> Any:
    """`cls` is the dataclass the file holds, or picks it from the parsed mapping (after the `overrides`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(path, [("", "is a folder; pass a YAML file")])
    if not path.is_file():
        raise ConfigError(path, [("", "file not found")])
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeySafeLoader)
        data = data if data is not None else {}
        problems: list[tuple[str, str]] = []
        data = apply_overrides(data, overrides, problems)
        if not dataclasses.is_dataclass(cls):
            cls = cls(data if isinstance(data, dict) else {})
        value = _convert(cls, data, "", problems)
    except UnicodeDecodeError as err:
        raise ConfigError(path, [("", f"not UTF-8 text (byte {err.start}); a sweep file or profile is YAML text")]) \
            from None
    except yaml.YAMLError as err:
        raise ConfigError(path, [("", f"not valid YAML: {err}")]) from None
    except RecursionError:
        raise ConfigError(path, [("", "nested too deeply to be a sweep file or profile")]) from None
    if problems:
        raise ConfigError(path, annotated(problems, overrides))
    return value


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """Safe YAML (no tags that run code) that refuses a key given twice in one mapping: YAML itself keeps the last
    one silently, which hides a typo'd edit."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, typing.Hashable):
            continue  # construct_mapping refuses it
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {shown(key)} is given twice",
                                                    key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeySafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _convert(tp: Any, value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """Turn parsed YAML into `tp`, appending (path, message) for each mismatch."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        variants = [a for a in args if a is not type(None)]
        if len(variants) == 1:
            return _convert(variants[0], value, path, problems)
        return _convert_variant(variants, value, path, problems)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, problems)
    if origin is list:
        if not isinstance(value, list):
            problems.append((path, f"must be a list (got {shown(value)})"))
            return []
        return [_convert(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append((path, f"must be a mapping (got {shown(value)})"))
            return {}
        return {str(k): _convert(args[1], v, _join(path, str(k)), problems) for k, v in value.items()}
    if origin is Literal:
        if value not in args:
            problems.append((path, f"must be one of {', '.join(map(repr, args))} (got {shown(value)})"))
        return value
    return _convert_scalar(tp, value, path, problems)


def _convert_variant(variants: list[type], value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """A union of dataclasses is picked by its `type:` key, as in ``{type: jsonl, path: ...}``."""
    by_type = {name: cls for cls in variants for name in typing.get_args(typing.get_type_hints(cls)["type"])}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in by_type:
        problems.append((_join(path, "type"), f"must be one of {', '.join(map(repr, by_type))} (got {shown(kind)})"))
        return None
    return _convert_dataclass(by_type[kind], value, path, problems)


def _convert_scalar(tp: type, value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads `1e-5` (no dot) as a string; accept it as the number it means
            return float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is not bool and isinstance(value, bool)):
        return value
    problems.append((path, f"must be {_type_name(tp)} (got {shown(value)})"))
    return value


def _convert_dataclass(cls: type, value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    if not isinstance(value, dict):
        problems.append((path, f"must be a mapping (got {shown(value)})"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            problems.append((_join(path, str(key)), f"unknown key (expected one of: {', '.join(fields)})"))
    for group in getattr(cls, "_EXCLUSIVE_KEYS", ()):
        if sum(key in value for key in group) > 1:
            problems.append((path, f"give one of {' or '.join(group)}, not both"))
    kwargs, missing = {}, False
    for name, f in fields.items():
        key_path = _join(path, name)
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append((key_path, "missing required key"))
                missing = True
            continue
        before = len(problems)
        converted = _convert(hints[name], value[name], key_path, problems)
        if len(problems) == before and converted is not None:
            for check in f.metadata.get("checks", ()):
                message = check(converted)
                if message:
                    problems.append((key_path, message))
        kwargs[name] = converted
    if missing:
        return None
    return cls(**kwargs)
