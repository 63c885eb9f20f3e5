"""Plan a sweep's trials and run the unfinished ones on Ray Tune.

``plan_trials`` expands a sweep file into trial specs: the proxy grid (recipe × proxy model × learning
rate × seed) and, per recipe, the target grid (learning rate × batch size × weight decay × seed), unless a
TPE searcher proposes the targets during the run (``raysweep.target_search``). ``launch`` skips every trial
whose result is already stored, builds the shards the rest need with Ray Data, and runs them on Tune, in
experiments of at most ``TRIALS_PER_EXPERIMENT`` trials (with ``proxy.early_stop``, per round of evaluations
too); each trial stores its own rows when it ends and checkpoints after every evaluation, so an interrupted
launch resumes where it stopped::

    cluster, sweep = load_cluster("cluster/local.yaml"), load_sweep("search_spaces/demo.yaml")
    outcome = launch(cluster, sweep, console)     # trains what is missing; a second call trains nothing
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ray
import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ray import tune

from raysweep import store
from raysweep.config import (ASHA, ClusterConfig, ConfigError, RandomFeatureSweep, RayConfig, SweepConfig, TPESearch,
                             content_hash)
from raysweep.early_stop import losses_at, saved_flops, settle_check
from raysweep.models import count_parameters, resolve_model
from raysweep.recipes.build import build_shards, read_manifest, recipe_components, shard_key, validation_components
from raysweep.recipes.streams import describe
from raysweep.recipes.tokenizer import load_tokenizer
from raysweep.report_records import LANGUAGE_MODEL, RANDOM_FEATURES
from raysweep.rf_trials import RFTrialSpec, plan_rf_trials, run_rf_trial
from raysweep.target_search import PerRecipeASHA, RecipeTPESearcher, TrialEntry
from raysweep.tiny_lr import check_precision, precision_floor_lr
from raysweep.train import Evaluation, TrialData, TrialResult, TrialSpec, eval_steps, train


@dataclass(frozen=True)
class LaunchOutcome:
    run_dir: Path
    num_planned: int
    num_trained: int
    errors: list[str]
    """One line per trial that raised after its retries: its name, cause and traceback file."""


def run_dir_of(cluster: ClusterConfig, sweep: SweepConfig) -> Path:
    return Path(cluster.storage).absolute() / sweep.name


def _validation_key(sweep: SweepConfig) -> str:
    streams = {domain: describe(c[0].stream) for domain, c in validation_components(sweep).items()}
    shares = [sweep.validation.token_shares] if sweep.validation.token_shares else []  # none: the keys as before
    return content_hash(streams, sweep.tokenizer, sweep.seq_len, *shares)


@dataclass(frozen=True)
class TrialFactory:
    """Builds one sweep's trial specs; what they share (content keys, parameter counts) is computed once. Plain
    data, so a searcher holding it pickles into Tune's experiment state."""

    sweep: SweepConfig
    recipe_keys: dict[str, str]
    validation_key: str
    num_params: dict[str, int]
    vocab_size: int
    eos_id: int

    def spec(self, role: str, recipe: str, model: str, lr: float, batch_size: int, weight_decay: float,
             seed: int) -> TrialSpec:
        sweep = self.sweep
        grid = sweep.proxy if role == "proxy" else sweep.target
        num_steps = math.floor(grid.tokens_per_param * self.num_params[model] / (batch_size * sweep.seq_len))
        if num_steps < 1:
            raise ConfigError(sweep.name, [(f"{role}.tokens_per_param", f"{model} at batch size {batch_size} "
                                                                         "trains for 0 steps; raise tokens_per_param")])
        return TrialSpec(
            role=role, recipe=recipe, recipe_key=self.recipe_keys[recipe], validation_key=self.validation_key,
            model=model, model_spec=resolve_model(model, sweep.models), num_params=self.num_params[model], lr=lr,
            batch_size=batch_size, weight_decay=weight_decay, seed=seed, num_steps=num_steps, seq_len=sweep.seq_len,
            vocab_size=self.vocab_size, eos_id=self.eos_id, schedule=sweep.training.schedule,
            grad_clip=sweep.training.grad_clip, num_evals=sweep.training.num_evals,
            param_dtype=sweep.training.param_dtype, autocast=grid.autocast,
            alignment_every=sweep.proxy.alignment_every if role == "proxy" else 0,
            aggregate=sweep.validation.aggregate)

    def target(self, recipe: str, lr: float, batch_size: int, weight_decay: float, seed: int) -> TrialSpec:
        """A target trial of ``recipe``: what a target searcher builds from the configurations it proposes."""
        return self.spec("target", recipe, self.sweep.target.model, lr, batch_size, weight_decay, seed)


