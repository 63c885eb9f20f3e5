"""Statistics that check a proxy ranking of data recipes against tuned target runs.

Everything here is a pure function: numpy arrays of losses in, numbers out. No I/O, no Ray,
so the same code scores a finished sweep, a notebook, or a synthetic test case.

Conventions shared by every function (protocol of arXiv 2512.24503):

* Lower loss is better. A recipe's "rank" is its position when losses are sorted ascending.
* ``+inf`` marks a diverged run. It is an ordinary value that ranks as the worst, and several
  diverged recipes tie with one another.
* ``NaN`` (and ``-inf``) raise ``ValueError``: a missing run must be reported by the caller,
  never silently dropped, because dropping it would change which recipes are being ranked.
* Ties get average ranks, so the correlations equal ``scipy.stats.spearmanr`` and
  ``scipy.stats.kendalltau`` (tau-b) to floating-point precision.

The per-statistic functions are thin wrappers over row-wise private kernels that score a whole
stack of rankings at once; ``rank_transfer`` feeds them every bootstrap resample in one call,
which is what makes 10,000 resamples of a 23-recipe sweep take under a tenth of a second (the
pairwise statistics work on doubled average ranks as int16, one sort serves every top-k regret).

Beside the ranking statistics: ``seed_std`` and ``within_noise`` / ``within_noise_of_previous``
(is a gap inside the seed noise?), ``seed_mean_interval`` (a recipe's seed mean with its
bootstrap CI) and ``training_flops`` (C = 6 N D).

Example: three recipes, two proxy seeds and two target seeds each::

    >>> import numpy as np
    >>> proxy = np.array([[3.10, 3.12], [3.00, 3.02], [3.30, np.inf]])   # recipe 2 diverged once
    >>> target = np.array([[2.51, 2.53], [2.50, 2.50], [2.70, 2.72]])
    >>> spearman(proxy.mean(axis=1), target.mean(axis=1))
    1.0
    >>> top_k_regret(proxy.mean(axis=1), target.mean(axis=1), k=1)
    0.0
    >>> point, low, high = rank_transfer(proxy, target, n_boot=1000)["spearman"]
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln
from scipy.stats import rankdata
from scipy.stats import t as student_t


def _as_losses(values: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """Return ``values`` as a float array of rank ``ndim``; reject NaN and -inf (missing runs)."""
    array = np.asarray(values, dtype=float)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN: report the missing run instead of passing NaN")
    if np.isneginf(array).any():
        raise ValueError(f"{name} contains -inf, which is not a loss; use +inf for a diverged run")
    return array


def _as_pair(
    a: np.ndarray, b: np.ndarray, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two 1-D loss vectors over the same recipes."""
    a, b = _as_losses(a, names[0], 1), _as_losses(b, names[1], 1)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: {a.shape} vs {b.shape}")
    return a, b


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio, NaN where the denominator is 0 (an undefined statistic, as in scipy)."""
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis; +inf is an ordinary, largest value, and ties share a rank."""
    return rankdata(x, axis=-1)


def _spearman_rows(rank_a: np.ndarray, rank_b: np.ndarray) -> np.ndarray:
    """Spearman rho per row from average ranks [B, R]: Pearson correlation of the ranks."""
    rank_a = rank_a - rank_a.mean(axis=-1, keepdims=True)
    rank_b = rank_b - rank_b.mean(axis=-1, keepdims=True)
    covariance = (rank_a * rank_b).sum(axis=-1)
    scale = np.sqrt((rank_a**2).sum(axis=-1) * (rank_b**2).sum(axis=-1))
    return _safe_divide(covariance, scale)


def _pair_signs(ranks: np.ndarray) -> np.ndarray:
    """sign(x_i - x_j) for every recipe pair i < j, from average ranks along the last axis.

    Ranks order values exactly as the values do, ties (two +inf included) sharing one rank; average
    ranks are multiples of 1/2, so doubled they are small exact integers and the signs cost int16 work.
    """
    doubled = np.rint(2.0 * ranks).astype(np.int16)
    i, j = np.triu_indices(ranks.shape[-1], k=1)
    return np.sign(doubled[..., i] - doubled[..., j])


def _kendall_rows(sign_a: np.ndarray, sign_b: np.ndarray) -> np.ndarray:
    """Kendall tau-b per row from pair signs: (C - D) / sqrt(untied_a * untied_b)."""
    concordance = (sign_a * sign_b).sum(axis=-1, dtype=np.int64)
    untied_a = np.abs(sign_a).sum(axis=-1, dtype=np.int64)
    untied_b = np.abs(sign_b).sum(axis=-1, dtype=np.int64)
    untied = untied_a * untied_b
    return _safe_divide(concordance.astype(float), np.sqrt(untied.astype(float)))


