"""Build a recipe into packed token shards with Ray Data, once, cached by content.

A recipe is a weighted mixture of sources. Each source is read as a deterministic stream of chunks;
a Ray Data task turns one chunk into documents, tokenizes them and packs the ids into fixed-length
sequences. Sequences of the whole recipe are ordered by *stride scheduling* over the token weights: the
k-th sequence of component c gets the order key (k + 0.5) / w_c, and readers take sequences in key order.
Any prefix of that order is then mixed at the recipe's weights to within one sequence per component,
so a small proxy and a large target read the same mixture at different budgets from one build::

    shards = build_shards("web-heavy", components, tokenizer_cfg, seq_len=64, num_sequences=20000, root)
    ids = read_sequences(shards.path, 5000)        # int32 [5000, 64], the first 5000 in mixture order

Shards live at ``<root>/<name>-<hash>/`` where the hash covers the mixture, the sources' specs, the
tokenizer and the sequence length. A larger budget later rebuilds the set (the smaller one is a prefix
of it, so trials already recorded stay valid); a build that dies half-way leaves only a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.config import Source, TokenizerConfig, content_hash
from raysweep.recipes import synthetic
from raysweep.recipes.tokenizer import load_tokenizer

SEQUENCES_PER_CHUNK = 256
"""Sequences one Ray Data task produces: large enough to amortise a task, small enough to stream."""

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ShardSet:
    path: Path
    key: str
    num_sequences: int


def shard_key(components: list[tuple[Source, float]], tokenizer: TokenizerConfig, seq_len: int) -> str:
    return content_hash(FORMAT_VERSION, components, tokenizer, seq_len)


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


def build_shards(name: str, components: list[tuple[Source, float]], tokenizer: TokenizerConfig, seq_len: int,
                 num_sequences: int, root: Path) -> ShardSet:
    """Build (or reuse) at least `num_sequences` packed sequences of the mixture under `root`."""
    import ray

    key = shard_key(components, tokenizer, seq_len)
    path = Path(root).absolute() / f"{name}-{key}"
    built = _built_sequences(path)
    if built >= num_sequences:
        return ShardSet(path, key, built)
    weights = np.array([w for _, w in components], dtype=np.float64)
    weights = weights / weights.sum()
    counts = component_counts(weights, num_sequences)
    tasks = [{"component": c, "chunk": chunk, "first": chunk * SEQUENCES_PER_CHUNK,
              "keep": min(SEQUENCES_PER_CHUNK, int(counts[c]) - chunk * SEQUENCES_PER_CHUNK)}
             for c in range(len(components)) for chunk in range(-(-int(counts[c]) // SEQUENCES_PER_CHUNK))]
    staging = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    dataset = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        _build_chunk, batch_size=1, batch_format="numpy",
        fn_kwargs={"sources": [s for s, _ in components], "weights": weights, "tokenizer": tokenizer,
                   "seq_len": seq_len})
    dataset.write_parquet(str(staging / "data"))
    manifest = {"name": name, "key": key, "num_sequences": num_sequences, "seq_len": seq_len,
                "num_tokens": num_sequences * seq_len,
                "components": [{"source": content_hash(s), "spec": asdict(s), "weight": float(w),
                                "num_sequences": int(n)} for (s, _), w, n in zip(components, weights, counts)]}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if path.exists():
        shutil.rmtree(path)
    staging.rename(path)
    return ShardSet(path, key, num_sequences)


def _built_sequences(path: Path) -> int:
    manifest = path / "manifest.json"
    return json.loads(manifest.read_text())["num_sequences"] if manifest.is_file() else 0


def _build_chunk(batch: dict[str, np.ndarray], sources: list[Source], weights: np.ndarray,
                 tokenizer: TokenizerConfig, seq_len: int) -> pa.Table:
    """One chunk of one component: documents → ids → `keep` packed sequences with their order keys."""
    component, chunk = int(batch["component"][0]), int(batch["chunk"][0])
    first, keep = int(batch["first"][0]), int(batch["keep"][0])
    source = sources[component]
    ids = _chunk_tokens(source, chunk, load_tokenizer(tokenizer), SEQUENCES_PER_CHUNK * seq_len)
    sequences = ids[: keep * seq_len]
    ranks = np.arange(first, first + keep)
    return pa.table({
        "component": pa.array(np.full(keep, component, dtype=np.int32)),
        "order_key": pa.array((ranks + 0.5) / weights[component]),
        "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(sequences, type=pa.int32()), seq_len),
    })


def _chunk_tokens(source: Source, chunk: int, tokenizer, num_tokens: int) -> np.ndarray:
    """At least `num_tokens` ids of chunk `chunk` of `source`; the same chunk always gives the same ids."""
    seed = int.from_bytes(hashlib.sha256(f"{source.seed}:{chunk}".encode()).digest()[:8], "little") >> 1
    # The byte tokenizer yields at least one id per byte, so this many bytes always suffice.
    documents = synthetic.generate_documents(
        source.domain, num_tokens, seed, low_quality_frac=source.low_quality_frac,
        duplicate_frac=source.duplicate_frac, repetition_frac=source.repetition_frac)
    ids = tokenizer.encode_documents(documents)
    assert len(ids) >= num_tokens, "a chunk produced fewer tokens than requested"
    return ids[:num_tokens]


def read_sequences(path: Path, num_sequences: int) -> np.ndarray:
    """The first `num_sequences` packed sequences in mixture order, as int32 [num_sequences, seq_len]."""
    table = pq.read_table(Path(path) / "data")
    if table.num_rows < num_sequences:
        raise ValueError(f"{path} holds {table.num_rows} sequences; {num_sequences} are needed")
    table = table.sort_by([("order_key", "ascending"), ("component", "ascending")]).slice(0, num_sequences)
    column = table.column("input_ids").combine_chunks()
    return column.flatten().to_numpy().reshape(num_sequences, column.type.list_size)