def trial_factory(sweep: SweepConfig) -> TrialFactory:
    """Refuses learning rates below the precision floor of the weights before anything is built or trained."""
    proxy, target = sweep.proxy, sweep.target
    refused = [(f"{role}.lrs[{i}]", message) for role, lrs in (("proxy", proxy.lrs), ("target", target.lrs))
               for i, lr in enumerate(lrs)
               if (message := check_precision(lr, getattr(torch, sweep.training.param_dtype)))]
    if refused:
        raise ConfigError(sweep.name, refused)
    tokenizer = load_tokenizer(sweep.tokenizer)
    recipe_keys = {recipe.name: shard_key(recipe_components(recipe, sweep), sweep.tokenizer, sweep.seq_len,
                                          recipe.epochs)
                   for recipe in sweep.recipes}  # fingerprints file sources once per recipe
    num_params = {model: count_parameters(resolve_model(model, sweep.models), tokenizer.vocab_size, sweep.seq_len,
                                          tokenizer.eos_id)
                  for model in {*proxy.models, target.model}}
    return TrialFactory(sweep, recipe_keys, _validation_key(sweep), num_params, tokenizer.vocab_size,
                        tokenizer.eos_id)


def plan_trials(sweep: SweepConfig, factory: TrialFactory | None = None) -> list[TrialSpec]:
    """Every trial the sweep asks for, in a stable order: proxies first, then targets. With a TPE target search
    the targets are proposed during the run: only the proxies are planned."""
    factory = factory or trial_factory(sweep)
    proxy, target = sweep.proxy, sweep.target
    proxies = [factory.spec("proxy", recipe.name, model, lr, proxy.batch_size, proxy.weight_decay, seed)
               for recipe in sweep.recipes for model in proxy.models for lr in proxy.lrs for seed in proxy.seeds]
    if isinstance(target.search, TPESearch):
        return proxies
    targets = [factory.target(recipe.name, lr, batch_size, weight_decay, seed)
               for recipe in sweep.recipes for lr in target.lrs for batch_size in target.batch_sizes
               for weight_decay in target.weight_decays for seed in target.seeds]
    return proxies + targets


def _largest_targets(sweep: SweepConfig, factory: TrialFactory, recipes: list[str]) -> list[TrialSpec]:
    """One target per recipe and batch size, whatever its lr: what a searcher's targets need from the shards
    (a 0-step budget is refused here, before the run)."""
    target = sweep.target
    return [factory.target(recipe, max(target.lrs), batch_size, target.weight_decays[0], target.seeds[0])
            for recipe in recipes for batch_size in target.batch_sizes]


def build_data(sweep: SweepConfig, trials: list[TrialSpec], shards_root: Path) -> dict[str, TrialData]:
    """Shards for every recipe the trials use (sized for the largest of them) and for validation."""
    validation_sequences = sweep.validation.sequences_per_domain(sweep.seq_len)
    validation = {domain: build_shards(f"validation-{domain}", components, sweep.tokenizer, sweep.seq_len,
                                       validation_sequences[domain], shards_root)
                  for domain, components in validation_components(sweep).items()}
    validation_dirs = {domain: shards.path for domain, shards in validation.items()}
    bytes_per_token = {domain: read_manifest(shards.path)["bytes_per_token"] for domain, shards in validation.items()}
    data = {}
    for recipe in sweep.recipes:
        needed = [t for t in trials if t.recipe == recipe.name]
        if needed:
            shards = build_shards(recipe.name, recipe_components(recipe, sweep), sweep.tokenizer, sweep.seq_len,
                                  max(t.num_sequences for t in needed), shards_root, epochs=recipe.epochs,
                                  key=needed[0].recipe_key)
            data[recipe.name] = TrialData(shards.path, validation_dirs, validation_sequences, bytes_per_token)
    return data


