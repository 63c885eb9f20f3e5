"""The Tune side: the trainable each trial runs in, its resources, and experiments of at most
``TRIALS_PER_EXPERIMENT`` trials."""

from __future__ import annotations

import errno
import logging
import math
import os
import pickle
import re
import time
from pathlib import Path
from typing import Callable

from dataclasses import dataclass

import torch
import transformers
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

import ray
from ray import tune

from raysweep import store
from raysweep.config import ASHA, ClusterConfig
from raysweep.errors import ClusterError
from raysweep.sweep.early_stop import store_stopped
from raysweep.sweep.progress import ResourceWait, TrialProgress
from raysweep.sweep.search import PerRecipeASHA, RecipeTPESearcher, TrialEntry
from raysweep.sweep.tracking import tracking_callbacks
from raysweep.trials import AnySpec, Evaluation, Role, Status, TrialData, TrialResult, eval_steps


@dataclass(frozen=True)
class TrialRun:
    """What every Tune experiment of one launch shares: where, how a trial trains, what it reads and holds."""

    cluster: ClusterConfig
    train: Callable
    """The family's ``TrialFamily.train``."""
    entry: TrialEntry
    data: dict[str, TrialData]
    run_dir: store.RunDir
    console: Console


def _spec_of(config: dict, specs: dict[str, AnySpec]) -> AnySpec:
    """A trial's spec: planned ones by their key; a searcher's targets carry theirs, since they do not exist
    when the experiment starts."""
    return config["spec"] if "spec" in config else specs[config["trial"]["key"]]


