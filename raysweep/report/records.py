"""The typed records of a report: what ``raysweep.report.summarize`` computes and every renderer reads.

One ``Report`` holds a ``DomainSummary`` per validation domain (``Report.main`` is the one ranked by),
the series behind the figures, the compute accounting and the list of what is missing. Losses are in
nats per token (mean squared error for random-feature runs); ``bits_per_byte`` fields are None when the
table does not record them. Proxies rank by their ``Metric`` (``ProxySetting.mean_score`` in its own units, a loss or
an alignment; ``ProxySetting.ranked`` orients it so that lower ranks first), and ``Report.terms()`` names it::

    report.main.targets[0]              # TunedTarget(recipe='balanced', loss=Interval(1.207, 1.205, 1.209), ...)
    report.main.chosen()[0].agreement   # Agreement(spearman=Interval(0.83, 0.77, 1.0), regret={1: ...}, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np

from raysweep.trials import Family


class Metric(StrEnum):
    """What ranks the proxies: their loss, their gradient alignment (targets then still by loss), or a downstream
    task's score (proxies and targets alike)."""

    LOSS = "loss"
    ALIGNMENT = "alignment"
    """The accumulated gradient alignment Σ_t ∇ℓ_val(θ_t)·∇ℓ(θ_t; B_t) (App. D.2.4): larger ranks first."""
    ACC = "acc"
    ACC_NORM = "acc_norm"
    """Accuracy with each choice's log-likelihood over its length in characters (the harness's, App. D.1.3)."""
    ACC_BYTES = "acc_bytes"
    GOLD_LOGPROB_PER_BYTE = "gold_logprob_per_byte"
    """The gold choice's log-likelihood per UTF-8 byte (nats/byte): a smooth score where accuracy is coarse."""

    @property
    def sign(self) -> float:
        """+1 where a lower score ranks first (a loss), -1 where a higher one does (alignment, task scores)."""
        return 1.0 if self is Metric.LOSS else -1.0

    @property
    def is_task(self) -> bool:
        """Scored on the downstream tasks' rows, for targets as for proxies."""
        return self not in (Metric.LOSS, Metric.ALIGNMENT)

    @property
    def scale(self) -> float:
        """Accuracies are reported in points (percent), so that regret reads as accuracy points."""
        return 100.0 if self in (Metric.ACC, Metric.ACC_NORM, Metric.ACC_BYTES) else 1.0

    @property
    def unit(self) -> str:
        return "accuracy points" if self.scale == 100.0 else "nats/byte"


class Interval(NamedTuple):
    """A statistic with its 95% bootstrap interval over seeds (NaN when undefined)."""

    point: float
    low: float
    high: float


@dataclass(frozen=True)
class TargetConfig:
    lr: float
    batch_size: int
    weight_decay: float

    def __str__(self) -> str:
        return f"lr {self.lr:g}, bs {self.batch_size}, wd {self.weight_decay:g}"


@dataclass(frozen=True)
class TunedTarget:
    """A recipe's score: its best target configuration's seed-mean loss."""

    recipe: str
    loss: Interval
    """Seed mean at ``config`` with a seed-bootstrap CI (nats/token)."""
    seed_std: float
    num_seeds: int
    config: TargetConfig
    bits_per_byte: float | None
    """Seed mean of ``bits_per_byte`` at ``config``."""
    within_noise_of_previous: bool
    """Not separable from the recipe ranked just above (``analysis.within_noise_of_previous``)."""


@dataclass(frozen=True)
class Agreement:
    """How well one ranking of recipes transfers to the tuned targets (``analysis.rank_transfer``)."""

    spearman: Interval
    kendall: Interval
    decision_accuracy: Interval
    """Share of recipe pairs ordered as the tuned targets order them."""
    regret: dict[int, Interval]
    """k → top-k regret in nats/token, for k up to the number of recipes."""


@dataclass(frozen=True)
class ProxySetting:
    """One proxy model at one learning rate, trained on every compared recipe."""

    model: str
    lr: float
    metric: Metric
    mean_score: dict[str, float]
    """Seed-mean ``metric`` per recipe, in its own units: a loss, or an alignment."""
    seed_std: dict[str, float]
    rank: dict[str, int]
    """1 = best seed-mean score (lowest loss, highest alignment); ties broken by recipe order."""
    mean_bits_per_byte: dict[str, float] | None
    within_noise_of_previous: set[str]
    """Recipes not separable from the recipe the proxy ranks just above them."""
    num_seeds: int
    num_runs: int
    """Runs stored for this setting over every compared recipe and seed (diverged ones included)."""
    num_diverged: int
    agreement: Agreement | None
    """None without tuned targets to compare with."""
    is_chosen: bool
    """The model's lr chosen inside the tiny-lr window (``raysweep.report.lr_choice``): the setting the decision table
    uses."""
    is_standard: bool
    """The sweep's standard lr: the fixed-configuration proxy baseline."""

    def ranked(self, recipe: str) -> float:
        """The recipe's score oriented so that lower ranks first, as the statistics compare it with target losses."""
        return self.metric.sign * self.mean_score[recipe]


