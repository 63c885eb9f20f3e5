"""Plan a sweep's trials and run the unfinished ones on Ray Tune.

``plan_trials`` expands a sweep file into trial specs: the proxy grid (recipe × proxy model × learning
rate × seed) and, per recipe, the target grid (learning rate × batch size × weight decay × seed).
``launch`` skips every trial whose result is already stored, builds the shards the rest need with Ray
Data, and runs them as one Tune experiment; each trial stores its own rows when it ends, so an
interrupted launch loses only the trials in flight::

    cluster, sweep = load_cluster("cluster/local.yaml"), load_sweep("search_spaces/demo.yaml")
    outcome = launch(cluster, sweep, console)     # trains what is missing; a second call trains nothing
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ray import tune

from raysweep import store
from raysweep.config import (ClusterConfig, ConfigError, RandomFeatureSweep, RayConfig, Recipe, SweepConfig,
                             content_hash)
from raysweep.models import count_parameters, resolve_model
from raysweep.recipes.build import build_shards, read_manifest, recipe_components, shard_key, validation_components
from raysweep.recipes.streams import describe
from raysweep.recipes.tokenizer import load_tokenizer
from raysweep.rf_trials import RFTrialSpec, plan_rf_trials, run_rf_trial
from raysweep.tiny_lr import check_precision
from raysweep.early_stop import losses_at, saved_flops, settle_check
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
    return content_hash(streams, sweep.tokenizer, sweep.seq_len)


def plan_trials(sweep: SweepConfig) -> list[TrialSpec]:
    """Every trial the sweep asks for, in a stable order: proxies first, then targets."""
    tokenizer = load_tokenizer(sweep.tokenizer)
    validation_key = _validation_key(sweep)
    recipe_keys = {recipe.name: shard_key(recipe_components(recipe, sweep), sweep.tokenizer, sweep.seq_len,
                                          recipe.epochs)
                   for recipe in sweep.recipes}  # fingerprints file sources once per recipe
    sizes: dict[str, int] = {}

    def num_params(model: str) -> int:
        if model not in sizes:
            sizes[model] = count_parameters(resolve_model(model, sweep.models), tokenizer.vocab_size,
                                            sweep.seq_len, tokenizer.eos_id)
        return sizes[model]

    def spec(role: str, recipe: Recipe, model: str, lr: float, batch_size: int, weight_decay: float, seed: int,
             tokens_per_param: float, where: str, autocast: str, alignment_every: int = 0) -> TrialSpec:
        num_steps = math.floor(tokens_per_param * num_params(model) / (batch_size * sweep.seq_len))
        if num_steps < 1:
            raise ConfigError(sweep.name, [(where, f"{model} at batch size {batch_size} trains for 0 steps; "
                                                "raise tokens_per_param")])
        return TrialSpec(
            role=role, recipe=recipe.name,
            recipe_key=recipe_keys[recipe.name],
            validation_key=validation_key, model=model, model_spec=resolve_model(model, sweep.models),
            num_params=num_params(model), lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed,
            num_steps=num_steps, seq_len=sweep.seq_len, vocab_size=tokenizer.vocab_size, eos_id=tokenizer.eos_id,
            schedule=sweep.training.schedule, grad_clip=sweep.training.grad_clip, num_evals=sweep.training.num_evals,
            param_dtype=sweep.training.param_dtype, autocast=autocast, alignment_every=alignment_every)

    proxy, target = sweep.proxy, sweep.target
    refused = [(f"{role}.lrs[{i}]", message) for role, lrs in (("proxy", proxy.lrs), ("target", target.lrs))
               for i, lr in enumerate(lrs)
               if (message := check_precision(lr, getattr(torch, sweep.training.param_dtype)))]
    if refused:
        raise ConfigError(sweep.name, refused)
    proxies = [spec("proxy", recipe, model, lr, proxy.batch_size, proxy.weight_decay, seed, proxy.tokens_per_param,
                    "proxy.tokens_per_param", proxy.autocast, proxy.alignment_every)
               for recipe in sweep.recipes for model in proxy.models for lr in proxy.lrs for seed in proxy.seeds]
    targets = [spec("target", recipe, target.model, lr, batch_size, weight_decay, seed, target.tokens_per_param,
                    "target.tokens_per_param", target.autocast)
               for recipe in sweep.recipes for lr in target.lrs for batch_size in target.batch_sizes
               for weight_decay in target.weight_decays for seed in target.seeds]
    return proxies + targets


def build_data(sweep: SweepConfig, trials: list[TrialSpec], shards_root: Path) -> dict[str, TrialData]:
    """Shards for every recipe the trials use (sized for the largest of them) and for validation."""
    validation_sequences = math.ceil(sweep.validation.num_tokens / sweep.seq_len)
    validation = {domain: build_shards(f"validation-{domain}", components, sweep.tokenizer, sweep.seq_len,
                                       validation_sequences, shards_root)
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
        # "local": a new Ray of our own, even when `ray start` left a cluster running on this machine
        context = ray.init(address="local", num_cpus=config.num_cpus, num_gpus=config.num_gpus,
                           include_dashboard=True, dashboard_host=config.dashboard_host,
                           dashboard_port=config.dashboard_port, logging_level="warning", log_to_driver=False)
    else:
        context = ray.init(address=config.address, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the launch shows its own progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if context.dashboard_url:
        console.print(f"Ray dashboard: [bold]http://{context.dashboard_url}[/bold]  "
                      "(token authentication: `ray get-auth-token` prints the token it asks for)")


def launch(cluster: ClusterConfig, sweep: SweepConfig | RandomFeatureSweep, console: Console,
           target_recipes: list[str] | None = None) -> LaunchOutcome:
    """Train what is not stored yet; ``target_recipes`` limits the targets to those recipes (select mode)."""
    run_dir = run_dir_of(cluster, sweep)
    results_dir = run_dir / "results"
    if isinstance(sweep, RandomFeatureSweep):
        trials = plan_rf_trials(sweep)
        recipes, standard_lr = list(dict.fromkeys(t.recipe for t in trials)), max(sweep.random_features.lrs)
    else:
        trials = [t for t in plan_trials(sweep)
                  if t.role == "proxy" or target_recipes is None or t.recipe in target_recipes]
        recipes, standard_lr = [r.name for r in sweep.recipes], sweep.proxy.standard_lr or max(sweep.proxy.lrs)
    plan = {"family": "random_features" if isinstance(sweep, RandomFeatureSweep) else "language_model",
            "recipes": recipes,
            "trial_keys": {role: [t.key for t in trials if t.role == role] for role in ("proxy", "target")},
            "standard_lr": standard_lr,
            "gpus_per_trial": ({"proxy": cluster.resources.proxy.gpu, "target": cluster.resources.target.gpu}
                               if isinstance(sweep, SweepConfig) else {"proxy": 0.0, "target": 0.0}),
            "max_concurrent_trials": cluster.max_concurrent_trials}
    store.write_plan(run_dir, plan)  # lets a report or status of a partial run say what is missing
    done, corrupt = store.finished_keys(results_dir)
    for line in corrupt:
        console.print(f"[yellow]corrupt result:[/yellow] {line}")
    todo = [t for t in trials if t.key not in done]
    console.print(f"[bold]{sweep.name}[/bold]: {len(trials)} trials planned, {len(trials) - len(todo)} already "
                  f"stored in {results_dir}")
    if not todo:
        return LaunchOutcome(run_dir, len(trials), 0, [])
    start_ray(cluster.ray, console)
    data = {}
    if isinstance(sweep, SweepConfig):
        with console.status("Building recipe shards with Ray Data (cached: a relaunch reuses them)"):
            data = build_data(sweep, todo, Path(cluster.storage).absolute() / "shards")
    if isinstance(sweep, SweepConfig) and sweep.proxy.early_stop and any(t.role == "proxy" for t in todo):
        errors = _run_in_rounds(cluster, sweep, trials, todo, data, results_dir, console)
    else:
        errors = run_trials(cluster, todo, data, results_dir, console)
    return LaunchOutcome(run_dir, len(trials), len(todo) - len(errors), errors)


def _run_in_rounds(cluster: ClusterConfig, sweep: SweepConfig, trials: list[TrialSpec], todo: list[TrialSpec],
                   data: dict[str, TrialData], results_dir: Path, console: Console) -> list[str]:
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
        errors += run_trials(cluster, batch, data, results_dir, console, stop_after_evals=None if last else round_index,
                             label=f"round {round_index}/{num_rounds}")
        waiting = {key for key in waiting if store.read_partial(results_dir, key)}  # paused, not stored or failed
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
    partial = store.read_partial(results_dir, spec.key)
    if partial:
        return [e["losses"]["all"] for e in partial["evaluations"]]
    return store.read_trial_losses(results_dir, spec.key)


def _stop(results_dir: Path, spec: TrialSpec) -> float:
    """Store a paused proxy as "stopped" with its evaluations so far; drop its checkpoint; the FLOPs it saved."""
    partial = store.read_partial(results_dir, spec.key)
    evaluations = [Evaluation(**e) for e in partial["evaluations"]]
    store.write_trial(results_dir, TrialResult(spec, "stopped", evaluations, partial["wall_s"]))
    store.checkpoint_path(results_dir, spec.key).unlink(missing_ok=True)
    return saved_flops(spec.num_params, spec.num_steps - evaluations[-1].step, spec.batch_size * spec.seq_len)


def _spec_of(config: dict, specs: dict[str, TrialSpec]) -> TrialSpec:
    """A trial's spec: planned ones by their key (Tune would put objects in ``param_space`` in the object store);
    a searcher's suggestions carry theirs, since they do not exist when the experiment starts."""
    return config["spec"] if "spec" in config else specs[config["trial_key"]]


