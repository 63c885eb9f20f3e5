"""Random access to the first N packed sequences of a shard set, in mixture order, without reading the set.

A shard set is built for the largest trial of its recipe and can be tens of GB; a trial needs only its prefix,
one batch at a time. Each component's sequences lie in row groups of consecutive ranks (``build.ROW_GROUP_BYTES``
of tokens each), and the ``order_key`` statistics in the Parquet footers bound the keys each group holds. So the
reader

1. reads every file's footer and keeps the row groups whose smallest key can fall in the prefix;
2. reads the ``order_key`` and ``component`` columns of those only, and sorts them as the mixture order does
   (ascending key, then component), to map each of the first N positions to (row group, row);
3. decodes a row group's ``input_ids`` when a batch first needs it, into an LRU cache of ``CACHE_BYTES``::

    reader = SequenceReader(shards.path, 5000)
    batch = reader.take(order[:16])     # int32 [16, seq_len], rows in the order asked
    everything = reader.read_all()      # int32 [5000, seq_len]: the first 5000 sequences in mixture order
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq

CACHE_BYTES = 256 * 2**20
"""Decoded row groups one reader keeps. A demo trial's whole prefix (a few MB) fits, so after its first epoch
touches every group a batch is a copy from memory, as fast as holding the prefix in one array; a paper-size prefix
(GBs) stays within this bound (plus the group being read), well below a GPU worker's memory."""

_KEYS = ["order_key", "component"]


class SequenceReader:
    """The first `num_sequences` sequences of the shard set at `path`, in mixture order, read on demand."""

    def __init__(self, path: Path, num_sequences: int):
        data = ds.dataset(Path(path) / "data", format="parquet")  # the files a whole-set read would take
        self._seq_len = data.schema.field("input_ids").type.list_size
        files, indices, sizes, lows, highs = _row_groups(data.files)
        if sizes.sum() < num_sequences:
            raise ValueError(f"{path} holds {sizes.sum()} sequences; {num_sequences} are needed")
        # The groups whose keys all lie at or below `cut` hold at least num_sequences rows, so the prefix has no key
        # above it, and only groups whose smallest key is at most `cut` can hold prefix rows.
        by_high = np.argsort(highs, kind="stable")
        cut = highs[by_high[np.searchsorted(np.cumsum(sizes[by_high]), num_sequences)]]
        candidates = np.flatnonzero(lows <= cut)
        metadata, columns = {}, []
        for c in candidates:
            parquet = pq.ParquetFile(files[c], metadata=metadata.get(files[c]))
            metadata[files[c]] = parquet.metadata
            columns.append(parquet.read_row_group(indices[c], columns=_KEYS, use_threads=False))
        keys = np.concatenate([t.column("order_key").to_numpy() for t in columns])
        components = np.concatenate([t.column("component").to_numpy() for t in columns])
        groups = np.repeat(np.arange(len(candidates)), [t.num_rows for t in columns])
        rows = np.concatenate([np.arange(t.num_rows) for t in columns])
        prefix = np.lexsort((components, keys))[:num_sequences]
        used, group = np.unique(groups[prefix], return_inverse=True)
        self._group = group.astype(np.int32)
        self._row = rows[prefix].astype(np.int32)
        self._groups = [(files[c], metadata[files[c]], indices[c]) for c in candidates[used]]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self._group)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The sequences at `positions` of the mixture order, as int32 [len(positions), seq_len], in that order."""
        positions = np.asarray(positions)
        groups, rows = self._group[positions], self._row[positions]
        out = np.empty((len(positions), self._seq_len), dtype=np.int32)
        by_group = np.argsort(groups, kind="stable")
        unique, starts = np.unique(groups[by_group], return_index=True)
        for group, chunk in zip(unique, np.split(by_group, starts[1:])):
            out[chunk] = self._decoded(int(group))[rows[chunk]]
        return out

    def read_all(self) -> np.ndarray:
        """All `num_sequences` sequences, int32 [num_sequences, seq_len]: for small sets such as validation."""
        return self.take(np.arange(len(self)))

    def _decoded(self, group: int) -> np.ndarray:
        """Row group `group`'s input_ids as int32 [rows, seq_len], from the cache or read and cached."""
        block = self._cache.pop(group, None)
        if block is None:
            file, metadata, index = self._groups[group]
            # One column chunk at a time: pyarrow's threads would add per-thread memory, not speed.
            parquet = pq.ParquetFile(file, metadata=metadata)
            column = parquet.read_row_group(index, columns=["input_ids"], use_threads=False).column(0)
            block = column.combine_chunks().flatten().to_numpy().reshape(-1, self._seq_len)
            self._cached_bytes += block.nbytes
            while self._cache and self._cached_bytes > CACHE_BYTES:
                self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        self._cache[group] = block
        return block


def _row_groups(files: list[str]) -> tuple[list[str], list[int], np.ndarray, np.ndarray, np.ndarray]:
    """(file, index, rows, smallest and largest order key) of every row group, keys unbounded where a footer has
    no statistics. Footers become plain numbers: a large set's metadata is not kept."""
    names, indices, sizes, lows, highs = [], [], [], [], []
    for file in files:
        metadata = pq.read_metadata(file)
        key = [metadata.schema.column(j).path for j in range(metadata.num_columns)].index("order_key")
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            stats = group.column(key).statistics
            known = stats is not None and stats.has_min_max
            names.append(file)
            indices.append(i)
            sizes.append(group.num_rows)
            lows.append(stats.min if known else -np.inf)
            highs.append(stats.max if known else np.inf)
    return names, indices, np.array(sizes, dtype=np.int64), np.array(lows), np.array(highs)
