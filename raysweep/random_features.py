"""Random-feature proxies on synthetic datasets with a known ground truth (arXiv 2512.24503, App. B).

The paper proves its tiny-learning-rate rule for random-feature models; this module is that setting,
small enough that a sweep of a thousand trials runs on a laptop, so the rest of raysweep (Tune, the
store, the rank statistics, the report) can be checked end to end against an exact answer.

**Model.** f(x) = θ·σ(Ux)/√m with σ = ReLU, U ∈ R^{m×d} frozen with N(0, 1/d) entries, and the readout
θ ∈ R^m trained from θ = 0 by one-pass mini-batch SGD on ½(f(x) − y)²: every step draws a fresh batch,
so a run sees ``num_steps × batch_size`` samples. As m → ∞ the feature inner product tends to the
arc-cosine kernel k(x, x') = E_u[σ(u·x)σ(u·x')] (closed form in ``arc_cosine_kernel``). With this
1/√m scaling the feature covariance has trace E‖x‖²/2d whatever the width, so the stable learning
rates are O(1) at every m.

**Datasets.** A dataset ("recipe") is a distribution over (x, y). All of them, and the validation
distribution, share a teacher f* = Σ_j a_j k(·, z_j) — an infinite-width network, so it is in the
model class — scaled to E_val[f*²] = 1. Datasets differ in three knobs:

* ``corrupt_frac`` p: the fraction of wrong labels. A wrong label is f*(x) + 2·h(x), with
  h(x) = xᵀAx/‖x‖ for a fixed traceless A, E_val[h²] = 1: bad data that gets the gist right and the
  detail wrong. h is in the model class too, but along a degree-2 spherical harmonic, an eigendirection
  of the kernel about 20 times weaker than the top one (d = 4), so SGD learns it late.
* ``input_scale`` s: x ~ N(0, s²I); validation has s = 1. The model is positively homogeneous
  (f(cx) = c·f(x)), so this covariate shift leaves the optimum where it is, but it multiplies the
  feature covariance by s², i.e. the effective learning rate: large-s datasets learn fast and blow up
  first, small-s ones are under-trained first. This is the paper's "each dataset wants its own LR".
* ``label_noise``: std of Gaussian noise on y. It leaves E[y|x], hence the optimum, unchanged and
  sets how high the SGD noise floor rises with the learning rate.

**Ground truth.** A dataset's score is the validation loss of the infinite-width model trained on it
to convergence. With unlimited data that model is E[y|x] = f* + 2p·h, so the score is exactly
(2p)²·E_val[h²] (``population_optimum``). ``infinite_width_optimum`` estimates it as one would for a
target of unknown form, by kernel ridge regression on a finite sample; with d = 4, n_train = 2000 and
ridge = 1e-5 it is within 0.25 of the exact value and ranks the datasets identically on every seed
tried (tests/test_random_features.py). ``make_distributions`` spaces (2p)² evenly, so neighbours
differ by (2·p_max)²/(num − 1) = 1/7 for 8 datasets, and shuffles p, s and noise independently, so no
knob but p — and not the list order — tells which dataset is best.

The paper's window c0/T ≤ η ≤ min(αBm, η_max) shows directly. With d = 4, 8 datasets, batch 8 and
1000 steps: at lr ≤ 0.03 h is not learned yet and the losses rank datasets by how fast they learn,
i.e. by input scale (Spearman vs the truth 0.1–0.25 for seed 0); lr 1–2 ranks them correctly (0.9–1.0);
at lr 5 noisy and high-scale datasets sit on their noise floor (≈ 0.6–0.75) and at lr 10 the high-scale
ones diverge (≈ 0.1). The lower edge moves roughly as 1/T: with 4000 steps lr 0.3 already ranks right. ::

    dists = make_distributions(8, dim=4, seed=0)
    val = sample(validation_distribution(dim=4, seed=0), 2000, np.random.default_rng(1))
    run = train_sgd(dists[0], val, width_m=256, lr=1.0, batch_size=8, num_steps=1000, seed=0)
    run.steps, run.val_mse    # (250, 500, 750, 1000), validation MSE at each; inf if diverged
    infinite_width_optimum(dists[0], val, n_train=2000, ridge=1e-5, seed=0)   # ≈ population_optimum

Pure numpy, deterministic given the seeds: one trial of 1000 steps of batch 8 takes ~6–7 ms at m = 64,
~9–13 ms at m = 256 and ~25–35 ms at m = 1024 on one CPU core. Run it with OPENBLAS_NUM_THREADS=1 set
before numpy loads: these matrices are too small to gain from BLAS threads, and on a busy 2-core
machine 2-thread OpenBLAS made trials ~50× and Cholesky ~100× slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from raysweep.trials import eval_steps

TEACHER_CENTERS = 6
"""Kernel sections in f*: enough for a target with weight on every harmonic the kernel has."""
CORRUPTION_GAIN = 2.0
"""A corrupted label is f* + CORRUPTION_GAIN·h; the optimum val loss of corruption fraction p is (gain·p)²."""
DIVERGED_MSE = 1e6
"""Validation targets have variance ~1: a loss this large is a blow-up, reported as inf like a NaN."""
FEATURE_CHUNK_STEPS = 128
"""Steps whose features are computed in one matrix product: one BLAS call instead of 128, a few MB."""


@dataclass(frozen=True)
class Distribution:
    """One synthetic dataset (or the validation distribution). Plain scalars: hashable, YAML-able."""

    name: str
    dim: int
    input_scale: float
    """x ~ N(0, input_scale² I); changes SGD speed and stability, not the optimum."""
    corrupt_frac: float
    """Probability that a label is f* + CORRUPTION_GAIN·h instead of f*; sets the optimum."""
    label_noise: float
    """Std of Gaussian noise added to every label; sets the SGD noise floor, not the optimum."""
    teacher_seed: int
    """Which f* and h: datasets and validation share it."""


class Sample(NamedTuple):
    """Inputs and labels; unpacks as ``x, y = sample(...)``."""

    x: np.ndarray
    """(n, dim) inputs."""
    y: np.ndarray
    """(n,) labels."""


@dataclass(frozen=True)
class SGDRun:
    """What one proxy trial reports: its validation curve."""

    steps: tuple[int, ...]
    """Checkpoints: steps after which the readout was evaluated."""
    val_mse: tuple[float, ...]
    """Mean squared error on the validation sample at each checkpoint; inf from divergence on."""

    @property
    def diverged(self) -> bool:
        return math.isinf(self.val_mse[-1])


def make_distributions(num: int, dim: int, seed: int, max_corrupt_frac: float = 0.5,
                       input_scales: tuple[float, float] = (0.6, 1.4),
                       max_label_noise: float = 1.0) -> list[Distribution]:
    """`num` datasets whose optima (CORRUPTION_GAIN·p)² are evenly spaced from 0 to (gain·max_corrupt_frac)².

    Scales (geometric in ``input_scales``) and noise levels (linear up to ``max_label_noise``) are evenly
    spaced too, and the three lists are shuffled independently, so the list order, the scale and the
    noise all carry no information about which dataset is best.
    """
    if num < 2:
        raise ValueError(f"make_distributions needs num >= 2 datasets to rank, got {num}")
    rng = np.random.default_rng([seed, 1])
    corrupt = max_corrupt_frac * np.sqrt(np.linspace(0.0, 1.0, num))
    scales = np.geomspace(*input_scales, num)
    noises = np.linspace(0.0, max_label_noise, num)
    corrupt, scales, noises = (rng.permutation(values) for values in (corrupt, scales, noises))
    return [Distribution(f"rf{i:02d}", dim, float(scales[i]), float(corrupt[i]), float(noises[i]), seed)
            for i in range(num)]


def validation_distribution(dim: int, seed: int) -> Distribution:
    """Clean labels, unit scale: what every dataset is scored on (same ``seed`` as the datasets)."""
    return Distribution("validation", dim, 1.0, 0.0, 0.0, seed)


def sample(dist: Distribution, n: int, rng: np.random.Generator) -> Sample:
    """`n` i.i.d. draws of (x, y): inputs, then which labels are corrupted, then the noise, all from `rng`."""
    x = dist.input_scale * rng.standard_normal((n, dist.dim))
    clean, harmonic = _teacher_values(x, dist.teacher_seed)
    corrupted = rng.random(n) < dist.corrupt_frac
    noise = dist.label_noise * rng.standard_normal(n)
    return Sample(x, clean + CORRUPTION_GAIN * harmonic * corrupted + noise)


def arc_cosine_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """E_u[relu(u·a) relu(u·b)] for u ~ N(0, I/d): ‖a‖‖b‖(sin φ + (π − φ) cos φ) / (2πd), φ = ∠(a, b).

    Cho & Saul's arc-cosine kernel of order 1, divided by 2d for our N(0, 1/d) first layer. Returns the
    (len(a), len(b)) matrix; a zero vector has zero kernel with everything.
    """
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    unit_a = a / np.where(norm_a > 0, norm_a, 1.0)[:, None]
    unit_b = b / np.where(norm_b > 0, norm_b, 1.0)[:, None]
    cos = np.clip(unit_a @ unit_b.T, -1.0, 1.0)
    out = np.arccos(cos)  # in place from here on: these arrays are the (n_a, n_b) cost
    np.subtract(np.pi, out, out=out)
    out *= cos
    np.multiply(cos, cos, out=cos)
    np.subtract(1.0, cos, out=cos)
    out += np.sqrt(cos, out=cos)
    out *= norm_a[:, None] / (2.0 * np.pi * a.shape[1])
    out *= norm_b[None, :]
    return out


def init_weights(width_m: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """The frozen first layer U, entries N(0, 1/d), so u·x = O(1) for x ~ N(0, I)."""
    return rng.standard_normal((width_m, dim)) / math.sqrt(dim)


def features(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """σ(Ux)/√m, computed as σ(x(U/√m)ᵀ) (ReLU is positively homogeneous): one pass over the (n, m) array."""
    out = x @ (weights.T / math.sqrt(weights.shape[0]))
    return np.maximum(out, 0.0, out=out)


def train_sgd(dist: Distribution, val: Sample, width_m: int, lr: float, batch_size: int, num_steps: int,
              seed: int, num_evals: int = 4) -> SGDRun:
    """One proxy trial: draw U and the data stream from `seed`, train, score on `val` at `num_evals` checkpoints."""
    rng = np.random.default_rng(seed)
    weights = init_weights(width_m, dist.dim, rng)
    checkpoints = eval_steps(num_steps, num_evals)
    _, losses = sgd_readout(dist, weights, lr, batch_size, num_steps, rng, val, checkpoints)
    return SGDRun(tuple(checkpoints), tuple(losses))


def sgd_readout(dist: Distribution, weights: np.ndarray, lr: float, batch_size: int, num_steps: int,
                rng: np.random.Generator, val: Sample, checkpoints: Sequence[int]) -> tuple[np.ndarray, list[float]]:
    """One-pass SGD on the readout θ from 0: θ ← θ − lr·mean_b((θ·φ_b − y_b)φ_b), fresh batch every step.

    The loop of ``train_sgd`` with the first layer and the generator passed in, so that a test can hold U
    fixed while it averages over data streams. Returns the final θ and the validation MSE after each
    step in `checkpoints` (ascending). Once θ stops being finite or the loss passes DIVERGED_MSE, the run
    stops and the remaining losses are inf.
    """
    losses: list[float] = []
    val_features = features(val.x, weights)
    theta = np.zeros(weights.shape[0])
    data = sample(dist, num_steps * batch_size, rng)
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, num_steps, FEATURE_CHUNK_STEPS):
            stop = min(num_steps, start + FEATURE_CHUNK_STEPS)
            phi = features(data.x[start * batch_size:stop * batch_size], weights)
            y = data.y[start * batch_size:stop * batch_size]
            for step in range(start, stop):
                rows = slice((step - start) * batch_size, (step - start + 1) * batch_size)
                residual = phi[rows] @ theta - y[rows]
                theta -= (lr / batch_size) * (residual @ phi[rows])
                if len(losses) < len(checkpoints) and step + 1 == checkpoints[len(losses)]:
                    loss = _mse(val_features @ theta, val.y)
                    if not loss < DIVERGED_MSE:  # also catches NaN
                        return theta, losses + [math.inf] * (len(checkpoints) - len(losses))
                    losses.append(loss)
            if not np.isfinite(theta).all():
                return theta, losses + [math.inf] * (len(checkpoints) - len(losses))
    return theta, losses


def infinite_width_optimum(dist: Distribution, val: Sample, n_train: int, ridge: float, seed: int) -> float:
    """Validation MSE of kernel ridge regression with the arc-cosine kernel on `n_train` samples of `dist`.

    The m → ∞ model trained to convergence on a finite sample, with penalty ``ridge · n_train · ‖f‖²_H``
    (``ridge`` is per sample): an estimate of the population optimum that is biased by estimation error
    and by ridge shrinkage, which is why the ridge must sit well below the kernel eigenvalue of h
    (~0.008·s² for d = 4; ridge 1e-3 shrinks h, biasing estimates ~0.2 low and swapping neighbours).
    With d = 4 and ridge 1e-5, n_train from 1000 to 2000 ranked the 6 or 8 ``make_distributions`` datasets exactly like
    ``population_optimum`` for each of 3 dataset seeds × 2 sample seeds; d = 8 needs more data.
    Costs O(n_train³): 0.1–0.5 s for 2000 on one core.
    """
    train = sample(dist, n_train, np.random.default_rng([seed, 2]))
    gram = arc_cosine_kernel(train.x, train.x)
    gram[np.diag_indices_from(gram)] += ridge * n_train
    alpha = cho_solve(cho_factor(gram, overwrite_a=True), train.y)
    return _mse(arc_cosine_kernel(val.x, train.x) @ alpha, val.y)


def population_optimum(dist: Distribution, val: Sample) -> float:
    """Exact validation MSE, on `val`, of E[y|x] = f* + CORRUPTION_GAIN·p·h: the best infinite-width model
    with unlimited data from `dist` (f* and h are in the model class), i.e. the ground truth to rank by.
    """
    clean, harmonic = _teacher_values(val.x, dist.teacher_seed)
    return _mse(clean + CORRUPTION_GAIN * dist.corrupt_frac * harmonic, val.y)


def _mse(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((prediction - target) ** 2))


def _teacher_values(x: np.ndarray, teacher_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """f*(x) and h(x) for the teacher drawn from `teacher_seed`."""
    centers, weights, harmonic = _teacher(x.shape[1], teacher_seed)
    clean = arc_cosine_kernel(x, centers) @ weights
    norms = np.linalg.norm(x, axis=1)
    quadratic = np.einsum("ni,ij,nj->n", x, harmonic, x)
    return clean, np.divide(quadratic, norms, out=np.zeros_like(norms), where=norms > 0)


@lru_cache(maxsize=32)
def _teacher(dim: int, teacher_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centers z_j, weights a_j of f* (scaled so E_val[f*²] = 1) and the traceless A of h (E_val[h²] = 1).

    For x ~ N(0, I_d), E[(xᵀAx)²/‖x‖²] = 2‖A‖²_F / (d + 2) when tr A = 0, which fixes ‖A‖_F exactly; f* has no
    closed-form second moment, so it is normalised on 20,000 fixed draws (a 1% error in a scale shared by
    every dataset).
    """
    rng = np.random.default_rng([teacher_seed, 0])
    centers = rng.standard_normal((TEACHER_CENTERS, dim))
    weights = rng.standard_normal(TEACHER_CENTERS)
    probe = rng.standard_normal((20_000, dim))
    weights /= math.sqrt(np.mean((arc_cosine_kernel(probe, centers) @ weights) ** 2))
    symmetric = rng.standard_normal((dim, dim))
    harmonic = symmetric + symmetric.T
    harmonic -= np.trace(harmonic) / dim * np.eye(dim)
    harmonic *= math.sqrt((dim + 2) / 2) / np.linalg.norm(harmonic)
    for array in (centers, weights, harmonic):
        array.flags.writeable = False
    return centers, weights, harmonic