def _decision_accuracy_rows(sign_proxy: np.ndarray, sign_target: np.ndarray) -> np.ndarray:
    """Decision accuracy per row from pair signs (tie rules documented in ``decision_accuracy``)."""
    scorable = sign_target != 0
    agree = ((sign_proxy == sign_target) & scorable).sum(axis=-1)
    proxy_ties = ((sign_proxy == 0) & scorable).sum(axis=-1)
    return _safe_divide(agree + 0.5 * proxy_ties, scorable.sum(axis=-1).astype(float))


def _regret_rows(proxy_loss: np.ndarray, target_loss: np.ndarray, ks: tuple[int, ...]) -> np.ndarray:
    """Top-k regret per row, one column per k in ``ks`` (rules documented in ``top_k_regret``).

    Recipes the proxy ranks strictly inside the top k are always picked; the g recipes tied with the k-th pick
    share its remaining m slots, every m-subset of them equally likely. The j-th smallest target loss of the
    tied group is then the group's best pick with probability C(g - j, m - 1) / C(g, m), which gives the
    expected best target loss among the picks in closed form, for every row at once.
    """
    n_recipes = proxy_loss.shape[-1]
    for k in ks:
        if not 1 <= k <= n_recipes:
            raise ValueError(f"k must be between 1 and the number of recipes ({n_recipes}), got {k}")
    order = np.argsort(proxy_loss, axis=-1, kind="stable")
    proxy_sorted = np.take_along_axis(proxy_loss, order, axis=-1)
    target_sorted = np.take_along_axis(target_loss, order, axis=-1)
    best_overall = target_loss.min(axis=-1, keepdims=True)
    position = np.arange(1, n_recipes + 1)
    columns = []
    for k in ks:
        cut = proxy_sorted[..., k - 1:k]
        above, tied = proxy_sorted < cut, proxy_sorted == cut
        num_tied = tied.sum(axis=-1, keepdims=True)
        slots = k - above.sum(axis=-1, keepdims=True)  # 1 <= slots <= num_tied
        best_above = np.where(above, target_sorted, np.inf).min(axis=-1, keepdims=True)
        group = np.sort(np.where(tied, target_sorted, np.inf), axis=-1)  # the tied group's targets, ascending
        possible = position <= num_tied - slots + 1  # the j-th smallest can be the best pick
        weight = np.where(possible, np.exp(_log_comb(np.where(possible, num_tied - position, 0), slots - 1)
                                           - _log_comb(num_tied, slots)), 0.0)
        with np.errstate(invalid="ignore"):  # inf - inf only where best_overall is inf, replaced below
            # each term >= 0, so the regret is too, and exactly 0 when every possible pick is the best
            excess = np.where(possible, np.minimum(best_above, group) - best_overall, 0.0)
        columns.append((weight * excess).sum(axis=-1) / weight.sum(axis=-1))  # +inf if a possible pick diverged
    regret = np.stack(columns, axis=-1) if columns else np.zeros((*proxy_loss.shape[:-1], 0))
    return np.where(np.isinf(best_overall), np.nan, regret)


