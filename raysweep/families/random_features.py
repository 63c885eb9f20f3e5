"""The random-feature family: the proxies are SGD runs, the "targets" each dataset's infinite-width optimum.

Every (dataset, width, learning rate, seed) is one proxy trial (``raysweep.random_features.train_sgd``),
scheduled by the same Tune experiment as language-model trials and stored in the same results table: the
dataset is the recipe, ``rf-m<width>`` the model, the validation MSE the loss. Each dataset's infinite-width
optimum (kernel ridge regression with the limiting kernel) is stored as its one "target" run, so the usual
report answers App. B's question directly: does a proxy learning rate rank the datasets in the order of
their infinite-width optimum?::

    trials = plan_rf_trials(sweep)    # 8 datasets × 3 widths × 10 lrs × 5 seeds proxies, then 8 targets
    result = run_rf_trial(trials[0])  # TrialResult: validation MSE at num_evals checkpoints

``RandomFeatureTrials`` is the family's ``raysweep.families.TrialFamily``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from pathlib import Path
from typing import Callable

from raysweep.config import RandomFeatureGrid, RandomFeatureSweep
from raysweep.identity import content_hash, hashable
from raysweep.random_features import (Distribution, infinite_width_optimum, make_distributions, sample, train_sgd,
                                      validation_distribution)
from raysweep.trials import RANDOM_FEATURES, Evaluation, Role, Status, TrialData, TrialResult

VALIDATION_SEED = 1


@dataclass(frozen=True)
class RandomFeatureSpec:
    """One random-feature run: what changes its result and nothing else (so adding a learning rate to the grid
    keeps every other trial's key)."""

    role: Role
    distribution: Distribution
    width: int
    lr: float
    seed: int
    batch_size: int
    """SGD minibatch; 0 for a target, which is a kernel regression."""
    num_steps: int
    num_evals: int
    validation_seed: int
    validation_samples: int
    kernel_samples: int
    ridge: float

    @property
    def key(self) -> str:
        # "weight_decay": 0.0 stays in the hashed record: the keys of trials stored when the spec had that field
        return content_hash({**hashable(self), "weight_decay": 0.0})

    @property
    def recipe(self) -> str:
        return self.distribution.name

    @property
    def model(self) -> str:
        return f"rf-m{self.width}" if self.role == Role.PROXY else RANDOM_FEATURES.target_model

    @property
    def num_params(self) -> int:
        return self.width

    @property
    def num_sequences(self) -> int:
        """Samples the run sees: what the scheduler sorts trials by, largest first."""
        return self.num_steps * self.batch_size if self.role == Role.PROXY else self.kernel_samples

    @property
    def name(self) -> str:
        return f"{self.role}-{self.recipe}-{self.model}-lr{self.lr:g}-s{self.seed}"

    def columns(self) -> dict[str, object]:
        """Its identity in the results table (``raysweep.trials.Trial``): plain SGD has no weight decay."""
        return {"role": self.role, "recipe": self.recipe, "model": self.model, "num_params": self.num_params,
                "lr": self.lr, "batch_size": self.batch_size, "weight_decay": 0.0, "seed": self.seed,
                "num_steps": self.num_steps}


def distributions(grid: RandomFeatureGrid) -> list[Distribution]:
    return make_distributions(grid.num_distributions, grid.dim, grid.distribution_seed)


def _validation(spec: RandomFeatureSpec):
    rng = np.random.default_rng(VALIDATION_SEED)
    return sample(validation_distribution(spec.distribution.dim, spec.validation_seed), spec.validation_samples, rng)


def plan_rf_trials(sweep: RandomFeatureSweep) -> list[RandomFeatureSpec]:
    """Every SGD proxy run, then one "target" per dataset: its infinite-width optimum (seed 0, no lr)."""
    grid = sweep.random_features
    shared = {"num_steps": grid.num_steps, "num_evals": grid.num_evals, "validation_seed": grid.distribution_seed,
              "validation_samples": grid.validation_samples, "kernel_samples": grid.kernel_samples,
              "ridge": grid.ridge}
    proxies = [RandomFeatureSpec(Role.PROXY, dist, width, lr, seed, grid.batch_size, **shared)
               for dist in distributions(grid) for width in grid.widths for lr in grid.lrs for seed in grid.seeds]
    targets = [RandomFeatureSpec(Role.TARGET, dist, 0, 0.0, 0, 0, **shared) for dist in distributions(grid)]
    return proxies + targets


def run_rf_trial(spec: RandomFeatureSpec) -> TrialResult:
    """A proxy: one-pass SGD, scored at `num_evals` checkpoints. A target: kernel ridge regression, one score."""
    start = time.perf_counter()
    val = _validation(spec)
    if spec.role == Role.TARGET:
        loss = infinite_width_optimum(spec.distribution, val, spec.kernel_samples, spec.ridge, seed=spec.seed)
        evaluations = [Evaluation(1, spec.kernel_samples, {"all": loss}, {"all": math.nan})]
        return TrialResult(spec, Status.OK, evaluations, time.perf_counter() - start)
    run = train_sgd(spec.distribution, val, spec.width, spec.lr, spec.batch_size, spec.num_steps, spec.seed,
                    num_evals=spec.num_evals)
    evaluations = [Evaluation(step, step * spec.batch_size, {"all": mse}, {"all": math.nan})
                   for step, mse in zip(run.steps, run.val_mse)]
    initial = {"all": float(np.mean(val.y ** 2))}  # the readout starts at zero: every prediction is 0
    return TrialResult(spec, Status.DIVERGED if run.diverged else Status.OK, evaluations, time.perf_counter() - start,
                       initial)


class RandomFeatureTrials:
    """``raysweep.families.TrialFamily`` for a ``random_features:`` sweep: no shards, no target search, no early
    stop; each trial holds one CPU for milliseconds."""

    family = RANDOM_FEATURES
    tpe = None
    asha = None
    early_stop = None
    precision_floor_lr = None
    """numpy float64 SGD: no reduced-precision floor."""

    def __init__(self, sweep: RandomFeatureSweep):
        self.sweep = sweep
        self.recipes = [d.name for d in distributions(sweep.random_features)]
        self.standard_lr = max(sweep.random_features.lrs)

    def plan(self) -> list[RandomFeatureSpec]:
        return plan_rf_trials(self.sweep)

    def resources(self, role: Role) -> tuple[float, float]:
        return 1.0, 0.0

    def largest_targets(self, recipes: list[str]) -> list[RandomFeatureSpec]:
        return []

    def prepare(self, trials: list[RandomFeatureSpec], shards_root: Path) -> dict[str, TrialData]:
        return {}

    @staticmethod
    def train(spec: RandomFeatureSpec, data: dict[str, TrialData], report: Callable[[Evaluation], None],
              checkpoint: Path, stop_after_evals: int | None, compile_model: bool) -> TrialResult:
        """Milliseconds: nothing to checkpoint or pause, and Tune hears of the last evaluation only."""
        result = run_rf_trial(spec)
        report(result.evaluations[-1])
        return result