@dataclass(frozen=True)
class LrCheck:
    """One proxy lr against the window's checks (``raysweep.report.lr_choice``)."""

    lr: float
    is_tiny: bool
    """At most standard lr / 10 and, when estimated, the Eq. 58 bound."""
    diverged: bool
    progress: float | None
    """Loss drop from initialisation as a share of the standard lr's; None when the table has no initial losses."""
    share_within_noise: float | None
    """Share of neighbouring recipe pairs in this lr's ranking within paired seed noise (shown, not a check); None
    with one seed."""
    compared_lr: float | None
    """The lr whose ranking this one's is compared with: the anchor (the largest lr passing every other check) below
    it, the next lr up above it, None for the anchor itself (every lr above it is outside the window)."""
    stability: Interval | None
    """Spearman of this lr's ranking against ``compared_lr``'s, with its 95% bootstrap interval."""
    reasons: list[str]
    """Why the lr is outside the window; empty when it passes every check."""


@dataclass(frozen=True)
class LrChoice:
    """A proxy model's chosen lr, the rule's inputs and every lr's checks, decided without the targets."""

    model: str
    lr: float
    trusted: bool
    """False when no lr passed every check: the chosen one is a fallback the rule cannot vouch for."""
    standard_lr: float
    upper_lr: float
    """min(standard lr / 10, Eq. 58 bound)."""
    eta_58: float | None
    """The Eq. 58 bound ``raysweep estimate-lr`` stored for the run; None when not estimated."""
    precision_floor: float | None
    anchor_lr: float | None
    """The largest lr passing every check but stability, whose ranking the lrs below it must agree with; None when
    no lr passes them."""
    checks: list[LrCheck]
    """Every lr of the model, ascending."""
    caveat: str
    """Why the choice cannot be vouched for; "" when trusted."""


@dataclass(frozen=True)
class FixedConfigBaseline:
    """One target configuration used for every recipe (DataDecide-style), scored against the tuned ranking."""

    config: TargetConfig
    label: str
    """"best of 72", "median of 72", "worst of 72", or "" when every configuration is shown."""
    agreement: Agreement


@dataclass(frozen=True)
class DomainSummary:
    domain: str
    recipes: list[str]
    """Recipes the proxies are compared on (those with target and proxy runs, or either alone), alphabetical."""
    targets: list[TunedTarget]
    """Every recipe with target runs, lowest tuned loss first; empty without target runs."""
    proxies: list[ProxySetting]
    bits_per_nat: float | None
    """Bits per byte per nat per token on this domain (median over runs), to convert loss gaps; None if unknown."""
    lr_choices: list[LrChoice]
    """Per proxy model, how its chosen lr was decided."""

    def chosen(self) -> list[ProxySetting]:
        return [s for s in self.proxies if s.is_chosen]

    def chosen_vs_own_best(self, model: str) -> list[tuple[str, float, float, float]]:
        """Finding I (Fig. 4a): per recipe, (recipe, loss at the chosen lr, the model's own best loss over its lr
        sweep, the lr of that best); empty without a chosen setting for ``model``."""
        own = [s for s in self.proxies if s.model == model]
        chosen = next((s for s in own if s.is_chosen), None)
        if chosen is None:
            return []
        rows = []
        for recipe in chosen.mean_score:
            best = min(own, key=lambda s: s.ranked(recipe))
            rows.append((recipe, chosen.mean_score[recipe], best.mean_score[recipe], best.lr))
        return rows

    def standard(self) -> list[ProxySetting]:
        return [s for s in self.proxies if s.is_standard]

    def best_in_hindsight(self) -> list[ProxySetting]:
        """Per proxy model, the lr with the highest Spearman point: knowable only once targets are trained."""
        best: dict[str, ProxySetting] = {}
        for setting in self.proxies:
            score = setting.agreement.spearman.point if setting.agreement else np.nan
            current = best.get(setting.model)
            if not np.isnan(score) and (current is None or score > current.agreement.spearman.point):
                best[setting.model] = setting
        return list(best.values())


@dataclass(frozen=True)
class RegretCurve:
    model: str
    lr: float
    regret: list[Interval]
    """regret[k - 1] is top-k regret (nats/token), k = 1 … number of recipes."""


@dataclass(frozen=True)
class RankHeatmap:
    model: str
    proxy_lrs: list[float]
    target_lrs: list[float]
    spearman: np.ndarray
    """[proxy lr × target lr]; NaN where a target lr lacks some recipe."""


