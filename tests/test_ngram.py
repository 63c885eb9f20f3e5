"""Contract of the perplexity-bucket filter's pieces: an exact Kneser-Ney model, buckets, ratios."""

from __future__ import annotations

import functools
import math
import pickle
import re
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest

from raysweep.recipes.ngram import (BOS, EOS, UNK, KenLMModel, KneserNeyModel, bucket_of, parse_bucket_ratio,
                                    perplexity_cutoffs)
from raysweep.config import FilteredSource, PerplexityFilter, SyntheticSource
from raysweep.recipes import ngram, streams
from raysweep.recipes.synthetic import generate_documents

TINY = [
    "The cat sat on the mat.\nThe dog sat on the log!",
    "A cat saw the dog; the dog saw a cat.\n\nThe cat ran.",
    "San Francisco is foggy.\nthe mat is red",
]


@functools.cache
def _web(seed: int, num_bytes: int, low_quality_frac: float = 0.0) -> tuple[str, ...]:
    return tuple(generate_documents("web", num_bytes, seed, low_quality_frac=low_quality_frac,
                                    duplicate_frac=0.0, repetition_frac=0.0))


@functools.cache
def _web_model() -> KneserNeyModel:
    return KneserNeyModel.train(_web(0, 200_000), order=3)


def _contexts(documents, order: int) -> set[tuple[str, ...]]:
    """Every history of length 0..order-1 that occurs in `documents`, as the model tokenises them."""
    contexts = set()
    for document in documents:
        for line in document.lower().splitlines():
            words = re.findall(r"\w+", line)
            if not words:
                continue
            tokens = [BOS, *words, EOS]
            for i in range(1, len(tokens)):
                contexts.update(tuple(tokens[max(0, i - j):i]) for j in range(order))
    return contexts


def _total_probability(model: KneserNeyModel, context: tuple[str, ...]) -> float:
    return math.fsum(math.exp(model.word_log_prob(w, context)) for w in model.vocabulary)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("min_count", [1, 2])
def test_probabilities_sum_to_one_over_vocabulary_for_every_context(order: int, min_count: int) -> None:
    model = KneserNeyModel.train(TINY, order=order, min_count=min_count)
    unseen = {("zebra",), (BOS, "zebra"), ("mat", "cat"), ("dog", "the", "cat"), (UNK, UNK)}
    for context in _contexts(TINY, order) | unseen:
        assert _total_probability(model, context) == pytest.approx(1.0, abs=1e-12), context


def _reference_kneser_ney(documents, order: int):
    """Interpolated modified KN written straight from its definition, one context at a time."""
    sentences = [[BOS, *words, EOS] for document in documents for line in document.lower().splitlines()
                 if (words := re.findall(r"\w+", line))]
    raw: Counter[tuple[str, ...]] = Counter()
    left_neighbours: defaultdict[tuple[str, ...], set[str]] = defaultdict(set)
    for s in sentences:
        for k in range(1, order + 1):
            for i in range(len(s) - k + 1):
                raw[tuple(s[i:i + k])] += 1
                if i > 0:
                    left_neighbours[tuple(s[i:i + k])].add(s[i - 1])

    def adjusted_count(gram: tuple[str, ...]) -> int:
        if len(gram) == order or gram[0] == BOS:
            return raw[gram]
        return len(left_neighbours[gram])

    @functools.cache
    def discounts(k: int) -> tuple[float, float, float]:
        n = Counter(adjusted_count(g) for g in raw if len(g) == k and g != (BOS,))
        y = n[1] / (n[1] + 2 * n[2]) if n[1] and n[2] else 0.5
        d2, d3 = (2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3]) if n[2] and n[3] else (0.0, 0.0)
        return (y, d2, d3) if n[1] and n[4] and d2 > 0 and d3 > 0 else (y, y, y)

    vocabulary = sorted({w for s in sentences for w in s[1:]} | {UNK})

    @functools.cache
    def distribution(context: tuple[str, ...]) -> dict[str, float]:
        lower = distribution(context[1:]) if context else dict.fromkeys(vocabulary, 1 / len(vocabulary))
        counts = {v: adjusted_count(context + (v,)) for v in vocabulary}
        total = sum(counts.values())
        if total == 0:
            return lower
        d = discounts(len(context) + 1)
        discount = {v: d[min(c, 3) - 1] if c else 0.0 for v, c in counts.items()}
        gamma = sum(discount.values()) / total
        return {v: (counts[v] - discount[v]) / total + gamma * lower[v] for v in vocabulary}

    return vocabulary, distribution


