from __future__ import annotations

import gzip
import itertools
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysweep.recipes import sources
from raysweep.recipes.sources import (SourceError, fingerprint_files, fingerprint_hf, iter_file_documents,
                                      iter_hf_documents, match_files)
from raysweep.recipes.tokenizer import HFTokenizer, TokenizerError


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def fake_hub_snapshot(hub_cache: Path, name: str, commit: str, texts: list[str]) -> Path:
    """The layout `hf download <name> --repo-type dataset` leaves in the hub cache."""
    repo = hub_cache / f"datasets--{name.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return write_jsonl(repo / "snapshots" / commit / "data" / "train-00000-of-00001.jsonl",
                       [{"text": t} for t in texts])


# ---------------------------------------------------------------------------------------------
# Local files


def test_jsonl_glob_yields_documents_in_sorted_file_order(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"text": "b1"}, {"text": "b2"}])
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a1", "id": 1}])
    write_jsonl(tmp_path / "sub" / "c.jsonl.gz", [{"text": "c1"}])
    (tmp_path / "a.jsonl").write_text((tmp_path / "a.jsonl").read_text() + "\n  \n")  # blank lines skipped
    assert list(iter_file_documents("**/*.jsonl*", "jsonl", base_dir=tmp_path)) == ["a1", "b1", "b2", "c1"]
    assert match_files(f"{tmp_path}/*.jsonl", base_dir=Path("/elsewhere")) == [tmp_path / "a.jsonl",
                                                                                tmp_path / "b.jsonl"]


def test_glob_matching_nothing_fails_at_the_call_naming_glob_and_folder(tmp_path):
    with pytest.raises(SourceError, match=rf"no files match 'data/\*.jsonl' \(looked in {tmp_path}\)"):
        iter_file_documents("data/*.jsonl", "jsonl", base_dir=tmp_path)  # no next(): the call itself fails


def test_missing_text_field_names_the_file_and_fields(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"content": "hi", "id": 3}])
    with pytest.raises(SourceError, match=rf"{path}:1: no field 'text'; fields are: content, id"):
        list(iter_file_documents("*.jsonl", "jsonl", base_dir=tmp_path))
    pq.write_table(pa.table({"content": ["hi"], "id": [3]}), tmp_path / "x.parquet")
    with pytest.raises(SourceError, match=r"x.parquet: no field 'text'; fields are: content, id"):
        list(iter_file_documents("*.parquet", "parquet", base_dir=tmp_path))


def test_bad_json_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(SourceError, match=rf"{path}:2: not valid JSON"):
        list(iter_file_documents("x.jsonl", "jsonl", base_dir=tmp_path))


def test_parquet_streams_the_text_column_across_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 3)
    texts = [f"doc {i}" for i in range(10)]
    pq.write_table(pa.table({"text": texts, "score": np.arange(10.0)}), tmp_path / "p.parquet", row_group_size=4)
    assert list(iter_file_documents("p.parquet", "parquet", base_dir=tmp_path)) == texts
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(SourceError, match="field 'text' has type int64, not string"):
        list(iter_file_documents("ints.parquet", "parquet", base_dir=tmp_path))


def test_text_format_reads_one_document_per_file(tmp_path):
    (tmp_path / "one.txt").write_text("first line\n\nsecond paragraph\n")
    (tmp_path / "two.txt.gz").write_bytes(gzip.compress("ünïcode".encode()))
    assert list(iter_file_documents("*.txt*", "text", base_dir=tmp_path)) == [
        "first line\n\nsecond paragraph\n", "ünïcode"]
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(SourceError, match="bad.txt: not UTF-8 text"):
        list(iter_file_documents("bad.txt", "text", base_dir=tmp_path))


def test_reading_is_lazy_and_stops_where_the_consumer_stops(tmp_path):
    # Invalid lines after the first two documents, and an invalid second file: neither is ever reached.
    (tmp_path / "a.jsonl").write_text('{"text": "1"}\n{"text": "2"}\n' + "not json\n" * 1000)
    (tmp_path / "b.jsonl").write_text("not json either\n")
    documents = iter_file_documents("*.jsonl", "jsonl", base_dir=tmp_path)
    assert list(itertools.islice(documents, 2)) == ["1", "2"]


def test_fingerprint_changes_when_one_byte_changes(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "abcdefgh"}\n' * 100)
    before = fingerprint_files("*.jsonl", base_dir=tmp_path)
    stat = path.stat()
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 1  # same size, one byte in the middle
    path.write_bytes(bytes(content))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    assert fingerprint_files("*.jsonl", base_dir=tmp_path) != before


def test_fingerprint_survives_a_copy_and_sees_added_files(tmp_path):
    write_jsonl(tmp_path / "a" / "x.jsonl", [{"text": "x"}])
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy)  # fresh mtimes
    original, copy = (fingerprint_files("*.jsonl", base_dir=tmp_path / d) for d in "ab")
    assert original == copy
    write_jsonl(tmp_path / "b" / "y.jsonl", [{"text": "y"}])
    assert fingerprint_files("*.jsonl", base_dir=tmp_path / "b") != original


def test_fingerprint_of_a_large_file_samples_blocks_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FULL_HASH_MAX_BYTES", 1000)
    monkeypatch.setattr(sources, "SAMPLE_BLOCK_BYTES", 100)
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(10_000))
    before = fingerprint_files("big.bin", base_dir=tmp_path)
    stat = path.stat()
    path.write_bytes(bytes(9_999) + b"\x01")  # the last block is always sampled
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = fingerprint_files("big.bin", base_dir=tmp_path)
    assert edited != before
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert fingerprint_files("big.bin", base_dir=tmp_path) != edited


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets


