"""The Gopher repetition measurements and the paper's deduplication presets (App. D.1.4, Tables 2-6), as data:
sweep files name a preset, the loader checks the name, ``raysweep.recipes.filters`` measures and applies it (its
docstring says what each preset tightens)."""

from __future__ import annotations

TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)
LINE_MEASUREMENTS = ("dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac")
NGRAM_MEASUREMENTS = (tuple(f"top_{n}gram_char_frac" for n in TOP_NGRAM_SIZES)
                      + tuple(f"dup_{n}gram_char_frac" for n in DUP_NGRAM_SIZES))
MEASUREMENTS = LINE_MEASUREMENTS + NGRAM_MEASUREMENTS

GOPHER_THRESHOLDS: dict[str, float] = dict(zip(MEASUREMENTS, (
    0.30, 0.30, 0.20, 0.20,                    # duplicate line / paragraph (+ character) fractions
    0.20, 0.18, 0.16,                          # top 2/3/4-gram character fractions
    0.15, 0.14, 0.13, 0.12, 0.11, 0.10,        # duplicate 5..10-gram character fractions
)))


REPETITION_PRESETS: dict[str, dict[str, float]] = {
    "default": dict(GOPHER_THRESHOLDS),                                     # Table 2
    "dedup-L": GOPHER_THRESHOLDS | {                                        # Table 3
        "dup_line_frac": 0.20, "dup_para_frac": 0.20, "dup_line_char_frac": 0.15, "dup_para_char_frac": 0.15},
    "dedup-LS": GOPHER_THRESHOLDS | {                                       # Table 4
        "dup_line_frac": 0.15, "dup_para_frac": 0.15, "dup_line_char_frac": 0.10, "dup_para_char_frac": 0.10},
    "dedup-G": GOPHER_THRESHOLDS | {                                        # Table 5
        "top_2gram_char_frac": 0.14, "top_3gram_char_frac": 0.12, "top_4gram_char_frac": 0.10},
    "dedup-GS": GOPHER_THRESHOLDS | {                                       # Table 6
        "dup_5gram_char_frac": 0.08, "dup_6gram_char_frac": 0.07, "dup_7gram_char_frac": 0.06,
        "dup_8gram_char_frac": 0.05, "dup_9gram_char_frac": 0.04, "dup_10gram_char_frac": 0.03},
}
"""Thresholds of the paper's deduplication recipes (App. D.1.4, Tables 2-6; see ``raysweep.recipes.filters``)."""