def _log_comb(n: np.ndarray, r: np.ndarray) -> np.ndarray:
    """log C(n, r) for 0 <= r <= n, through log-gamma: exact enough, and no overflow for thousands of recipes."""
    return gammaln(n + 1.0) - gammaln(r + 1.0) - gammaln(n - r + 1.0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation between two loss vectors over the same recipes.

    rho = Pearson(rank(a), rank(b)) with average ranks for ties and +inf ranked largest
    (arXiv 2512.24503 scores proxy-vs-tuned-target agreement by this correlation). Equals
    ``scipy.stats.spearmanr(a, b).statistic``, including NaN when either ranking is constant.
    """
    a, b = _as_pair(a, b, ("a", "b"))
    return float(_spearman_rows(_ranks(a[None]), _ranks(b[None]))[0])


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-b between two loss vectors over the same recipes.

    tau_b = (C - D) / sqrt((P - T_a)(P - T_b)), with C/D the concordant/discordant pairs, P all
    pairs and T_x the pairs tied in x; a pairwise companion to the paper's Spearman. Equals
    ``scipy.stats.kendalltau(a, b).statistic``, including NaN when either ranking is constant.
    """
    a, b = _as_pair(a, b, ("a", "b"))
    return float(_kendall_rows(_pair_signs(_ranks(a[None])), _pair_signs(_ranks(b[None])))[0])


def decision_accuracy(proxy: np.ndarray, target: np.ndarray) -> float:
    """Share of recipe pairs (i < j) that the proxy orders the same way as the target.

    The pairwise decision accuracy of DataDecide (Magnusson et al., 2025):
    acc = sum_{pairs scorable} credit / #scorable, where

    * a pair tied in the target is not scorable (there is no right answer) and is excluded;
    * credit is 1 when the proxy orders the pair as the target does, 0 when it reverses it,
      and 1/2 when the proxy ties a pair the target separates (a coin flip would pick either).

    NaN when no pair is scorable (fewer than two recipes, or a constant target).
    """
    proxy, target = _as_pair(proxy, target, ("proxy", "target"))
    signs = _pair_signs(_ranks(proxy[None])), _pair_signs(_ranks(target[None]))
    return float(_decision_accuracy_rows(*signs)[0])


def top_k_regret(proxy_loss: np.ndarray, target_loss: np.ndarray, k: int) -> float:
    """Target-loss cost of shipping the proxy's top-k recipes instead of the true best.

    regret@k = min_{i in top_k(proxy)} target_i - min_i target_i (paper App. D.1.1), always >= 0
    and 0 when one of the proxy's k picks is the target's best. ``top_k(proxy)`` are the k
    recipes with the lowest proxy loss. Recipes the proxy ties at the k-th place share the places
    left at random, and the regret is its expectation over those draws: a proxy that cannot tell
    recipes apart (every run diverged, or equal accuracies) scores what a random pick among them
    would, whatever order the recipes are listed in. Diverged targets (+inf): the regret is +inf
    when a possible pick diverged but some recipe did not, and NaN when every recipe
    diverged (nothing to compare against). ``k`` must be between 1 and the number of recipes.
    """
    proxy_loss, target_loss = _as_pair(proxy_loss, target_loss, ("proxy_loss", "target_loss"))
    return float(_regret_rows(proxy_loss[None], target_loss[None], (k,))[0, 0])


def _percentile_interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval at level ``ci`` ignoring NaN resamples; NaN bounds if all are NaN.

    ``inverted_cdf`` picks actual resample values (no interpolation), so resamples at +inf give
    an +inf bound instead of the NaN that interpolating between two infinities would produce.
    """
    defined = samples[~np.isnan(samples)]
    if defined.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - ci) / 2.0
    low, high = np.percentile(defined, [tail, 100.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def _seed_picks(shape: tuple[int, int], n_boot: int, rng: np.random.Generator, seeds_paired: bool) -> np.ndarray:
    """Seed indices [n_boot, R, S], drawn with replacement: once per resample and shared by every recipe when the
    seeds are paired, else independently for each recipe."""
    n_recipes, n_seeds = shape
    if seeds_paired:
        return np.broadcast_to(rng.integers(0, n_seeds, size=(n_boot, 1, n_seeds)), (n_boot, n_recipes, n_seeds))
    return rng.integers(0, n_seeds, size=(n_boot, n_recipes, n_seeds))


def _resampled_means(losses: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Seed means [n_boot, R] of ``losses`` [R, S] at the resampled seed indices ``picks``."""
    return np.take_along_axis(losses[None], picks, axis=-1).mean(axis=-1)


def rank_transfer(
    proxy: np.ndarray,
    target: np.ndarray,
    ks: tuple[int, ...] = (1, 2, 3),
    n_boot: int = 10000,
    ci: float = 0.95,
    seed: int = 0,
    seeds_paired: bool = True,
    same_runs: bool = False,
) -> dict[str, tuple[float, float, float]]:
    """How well the proxy ranking of recipes transfers to the target, with bootstrap CIs.

    ``proxy`` is [recipes x proxy seeds], ``target`` is [recipes x target seeds] (each seed's loss
    at that recipe's tuned configuration). Returns ``{name: (point, low, high)}`` for "spearman",
    "kendall", "decision_accuracy" and "regret@k" for each k in ``ks`` that is <= the number of
    recipes (arXiv 2512.24503; regret as in its App. D.1.1).

    point: the statistic on seed means (a mean including +inf is +inf, so ranked worst).
    low/high: percentile interval at level ``ci`` over ``n_boot`` resamples of the seeds, drawn with replacement
    from ``numpy.random.default_rng(seed)`` (proxy indices first, then target indices, so results reproduce);
    resamples where a statistic is undefined (NaN, e.g. a constant ranking) are left out of its percentiles.
    With one seed the interval has zero width.

    ``seeds_paired=True`` (the default) is for sweeps whose seed s gives every recipe the same initialisation and
    data order, as raysweep's trials do (column s is seed s in every row): a resample draws one list of seed
    indices and applies it to every recipe, so an offset that seed s shares across recipes moves every recipe
    together instead of posing as a recipe difference. ``seeds_paired=False`` draws each recipe's seeds on its
    own: for tables whose seeds are not known to be paired (results imported from elsewhere). The proxy and the
    target are different models, so their draws are independent either way.

    ``same_runs=True`` is for two arrays that share runs, as when a fixed target configuration is compared
    with the tuned targets (a recipe whose best configuration is the fixed one has the same runs on both sides):
    the target reuses the proxy's seed indices, so shared runs move together and a statistic of identical arrays
    has zero width.

    The interval describes seed noise only. When recipe gaps are comparable to that noise, seed
    means blur the ranking and the interval undercovers the infinite-seed value of a statistic.
    """
    proxy = _as_losses(proxy, "proxy", 2)
    target = _as_losses(target, "target", 2)
    if proxy.shape[0] != target.shape[0]:
        raise ValueError(f"proxy has {proxy.shape[0]} recipes but target has {target.shape[0]}")
    if same_runs and proxy.shape != target.shape:
        raise ValueError(f"resampling shared runs needs equal shapes, got {proxy.shape} and {target.shape}")
    if n_boot < 1 or not 0.0 < ci < 1.0:
        raise ValueError(f"need n_boot >= 1 and 0 < ci < 1, got n_boot={n_boot}, ci={ci}")

    rng = np.random.default_rng(seed)
    # Row 0 holds the seed means (the point estimate); rows 1.. hold the bootstrap resamples.
    proxy_picks = _seed_picks(proxy.shape, n_boot, rng, seeds_paired)
    target_picks = proxy_picks if same_runs else _seed_picks(target.shape, n_boot, rng, seeds_paired)
    proxy_resampled = _resampled_means(proxy, proxy_picks)
    target_resampled = _resampled_means(target, target_picks)
    proxy_means = np.vstack([proxy.mean(axis=1), proxy_resampled])
    target_means = np.vstack([target.mean(axis=1), target_resampled])

    rank_proxy, rank_target = _ranks(proxy_means), _ranks(target_means)
    sign_proxy, sign_target = _pair_signs(rank_proxy), _pair_signs(rank_target)
    statistics = {
        "spearman": _spearman_rows(rank_proxy, rank_target),
        "kendall": _kendall_rows(sign_proxy, sign_target),
        "decision_accuracy": _decision_accuracy_rows(sign_proxy, sign_target),
    }
    ks = tuple(k for k in ks if k <= proxy.shape[0])
    regrets = _regret_rows(proxy_means, target_means, ks)
    statistics.update({f"regret@{k}": regrets[:, column] for column, k in enumerate(ks)})

    return {
        name: (float(values[0]), *_percentile_interval(values[1:], ci))
        for name, values in statistics.items()
    }


def seed_mean_interval(
    losses: np.ndarray, n_boot: int = 10000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Seed mean of one recipe's losses (1-D, one per seed) with a percentile bootstrap interval.

    The same resampling as ``rank_transfer``: draw the seeds with replacement ``n_boot`` times and
    take the ``ci`` percentile interval of the resampled means. With 2-3 seeds the interval cannot
    extend beyond the observed seeds, so it is narrower than a t-interval would be; it describes
    seed noise at a fixed configuration, not the choice of configuration.
    """
    losses = _as_losses(losses, "losses", 1)
    picks = _seed_picks((1, losses.size), n_boot, np.random.default_rng(seed), seeds_paired=True)
    means = _resampled_means(losses[None], picks)
    return (float(losses.mean()), *_percentile_interval(means[:, 0], ci))


def training_flops(num_params: np.ndarray, num_tokens: np.ndarray) -> np.ndarray:
    """Training compute C = 6 N D FLOPs (forward + backward, Kaplan et al. 2020), elementwise.

    N counts parameters, D tokens trained on; attention FLOPs are left out, as in the paper's
    accounting. Floats, because lab-scale sums overflow int64 (6e25 FLOPs > 9.2e18).
    """
    return 6.0 * np.asarray(num_params, dtype=float) * np.asarray(num_tokens, dtype=float)


def seed_std(losses: np.ndarray) -> np.ndarray:
    """Per-recipe standard deviation over seeds of a [recipes x seeds] loss array.

    s_i = sqrt(sum_s (x_is - mean_i)^2 / (S - 1)) (ddof=1): the seed noise that ``within_noise``
    uses to flag recipe pairs whose gap is inside the noise. 0 for a single seed (no estimate).
    A recipe with a diverged seed (+inf) among several seeds has unbounded spread: +inf.
    """
    losses = _as_losses(losses, "losses", 2)
    n_recipes, n_seeds = losses.shape
    if n_seeds == 1:
        return np.zeros(n_recipes)
    diverged = np.isinf(losses).any(axis=1)
    spread = np.where(np.isinf(losses), 0.0, losses).std(axis=1, ddof=1)
    return np.where(diverged, np.inf, spread)


def within_noise(means: np.ndarray, stds: np.ndarray, z: float = 1.96) -> np.ndarray:
    """[R x R] bool matrix flagging recipe pairs whose mean gap is inside the seed noise.

    Pair (i, j) is flagged when |m_i - m_j| <= z * sqrt(s_i^2 + s_j^2), a two-sided z-test on the
    difference under independent Gaussian noise. With ``seed_std`` as s the test asks whether the
    gap beats single-run noise; pass s / sqrt(n_seeds) to test the seed means themselves (about
    95% for z = 1.96). The diagonal is False. Two diverged recipes (both means +inf) tie, gap 0,
    so they are flagged; a diverged recipe against a finite one is flagged only if a std is +inf.
    """
    means, stds = _as_pair(means, stds, ("means", "stds"))
    if (stds < 0).any():
        raise ValueError("stds must be non-negative")
    equal = means[:, None] == means[None, :]
    with np.errstate(invalid="ignore"):  # inf - inf only where the means are equal, replaced below
        gap = np.where(equal, 0.0, np.abs(means[:, None] - means[None, :]))
    flagged = gap <= z * np.sqrt(stds[:, None] ** 2 + stds[None, :] ** 2)
    np.fill_diagonal(flagged, False)
    return flagged


def within_noise_of_previous(losses: np.ndarray, level: float = 0.95, seeds_paired: bool = True) -> np.ndarray:
    """For recipes listed best first (rows of ``losses`` [R x S]): is each one within seed noise of the one above?

    Recipe i >= 1 is flagged when a two-sided t-test at 1 - ``level`` cannot separate it from recipe i - 1.

    * ``seeds_paired=True`` (raysweep's trials: seed s is the same initialisation and data order for every
      recipe): a paired t-test on the per-seed differences d_s = x_{i,s} - x_{i-1,s}, flagged when
      |mean d| <= t * sd(d) / sqrt(S), t the (1 + level) / 2 quantile of Student's t with S - 1 degrees of
      freedom. An offset that a seed shares across recipes cancels in d, so it no longer hides a real gap.
    * ``seeds_paired=False`` (imported tables): Welch-style on the seed means,
      |m_i - m_{i-1}| <= t * sqrt(s_i^2 / S + s_{i-1}^2 / S), t with 2 (S - 1) degrees of freedom
      (``within_noise`` on standard errors).

    With 2-3 seeds t is large (paired: 12.7 at S = 2, 4.30 at S = 3), where z = 1.96 would call too many gaps
    real. A pair with a diverged seed (+inf) uses the unpaired rule: it is flagged only if both diverged at every
    seed or a spread is unbounded. Element 0 is False; nothing is flagged with a single seed (no noise estimate).
    """
    losses = _as_losses(losses, "losses", 2)
    n_recipes, n_seeds = losses.shape
    flags = np.zeros(n_recipes, dtype=bool)
    if n_recipes < 2 or n_seeds < 2:
        return flags
    means, stds = losses.mean(axis=1), seed_std(losses)
    z = student_t.ppf((1.0 + level) / 2.0, 2.0 * (n_seeds - 1.0))
    unpaired = within_noise(means, stds / np.sqrt(n_seeds), z=z)
    flags[1:] = unpaired[np.arange(1, n_recipes), np.arange(n_recipes - 1)]
    if not seeds_paired:
        return flags
    finite = np.isfinite(losses).all(axis=1)
    both_finite = finite[1:] & finite[:-1]
    differences = np.where(both_finite[:, None], losses[1:] - np.where(finite[:-1, None], losses[:-1], 0.0), 0.0)
    t = student_t.ppf((1.0 + level) / 2.0, n_seeds - 1.0)
    paired = np.abs(differences.mean(axis=1)) <= t * differences.std(axis=1, ddof=1) / np.sqrt(n_seeds)
    flags[1:] = np.where(both_finite, paired, flags[1:])
    return flags
