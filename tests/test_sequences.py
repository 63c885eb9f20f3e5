"""The streaming reader on a real shard set: the same sequences as a whole-set read, from the prefix's row groups."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from raysweep.config import SyntheticSource, TokenizerConfig
from raysweep.recipes import build, sequences
from raysweep.recipes.build import Component, build_shards
from raysweep.recipes.sequences import SequenceReader
from raysweep.recipes.streams import Stream

SEQ_LEN = 32
PREFIX = 300
SET_SIZE = 10 * PREFIX
ROWS_PER_GROUP = 16


@pytest.fixture(scope="module")
def shards(local_ray, tmp_path_factory):
    """Three components at uneven weights, built for 10x the prefix, in row groups of 16 sequences."""
    components = [Component(domain, Stream(SyntheticSource(type="synthetic", domain=domain)), weight)
                  for domain, weight in (("web", 5.0), ("code", 2.0), ("math", 0.5))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "ROW_GROUP_BYTES", ROWS_PER_GROUP * 4 * SEQ_LEN)
        return build_shards("mix", components, TokenizerConfig(), SEQ_LEN, SET_SIZE, tmp_path_factory.mktemp("s")).path


def whole_set_read(path, num_sequences):
    """The reference: read every sequence, sort by (order_key, component), keep the first `num_sequences`."""
    table = pq.read_table(path / "data")
    table = table.sort_by([("order_key", "ascending"), ("component", "ascending")]).slice(0, num_sequences)
    column = table.column("input_ids").combine_chunks()
    return column.flatten().to_numpy().reshape(num_sequences, column.type.list_size)


@pytest.fixture
def reads(monkeypatch):
    """Every row group read through ``pq.ParquetFile`` from here on, as (file, row group, columns)."""
    seen = []

    class Recording(pq.ParquetFile):
        def __init__(self, source, **kwargs):
            super().__init__(source, **kwargs)
            self.source = str(source)

        def read_row_group(self, i, columns=None, **kwargs):
            seen.append((self.source, i, tuple(columns or ())))
            return super().read_row_group(i, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Recording)
    return seen


def test_the_reader_gives_what_a_sorted_whole_set_read_gives_for_the_prefix_and_random_positions(shards):
    assert len({f.parent.name for f in (shards / "data").rglob("*.parquet")}) == 3
    for num_sequences in (1, 37, PREFIX, SET_SIZE):
        expected = whole_set_read(shards, num_sequences)
        reader = SequenceReader(shards, num_sequences)
        assert len(reader) == num_sequences
        np.testing.assert_array_equal(reader.read_all(), expected)
        positions = np.random.default_rng(num_sequences).permutation(num_sequences)[:64]
        taken = reader.take(positions)
        assert taken.dtype == np.int32 and taken.shape == (len(positions), SEQ_LEN)
        np.testing.assert_array_equal(taken, expected[positions])


def test_only_the_row_groups_holding_the_prefix_are_read(shards, reads):
    holding, num_groups = set(), 0
    table = pq.read_table(shards / "data").sort_by([("order_key", "ascending"), ("component", "ascending")])
    cut = (table.column("order_key")[PREFIX - 1].as_py(), table.column("component")[PREFIX - 1].as_py())
    for file in (shards / "data").rglob("*.parquet"):
        parquet = pq.ParquetFile(file)
        for i in range(parquet.num_row_groups):
            group = parquet.read_row_group(i, columns=["order_key", "component"]).to_pylist()
            num_groups += 1
            if min((row["order_key"], row["component"]) for row in group) <= cut:
                holding.add((str(file), i))
    reads.clear()

    SequenceReader(shards, PREFIX).read_all()
    ids_read = {(file, i) for file, i, columns in reads if columns == ("input_ids",)}
    assert ids_read == holding and len(holding) < num_groups / 5
    key_rows = sum(pq.ParquetFile(file).metadata.row_group(i).num_rows
                   for file, i, columns in reads if "order_key" in columns)
    assert key_rows < 2 * PREFIX  # of the 10x as many the set holds


def test_a_prefix_within_the_cache_is_decoded_once_and_a_smaller_cache_stays_exact(shards, reads, monkeypatch):
    reader = SequenceReader(shards, PREFIX)
    reader.read_all()
    decoded = sum(columns == ("input_ids",) for _, _, columns in reads)
    reader.read_all()
    assert sum(columns == ("input_ids",) for _, _, columns in reads) == decoded

    monkeypatch.setattr(sequences, "CACHE_BYTES", 2 * ROWS_PER_GROUP * 4 * SEQ_LEN)  # two row groups
    reader, expected = SequenceReader(shards, PREFIX), whole_set_read(shards, PREFIX)
    order = np.random.default_rng(0).permutation(PREFIX)
    for batch in np.split(order, 10):
        np.testing.assert_array_equal(reader.take(batch), expected[batch])


def test_a_set_with_fewer_sequences_than_asked_is_an_error(shards):
    with pytest.raises(ValueError, match=f"holds {SET_SIZE} sequences; {SET_SIZE + 1} are needed"):
        SequenceReader(shards, SET_SIZE + 1)


def test_a_set_written_without_statistics_is_read_the_same(shards, tmp_path):
    for file in (shards / "data").rglob("*.parquet"):
        copy = tmp_path / "data" / file.relative_to(shards / "data")
        copy.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(file), copy, row_group_size=ROWS_PER_GROUP, write_statistics=False)
    np.testing.assert_array_equal(SequenceReader(tmp_path, PREFIX).read_all(), whole_set_read(shards, PREFIX))
