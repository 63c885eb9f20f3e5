"""Build a recipe into packed token shards with Ray Data, once, cached by content, resumable.

A recipe is a weighted mixture of streams (a source and its curation operators, ``streams.py``). Each
component is one streaming Ray Data pipeline, so a corpus larger than memory builds in bounded memory::

    parts of the source ─► read documents ─► mark (dedup, repetition, perplexity) ─► tokenize ─► pack ─► Parquet
    (tasks, in order)      (tasks)           (one actor if it dedups)                (tasks)    (one actor)

Operators mark documents instead of dropping them, so the packer, which sees every document in order,
counts what each operator removed (documents and tokens, by reason) up to the last sequence it keeps; the
build manifest records those counts. The pipeline stops reading as soon as the component has its
sequences (``limit``): weights are shares of tokens, and the set meets its budget exactly.

Sequences of the whole recipe are ordered by *stride scheduling* over the token weights: the k-th
sequence of component c gets the order key (k + 0.5) / w_c, and readers take sequences in key order
(``sequences.SequenceReader``, which reads only the row groups that hold the prefix a trial asks for).
Any prefix of that order is then mixed at the recipe's weights to within one sequence per component,
so a small proxy and a large target read the same mixture at different budgets from one build::

    shards = build_shards("web-heavy", components, tokenizer_cfg, seq_len=64, num_sequences=20000, root=root)
    ids = SequenceReader(shards.path, 5000).read_all()    # int32 [5000, 64], the first 5000 in mixture order

Shards live at ``<root>/<name>-<hash>/`` where the hash covers the mixture, each stream (file sources by
a fingerprint of their bytes), the tokenizer, the sequence length and the epochs allowed. Every component
is written to its own folder and marked done when complete, so an interrupted build resumes with the
components it had not finished; ``manifest.json`` is written last and marks the set complete. A larger
budget later rebuilds the components that are too short (deterministically, so the smaller set is a prefix of
the larger one and trials already recorded stay valid).
Finite sources are read once unless the recipe says ``epochs: N``; a recipe short of tokens is a
``BuildError`` that says how many it has and needs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.exceptions import RayTaskError

from raysweep.config import Recipe, SweepConfig, SyntheticSource, TokenizerConfig
from raysweep.errors import DataError
from raysweep.files import write_json
from raysweep.identity import content_hash
from raysweep.recipes.streams import Dedup, Marker, Stream, describe, parts, prepare_models, read_part, resolve_stream
from raysweep.recipes.tokenizer import load_tokenizer

BATCH_BYTES = 2**20
"""Text per Ray Data batch: each batch costs a task and object-store round trips, which at a few hundred
documents cost more than tokenizing them; 1 MiB of text (4 MiB of int32 ids) still streams."""

FORMAT_VERSION = 2

ROW_GROUP_BYTES = 2**18
"""Token bytes per Parquet row group: the unit a trial reads. Drawing one sequence at random decodes its whole
group (~0.5 ms at 256 KiB), while each group costs ~360 bytes of footer that every trial reads (0.14% of the set)."""

MAX_BLOCK_BYTES = 8 * 2**20
"""Largest Ray Data block the build makes. Ray's default (128 MiB) joins a part's batches into blocks that
outgrow a small object store and spill to disk, which made the build several times slower than its work."""

MIN_KEPT_SHARE = 0.01
"""An endless synthetic source whose operators keep less than this share of documents is an error, not a
search through ever more text: such filters are almost certainly set wrong."""


class BuildError(DataError):
    """A recipe cannot be built as asked (too few tokens, unreadable source); the message says what to do."""


@dataclass(frozen=True)
class ShardSet:
    path: Path
    key: str
    num_sequences: int


@dataclass(frozen=True)
class ComponentStats:
    """What one component of a built shard set holds, counted up to the document that completed it."""

    source: str
    weight: float
    """Its share of the set's tokens (normalised)."""
    num_sequences: int
    documents_read: int
    documents_kept: int
    bytes_kept: int
    tokens_kept: int
    removed: dict[str, dict[str, int]]
    """reason → {"documents", "tokens"} the stream's operators removed."""
    stream: dict
    """``streams.describe`` of its stream: the source and the operators that curated it."""


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a complete shard set: written last, so a set without one is still being built."""

    name: str
    key: str
    num_sequences: int
    seq_len: int
    num_tokens: int
    epochs: int
    tokenizer: dict
    bytes_per_token: float
    """UTF-8 bytes of kept text per token: converts nats per token to bits per byte."""
    build_s: float
    components: list[ComponentStats]


@dataclass(frozen=True)
class Component:
    label: str
    """The source's name in the sweep file: what messages and the manifest call it."""
    stream: Stream
    weight: float


