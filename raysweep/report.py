"""From the results table to the answer: which recipe, and how far the proxy ranking can be trusted.

``summarize`` reduces the stored rows (final checkpoint of every trial, one validation domain) to
per-recipe loss matrices and runs the statistics of ``raysweep.analysis`` on them:

- a recipe's *tuned target loss* is the minimum, over its target configurations, of the seed-mean loss
  (diverged seeds count as +inf); its target seeds at that configuration feed the bootstrap;
- every proxy (model, learning rate) ranks recipes by seed-mean loss; Spearman and top-k regret against
  the tuned targets come with 95% bootstrap CIs that resample seeds within each recipe.

``print_summary`` renders it as Rich tables. Missing runs are listed, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from scipy.stats import rankdata

from raysweep.analysis import rank_transfer, seed_std

KS = (1, 2, 3)


@dataclass(frozen=True)
class ProxyReliability:
    model: str
    lr: float
    ranks: dict[str, int]
    """Recipe → rank by seed-mean proxy loss (1 = lowest)."""
    stats: dict[str, tuple[float, float, float]]
    """"spearman", "regret@k" … → (point, low, high), from ``analysis.rank_transfer``."""


@dataclass(frozen=True)
class Summary:
    domain: str
    recipes: list[str]
    """Recipes with complete target runs, best tuned target loss first."""
    target_loss: dict[str, float]
    target_std: dict[str, float]
    """Seed standard deviation at the best configuration: run-to-run noise differs between recipes."""
    target_config: dict[str, str]
    proxies: list[ProxyReliability]
    missing: list[str]
    num_diverged: int


def final_losses(table: pa.Table, domain: str) -> pd.DataFrame:
    """One row per trial: its loss on `domain` at its last recorded step."""
    frame = table.to_pandas()
    frame = frame[frame["domain"] == domain]
    return frame.loc[frame.groupby("trial_key")["step"].idxmax()]


def _seed_matrix(frame: pd.DataFrame, recipes: list[str]) -> tuple[np.ndarray | None, str | None]:
    """[recipes × seeds] losses over the seeds every recipe has; a note when some are missing."""
    seeds = [set(frame.loc[frame["recipe"] == r, "seed"]) for r in recipes]
    common = sorted(set.intersection(*seeds)) if seeds else []
    incomplete = [r for r, s in zip(recipes, seeds) if s != set(common)]
    note = f"uneven seeds: {', '.join(incomplete)} (only seeds {common} compared)" if incomplete else None
    if not common:
        return None, note
    pivot = frame.pivot_table(index="recipe", columns="seed", values="loss", aggfunc="first")
    return pivot.loc[recipes, common].to_numpy(dtype=float), note


def summarize(table: pa.Table, domain: str = "all", n_boot: int = 10_000) -> Summary:
    final = final_losses(table, domain)
    missing: list[str] = []
    targets = final[final["role"] == "target"]
    by_config = targets.groupby(["recipe", "lr", "batch_size", "weight_decay"])["loss"].mean().reset_index()
    best = by_config.loc[by_config.groupby("recipe")["loss"].idxmin()].set_index("recipe")
    proxies = final[final["role"] == "proxy"]
    all_recipes = sorted(set(final["recipe"]))
    for recipe in all_recipes:
        if recipe not in best.index:
            missing.append(f"{recipe}: no target runs; left out of every comparison")
    recipes = sorted(best.index, key=lambda r: (best.loc[r, "loss"], r))
    target_rows = targets.merge(best.reset_index()[["recipe", "lr", "batch_size", "weight_decay"]])
    target_matrix, note = _seed_matrix(target_rows, recipes)
    if note:
        missing.append(f"target {note}")
    reliability = []
    for (model, lr), group in proxies.groupby(["model", "lr"]):
        have = set(group["recipe"])
        absent = [r for r in recipes if r not in have]
        if absent:
            missing.append(f"proxy {model} lr={lr:g}: no runs for {', '.join(absent)}; not compared")
            continue
        proxy_matrix, note = _seed_matrix(group, recipes)
        if note:
            missing.append(f"proxy {model} lr={lr:g}: {note}")
        if proxy_matrix is None or target_matrix is None or len(recipes) < 2:
            continue
        ranks = rankdata(proxy_matrix.mean(axis=1), method="min").astype(int)
        stats = rank_transfer(proxy_matrix, target_matrix, ks=KS, n_boot=n_boot)
        reliability.append(ProxyReliability(model, float(lr), dict(zip(recipes, ranks.tolist())), stats))
    configs = {r: f"lr {best.loc[r, 'lr']:g}, bs {best.loc[r, 'batch_size']}, wd {best.loc[r, 'weight_decay']:g}"
               for r in recipes}
    stds = seed_std(target_matrix) if target_matrix is not None else np.full(len(recipes), np.nan)
    return Summary(domain, recipes, {r: float(best.loc[r, "loss"]) for r in recipes},
                   dict(zip(recipes, stds.tolist())), configs, reliability, missing,
                   int((final["status"] == "diverged").sum()))


def _ci(stat: tuple[float, float, float], digits: int = 2) -> str:
    point, low, high = stat
    if np.isnan(point):
        return "n/a"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def print_summary(summary: Summary, console: Console) -> None:
    if not summary.recipes:
        console.print("[yellow]No finished target runs yet: nothing to rank.[/yellow]")
        for line in summary.missing:
            console.print(f"  missing: {line}")
        return
    ranking = Table(title=f"Recipes by tuned target loss (nats/token, validation: {summary.domain}) "
                          "beside their rank under each proxy")
    ranking.add_column("#", justify="right")
    ranking.add_column("recipe")
    ranking.add_column("tuned loss ± seed std", justify="right")
    ranking.add_column("best target config", no_wrap=True)
    for proxy in summary.proxies:
        ranking.add_column(f"{proxy.model}\nlr {proxy.lr:g}", justify="right")
    for rank, recipe in enumerate(summary.recipes, start=1):
        loss = f"{summary.target_loss[recipe]:.4f} ± {summary.target_std[recipe]:.4f}"
        ranking.add_row(str(rank), recipe, loss, summary.target_config[recipe],
                        *[str(p.ranks[recipe]) for p in summary.proxies])
    console.print(ranking)

    reliability = Table(title="How far each proxy ranking can be trusted (95% bootstrap CI over seeds)")
    reliability.add_column("proxy model")
    reliability.add_column("lr", justify="right")
    reliability.add_column("Spearman", justify="right", no_wrap=True)
    reliability.add_column("pairs ordered right", justify="right", no_wrap=True)
    for k in KS:
        if k <= len(summary.recipes):
            reliability.add_column(f"regret@{k} (nats)", justify="right", no_wrap=True)
    for proxy in summary.proxies:
        regrets = [_ci(proxy.stats[f"regret@{k}"], 3) for k in KS if f"regret@{k}" in proxy.stats]
        reliability.add_row(proxy.model, f"{proxy.lr:g}", _ci(proxy.stats["spearman"]),
                            _ci(proxy.stats["decision_accuracy"]), *regrets)
    console.print(reliability)
    if summary.num_diverged:
        console.print(f"{summary.num_diverged} run(s) diverged; their loss counts as +inf.")
    for line in summary.missing:
        console.print(f"[yellow]missing:[/yellow] {line}")
