"""Target search beyond the grid: Optuna TPE with the same budget for every recipe, and ASHA within each recipe.

Both plug into the sweep's one Tune experiment; the searcher's trials carry their spec as ``config["spec"]``::

    searcher = RecipeTPESearcher(sweep.target.search, sweep.target, recipes, make_spec, run, proxies, entry)
    scheduler = PerRecipeASHA(sweep.target.asha, spec_of=lambda config: config["spec"])
    tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1, max_concurrent_trials=...)

The searcher keeps one Optuna study per recipe in a journal file beside the results, and tells each study what
the store holds (not what Tune reported), so a relaunch after a kill continues the studies where they stopped.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from raysweep import store
from raysweep.config import ASHA, TargetGrid, TPESearch
from raysweep.trials import AnySpec, Role, TrialSpec, eval_steps

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

MakeSpec = Callable[[str, float, int, float, int], TrialSpec]
"""(recipe, lr, batch_size, weight_decay, seed) -> the target trial's spec."""


@dataclass(frozen=True)
class TrialEntry:
    """Builds ``config["trial"]``, what Tune keeps of each trial: small and flat. Tune copies a trial's config,
    name creator and scheduler inputs into every trial's state, so anything that holds all the specs there
    makes driver memory grow with the square of the sweep's size."""

    proxy_resources: tuple[float, float]
    target_resources: tuple[float, float]
    """(CPUs, GPUs) a proxy / a target holds (``TrialFamily.resources``)."""

    def __call__(self, spec: AnySpec) -> dict:
        cpu, gpu = self.proxy_resources if spec.role == Role.PROXY else self.target_resources
        columns = spec.columns()
        group = (f"proxy {columns['model']} lr {spec.lr:g}" if spec.role == Role.PROXY  # what trackers group by
                 else f"target {spec.recipe}")
        return {"key": spec.key, "name": spec.name, "role": str(spec.role), "recipe": spec.recipe, "group": group,
                "seed": spec.seed, "configuration": [spec.lr, columns["batch_size"], columns["weight_decay"]],
                "num_evaluations": len(eval_steps(spec.num_steps, spec.num_evals)), "cpu": cpu, "gpu": gpu}


@dataclass(eq=False)
class _Configuration:
    """One Optuna trial: a point of the target ranges, trained once per target seed."""

    recipe: str
    number: int
    specs: list[TrialSpec]
    waiting: set[str]
    """Keys of its seeds not stored yet: it is told when this empties."""


