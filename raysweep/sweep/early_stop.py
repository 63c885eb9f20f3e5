"""When a proxy setting's ranking has settled (paper D.2.5): pure decisions over checkpoint losses, no Ray.

A proxy setting (model × learning rate) trains every recipe with every seed. Its runs stop early once the ranking
of recipes at one checkpoint agrees with the ranking at the previous one: Spearman's ρ between the two, with a
bootstrap over seeds (paired, since both checkpoints come from the same runs), has its lower confidence bound at
or above ``EarlyStop.min_spearman``. The steps the runs had left are the compute saved.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from raysweep.analysis import rank_transfer, training_flops
from raysweep import store
from raysweep.config import EarlyStop
from raysweep.trials import Status, TrialSpec

N_BOOT = 2000


@dataclass(frozen=True)
class Settling:
    """The settle check of one proxy setting after one round."""

    model: str
    lr: float
    checkpoint: int
    """1-based index of the later of the two checkpoints compared."""
    spearman: tuple[float, float, float]
    """ρ between the rankings at checkpoints ``checkpoint - 1`` and ``checkpoint``: point, low, high."""
    settled: bool


def settle_check(model: str, lr: float, checkpoint: int, previous: np.ndarray, current: np.ndarray,
                 rule: EarlyStop) -> Settling:
    """Compare the [recipes × seeds] losses at two successive checkpoints of the same runs.

    The interval is two-sided at level ``2 × confidence - 1``, so its low end is a one-sided bound at
    ``confidence``. An undefined ρ (every recipe tied, e.g. all diverged) never counts as settled.
    """
    point, low, high = rank_transfer(previous, current, ks=(), n_boot=N_BOOT, ci=2 * rule.confidence - 1,
                                     same_runs=True)["spearman"]
    return Settling(model, lr, checkpoint, (point, low, high), not math.isnan(low) and low >= rule.min_spearman)


def losses_at(curves: list[list[list[float]]], index: int) -> np.ndarray | None:
    """[recipes × seeds] losses at evaluation ``index`` from each run's loss curve; None while a run has not
    reached it. A diverged run's curve ends in +inf, which stands for every later checkpoint too."""
    out = np.empty((len(curves), len(curves[0])))
    for r, seeds in enumerate(curves):
        for s, curve in enumerate(seeds):
            if index < len(curve):
                out[r, s] = curve[index]
            elif curve and math.isinf(curve[-1]):
                out[r, s] = math.inf
            else:
                return None
    return out


def saved_flops(num_params: int, steps_left: int, tokens_per_step: int) -> float:
    """6·N·D of the steps an early-stopped run did not train."""
    return float(training_flops(num_params, steps_left * tokens_per_step))


def store_stopped(run: store.RunDir, spec: TrialSpec) -> float:
    """Store a paused proxy as "stopped" with its evaluations so far; drop its checkpoint; the FLOPs it saved."""
    partial = store.read_partial(run, spec)
    store.write_trial(run, dataclasses.replace(partial, status=Status.STOPPED))
    run.checkpoint(spec.key).unlink(missing_ok=True)
    return saved_flops(spec.num_params, spec.num_steps - partial.evaluations[-1].step, spec.batch_size * spec.seq_len)
