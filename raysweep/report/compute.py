"""Compute accounting: what a sweep spent, and the decision quality each unit of proxy compute bought.

Training compute is C = 6 N D FLOPs per trial (``analysis.training_flops``), N parameters and D the tokens
trained at the trial's last step, summed per role beside the trials' summed wall time. For the proxies,
every intermediate checkpoint is scored against the final tuned targets, so a reader sees how early the
ranking settles (the paper's App. D.2.5: at a tiny lr, early checkpoints rank as well as final ones)::

    compute_by_role(one_row_per_trial)    # [ComputeRow(role="proxy", num_trials=48, flops=7.4e12, ...), ...]
    full_protocol_flops(one_row_per_trial)  # 9.1e12: what the same sweep costs without early stops or a shortlist
    checkpoint_curve(rows, setting, tuned, n_boot=2000)   # [CheckpointPoint(step=175, proxy_flops=4.6e11, ...)]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raysweep.analysis import rank_transfer, training_flops
from raysweep.report.records import CheckpointPoint, ComputeRow, Interval, ProxySetting
from raysweep.report.table import comparable_seeds
from raysweep.trials import Status


def checkpoint_curve(rows: pd.DataFrame, setting: ProxySetting, tuned: np.ndarray,
                     n_boot: int, seeds_paired: bool) -> list[CheckpointPoint]:
    """One proxy setting's Spearman and regret@1 at each intermediate checkpoint, against the final tuned targets.

    A run that diverged counts as +inf at every checkpoint after it stopped; a checkpoint where some recipe
    has no seed left is skipped; the last checkpoint reuses the setting's headline statistics (the same
    losses), so the two tables agree. Compute at a checkpoint sums 6 N D over the setting's runs, each run's
    tokens capped where it stopped.
    """
    recipes = list(setting.mean_score)
    rows = rows[rows["recipe"].isin(recipes)]
    by_step = rows.groupby(["recipe", "seed", "step"])["loss"].mean().unstack("step")
    losses = by_step.to_numpy(float, copy=True)
    losses[np.maximum.accumulate(np.isinf(losses), axis=1)] = np.inf  # once diverged, diverged at later steps
    last_tokens = rows.groupby(["recipe", "seed"])["tokens"].max().to_numpy(float)
    tokens_per_step = float((rows["tokens"] / rows["step"]).median())
    num_params = float(rows["num_params"].iloc[0])
    points = []
    for j, step in enumerate(by_step.columns):
        if not np.isfinite(losses[:, j]).any():
            continue  # only the step at which runs diverged, not an evaluation step
        block = pd.Series(losses[:, j], index=by_step.index).unstack("seed").reindex(recipes)
        block, _ = comparable_seeds(block, seeds_paired)  # the seeds every recipe has at this step
        if block.shape[1] == 0:
            continue
        if j == len(by_step.columns) - 1:
            spearman_stat, regret_stat = setting.agreement.spearman, setting.agreement.regret[1]
        else:
            stats = rank_transfer(block.to_numpy(float), tuned, ks=(1,), n_boot=n_boot, seeds_paired=seeds_paired)
            spearman_stat, regret_stat = Interval(*stats["spearman"]), Interval(*stats["regret@1"])
        flops = training_flops(num_params, np.minimum(last_tokens, tokens_per_step * step)).sum()
        points.append(CheckpointPoint(setting.model, setting.lr, int(step), float(flops), spearman_stat, regret_stat))
    return points


def compute_by_role(trials: pd.DataFrame) -> list[ComputeRow]:
    """FLOPs (6 N D at each trial's last step) and summed wall time per role, from one row per trial; for
    early-stopped trials, also the FLOPs of the steps they were planned for and did not train."""
    rows = []
    for role, group in trials.groupby("role"):
        stopped = group[group["status"] == Status.STOPPED]
        tokens_left = _planned_tokens(stopped) - stopped["tokens"]
        rows.append(ComputeRow(str(role), len(group), int(np.isinf(group["loss"]).sum()),
                               float(training_flops(group["num_params"], group["tokens"]).sum()),
                               float(group["wall_s"].sum() / 3600.0), len(stopped),
                               float(training_flops(stopped["num_params"], tokens_left).sum())))
    return rows


def _planned_tokens(trials: pd.DataFrame) -> pd.Series:
    """Tokens each trial would have trained had nothing stopped it early (a diverged run ends where it did)."""
    stopped = trials["status"] == Status.STOPPED
    return trials["tokens"].where(~stopped, trials["num_steps"] * trials["tokens"] / trials["step"])


def full_protocol_flops(trials: pd.DataFrame) -> float:
    """FLOPs of the full protocol this run's decision stands in for, from one row per trial.

    The full protocol trains every proxy to its last planned step and runs the target search on every recipe the
    proxies rank, each target to its last planned step. Early stops (settled proxies, ASHA) and a shortlist
    (select mode) spend less: a recipe without targets is counted at the mean planned cost of the recipes with
    them, since every recipe gets the same search. Equal to the FLOPs spent when nothing was cut short.
    """
    planned = training_flops(trials["num_params"], _planned_tokens(trials))
    proxies, targets = trials["role"] == "proxy", trials["role"] == "target"
    proxy_recipes, target_recipes = trials.loc[proxies, "recipe"].nunique(), trials.loc[targets, "recipe"].nunique()
    per_recipe = float(planned[targets].sum()) / target_recipes if target_recipes else 0.0
    return float(planned[proxies].sum()) + per_recipe * max(proxy_recipes, target_recipes)