class RecipeTPESearcher(Searcher):
    """Hands out the proxies, then ``trials_per_recipe`` TPE configurations per recipe, round-robin over recipes;
    each configuration is one Tune trial per target seed (seeds already stored are not trained again).

    A configuration is told to its study once all its seeds have ended: the seed-mean final "all" loss read from
    the store (COMPLETE); PRUNED when a seed diverged or was stopped by ASHA, so that TPE ranks it behind every
    completed configuration (a FAIL would be invisible to TPE, which would then keep proposing diverging learning
    rates); FAIL when a seed stored nothing (it raised after its retries). Every terminal state counts against the
    budget, so each recipe ends with exactly ``trials_per_recipe`` configurations; the next launch asks a failed
    configuration again, for the seeds it lacks, as it retries a failed grid trial.
    """

    def __init__(self, search: TPESearch, grid: TargetGrid, recipes: list[str], make_spec: MakeSpec,
                 run: store.RunDir, proxies: list[TrialSpec], entry: TrialEntry):
        # No metric: Tune would then reject every result without it, and a diverged run reports no loss.
        super().__init__()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep shows its own progress
        self._grid, self._budget, self._make_spec, self._entry = grid, search.trials_per_recipe, make_spec, entry
        self._run = run
        self._proxies = deque(proxies)
        self._recipes = list(recipes)
        self._cursor = 0
        self._studies = {recipe: _open_study(run.study(recipe), recipe, search) for recipe in self._recipes}
        self._told = dict.fromkeys(self._recipes, 0)
        self._open: list[_Configuration] = []
        self._ready: deque[TrialSpec] = deque()
        self._waiting: dict[str, list[_Configuration]] = {}  # spec key -> open configurations that need it
        self._running: dict[str, TrialSpec] = {}  # Tune trial id -> target spec
        self._ended: list[str] = []  # keys of target trials that ended since the last suggest
        self._left_in_experiment = math.inf  # trials it may still hand out before this experiment ends
        for recipe, study in self._studies.items():
            trials = study.get_trials(deepcopy=False)
            retried = {trial.user_attrs[_RETRY_OF] for trial in trials if _RETRY_OF in trial.user_attrs}
            for trial in trials:
                if not _PARAMS <= trial.params.keys():
                    if trial.state == TrialState.RUNNING:  # killed while it was being asked: never trained
                        study.tell(trial.number, state=TrialState.FAIL)
                elif trial.state == TrialState.RUNNING:  # left by a killed launch: it continues with the seeds it lacks
                    self._start(recipe, trial.number, trial.params)
                elif trial.state != TrialState.FAIL:
                    self._told[recipe] += 1
                elif trial.number not in retried:  # a seed raised after its retries: retried as a failed grid trial is
                    study.enqueue_trial(trial.params, user_attrs={_RETRY_OF: trial.number})

    @property
    def finished(self) -> bool:
        """Every recipe's study holds its budget of configurations: a launch has no target left to train."""
        return all(told >= self._budget for told in self._told.values())

    def next_experiment(self, max_trials: int) -> bool:
        """Tell the studies what the last experiment ended, then hand out at most ``max_trials`` trials until the
        next call; False once nothing is left. Tune keeps every finished trial of an experiment in the driver, so a
        long search runs as successive experiments, as a long grid does."""
        self._tell_ended()
        self._left_in_experiment = max_trials
        return bool(self._proxies) or not self.finished

    @property
    def num_trials(self) -> int:
        """Tune trials of the whole search: every recipe's budget of configurations × target seeds."""
        return len(self._recipes) * self._budget * len(self._grid.seeds)

    def target_keys(self) -> list[str]:
        """Keys of every target trial the studies have proposed so far (each configuration × each seed), once
        each: a retried configuration has the keys of the one that failed."""
        return list(dict.fromkeys(
            self._make_spec(recipe, t.params["lr"], t.params["batch_size"], t.params["weight_decay"], seed).key
            for recipe, study in self._studies.items() for t in study.get_trials(deepcopy=False)
            if _PARAMS <= t.params.keys() for seed in self._grid.seeds))

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._left_in_experiment <= 0:  # this experiment ends with its running trials; the next one goes on
            return Searcher.FINISHED
        if self._proxies:  # planned: the trainable looks them up by key
            self._left_in_experiment -= 1
            return {"trial": self._entry(self._proxies.popleft())}
        self._tell_ended()
        while not self._ready:
            recipe = self._next_recipe()
            if recipe is None:  # every configuration is asked: wait for the running ones, then stop
                return None if self._open else Searcher.FINISHED
            trial = self._studies[recipe].ask()
            trial.suggest_float("lr", min(self._grid.lrs), max(self._grid.lrs), log=True)
            trial.suggest_categorical("batch_size", self._grid.batch_sizes)
            trial.suggest_categorical("weight_decay", self._grid.weight_decays)
            self._start(recipe, trial.number, trial.params)
        spec = self._ready.popleft()
        self._running[trial_id] = spec
        self._left_in_experiment -= 1
        return {"trial": self._entry(spec), "spec": spec}  # proposed now: the trainable cannot look it up

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Told at the next suggest: an early-stopped trial is stored by a callback that Tune calls after this."""
        spec = self._running.pop(trial_id, None)
        if spec is not None:  # None: a proxy
            self._ended.append(spec.key)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: every tell is already in the studies' journals, which a relaunch reopens."""

    def _start(self, recipe: str, number: int, params: dict) -> None:
        specs = [self._make_spec(recipe, params["lr"], params["batch_size"], params["weight_decay"], seed)
                 for seed in self._grid.seeds]
        configuration = _Configuration(recipe, number, specs,
                                       {s.key for s in specs if not store.read_trial_losses(self._run, s.key)})
        if not configuration.waiting:
            self._tell(configuration)
            return
        self._open.append(configuration)
        for spec in specs:
            if spec.key in configuration.waiting:
                if spec.key not in self._waiting:  # not already queued or running for another configuration
                    self._ready.append(spec)
                self._waiting.setdefault(spec.key, []).append(configuration)

    def _next_recipe(self) -> str | None:
        """The next recipe, round-robin, whose told and open configurations are still short of the budget."""
        for offset in range(len(self._recipes)):
            recipe = self._recipes[(self._cursor + offset) % len(self._recipes)]
            if self._told[recipe] + sum(c.recipe == recipe for c in self._open) < self._budget:
                self._cursor = (self._cursor + offset + 1) % len(self._recipes)
                return recipe
        return None

    def _tell_ended(self) -> None:
        ended, self._ended = self._ended, []
        for key in ended:
            for configuration in self._waiting.pop(key, []):
                configuration.waiting.discard(key)
                if not configuration.waiting:
                    self._open.remove(configuration)
                    self._tell(configuration)

    def _tell(self, configuration: _Configuration) -> None:
        outcomes = [self._outcome(spec) for spec in configuration.specs]
        states = {state for state, _ in outcomes}
        study = self._studies[configuration.recipe]
        if TrialState.FAIL in states:
            study.tell(configuration.number, state=TrialState.FAIL)
        elif TrialState.PRUNED in states:
            study.tell(configuration.number, state=TrialState.PRUNED)
        else:
            study.tell(configuration.number, statistics.fmean(loss for _, loss in outcomes))
        self._told[configuration.recipe] += 1

    def _outcome(self, spec: TrialSpec) -> tuple[TrialState, float]:
        """What the store holds for one seed: its final "all" loss, or why it has none."""
        losses = store.read_trial_losses(self._run, spec.key)
        if not losses:  # raised after its retries, or ended without storing anything
            return TrialState.FAIL, math.nan
        if not math.isfinite(losses[-1]) or len(losses) < len(eval_steps(spec.num_steps, spec.num_evals)):
            return TrialState.PRUNED, math.nan  # diverged, or stopped by ASHA before its last evaluation
        return TrialState.COMPLETE, losses[-1]


