"""Contract of the document filters: Gopher repetition measurements, presets, exact and MinHash dedup.

Expected values are worked by hand in the comments; characters are counted as in DCLM (stripped
segments for lines/paragraphs, word characters only for n-grams).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from raysweep.recipes.filters import (
    DUP_NGRAM_SIZES,
    GOPHER_THRESHOLDS,
    MEASUREMENTS,
    REPETITION_PRESETS,
    TOP_NGRAM_SIZES,
    ExactDeduplicator,
    MinHashDeduplicator,
    document_hash,
    failing_measurements,
    repetition_stats,
    resolve_thresholds,
)
from raysweep.recipes.synthetic import generate_documents

PROSE = (
    "The committee met on Tuesday to review the budget for the coming year. After a long debate, "
    "members agreed to fund the new library wing, although several of them worried about rising "
    "construction costs.\n"
    "Local residents, who had campaigned for the project since 2019, welcomed the decision and "
    "promised to help raise money for books and computers.\n"
    "Work is expected to begin in the spring and to finish before the end of next winter."
)


def test_stats_have_exactly_the_thirteen_measurements_in_order() -> None:
    assert tuple(repetition_stats(PROSE)) == MEASUREMENTS
    assert len(MEASUREMENTS) == 13


def test_line_fractions_count_every_occurrence_of_stripped_nonempty_lines() -> None:
    # Non-empty stripped lines: "a b", "c", "a b", "c", "dd" (the blank and whitespace-only lines
    # drop out; "  c  " strips to "c"). Repeated: "a b" x2, "c" x2 -> 4 of 5 lines.
    # Characters: 3 + 1 + 3 + 1 + 2 = 10, of which 3*2 + 1*2 = 8 repeated.
    stats = repetition_stats("a b\nc\na b\n\n   \n  c  \ndd")
    assert stats["dup_line_frac"] == pytest.approx(4 / 5)
    assert stats["dup_line_char_frac"] == pytest.approx(8 / 10)


def test_paragraph_fractions_split_on_blank_lines() -> None:
    # Paragraphs: "p one", "p three", "p one", "" (dropped), "p one": "p one" x3 of 4;
    # characters 5 * 3 + 7 = 22, of which 15 repeated.
    text = "p one\n\np three\n\np one\n\n\n\np one"
    stats = repetition_stats(text)
    assert stats["dup_para_frac"] == pytest.approx(3 / 4)
    assert stats["dup_para_char_frac"] == pytest.approx(15 / 22)
    # Two different paragraphs that share a line: lines repeat, paragraphs do not.
    stats = repetition_stats("x\ny\n\nx\nz")
    assert stats["dup_para_frac"] == stats["dup_para_char_frac"] == 0.0
    assert stats["dup_line_frac"] == pytest.approx(2 / 4)


def test_top_ngram_is_the_most_frequent_and_punctuation_is_not_counted() -> None:
    # Words: one two three one two three four; characters 3+3+5+3+3+5+4 = 26.
    # 2-grams "one two" and "two three" both occur twice: the longer (8 chars) wins -> 16/26.
    # 3-gram "one two three" occurs twice -> 11 * 2 / 26. No 4-gram repeats -> 0.
    stats = repetition_stats("one, two! three?\none... two three -- four")
    assert stats["top_2gram_char_frac"] == pytest.approx(16 / 26)
    assert stats["top_3gram_char_frac"] == pytest.approx(22 / 26)
    assert stats["top_4gram_char_frac"] == 0.0
    # Case is kept, as in DCLM: "One two three" and "one two three" are different 3-grams.
    assert repetition_stats("One two three one two three four")["top_3gram_char_frac"] == 0.0
    # Words a b c d a b c d e (9 characters): "a b c d" twice -> 4 * 2 / 9.
    assert repetition_stats("a b c d a b c d e")["top_4gram_char_frac"] == pytest.approx(8 / 9)


def test_top_ngram_tie_goes_to_the_longest() -> None:
    # Words cc d cc d a bbb a bbb (14 characters). "cc d" and "a bbb" both occur twice and come
    # first in that order; the longer "a bbb" (4 characters) counts: 4 * 2 / 14.
    assert repetition_stats("cc d cc d a bbb a bbb")["top_2gram_char_frac"] == pytest.approx(8 / 14)


@pytest.mark.parametrize("n", TOP_NGRAM_SIZES)
def test_top_ngram_fraction_for_each_size(n: int) -> None:
    # A phrase of n two-character words (2n chars) three times, each followed by a distinct filler
    # word (x, yy, zzz: 6 chars): the phrase is the only repeated n-gram -> 3 * 2n / (6n + 6).
    phrase = " ".join(f"w{i}" for i in range(n))
    stats = repetition_stats(f"{phrase} x {phrase} yy {phrase} zzz")
    assert stats[f"top_{n}gram_char_frac"] == pytest.approx(6 * n / (6 * n + 6))


@pytest.mark.parametrize("n", DUP_NGRAM_SIZES)
def test_duplicate_ngram_fraction_for_each_size(n: int) -> None:
    # phrase + zz + phrase + yyy: the phrase (2n chars) is the only repeated n-gram, covering 2n
    # words of 4n characters out of 4n + 5; no (n+1)-gram repeats (each contains zz or yyy).
    phrase = " ".join(f"w{i}" for i in range(n))
    stats = repetition_stats(f"{phrase} zz {phrase} yyy")
    assert stats[f"dup_{n}gram_char_frac"] == pytest.approx(4 * n / (4 * n + 5))
    if n + 1 in DUP_NGRAM_SIZES:
        assert stats[f"dup_{n + 1}gram_char_frac"] == 0.0


def test_duplicate_ngrams_count_each_covered_word_once() -> None:
    # Words a b c d e f a b c d e f ggg (15 characters). Repeated 5-grams "a b c d e" and
    # "b c d e f" overlap; together they cover the 12 one-letter words once each -> 12/15, not 20/15.
    stats = repetition_stats("a b c d e f a b c d e f ggg")
    assert stats["dup_5gram_char_frac"] == pytest.approx(12 / 15)
    assert stats["dup_6gram_char_frac"] == pytest.approx(12 / 15)
    assert stats["dup_7gram_char_frac"] == 0.0


def test_unicode_words_are_runs_of_word_characters() -> None:
    # Words café 日本 café 日本 café: 4+2+4+2+4 = 16 code points. Both 2-grams occur twice and are
    # 6 characters long -> 12/16.
    stats = repetition_stats("café, 日本! café 日本 café")
    assert stats["top_2gram_char_frac"] == pytest.approx(12 / 16)


@pytest.mark.parametrize("text", ["", "   ", "\n\n \n", "!!! ... ???"])
def test_empty_or_wordless_text_measures_zero(text: str) -> None:
    assert repetition_stats(text) == dict.fromkeys(MEASUREMENTS, 0.0)


def test_fewer_words_than_n_gives_zero_and_overlaps_may_exceed_one() -> None:
    # Words a a a (3 characters): "a a" occurs twice, overlapping -> 2 * 2 / 3, as in DCLM.
    stats = repetition_stats("a a a")
    assert stats["top_2gram_char_frac"] == pytest.approx(4 / 3)
    assert stats["top_3gram_char_frac"] == 0.0  # one 3-gram, occurring once
    assert all(stats[name] == 0.0 for name in MEASUREMENTS[6:])  # no 4-gram or longer


def test_default_preset_is_the_papers_table_2_which_is_gophers_table_a1() -> None:
    assert REPETITION_PRESETS["default"] == GOPHER_THRESHOLDS == {
        "dup_line_frac": 0.30, "dup_para_frac": 0.30,
        "dup_line_char_frac": 0.20, "dup_para_char_frac": 0.20,
        "top_2gram_char_frac": 0.20, "top_3gram_char_frac": 0.18, "top_4gram_char_frac": 0.16,
        "dup_5gram_char_frac": 0.15, "dup_6gram_char_frac": 0.14, "dup_7gram_char_frac": 0.13,
        "dup_8gram_char_frac": 0.12, "dup_9gram_char_frac": 0.11, "dup_10gram_char_frac": 0.10,
    }


def changed_from_default(preset: str) -> dict[str, float]:
    return {k: v for k, v in REPETITION_PRESETS[preset].items() if v != GOPHER_THRESHOLDS[k]}


def test_dedup_L_is_table_3_stricter_line_and_paragraph_tests() -> None:
    assert changed_from_default("dedup-L") == {
        "dup_line_frac": 0.20, "dup_para_frac": 0.20, "dup_line_char_frac": 0.15, "dup_para_char_frac": 0.15}


def test_dedup_LS_is_table_4_very_strict_line_and_paragraph_tests() -> None:
    assert changed_from_default("dedup-LS") == {
        "dup_line_frac": 0.15, "dup_para_frac": 0.15, "dup_line_char_frac": 0.10, "dup_para_char_frac": 0.10}


def test_dedup_G_is_table_5_stricter_top_2_3_4_gram_tests() -> None:
    assert changed_from_default("dedup-G") == {
        "top_2gram_char_frac": 0.14, "top_3gram_char_frac": 0.12, "top_4gram_char_frac": 0.10}


def test_dedup_GS_is_table_6_stricter_duplicate_5_to_10_gram_tests() -> None:
    assert changed_from_default("dedup-GS") == {
        "dup_5gram_char_frac": 0.08, "dup_6gram_char_frac": 0.07, "dup_7gram_char_frac": 0.06,
        "dup_8gram_char_frac": 0.05, "dup_9gram_char_frac": 0.04, "dup_10gram_char_frac": 0.03}


def test_dedup_presets_only_tighten_and_G_GS_tighten_disjoint_tests() -> None:
    assert set(REPETITION_PRESETS) == {"default", "dedup-L", "dedup-LS", "dedup-G", "dedup-GS"}
    for name in ("dedup-L", "dedup-LS", "dedup-G", "dedup-GS"):
        preset = REPETITION_PRESETS[name]
        assert tuple(preset) == MEASUREMENTS, name  # every measurement, in order
        assert all(preset[key] <= GOPHER_THRESHOLDS[key] for key in MEASUREMENTS), name
    assert all(REPETITION_PRESETS["dedup-LS"][k] <= REPETITION_PRESETS["dedup-L"][k] for k in MEASUREMENTS)
    assert not set(changed_from_default("dedup-G")) & set(changed_from_default("dedup-GS"))


def test_repetitive_document_fails_and_prose_passes_default() -> None:
    thresholds = resolve_thresholds("default")
    spam = "Buy cheap watches now!\nBest price guaranteed.\n" * 10 + "Contact us."
    reasons = failing_measurements(repetition_stats(spam), thresholds)
    assert {"dup_line_frac", "dup_line_char_frac", "dup_10gram_char_frac"} <= set(reasons)
    assert failing_measurements(repetition_stats(PROSE), thresholds) == []


def test_synthetic_repetition_knob_trips_the_line_rule() -> None:
    thresholds = resolve_thresholds("default")
    clean = generate_documents("web", 30_000, 0)
    repetitive = generate_documents("web", 30_000, 0, repetition_frac=0.5)
    failed_clean = [bool(failing_measurements(repetition_stats(t), thresholds)) for t in clean]
    assert np.mean(failed_clean) < 0.1
    assert all("dup_line_frac" in failing_measurements(repetition_stats(t), thresholds)
               for t in repetitive)


def test_failing_measurements_are_strictly_above_threshold_in_order() -> None:
    stats = dict.fromkeys(MEASUREMENTS, 0.0) | {"dup_line_frac": 0.5, "dup_9gram_char_frac": 0.2,
                                                "top_2gram_char_frac": 0.2}
    assert failing_measurements(stats, GOPHER_THRESHOLDS) == ["dup_line_frac", "dup_9gram_char_frac"]


def test_resolve_thresholds_applies_overrides() -> None:
    thresholds = resolve_thresholds("dedup-G", {"dup_line_frac": 1.0, "top_2gram_char_frac": 0})
    assert thresholds == REPETITION_PRESETS["dedup-G"] | {"dup_line_frac": 1.0, "top_2gram_char_frac": 0.0}
    assert resolve_thresholds("default") == GOPHER_THRESHOLDS
    assert resolve_thresholds("default") is not REPETITION_PRESETS["default"]


@pytest.mark.parametrize(("preset", "overrides", "message"), [
    ("gopher", {}, r"unknown repetition preset 'gopher'.*dedup-LS"),
    ("default", {"dup_lines_frac": 0.1}, r"unknown repetition measurement\(s\) \['dup_lines_frac'\]"),
    ("default", {"dup_line_frac": 1.5}, r"dup_line_frac must be a number in \[0, 1\]"),
    ("default", {"dup_line_frac": "0.1"}, r"dup_line_frac must be a number in \[0, 1\]"),
])
def test_resolve_thresholds_names_what_is_wrong(preset: str, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_thresholds(preset, overrides)


def test_document_hash_is_blake2b_of_the_exact_bytes() -> None:
    expected = int.from_bytes(hashlib.blake2b("café".encode(), digest_size=8).digest(), "little")
    assert document_hash("café") == expected
    assert document_hash("a b") != document_hash("a  b")


def test_exact_deduplicator_keeps_the_first_copy_only() -> None:
    dedup = ExactDeduplicator()
    verdicts = [dedup.is_duplicate(t) for t in ["a", "b", "a", "a ", "b", ""]]
    assert verdicts == [False, False, True, False, True, False]


def _words(num_words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"w{i}" for i in rng.integers(0, 10_000, size=num_words)]


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 5]) for i in range(len(words) - 4)}


def test_minhash_drops_a_one_word_edit_and_keeps_unrelated_text() -> None:
    original = _words(200, seed=1)
    edited = original.copy()
    edited[100] = "changed"  # 5 of 196 shingles change: Jaccard 191/201 = 0.95
    dedup = MinHashDeduplicator()
    assert not dedup.is_duplicate(" ".join(original))
    assert dedup.is_duplicate(" ".join(edited).upper())  # shingles are case-insensitive
    assert not dedup.is_duplicate(" ".join(_words(200, seed=2)))


def test_minhash_keeps_the_first_of_a_cluster() -> None:
    first = _words(300, seed=3)
    dedup = MinHashDeduplicator()
    assert not dedup.is_duplicate(" ".join(first))
    for position in (10, 150, 290):
        variant = first.copy()
        variant[position] = "edit"
        assert dedup.is_duplicate(" ".join(variant))


def test_minhash_signature_is_deterministic_given_seed() -> None:
    text = " ".join(_words(100, seed=4))
    first = MinHashDeduplicator(seed=7).signature(text)
    assert first.dtype == np.uint64 and first.shape == (128,)
    assert np.array_equal(first, MinHashDeduplicator(seed=7).signature(text))
    assert not np.array_equal(first, MinHashDeduplicator(seed=8).signature(text))


@pytest.mark.parametrize("num_shared", [60, 150, 240])
def test_minhash_estimates_jaccard_within_a_tenth(num_shared: int) -> None:
    # Two 300-word texts sharing their first `num_shared` words: true Jaccard of the 5-gram sets
    # ranges from about 0.1 to 0.7.
    a = _words(300, seed=5)
    b = a[:num_shared] + _words(300 - num_shared, seed=6)
    text_a, text_b = " ".join(a), " ".join(b)
    shingles_a, shingles_b = _shingles(text_a), _shingles(text_b)
    true_jaccard = len(shingles_a & shingles_b) / len(shingles_a | shingles_b)
    dedup = MinHashDeduplicator()
    estimate = np.mean(dedup.signature(text_a) == dedup.signature(text_b))
    assert estimate == pytest.approx(true_jaccard, abs=0.1)


def test_minhash_leaves_wordless_and_short_texts_sensible() -> None:
    dedup = MinHashDeduplicator()
    assert not dedup.is_duplicate("!!!")
    assert not dedup.is_duplicate("!!!")  # no words: left to ExactDeduplicator
    assert not dedup.is_duplicate("hello world")
    assert dedup.is_duplicate("Hello, world!")  # fewer than 5 words: one shingle of all of them


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_perm": 128, "bands": 24}, r"bands \(24\) must divide num_perm \(128\)"),
    ({"ngram_words": 0}, "ngram_words must be >= 1"),
    ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
])
def test_minhash_rejects_inconsistent_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MinHashDeduplicator(**kwargs)
