"""The data behind the report's figures that its tables do not hold: top-k regret for every k, proxy-lr ×
target-lr rank agreement, and loss against lr."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raysweep.analysis import rank_transfer, spearman
from raysweep.report.records import DomainSummary, Interval, LossCurve, RankHeatmap, RegretCurve


@dataclass(frozen=True)
class Losses:
    """One domain's losses in the shapes the statistics take; built by ``summarize``."""

    tuned: pd.DataFrame | None
    """recipe × seed losses at each recipe's best target configuration, on the seeds every recipe has; None
    without targets."""
    proxies: dict[tuple[str, float], pd.DataFrame]
    """(model, lr) → recipe × seed losses, for the settings compared."""
    target_by_lr: pd.DataFrame
    """recipe × target lr: the best seed-mean loss over the other hyperparameters at that lr."""
    proxy_by_lr: pd.DataFrame
    """(model, recipe) × proxy lr: seed-mean loss."""
    target_runs: pd.Series
    """Target loss by (recipe, lr, batch_size, weight_decay, seed)."""


def regret_curves(main: DomainSummary, losses: Losses, n_boot: int, seeds_paired: bool) -> list[RegretCurve]:
    """Top-k regret for every k, per compared proxy setting (figure b)."""
    if losses.tuned is None or len(main.recipes) < 2:
        return []
    ks = tuple(range(1, len(main.recipes) + 1))
    curves = []
    for (model, lr), matrix in losses.proxies.items():
        stats = rank_transfer(matrix.to_numpy(float), losses.tuned.to_numpy(float), ks=ks, n_boot=n_boot, seeds_paired=seeds_paired)
        curves.append(RegretCurve(model, lr, [Interval(*stats[f"regret@{k}"]) for k in ks]))
    return curves


def rank_heatmaps(main: DomainSummary, losses: Losses) -> list[RankHeatmap]:
    """Spearman of each proxy lr's ranking against each target lr's (best over the other hyperparameters)."""
    if losses.tuned is None or len(main.recipes) < 2:
        return []
    target = losses.target_by_lr.reindex(main.recipes)
    heatmaps = []
    for model in sorted({s.model for s in main.proxies}):
        settings = sorted((s for s in main.proxies if s.model == model), key=lambda s: s.lr)
        values = np.full((len(settings), target.shape[1]), np.nan)
        for i, setting in enumerate(settings):
            proxy = np.array([setting.ranked(r) for r in main.recipes])
            for j, lr in enumerate(target.columns):
                if target[lr].notna().all():
                    values[i, j] = spearman(proxy, target[lr].to_numpy(float))
        heatmaps.append(RankHeatmap(model, [s.lr for s in settings], [float(lr) for lr in target.columns], values))
    return heatmaps


def loss_curves(main: DomainSummary, losses: Losses) -> list[LossCurve]:
    """Each recipe's loss against lr, for targets and for each proxy model (figure d)."""
    curves = []
    for recipe, row in losses.target_by_lr.reindex(main.recipes).dropna(how="all").iterrows():
        row = row.dropna()
        curves.append(LossCurve("target", "", str(recipe), row.index.tolist(), row.tolist()))
    for model in losses.proxy_by_lr.index.unique("model"):
        by_recipe = losses.proxy_by_lr.xs(model, level="model")
        for recipe in (r for r in main.recipes if r in by_recipe.index):
            row = by_recipe.loc[recipe].dropna()
            curves.append(LossCurve("proxy", str(model), recipe, row.index.tolist(), row.tolist()))
    return curves
