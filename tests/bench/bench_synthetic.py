"""Throughput of the synthetic corpus, next to the cost of merely turning the same text into bytes.

Run by hand: ``python tests/bench/bench_synthetic.py``. Generation must never be what a build
waits on; the encode-only column is the floor any data pipeline pays anyway.
"""

from __future__ import annotations

import time

import numpy as np

from raysweep.recipes.synthetic import DOMAINS, generate_documents

NUM_BYTES = 5_000_000
REPEATS = 3


def _best_seconds(work) -> float:
    """Best of a few runs, so a stray scheduler hiccup does not decide the figure."""
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    print(f"{NUM_BYTES / 1e6:.0f} MB per domain, best of {REPEATS}, one core")
    print(f"{'domain':>8} {'generate MB/s':>14} {'encode MB/s':>12} {'generate/encode time':>22}")
    for domain in DOMAINS:
        generate_documents(domain, 1, 0)  # builds the domain's language outside the timing
        documents = generate_documents(domain, NUM_BYTES, 0, low_quality_frac=0.1,
                                       duplicate_frac=0.1, repetition_frac=0.1)
        size_mb = sum(map(len, documents)) / 1e6
        generate = _best_seconds(lambda: generate_documents(
            domain, NUM_BYTES, 0, low_quality_frac=0.1, duplicate_frac=0.1, repetition_frac=0.1))
        encode = _best_seconds(
            lambda: [np.frombuffer(doc.encode(), dtype=np.uint8) for doc in documents])
        print(f"{domain:>8} {size_mb / generate:14.1f} {size_mb / encode:12.1f} "
              f"{generate / encode:21.1f}x")


if __name__ == "__main__":
    main()
