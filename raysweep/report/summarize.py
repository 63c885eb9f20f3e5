"""From the results table to the answer: which recipe to ship, and how far the proxy ranking can be trusted.

``summarize`` turns a results table (the schema of ``raysweep.store``; ``bits_per_byte`` and ``alignment``
may be absent) into a ``Report`` of typed records (``records``); ``report_run`` does it for a run directory with
its plan. ``render`` prints it, ``figures`` draws it and ``html`` writes it as one page; every statistic comes from
``raysweep.analysis``.

The rules, in the order a reader meets them:

- A trial scores its loss at its last recorded step. A non-finite loss (a diverged run) counts as +inf,
  so it ranks last.
- A recipe's *tuned target loss* is the minimum over its target configurations (lr, batch size, weight
  decay) of the seed-mean loss on the ranked domain; its CI is the seed bootstrap of that mean, which
  ignores the luck of picking the configuration. Each domain is tuned on its own loss. A configuration with fewer
  seeds than the recipe's most complete one (a seed failed, or has not finished) is left out and listed.
- Every proxy setting (model, lr) ranks recipes by seed-mean loss and is scored against the tuned targets:
  Spearman, Kendall tau, pairs ordered right, top-k regret, with 95% bootstrap CIs over seeds.
- The *chosen* proxy lr, per model, is the smallest lr inside the tiny-lr window (``raysweep.report.lr_choice``: at
  most standard / 10 and the Eq. 58 bound, above the precision and horizon floors, no divergence), decided
  from the proxies alone, before looking at targets. The setting with the best Spearman is only labelled, as
  hindsight.
- Baselines from the same runs: the proxy at the sweep's *standard* lr, and each *fixed target
  configuration* (DataDecide-style: one configuration for every recipe) scored against the tuned ranking.
- Seeds are paired: seed s is the same initialisation and data order for every recipe, so bootstrap resamples
  draw seed indices jointly across recipes and noise flags are paired t-tests
  (``analysis.within_noise_of_previous``: a recipe the test cannot separate from the one ranked just above it),
  for the tuned targets and for each proxy ranking. ``seeds_paired=False`` resamples each recipe's seeds on its
  own, for tables whose seeds are not known to be paired; their labels then mean nothing across recipes, so each
  recipe is compared on its own seeds, as many as the recipe with the fewest has (``table.comparable_seeds``).
- Compute (``raysweep.report.compute``): 6 · num_params · tokens per trial; each intermediate proxy checkpoint is
  scored against the final tuned targets, beside the proxy FLOPs spent up to it.
- A proxy that ties recipes at the k-th place picks among them at random: top-k regret is its expectation over
  the tie-breaks (``analysis.top_k_regret``), whatever order the recipes are listed in.
- ``metric="alignment"`` ranks proxies by the accumulated gradient alignment Σ_t ∇ℓ_val(θ_t)·∇ℓ(θ_t; B_t)
  (App. D.2.4) at their last evaluation, higher first: it is stored negated in place of the proxy loss, so
  every rule above applies unchanged (a diverged run's -inf becomes +inf). It is measured on one batch
  mixing every validation domain, so only the "all" rows are used; targets are still scored by their loss.
- ``metric`` one of a downstream task's scores (``acc``, ``acc_norm``, ``acc_bytes``, ``gold_logprob_per_byte``)
  ranks proxies *and* targets by it on the task's rows (``domain`` the task, "all" the mean over tasks of every
  evaluation that scored them all), higher first: stored negated in place of the loss (accuracies ×100, so that
  regret is in accuracy points) and every rule above applies, targets tuned on it too; the chosen lr is still the
  one the loss ("all") decides. An accuracy within two binomial standard errors of chance is flagged as
  uninformative, and each chosen proxy's ranking is compared with its ranking by loss. Ranked by loss, the report
  adds each task ranked by ``TASK_METRIC`` (``Report.tasks``).
- A random-feature sweep (``raysweep.families.random_features``: datasets for recipes, one infinite-width optimum per
  dataset for the targets) has no target configurations to tune or fix: no fixed-configuration baselines,
  no target-lr heatmap, no target loss curve.
- Missing runs are listed in ``Report.missing`` and kept out of comparisons, never silently dropped: a
  proxy setting that lacks a recipe is not compared; uneven paired seeds are cut to the seeds all recipes share;
  a ``Plan`` from the sweep file adds the trials and recipes not finished yet.

Example::

    table, run_dir, unreadable = load_results(Path("runs/demo"))
    report = summarize(table, domain="all", standard_lr=4e-3)
    report.main.targets[0].recipe                          # lowest tuned target loss: the one to ship
    [(p.lr, p.agreement.spearman) for p in report.main.proxies]   # Interval(point, low, high) per lr
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from raysweep.analysis import rank_transfer, seed_mean_interval, seed_std, spearman, within_noise_of_previous
from raysweep.errors import NothingToReport, ReportError
from raysweep.report.compute import checkpoint_curve, compute_by_role, full_protocol_flops
from raysweep.report.curves import Losses, loss_curves, rank_heatmaps, regret_curves
from raysweep.report.lr_choice import choose_lr
from raysweep.report.records import (TASK_METRIC, Agreement, ChanceCheck, DomainSummary, FixedConfigBaseline,
                                     Interval, LrChoice, Metric, ProxySetting, Report, TargetConfig, TaskRanking,
                                     TunedTarget)
from raysweep.report.table import as_frame, comparable_seeds, family_of, in_plan, load_results, plan_gaps, split_tasks
from raysweep.store import Plan, read_lr_windows, read_plan
from raysweep.trials import Family, Role

KS = (1, 2, 3)
CONFIG = ["lr", "batch_size", "weight_decay"]
FIXED_CONFIGS_SHOWN_ALL = 4
"""Up to this many target configurations, every one is shown as a baseline; beyond, best, median, worst."""
ALIGNMENT_FIX = "launch with proxy.alignment_every: K in the sweep file"
TASK_FIGURE_RESAMPLES = 200
"""Resamples behind the figures of the downstream table's own reports, which draw no figure."""