_PARAMS = {"lr", "batch_size", "weight_decay"}
_RETRY_OF = "retry_of"
"""User attribute of a configuration asked again because one of its seeds raised: the failed trial's number. A
failed configuration counts against the budget until the next launch, which retries it once."""


def _open_study(journal: Path, recipe: str, search: TPESearch) -> optuna.Study:
    """The recipe's study, created or reloaded from ``<study_dir>/<recipe>.log``.

    The sampler's seed mixes the sweep's seed with the recipe's name through a stable hash, so a run is
    reproducible across processes and recipes do not all draw the same points. A third of the budget (at most
    Optuna's default of 10) starts TPE with random configurations, so that a small budget still gets guided ones.
    """
    seed = int.from_bytes(hashlib.sha256(f"{search.seed}/{recipe}".encode()).digest()[:4], "big")
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, search.trials_per_recipe // 3)),
                                         multivariate=True, constant_liar=True)
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.create_study(storage=storage, study_name=recipe, direction="minimize", sampler=sampler,
                               load_if_exists=True)


class PerRecipeASHA(FIFOScheduler):
    """ASHA (``time_attr="evaluation"``, minimising "loss") over the target configurations, run separately for each
    recipe and seed: a configuration competes only with its own recipe's trained with the same seed, so a recipe
    whose losses are all high is not stopped for it, and the seeds of one configuration never stop each other
    (the slightly worse seed would lose to its sibling). Once one seed of a configuration is stopped, its other
    seeds stop at their next evaluation: a configuration is stopped as a whole. Proxies always continue.

    A trial is never stopped at its last evaluation (ASHA would stop every trial there): it ends on its own and
    stores itself whole. A result without "loss" (a diverged run) is ignored by ASHA; the run ends by itself.
    """

    def __init__(self, asha: ASHA):
        super().__init__()
        self._asha = asha
        self._populations: dict[tuple[str, int], ASHAScheduler] = {}  # (recipe, seed) -> its ASHA
        self._stopped: set[tuple[str, float, int, float]] = set()  # (recipe, lr, batch size, weight decay)

    def _population(self, trial: Trial) -> ASHAScheduler | None:
        entry = trial.config["trial"]
        if entry["role"] == Role.PROXY:
            return None
        if (entry["recipe"], entry["seed"]) not in self._populations:
            self._populations[entry["recipe"], entry["seed"]] = ASHAScheduler(
                time_attr="evaluation", metric="loss", mode="min", max_t=entry["num_evaluations"],
                grace_period=self._asha.grace_evals, reduction_factor=self._asha.reduction_factor)
        return self._populations[entry["recipe"], entry["seed"]]

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        if population := self._population(trial):
            population.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        entry = trial.config["trial"]
        population = self._population(trial)
        if population is None or result.get("evaluation", 0) >= entry["num_evaluations"]:
            return TrialScheduler.CONTINUE
        configuration = (entry["recipe"], *entry["configuration"])
        if configuration in self._stopped:
            return TrialScheduler.STOP
        decision = population.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            self._stopped.add(configuration)
        return decision

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        if population := self._population(trial):
            population.on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        if population := self._population(trial):
            population.on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        if population := self._population(trial):
            population.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{recipe} seed {seed}: {population.debug_string()}"
                         for (recipe, seed), population in self._populations.items())