class TrialRecorder(tune.Callback):
    """Stores what a trial's own run cannot: the evaluations of a target that ASHA stopped, as its rows, and the
    cause of a trial that still fails after its retries, so that the sweep goes on without it."""

    def __init__(self, specs: dict[str, AnySpec], run: store.RunDir):
        self.specs, self.run = specs, run
        self.errors: list[str] = []
        """One line per failed trial: its name, cause and traceback file."""

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; raysweep's state is the store.
        return {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        spec = _spec_of(trial.config, self.specs)
        stopped = (spec.role == Role.TARGET and store.read_partial(self.run, spec)
                   and not store.read_trial_losses(self.run, spec.key))
        if stopped:  # ASHA stopped it: its evaluations so far become its rows (proxies pause between rounds)
            store_stopped(self.run, spec)

    def on_trial_error(self, iteration, trials, trial, **info):
        spec = _spec_of(trial.config, self.specs)
        error_file = Path(trial.error_file) if trial.error_file else None
        lines = error_file.read_text().strip().splitlines() if error_file and error_file.is_file() else []
        cause = lines[-1] if lines else "no error recorded"
        self.errors.append(f"{spec.name}: {cause} (traceback: {error_file or 'none'})")
        try:
            store.write_failure(self.run, spec, cause)
        except OSError as err:  # storage full or gone: the launch still lists the failure, a relaunch retries it
            self.errors[-1] += f"; its failure record could not be written ({err.strerror})"


def _trial_name(trial) -> str:
    """Module-level, like ``_trial_resources``: Tune pickles both into every trial's state, so a closure over
    the specs would copy all of them per trial."""
    return trial.config["trial"]["name"]


def _trial_resources(config: dict) -> tune.PlacementGroupFactory:
    entry = config["trial"]
    return tune.PlacementGroupFactory([{"CPU": entry["cpu"], **({"GPU": entry["gpu"]} if entry["gpu"] else {})}])


@dataclass(frozen=True)
class _Shared:
    """What every trial of one ``run_trials`` reads: all its specs by key and its recipes' data.

    ``tune.with_parameters`` deserializes its parameters again for every trial, and at 20,000 specs that cost more
    than a short trial (and grew with the sweep); this holds them as one object-store reference instead, which
    each worker process fetches once (``fetch``): with ``reuse_actors`` a process runs many trials."""

    ref: ray.ObjectRef

    def fetch(self) -> tuple[dict[str, AnySpec], dict[str, TrialData]]:
        key = self.ref.hex()
        if key not in _FETCHED:
            _FETCHED.clear()  # the last launch's or round's: one at a time per process
            _FETCHED[key] = ray.get(self.ref)
        return _FETCHED[key]


_FETCHED: dict[str, tuple[dict[str, AnySpec], dict[str, TrialData]]] = {}


def _tune_trial(config: dict, train: Callable, shared: _Shared, run: store.RunDir, stop_after_evals: int | None,
                compile_model: bool, stoppable_targets: bool) -> None:
    """The Tune function trainable: train the trial's spec (from its checkpoint, if a killed run left one),
    report each evaluation, and store the rows at the end; a proxy paused for an early-stopping round stores its
    evaluations so far instead. A target that ASHA may stop (``stoppable_targets``) records its evaluations
    before each report, since a stopped trial never returns from it."""
    transformers.logging.set_verbosity_error()
    specs, data = shared.fetch()
    spec = _spec_of(config, specs)
    store.mark_started(run, spec)
    gpu_share = config["trial"]["gpu"]  # what the trial's placement group holds
    if torch.cuda.is_available() and 0 < gpu_share < 1:
        # Trials packed on one GPU each keep to their share, so one cannot starve the others of memory.
        torch.cuda.set_per_process_memory_fraction(gpu_share)
    checkpoint = run.checkpoint(spec.key)
    report = (_recording_report(spec, run) if stoppable_targets and spec.role == Role.TARGET
              else lambda evaluation: _report_to_tune(spec, evaluation))
    result = train(spec, data, report, checkpoint, stop_after_evals, compile_model)
    if result.status == Status.PARTIAL:
        store.write_partial(run, result)
    else:
        store.write_trial(run, result)
        checkpoint.unlink(missing_ok=True)


def _recording_report(spec: AnySpec, run: store.RunDir) -> Callable[[Evaluation], None]:
    """Report to Tune after storing the evaluations so far as a partial record (a resumed run starts from the
    record its earlier attempt left), so that a trial ASHA stops inside the report keeps its rows."""
    earlier = store.read_partial(run, spec) or TrialResult(spec, Status.PARTIAL)
    evaluations = list(earlier.evaluations)
    start = time.perf_counter()

    def report(evaluation: Evaluation) -> None:
        if math.isfinite(evaluation.losses["all"]):
            evaluations.append(evaluation)
            store.write_partial(run, TrialResult(spec, Status.PARTIAL, list(evaluations),
                                                         earlier.wall_s + time.perf_counter() - start))
        _report_to_tune(spec, evaluation)

    return report


def _report_to_tune(spec: AnySpec, evaluation: Evaluation) -> None:
    """Progress for Tune, its schedulers and its dashboard: ``evaluation`` counts the evaluations reached (ASHA's
    time axis); a diverged run's infinite loss is left out (the store keeps it)."""
    loss = evaluation.losses["all"]
    finite = {"loss": loss} if math.isfinite(loss) else {}
    reached = sum(step <= evaluation.step for step in eval_steps(spec.num_steps, spec.num_evals))
    tune.report({"evaluation": reached, "step": evaluation.step, "tokens": evaluation.tokens, **finite})


EXPERIMENT_SNAPSHOT_S = 300
"""How often Tune writes its experiment state while an experiment runs (it also writes it at the end)."""
TRIALS_PER_EXPERIMENT = 1000
"""Tune keeps every finished trial of an experiment in the driver (~50 KB each), so a long grid or search runs as
successive experiments of at most this many trials: driver memory stays bounded at any sweep size."""


def run_trials(run: TrialRun, trials: list[AnySpec], stop_after_evals: int | None = None, label: str = "trials",
               searcher: RecipeTPESearcher | None = None, asha: ASHA | None = None, num_searched: int = 0) -> list[str]:
    """Run `trials` on Tune, largest first so the long runs do not straggle at the end.

    ``stop_after_evals`` pauses every proxy after that many evaluations (an early-stopping round); targets
    train to the end unless ``asha`` stops them. A ``searcher`` hands out the proxies and then proposes targets
    (``num_searched`` more trials, for the progress bar).
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0, Tune prints nothing over our progress bar
    # Tune's JSON/CSV/TensorBoard loggers keep state for every finished trial in the driver; the store already
    # keeps one file per trial, so thousands of trials run in flat driver memory without them.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Tune snapshots its experiment state (every trial's config and status, as JSON) at least every 10 s; raysweep
    # resumes from its store, not from that snapshot, which took a sixth of the driver's time on short trials.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(EXPERIMENT_SNAPSHOT_S))
    # ...and the result grid Tune builds at the end then finds no metrics files: raysweep reads the store instead.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # A failed trial's stack goes to its error file, which the launch names with the cause: not to the terminal.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    specs = {t.key: t for t in trials}
    ordered = sorted(trials, key=lambda t: t.num_params * t.num_sequences, reverse=True)
    cluster, run_dir = run.cluster, run.run_dir
    trainable = tune.with_resources(
        tune.with_parameters(_tune_trial, train=run.train, shared=_Shared(ray.put((specs, run.data))), run=run_dir,
                             stop_after_evals=stop_after_evals,
                             compile_model=cluster.compile, stoppable_targets=asha is not None), _trial_resources)
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=run.console) as progress:
        task = progress.add_task(label, total=len(trials) + num_searched)
        recorder = TrialRecorder(specs, run_dir)
        wait = ResourceWait(cluster.wait_for_resources_s, run.console)
        callbacks = [recorder, TrialProgress(progress, task), wait,  # stored before the progress line counts it
                     *tracking_callbacks(cluster.tracking, run_dir.path.name, run_dir.path)]
        name = f"{run_dir.path.name}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', label)}"  # the dashboard's experiment name
        if searcher:
            number = 0
            while not wait.stalled and searcher.next_experiment(TRIALS_PER_EXPERIMENT):
                number += 1
                _fit(trainable, {}, searcher, asha, callbacks, wait.stopper, cluster, run_dir, f"{name}-{number}")
        else:
            for start in range(0, len(ordered), TRIALS_PER_EXPERIMENT):
                if wait.stalled:
                    break
                chunk = ordered[start:start + TRIALS_PER_EXPERIMENT]
                _fit(trainable, {"trial": tune.grid_search([run.entry(t) for t in chunk])}, None, asha,
                     callbacks, wait.stopper, cluster, run_dir, f"{name}-{start // TRIALS_PER_EXPERIMENT + 1}")
    if wait.stalled:
        raise ClusterError(f"wait_for_resources_s: stopped after {wait.stalled}. What was stored is kept: relaunch "
                           "when the cluster has room, or ask for less under resources: in the cluster profile")
    return recorder.errors


def _fit(trainable, param_space: dict, searcher: RecipeTPESearcher | None, asha: ASHA | None,
         callbacks: list[tune.Callback], stopper: tune.Stopper, cluster: ClusterConfig, run: store.RunDir,
         name: str) -> None:
    """One Tune experiment, ``tune/<name>/``: the grid of ``param_space``, or the trials ``searcher`` hands out."""
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        # no metric/mode: Tune would reject the results of diverged runs, which carry no loss
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1 if searcher else 1,
                                    scheduler=PerRecipeASHA(asha) if asha else None,
                                    max_concurrent_trials=cluster.max_concurrent_trials, reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=lambda t: t.trial_id),
        # A copy: Tune appends its own progress callback to the list it is given, and that callback holds every
        # trial it saw; handed on to the next experiment, it would keep every trial of the launch in the driver.
        run_config=tune.RunConfig(name=name, storage_path=str(run.path / "tune"), verbose=0,
                                  callbacks=list(callbacks), stop=stopper,
                                  failure_config=tune.FailureConfig(max_failures=cluster.trial_retries)),
    )
    try:
        tuner.fit()
    except (EOFError, pickle.UnpicklingError) as err:  # what Tune raises reading back a trial's error file that a
        # full disk left empty or cut short
        raise OSError(errno.ENOSPC, f"Tune's own files are truncated ({err}): is the storage full?",
                      str(run.path / "tune")) from None
