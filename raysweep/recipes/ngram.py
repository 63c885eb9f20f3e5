"""Word n-gram language model and perplexity buckets for the RedPajama-V2-style quality filter.

RedPajama-V2 scores every candidate document with an n-gram model trained on clean reference text
(Wikipedia) and cuts the candidates at perplexity terciles: *head* (lowest third), *middle*, *tail*
(highest third). A recipe such as ``H70T30`` then mixes head+middle and tail documents 70:30
(arXiv 2512.24503, the perplexity-bucket family). This module holds the pure pieces; Ray ships the
trained model to workers by pickling it::

    model = KneserNeyModel.train(reference_documents, order=3)
    ppl = np.array([model.perplexity(doc) for doc in candidates])
    cutoffs = perplexity_cutoffs(ppl)                  # the 1/3 and 2/3 quantiles
    buckets = [bucket_of(p, cutoffs) for p in ppl]     # "head" | "middle" | "tail"
    head_middle_share, tail_share = parse_bucket_ratio("H70T30")   # (0.7, 0.3)

Tokens. Text is lower-cased and cut into lines; every line holding at least one word is a sentence,
and its words are the runs of ``\\w+`` (Unicode letters, digits, underscore; punctuation and spacing
are dropped). A sentence is scored as ``<s> w1 .. wm </s>``: ``m + 1`` predictions, the count KenLM and
CCNet average over. A text without any word is scored as one empty sentence (``</s>`` alone).

Model: interpolated *modified* Kneser-Ney (Chen & Goodman 1998, the estimator of KenLM's ``lmplz``)::

    p_k(w | h) = (a_k(hw) - D_k(a_k(hw))) / A_k(h)  +  g_k(h) * p_{k-1}(w | h minus its first word)
    A_k(h) = sum_v a_k(hv),   g_k(h) = sum_v D_k(a_k(hv)) / A_k(h),   p_0 = uniform over the vocabulary

At the highest order ``a`` is the raw count; below it, the continuation count: how many distinct
words precede ``hw`` (n-grams starting with ``<s>`` keep raw counts, as nothing can precede them).
So "francisco", frequent but only after "san", gets a small unigram share. Discounts per order come
from the counts-of-counts n1..n4 of ``a_k``: ``Y = n1 / (n1 + 2 n2)``, ``D(1) = Y``,
``D(2) = 2 - 3 Y n3 / n2``, ``D(3+) = 3 - 4 Y n4 / n3``. An order too sparse to estimate them (some
n_i = 0) or giving a discount <= 0 uses plain interpolated KN: one discount ``D = Y`` (0.5 if undefined).
An unseen context has ``g = 1``. Every ``p_k(. | h)`` therefore sums to one over the vocabulary.

Unknown words. The vocabulary is the training words seen at least ``min_count`` times (default 1,
like ``lmplz``), plus ``</s>`` and ``<unk>``; other words are ``<unk>``, in training and scoring.
Through ``p_0`` every vocabulary entry, ``<unk>`` included, has positive probability, so every
perplexity is finite; ``min_count=2`` makes ``<unk>`` a trained word and the model smaller.

Storage, as in an ARPA file: for each seen n-gram the log of its interpolated probability, for each
seen context ``log g``; scoring takes the longest seen n-gram ending in ``w`` and adds the ``log g`` of
the longer contexts it skipped. An n-gram is one Python int (word ids as base-|V| digits), which keeps
the dicts fast to probe and the pickle free of strings beyond the vocabulary.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
"""Boundary and unknown tokens; ``\\w+`` never yields '<', so they cannot collide with words."""

_WORD = re.compile(r"\w+")
_RATIO = re.compile(r"H(\d{1,3})T(\d{1,3})")


def _sentences(text: str) -> list[list[str]]:
    """The words of each line that has any; one empty sentence when none has, so every text scores."""
    return [words for line in text.lower().splitlines() if (words := _WORD.findall(line))] or [[]]


def _discounts(counts: Iterable[int]) -> tuple[float, float, float]:
    """Modified-KN discounts (D1, D2, D3+); plain KN's single D where those are undefined or not positive.

    Each discount lies in (0, c] for the counts c it applies to, so every seen context passes its lower
    order some mass (finite perplexities) and no seen n-gram's share goes negative (exact sums).
    """
    histogram = Counter(counts)
    n1, n2, n3, n4 = (histogram[c] for c in range(1, 5))
    y = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    if n1 and n2 and n3 and n4:
        d2, d3 = 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3
        if d2 > 0 and d3 > 0:
            return y, d2, d3
    return y, y, y


class KneserNeyModel:
    """Interpolated modified Kneser-Ney word n-gram model; build it with `KneserNeyModel.train`."""

    def __init__(self, order: int, ids: dict[str, int], log_probs: list[dict[int, float]],
                 log_backoffs: list[dict[int, float]], discounts: list[tuple[float, float, float]]):
        self.order = order
        self.discounts = discounts
        """(D1, D2, D3+) per order, unigrams first: what training estimated, for inspection."""
        self._ids = ids
        self._log_probs = log_probs        # [k - 1]: n-gram code of order k -> log p_k(w | h)
        self._log_backoffs = log_backoffs  # [k - 1]: context code of order k -> log g_k(h)

    @classmethod
    def train(cls, documents: Iterable[str], order: int = 3, min_count: int = 1) -> KneserNeyModel:
        """Estimate the model from reference documents in one streaming pass (memory ~ distinct n-grams)."""
        if order < 2:
            raise ValueError(f"order must be at least 2 (a unigram model ignores word order), got {order!r}")
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count!r}")
        word_counts: Counter[str] = Counter()
        windows: Counter[tuple[str, ...]] = Counter()   # every run of `order` tokens
        prefixes: Counter[tuple[str, ...]] = Counter()  # sentence starts shorter than `order`
        for document in documents:
            for words in _sentences(document):
                if not words:
                    continue
                word_counts.update(words)
                tokens = [BOS, *words, EOS]
                windows.update(zip(*(tokens[i:] for i in range(order))))
                prefixes.update(tuple(tokens[:k]) for k in range(2, min(order, len(tokens) + 1)))
        if not word_counts:
            raise ValueError("the training documents hold no words; the model would be empty")

        kept = sorted((w for w, c in word_counts.items() if c >= min_count), key=lambda w: (-word_counts[w], w))
        ids = {token: i for i, token in enumerate([BOS, EOS, UNK, *kept])}
        unk = ids[UNK]

        def to_ids(grams: Counter[tuple[str, ...]]) -> Counter[tuple[int, ...]]:
            merged: Counter[tuple[int, ...]] = Counter()
            for gram, count in grams.items():
                merged[tuple(ids.get(w, unk) for w in gram)] += count
            return merged

        counts, starts = {order: to_ids(windows)}, to_ids(prefixes)
        del windows, prefixes  # the string-keyed tables are the largest; free them before estimating
        for k in range(order - 1, 0, -1):
            # Continuation count: each distinct (k+1)-gram is one distinct left neighbour of its suffix.
            counts[k] = Counter(gram[1:] for gram in counts[k + 1])
            counts[k].update({gram: c for gram, c in starts.items() if len(gram) == k})
        return cls._estimate(order, ids, counts)

    @classmethod
    def _estimate(cls, order: int, ids: dict[str, int], counts: dict[int, Counter]) -> KneserNeyModel:
        """Interpolated probabilities order by order, each order's from the one below it."""
        base = len(ids)
        uniform = 1.0 / (base - 1)  # every token but <s> can be predicted
        log_probs: list[dict[int, float]] = []
        log_backoffs: list[dict[int, float]] = []
        discounts = []
        lower: dict[tuple[int, ...], float] = {}
        for k in range(1, order + 1):
            d = _discounts(counts[k].values())
            totals: Counter[tuple[int, ...]] = Counter()
            masses: Counter[tuple[int, ...]] = Counter()
            for gram, c in counts[k].items():
                totals[gram[:-1]] += c
                masses[gram[:-1]] += d[min(c, 3) - 1]
            backoff = {h: masses[h] / totals[h] for h in totals}
            grams = counts[k] if k > 1 else {(i,): counts[1].get((i,), 0) for i in range(1, base)}
            probs = {}
            for gram, c in grams.items():
                h = gram[:-1]
                below = lower[gram[1:]] if k > 1 else uniform
                probs[gram] = ((c - d[min(c, 3) - 1]) / totals[h] if c else 0.0) + backoff[h] * below
            log_probs.append({_code(g, base): math.log(p) for g, p in probs.items()})
            log_backoffs.append({_code(h, base): math.log(g) for h, g in backoff.items()} if k > 1 else {})
            discounts.append(d)
            lower = probs
        return cls(order, ids, log_probs, log_backoffs, discounts)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every token the model predicts: the kept words, ``</s>`` and ``<unk>`` (never ``<s>``)."""
        return tuple(token for token in self._ids if token != BOS)

    def word_log_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """Natural log p(word | context) for tokens as the model sees them (``<s>`` may open the context)."""
        if word == BOS:
            raise ValueError(f"{BOS} is never predicted; it may only open a context")
        base, unk = len(self._ids), self._ids[UNK]
        tokens = [self._ids.get(t, unk) for t in context][-(self.order - 1):]
        target, backoff = self._ids.get(word, unk), 0.0
        # The longest seen n-gram ending in `word`, plus the log backoffs of the longer contexts skipped.
        for k in range(len(tokens) + 1, 0, -1):
            history = _code(tokens[len(tokens) - k + 1:], base)
            log_prob = self._log_probs[k - 1].get(history * base + target)
            if log_prob is not None:
                return log_prob + backoff
            backoff += self._log_backoffs[k - 1].get(history, 0.0)
        raise AssertionError("every vocabulary id has a unigram probability")

    def log_prob_per_word(self, text: str) -> float:
        """Mean natural-log probability per prediction (each word and each sentence's ``</s>``).

        Same result as chaining `word_log_prob`, computed one order at a time over the whole text:
        the dict probes run inside ``map`` and the backoff choice in numpy, ~5x faster than a Python
        loop per word.
        """
        ids, unk, bos, eos = self._ids, self._ids[UNK], self._ids[BOS], self._ids[EOS]
        tokens: list[int] = []
        for words in _sentences(text):
            tokens += [bos, *[ids.get(word, unk) for word in words], eos]
        n, base = len(tokens), len(ids)
        position = np.arange(n)
        is_bos = np.array(tokens) == bos
        # Tokens of history inside the sentence, <s> included: order k needs depth >= k - 1.
        depth = position - np.maximum.accumulate(np.where(is_bos, position, 0))
        grams = tokens  # grams[p]: code of the order-k n-gram ending at p (junk where depth < k - 1)
        result = np.fromiter(map(self._log_probs[0].get, tokens, repeat(math.nan)), np.float64, n)
        for k in range(2, self.order + 1):
            contexts, grams = [0, *grams[:-1]], [0, *[g * base + t for g, t in zip(grams, tokens[1:])]]
            seen = np.fromiter(map(self._log_probs[k - 1].get, grams, repeat(math.nan)), np.float64, n)
            backoff = np.fromiter(map(self._log_backoffs[k - 1].get, contexts, repeat(0.0)), np.float64, n)
            longer = np.where(np.isnan(seen), backoff + result, seen)
            result = np.where(depth >= k - 1, longer, result)
        return float(result[~is_bos].sum() / (n - is_bos.sum()))

    def perplexity(self, text: str) -> float:
        """exp(-mean log probability per prediction); lower means closer to the reference text."""
        return math.exp(-self.log_prob_per_word(text))


def _code(tokens: Sequence[int], base: int) -> int:
    """Token ids as the digits of one int in base |V|: unique among n-grams of one length."""
    code = 0
    for token in tokens:
        code = code * base + token
    return code


class KenLMModel:
    """A KenLM ``.arpa``/``.bin`` model behind the same ``perplexity(text)`` as `KneserNeyModel`.

    Text is tokenised as above (lower-cased ``\\w+`` words, one sentence per line), so the KenLM model
    must have been trained on text normalised the same way. Pickling reloads from `path`, which must
    therefore be readable wherever the model is unpickled (every Ray worker).
    """

    def __init__(self, path: str | Path):
        try:
            import kenlm
        except ImportError as err:
            raise ImportError(
                f"KenLMModel({str(path)!r}) needs the optional package kenlm: pip install kenlm "
                "(it compiles C++), or train a KneserNeyModel instead, which needs nothing") from err
        self.path = str(path)
        self._model = kenlm.Model(self.path)

    def __reduce__(self):
        return KenLMModel, (self.path,)

    def perplexity(self, text: str) -> float:
        """10 ** (-mean log10 probability per prediction), KenLM's own log base."""
        log10_total, count = 0.0, 0
        for words in _sentences(text):
            log10_total += self._model.score(" ".join(words), bos=True, eos=True)
            count += len(words) + 1
        return 10.0 ** (-log10_total / count)


def perplexity_cutoffs(perplexities: np.ndarray, quantiles: tuple[float, float] = (1 / 3, 2 / 3)
                       ) -> tuple[float, float]:
    """The head/middle and middle/tail boundaries: quantiles of the scored corpus (linear interpolation).

    RedPajama-V2 uses terciles. See `bucket_of` for where documents exactly on a cutoff go.
    """
    values = np.asarray(perplexities, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"perplexities must be a non-empty 1-D array of finite numbers, got shape {values.shape}")
    low, high = quantiles
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"quantiles must satisfy 0 <= low <= high <= 1, got {quantiles!r}")
    head_cut, tail_cut = np.quantile(values, [low, high])
    return float(head_cut), float(tail_cut)


def bucket_of(perplexity: float, cutoffs: tuple[float, float]) -> str:
    """"head" if perplexity <= cutoffs[0], "middle" if <= cutoffs[1], else "tail".

    Ties go to the better (lower) bucket, so a document's bucket depends only on its own score, never
    on corpus order; with many equal scores a bucket can thus hold more than its quantile share.
    """
    head_cut, tail_cut = cutoffs
    if head_cut > tail_cut:
        raise ValueError(f"cutoffs must be (head/middle, middle/tail) in increasing order, got {cutoffs!r}")
    if perplexity <= head_cut:
        return "head"
    return "middle" if perplexity <= tail_cut else "tail"


def parse_bucket_ratio(name: str) -> tuple[float, float]:
    """'H70T30' -> (0.7, 0.3): shares of head+middle and of tail documents, in percent summing to 100."""
    match = _RATIO.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"a bucket ratio looks like 'H70T30' (head+middle percent, tail percent), got {name!r}")
    head_middle, tail = int(match[1]), int(match[2])
    if head_middle + tail != 100:
        raise ValueError(f"bucket ratio {name!r} must sum to 100 percent, sums to {head_middle + tail}")
    return head_middle / 100, tail / 100
