"""The two kinds of sweep raysweep runs, behind one interface: the launch, the Tune trainable and the store never
ask which one they hold.

``language_model`` trains transformers on text recipes (the paper's protocol); ``random_features`` runs the
synthetic check of App. B, whose targets are each dataset's infinite-width optimum::

    trials = trial_family(sweep, cluster)
    specs = trials.plan()                             # every trial the sweep file asks for, proxies first
    data = trials.prepare(specs, shards_root)         # what the specs read (recipe shards; nothing for App. B)
    result = trials.train(spec, data, report, ...)    # in a Tune worker: one TrialResult

What the report needs of a family (its words, whether targets are tuned) is ``raysweep.trials.Family``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from raysweep.config import ASHA, ClusterConfig, EarlyStop, RandomFeatureSweep, SweepConfig, TargetGrid, TPESearch
from raysweep.families.language_model import LanguageModelTrials
from raysweep.families.random_features import RandomFeatureTrials
from raysweep.trials import AnySpec, Evaluation, Family, Role, TrialData, TrialResult


class TrialFamily(Protocol):
    family: Family
    recipes: list[str]
    """In the sweep file's order."""
    standard_lr: float
    """The fixed-configuration proxy lr: the report's baseline."""
    precision_floor_lr: float | None
    """The lr below which the proxies' weights round their updates away (None: no reduced precision)."""
    tpe: tuple[TPESearch, TargetGrid, Callable[..., AnySpec]] | None
    """When Optuna proposes the targets: its settings, their ranges, and (recipe, lr, batch, wd, seed) → spec."""
    asha: ASHA | None
    early_stop: EarlyStop | None

    def plan(self) -> list[AnySpec]:
        """Every trial the sweep file asks for, in a stable order, proxies first."""

    def resources(self, role: Role) -> tuple[float, float]:
        """(CPUs, GPUs) one trial of ``role`` holds."""

    def largest_targets(self, recipes: list[str]) -> list[AnySpec]:
        """What a target search's trials may need of the data: ``prepare`` sizes for them too."""

    def prepare(self, trials: list[AnySpec], shards_root: Path) -> dict[str, TrialData]:
        """recipe → what its trials read (built once, cached by content under ``shards_root``)."""

    @staticmethod
    def train(spec: AnySpec, data: dict[str, TrialData], report: Callable[[Evaluation], None], checkpoint: Path,
              stop_after_evals: int | None, compile_model: bool) -> TrialResult:
        """Run one trial (resuming from ``checkpoint`` where it can), calling ``report`` per evaluation."""


def trial_family(sweep: SweepConfig | RandomFeatureSweep, cluster: ClusterConfig) -> TrialFamily:
    """The one place a sweep file's kind becomes behaviour."""
    if isinstance(sweep, RandomFeatureSweep):
        return RandomFeatureTrials(sweep)
    return LanguageModelTrials(sweep, cluster)
