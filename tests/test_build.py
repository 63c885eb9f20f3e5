from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.config import SyntheticSource, TokenizerConfig
from raysweep.recipes.build import Component, _Pack, _tokenize, _unmarked, build_shards, component_counts
from raysweep.recipes.sequences import SequenceReader
from raysweep.recipes.streams import Stream
from raysweep.recipes.tokenizer import ByteTokenizer

WEB = SyntheticSource(type="synthetic", domain="web")
CODE = SyntheticSource(type="synthetic", domain="code")
EOS = 256


def mix(*parts: tuple[SyntheticSource, float]) -> list[Component]:
    return [Component(source.domain, Stream(source), weight) for source, weight in parts]


def test_every_prefix_is_mixed_at_the_token_weights():
    weights = np.array([0.7, 0.2, 0.1])
    for num_sequences in (1, 7, 10, 99, 1000, 12345):
        counts = component_counts(weights, num_sequences)
        assert counts.sum() == num_sequences
        assert np.all(np.abs(counts - weights * num_sequences) <= 1), (num_sequences, counts)


def test_built_shards_hold_packed_sequences_in_mixture_order(local_ray, tmp_path):
    num_sequences = 700  # several Ray Data batches of the larger component
    shards = build_shards("mix", mix((WEB, 3.0), (CODE, 1.0)), TokenizerConfig(), 32, num_sequences, tmp_path)
    table = pq.read_table(shards.path / "data")
    assert table.num_rows == num_sequences
    assert np.bincount(table.column("component").to_numpy()).tolist() == component_counts(
        np.array([0.75, 0.25]), num_sequences).tolist()
    ids = SequenceReader(shards.path, num_sequences).read_all()
    assert ids.shape == (num_sequences, 32) and ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() <= EOS and (ids == EOS).any()  # documents are closed by EOS


def test_a_second_build_reuses_the_cached_shards(local_ray, tmp_path):
    first = build_shards("web", mix((WEB, 1.0)), TokenizerConfig(), 32, 50, tmp_path)
    stamp = (first.path / "manifest.json").stat().st_mtime_ns
    again = build_shards("web", mix((WEB, 1.0)), TokenizerConfig(), 32, 20, tmp_path)
    assert again.path == first.path and (again.path / "manifest.json").stat().st_mtime_ns == stamp


def test_a_larger_budget_rebuilds_and_keeps_the_smaller_build_as_its_prefix(local_ray, tmp_path):
    small = build_shards("mix", mix((WEB, 1.0), (CODE, 1.0)), TokenizerConfig(), 32, 30, tmp_path)
    first = SequenceReader(small.path, 30).read_all()
    large = build_shards("mix", mix((WEB, 1.0), (CODE, 1.0)), TokenizerConfig(), 32, 300, tmp_path)
    assert large.num_sequences == 300
    np.testing.assert_array_equal(SequenceReader(large.path, 30).read_all(), first)


def test_changing_a_source_changes_the_cache_folder(local_ray, tmp_path):
    clean = build_shards("web", mix((WEB, 1.0)), TokenizerConfig(), 32, 10, tmp_path)
    noisy_web = SyntheticSource(type="synthetic", domain="web", low_quality_frac=0.5)
    noisy = build_shards("web", mix((noisy_web, 1.0)), TokenizerConfig(), 32, 10, tmp_path)
    assert clean.path != noisy.path
    assert not np.array_equal(SequenceReader(clean.path, 10).read_all(), SequenceReader(noisy.path, 10).read_all())


def test_the_byte_tokenizer_closes_every_document_and_counts_its_utf8_bytes():
    documents = ["héllo", "", "a€b"]
    ids, lengths = ByteTokenizer().encode_batch(documents)
    assert lengths.tolist() == [len(d.encode()) + 1 for d in documents]
    pieces = np.split(ids, np.cumsum(lengths)[:-1])
    assert [bytes(p[:-1].astype(np.uint8)).decode() for p in pieces] == documents
    assert all(p[-1] == EOS for p in pieces) and ids.dtype == np.int32
    assert ByteTokenizer().encode_documents([]).shape == (0,)


def test_packing_gives_the_same_sequences_and_counts_however_the_documents_are_batched(tmp_path):
    documents = [f"document {i} " * (1 + i % 7) for i in range(300)]
    reasons = ["" if i % 5 else ("exact duplicate" if i % 2 else "repetition: dup_line_frac") for i in range(300)]

    def pack(batch_size: int):
        packer = _Pack(0, 0.5, 16, 150, str(tmp_path / f"stats-{batch_size}.json"))
        tables = []
        for start in range(0, len(documents), batch_size):
            batch = _unmarked(documents[start:start + batch_size]).set_column(
                1, "reason", pa.array(reasons[start:start + batch_size], pa.string()))
            tables.append(packer(_tokenize(batch, TokenizerConfig())))
        return pa.concat_tables(tables), packer.stats

    whole, whole_stats = pack(300)
    assert whole.num_rows == 150 and whole.column("order_key").to_pylist()[:2] == [1.0, 3.0]
    assert whole_stats["documents_read"] < 300  # counts stop at the document that completes the 150th sequence
    assert whole_stats["documents_read"] == whole_stats["documents_kept"] + sum(
        r["documents"] for r in whole_stats["removed"].values())
    assert list(whole_stats["removed"]) == ["repetition: dup_line_frac", "exact duplicate"]  # in the order met
    for batch_size in (1, 7, 64):
        table, stats = pack(batch_size)
        assert table.equals(whole) and stats == whole_stats
