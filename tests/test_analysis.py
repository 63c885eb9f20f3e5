"""Contracts of raysweep.analysis: scipy parity, tie and divergence rules, bootstrap behaviour."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from scipy import stats

from raysweep.analysis import (
    decision_accuracy,
    kendall_tau,
    rank_transfer,
    seed_mean_interval,
    seed_std,
    spearman,
    top_k_regret,
    training_flops,
    within_noise,
    within_noise_of_previous,
)

# Any numpy warning (inf - inf, 0/0) leaking out of the module is a bug.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _scipy_quietly(function, a: np.ndarray, b: np.ndarray) -> float:
    """scipy statistic with its constant-input warning silenced (we compare the NaN it returns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(a, b).statistic


def _random_cases_with_ties(count: int, with_inf: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Small integer-valued loss vectors (so ties are common), optionally with diverged runs."""
    rng = np.random.default_rng(1234)
    cases = []
    for _ in range(count):
        n = int(rng.integers(2, 15))
        a = rng.integers(0, 5, n).astype(float)
        b = rng.integers(0, 5, n).astype(float)
        if with_inf:
            a[rng.random(n) < 0.2] = np.inf
            b[rng.random(n) < 0.2] = np.inf
        cases.append((a, b))
    return cases


def _synthetic_sweep(
    rng: np.random.Generator, n_recipes: int, n_seeds: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Proxy/target losses [recipes x seeds]: well-separated true means plus Gaussian seed noise."""
    proxy_means = 3.0 + 0.1 * np.arange(n_recipes)
    target_means = 2.5 + 0.1 * rng.permutation(n_recipes)
    proxy = proxy_means[:, None] + noise * rng.standard_normal((n_recipes, n_seeds))
    target = target_means[:, None] + noise * rng.standard_normal((n_recipes, n_seeds))
    return proxy, target


# --- rank correlations ---------------------------------------------------------------------------


def test_spearman_matches_scipy_on_random_cases_with_ties() -> None:
    for a, b in _random_cases_with_ties(400, with_inf=False):
        expected = _scipy_quietly(stats.spearmanr, a, b)
        np.testing.assert_allclose(spearman(a, b), expected, atol=1e-12)


def test_spearman_matches_scipy_with_inf_ranked_as_worst() -> None:
    for a, b in _random_cases_with_ties(400, with_inf=True):
        expected = _scipy_quietly(stats.spearmanr, a, b)
        np.testing.assert_allclose(spearman(a, b), expected, atol=1e-12)
    # A diverged recipe ranks last: same ordering as a merely large loss.
    assert spearman([1.0, 2.0, np.inf], [1.0, 2.0, 3.0]) == pytest.approx(1.0)


def test_kendall_tau_matches_scipy_tau_b_on_random_cases_with_ties_and_inf() -> None:
    for with_inf in (False, True):
        for a, b in _random_cases_with_ties(400, with_inf=with_inf):
            expected = _scipy_quietly(stats.kendalltau, a, b)
            np.testing.assert_allclose(kendall_tau(a, b), expected, atol=1e-12)


def test_correlations_are_nan_when_a_ranking_is_constant() -> None:
    assert np.isnan(spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
    assert np.isnan(kendall_tau([1.0, 2.0, 3.0], [np.inf, np.inf, np.inf]))


# --- decision accuracy ---------------------------------------------------------------------------


def test_decision_accuracy_hand_case_excludes_target_ties_and_half_credits_proxy_ties() -> None:
    proxy = np.array([1.0, 2.0, 2.0, 0.0])
    target = np.array([1.0, 3.0, 2.0, 1.0])
    # pair  proxy order  target order  credit
    # 0,1   0<1          0<1           1
    # 0,2   0<2          0<2           1
    # 0,3   0>3          tie           excluded (no right answer)
    # 1,2   tie          1>2           1/2
    # 1,3   1>3          1>3           1
    # 2,3   2>3          2>3           1
    # -> 4.5 / 5 scorable pairs
    assert decision_accuracy(proxy, target) == pytest.approx(0.9)


def test_decision_accuracy_counts_reversals_and_treats_diverged_runs_as_tied_worst() -> None:
    # Proxy reverses the target completely: every scorable pair is wrong.
    assert decision_accuracy([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    # Target: recipes 1 and 2 both diverged (tied, excluded); pairs (0,1), (0,2) are right.
    assert decision_accuracy([1.0, 2.0, 3.0], [1.0, np.inf, np.inf]) == 1.0


def test_decision_accuracy_is_nan_when_no_pair_is_scorable() -> None:
    assert np.isnan(decision_accuracy([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))
    assert np.isnan(decision_accuracy([1.0], [1.0]))


# --- top-k regret --------------------------------------------------------------------------------


def test_top_k_regret_hand_worked_cases() -> None:
    # Case 1: proxy order is recipes 1, 2, 0, 3; the target's best is recipe 3 at 1.9.
    proxy = np.array([0.3, 0.1, 0.2, 0.4])
    target = np.array([2.0, 2.5, 2.2, 1.9])
    assert top_k_regret(proxy, target, 1) == pytest.approx(0.6)  # pick {1}: 2.5 - 1.9
    assert top_k_regret(proxy, target, 2) == pytest.approx(0.3)  # {1, 2}: min(2.5, 2.2) - 1.9
    assert top_k_regret(proxy, target, 3) == pytest.approx(0.1)  # {1, 2, 0}: 2.0 - 1.9
    assert top_k_regret(proxy, target, 4) == 0.0  # every recipe chosen

    # Case 2: recipes 1 and 2 tie in proxy loss; each takes the single slot half the time.
    proxy = np.array([0.5, 0.2, 0.2, 0.9])
    target = np.array([1.0, 3.0, 2.0, 1.5])
    assert top_k_regret(proxy, target, 1) == pytest.approx(1.5)  # {1} or {2}: (2.0 + 1.0) / 2
    assert top_k_regret(proxy, target, 2) == pytest.approx(1.0)  # {1, 2}: 2.0 - 1.0

    # Case 3: the proxy's favourite diverged at target scale.
    proxy = np.array([1.0, 2.0, 3.0])
    target = np.array([np.inf, 5.0, 4.0])
    assert top_k_regret(proxy, target, 1) == np.inf  # {0}: inf - 4.0
    assert top_k_regret(proxy, target, 2) == pytest.approx(1.0)  # {0, 1}: min(inf, 5.0) - 4.0

    # Case 4: a proxy run diverged, so that recipe is picked last.
    proxy = np.array([np.inf, 1.0, 2.0])
    target = np.array([1.0, 3.0, 2.0])
    assert top_k_regret(proxy, target, 1) == pytest.approx(2.0)  # {1}: 3.0 - 1.0
    assert top_k_regret(proxy, target, 2) == pytest.approx(1.0)  # {1, 2}: 2.0 - 1.0


def test_top_k_regret_is_nan_when_every_target_diverged() -> None:
    assert np.isnan(top_k_regret([1.0, 2.0], [np.inf, np.inf], 1))


def test_top_k_regret_is_nonnegative_and_zero_when_proxy_pick_is_target_best() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        proxy = rng.integers(0, 4, n).astype(float)
        target = rng.normal(size=n)
        for k in range(1, n + 1):
            assert top_k_regret(proxy, target, k) >= 0.0
        # Give the target's best recipe the strictly lowest proxy loss: nothing to regret.
        proxy[np.argmin(target)] = -1.0
        assert top_k_regret(proxy, target, 1) == 0.0


def test_top_k_regret_of_tied_proxy_losses_is_the_mean_over_every_tie_break() -> None:
    rng = np.random.default_rng(3)
    for _ in range(150):
        n = int(rng.integers(1, 7))
        proxy, target = rng.integers(0, 3, n).astype(float), rng.integers(0, 5, n).astype(float)
        proxy[rng.random(n) < 0.2] = np.inf
        target[rng.random(n) < 0.1] = np.inf
        for k in range(1, n + 1):
            # every order of the recipes, sorted stably by proxy loss, breaks the ties one way
            picks = [min(target[i] for i in sorted(order, key=lambda i: proxy[i])[:k])
                     for order in itertools.permutations(range(n))]
            expected = np.mean(picks) - target.min() if np.isfinite(target.min()) else np.nan
            assert top_k_regret(proxy, target, k) == pytest.approx(expected, nan_ok=True)


def test_a_proxy_that_cannot_tell_recipes_apart_has_regret_whatever_their_order() -> None:
    target = np.array([1.0, 1.1, 1.2, 1.3])
    for constant in (np.full(4, 5.0), np.full(4, np.inf)):  # tied scores, or every run diverged
        assert top_k_regret(constant, target, 1) == pytest.approx(0.15)  # a random pick: mean 1.15 - 1.0
        assert top_k_regret(constant, target[::-1].copy(), 1) == pytest.approx(0.15)
        point, low, high = rank_transfer(np.tile(constant[:, None], 3), np.tile(target[:, None], 3), n_boot=50)[
            "regret@1"]
        assert point == low == high == pytest.approx(0.15)


def test_top_k_regret_rejects_k_outside_one_to_recipe_count() -> None:
    for k in (0, -1, 4):
        with pytest.raises(ValueError, match="k must be"):
            top_k_regret([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], k)


# --- input validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda bad: spearman(bad, [1.0, 2.0, 3.0]),
        lambda bad: kendall_tau([1.0, 2.0, 3.0], bad),
        lambda bad: decision_accuracy(bad, [1.0, 2.0, 3.0]),
        lambda bad: top_k_regret([1.0, 2.0, 3.0], bad, 1),
        lambda bad: rank_transfer(np.tile(bad, (2, 1)).T, np.ones((3, 2)), n_boot=10),
        lambda bad: seed_std(np.tile(bad, (2, 1)).T),
        lambda bad: within_noise(bad, [0.1, 0.1, 0.1]),
    ],
    ids=[
        "spearman",
        "kendall_tau",
        "decision_accuracy",
        "top_k_regret",
        "rank_transfer",
        "seed_std",
        "within_noise",
    ],
)
def test_nan_input_raises_value_error_naming_the_missing_run(call) -> None:
    with pytest.raises(ValueError, match="NaN"):
        call(np.array([1.0, np.nan, 3.0]))


def test_mismatched_recipe_counts_raise_value_error() -> None:
    with pytest.raises(ValueError):
        spearman([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        rank_transfer(np.ones((3, 2)), np.ones((4, 2)))


# --- rank_transfer -------------------------------------------------------------------------------


def test_rank_transfer_points_are_the_statistics_of_seed_means() -> None:
    proxy, target = _synthetic_sweep(np.random.default_rng(0), n_recipes=8, n_seeds=3, noise=0.05)
    result = rank_transfer(proxy, target, ks=(1, 2), n_boot=50)
    proxy_mean, target_mean = proxy.mean(axis=1), target.mean(axis=1)
    assert set(result) == {"spearman", "kendall", "decision_accuracy", "regret@1", "regret@2"}
    assert result["spearman"][0] == pytest.approx(spearman(proxy_mean, target_mean))
    assert result["kendall"][0] == pytest.approx(kendall_tau(proxy_mean, target_mean))
    accuracy = decision_accuracy(proxy_mean, target_mean)
    assert result["decision_accuracy"][0] == pytest.approx(accuracy)
    assert result["regret@2"][0] == pytest.approx(top_k_regret(proxy_mean, target_mean, 2))


@pytest.mark.parametrize("seeds_paired", [True, False])
def test_rank_transfer_interval_equals_naive_per_resample_scipy_loop(seeds_paired: bool) -> None:
    proxy, target = _synthetic_sweep(np.random.default_rng(1), n_recipes=9, n_seeds=3, noise=0.1)
    n_boot, n_recipes, n_seeds = 300, 9, 3
    rng = np.random.default_rng(5)  # the documented draw order: proxy indices, then target
    shape = (n_boot, 1 if seeds_paired else n_recipes, n_seeds)  # paired: one draw of seeds for every recipe
    proxy_picks = np.broadcast_to(rng.integers(0, n_seeds, size=shape), (n_boot, n_recipes, n_seeds))
    target_picks = np.broadcast_to(rng.integers(0, n_seeds, size=shape), (n_boot, n_recipes, n_seeds))
    rows = np.arange(n_recipes)[:, None]
    naive = []
    for b in range(n_boot):
        proxy_mean = proxy[rows, proxy_picks[b]].mean(axis=1)
        target_mean = target[rows, target_picks[b]].mean(axis=1)
        naive.append(stats.spearmanr(proxy_mean, target_mean).statistic)
    low, high = np.percentile(naive, [2.5, 97.5], method="inverted_cdf")
    _, vectorised_low, vectorised_high = rank_transfer(proxy, target, n_boot=n_boot, seed=5,
                                                       seeds_paired=seeds_paired)["spearman"]
    assert (vectorised_low, vectorised_high) == pytest.approx((low, high))


def _shared_offset_sweep(rng: np.random.Generator, independent_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """8 recipes 0.004 apart, 2 seeds whose offset (0.02) every recipe shares, proxy and target alike."""
    gaps = 0.004 * np.arange(8)[:, None]
    proxy = 3.0 + gaps + np.array([0.0, 0.02]) + independent_noise * rng.standard_normal((8, 2))
    target = 2.5 + gaps + np.array([0.02, 0.0]) + independent_noise * rng.standard_normal((8, 2))
    return proxy, target


def test_paired_seeds_cancel_a_shared_seed_offset_so_the_interval_contains_its_point_and_is_narrow() -> None:
    proxy, target = _shared_offset_sweep(np.random.default_rng(0), independent_noise=0.0)
    point, low, high = rank_transfer(proxy, target, ks=(), n_boot=2000)["spearman"]
    assert point == low == high == 1.0
    # Resampling each recipe's seeds on its own turns the shared offset into recipe noise.
    point, low, high = rank_transfer(proxy, target, ks=(), n_boot=2000, seeds_paired=False)["spearman"]
    assert point == 1.0 and high - low > 0.3


def test_independent_noise_still_widens_the_paired_interval() -> None:
    proxy, target = _shared_offset_sweep(np.random.default_rng(0), independent_noise=0.004)
    point, low, high = rank_transfer(proxy, target, ks=(), n_boot=2000)["spearman"]
    assert low <= point <= high and high - low > 0.1


def test_rank_transfer_intervals_bracket_the_point() -> None:
    proxy, target = _synthetic_sweep(np.random.default_rng(2), n_recipes=12, n_seeds=4, noise=0.05)
    for name, (point, low, high) in rank_transfer(proxy, target, n_boot=2000).items():
        assert low <= point <= high, name


def test_rank_transfer_interval_is_zero_width_without_seed_noise() -> None:
    proxy, target = _synthetic_sweep(np.random.default_rng(3), n_recipes=10, n_seeds=3, noise=0.0)
    one_seed_proxy, one_seed_target = _synthetic_sweep(np.random.default_rng(3), 10, 1, noise=0.05)
    for losses in ((proxy, target), (one_seed_proxy, one_seed_target)):
        for name, (point, low, high) in rank_transfer(*losses, n_boot=200).items():
            assert low == point == high, name


def test_rank_transfer_interval_widens_as_seed_noise_grows() -> None:
    widths: dict[str, list[float]] = {"spearman": [], "kendall": [], "decision_accuracy": []}
    for noise in (0.0, 0.05, 0.1, 0.2, 0.4):
        # Same generator state each time: only the noise scale changes (true means 0.1 apart).
        proxy, target = _synthetic_sweep(np.random.default_rng(4), 12, 3, noise=noise)
        result = rank_transfer(proxy, target, n_boot=1000)
        for name, series in widths.items():
            series.append(result[name][2] - result[name][1])
    for name, series in widths.items():
        assert series[0] == 0.0, name
        assert all(narrow < wide for narrow, wide in zip(series, series[1:])), (name, series)


def test_rank_transfer_is_deterministic_for_a_fixed_seed() -> None:
    proxy, target = _synthetic_sweep(np.random.default_rng(5), n_recipes=10, n_seeds=3, noise=0.1)
    first = rank_transfer(proxy, target, n_boot=500, seed=11)
    assert rank_transfer(proxy, target, n_boot=500, seed=11) == first
    assert rank_transfer(proxy, target, n_boot=500, seed=12) != first


def test_rank_transfer_skips_regret_for_k_above_recipe_count() -> None:
    proxy, target = _synthetic_sweep(np.random.default_rng(6), n_recipes=2, n_seeds=2, noise=0.05)
    assert set(rank_transfer(proxy, target, ks=(1, 2, 3), n_boot=20)) == {
        "spearman",
        "kendall",
        "decision_accuracy",
        "regret@1",
        "regret@2",
    }


def test_rank_transfer_ranks_a_recipe_with_a_diverged_seed_worst() -> None:
    # Recipe 2 would be the proxy's best, but one of its seeds diverged.
    proxy = np.array([[1.0, 1.1], [2.0, 2.1], [0.5, np.inf]])
    target = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    point, low, high = rank_transfer(proxy, target, n_boot=500)["spearman"]
    assert point == pytest.approx(1.0)
    # Resamples that drop the diverged seed put recipe 2 first: the interval reaches below 1.
    assert low < 1.0 and high == pytest.approx(1.0)


def test_rank_transfer_of_identical_arrays_over_shared_runs_has_zero_width_and_otherwise_does_not() -> None:
    losses, _ = _synthetic_sweep(np.random.default_rng(8), n_recipes=8, n_seeds=3, noise=0.2)
    for name, (point, low, high) in rank_transfer(losses, losses, n_boot=300, same_runs=True).items():
        assert low == point == high, name
    _, low, high = rank_transfer(losses, losses, n_boot=300)["spearman"]
    assert low < high
    with pytest.raises(ValueError, match="equal shapes"):
        rank_transfer(losses, losses[:, :2], same_runs=True)


def test_rank_transfer_spearman_interval_covers_infinite_seed_value_in_most_repetitions() -> None:
    """Coverage on a synthetic sweep with known truth.

    Truth: Spearman between the true (infinite-seed) proxy and target recipe means, which is
    what the seed-mean point estimate converges to. True means are spaced 0.1 apart and seed
    noise is sd 0.1 with 3 seeds, so neighbouring recipes do swap in individual sweeps and the
    intervals are not trivially wide. The percentile bootstrap of a rank statistic is only
    approximate (about 0.9 coverage here for a nominal 0.95, and much worse once recipe gaps
    shrink below the seed noise), so the bar is 0.80.
    """
    rng = np.random.default_rng(2024)
    proxy_means = 3.0 + 0.1 * np.arange(10)
    target_means = 2.5 + 0.1 * np.array([1, 0, 2, 4, 3, 5, 7, 6, 9, 8])  # a few neighbour swaps
    truth = spearman(proxy_means, target_means)
    repetitions, covered = 200, 0
    for repetition in range(repetitions):
        proxy = proxy_means[:, None] + 0.1 * rng.standard_normal((10, 3))
        target = target_means[:, None] + 0.1 * rng.standard_normal((10, 3))
        _, low, high = rank_transfer(proxy, target, ks=(), n_boot=500, seed=repetition)["spearman"]
        covered += low <= truth <= high
    assert covered / repetitions >= 0.80


# --- seed noise ----------------------------------------------------------------------------------


def test_seed_std_uses_ddof_one_and_is_zero_for_a_single_seed() -> None:
    losses = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(seed_std(losses), [1.0, 0.0])  # sqrt((1 + 0 + 1) / 2) = 1
    np.testing.assert_array_equal(seed_std(np.array([[1.0], [np.inf]])), [0.0, 0.0])


def test_seed_std_is_infinite_for_a_recipe_with_a_diverged_seed() -> None:
    np.testing.assert_array_equal(seed_std(np.array([[1.0, np.inf], [1.0, 3.0]]))[0], np.inf)


def test_within_noise_flags_pairs_whose_gap_is_within_z_combined_std() -> None:
    means = np.array([1.0, 1.3, 2.0, np.inf, np.inf])
    stds = np.array([0.1, 0.1, 0.1, 0.0, 0.0])
    flagged = within_noise(means, stds, z=2.0)
    # Threshold for finite pairs: 2 * sqrt(0.01 + 0.01) = 0.283.
    # (0,1): gap 0.3 > 0.283 -> not flagged; (0,2), (1,2): gaps 1.0, 0.7 -> not flagged.
    # (3,4): both diverged, tied -> flagged; finite vs diverged: infinite gap -> not flagged.
    expected = np.zeros((5, 5), dtype=bool)
    expected[3, 4] = expected[4, 3] = True
    np.testing.assert_array_equal(flagged, expected)
    # Wider noise (z = 2.2 -> threshold 0.311) swallows the 0.3 gap.
    assert within_noise(means, stds, z=2.2)[0, 1]
    assert not within_noise(means, stds).diagonal().any()


def test_unpaired_within_noise_of_previous_is_a_student_t_test_on_neighbouring_seed_means() -> None:
    # Two seeds each, spread s (ddof 1): t(0.975, df = 2) = 4.303; standard error of the gap = sqrt(2 s^2 / 2) = s.
    def losses(s: float, n: int) -> np.ndarray:
        spread = s * (np.array([-1.0, 1.0]) / np.sqrt(2) if n == 2 else np.array([-1.0, 0.0, 1.0]))
        return np.array([1.0, 1.1, 1.2])[:, None] + spread

    assert within_noise_of_previous(losses(0.02, 2), seeds_paired=False).tolist() == [False, False, False]  # 0.1 > 0.086
    assert within_noise_of_previous(losses(0.03, 2), seeds_paired=False).tolist() == [False, True, True]  # 0.1 <= 0.129
    # Three seeds each: t(0.975, df = 4) = 2.776, standard error sqrt(2 s^2 / 3).
    assert within_noise_of_previous(losses(0.04, 3), seeds_paired=False).tolist() == [False, False, False]  # > 0.0907
    # A single seed gives no noise estimate: nothing is flagged.
    assert not within_noise_of_previous(np.array([[1.0], [1.1], [1.2]])).any()


def test_paired_within_noise_of_previous_tests_per_seed_differences() -> None:
    # A shared seed offset (0.05) far larger than the 0.01 gaps: each difference is exactly 0.01, so paired they
    # separate, while unpaired the offset hides every gap.
    losses = np.array([1.00, 1.01, 1.02])[:, None] + np.array([0.0, 0.05, 0.1])
    assert within_noise_of_previous(losses).tolist() == [False, False, False]
    assert within_noise_of_previous(losses, seeds_paired=False).tolist() == [False, True, True]
    # Differences 0.01 and 0.03 (mean 0.02, sd 0.0141): t(0.975, df = 1) = 12.71 makes the bar 0.127.
    noisy = np.array([[1.0, 1.0], [1.01, 1.03]])
    assert within_noise_of_previous(noisy).tolist() == [False, True]
    # A pair with a diverged seed takes the unpaired rule: a diverged seed's spread is unbounded.
    diverged = np.array([[1.0, 1.1, 1.2], [1.3, 1.4, 1.5], [1.6, 1.7, np.inf]])
    assert within_noise_of_previous(diverged).tolist() == [False, False, True]


def test_seed_mean_interval_brackets_the_mean_and_has_zero_width_without_noise() -> None:
    point, low, high = seed_mean_interval(np.array([2.0, 2.1, 2.5]), n_boot=2000)
    assert point == pytest.approx(2.2) and 2.0 <= low < point < high <= 2.5
    assert seed_mean_interval(np.array([3.0, 3.0]), n_boot=100) == (3.0, 3.0, 3.0)
    assert seed_mean_interval(np.array([1.0, 2.0]), n_boot=100, seed=4) == seed_mean_interval(
        np.array([1.0, 2.0]), n_boot=100, seed=4)


def test_training_flops_is_six_times_parameters_times_tokens() -> None:
    np.testing.assert_allclose(training_flops([125_000_000, 10], [2_500_000_000, 7]), [1.875e18, 420.0])
    assert training_flops(7_000_000_000, 2e12) == pytest.approx(8.4e22)  # beyond int64 products, exactly