def _tune_trial(config: dict, specs: dict[str, TrialSpec], data: dict[str, TrialData], results_dir: str,
                stop_after_evals: int | None, gpu_shares: dict[str, float], compile_model: bool) -> None:
    """The Tune function trainable: train the trial's spec (from its checkpoint, if a killed run left one),
    report each evaluation, and store the rows at the end; a proxy paused for an early-stopping round stores its
    evaluations so far instead."""
    import transformers

    transformers.logging.set_verbosity_error()
    spec = _spec_of(config, specs)
    store.mark_started(Path(results_dir), spec)
    if isinstance(spec, RFTrialSpec):
        result = run_rf_trial(spec)  # milliseconds: report once, at the end
        _report_to_tune(spec, result.evaluations[-1])
        store.write_trial(Path(results_dir), result)
        return
    if torch.cuda.is_available() and 0 < gpu_shares[spec.role] < 1:
        # Trials packed on one GPU each keep to their share, so one cannot starve the others of memory.
        torch.cuda.set_per_process_memory_fraction(gpu_shares[spec.role])
    checkpoint = store.checkpoint_path(Path(results_dir), spec.key)
    result = train(spec, data[spec.recipe], report=lambda evaluation: _report_to_tune(spec, evaluation),
                   checkpoint=checkpoint, stop_after_evals=stop_after_evals if spec.role == "proxy" else None,
                   compile_model=compile_model)
    if result.status == "partial":
        store.write_partial(Path(results_dir), result)
    else:
        store.write_trial(Path(results_dir), result)
        checkpoint.unlink(missing_ok=True)