def start_ray(config: RayConfig, console: Console) -> None:
    """Embedded Ray with explicit resources, or join an existing cluster; print where its dashboard is."""
    if ray.is_initialized():
        return
    if config.address is None:
        port = _free_port(config.dashboard_host, config.dashboard_port)
        if port != config.dashboard_port:
            console.print(f"[yellow]port {config.dashboard_port} is taken (another Ray on this machine?); the "
                          f"dashboard uses {port}[/yellow]")
        # "local": a new Ray of our own, even when `ray start` left a cluster running on this machine
        context = ray.init(address="local", num_cpus=config.num_cpus, num_gpus=config.num_gpus,
                           include_dashboard=True, dashboard_host=config.dashboard_host, dashboard_port=port,
                           logging_level="warning", log_to_driver=False)
    else:
        context = ray.init(address=config.address, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the launch shows its own progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if context.dashboard_url:
        console.print(f"Ray dashboard: [bold]http://{context.dashboard_url}[/bold]  "
                      "(token authentication: `ray get-auth-token` prints the token it asks for)")


def _free_port(host: str, preferred: int) -> int:
    """``preferred`` if nothing listens there, else a port the system picks (Ray would fail to start)."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
                return probe.getsockname()[1]
            except OSError:
                continue
    raise OSError(f"no free port on {host}")


def launch(cluster: ClusterConfig, sweep: SweepConfig | RandomFeatureSweep, console: Console,
           target_recipes: list[str] | None = None) -> LaunchOutcome:
    """Train what is not stored yet; ``target_recipes`` limits the targets to those recipes (select mode)."""
    run_dir = run_dir_of(cluster, sweep)
    results_dir = run_dir / "results"
    done, corrupt = store.finished_keys(results_dir)
    for line in corrupt:
        console.print(f"[yellow]corrupt result:[/yellow] {line}")
    searcher, sizing = None, []
    if isinstance(sweep, RandomFeatureSweep):
        trials = plan_rf_trials(sweep)
    else:
        factory = trial_factory(sweep)
        shortlist = [r.name for r in sweep.recipes if target_recipes is None or r.name in target_recipes]
        trials = [t for t in plan_trials(sweep, factory) if t.role == "proxy" or t.recipe in shortlist]
        if isinstance(sweep.target.search, TPESearch) and shortlist:
            proxies = [t for t in trials if t.key not in done]
            searcher = RecipeTPESearcher(sweep.target.search, sweep.target, shortlist, factory.target, results_dir,
                                         run_dir / "studies", proxies, trial_entry(cluster))
            sizing = _largest_targets(sweep, factory, shortlist)
    # a report or status of a partial run says what is missing
    planned_keys = _write_plan(run_dir, cluster, sweep, trials, searcher)
    todo = [t for t in trials if t.key not in done]
    num_planned = len(trials) + (searcher.num_trials if searcher else 0)
    stored = sum(len(done.intersection(keys)) for keys in planned_keys.values())
    console.print(f"[bold]{sweep.name}[/bold]: {num_planned} trials planned, {stored} already stored in "
                  f"{results_dir}")
    if not todo and (searcher is None or searcher.finished):
        return LaunchOutcome(run_dir, num_planned, 0, [])
    start_ray(cluster.ray, console)
    data = {}
    if isinstance(sweep, SweepConfig):
        with console.status("Building recipe shards with Ray Data (cached: a relaunch reuses them)"):
            data = build_data(sweep, todo + sizing, Path(cluster.storage).absolute() / "shards")
    asha = sweep.target.asha if isinstance(sweep, SweepConfig) else None
    if isinstance(sweep, SweepConfig) and sweep.proxy.early_stop and any(t.role == "proxy" for t in todo):
        errors = _run_in_rounds(cluster, sweep, trials, todo, data, results_dir, console, searcher)
    else:
        errors = run_trials(cluster, todo, data, results_dir, console, searcher=searcher, asha=asha,
                            num_searched=num_planned - stored - len(todo))
    if searcher:
        _write_plan(run_dir, cluster, sweep, trials, searcher)  # now with the targets the search proposed
    return LaunchOutcome(run_dir, num_planned, len(store.finished_keys(results_dir)[0] - done), errors)


def trial_entry(cluster: ClusterConfig) -> TrialEntry:
    resources = cluster.resources
    return TrialEntry((resources.proxy.cpu, resources.proxy.gpu), (resources.target.cpu, resources.target.gpu))


def _write_plan(run_dir: Path, cluster: ClusterConfig, sweep: SweepConfig | RandomFeatureSweep,
                trials: list[TrialSpec], searcher: RecipeTPESearcher | None) -> dict[str, list[str]]:
    """Write ``plan.json``; the trial keys it plans per role (a search's targets: those proposed so far)."""
    rf = isinstance(sweep, RandomFeatureSweep)
    keys = {role: [t.key for t in trials if t.role == role] for role in ("proxy", "target")}
    if searcher:
        keys["target"] = searcher.target_keys()
    store.write_plan(run_dir, {
        "family": RANDOM_FEATURES if rf else LANGUAGE_MODEL,
        "recipes": list(dict.fromkeys(t.recipe for t in trials)) if rf else [r.name for r in sweep.recipes],
        "trial_keys": keys,
        # a search proposes its targets as it goes: the keys so far, out of this many
        "num_planned": {role: searcher.num_trials if searcher and role == "target" else len(role_keys)
                        for role, role_keys in keys.items()},
        "standard_lr": max(sweep.random_features.lrs) if rf else sweep.proxy.standard_lr or max(sweep.proxy.lrs),
        "precision_floor_lr": None if rf else precision_floor_lr(getattr(torch, sweep.training.param_dtype)),
        "gpus_per_trial": ({"proxy": 0.0, "target": 0.0} if rf else
                           {"proxy": cluster.resources.proxy.gpu, "target": cluster.resources.target.gpu}),
        "max_concurrent_trials": cluster.max_concurrent_trials})
    return keys


def _run_in_rounds(cluster: ClusterConfig, sweep: SweepConfig, trials: list[TrialSpec], todo: list[TrialSpec],
                   data: dict[str, TrialData], results_dir: Path, console: Console,
                   searcher: RecipeTPESearcher | None) -> list[str]:
    """Proxies train one evaluation interval per round (targets all in the first); after each round, every proxy
    setting whose ranking has settled stops there, its runs stored as "stopped" (``raysweep.early_stop``)."""
    rule, num_rounds = sweep.proxy.early_stop, sweep.training.num_evals
    recipes, seeds = [r.name for r in sweep.recipes], sweep.proxy.seeds
    settings: dict[tuple[str, float], list[list[TrialSpec]]] = {}
    for t in trials:
        if t.role == "proxy":
            grid = settings.setdefault((t.model, t.lr), [[None] * len(seeds) for _ in recipes])
            grid[recipes.index(t.recipe)][seeds.index(t.seed)] = t
    waiting = {t.key for t in todo if t.role == "proxy"}
    errors: list[str] = []
    saved = 0.0
    for round_index in range(1, num_rounds + 1):
        batch = [t for t in todo if t.key in waiting or (round_index == 1 and t.role == "target")]
        last = round_index == num_rounds
        first = round_index == 1
        errors += run_trials(cluster, batch, data, results_dir, console, stop_after_evals=None if last else round_index,
                             label=f"round {round_index}/{num_rounds}", searcher=searcher if first else None,
                             asha=sweep.target.asha if first else None,
                             num_searched=searcher.num_trials if searcher and first else 0)
        waiting = {t.key for t in batch if t.key in waiting and store.read_partial(results_dir, t)}  # paused
        for (model, lr), grid in settings.items():
            pending = [t for row in grid for t in row if t.key in waiting]
            if not pending or round_index < 2:
                continue
            curves = [[_loss_curve(results_dir, t) for t in row] for row in grid]
            previous, current = losses_at(curves, round_index - 2), losses_at(curves, round_index - 1)
            if previous is None or current is None:
                continue
            check = settle_check(model, lr, round_index, previous, current, rule)
            point, low, high = check.spearman
            console.print(f"  {model} @ lr {lr:g}: ranking at checkpoint {round_index} vs {round_index - 1}: "
                          f"Spearman {point:.2f} [{low:.2f}, {high:.2f}]"
                          + (f" ≥ {rule.min_spearman:g}: settled, {len(pending)} run(s) stop here" if check.settled
                             else ""))
            if check.settled:
                for spec in pending:
                    saved += _stop(results_dir, spec)
                    waiting.discard(spec.key)
        if not waiting:
            break
    planned = sum(saved_flops(t.num_params, t.num_steps, t.batch_size * t.seq_len)
                  for t in todo if t.role == "proxy")
    if saved:
        console.print(f"Early stop saved {saved:.3g} FLOPs: {saved / planned:.0%} of the proxy compute planned "
                      "for this launch.")
    return errors


def _loss_curve(results_dir: Path, spec: TrialSpec) -> list[float]:
    """The "all" loss at each evaluation a proxy has reached: stored whole, paused, or nothing yet."""
    partial = store.read_partial(results_dir, spec)
    if partial:
        return [e.losses["all"] for e in partial.evaluations]
    return store.read_trial_losses(results_dir, spec.key)


def _stop(results_dir: Path, spec: TrialSpec) -> float:
    """Store a paused proxy as "stopped" with its evaluations so far; drop its checkpoint; the FLOPs it saved."""
    partial = store.read_partial(results_dir, spec)
    store.write_trial(results_dir, dataclasses.replace(partial, status="stopped"))
    store.checkpoint_path(results_dir, spec.key).unlink(missing_ok=True)
    return saved_flops(spec.num_params, spec.num_steps - partial.evaluations[-1].step, spec.batch_size * spec.seq_len)


def _spec_of(config: dict, specs: dict[str, TrialSpec]) -> TrialSpec:
    """A trial's spec: planned ones by their key; a searcher's targets carry theirs, since they do not exist
    when the experiment starts."""
    return config["spec"] if "spec" in config else specs[config["trial"]["key"]]


def _trial_name(trial) -> str:
    """Module-level, like ``_trial_resources``: Tune pickles both into every trial's state, so a closure over
    the specs would copy all of them per trial."""
    return trial.config["trial"]["name"]


def _trial_resources(config: dict) -> tune.PlacementGroupFactory:
    entry = config["trial"]
    return tune.PlacementGroupFactory([{"CPU": entry["cpu"], **({"GPU": entry["gpu"]} if entry["gpu"] else {})}])


def _tune_trial(config: dict, specs: dict[str, TrialSpec], data: dict[str, TrialData], results_dir: str,
                stop_after_evals: int | None, compile_model: bool, stoppable_targets: bool) -> None:
    """The Tune function trainable: train the trial's spec (from its checkpoint, if a killed run left one),
    report each evaluation, and store the rows at the end; a proxy paused for an early-stopping round stores its
    evaluations so far instead. A target that ASHA may stop (``stoppable_targets``) records its evaluations
    before each report, since a stopped trial never returns from it."""
    import transformers

    transformers.logging.set_verbosity_error()
    spec = _spec_of(config, specs)
    store.mark_started(Path(results_dir), spec)
    if isinstance(spec, RFTrialSpec):
        result = run_rf_trial(spec)  # milliseconds: report once, at the end
        _report_to_tune(spec, result.evaluations[-1])
        store.write_trial(Path(results_dir), result)
        return
    gpu_share = config["trial"]["gpu"]  # what the trial's placement group holds
    if torch.cuda.is_available() and 0 < gpu_share < 1:
        # Trials packed on one GPU each keep to their share, so one cannot starve the others of memory.
        torch.cuda.set_per_process_memory_fraction(gpu_share)
    checkpoint = store.checkpoint_path(Path(results_dir), spec.key)
    report = (_recording_report(spec, Path(results_dir)) if stoppable_targets and spec.role == "target"
              else lambda evaluation: _report_to_tune(spec, evaluation))
    result = train(spec, data[spec.recipe], report=report, checkpoint=checkpoint,
                   stop_after_evals=stop_after_evals if spec.role == "proxy" else None, compile_model=compile_model)
    if result.status == "partial":
        store.write_partial(Path(results_dir), result)
    else:
        store.write_trial(Path(results_dir), result)
        checkpoint.unlink(missing_ok=True)


def _recording_report(spec: TrialSpec, results_dir: Path) -> Callable[[Evaluation], None]:
    """Report to Tune after storing the evaluations so far as a partial record (a resumed run starts from the
    record its earlier attempt left), so that a trial ASHA stops inside the report keeps its rows."""
    earlier = store.read_partial(results_dir, spec) or TrialResult(spec, "partial")
    evaluations = list(earlier.evaluations)
    start = time.perf_counter()

    def report(evaluation: Evaluation) -> None:
        if math.isfinite(evaluation.losses["all"]):
            evaluations.append(evaluation)
            store.write_partial(results_dir, TrialResult(spec, "partial", list(evaluations),
                                                         earlier.wall_s + time.perf_counter() - start))
        _report_to_tune(spec, evaluation)

    return report


def _report_to_tune(spec: TrialSpec | RFTrialSpec, evaluation: Evaluation) -> None:
    """Progress for Tune, its schedulers and its dashboard: ``evaluation`` counts the evaluations reached (ASHA's
    time axis); a diverged run's infinite loss is left out (the store keeps it)."""
    loss = evaluation.losses["all"]
    finite = {"loss": loss} if math.isfinite(loss) else {}
    reached = sum(step <= evaluation.step for step in eval_steps(spec.num_steps, spec.num_evals))
    tune.report({"evaluation": reached, "step": evaluation.step, "tokens": evaluation.tokens, **finite})


LOG_EVERY_S = 60.0
"""How often a launch whose output is not a terminal (a Ray Job's log, ``make demo > log``) prints a progress line:
Rich draws its bar only on a terminal."""


class _TrialProgress(tune.Callback):
    """Advances a Rich progress bar on Tune's trial events (Tune's own status table is turned off), or prints a
    progress line now and then where no terminal shows the bar; records each trial that still fails after its
    retries, with its cause, so the sweep goes on without it."""

    def __init__(self, progress: Progress, task: TaskID, specs: dict[str, TrialSpec], results_dir: Path):
        self.progress, self.task, self.specs, self.results_dir = progress, task, specs, results_dir
        self.errors: list[str] = []
        self.last_line = time.monotonic()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; a live terminal display is not state.
        return {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        spec = _spec_of(trial.config, self.specs)
        stopped = (spec.role == "target" and store.read_partial(self.results_dir, spec)
                   and not store.read_trial_losses(self.results_dir, spec.key))
        if stopped:  # ASHA stopped it: its evaluations so far become its rows (proxies pause between rounds)
            _stop(self.results_dir, spec)
        self._advance()

    def on_trial_error(self, iteration, trials, trial, **info):
        spec = _spec_of(trial.config, self.specs)
        error_file = Path(trial.error_file) if trial.error_file else None
        lines = error_file.read_text().strip().splitlines() if error_file and error_file.is_file() else []
        cause = lines[-1] if lines else "no error recorded"
        store.write_failure(self.results_dir, spec, cause)
        self.errors.append(f"{spec.name}: {cause} (traceback: {error_file or 'none'})")
        self._advance()

    def _advance(self) -> None:
        self.progress.advance(self.task)
        if self.progress.console.is_terminal or time.monotonic() - self.last_line < LOG_EVERY_S:
            return
        self.last_line = time.monotonic()
        task = next(task for task in self.progress.tasks if task.id == self.task)
        eta = "unknown" if task.time_remaining is None else _duration(task.time_remaining)
        self.progress.console.print(f"{task.description}: {task.completed:.0f}/{task.total:.0f} done, "
                                    f"{len(self.errors)} failed, {_duration(task.elapsed or 0)} elapsed, eta {eta}",
                                    markup=False, highlight=False)


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


TRIALS_PER_EXPERIMENT = 1000
"""Tune keeps every finished trial of an experiment in the driver (~50 KB each), so a long grid or search runs as
successive experiments of at most this many trials: driver memory stays bounded at any sweep size."""


def run_trials(cluster: ClusterConfig, trials: list[TrialSpec], data: dict[str, TrialData], results_dir: Path,
               console: Console, stop_after_evals: int | None = None, label: str = "trials",
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
    # ...and the result grid Tune builds at the end then finds no metrics files: raysweep reads the store instead.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    specs = {t.key: t for t in trials}
    ordered = sorted(trials, key=lambda t: t.num_params * t.num_sequences, reverse=True)

    trainable = tune.with_resources(
        tune.with_parameters(_tune_trial, specs=specs, data=data, results_dir=str(results_dir),
                             stop_after_evals=stop_after_evals,
                             compile_model=cluster.compile, stoppable_targets=asha is not None), _trial_resources)
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    entry = trial_entry(cluster)
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=len(trials) + num_searched)
        callback = _TrialProgress(progress, task, specs, results_dir)
        if searcher:
            while searcher.next_experiment(TRIALS_PER_EXPERIMENT):
                _fit(trainable, {}, searcher, asha, callback, cluster, results_dir)
        else:
            for start in range(0, len(ordered), TRIALS_PER_EXPERIMENT):
                chunk = ordered[start:start + TRIALS_PER_EXPERIMENT]
                _fit(trainable, {"trial": tune.grid_search([entry(t) for t in chunk])}, None, asha, callback,
                     cluster, results_dir)
    return callback.errors


def _fit(trainable, param_space: dict, searcher: RecipeTPESearcher | None, asha: ASHA | None,
         callback: _TrialProgress, cluster: ClusterConfig, results_dir: Path) -> None:
    """One Tune experiment: the grid of ``param_space``, or the trials ``searcher`` hands out."""
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        # no metric/mode: Tune would reject the results of diverged runs, which carry no loss
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1 if searcher else 1,
                                    scheduler=PerRecipeASHA(asha) if asha else None,
                                    max_concurrent_trials=cluster.max_concurrent_trials, reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(name="tune", storage_path=str(results_dir.parent), verbose=0, callbacks=[callback],
                                  failure_config=tune.FailureConfig(max_failures=cluster.trial_retries)),
    )
    tuner.fit()
