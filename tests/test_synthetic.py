"""Contract of the synthetic corpus: deterministic, one fixed language per domain, working knobs."""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from raysweep.recipes.synthetic import DOMAINS, DUPLICATE_POOL, generate_documents

SAMPLE_BYTES = 200_000


@functools.cache
def _sample(domain: str, seed: int, **knobs: float) -> tuple[str, ...]:
    return tuple(generate_documents(domain, SAMPLE_BYTES, seed, **knobs))


def _as_bytes(documents: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.frombuffer("\n".join(documents).encode("ascii"), dtype=np.uint8)


def _fit_bigram(documents: tuple[str, ...] | list[str]) -> np.ndarray:
    """Add-0.1 smoothed byte-bigram model as log2 P(next | previous), shape (256, 256)."""
    data = _as_bytes(documents).astype(np.int64)
    counts = np.bincount(data[:-1] * 256 + data[1:], minlength=256 * 256).reshape(256, 256) + 0.1
    return np.log2(counts / counts.sum(axis=1, keepdims=True))


def _cross_entropy(log_probs: np.ndarray, documents: tuple[str, ...] | list[str]) -> float:
    """Bits per byte of `documents` under a bigram model."""
    data = _as_bytes(documents).astype(np.int64)
    return float(-log_probs[data[:-1], data[1:]].mean())


def _digest(documents: list[str]) -> str:
    return hashlib.sha256("\x00".join(documents).encode()).hexdigest()


def test_same_arguments_give_identical_documents_across_calls_and_processes() -> None:
    knobs = {"low_quality_frac": 0.3, "duplicate_frac": 0.2, "repetition_frac": 0.1}
    digests = {d: _digest(generate_documents(d, 50_000, 7, **knobs)) for d in DOMAINS}
    assert digests == {d: _digest(generate_documents(d, 50_000, 7, **knobs)) for d in DOMAINS}
    script = (
        "import hashlib; from raysweep.recipes.synthetic import DOMAINS, generate_documents\n"
        "for d in DOMAINS:\n"
        f"    docs = generate_documents(d, 50_000, 7, **{knobs!r})\n"
        "    print(d, hashlib.sha256(chr(0).join(docs).encode()).hexdigest())\n"
    )
    # A different hash salt in the child would expose any use of the builtin hash().
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert dict(line.split() for line in out.splitlines()) == digests


def test_different_seeds_give_different_documents_from_the_same_language() -> None:
    for domain in DOMAINS:
        seed0, seed1 = _sample(domain, 0), _sample(domain, 1)
        assert not set(seed0) & set(seed1)
        half = len(seed0) // 2
        model = _fit_bigram(seed0[:half])
        held_out = _cross_entropy(model, seed0[half:])
        other_seed = _cross_entropy(model, seed1)
        assert abs(other_seed - held_out) < 0.03, (domain, held_out, other_seed)


def test_domains_are_distinguishable() -> None:
    models = {d: _fit_bigram(_sample(d, 0)) for d in DOMAINS}
    for trained, evaluated in itertools.permutations(DOMAINS, 2):
        own = _cross_entropy(models[trained], _sample(trained, 1))
        other = _cross_entropy(models[trained], _sample(evaluated, 1))
        assert other > own + 0.5, (trained, evaluated, own, other)


def test_low_quality_text_raises_cross_entropy_of_a_clean_model() -> None:
    for domain in DOMAINS:
        model = _fit_bigram(_sample(domain, 0))
        clean = _cross_entropy(model, _sample(domain, 1))
        noisy = _cross_entropy(model, _sample(domain, 1, low_quality_frac=0.5))
        assert noisy > clean + 0.3, (domain, clean, noisy)


def test_clean_documents_do_not_depend_on_low_quality_or_duplicate_frac() -> None:
    baseline = _sample("web", 3)
    mixed = _sample("web", 3, low_quality_frac=0.4, duplicate_frac=0.3)
    known = set(baseline)
    clean = [doc for doc in dict.fromkeys(mixed) if doc in known]
    assert len(clean) > 0.3 * len(baseline)
    assert clean == list(baseline[: len(clean)])


@pytest.mark.parametrize("duplicate_frac", [0.0, 0.3, 0.7])
def test_duplicate_frac_yields_that_share_of_exact_duplicate_documents(
        duplicate_frac: float) -> None:
    for domain in DOMAINS:
        documents = _sample(domain, 0, duplicate_frac=duplicate_frac)
        seen: set[str] = set()
        copied: set[str] = set()
        for document in documents:
            if document in seen:
                copied.add(document)
            seen.add(document)
        share = 1 - len(seen) / len(documents)
        assert share == pytest.approx(duplicate_frac, abs=1 / len(documents)), domain
        assert len(copied) <= DUPLICATE_POOL


@pytest.mark.parametrize("repetition_frac", [0.0, 0.25, 0.6])
def test_repetition_frac_yields_that_share_of_repeated_lines(repetition_frac: float) -> None:
    for domain in DOMAINS:
        repeated = total = 0
        for document in _sample(domain, 0, repetition_frac=repetition_frac):
            lines = document.split("\n")
            repeated += len(lines) - len(set(lines))
            total += len(lines)
        assert repeated / total == pytest.approx(repetition_frac, abs=0.03), domain


@pytest.mark.parametrize("num_bytes", [1, 999, 50_000])
def test_output_reaches_num_bytes_and_is_ascii(num_bytes: int) -> None:
    for domain in DOMAINS:
        documents = generate_documents(domain, num_bytes, 0, low_quality_frac=0.5,
                                       duplicate_frac=0.2, repetition_frac=0.2)
        sizes = [len(doc.encode("utf-8")) for doc in documents]
        assert sum(sizes) >= num_bytes > sum(sizes[:-1])
        assert all(doc.isascii() and doc for doc in documents)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"domain": "poetry"}, "domain must be one of"),
    ({"num_bytes": 0}, "num_bytes must be a positive integer"),
    ({"num_bytes": 1.5}, "num_bytes must be a positive integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"low_quality_frac": -0.1}, r"low_quality_frac must be in \[0, 1\]"),
    ({"duplicate_frac": 1.5}, r"duplicate_frac must be in \[0, 1\]"),
    ({"repetition_frac": float("nan")}, r"repetition_frac must be in \[0, 1\]"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, message: str) -> None:
    arguments = {"domain": "web", "num_bytes": 100, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_documents(**arguments)
