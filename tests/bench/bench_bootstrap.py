"""Time rank_transfer's vectorised bootstrap against a per-resample Python loop.

Run by hand: ``python tests/bench/bench_bootstrap.py``. Shape of the paper's sweep: 23 recipes,
3 proxy seeds, 3 target seeds, 10,000 resamples. The naive loop redraws the same resamples
(same generator and draw order as rank_transfer) and computes only Spearman with scipy, so the
two Spearman intervals must agree; the vectorised side also computes every other statistic.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from raysweep.analysis import rank_transfer

N_RECIPES, N_SEEDS, N_BOOT, SEED = 23, 3, 10_000, 0


def naive_spearman_interval(proxy: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of Spearman, one scipy call per resample."""
    rng = np.random.default_rng(SEED)
    proxy_picks = rng.integers(0, N_SEEDS, size=(N_BOOT, N_RECIPES, N_SEEDS))
    target_picks = rng.integers(0, N_SEEDS, size=(N_BOOT, N_RECIPES, N_SEEDS))
    rows = np.arange(N_RECIPES)[:, None]
    values = []
    for b in range(N_BOOT):
        proxy_mean = proxy[rows, proxy_picks[b]].mean(axis=1)
        target_mean = target[rows, target_picks[b]].mean(axis=1)
        values.append(stats.spearmanr(proxy_mean, target_mean).statistic)
    low, high = np.percentile(values, [2.5, 97.5], method="inverted_cdf")
    return float(low), float(high)


def best_of(repeats: int, function, *args):
    """(fastest wall time in seconds, last result) over ``repeats`` calls."""
    timings, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        timings.append(time.perf_counter() - start)
    return min(timings), result


def main() -> None:
    data = np.random.default_rng(42)
    true_means = 3.0 + 0.02 * np.arange(N_RECIPES)
    proxy = true_means[:, None] + 0.02 * data.standard_normal((N_RECIPES, N_SEEDS))
    target = true_means[:, None] - 0.5 + 0.02 * data.standard_normal((N_RECIPES, N_SEEDS))

    vectorised_s, result = best_of(5, rank_transfer, proxy, target, (1, 2, 3), N_BOOT, 0.95, SEED)
    naive_s, naive_interval = best_of(1, naive_spearman_interval, proxy, target)
    _, low, high = result["spearman"]
    assert np.allclose((low, high), naive_interval), (low, high, naive_interval)

    print(f"{N_BOOT} resamples x {N_RECIPES} recipes x {N_SEEDS} seeds")
    print(f"{'vectorised rank_transfer (all statistics)':<45} {vectorised_s:8.3f} s")
    print(f"{'naive per-resample loop (scipy Spearman only)':<45} {naive_s:8.3f} s")
    print(f"{'ratio naive / vectorised':<45} {naive_s / vectorised_s:8.1f} x")
    naive_low, naive_high = naive_interval
    print(f"Spearman 95% interval: vectorised ({low:.4f}, {high:.4f}), naive ({naive_low:.4f}, {naive_high:.4f})")


if __name__ == "__main__":
    main()
