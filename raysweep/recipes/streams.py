"""A source and its curation operators as one stream of documents, split into parts that read in parallel.

The sweep file names sources, and a ``filtered`` source names the source it curates; ``resolve_stream``
follows those names to a self-contained ``Stream``: one reader (synthetic, files or a Hugging Face
dataset) and the operators applied to what it reads, in order::

    sources = {"dclm": FileSource("jsonl", "/data/dclm/*.jsonl"),
               "dclm-L": FilteredSource("filtered", "dclm", dedup="exact", repetition=RepetitionFilter("dedup-L"))}
    stream = resolve_stream("dclm-L", sources)   # Stream(reader=FileSource(...), operators=(Dedup, Repetition))

A reader is cut into *parts* (a file, or a chunk of the synthetic corpus) that Ray Data reads as separate
tasks, always in the same order, so a build is deterministic. ``describe`` gives the plain data that names
a stream's content in cache keys: file sources are named by a fingerprint of their bytes, not their path,
so moving a corpus keeps its caches and editing one byte invalidates them.

Operators *mark* documents instead of dropping them (``reasons[i]`` is the first reason a document was
removed, "" while kept), so the build can count what each operator removed, in documents and tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raysweep.config import FileSource, FilteredSource, HFSource, PerplexityFilter, Source, SyntheticSource
from raysweep.identity import content_hash
from raysweep.recipes import filters, ngram, sources as readers, synthetic

Reader = SyntheticSource | FileSource | HFSource

SYNTHETIC_PART_BYTES = 1 << 20
"""Text one synthetic part generates: about a second of work, so parts amortise a Ray task."""


@dataclass(frozen=True)
class Dedup:
    kind: str
    """"exact" or "minhash"."""


@dataclass(frozen=True)
class Repetition:
    thresholds: dict[str, float]


@dataclass(frozen=True)
class Perplexity:
    config: PerplexityFilter
    reference: Stream | None
    """The stream that trains the n-gram model; None when the user gives a KenLM model."""


Operator = Dedup | Repetition | Perplexity


@dataclass(frozen=True)
class Stream:
    reader: Reader
    operators: tuple[Operator, ...] = ()


def resolve_stream(name: str, sources: dict[str, Source]) -> Stream:
    """Follow `filtered` sources down to their reader; operators of inner sources run first."""
    source = sources[name]
    if not isinstance(source, FilteredSource):
        return Stream(source)
    inner = resolve_stream(source.source, sources)
    operators: list[Operator] = []
    if source.dedup:
        operators.append(Dedup(source.dedup))
    if source.repetition:
        operators.append(Repetition(filters.resolve_thresholds(source.repetition.preset,
                                                               source.repetition.thresholds)))
    if source.perplexity:
        config = source.perplexity
        reference = None if config.kenlm_model else resolve_stream(config.reference, sources)
        operators.append(Perplexity(config, reference))
    return Stream(inner.reader, inner.operators + tuple(operators))


def split_glob(pattern: str) -> tuple[Path, str]:
    """``/data/c4/**/*.jsonl`` → (``/data/c4``, ``**/*.jsonl``): the folder a glob starts from, and the rest."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if any(ch in part for ch in "*?[")), len(parts) - 1)
    return Path(*parts[:fixed]), str(Path(*parts[fixed:]))


def _fingerprint(pattern: str) -> str:
    """Names files by content and by their path below the glob's folder, so a moved corpus keeps its key.

    Planning, building and showing a sweep name the same files many times in one process: the content hash
    is reused while every file keeps its size and modification time.
    """
    base_dir, relative = split_glob(pattern)
    stats = tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns)
                  for path in readers.match_files(relative, base_dir=base_dir))
    return _content_fingerprint(base_dir, relative, stats)


@functools.cache
def _content_fingerprint(base_dir: Path, relative: str, file_stats: tuple) -> str:
    """`file_stats` ((path, size, mtime) per file) only keys the cache: a touched file is hashed again."""
    return readers.fingerprint_files(relative, base_dir=base_dir)


@functools.cache
def _hf_fingerprint(name: str, config: str | None, split: str, path: Path | None) -> str:
    return readers.fingerprint_hf(name, config, split, path=path)


def describe(stream: Stream) -> dict:
    """Plain data naming what a stream yields: its cache key hashes this (file readers by their bytes)."""
    reader = dataclasses.asdict(stream.reader)
    if isinstance(stream.reader, FileSource):
        reader["path"] = _fingerprint(stream.reader.path)
    elif isinstance(stream.reader, HFSource):
        path = Path(stream.reader.path) if stream.reader.path else None
        reader["path"] = _hf_fingerprint(stream.reader.name, stream.reader.config, stream.reader.split, path)
    operators = []
    for operator in stream.operators:
        if isinstance(operator, Perplexity):
            config = dataclasses.asdict(operator.config)
            if operator.config.kenlm_model:
                config["kenlm_model"] = _fingerprint(operator.config.kenlm_model)
            reference = describe(operator.reference) if operator.reference else None
            operators.append({"perplexity": config, "reference": reference})
        else:
            operators.append({type(operator).__name__.lower(): dataclasses.asdict(operator)})
    return {"reader": reader, "operators": operators}


# ---------------------------------------------------------------------------------------------
# Reading


def parts(reader: Reader, epochs: int, num_synthetic_parts: int) -> list[int | str]:
    """What Ray Data reads, in order: each file's path once per epoch, or `num_synthetic_parts` chunk numbers."""
    if isinstance(reader, SyntheticSource):
        return list(range(num_synthetic_parts))  # endless: every chunk is new text
    if isinstance(reader, FileSource):
        base_dir, pattern = split_glob(reader.path)
        return [str(path) for _ in range(epochs) for path in readers.match_files(pattern, base_dir=base_dir)]
    return [0] * epochs


def read_part(reader: Reader, part: int | str) -> Iterator[str]:
    """Documents of one part, in order; the same part always yields the same documents."""
    if isinstance(reader, SyntheticSource):
        seed = int.from_bytes(hashlib.sha256(f"{reader.seed}:{part}".encode()).digest()[:8], "little") >> 1
        return iter(synthetic.generate_documents(
            reader.domain, SYNTHETIC_PART_BYTES, seed, low_quality_frac=reader.low_quality_frac,
            duplicate_frac=reader.duplicate_frac, repetition_frac=reader.repetition_frac))
    if isinstance(reader, FileSource):
        path = Path(part)
        return readers.iter_file_documents(glob.escape(path.name), reader.type, reader.text_field, base_dir=path.parent)
    path = Path(reader.path) if reader.path else None
    return readers.iter_hf_documents(reader.name, reader.config, reader.split, reader.text_field, path=path)


def iter_documents(reader: Reader) -> Iterator[str]:
    """Every document of a reader in order, one epoch (endless for the synthetic corpus)."""
    numbered = itertools.count() if isinstance(reader, SyntheticSource) else parts(reader, 1, 0)
    return (doc for part in numbered for doc in read_part(reader, part))


# ---------------------------------------------------------------------------------------------
# Operators


class Marker:
    """Applies prepared operators to batches of documents, recording the first reason each is removed.

    Stateful: deduplicators remember every document kept so far, so one Marker must see the whole stream
    in order (the build runs it as a single Ray Data actor). Stateless operators are cheap to share.
    """

    def __init__(self, operators: tuple[Operator, ...], models: dict[int, tuple[object, tuple[float, float]]]):
        self.steps = []
        for i, operator in enumerate(operators):
            if isinstance(operator, Dedup):
                dedup = filters.ExactDeduplicator() if operator.kind == "exact" else filters.MinHashDeduplicator()
                reason = "exact duplicate" if operator.kind == "exact" else "near duplicate"
                self.steps.append(lambda text, d=dedup, r=reason: r if d.is_duplicate(text) else "")
            elif isinstance(operator, Repetition):
                self.steps.append(lambda text, t=operator.thresholds: _repetition_reason(text, t))
            else:
                model, cutoffs = models[i]
                keep = set(operator.config.keep)
                self.steps.append(lambda text, m=model, c=cutoffs, k=keep: _bucket_reason(text, m, c, k))

    def mark(self, texts: list[str], reasons: list[str]) -> list[str]:
        out = list(reasons)
        for step in self.steps:
            out = [reason or step(text) for text, reason in zip(texts, out)]
        return out


def _repetition_reason(text: str, thresholds: dict[str, float]) -> str:
    failed = filters.failing_measurements(filters.repetition_stats(text), thresholds)
    return f"repetition: {failed[0]}" if failed else ""


def _bucket_reason(text: str, model, cutoffs: tuple[float, float], keep: set[str]) -> str:
    bucket = ngram.bucket_of(model.perplexity(text), cutoffs)
    return "" if bucket in keep else f"perplexity: {bucket}"


def prepare_models(stream: Stream) -> dict[int, tuple[object, tuple[float, float]]]:
    """For each perplexity operator: its n-gram model and tercile cutoffs, from the stream read up to it.

    The model trains on the first `reference_bytes` of the reference source (or is the user's KenLM model);
    the cutoffs come from the first `calibration_documents` documents that reach the operator.
    """
    models: dict[int, tuple[object, tuple[float, float]]] = {}
    for i, operator in enumerate(stream.operators):
        if not isinstance(operator, Perplexity):
            continue
        config = operator.config
        if config.kenlm_model:
            model = ngram.KenLMModel(config.kenlm_model)
        else:
            model = _reference_model(operator.reference, config.reference_bytes, config.order)
        marker = Marker(stream.operators[:i], models)
        kept = (doc for doc, reason in _marked(stream.reader, marker) if not reason)
        scores = np.array([model.perplexity(doc) for doc in itertools.islice(kept, config.calibration_documents)])
        if scores.size == 0:
            raise readers.SourceError("perplexity filter: no documents reach it to place its cutoffs")
        models[i] = (model, ngram.perplexity_cutoffs(scores))
    return models


_REFERENCE_MODELS: dict[str, ngram.KneserNeyModel] = {}


def _reference_model(reference: Stream, num_bytes: int, order: int) -> ngram.KneserNeyModel:
    """The Kneser-Ney model of a reference, trained once per process for each (reference, bytes, order), by
    content: every recipe and component curated against the same reference shares it."""
    key = content_hash(describe(reference), num_bytes, order)
    if key not in _REFERENCE_MODELS:
        _REFERENCE_MODELS[key] = ngram.KneserNeyModel.train(_first_bytes(reference, num_bytes), order)
    return _REFERENCE_MODELS[key]


def _marked(reader: Reader, marker: Marker) -> Iterator[tuple[str, str]]:
    for doc in iter_documents(reader):
        yield doc, marker.mark([doc], [""])[0]


def _first_bytes(stream: Stream, num_bytes: int) -> Iterator[str]:
    """Kept documents of a stream until `num_bytes` of text have been yielded."""
    marker = Marker(stream.operators, prepare_models(stream))
    total = 0
    for doc, reason in _marked(stream.reader, marker):
        if total >= num_bytes:
            return
        if not reason:
            total += len(doc.encode("utf-8"))
            yield doc
