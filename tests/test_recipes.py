"""Recipe files end to end: ablations in YAML, real files as sources, curation operators and their manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raysweep.config import FileSource, FilteredSource, PerplexityFilter, RepetitionFilter, load_sweep
from raysweep.errors import ConfigError
from raysweep.config import SyntheticSource, TokenizerConfig
from raysweep.recipes.build import BuildError, Component, build_shards, read_manifest, shard_key
from raysweep.recipes.sequences import SequenceReader
from raysweep.recipes.streams import resolve_stream

from conftest import micro_sweep, write_yaml

WEB = SyntheticSource("synthetic", "web")


def test_ablation_and_reweighting_take_one_line_each(tmp_path):
    sweep = micro_sweep()
    sweep["recipes"] += [{"name": "no_code", "base": "balanced", "drop": ["code"]},
                         {"name": "web70", "base": "balanced", "weights": {"web": 0.7}}]
    recipes = {r.name: {c.source: c.weight for c in r.mix}
               for r in load_sweep(write_yaml(tmp_path / "s.yaml", sweep)).recipes}
    balanced = recipes["balanced"]
    assert set(recipes["no_code"]) == set(balanced) - {"code"}
    assert recipes["no_code"]["web"] == pytest.approx(balanced["web"] / (1 - balanced["code"]))
    assert recipes["web70"]["web"] == pytest.approx(0.7) and sum(recipes["web70"].values()) == pytest.approx(1)
    assert recipes["web70"]["code"] / recipes["web70"]["math"] == pytest.approx(balanced["code"] / balanced["math"])


def test_curation_mistakes_are_named_by_key_path(tmp_path):
    sweep = micro_sweep()
    sweep["sources"]["strict"] = {"type": "filtered", "source": "web", "dedup": "fuzzy"}
    sweep["sources"]["files"] = {"type": "csv", "path": "x.csv"}
    with pytest.raises(ConfigError) as info:
        load_sweep(write_yaml(tmp_path / "types.yaml", sweep))
    problems = dict(info.value.problems)
    assert problems["sources.strict.dedup"].startswith("must be one of 'exact', 'minhash'")
    assert problems["sources.files.type"].startswith("must be one of 'synthetic', 'jsonl'")

    sweep = micro_sweep()
    sweep["sources"]["strict"] = {"type": "filtered", "source": "nowhere",
                                  "repetition": {"preset": "dedup-XL", "thresholds": {"dup_word_frac": 0.1}}}
    sweep["recipes"].append({"name": "ablated", "base": "balanced", "drop": ["nothing"]})
    with pytest.raises(ConfigError) as info:
        load_sweep(write_yaml(tmp_path / "references.yaml", sweep))
    assert set(dict(info.value.problems)) == {
        "sources.strict.source", "sources.strict.repetition.preset",
        "sources.strict.repetition.thresholds.dup_word_frac", "recipes[2].drop[0]"}


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))


def file_component(pattern) -> list[Component]:
    source = FileSource("jsonl", str(pattern))
    return [Component("files", resolve_stream("files", {"files": source}), 1.0)]


def test_a_recipe_short_of_tokens_says_what_it_has_and_needs_unless_epochs_allow_repeats(local_ray, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ["hello world " * 20] * 10)  # 10 documents of 241 tokens: 75 sequences
    with pytest.raises(BuildError, match=r"gives 75 sequences \(2,400 tokens\) in 1 epoch.*needs 100"):
        build_shards("small", file_component(tmp_path / "*.jsonl"), TokenizerConfig(), 32, 100, tmp_path / "shards")
    shards = build_shards("small", file_component(tmp_path / "*.jsonl"), TokenizerConfig(), 32, 100,
                          tmp_path / "shards", epochs=2)
    assert SequenceReader(shards.path, 100).read_all().shape == (100, 32)


def test_editing_one_byte_of_a_source_file_changes_the_cache_key_and_moving_it_does_not(tmp_path):
    texts = [f"document {i} " * 30 for i in range(20)]
    write_jsonl(tmp_path / "a.jsonl", texts)
    before = shard_key(file_component(tmp_path / "*.jsonl"), TokenizerConfig(), 32)
    (tmp_path / "moved").mkdir()
    write_jsonl(tmp_path / "moved" / "a.jsonl", texts)
    assert shard_key(file_component(tmp_path / "moved" / "*.jsonl"), TokenizerConfig(), 32) == before
    write_jsonl(tmp_path / "a.jsonl", texts[:-1] + [texts[-1].replace("1", "2", 1)])
    assert shard_key(file_component(tmp_path / "*.jsonl"), TokenizerConfig(), 32) != before


def test_the_manifest_counts_what_each_operator_removed(local_ray, tmp_path):
    # Synthetic science text often fails Gopher's top-2-gram rule; a third of the documents are copies.
    sources = {"science": SyntheticSource("synthetic", "science", duplicate_frac=0.3),
               "clean": FilteredSource("filtered", "science", dedup="exact", repetition=RepetitionFilter("default"))}
    shards = build_shards("clean", [Component("clean", resolve_stream("clean", sources), 1.0)], TokenizerConfig(),
                          64, 400, tmp_path)
    (component,) = read_manifest(shards.path).components
    removed = component.removed
    assert removed["exact duplicate"]["documents"] > 0
    assert any(reason.startswith("repetition: ") for reason in removed)
    assert component.documents_read == component.documents_kept + sum(r["documents"] for r in removed.values())
    assert all(r["tokens"] > r["documents"] for r in removed.values())
    assert component.num_sequences == 400
    assert 0 <= component.tokens_kept - 400 * 64 < 5000  # counts stop at the document that completes the set


def test_filters_that_remove_nearly_everything_stop_the_build_with_the_counts(local_ray, tmp_path):
    sources = {"web": SyntheticSource("synthetic", "web", repetition_frac=0.5),
               "strict": FilteredSource("filtered", "web", repetition=RepetitionFilter("dedup-LS"))}
    with pytest.raises(BuildError, match=r"source 'strict' gives 0 sequences .* after its filters removed"):
        build_shards("strict", [Component("strict", resolve_stream("strict", sources), 1.0)], TokenizerConfig(),
                     64, 100, tmp_path)


def test_perplexity_buckets_keep_the_text_that_resembles_the_reference(local_ray, tmp_path):
    perplexity = PerplexityFilter(reference="reference", keep=["head", "middle"], reference_bytes=200_000,
                                  calibration_documents=300)
    sources = {"reference": SyntheticSource("synthetic", "web", seed=7),
               "mixed": SyntheticSource("synthetic", "web", low_quality_frac=0.3),
               "head": FilteredSource("filtered", "mixed", perplexity=perplexity)}
    shards = build_shards("head", [Component("head", resolve_stream("head", sources), 1.0)], TokenizerConfig(),
                          64, 200, tmp_path)
    (component,) = read_manifest(shards.path).components
    dropped = component.removed["perplexity: tail"]["documents"]
    assert dropped / component.documents_read == pytest.approx(1 / 3, abs=0.1)


def test_an_interrupted_build_resumes_from_its_finished_components(local_ray, tmp_path):
    mix = [Component("web", resolve_stream("web", {"web": WEB}), 0.5),
           Component("code", resolve_stream("code", {"code": SyntheticSource("synthetic", "code")}), 0.5)]
    shards = build_shards("mix", mix, TokenizerConfig(), 32, 100, tmp_path)
    expected = SequenceReader(shards.path, 100).read_all()
    finished = sorted((shards.path / "data" / "component-0").iterdir())
    stamps = [p.stat().st_mtime_ns for p in finished]
    (shards.path / "manifest.json").unlink()  # as if the build died while writing component 1
    (shards.path / "progress" / "component-1.json").unlink()
    again = build_shards("mix", mix, TokenizerConfig(), 32, 100, tmp_path)
    assert [p.stat().st_mtime_ns for p in sorted((again.path / "data" / "component-0").iterdir())] == stamps
    np.testing.assert_array_equal(SequenceReader(again.path, 100).read_all(), expected)


def test_a_local_hugging_face_tokenizer_builds_shards_and_records_bytes_per_token(local_ray, tmp_path):
    from test_sources import tiny_tokenizer

    folder = tiny_tokenizer(tmp_path / "tokenizer")
    write_jsonl(tmp_path / "a.jsonl", ["hello world the quick brown fox " * 5] * 40)
    config = TokenizerConfig("hf", str(folder))
    shards = build_shards("hf", file_component(tmp_path / "*.jsonl"), config, 16, 50, tmp_path / "shards")
    ids = SequenceReader(shards.path, 50).read_all()
    assert ids.max() < 300 and read_manifest(shards.path).bytes_per_token > 1.5  # BPE merges bytes


def test_the_paper_sweep_validates_offline_and_a_launch_names_what_is_missing(tmp_path, capsys):
    from raysweep.cli import main

    from conftest import REPO

    sweep = load_sweep(REPO / "search_spaces" / "paper.yaml")
    assert len(sweep.recipes) == 23 and sweep.tokenizer.type == "hf"
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(REPO / "search_spaces" / "paper.yaml"),
                                                     "storage": str(tmp_path / "runs")})
    assert main(["launch", str(cluster)]) == 2
    error = capsys.readouterr().err  # the tokenizer first, unless this machine has it cached; then the corpora
    assert error.startswith("raysweep: ") and ("hf download gpt2" in error or "no files match" in error)


def test_cycles_through_bases_sources_and_references_are_errors_not_recursion(tmp_path):
    sweep = micro_sweep()
    sweep["recipes"].append({"name": "loop", "base": "loop", "drop": ["code"]})
    sweep["sources"]["a"] = {"type": "filtered", "source": "web", "perplexity": {"reference": "b", "keep": ["head"]}}
    sweep["sources"]["b"] = {"type": "filtered", "source": "a"}
    with pytest.raises(ConfigError) as info:
        load_sweep(write_yaml(tmp_path / "cycles.yaml", sweep))
    problems = dict(info.value.problems)
    assert problems["recipes[2].base"].startswith("must name another recipe, without cycles")
    assert problems["sources.a"].startswith("depends on itself") and problems["sources.b"].startswith("depends on")


def test_a_validation_domain_may_curate_the_source_of_the_same_name(tmp_path):
    from raysweep.recipes.build import validation_components

    sweep = micro_sweep()
    sweep["validation"]["domains"]["web"] = {"type": "filtered", "source": "web", "dedup": "exact"}
    (component,) = validation_components(load_sweep(write_yaml(tmp_path / "s.yaml", sweep)))["web"]
    assert component.stream.reader.domain == "web" and len(component.stream.operators) == 1