def report_run(path: str | Path, warn: Callable[[str], None], **options) -> Report:
    """``summarize`` of a run directory or Parquet table (``load_results``), with the run's plan (its standard lr)
    and the Eq. 58 bounds ``estimate-lr`` stored for it; ``options`` go to ``summarize``.

    An unreadable ``plan.json`` or ``lr_window.json`` is passed to ``warn`` and left out: the table alone still
    gives a report.
    """
    table, run_dir, unreadable = load_results(path)
    plan, eta_58 = None, {}
    if run_dir is not None:
        try:
            plan = read_plan(run_dir)
        except ValueError as err:
            warn(f"{run_dir.plan_file}: unreadable ({err}); reporting from the results table alone")
        try:
            eta_58 = {model: float(w["eta_58"]) for model, w in read_lr_windows(run_dir).items()}
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            warn(f"{run_dir.lr_window_file}: unreadable ({err}); the chosen lr ignores the Eq. 58 bound")
    return summarize(table, standard_lr=plan.standard_lr if plan else None, plan=plan, eta_58=eta_58,
                     source=str(path), unreadable=unreadable, **options)


def _ranked_by_alignment(frame: pd.DataFrame, last_step: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """The "all" rows, each proxy's loss replaced by its negated alignment (lower first), unmeasured rows dropped.

    A proxy trial without an alignment at its last evaluation is left out and counted in the returned note;
    ``last_step`` (each row's trial's last step) keeps an earlier measurement from standing in for it.
    """
    frame = frame[frame["domain"] == "all"].copy()
    proxy = frame["role"] == "proxy"
    if not np.isfinite(frame.loc[proxy, "alignment"]).any():
        raise ReportError(f"no proxy run recorded a gradient alignment, so --metric alignment has nothing to rank; "
                          f"{ALIGNMENT_FIX}")
    diverged = np.isinf(frame["loss"])  # ranks last whether or not its alignment was recorded as -inf
    frame.loc[proxy, "loss"] = np.where(diverged[proxy], np.inf, -frame.loc[proxy, "alignment"])
    frame.loc[proxy, "bits_per_byte"] = np.nan  # alignment has no bits/byte; targets keep theirs
    unmeasured = proxy & frame["loss"].isna()
    at_end = unmeasured & (frame["step"] == last_step.loc[frame.index])
    count = frame.loc[at_end, "trial_key"].nunique()
    note = [f"{count} proxy trial(s) have no gradient alignment at their last evaluation; left out (to measure it, "
            f"{ALIGNMENT_FIX})"] if count else []
    return frame[~unmeasured], note


def summarize(table: pa.Table, domain: str = "all", standard_lr: float | None = None, plan: Plan | None = None,
              metric: str = "loss", n_boot: int = 10_000, n_boot_figures: int = 2_000,
              source: str = "results table", unreadable: list[str] | None = None,
              eta_58: dict[str, float] | None = None, seeds_paired: bool = True) -> Report:
    """Reduce the results table to a ``Report`` ranked by ``domain``, its proxies by ``metric`` (``Metric``).

    ``standard_lr`` is the lr a fixed-configuration proxy would use (the baseline); None takes each proxy
    model's largest lr in the table. ``plan`` (from the sweep file) lets a partial run say what is missing
    and names the sweep family (without it, the table's target model does).
    Headline CIs use ``n_boot`` resamples; the many CIs behind figures use ``n_boot_figures``. ``unreadable``
    lists what never reached the table (result files ``load_results`` could not read, an audited table's rows
    without a score); it heads the report's list of what is missing.
    ``eta_58`` maps a proxy model to the Eq. 58 bound ``raysweep estimate-lr`` stored for the run; the chosen lr
    stays below it. ``seeds_paired`` says whether seed s is the same initialisation and data order for every
    recipe (raysweep's own runs; False for tables from elsewhere).
    """
    if metric not in set(Metric):
        raise ReportError(f"unknown metric {metric!r}; use one of: {', '.join(Metric)}")
    metric = Metric(metric)
    if metric == Metric.ALIGNMENT and domain != "all":
        raise ReportError(f"--metric alignment ranks by the domain \"all\" only, not {domain!r}: the gradient "
                          "alignment is measured on one validation batch mixing every domain")
    frame, task_rows = split_tasks(as_frame(table))
    frame, stale = in_plan(frame, plan)
    task_rows, _ = in_plan(task_rows, plan)
    if frame.empty and (task_rows.empty or not metric.is_task):  # a table of task scores alone ranks by them
        raise NothingToReport(f"{source}: the results table is empty; nothing to report yet")
    domains = sorted(frame["domain"].unique(), key=lambda d: (d != "all", d))
    if domain not in domains and not metric.is_task:
        raise ReportError(f"no rows for validation domain {domain!r}; the table has: {', '.join(domains)}")
    family = family_of(frame, plan)
    last_step = frame.groupby("trial_key")["step"].transform("max")
    loss_final = frame[frame["step"] == last_step]
    trial_keys = loss_final.drop_duplicates("trial_key")  # compute and divergence, by loss
    drops = _loss_drops(loss_final)  # how far each proxy trained, whatever ranks them
    unmeasured = []
    if metric == Metric.ALIGNMENT:
        frame, unmeasured = _ranked_by_alignment(frame, last_step)
        domains = ["all"]
    elif metric.is_task:
        frame, domains = _ranked_by_task(task_rows, metric, domain)
        last_step = frame.groupby("trial_key")["step"].transform("max")
    final = frame[frame["step"] == last_step.loc[frame.index]]
    if loss_final.empty:  # no loss rows: each trial's compute from its last score
        trial_keys = final.drop_duplicates("trial_key")
    summaries, notes = {}, []
    window = _Window(standard_lr, eta_58 or {}, plan.precision_floor_lr if plan else None, seeds_paired)
    if metric.is_task and not loss_final.empty:  # the proxies' lr is chosen on their loss, whatever ranks them
        by_loss, _, _ = _summarize_domain("all", loss_final[loss_final["domain"] == "all"], drops.get("all", {}),
                                          window, n_boot_figures, family, Metric.LOSS)
        window = replace(window, lr_choices={choice.model: choice for choice in by_loss.lr_choices})
    for name in domains:
        summaries[name], losses, domain_notes = _summarize_domain(
            name, final[final["domain"] == name], drops.get(name, {}), window,
            n_boot if name == domain else n_boot_figures, family, metric)
        if name == domain:
            main_losses, notes = losses, domain_notes
    main = summaries[domain]
    tuned = main_losses.tuned.to_numpy(float) if main_losses.tuned is not None else None
    proxy_rows = frame[(frame["domain"] == domain) & (frame["role"] == "proxy")]
    settings = {(s.model, s.lr): s for s in main.proxies if s.agreement}
    checkpoints = [point for (model, lr), rows in proxy_rows.groupby(["model", "lr"]) if (model, lr) in settings
                   for point in checkpoint_curve(rows, settings[(model, lr)], tuned, n_boot_figures, seeds_paired)]
    chance = _chance(task_rows, domain, main, metric) if metric.is_task else None
    if chance and chance.near_chance:
        notes.append(f"{domain}: the best tuned target's {metric} ({chance.best:.1f}) is within two standard errors "
                     f"({chance.margin:.1f} points over {chance.items} items) of chance ({chance.chance:.1f}): "
                     "accuracy here cannot tell the recipes apart, so this ranking is uninformative")
    at_chance = []
    for setting in main.proxies if chance else []:
        best = max(setting.mean_score.values())
        if ChanceCheck.of(chance.chance, chance.items, best, chance.items_in_task).near_chance:
            at_chance.append((setting.model, setting.lr))
            notes.append(f"proxy {setting.model} @ lr {setting.lr:g}: its best {metric} on {domain} ({best:.1f}) is "
                         f"within noise of chance ({chance.chance:.1f} ± {chance.margin:.1f}): its ranking by "
                         f"{metric} is noise; rank it by loss, or by gold_logprob_per_byte")
    computed = not family.tuned_targets  # one optimum per dataset: no target configurations, no target lr
    fixed_configs, num_configs = ([], 0) if computed else _fixed_configs(main_losses.target_runs, main.recipes,
                                                                   main_losses.tuned, n_boot, notes, seeds_paired)
    return Report(
        source=source, main=main, domains=list(summaries.values()), fixed_configs=fixed_configs,
        num_target_configs=num_configs,
        regret_curves=regret_curves(main, main_losses, n_boot_figures, seeds_paired),
        heatmaps=[] if computed else rank_heatmaps(main, main_losses),
        loss_curves=[c for c in loss_curves(main, main_losses) if not (computed and c.role == Role.TARGET)],
        checkpoints=checkpoints, compute=compute_by_role(trial_keys),
        full_protocol_flops=full_protocol_flops(trial_keys),
        missing=(unreadable or []) + stale + plan_gaps(trial_keys, plan) + unmeasured + notes,
        num_diverged=int(np.isinf(trial_keys["loss"]).sum()),
        target_model=", ".join(sorted(frame.loc[frame["role"] == "target", "model"].unique())) or None,
        family=family, metric=metric, seeds_paired=seeds_paired, chance=chance, proxies_at_chance=at_chance,
        versus_loss=_versus_loss(loss_final, main) if metric.is_task else [],
        tasks=(_task_rankings(table, task_rows, standard_lr=standard_lr, plan=plan, eta_58=eta_58,
                              seeds_paired=seeds_paired, n_boot=n_boot_figures)
               if metric == Metric.LOSS and not task_rows.empty else []))


def _ranked_by_task(rows: pd.DataFrame, metric: Metric, domain: str) -> tuple[pd.DataFrame, list[str]]:
    """The task rows of ``metric``, each score negated into the loss column (lower first; accuracies in points),
    with "all": the mean over tasks of every evaluation that scored them all. Returns them and the domains."""
    tasks = sorted(rows["domain"].unique())
    rows = rows[rows["metric"] == metric.value].copy()
    if rows.empty:
        raise ReportError(f"no downstream task rows with metric {metric.value!r} in the table"
                          + (f" (its tasks: {', '.join(tasks)})" if tasks else
                             "; add tasks: to the sweep file (see the README's downstream tasks)"))
    rows["loss"] = -metric.scale * rows["value"]
    rows[["bits_per_byte", "initial_loss"]] = np.nan
    tasks = sorted(rows["domain"].unique())
    if domain not in ["all", *tasks]:
        raise ReportError(f"no rows for task {domain!r}; the tasks are: all, {', '.join(tasks)}")
    evaluation = rows.groupby(["trial_key", "step"])
    complete = rows[evaluation["domain"].transform("nunique") == len(tasks)]
    mean = complete.groupby(["trial_key", "step"])["loss"].mean()
    combined = complete.drop_duplicates(["trial_key", "step"]).assign(domain="all")
    combined["loss"] = mean.reindex(pd.MultiIndex.from_frame(combined[["trial_key", "step"]])).to_numpy()
    return pd.concat([combined, rows], ignore_index=True), ["all", *tasks]


def _chance(task_rows: pd.DataFrame, domain: str, main: DomainSummary, metric: Metric) -> ChanceCheck | None:
    """The best accuracy ranked against a uniform guess on ``domain`` (all tasks pooled for "all"); None for a
    score that is not an accuracy, or a table without the tasks' descriptions."""
    if metric.scale != 100.0:
        return None
    described = task_rows[task_rows["metric"].isin(["chance", "items", "items_in_task"])]
    if domain != "all":
        described = described[described["domain"] == domain]
    per_task = described.groupby(["domain", "metric"])["value"].max().unstack("metric")
    if per_task.empty or not {"chance", "items"} <= set(per_task.columns):
        return None
    if main.targets:
        best = -main.targets[0].loss.point
    elif main.chosen():
        best = max(max(s.mean_score.values()) for s in main.chosen())
    else:
        return None
    in_task = int(per_task["items_in_task"].sum()) if "items_in_task" in per_task else None
    return ChanceCheck.of(100 * float(per_task["chance"].mean()), int(per_task["items"].sum()), float(best), in_task)


def _versus_loss(loss_final: pd.DataFrame, main: DomainSummary) -> list[tuple[str, float]]:
    """Spearman between the task metric's ranking and the validation loss's ("all") for the tuned targets and each
    chosen proxy: do accuracy and loss pick the same recipes?"""
    rows = loss_final[loss_final["domain"] == "all"]
    out = []
    targets = rows[rows["role"] == "target"]
    if len(main.targets) >= 2 and not targets.empty:
        tuned = _config_losses(targets.groupby(["recipe", *CONFIG, "seed"])["loss"].mean(), []).groupby(
            level="recipe").min()
        ranked = [t for t in main.targets if t.recipe in tuned.index]
        out.append(("tuned targets", spearman(np.array([t.loss.point for t in ranked]),
                                              tuned.reindex([t.recipe for t in ranked]).to_numpy(float))))
    proxies = rows[rows["role"] == "proxy"].groupby(["model", "lr", "recipe"])["loss"].mean()
    for setting in main.chosen():
        by_loss = proxies[(proxies.index.get_level_values("model") == setting.model)
                          & np.isclose(proxies.index.get_level_values("lr"), setting.lr, rtol=1e-9)]
        by_loss = by_loss.droplevel(["model", "lr"]).reindex(main.recipes).to_numpy(float)
        if not np.isnan(by_loss).any():  # a table of task scores alone has no loss to compare with
            out.append((f"proxy {setting.model} @ lr {setting.lr:g}",
                        spearman(np.array([setting.ranked(r) for r in main.recipes]), by_loss)))
    return out


def _task_rankings(table: pa.Table, task_rows: pd.DataFrame, **options) -> list[TaskRanking]:
    """Each task (and "all", with several) ranked by ``TASK_METRIC``: the loss report's downstream table."""
    tasks = sorted(task_rows.loc[task_rows["metric"] == TASK_METRIC.value, "domain"].unique())
    rankings = []
    for task in (["all"] if len(tasks) > 1 else []) + tasks:
        report = summarize(table, domain=task, metric=TASK_METRIC.value, n_boot_figures=TASK_FIGURE_RESAMPLES,
                           **options)
        main, best = report.main, report.main.targets[0] if report.main.targets else None
        rankings.append(TaskRanking(task, best and best.recipe, best and report.terms().shown(best.loss),
                                    report.chance, main.chosen(), main.standard(), report.versus_loss,
                                    report.proxies_at_chance))
    return rankings


@dataclass(frozen=True)
class _Window:
    """What the chosen-lr rule and the seed statistics need beyond the table; internal to ``summarize``."""

    standard_lr: float | None
    eta_58: dict[str, float]
    precision_floor: float | None
    seeds_paired: bool
    lr_choices: dict[str, LrChoice] = field(default_factory=dict)
    """model → its lr choice made already (on the loss, for a task metric's report); the rest are made here."""


def _summarize_domain(domain: str, rows: pd.DataFrame, loss_drops: dict[str, dict[float, float]], window: _Window,
                      n_boot: int, family: Family, metric: Metric) -> tuple[DomainSummary, Losses, list[str]]:
    """One domain's tuned targets and proxy settings; the notes say what is missing."""
    notes: list[str] = []
    runs_of = {role: rows[rows["role"] == role] for role in ("target", "proxy")}
    target_runs = runs_of["target"].groupby(["recipe", *CONFIG, "seed"])[["loss", "bits_per_byte"]].mean()
    config_loss = _config_losses(target_runs["loss"], notes)
    targets, tuned_block = _tune(target_runs, config_loss, n_boot, window.seeds_paired)
    proxy_recipes = sorted(runs_of["proxy"]["recipe"].unique())
    target_recipes = [t.recipe for t in targets]
    if targets and proxy_recipes:
        recipes = sorted(r for r in target_recipes if r in proxy_recipes)
        notes += [f"{r}: no proxy runs yet; ranked by its targets, left out of proxy comparisons"
                  for r in target_recipes if r not in proxy_recipes]
        notes += [f"{r}: no target runs; left out of every comparison"
                  for r in proxy_recipes if r not in target_recipes]
    else:
        recipes = sorted(target_recipes) or proxy_recipes
    tuned = None
    if targets:
        tuned_block, cut = comparable_seeds(tuned_block.reindex(recipes), window.seeds_paired)
        tuned = tuned_block.to_numpy(float)
        if cut:
            notes.append(f"targets at each recipe's best configuration: {cut}")
        if len(recipes) < 2:
            notes.append("only one recipe has target runs: nothing to rank yet")
    if family.tuned_targets and any(t.num_seeds < 2 for t in targets):  # an optimum is one computation
        notes.append("one target seed only: seed noise unknown, no recipe pair flagged as within noise")
    proxy_runs = runs_of["proxy"].groupby(["model", "lr", "recipe", "seed"])[["loss", "bits_per_byte"]].mean()
    proxies, matrices = _proxy_settings(proxy_runs, recipes, tuned, n_boot, notes, window.seeds_paired, metric)
    proxies, lr_choices = _label_settings(proxies, matrices, loss_drops, window, proxy_runs, notes)
    bits = rows.loc[np.isfinite(rows["loss"]) & (rows["loss"] > 0), ["bits_per_byte", "loss"]].dropna()
    summary = DomainSummary(
        domain=domain, recipes=recipes, targets=targets, proxies=proxies,
        bits_per_nat=float((bits["bits_per_byte"] / bits["loss"]).median()) if len(bits) else None,
        lr_choices=lr_choices)
    proxy_by_lr = proxy_runs["loss"].groupby(level=["model", "recipe", "lr"]).mean().unstack("lr")
    target_by_lr = config_loss.groupby(level=["recipe", "lr"]).min().unstack("lr")
    return summary, Losses(tuned_block if tuned is not None else None, matrices, target_by_lr, proxy_by_lr,
                            target_runs["loss"]), notes


def _loss_drops(final: pd.DataFrame) -> dict[str, dict[str, dict[float, float]]]:
    """domain → proxy model → lr → median over recipes and seeds of (initial loss − final loss), finite runs
    only; empty where the table records no initial losses."""
    proxies = final[(final["role"] == "proxy") & np.isfinite(final["loss"]) & np.isfinite(final["initial_loss"])]
    drops = (proxies["initial_loss"] - proxies["loss"]).groupby([proxies["domain"], proxies["model"],
                                                                proxies["lr"]]).median()
    out: dict[str, dict[str, dict[float, float]]] = {}
    for (domain, model, lr), drop in drops.items():
        out.setdefault(str(domain), {}).setdefault(str(model), {})[float(lr)] = float(drop)
    return out


def _config_losses(target_runs: pd.Series, notes: list[str]) -> pd.Series:
    """Seed-mean loss of each target configuration (recipe, lr, batch size, weight decay) that has as many seeds as
    the recipe's most complete one: a configuration with a seed missing (failed, or not finished yet) is left out
    of the recipe's tuned loss, since a mean over other seeds is not comparable, and the notes say so."""
    config = ["recipe", *CONFIG]
    num_seeds = target_runs.groupby(level=config).size()
    most = num_seeds.groupby(level="recipe").transform("max")
    for recipe, short in num_seeds[num_seeds < most].groupby(level="recipe"):
        shown = ", ".join(f"lr {lr:g} batch {int(batch)} wd {wd:g} ({count} of {most[(recipe, lr, batch, wd)]} "
                          "seeds)" for (_, lr, batch, wd), count in short.head(3).items())
        more = f" and {len(short) - 3} more" if len(short) > 3 else ""
        notes.append(f"{recipe}: target configuration(s) {shown}{more} lack seeds; left out of its tuned loss")
    return target_runs.groupby(level=config).mean()[num_seeds == most]


def _tune(target_runs: pd.DataFrame, config_loss: pd.Series, n_boot: int,
          seeds_paired: bool) -> tuple[list[TunedTarget], pd.DataFrame]:
    """Each recipe's best configuration by seed-mean loss, best recipe first, and its seeds' losses [recipe × seed]."""
    targets, blocks = [], {}
    for recipe, key in config_loss.groupby(level="recipe").idxmin().items():
        seeds = target_runs.loc[key]
        losses = seeds["loss"].to_numpy(float)
        bits = seeds["bits_per_byte"].mean()
        targets.append(TunedTarget(
            recipe=str(recipe), loss=Interval(*seed_mean_interval(losses, n_boot)),
            seed_std=float(seed_std(losses[None])[0]), num_seeds=len(losses),
            config=TargetConfig(float(key[1]), int(key[2]), float(key[3])),
            bits_per_byte=None if np.isnan(bits) else float(bits), within_noise_of_previous=False))
        blocks[str(recipe)] = seeds["loss"]
    if not targets:
        return [], pd.DataFrame()
    targets.sort(key=lambda t: (t.loss.point, t.recipe))
    block = pd.DataFrame(blocks).T.reindex([t.recipe for t in targets])
    common, _ = comparable_seeds(block, seeds_paired)  # the noise test compares seed s with seed s
    flags = (within_noise_of_previous(common.to_numpy(float), seeds_paired=seeds_paired) if common.shape[1]
             else np.zeros(len(targets), dtype=bool))
    targets = [replace(t, within_noise_of_previous=bool(flag)) for t, flag in zip(targets, flags)]
    return targets, block


def _agreement(stats: dict[str, tuple[float, float, float]]) -> Agreement:
    return Agreement(spearman=Interval(*stats["spearman"]), kendall=Interval(*stats["kendall"]),
                     decision_accuracy=Interval(*stats["decision_accuracy"]),
                     regret={k: Interval(*stats[f"regret@{k}"]) for k in KS if f"regret@{k}" in stats})


def _proxy_settings(proxy_runs: pd.DataFrame, recipes: list[str], tuned: np.ndarray | None, n_boot: int,
                    notes: list[str], seeds_paired: bool, metric: Metric
                    ) -> tuple[list[ProxySetting], dict[tuple[str, float], pd.DataFrame]]:
    """Every (model, lr) that has runs for all ``recipes``, scored against the tuned targets when there are any."""
    settings, matrices = [], {}
    if not recipes:
        return settings, matrices
    losses = proxy_runs["loss"].unstack("seed")
    bits = proxy_runs["bits_per_byte"].unstack("seed")
    for (model, lr), block in losses.groupby(level=["model", "lr"]):
        name = f"proxy {model} lr {lr:g}"
        block = block.droplevel(["model", "lr"]).reindex(recipes)
        absent = list(block.index[block.isna().all(axis=1)])
        if absent:
            notes.append(f"{name}: no runs for {', '.join(absent)}; not compared")
            continue
        complete, cut = comparable_seeds(block, seeds_paired)
        if cut:
            notes.append(f"{name}: {cut}")
        if complete.shape[1] == 0:
            continue
        matrix = complete.to_numpy(float)
        means, stds = matrix.mean(axis=1), seed_std(matrix)
        order = np.argsort(means, kind="stable")
        flags = within_noise_of_previous(matrix[order], seeds_paired=seeds_paired)
        bits_block = bits.loc[(model, lr)].reindex(recipes)
        recipe_bits = (bits_block[complete.columns] if seeds_paired else comparable_seeds(bits_block, False)[0]).mean(
            axis=1, skipna=False)
        agreement = None
        if tuned is not None and len(recipes) >= 2:
            agreement = _agreement(rank_transfer(matrix, tuned, ks=KS, n_boot=n_boot, seeds_paired=seeds_paired))
        settings.append(ProxySetting(
            model=str(model), lr=float(lr), metric=metric,
            mean_score=dict(zip(recipes, (metric.sign * means).tolist())),
            seed_std=dict(zip(recipes, stds.tolist())),
            rank={recipes[i]: position + 1 for position, i in enumerate(order)},
            mean_bits_per_byte=None if recipe_bits.isna().any() else recipe_bits.to_dict(),
            within_noise_of_previous={recipes[i] for i, flag in zip(order, flags) if flag},
            num_seeds=matrix.shape[1], num_runs=int(block.notna().to_numpy().sum()),
            num_diverged=int(np.isinf(block.to_numpy(float)).sum()),
            agreement=agreement, is_chosen=False, is_standard=False))
        matrices[(str(model), float(lr))] = complete
    if any(s.num_seeds < 2 for s in settings):
        notes.append("one proxy seed only at some lr: seed noise unknown there, no pair flagged")
    return settings, matrices


def _label_settings(settings: list[ProxySetting], matrices: dict[tuple[str, float], pd.DataFrame],
                    loss_drops: dict[str, dict[float, float]], window: _Window, proxy_runs: pd.DataFrame,
                    notes: list[str]) -> tuple[list[ProxySetting], list[LrChoice]]:
    """Mark each model's chosen lr (``lr_choice.choose_lr``) and its standard lr (the baseline)."""
    labelled, choices = [], []
    for model in sorted({s.model for s in settings}):
        own = [s for s in settings if s.model == model]
        run_lrs = proxy_runs.xs(model, level="model").index.get_level_values("lr")
        standard = window.standard_lr if window.standard_lr is not None else float(run_lrs.max())
        if not np.isclose(run_lrs, standard, rtol=1e-9).any():
            notes.append(f"proxy {model}: no runs at the standard lr {standard:g}; no standard-lr baseline")
        choice = window.lr_choices.get(model) or choose_lr(
            own, {s.lr: matrices[(model, s.lr)] for s in own}, loss_drops.get(model, {}), standard,
            window.eta_58.get(model), window.precision_floor, window.seeds_paired)
        if not choice.trusted:
            notes.append(f"proxy {model}: {choice.caveat}")
        choices.append(choice)
        labelled += [replace(s, is_chosen=s.lr == choice.lr, is_standard=bool(np.isclose(s.lr, standard, rtol=1e-9)))
                     for s in sorted(own, key=lambda s: s.lr)]
    return labelled, choices


def _fixed_configs(runs: pd.Series, recipes: list[str], tuned_block: pd.DataFrame | None, n_boot: int,
                   notes: list[str], seeds_paired: bool) -> tuple[list[FixedConfigBaseline], int]:
    """DataDecide-style baseline: rank every recipe at one shared target configuration, against the tuned ranking.

    Both sides use the same runs where a recipe's best configuration is the fixed one, so the bootstrap is
    over shared runs (``rank_transfer(same_runs=True)``) on the seeds both sides have.
    """
    if tuned_block is None:
        return [], 0
    by_config = runs.unstack("seed")
    num_configs = by_config.droplevel("recipe").index.unique().size
    if len(recipes) < 2:
        return [], num_configs
    candidates = []
    for config, block in by_config.groupby(level=CONFIG):
        block, _ = comparable_seeds(block.droplevel(CONFIG).reindex(recipes), seeds_paired)
        seeds = [s for s in tuned_block.columns if s in block.columns]
        if not seeds:
            continue
        fixed, tuned = block[seeds].to_numpy(float), tuned_block[seeds].to_numpy(float)
        point = spearman(fixed.mean(axis=1), tuned.mean(axis=1))
        candidates.append((-np.inf if np.isnan(point) else point, TargetConfig(float(config[0]), int(config[1]),
                                                                             float(config[2])), fixed, tuned))
    if len(candidates) < num_configs:
        notes.append(f"{num_configs - len(candidates)} of {num_configs} target configurations lack runs for some "
                     "recipes; not used as fixed-configuration baselines")
    candidates.sort(key=lambda c: -c[0])
    count = len(candidates)
    shown = [(c, "") for c in candidates] if count <= FIXED_CONFIGS_SHOWN_ALL else [
        (candidates[0], f"best of {count}"), (candidates[count // 2], f"median of {count}"),
        (candidates[-1], f"worst of {count}")]
    return [FixedConfigBaseline(config, label, _agreement(rank_transfer(fixed, tuned, ks=KS, n_boot=n_boot,
                                                                        seeds_paired=seeds_paired, same_runs=True)))
            for (_, config, fixed, tuned), label in shown], num_configs
