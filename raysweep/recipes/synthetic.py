"""Deterministic synthetic multi-domain text corpus, standing in for real pretraining data offline.

Each domain is a small artificial language fixed by the domain name alone (its "language seed"),
so training text and held-out validation text drawn with different ``seed`` values come from the
same distribution. Only ASCII is produced, so one character is one byte for a byte-level model.

Generative process
------------------
1. Vocabulary. A domain's words are its hand-picked function words (keywords and operators for
   ``code``, operators and variables for ``math``, ...) followed by generated words made of 1..N
   syllables (onset + nucleus + coda) from the domain's own letter inventory, shortest first.
   Word ``r`` (0-based) has unigram weight ``1 / (r + 1) ** 1.1`` (Zipf).
2. Word order. Every word has ``SUCCESSORS`` successor words drawn from that Zipf law. A document
   is one first-order Markov walk: with probability ``RESTART_PROB`` the next word is a fresh Zipf
   draw, otherwise it is successor ``k`` of the current word, with weight ``1 / (k + 1)``.
3. Lines. The walk is cut into lines of a uniform, domain-specific number of words joined by
   spaces, then laid out per domain: ``web``/``science`` capitalise and end each sentence with
   ".", ``code`` indents by a random walk over depths 0..3, ``dialog`` alternates two speakers and
   ends turns with "?", "." or "!", ``math`` keeps bare equations.
4. Documents hold a uniform, domain-specific number of lines joined by "\\n".

Quality knobs (each a share in [0, 1]):

* ``low_quality_frac``: that share of newly generated documents use uniformly drawn words (no
  Zipf law, no Markov structure), get ``CORRUPTION_RATE`` of their characters replaced by random
  printable ASCII, and ``BOILERPLATE_RATE`` of their lines replaced by web boilerplate.
* ``duplicate_frac``: that share of documents (never the first) are exact copies of one of the
  first ``DUPLICATE_POOL`` generated documents, so a few documents are repeated many times.
* ``repetition_frac``: in every document, ``round(repetition_frac * lines)`` lines (never the
  first line) are copies of uniformly chosen earlier lines of that document.

The two document shares are dithered: each document's kind is random, but after ``n`` documents
the number of duplicates (and of low-quality documents among the others) is within one of its
target, so even a small corpus gets the recipe it asked for. Clean text, low-quality text and the
per-document choices use separate random streams, so the clean documents of a call come in the
same order for any ``low_quality_frac`` and ``duplicate_frac``: recipes that differ in one knob
differ only in what that knob changes.

Example, the start of ``generate_documents("dialog", 200, seed=0)[0]``::

    Ana: you yee really.
    Rin: wot ye maayp i no yuwat japya the yeah?
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ZIPF_EXPONENT = 1.1
SUCCESSORS = 8
RESTART_PROB = 0.1
CORRUPTION_RATE = 0.1
BOILERPLATE_RATE = 0.2
DUPLICATE_POOL = 16
BOILERPLATE = (
    "Home | About | Contact | Login",
    "Click here to subscribe to our newsletter!",
    "Copyright (c) All rights reserved.",
    "We use cookies. Accept all cookies to continue.",
    "Share on Facebook Twitter Email",
    "Page 1 of 12 Next >>",
)
SPEAKERS = ("Ana", "Ben", "Kee", "Moe", "Rin", "Tal")

_Layout = Callable[[list[str], np.random.Generator], list[str]]


def _sentences(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Prose: a capitalised sentence per line."""
    return [line[:1].upper() + line[1:] + "." for line in lines]