@dataclass(frozen=True)
class LossCurve:
    role: str
    model: str
    """Proxy model name; "" for targets (best loss over batch size and weight decay at each lr)."""
    recipe: str
    lrs: list[float]
    losses: list[float]
    """Seed-mean loss at each lr (for proxies, the ranked score: see ``Terms.proxy_sign``); +inf where runs
    diverged."""


@dataclass(frozen=True)
class CheckpointPoint:
    """A proxy setting's agreement with the final tuned targets at one of its intermediate checkpoints."""

    model: str
    lr: float
    step: int
    proxy_flops: float
    """Compute spent on this setting up to ``step``: 6 N D summed over its recipes and seeds."""
    spearman: Interval
    regret_at_1: Interval


@dataclass(frozen=True)
class ComputeRow:
    role: str
    num_trials: int
    num_diverged: int
    flops: float
    """Sum over trials of 6 · num_params · tokens trained (at the last step)."""
    wall_hours: float
    """Sum over trials of their wall time."""
    num_stopped: int = 0
    """Proxies stopped early because their setting's ranking had settled (``proxy.early_stop``)."""
    saved_flops: float = 0.0
    """6 · num_params · tokens the stopped trials were planned for but did not train."""


@dataclass(frozen=True)
class Terms:
    """What a report calls its parts, from its family and metric: every table, figure and page says the same."""

    recipe: str
    """"recipe", or "dataset" for random-feature runs."""
    target: str
    """"tuned target", or "infinite-width optimum" (a dataset's kernel-regression loss)."""
    loss_unit: str
    """Unit of validation losses, and of regret (a target loss gap): "nats/token" or "MSE"."""
    proxy_score: str
    """What ranks the proxies: "loss" or "gradient alignment"."""
    proxy_unit: str
    """Unit of the proxy score: ``loss_unit``, or "" for the dimensionless alignment."""
    proxy_sign: float
    """``Metric.sign``: -1 where a higher proxy score ranks first (alignment); a ranked value × it is the score."""
    target_score: str = "loss"
    """What scores the targets: "loss", or the task metric ranked by."""
    target_sign: float = 1.0
    """-1 for a task metric: targets are ranked by the negated score (lower first), shown with its own sign."""
    digits: int = 4
    """Decimals of a target score: 4 for losses, 2 for accuracy points."""

    def shown(self, ranked: Interval) -> Interval:
        """A target's ranked value (and CI) as the score it is: for a task metric, the accuracy, not its negation."""
        if self.target_sign > 0:
            return ranked
        return Interval(-ranked.point, -ranked.high, -ranked.low)


@dataclass(frozen=True)
class ChanceCheck:
    """A task's accuracy against a uniform guess: near chance, its ranking says nothing."""

    chance: float
    """Expected accuracy of a uniform guess over the choices (points)."""
    items: int
    best: float
    """The best accuracy ranked (the best tuned target's, else the best proxy recipe's), in points."""
    margin: float
    """Two binomial standard errors of an accuracy at chance over ``items`` items (points)."""
    near_chance: bool
    """``best`` is below chance + ``margin``."""
    items_in_task: int
    """Items the task holds: more than ``items`` when a subsample was scored."""

    @classmethod
    def of(cls, chance: float, items: int, best: float, items_in_task: int | None = None) -> ChanceCheck:
        p = chance / 100
        margin = 200 * float(np.sqrt(p * (1 - p) / max(items, 1)))
        return cls(chance, items, best, margin, best < chance + margin, items_in_task or items)


TASK_METRIC = Metric.ACC_NORM
"""What the loss report's downstream table ranks by (the paper's, App. D.1.3)."""


@dataclass(frozen=True)
class TaskRanking:
    """One downstream task (or "all": their mean) ranked by ``TASK_METRIC``, from ``summarize(metric=...)``."""

    task: str
    best: str | None
    """The best recipe by tuned target score."""
    best_score: Interval | None
    """Its score (points) with the seed-bootstrap CI."""
    chance: ChanceCheck | None
    chosen: list[ProxySetting]
    standard: list[ProxySetting]
    versus_loss: list[tuple[str, float]]
    proxies_at_chance: list[tuple[str, float]]
    """(model, lr) of the proxy settings whose accuracy on it is within noise of chance."""