def _report_to_tune(spec: TrialSpec | RFTrialSpec, evaluation: Evaluation) -> None:
    """Progress for Tune, its schedulers and its dashboard: ``evaluation`` counts the evaluations reached (ASHA's
    time axis); a diverged run's infinite loss is left out (the store keeps it)."""
    loss = evaluation.losses["all"]
    finite = {"loss": loss} if math.isfinite(loss) else {}
    reached = sum(step <= evaluation.step for step in eval_steps(spec.num_steps, spec.num_evals))
    tune.report({"evaluation": reached, "step": evaluation.step, "tokens": evaluation.tokens, **finite})


class _TrialProgress(tune.Callback):
    """Advances a Rich progress bar on Tune's trial events (Tune's own status table is turned off), and records
    each trial that still fails after its retries, with its cause, so the sweep goes on without it."""

    def __init__(self, progress: Progress, task: TaskID, specs: dict[str, TrialSpec], results_dir: Path):
        self.progress, self.task, self.specs, self.results_dir = progress, task, specs, results_dir
        self.errors: list[str] = []

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; a live terminal display is not state.
        return {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.progress.advance(self.task)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.advance(self.task)
        spec = _spec_of(trial.config, self.specs)
        error_file = Path(trial.error_file) if trial.error_file else None
        lines = error_file.read_text().strip().splitlines() if error_file and error_file.is_file() else []
        cause = lines[-1] if lines else "no error recorded"
        store.write_failure(self.results_dir, spec, cause)
        self.errors.append(f"{spec.name}: {cause} (traceback: {error_file or 'none'})")


def run_trials(cluster: ClusterConfig, trials: list[TrialSpec], data: dict[str, TrialData], results_dir: Path,
               console: Console, stop_after_evals: int | None = None, label: str = "trials") -> list[str]:
    """Run `trials` as one Tune experiment, largest first so the long runs do not straggle at the end.

    ``stop_after_evals`` pauses every proxy after that many evaluations (an early-stopping round); targets
    always train to the end.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0, Tune prints nothing over our progress bar
    # Tune's JSON/CSV/TensorBoard loggers keep state for every finished trial in the driver; the store already
    # keeps one file per trial, so thousands of trials run in flat driver memory without them.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # ...and the result grid Tune builds at the end then finds no metrics files: raysweep reads the store instead.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    specs = {t.key: t for t in trials}
    ordered = sorted(trials, key=lambda t: t.num_params * t.num_sequences, reverse=True)
    resources = cluster.resources

    def trial_resources(config: dict) -> tune.PlacementGroupFactory:
        spec = _spec_of(config, specs)
        if isinstance(spec, RFTrialSpec):  # numpy on one core, whatever the role
            return tune.PlacementGroupFactory([{"CPU": 1}])
        role = resources.proxy if spec.role == "proxy" else resources.target
        return tune.PlacementGroupFactory([{"CPU": role.cpu, "GPU": role.gpu}])

    trainable = tune.with_resources(
        tune.with_parameters(_tune_trial, specs=specs, data=data, results_dir=str(results_dir),
                             stop_after_evals=stop_after_evals,
                             gpu_shares={"proxy": resources.proxy.gpu, "target": resources.target.gpu},
                             compile_model=cluster.compile), trial_resources)
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("trials", total=len(trials))
        callback = _TrialProgress(progress, task, specs, results_dir)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial_key": tune.grid_search([t.key for t in ordered])},
            tune_config=tune.TuneConfig(max_concurrent_trials=cluster.max_concurrent_trials, reuse_actors=True,
                                        trial_name_creator=lambda t: _spec_of(t.config, specs).name,
                                        trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(name="tune", storage_path=str(results_dir.parent), verbose=0,
                                      callbacks=[callback],
                                      failure_config=tune.FailureConfig(max_failures=cluster.trial_retries)),
        )
        tuner.fit()
    return callback.errors
