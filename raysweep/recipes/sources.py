"""Readers of real text corpora: local files and Hugging Face datasets, streamed as one document at a time.

Every reader returns a lazy iterator of strings, so a recipe build holds one batch of documents in memory
however large the corpus is. Opening checks what can be checked up front (the glob matches files, the
dataset exists) and raises :class:`SourceError` at once; a problem inside a file (a bad JSON line, a
missing field) is raised when the reader reaches it, naming the file and line::

    docs = iter_file_documents("c4/en/*.jsonl.gz", "jsonl", base_dir=Path("/data"))
    first = next(docs)                          # reads one line of the first file, nothing more
    key = fingerprint_files("c4/en/*.jsonl.gz", base_dir=Path("/data"))   # changes when the files do

File formats:

- ``jsonl``: one JSON object per line; blank lines are skipped; ``.gz`` files are decompressed on the fly.
- ``parquet``: read one batch of rows at a time, and only the text column.
- ``text``: **one file is one document** (a book, a source file); ``.gz`` is decompressed. Split a large
  plain-text corpus into files, or convert it to JSONL: a text file is read whole.

Files are read in sorted path order, so the same glob always gives the same stream.

Hugging Face datasets are read with ``datasets`` in streaming mode, never downloaded whole. Offline
(``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1``, or the hub does not answer a 2 s probe) they come from
the local caches: a snapshot fetched with ``hf download <name> --repo-type dataset`` (the hub cache), or a
dataset ``load_dataset`` prepared earlier (the datasets cache). Without the probe a missing dataset takes
``datasets`` about 25 s of retries to fail; with it, at most the probe's 2 s (0.04 s where DNS fails at once).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import IO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.errors import DataError

FileFormat = Literal["jsonl", "parquet", "text"]

PARQUET_BATCH_ROWS = 1024
"""Rows per Parquet read: a few MiB of text, so memory stays bounded whatever the row-group size."""

HF_BATCH_ROWS = 1024

FULL_HASH_MAX_BYTES = 64 << 20
"""Files up to this size are fingerprinted by their whole content (~0.1 s per 64 MiB with SHA-256)."""

SAMPLE_BLOCK_BYTES = 1 << 20
NUM_SAMPLE_BLOCKS = 16
"""Larger files are fingerprinted by size, mtime and this many evenly spaced 1 MiB blocks."""

HUB_PROBE_TIMEOUT_S = 2.0


class SourceError(DataError):
    """A source cannot be read: the message says which file or dataset, what is wrong and what would fix it."""


# ---------------------------------------------------------------------------------------------
# Local files


def iter_file_documents(paths_glob: str, format: FileFormat, text_field: str = "text", *,
                        base_dir: Path) -> Iterator[str]:
    """Documents of every file matching `paths_glob` (relative to `base_dir`, ``**`` recurses), in path order."""
    readers = {"jsonl": _read_jsonl, "parquet": _read_parquet, "text": _read_text}
    if format not in readers:
        raise SourceError(f"unknown file format {format!r}; expected one of: {', '.join(readers)}")
    paths = match_files(paths_glob, base_dir=base_dir)  # eager: a glob that matches nothing fails at the call
    return (doc for path in paths for doc in readers[format](path, text_field))


def match_files(paths_glob: str, *, base_dir: Path) -> list[Path]:
    """Files matching `paths_glob` (absolute, or relative to `base_dir`), sorted; none is an error."""
    base_dir = Path(base_dir).absolute()
    paths = sorted(Path(p) for p in glob.glob(os.path.join(base_dir, paths_glob), recursive=True)
                   if os.path.isfile(p))
    if not paths:
        raise SourceError(f"no files match {paths_glob!r} (looked in {base_dir})")
    return paths


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    with _reading(path), _open_text(path) as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise SourceError(f"{path}:{line_no}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict) or text_field not in record:
                fields = ", ".join(record) if isinstance(record, dict) else f"none (a JSON {type(record).__name__})"
                raise SourceError(f"{path}:{line_no}: no field {text_field!r}; fields are: {fields}")
            text = record[text_field]
            if not isinstance(text, str):
                raise SourceError(f"{path}:{line_no}: field {text_field!r} is {type(text).__name__}, not a string")
            yield text


def _read_parquet(path: Path, text_field: str) -> Iterator[str]:
    with pq.ParquetFile(path) as parquet:
        schema = parquet.schema_arrow
        if text_field not in schema.names:
            raise SourceError(f"{path}: no field {text_field!r}; fields are: {', '.join(schema.names)}")
        column_type = schema.field(text_field).type
        if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)
                or pa.types.is_string_view(column_type)):
            raise SourceError(f"{path}: field {text_field!r} has type {column_type}, not string")
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field]):
            column = batch.column(0)
            if column.null_count:
                raise SourceError(f"{path}: field {text_field!r} is null in {column.null_count} rows")
            yield from column.to_pylist()


def _read_text(path: Path, text_field: str) -> Iterator[str]:
    with _reading(path), _open_text(path) as file:
        yield file.read()


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except (gzip.BadGzipFile, EOFError) as err:
        raise SourceError(f"{path}: not a complete gzip file ({err})") from None


def fingerprint_files(paths_glob: str, *, base_dir: Path) -> str:
    """A hash of the matched files' names and contents: any edit, addition or removal changes it.

    Files up to `FULL_HASH_MAX_BYTES` are hashed whole, so a one-byte edit is always seen and a copy
    (new mtimes) keeps the fingerprint. Larger files hash their size, mtime and `NUM_SAMPLE_BLOCKS`
    evenly spaced blocks: a copy of one then looks changed (a needless rebuild, never a stale cache), and
    an edit that keeps the size and the mtime and misses every block goes unseen. Names are relative to
    `base_dir`, so moving the whole corpus keeps the fingerprint.
    """
    base_dir = Path(base_dir).absolute()
    digest = hashlib.sha256()
    for path in match_files(paths_glob, base_dir=base_dir):
        name = path.relative_to(base_dir).as_posix() if path.is_relative_to(base_dir) else path.as_posix()
        digest.update(f"{name}\0{_file_fingerprint(path)}\n".encode())
    return digest.hexdigest()[:32]


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    with open(path, "rb") as file:
        if stat.st_size <= FULL_HASH_MAX_BYTES:
            return f"{stat.st_size}:{hashlib.file_digest(file, 'sha256').hexdigest()}"
        digest = hashlib.sha256()
        last_offset = stat.st_size - SAMPLE_BLOCK_BYTES
        for i in range(NUM_SAMPLE_BLOCKS):
            file.seek(last_offset * i // (NUM_SAMPLE_BLOCKS - 1))  # the first and the last block included
            digest.update(file.read(SAMPLE_BLOCK_BYTES))
        return f"{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()}"


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets


def iter_hf_documents(name: str, config: str | None = None, split: str = "train", text_field: str = "text", *,
                      path: Path | None = None, data_dir: str | None = None) -> Iterator[str]:
    """Documents of one split of a Hugging Face dataset, streamed; from `path` when it is given.

    `path` is a local copy: a ``save_to_disk`` folder (memory-mapped Arrow) or a folder of data files laid
    out like a hub repository (what ``hf download`` writes). `name` then only labels errors.
    """
    dataset = _open_hf(name, config, split, path, data_dir)  # eager: a missing dataset fails at the call
    label = f"dataset {name!r} (split {split!r})"
    return _iter_text_column(dataset, text_field, label)


def read_cached_hf_rows(name: str, config: str | None, split: str) -> list[dict]:
    """Every row of one split of a hub dataset, as dicts, from the local Hugging Face caches only: offline whatever
    the network (a ``SourceError`` with the fetch command when it is not cached)."""
    with _datasets_offline():
        dataset = _open_hf(name, config, split, None, None)
        return [row for batch in dataset.iter(batch_size=HF_BATCH_ROWS)
                for row in (dict(zip(batch, values)) for values in zip(*batch.values()))]


def fingerprint_hf(name: str, config: str | None = None, split: str = "train", *, path: Path | None = None,
                   data_dir: str | None = None) -> str:
    """A hash naming the content that `iter_hf_documents` with the same arguments reads.

    - a ``save_to_disk`` folder: the fingerprint ``datasets`` keeps in it (it changes with every transform
      saved, but not if the Arrow files are edited by hand);
    - a folder of data files: :func:`fingerprint_files` over all of them;
    - a hub dataset: ``datasets``' hash of its builder: the hub commit online, the snapshot's commit in
      the hub cache, or the prepared cache's hash offline. Online, the commit is the one the stream starts
      from; a push to the hub between fingerprinting and reading is not seen.
    """
    parts: list[object] = [config, split, data_dir]
    if path is not None and _is_saved_dataset(Path(path)):
        parts.append(_load_saved(Path(path), split)._fingerprint)
    elif path is not None:
        parts.append(fingerprint_files("**/*", base_dir=_existing_dir(Path(path))))
    else:
        builder = _hub_builder(name, config, data_dir)
        parts += [builder.config_id, builder.hash]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _open_hf(name: str, config: str | None, split: str, path: Path | None, data_dir: str | None):
    """A `datasets.Dataset` (saved folder) or `IterableDataset` (anything else) for the split."""
    if path is not None and _is_saved_dataset(Path(path)):
        return _load_saved(Path(path), split)
    if path is not None:
        builder = _builder(str(_existing_dir(Path(path))), config, data_dir, f"dataset {str(path)!r}")
    else:
        builder = _hub_builder(name, config, data_dir)
    try:
        return builder.as_streaming_dataset(split=split)
    except ValueError as err:  # datasets says "Bad split: ... Available splits: [...]"
        raise SourceError(f"dataset {name!r}: {err}") from None


def _iter_text_column(dataset, text_field: str, label: str) -> Iterator[str]:
    names = dataset.column_names  # None for a stream whose features are only known once read
    if names is not None:
        if text_field not in names:
            raise SourceError(f"{label}: no field {text_field!r}; fields are: {', '.join(names)}")
        dataset = dataset.select_columns([text_field])  # other columns are never decoded
    for batch in dataset.iter(batch_size=HF_BATCH_ROWS):
        if text_field not in batch:
            raise SourceError(f"{label}: no field {text_field!r}; fields are: {', '.join(batch)}")
        for text in batch[text_field]:
            if not isinstance(text, str):
                raise SourceError(f"{label}: field {text_field!r} holds a {type(text).__name__}, not a string")
            yield text


def _is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _existing_dir(path: Path) -> Path:
    if not path.is_dir():
        raise SourceError(f"dataset path {str(path)!r} is not a directory")
    return path.absolute()


def _load_saved(path: Path, split: str):
    import datasets

    saved = datasets.load_from_disk(str(path))
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise SourceError(f"{path}: no split {split!r}; splits are: {', '.join(saved)}")
        return saved[split]
    return saved


def _builder(path_or_name: str, config: str | None, data_dir: str | None, label: str):
    import datasets

    try:
        return datasets.load_dataset_builder(path_or_name, config, data_dir=data_dir)
    except (ValueError, FileNotFoundError) as err:  # unknown config, no data files, not on the hub
        raise SourceError(f"{label}: {err}") from None


def _hub_builder(name: str, config: str | None, data_dir: str | None):
    """The builder for a hub dataset: from the hub when it answers, else from the local caches, fast."""
    import datasets
    from huggingface_hub import constants, snapshot_download

    label = f"dataset {name!r}" + (f" (config {config!r})" if config else "")
    if _hub_reachable(constants.ENDPOINT):
        return _builder(name, config, data_dir, label)
    try:
        snapshot = snapshot_download(name, repo_type="dataset", local_files_only=True)
    except FileNotFoundError:  # not in the hub cache: try the datasets cache
        pass
    else:
        return _builder(snapshot, config, data_dir, label)
    offline_because = ("offline mode is on (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE)" if datasets.config.HF_HUB_OFFLINE
                       else f"the hub ({constants.ENDPOINT}) did not answer within {HUB_PROBE_TIMEOUT_S:g} s")
    try:
        with _datasets_offline():
            return datasets.load_dataset_builder(name, config, data_dir=data_dir)
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        detail = "" if isinstance(err, ConnectionError) else f" ({err})"  # e.g. the configs that are cached
        raise SourceError(
            f"{label} is not in the local Hugging Face caches ({constants.HF_HUB_CACHE}, "
            f"{datasets.config.HF_DATASETS_CACHE}){detail} and {offline_because}. On a machine with network "
            f"run `hf download {name} --repo-type dataset` (add --include to fetch part of it) and copy "
            f"{constants.HF_HUB_CACHE} here, or point `path:` at a local copy.") from None


def _hub_reachable(endpoint: str) -> bool:
    """False in offline mode (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE) or when the hub gives no answer."""
    import datasets

    return not datasets.config.HF_HUB_OFFLINE and _hub_answers(endpoint)


@cache
def _hub_answers(endpoint: str) -> bool:
    """Whether `endpoint` answers within `HUB_PROBE_TIMEOUT_S`, asked once per process.

    Without this probe ``datasets`` retries an unreachable hub for ~25 s before it looks at its cache.
    """
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception:  # any failure to get an answer (DNS, refused, timeout, proxy) means offline
        return False
    return True


@contextlib.contextmanager
def _datasets_offline() -> Iterator[None]:
    """Offline mode for ``datasets`` for one call: it reads the environment variable only at import.

    It flips a module global, so another thread loading a dataset meanwhile is offline too (harmless:
    Ray Data runs tasks in processes, and this is only reached when the hub is out of reach anyway).
    """
    import datasets

    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = saved