@dataclass(frozen=True)
class Report:
    source: str
    main: DomainSummary
    """The domain the decision is ranked by (``--domain``)."""
    domains: list[DomainSummary]
    """Every validation domain, "all" first (the main one included)."""
    fixed_configs: list[FixedConfigBaseline]
    """Baselines on the main domain: one target configuration for every recipe."""
    num_target_configs: int
    regret_curves: list[RegretCurve]
    heatmaps: list[RankHeatmap]
    loss_curves: list[LossCurve]
    checkpoints: list[CheckpointPoint]
    compute: list[ComputeRow]
    full_protocol_flops: float
    """What the same sweep would cost with every proxy and every recipe's target search run to the end
    (``compute.full_protocol_flops``); the decision's share of it is what early stops and a shortlist saved."""
    missing: list[str]
    """One line per gap: runs absent, seeds uneven, settings not compared."""
    num_diverged: int
    target_model: str | None
    family: Family
    metric: Metric
    seeds_paired: bool
    """Whether seed s was taken as the same initialisation and data order for every recipe (resampled jointly)."""
    chance: ChanceCheck | None = None
    """Ranked by a task's accuracy: how far the best tuned target's score stands from a uniform guess."""
    proxies_at_chance: list[tuple[str, float]] = field(default_factory=list)
    """Ranked by a task's accuracy: (model, lr) of each proxy setting whose best recipe is within noise of chance
    (its ranking by that accuracy is noise)."""
    versus_loss: list[tuple[str, float]] = field(default_factory=list)
    """Ranked by a task metric: (whose ranking, Spearman between its ranking by this metric and by the validation
    loss "all") for the tuned targets and each chosen proxy."""
    tasks: list[TaskRanking] = field(default_factory=list)
    """Ranked by loss: each downstream task's ranking by ``TASK_METRIC``, beside the loss ranking."""

    VIEWS = ("targets", "proxies", "agreement", "checkpoints", "compute", "tasks")

    def to_pandas(self, view: str) -> "pandas.DataFrame":  # noqa: F821 (pandas is imported when called)
        """One table of the report as a DataFrame, for notebooks: ``targets`` (tuned score per recipe),
        ``proxies`` (score and rank per proxy setting × recipe), ``agreement`` (per proxy setting, every statistic
        with its CI), ``checkpoints``, ``compute`` or ``tasks`` (each downstream task's best recipe by ``TASK_METRIC``,
        chance, and the proxies' Spearman by it). An interval ``x`` becomes columns ``x``, ``x_low``,
        ``x_high``; losses are on the main domain, in the report's units."""
        import pandas as pd

        main = self.main
        if view == "targets":
            rows = [{**_flat(t, skip={"config"}), **_flat(t.config)} for t in main.targets]
        elif view == "proxies":
            rows = [{"model": s.model, "lr": s.lr, "recipe": recipe, "rank": s.rank[recipe], "score": score,
                     "seed_std": s.seed_std[recipe], "chosen": s.is_chosen, "standard": s.is_standard}
                    for s in main.proxies for recipe, score in s.mean_score.items()]
        elif view == "agreement":
            rows = []
            for s in main.proxies:
                if s.agreement:
                    rows.append({"model": s.model, "lr": s.lr, "chosen": s.is_chosen, "standard": s.is_standard,
                                 **_flat(s.agreement, skip={"regret"})})
                    for k, regret in s.agreement.regret.items():
                        rows[-1].update(_interval(f"regret@{k}", regret))
        elif view in ("checkpoints", "compute"):
            rows = [_flat(record) for record in getattr(self, view)]
        elif view == "tasks":
            rows = [{"task": t.task, "metric": TASK_METRIC.value, "best_recipe": t.best,
                     **_interval("best_score", t.best_score or Interval(np.nan, np.nan, np.nan)),
                     **(_flat(t.chance, skip={"best"}) if t.chance else {}),
                     **{f"spearman_{'chosen' if s.is_chosen else 'standard'}_{s.model}_lr{s.lr:g}":
                        s.agreement.spearman.point for s in [*t.chosen, *t.standard] if s.agreement}}
                    for t in self.tasks]
        else:
            raise ValueError(f"no view {view!r}; the views are {', '.join(self.VIEWS)}")
        return pd.DataFrame(rows)

    def terms(self) -> Terms:
        family, metric = self.family, self.metric
        if metric.is_task:
            return Terms(recipe=family.recipe_word, target=family.target_word, loss_unit=metric.unit,
                         proxy_score=metric.value, proxy_unit=metric.unit, proxy_sign=-1.0,
                         target_score=metric.value, target_sign=-1.0, digits=2 if metric.scale == 100.0 else 4)
        alignment = metric == Metric.ALIGNMENT
        return Terms(recipe=family.recipe_word, target=family.target_word, loss_unit=family.loss_unit,
                     proxy_score="gradient alignment" if alignment else "loss",
                     proxy_unit="" if alignment else family.loss_unit, proxy_sign=metric.sign)


def _interval(name: str, value: Interval) -> dict[str, float]:
    return {name: value.point, f"{name}_low": value.low, f"{name}_high": value.high}


def _flat(record, skip: set[str] = frozenset()) -> dict:
    """A record's fields as columns, intervals spread into three."""
    columns = {}
    for name in record.__dataclass_fields__:
        if name not in skip:
            value = getattr(record, name)
            columns.update(_interval(name, value) if isinstance(value, Interval) else {name: value})
    return columns