def recipe_components(recipe: Recipe, sweep: SweepConfig) -> list[Component]:
    return [Component(c.source, resolve_stream(c.source, sweep.sources), c.weight) for c in recipe.mix]


def validation_components(sweep: SweepConfig) -> dict[str, list[Component]]:
    """One single-component "recipe" per validation domain (a domain may curate a named source)."""
    components = {}
    for domain, source in sweep.validation.domains.items():
        label = f"validation.domains.{domain}"  # cannot collide with a source name
        components[domain] = [Component(label, resolve_stream(label, {**sweep.sources, label: source}), 1.0)]
    return components


def shard_key(components: list[Component], tokenizer: TokenizerConfig, seq_len: int, epochs: int = 1) -> str:
    return content_hash(FORMAT_VERSION, [(describe(c.stream), c.weight) for c in components], tokenizer,
                        seq_len, epochs)


def component_counts(weights: np.ndarray, num_sequences: int) -> np.ndarray:
    """How many of the first `num_sequences` sequences (in stride order) come from each component."""
    order = _stride_order(weights, num_sequences)
    return np.bincount(order[:num_sequences], minlength=len(weights))


def _stride_order(weights: np.ndarray, num_sequences: int) -> np.ndarray:
    """Component index of each position in the stride-scheduled merge, for at least `num_sequences`."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    per_component = np.ceil(weights * num_sequences).astype(np.int64) + 1
    components = np.repeat(np.arange(len(weights)), per_component)
    ranks = np.concatenate([np.arange(n) for n in per_component])
    keys = (ranks + 0.5) / weights[components]
    order = np.lexsort((components, keys))
    return components[order]


def shard_dir(root: Path, name: str, key: str) -> Path:
    """Where recipe ``name``'s shard set with content key ``key`` lives under ``root``."""
    return Path(root).absolute() / f"{name}-{key}"


def build_shards(name: str, components: list[Component], tokenizer: TokenizerConfig, seq_len: int,
                 num_sequences: int, root: Path, epochs: int = 1, key: str | None = None) -> ShardSet:
    """Build (or reuse, or extend) at least `num_sequences` packed sequences of the mixture under `root`.

    `key` is ``shard_key(...)`` when the caller already has it (computing it fingerprints file sources).
    """
    key = key or shard_key(components, tokenizer, seq_len, epochs)
    path = shard_dir(root, name, key)
    manifest = read_manifest(path)
    if manifest and manifest.num_sequences >= num_sequences:
        return ShardSet(path, key, manifest.num_sequences)
    (path / "manifest.json").unlink(missing_ok=True)  # incomplete from here until rewritten
    start = time.perf_counter()
    weights = np.array([c.weight for c in components], dtype=np.float64)
    weights = weights / weights.sum()
    counts = component_counts(weights, num_sequences)
    built = []
    for index, (component, count) in enumerate(zip(components, counts)):
        stats = _build_component(name, index, component, float(weights[index]), int(count), tokenizer, seq_len,
                                 epochs, path / "data" / f"component-{index}")
        built.append(ComponentStats(source=component.label, weight=float(weights[index]), **stats,
                                    stream=describe(component.stream)))
    bytes_kept = sum(c.bytes_kept for c in built)
    tokens_kept = sum(c.tokens_kept for c in built)
    manifest = Manifest(name=name, key=key, num_sequences=num_sequences, seq_len=seq_len,
                        num_tokens=num_sequences * seq_len, epochs=epochs, tokenizer=asdict(tokenizer),
                        bytes_per_token=bytes_kept / max(1, tokens_kept), build_s=time.perf_counter() - start,
                        components=built)
    write_json(path / "manifest.json", asdict(manifest))
    return ShardSet(path, key, num_sequences)


