"""Contracts of the random-feature proxy setting: the math is right, runs are reproducible, and the
learning-rate window of arXiv 2512.24503 (App. B) shows up against the known ground truth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from raysweep.random_features import (
    Distribution,
    arc_cosine_kernel,
    features,
    infinite_width_optimum,
    init_weights,
    make_distributions,
    population_optimum,
    sample,
    sgd_readout,
    train_sgd,
    validation_distribution,
)

DIM = 4


@pytest.fixture(scope="module")
def val():
    return sample(validation_distribution(DIM, seed=0), 2000, np.random.default_rng(1))


@pytest.fixture(scope="module")
def dists():
    return make_distributions(6, DIM, seed=0)


@pytest.fixture(scope="module")
def kernel_optima(dists, val):
    """Kernel-regression optima for two training-sample seeds: {seed: [loss per dataset]}.

    n_train = 1500 rather than the recommended 2000 to keep the suite fast; it ranks the same.
    """
    return {seed: [infinite_width_optimum(d, val, n_train=1500, ridge=1e-5, seed=seed) for d in dists]
            for seed in (0, 1)}


def test_arc_cosine_kernel_matches_monte_carlo_over_first_layer():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, DIM))
    x[1] = 2.5 * x[0]                                   # parallel: φ = 0
    x[2] = -x[0]                                        # opposite: kernel exactly 0
    x[3] -= x[3] @ x[0] / (x[0] @ x[0]) * x[0]          # orthogonal: φ = π/2
    x[5] = 0.0                                          # zero vector
    u = rng.standard_normal((400_000, DIM)) / np.sqrt(DIM)
    activations = np.maximum(x @ u.T, 0.0)
    monte_carlo = activations @ activations.T / len(u)
    second_moment = (activations ** 2) @ (activations ** 2).T / len(u)
    standard_error = np.sqrt((second_moment - monte_carlo ** 2) / len(u))
    exact = arc_cosine_kernel(x, x)
    assert np.all(np.abs(exact - monte_carlo) <= 5 * standard_error + 1e-12)
    assert abs(exact[0, 2]) < 1e-12 and not exact[5].any()
    assert np.allclose(exact, exact.T) and np.linalg.eigvalsh(exact).min() > -1e-12


def test_sgd_mean_iterate_follows_expected_recursion():
    """With fresh batches, E[θ_{t+1}] = E[θ_t] − η(Σ E[θ_t] − b) exactly, Σ = E[φφᵀ], b = E[φy].

    Σ has a closed form by the same arc-cosine formula with inputs and weights swapped: for x ~ N(0, s²I),
    E[relu(u_i·x) relu(u_j·x)] = s²·d·k(u_i, u_j). b involves the teacher, so it is estimated on 10⁶ draws.
    """
    dist = Distribution("tiny", DIM, input_scale=1.2, corrupt_frac=0.3, label_noise=0.5, teacher_seed=0)
    width_m, lr, batch_size, num_steps, num_runs = 3, 1.0, 4, 6, 3000
    weights = init_weights(width_m, DIM, np.random.default_rng(7))
    covariance = dist.input_scale ** 2 * DIM * arc_cosine_kernel(weights, weights) / width_m
    draws = sample(dist, 1_000_000, np.random.default_rng(8))
    phi_y = features(draws.x, weights) * draws.y[:, None]
    cross, cross_error = phi_y.mean(axis=0), phi_y.std(axis=0) / np.sqrt(len(draws.y))

    def expected_iterate(steps: int) -> tuple[np.ndarray, np.ndarray]:
        """E[θ_steps] = M b with M = Σ_{k<steps} η(I − ηΣ)^k, and M (which also carries b's error)."""
        response = sum(lr * np.linalg.matrix_power(np.eye(width_m) - lr * covariance, k) for k in range(steps))
        return response @ cross, response

    val = sample(validation_distribution(DIM, 0), 10, np.random.default_rng(9))
    thetas = np.array([sgd_readout(dist, weights, lr, batch_size, num_steps, np.random.default_rng(run), val, [])[0]
                       for run in range(num_runs)])
    expected, response = expected_iterate(num_steps)
    tolerance = 4 * np.hypot(thetas.std(axis=0) / np.sqrt(num_runs), np.abs(response) @ cross_error)
    assert np.all(np.abs(thetas.mean(axis=0) - expected) <= tolerance)
    # tight enough to catch an off-by-one in the step count
    assert np.any(np.abs(thetas.mean(axis=0) - expected_iterate(num_steps - 1)[0]) > tolerance)


def test_runs_are_deterministic_given_seeds(val):
    assert make_distributions(5, DIM, seed=3) == make_distributions(5, DIM, seed=3)
    assert make_distributions(5, DIM, seed=3) != make_distributions(5, DIM, seed=4)
    dist = make_distributions(5, DIM, seed=3)[0]
    run = train_sgd(dist, val, width_m=32, lr=0.5, batch_size=4, num_steps=200, seed=11)
    assert run == train_sgd(dist, val, width_m=32, lr=0.5, batch_size=4, num_steps=200, seed=11)
    assert run != train_sgd(dist, val, width_m=32, lr=0.5, batch_size=4, num_steps=200, seed=12)
    assert run.steps == (50, 100, 150, 200) and not run.diverged
    assert (infinite_width_optimum(dist, val, 300, 1e-5, seed=2)
            == infinite_width_optimum(dist, val, 300, 1e-5, seed=2))


def test_divergent_lr_returns_inf_without_warnings(val):
    dist = make_distributions(3, DIM, seed=0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = train_sgd(dist, val, width_m=64, lr=1e4, batch_size=8, num_steps=300, seed=0)
    assert run.diverged and all(loss == np.inf for loss in run.val_mse)


def test_datasets_have_evenly_spaced_optima_independent_of_list_order(dists, val):
    optima = np.array([population_optimum(d, val) for d in dists])
    spacing = np.diff(np.sort(optima))  # (2·0.5)²/5 = 0.2, times the sample's mean h² ≈ 1
    assert np.allclose(spacing, spacing.mean(), rtol=1e-9) and spacing.mean() > 0.15
    assert list(np.argsort(optima)) != list(range(len(dists)))


def test_kernel_regression_optimum_ranks_like_population_optimum_across_seeds(dists, val, kernel_optima):
    exact = [population_optimum(d, val) for d in dists]
    for seed, optima in kernel_optima.items():
        assert spearmanr(optima, exact).statistic == 1.0, seed
        assert np.max(np.abs(np.subtract(optima, exact))) < 0.2, seed  # neighbours are 0.2 apart


def test_wide_sgd_in_window_recovers_kernel_optimum_ordering(dists, val, kernel_optima):
    losses = [train_sgd(d, val, width_m=1024, lr=1.0, batch_size=8, num_steps=2000, seed=0).val_mse[-1]
              for d in dists]
    assert spearmanr(losses, kernel_optima[0]).statistic >= 0.9


def test_window_ranks_better_than_undertraining_or_large_lr(val):
    """Too small an lr for the step budget ranks by learning speed, too large by stability; the window by quality."""
    dists = make_distributions(8, DIM, seed=0)
    exact = [population_optimum(d, val) for d in dists]

    def rank_correlation(lr: float) -> float:
        losses = [[train_sgd(d, val, width_m=256, lr=lr, batch_size=8, num_steps=1000, seed=s).val_mse[-1]
                   for d in dists] for s in range(2)]
        return spearmanr(np.mean(losses, axis=0), exact).statistic

    window = rank_correlation(1.0)
    assert window >= 0.9
    assert rank_correlation(0.01) < window - 0.3
    assert rank_correlation(10.0) < window - 0.3