def test_matches_modified_kneser_ney_computed_from_its_definition() -> None:
    order, corpus = 3, TINY + list(_web(0, 2_000))
    model = KneserNeyModel.train(corpus, order=order)
    assert all(d1 != d2 != d3 for d1, d2, d3 in model.discounts)  # the modified discounts, not plain KN
    vocabulary, distribution = _reference_kneser_ney(corpus, order)
    assert sorted(model.vocabulary) == vocabulary
    for context in _contexts(corpus, order):
        expected = distribution(context)
        actual = [model.word_log_prob(word, context) for word in vocabulary]
        np.testing.assert_allclose(actual, np.log([expected[w] for w in vocabulary]), rtol=1e-12, err_msg=str(context))


def test_probabilities_sum_to_one_with_modified_discounts_on_a_real_sized_corpus() -> None:
    model = _web_model()
    # Enough data for three distinct discounts per order: the modified-KN path, not the fallback.
    assert all(d1 < d2 < d3 for d1, d2, d3 in model.discounts)
    contexts = sorted(_contexts(_web(0, 200_000)[:3], model.order))[::10]
    assert len(contexts) > 20
    for context in contexts:
        assert _total_probability(model, context) == pytest.approx(1.0, abs=1e-10), context


def test_continuation_counts_give_a_word_seen_after_one_context_a_small_unigram_share() -> None:
    # "francisco" occurs 10 times, always after "san"; "cat" 4 times after 4 different words.
    documents = ["san francisco"] * 10 + ["my cat", "the cat", "one cat", "a cat", "i saw it"]
    model = KneserNeyModel.train(documents, order=2)
    # After a context that saw neither word, the model backs off to continuation counts: cat wins.
    assert model.word_log_prob("cat", ["saw"]) > model.word_log_prob("francisco", ["saw"])
    assert model.word_log_prob("cat") > model.word_log_prob("francisco")
    # After "san", the seen bigram dominates.
    assert math.exp(model.word_log_prob("francisco", ["san"])) > 0.5


def test_unseen_words_map_to_unk_and_give_finite_perplexity() -> None:
    model = KneserNeyModel.train(TINY, order=3)
    assert model.word_log_prob("zebra", ["the"]) == model.word_log_prob(UNK, ["the"])
    gibberish = model.perplexity("Qwzx blorp vrrk\nzzzz")
    assert math.isfinite(gibberish)
    assert gibberish > model.perplexity("The cat sat on the mat.")
    assert math.isfinite(model.perplexity("?!? ... --"))  # no words at all: scored as an empty sentence


def test_document_score_is_mean_word_log_prob_including_each_line_end() -> None:
    model = KneserNeyModel.train(TINY, order=3)
    text = "The dog sat on a mat\n\nzebra cat!"
    expected = [model.word_log_prob(w, c) for w, c in [
        ("the", [BOS]), ("dog", [BOS, "the"]), ("sat", ["the", "dog"]), ("on", ["dog", "sat"]),
        ("a", ["sat", "on"]), ("mat", ["on", "a"]), (EOS, ["a", "mat"]),
        ("zebra", [BOS]), ("cat", [BOS, "zebra"]), (EOS, ["zebra", "cat"])]]
    assert model.log_prob_per_word(text) == pytest.approx(sum(expected) / len(expected), rel=1e-12)
    assert model.perplexity(text) == pytest.approx(math.exp(-sum(expected) / len(expected)), rel=1e-12)


def test_reference_text_lands_in_head_and_corrupted_text_in_tail() -> None:
    model = _web_model()  # trained on clean web text, seed 0
    clean, corrupted = _web(1, 60_000), _web(1, 60_000, low_quality_frac=1.0)
    n = min(len(clean), len(corrupted))  # a half-and-half candidate pool
    clean_ppl = np.array([model.perplexity(d) for d in clean[:n]])
    corrupted_ppl = np.array([model.perplexity(d) for d in corrupted[:n]])
    assert clean_ppl.max() < corrupted_ppl.min()
    cutoffs = perplexity_cutoffs(np.concatenate([clean_ppl, corrupted_ppl]))
    clean_buckets = [bucket_of(p, cutoffs) for p in clean_ppl]
    corrupted_buckets = [bucket_of(p, cutoffs) for p in corrupted_ppl]
    # Head and tail are a third of the pool each, so two thirds of each half at best.
    assert clean_buckets.count("head") / n > 0.6 and "tail" not in clean_buckets
    assert corrupted_buckets.count("tail") / n > 0.6 and "head" not in corrupted_buckets