def read_manifest(path: Path) -> Manifest | None:
    """The manifest of a complete shard set, or None while it is missing or being built."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return None
    record = json.loads(manifest.read_text())
    return Manifest(**{**record, "components": [ComponentStats(**c) for c in record["components"]]})


def _build_component(recipe: str, index: int, component: Component, weight: float, count: int,
                     tokenizer: TokenizerConfig, seq_len: int, epochs: int, out_dir: Path) -> dict:
    """Write `count` sequences of one component to `out_dir` (reusing a finished one); return its stats."""
    if count == 0:  # a small budget can leave a light component without a single sequence
        return {"num_sequences": 0, "documents_read": 0, "documents_kept": 0, "bytes_kept": 0, "tokens_kept": 0,
                "removed": {}}

    # Progress files sit outside data/: readers take every file in it for a Parquet shard.
    done = out_dir.parent.parent / "progress" / f"{out_dir.name}.json"
    stats_path = done.with_suffix(".partial.json")
    if done.is_file():
        stats = json.loads(done.read_text())
        if stats["num_sequences"] >= count:
            return stats
    done.unlink(missing_ok=True)
    stream = component.stream
    models = prepare_models(stream)
    reader = stream.reader
    # Synthetic text is endless: start with enough parts for the budget, and read more if filters removed a lot.
    num_synthetic_parts = 2 * math.ceil(count * seq_len / 2**20) + 2
    rows_per_group = max(1, ROW_GROUP_BYTES // (4 * seq_len))  # int32 tokens
    context = ray.data.DataContext.get_current()
    saved = context.execution_options.preserve_order, context.target_max_block_size
    context.execution_options.preserve_order, context.target_max_block_size = True, MAX_BLOCK_BYTES
    try:
        while True:
            shutil.rmtree(out_dir, ignore_errors=True)
            stats_path.unlink(missing_ok=True)
            todo = [{"part": str(part)} for part in parts(reader, epochs, num_synthetic_parts)]
            dataset = ray.data.from_items(todo, override_num_blocks=len(todo)).map_batches(
                _read_part, batch_size=1, fn_kwargs={"reader": reader})
            if stream.operators:
                sequential = any(isinstance(op, Dedup) for op in stream.operators)  # one dedup memory
                pool = (_ordered_actor() if sequential
                        else ray.data.ActorPoolStrategy(min_size=1, max_size=os.cpu_count()))
                dataset = dataset.map_batches(_Mark, batch_format="pyarrow", num_cpus=0.5, compute=pool,
                                              fn_constructor_kwargs={"operators": stream.operators, "models": models})
            dataset = dataset.map_batches(_tokenize, batch_format="pyarrow", fn_kwargs={"tokenizer": tokenizer})
            dataset = dataset.map_batches(_Pack, batch_format="pyarrow", num_cpus=0.1,
                                          compute=_ordered_actor(),
                                          fn_constructor_kwargs={"component": index, "weight": weight,
                                                                 "seq_len": seq_len, "count": count,
                                                                 "stats_path": str(stats_path)})
            dataset = dataset.limit(count)
            dataset.set_name(f"{recipe}-{component.label}")  # what the dashboard's Ray Data view lists
            try:
                dataset.write_parquet(str(out_dir), row_group_size=rows_per_group)
            except Exception as err:  # Ray wraps what a reader raised; a data problem gets its own message
                cause = _data_error(err)
                if cause is None:
                    raise
                # Ray Data appends its retry advice to the message: the data's fault is not transient
                message = str(cause).split("\nFailed to ", 1)[0]
                raise BuildError(f"recipe {recipe!r}, source {component.label!r}: {message}") from None
            stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {"num_sequences": 0}
            if stats["num_sequences"] >= count:
                break
            kept_share = stats.get("documents_kept", 0) / max(1, stats.get("documents_read", 0))
            if not isinstance(reader, SyntheticSource) or kept_share < MIN_KEPT_SHARE:
                raise BuildError(_short_message(recipe, component, stats, count, seq_len, epochs))
            # Enough more parts for the share of documents the operators kept (at most 16 times more per round).
            growth = min(16.0, 1.5 * count / max(1, stats["num_sequences"]))
            num_synthetic_parts = math.ceil(num_synthetic_parts * growth)
    finally:
        context.execution_options.preserve_order, context.target_max_block_size = saved
    os.replace(stats_path, done)
    return stats


def _ordered_actor():
    """One actor that runs its batches strictly in arrival order: stateful steps (dedup, packing) need it.

    With two tasks in flight an actor may start the second before the first, which reorders the stream.
    """
    return ray.data.ActorPoolStrategy(size=1, max_tasks_in_flight_per_actor=1)


def _data_error(err: BaseException) -> DataError | None:
    """The DataError a source raised, from inside the exception chain Ray builds around a failing task (Ray's own
    wrappers also pass for a DataError, with the task's name and traceback in their message: they are unwrapped)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, DataError) and not isinstance(err, RayTaskError):
            return err
        seen.add(id(err))
        err = getattr(err, "cause", None) or err.__cause__ or err.__context__
    return None


def _short_message(recipe: str, component: Component, stats: dict, count: int, seq_len: int, epochs: int) -> str:
    have, removed = stats.get("num_sequences", 0), stats.get("removed", {})
    why = (f" after its filters removed {sum(r['documents'] for r in removed.values()):,} of "
           f"{stats.get('documents_read', 0):,} documents" if removed else "")
    if isinstance(component.stream.reader, SyntheticSource):
        advice = "Loosen the filters (thresholds, kept buckets) or generate cleaner text."
    else:
        why = f" in {epochs} epoch(s){why}"
        advice = (f"Add data, lower the largest run's tokens_per_param, or allow repetition with "
                  f"`epochs: {epochs + 1}` in the recipe.")
    return (f"recipe {recipe!r}: source {component.label!r} gives {have:,} sequences ({have * seq_len:,} tokens)"
            f"{why}; its largest run needs {count:,} ({count * seq_len:,} tokens). {advice}")


def _read_part(batch: dict[str, np.ndarray], reader) -> object:
    """A generator UDF: the documents of one part, in batches of about ``BATCH_BYTES`` of text, none marked yet."""
    documents: list[str] = []
    size = 0
    for doc in read_part(reader, str(batch["part"][0])):  # a chunk number names the same text as an int
        documents.append(doc)
        size += len(doc)
        if size >= BATCH_BYTES:
            yield _unmarked(documents)
            documents, size = [], 0
    if documents:
        yield _unmarked(documents)


def _unmarked(documents: list[str]) -> pa.Table:
    return pa.table({"text": pa.array(documents, pa.string()), "reason": pa.array([""] * len(documents), pa.string())})


class _Mark:
    """Ray Data actor around ``Marker``: deduplication state lives as long as the pipeline."""

    def __init__(self, operators, models):
        self.marker = Marker(operators, models)

    def __call__(self, batch: pa.Table) -> pa.Table:
        reasons = self.marker.mark(batch.column("text").to_pylist(), batch.column("reason").to_pylist())
        return batch.set_column(1, "reason", pa.array(reasons, pa.string()))


@cache
def _tokenizer(config: TokenizerConfig):
    """One tokenizer per worker process: loading a Hugging Face tokenizer costs far more than a batch."""
    return load_tokenizer(config)


def _tokenize(batch: pa.Table, tokenizer: TokenizerConfig) -> pa.Table:
    """One row per document: its ids (empty when removed), its size in tokens and bytes, why it was removed."""
    texts, reasons = batch.column("text"), batch.column("reason")
    ids, lengths = _tokenizer(tokenizer).encode_batch(texts.to_pylist())  # removed documents too: the manifest
    kept = pc.equal(reasons, "").to_numpy(zero_copy_only=False)            # counts their tokens
    if not kept.all():
        ids = ids[np.repeat(kept, lengths)]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(np.where(kept, lengths, 0), out=offsets[1:])
    return pa.table({"ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids, pa.int32())),
                     "num_tokens": pa.array(lengths, pa.int64()),
                     "num_bytes": pc.binary_length(texts).cast(pa.int64()),
                     "reason": reasons})


class _Pack:
    """Ray Data actor: cuts the kept documents' ids into sequences, in order, and counts what went into them.

    Counts stop at the document that completes the component's last sequence, so the stats describe exactly
    the documents read to build it; they are saved after every batch for the build to read.
    """

    def __init__(self, component: int, weight: float, seq_len: int, count: int, stats_path: str):
        self.component, self.weight, self.seq_len, self.count = component, weight, seq_len, count
        self.stats_path = Path(stats_path)
        self.buffer = np.zeros(0, dtype=np.int32)
        self.stats = {"num_sequences": 0, "documents_read": 0, "documents_kept": 0, "bytes_kept": 0,
                      "tokens_kept": 0, "removed": {}}

    def __call__(self, batch: pa.Table) -> pa.Table:
        first = made = self.stats["num_sequences"]
        ids_column = batch.column("ids").combine_chunks()
        offsets, values = ids_column.offsets.to_numpy(), ids_column.values.to_numpy()
        reasons = batch.column("reason").to_numpy(zero_copy_only=False)
        num_tokens, num_bytes = batch.column("num_tokens").to_numpy(), batch.column("num_bytes").to_numpy()
        # A document is used while the sequences made and pending fall short of the count: the tokens of the
        # kept documents before it (and the buffer) are fewer than the count's remaining tokens.
        kept_before = np.cumsum(offsets[1:] - offsets[:-1]) - (offsets[1:] - offsets[:-1])
        used = int(np.searchsorted(kept_before, (self.count - made) * self.seq_len - len(self.buffer)))
        self._count(reasons[:used], num_tokens[:used], num_bytes[:used])
        stream = np.concatenate([self.buffer, values[offsets[0]:offsets[used]]])  # removed documents have no ids
        usable = min(len(stream) // self.seq_len, self.count - made)
        ids, self.buffer = stream[:usable * self.seq_len], stream[usable * self.seq_len:]
        made += usable
        self.stats["num_sequences"] = made
        write_json(self.stats_path, self.stats)
        ranks = np.arange(first, made)
        return pa.table({
            "component": pa.array(np.full(len(ranks), self.component, dtype=np.int32)),
            "order_key": pa.array((ranks + 0.5) / self.weight),
            "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids, type=pa.int32()), self.seq_len),
        })

    def _count(self, reasons: np.ndarray, num_tokens: np.ndarray, num_bytes: np.ndarray) -> None:
        stats = self.stats
        kept = reasons == ""
        stats["documents_read"] += len(reasons)
        stats["documents_kept"] += int(kept.sum())
        stats["bytes_kept"] += int(num_bytes[kept].sum())
        stats["tokens_kept"] += int(num_tokens[kept].sum())
        for reason in dict.fromkeys(reasons[~kept]):  # in the order first met, as the manifest lists them
            removed, mine = stats["removed"].setdefault(reason, {"documents": 0, "tokens": 0}), reasons == reason
            removed["documents"] += int(mine.sum())
            removed["tokens"] += int(num_tokens[mine].sum())