def _code_block(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Code: indentation follows a random walk so nesting looks like blocks opening and closing."""
    steps = rng.integers(-1, 2, size=len(lines)).tolist()
    depth, indented = 0, []
    for line, step in zip(lines, steps):
        depth = min(max(depth + step, 0), 3)
        indented.append("    " * depth + line)
    return indented


def _equations(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Math: bare equations; numbers, variables and operators are already words."""
    return lines


def _turns(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Dialog: two speakers take turns; each turn ends as a question, statement or exclamation."""
    first, second = rng.choice(len(SPEAKERS), size=2, replace=False).tolist()
    ends = rng.choice(3, size=len(lines), p=(0.4, 0.4, 0.2)).tolist()
    return [
        f"{SPEAKERS[second if i % 2 else first]}: {line}{'?.!'[end]}"
        for i, (line, end) in enumerate(zip(lines, ends))
    ]


@dataclass(frozen=True)
class _DomainSpec:
    """What makes a domain's text look like itself; everything random comes from its name."""

    function_words: tuple[str, ...]
    onsets: tuple[str, ...]
    nuclei: tuple[str, ...]
    codas: tuple[str, ...]
    syllable_sep: str
    max_syllables: int
    vocab_size: int
    words_per_line: tuple[int, int]
    lines_per_doc: tuple[int, int]
    layout: _Layout


_SPECS: dict[str, _DomainSpec] = {
    "web": _DomainSpec(
        ("the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "was", "on", "with",
         "as", "you", "at", "this", "by", "from", "or", "we", "have", "are", "your"),
        ("", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "w", "br", "st",
         "th", "sh", "ch", "pl", "tr"),
        ("a", "e", "i", "o", "u", "ea", "ou", "ai", "ee"),
        ("", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck"),
        "", 3, 2000, (8, 24), (4, 20), _sentences,
    ),
    "code": _DomainSpec(
        ("(", ")", "=", ":", ",", "def", "return", "if", "self", ".", "for", "in", "[", "]",
         "+", "import", "else", "None", "==", "not", "while", "class", "True", "0", "1", "+=",
         "print", "len"),
        ("b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "x"),
        ("a", "e", "i", "o", "u"),
        ("", "t", "n", "r", "x", "l", "s", "g"),
        "_", 3, 800, (3, 12), (8, 48), _code_block,
    ),
    "math": _DomainSpec(
        ("=", "+", "x", "-", "(", ")", "y", "*", "n", "/", "^", "2", "1", "k", "let", "then",
         "so", "where", "\\frac", "\\sum", "<", ">", "a_n", "x_1", "x_2", "f(x)", "0", "3"),
        ("1", "2", "3", "4", "5", "6", "7", "8", "9"),
        ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
        ("",),
        "", 2, 400, (5, 16), (4, 24), _equations,
    ),
    "dialog": _DomainSpec(
        ("i", "you", "yeah", "ok", "so", "it", "the", "what", "no", "oh", "is", "do", "that",
         "like", "lol", "um", "we", "just", "really", "hey"),
        ("", "h", "y", "w", "m", "n", "k", "g", "j", "b", "s"),
        ("a", "o", "e", "ee", "oo", "ay", "u"),
        ("", "", "h", "p", "t", "k", "y", "nna"),
        "", 2, 800, (2, 12), (6, 32), _turns,
    ),
    "science": _DomainSpec(
        ("the", "of", "in", "and", "was", "were", "by", "we", "with", "(", ")", "%", "et", "al",
         "mg", "nm", "p", "<", "0.05", "[1]", "[2]", "is", "a"),
        ("ph", "th", "chr", "cr", "gl", "x", "z", "k", "v", "m", "n", "p", "t", "hy", "pr"),
        ("a", "e", "i", "o", "y", "io", "ae", "eu"),
        ("", "", "l", "n", "s", "x", "m", "ph"),
        "", 4, 2500, (10, 30), (4, 16), _sentences,
    ),
}
DOMAINS: tuple[str, ...] = tuple(_SPECS)


def _stable_hash(text: str) -> int:
    """64-bit hash that is the same in every process, unlike the salted builtin ``hash``."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _zipf_cdf(size: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1, dtype=np.float64) ** exponent
    return np.cumsum(weights / weights.sum())


def _sample(cdf: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Inverse-CDF draws; ``minimum`` guards against a float cumsum ending just below 1."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), cdf.size - 1)


_SUCCESSOR_CDF = _zipf_cdf(SUCCESSORS, 1.0)


@dataclass(frozen=True)
class _Language:
    """A domain's vocabulary and word-transition table, built once from the domain name."""

    spec: _DomainSpec
    words: list[str]
    word_cdf: np.ndarray
    successors: list[list[int]]

    @classmethod
    def build(cls, domain: str) -> _Language:
        spec = _SPECS[domain]
        rng = np.random.default_rng(_stable_hash(f"language:{domain}"))
        vocabulary = dict.fromkeys(spec.function_words)
        generated: dict[str, None] = {}
        while len(vocabulary) + len(generated) < spec.vocab_size:
            n = 4 * spec.vocab_size
            syllables = rng.integers(1, spec.max_syllables + 1, size=n).tolist()
            parts = zip(rng.integers(len(spec.onsets), size=(n, spec.max_syllables)).tolist(),
                        rng.integers(len(spec.nuclei), size=(n, spec.max_syllables)).tolist(),
                        rng.integers(len(spec.codas), size=(n, spec.max_syllables)).tolist())
            for count, (onsets, nuclei, codas) in zip(syllables, parts):
                word = spec.syllable_sep.join(
                    spec.onsets[o] + spec.nuclei[v] + spec.codas[c]
                    for o, v, c in zip(onsets[:count], nuclei[:count], codas[:count]))
                if word not in vocabulary:
                    generated[word] = None
        # Shorter generated words get the more frequent ranks, as in natural languages.
        extra = sorted(generated, key=len)[: spec.vocab_size - len(vocabulary)]
        words = list(vocabulary) + extra
        word_cdf = _zipf_cdf(len(words), ZIPF_EXPONENT)
        successors = _sample(word_cdf, rng, len(words) * SUCCESSORS).reshape(-1, SUCCESSORS)
        return cls(spec, words, word_cdf, successors.tolist())

    def _markov_walk(self, rng: np.random.Generator, length: int) -> list[int]:
        """Word ids of one walk; bulk draws up front leave only a table lookup per word."""
        fresh_words = _sample(self.word_cdf, rng, length)
        ranks = _sample(_SUCCESSOR_CDF, rng, length)
        restart = rng.random(length) < RESTART_PROB
        restart[0] = True
        steps = np.where(restart, ~fresh_words, ranks).tolist()  # negative: restart at word ~step
        successors, word, walk = self.successors, 0, []
        for step in steps:
            word = successors[word][step] if step >= 0 else ~step
            walk.append(word)
        return walk

    def document(self, rng: np.random.Generator, repetition_frac: float, low_quality: bool) -> str:
        spec = self.spec
        n_lines = int(rng.integers(spec.lines_per_doc[0], spec.lines_per_doc[1] + 1))
        n_repeats = min(round(repetition_frac * n_lines), n_lines - 1)
        lengths = rng.integers(spec.words_per_line[0], spec.words_per_line[1] + 1,
                               size=n_lines - n_repeats)
        total = int(lengths.sum())
        ids = (rng.integers(len(self.words), size=total).tolist() if low_quality
               else self._markov_walk(rng, total))
        tokens = [self.words[i] for i in ids]
        bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
        lines = spec.layout([" ".join(tokens[a:b]) for a, b in zip(bounds, bounds[1:])], rng)
        if low_quality:
            lines = _degrade(lines, rng)
        return "\n".join(_with_repeats(lines, n_repeats, rng))


def _degrade(lines: list[str], rng: np.random.Generator) -> list[str]:
    """Character noise and boilerplate, keeping line breaks so line counts stay meaningful."""
    text = np.frombuffer("\n".join(lines).encode("ascii"), dtype=np.uint8).copy()
    hit = (rng.random(text.size) < CORRUPTION_RATE) & (text != ord("\n"))
    text[hit] = rng.integers(32, 127, size=int(hit.sum()), dtype=np.uint8)
    noisy = text.tobytes().decode("ascii").split("\n")
    boilerplate = (rng.random(len(noisy)) < BOILERPLATE_RATE).tolist()
    picks = rng.integers(len(BOILERPLATE), size=len(noisy)).tolist()
    return [BOILERPLATE[p] if b else line for line, b, p in zip(noisy, boilerplate, picks)]


def _with_repeats(fresh: list[str], n_repeats: int, rng: np.random.Generator) -> list[str]:
    """Insert ``n_repeats`` copies of earlier lines at random positions after the first line."""
    if n_repeats == 0:
        return fresh
    n_lines = len(fresh) + n_repeats
    repeat_at = set((rng.choice(n_lines - 1, size=n_repeats, replace=False) + 1).tolist())
    source = rng.random(n_lines).tolist()
    lines: list[str] = []
    fresh_lines = iter(fresh)
    for position in range(n_lines):
        if position in repeat_at:
            lines.append(lines[int(source[position] * position)])
        else:
            lines.append(next(fresh_lines))
    return lines


@functools.cache
def _language(domain: str) -> _Language:
    return _Language.build(domain)


def _validate(domain: str, num_bytes: int, seed: int, fractions: dict[str, float]) -> None:
    if domain not in _SPECS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if not isinstance(num_bytes, (int, np.integer)) or num_bytes <= 0:
        raise ValueError(f"num_bytes must be a positive integer, got {num_bytes!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def generate_documents(domain: str, num_bytes: int, seed: int, *, low_quality_frac: float = 0.0,
                       duplicate_frac: float = 0.0, repetition_frac: float = 0.0) -> list[str]:
    """Documents of `domain` until their UTF-8 size reaches num_bytes (the last one may overshoot)."""
    _validate(domain, num_bytes, seed, {"low_quality_frac": low_quality_frac,
                                        "duplicate_frac": duplicate_frac,
                                        "repetition_frac": repetition_frac})
    language = _language(domain)
    clean_rng, noisy_rng, choice_rng = (
        np.random.default_rng([_stable_hash(domain), seed, stream]) for stream in range(3))
    documents: list[str] = []
    fresh: list[str] = []
    n_duplicates = n_low_quality = size = 0
    while size < num_bytes:
        # Dithered draws: the running counts stay within one document of their target shares,
        # so small corpora get the requested recipe rather than a Bernoulli approximation of it.
        duplicate = bool(fresh) and (
            choice_rng.random() < duplicate_frac * (len(documents) + 1) - n_duplicates)
        if duplicate:
            document = fresh[int(choice_rng.integers(min(len(fresh), DUPLICATE_POOL)))]
            n_duplicates += 1
        else:
            low_quality = choice_rng.random() < low_quality_frac * (len(fresh) + 1) - n_low_quality
            rng = noisy_rng if low_quality else clean_rng
            document = language.document(rng, repetition_frac, low_quality)
            fresh.append(document)
            n_low_quality += low_quality
        documents.append(document)
        size += len(document)
    return documents