def test_pickle_round_trip_gives_identical_scores() -> None:
    model = KneserNeyModel.train(_web(0, 50_000), order=3)
    restored = pickle.loads(pickle.dumps(model))
    documents = _web(2, 20_000, low_quality_frac=0.5)
    assert [restored.perplexity(d) for d in documents] == [model.perplexity(d) for d in documents]
    assert restored.discounts == model.discounts and restored.vocabulary == model.vocabulary


def test_training_rejects_unigram_order_and_wordless_corpus() -> None:
    with pytest.raises(ValueError, match="order must be at least 2"):
        KneserNeyModel.train(TINY, order=1)
    with pytest.raises(ValueError, match="no words"):
        KneserNeyModel.train(["", "... !!!"])
    with pytest.raises(ValueError, match="never predicted"):
        KneserNeyModel.train(TINY).word_log_prob(BOS)


def test_cutoffs_are_terciles_and_ties_go_to_the_lower_bucket() -> None:
    cutoffs = perplexity_cutoffs(np.arange(1.0, 10.0))
    assert cutoffs == pytest.approx((11 / 3, 19 / 3))
    assert [bucket_of(p, cutoffs) for p in range(1, 10)] == ["head"] * 3 + ["middle"] * 3 + ["tail"] * 3
    tied = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    tied_cutoffs = perplexity_cutoffs(tied)
    assert tied_cutoffs[0] == 1.0
    # All four 1.0s go to head although a third of nine is three.
    assert [bucket_of(p, tied_cutoffs) for p in tied] == ["head"] * 4 + ["middle"] * 2 + ["tail"] * 3
    assert bucket_of(tied_cutoffs[1], tied_cutoffs) == "middle"  # exactly on the upper cutoff


def test_cutoffs_reject_empty_or_non_finite_scores_and_bad_quantiles() -> None:
    for bad in (np.array([]), np.array([1.0, np.nan]), np.ones((2, 2))):
        with pytest.raises(ValueError, match="finite"):
            perplexity_cutoffs(bad)
    with pytest.raises(ValueError, match="quantiles"):
        perplexity_cutoffs(np.arange(5.0), quantiles=(0.7, 0.3))
    with pytest.raises(ValueError, match="increasing"):
        bucket_of(1.0, (2.0, 1.0))


@pytest.mark.parametrize("name, shares", [("H50T50", (0.5, 0.5)), ("H70T30", (0.7, 0.3)),
                                          ("H100T0", (1.0, 0.0)), ("H0T100", (0.0, 1.0))])
def test_parse_bucket_ratio_reads_head_middle_and_tail_shares(name: str, shares: tuple[float, float]) -> None:
    assert parse_bucket_ratio(name) == shares


@pytest.mark.parametrize("name", ["70/30", "h70t30", "H70", "H70T30 ", "H-10T110", "", None])
def test_parse_bucket_ratio_rejects_malformed_names(name) -> None:
    with pytest.raises(ValueError, match="H70T30"):
        parse_bucket_ratio(name)


def test_parse_bucket_ratio_rejects_shares_not_summing_to_100() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        parse_bucket_ratio("H70T20")


def test_kenlm_model_without_kenlm_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kenlm", None)  # makes `import kenlm` fail even if installed
    with pytest.raises(ImportError, match="pip install kenlm"):
        KenLMModel("wiki.arpa")


def test_a_reference_model_is_trained_once_for_every_stream_curated_against_it(monkeypatch):
    monkeypatch.setattr(streams, "_REFERENCE_MODELS", {})
    trained = []
    train = ngram.KneserNeyModel.train
    monkeypatch.setattr(ngram.KneserNeyModel, "train", lambda docs, order: trained.append(order) or train(docs, order))
    head = {"reference": "reference", "keep": ["head"], "reference_bytes": 50_000, "calibration_documents": 50}
    sources = {"reference": SyntheticSource("synthetic", "web", seed=7),
               "web": SyntheticSource("synthetic", "web", low_quality_frac=0.3),
               "code": SyntheticSource("synthetic", "code"),
               "web_head": FilteredSource("filtered", "web", perplexity=PerplexityFilter(**head)),
               "code_head": FilteredSource("filtered", "code", perplexity=PerplexityFilter(**head)),
               "web_head_4": FilteredSource("filtered", "web", perplexity=PerplexityFilter(**head, order=4))}
    models = [streams.prepare_models(streams.resolve_stream(name, sources))[0][0]
              for name in ("web_head", "code_head", "web_head_4")]
    assert trained == [3, 4] and models[0] is models[1] is not models[2]