def test_saved_hf_dataset_streams_the_requested_split(tmp_path, offline_hf):
    import datasets

    splits = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["t1", "t2", "t3"], "n": [1, 2, 3]}),
        "validation": datasets.Dataset.from_dict({"text": ["v1"], "n": [0]})})
    splits.save_to_disk(tmp_path / "saved")
    assert list(iter_hf_documents("tiny", None, "validation", "text", path=tmp_path / "saved")) == ["v1"]
    assert list(iter_hf_documents("tiny", None, "train", "text", path=tmp_path / "saved")) == ["t1", "t2", "t3"]
    with pytest.raises(SourceError, match="no split 'test'; splits are: train, validation"):
        iter_hf_documents("tiny", None, "test", "text", path=tmp_path / "saved")
    with pytest.raises(SourceError, match="no field 'body'; fields are: text, n"):
        list(iter_hf_documents("tiny", None, "train", "body", path=tmp_path / "saved"))


def test_hf_data_files_folder_streams_like_a_hub_repository(tmp_path, offline_hf):
    write_jsonl(tmp_path / "repo" / "data" / "train.jsonl", [{"text": "a"}, {"text": "b"}])
    write_jsonl(tmp_path / "repo" / "data" / "test.jsonl", [{"text": "z"}])
    assert list(iter_hf_documents("me/repo", None, "train", "text", path=tmp_path / "repo")) == ["a", "b"]
    with pytest.raises(SourceError, match="Bad split: dev"):
        iter_hf_documents("me/repo", None, "dev", "text", path=tmp_path / "repo")


def test_cached_hub_snapshot_is_read_offline(offline_hf):
    fake_hub_snapshot(offline_hf, "me/tiny", "a" * 40, ["one", "two"])
    assert list(iter_hf_documents("me/tiny", None, "train", "text")) == ["one", "two"]


def test_missing_hf_dataset_fails_fast_with_fetch_hint(offline_hf):
    start_s = time.perf_counter()
    with pytest.raises(SourceError) as raised:
        iter_hf_documents("allenai/c4", "en", "train", "text")
    assert time.perf_counter() - start_s < 5
    message = str(raised.value)
    assert "dataset 'allenai/c4' (config 'en') is not in the local Hugging Face caches" in message
    assert "offline mode is on" in message
    assert str(offline_hf) in message and "hf download allenai/c4 --repo-type dataset" in message


def test_hf_fingerprint_follows_the_content(tmp_path, offline_hf):
    import datasets

    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(tmp_path / "s1")
    datasets.Dataset.from_dict({"text": ["b"]}).save_to_disk(tmp_path / "s2")
    assert fingerprint_hf("x", path=tmp_path / "s1") != fingerprint_hf("x", path=tmp_path / "s2")
    assert fingerprint_hf("x", path=tmp_path / "s1") == fingerprint_hf("x", path=tmp_path / "s1")

    files = write_jsonl(tmp_path / "repo" / "train.jsonl", [{"text": "a"}])
    before = fingerprint_hf("x", path=tmp_path / "repo")
    write_jsonl(files, [{"text": "b"}])
    assert fingerprint_hf("x", path=tmp_path / "repo") != before

    fake_hub_snapshot(offline_hf, "me/tiny", "a" * 40, ["one"])
    first = fingerprint_hf("me/tiny")
    fake_hub_snapshot(offline_hf, "me/tiny", "b" * 40, ["one"])  # a new commit, same content
    assert fingerprint_hf("me/tiny") != first


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizer


def tiny_tokenizer(folder: Path, eos_token: str | None = "<eos>") -> Path:
    """A byte-level BPE trained on a few strings and saved like any hub tokenizer: no network."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(["hello world", "the quick brown fox", "hello fox"], trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=eos_token).save_pretrained(folder)
    return folder


def test_hf_tokenizer_round_trips_and_appends_eos(tmp_path):
    tokenizer = HFTokenizer(str(tiny_tokenizer(tmp_path / "tok")))
    documents = ["hello world", "ünïcode fox!", ""]
    ids = tokenizer.encode_documents(documents)
    assert ids.dtype == np.int32 and ids.max() < tokenizer.vocab_size
    assert ids[-1] == tokenizer.eos_id and (ids == tokenizer.eos_id).sum() == len(documents)
    pieces = np.split(ids, np.flatnonzero(ids == tokenizer.eos_id) + 1)[:-1]
    assert [tokenizer._tokenizer.decode(p[:-1].tolist()) for p in pieces] == documents
    assert tokenizer.encode_documents([]).shape == (0,)


def test_hf_tokenizer_pickles_as_its_path(tmp_path, monkeypatch):
    tiny_tokenizer(tmp_path / "tok")
    monkeypatch.chdir(tmp_path)
    tokenizer = HFTokenizer("tok")  # relative: kept as an absolute path for workers elsewhere
    monkeypatch.chdir("/")
    payload = pickle.dumps(tokenizer)
    assert len(payload) < 1000  # the name travels, not the vocabulary
    copy = pickle.loads(payload)
    assert np.array_equal(copy.encode_documents(["hello fox"]), tokenizer.encode_documents(["hello fox"]))


def test_missing_hf_tokenizer_names_it_and_how_to_fetch_it(tmp_path):
    with pytest.raises(TokenizerError, match=r"tokenizer 'nobody/no-such-tokenizer' .* `hf download nobody/no"):
        HFTokenizer("nobody/no-such-tokenizer")
    with pytest.raises(TokenizerError, match="does not exist"):
        HFTokenizer(str(tmp_path / "absent"))
    with pytest.raises(TokenizerError, match="no end-of-text token"):
        HFTokenizer(str(tiny_tokenizer(tmp_path / "no-eos", eos_token=None)))
