"""The language-model family: a sweep file's recipes and grids expanded into trial specs, the recipe shards those
trials read, and one trial trained by ``raysweep.train``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from raysweep.config import ASHA, ClusterConfig, EarlyStop, SweepConfig, TargetGrid, TPESearch
from raysweep.errors import ConfigError
from raysweep.identity import content_hash
from raysweep.models import count_parameters, resolve_model
from raysweep.recipes.build import build_shards, read_manifest, recipe_components, shard_key, validation_components
from raysweep.recipes.streams import describe, iter_documents
from raysweep.recipes.tokenizer import load_tokenizer
from raysweep.tasks.items import interleaved, load_items, subsample
from raysweep.tasks.scoring import EncodedTask, encode_task
from raysweep.tiny_lr import check_precision, precision_floor_lr
from raysweep.train import train
from raysweep.trials import LANGUAGE_MODEL, Evaluation, Role, TrialData, TrialResult, TrialSpec


def _validation_key(sweep: SweepConfig) -> str:
    streams = {domain: describe(c[0].stream) for domain, c in validation_components(sweep).items()}
    shares = [sweep.validation.token_shares] if sweep.validation.token_shares else []  # none: the keys as before
    return content_hash(streams, sweep.tokenizer, sweep.seq_len, *shares)


TASKS_FORMAT = 1
"""Bumped when the scoring of tasks changes, so that stored trials are scored again."""


def _validation_readers(sweep: SweepConfig) -> Callable[[], Iterator[str]]:
    """The held-out documents of every validation domain in turn, as read (the built-in task's text)."""
    readers = [components[0].stream.reader for components in validation_components(sweep).values()]
    return lambda: interleaved([iter_documents(reader) for reader in readers])


def _tasks_key(sweep: SweepConfig, validation_key: str) -> str:
    """What the tasks' scores depend on: each task's settings and items (loaded here, so that a missing or
    malformed file stops the launch before anything trains); "" without tasks, keeping every earlier key."""
    if not sweep.tasks:
        return ""
    described = []
    for task in sweep.tasks:
        settings = {k: v for k, v in dataclasses.asdict(task).items() if k != "path"}
        content = (validation_key if task.preset == "continuation"
                   else [dataclasses.astuple(item) for item in subsample(load_items(task), task.max_items)])
        described.append((settings, content))
    return content_hash(TASKS_FORMAT, described, sweep.tokenizer, sweep.seq_len)


def encode_tasks(sweep: SweepConfig) -> dict[str, EncodedTask]:
    """Every task of the sweep, tokenized once for all its trials."""
    tokenizer = load_tokenizer(sweep.tokenizer)
    documents = _validation_readers(sweep)
    encoded = {}
    for task in sweep.tasks:
        items = load_items(task, documents)
        encoded[task.name] = encode_task(task.name, subsample(items, task.max_items), tokenizer.encode_texts,
                                         sweep.seq_len, tokenizer.eos_id, items_in_task=len(items))
    return encoded


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
    tasks_key: str

    def spec(self, role: Role, recipe: str, model: str, lr: float, batch_size: int, weight_decay: float,
             seed: int) -> TrialSpec:
        sweep = self.sweep
        grid = sweep.proxy if role == Role.PROXY else sweep.target
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
            alignment_every=sweep.proxy.alignment_every if role == Role.PROXY else 0,
            aggregate=sweep.validation.aggregate, tasks_key=self.tasks_key)

    def target(self, recipe: str, lr: float, batch_size: int, weight_decay: float, seed: int) -> TrialSpec:
        """A target trial of ``recipe``: what a target searcher builds from the configurations it proposes."""
        return self.spec(Role.TARGET, recipe, self.sweep.target.model, lr, batch_size, weight_decay, seed)


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
    validation_key = _validation_key(sweep)
    return TrialFactory(sweep, recipe_keys, validation_key, num_params, tokenizer.vocab_size, tokenizer.eos_id,
                        _tasks_key(sweep, validation_key))


def plan_trials(sweep: SweepConfig, factory: TrialFactory | None = None) -> list[TrialSpec]:
    """Every trial the sweep asks for, in a stable order: proxies first, then targets. With a TPE target search
    the targets are proposed during the run: only the proxies are planned."""
    factory = factory or trial_factory(sweep)
    proxy, target = sweep.proxy, sweep.target
    proxies = [factory.spec(Role.PROXY, recipe.name, model, lr, proxy.batch_size, proxy.weight_decay, seed)
               for recipe in sweep.recipes for model in proxy.models for lr in proxy.lrs for seed in proxy.seeds]
    if isinstance(target.search, TPESearch):
        return proxies
    targets = [factory.target(recipe.name, lr, batch_size, weight_decay, seed)
               for recipe in sweep.recipes for lr in target.lrs for batch_size in target.batch_sizes
               for weight_decay in target.weight_decays for seed in target.seeds]
    return proxies + targets


def largest_targets(sweep: SweepConfig, factory: TrialFactory, recipes: list[str]) -> list[TrialSpec]:
    """One target per recipe and batch size, whatever its lr: what a searcher's targets need from the shards
    (a 0-step budget is refused here, before the run)."""
    target = sweep.target
    return [factory.target(recipe, max(target.lrs), batch_size, target.weight_decays[0], target.seeds[0])
            for recipe in recipes for batch_size in target.batch_sizes]


def build_data(sweep: SweepConfig, trials: list[TrialSpec], shards_root: Path) -> dict[str, TrialData]:
    """Shards for every recipe the trials use (sized for the largest of them) and for validation, and the tasks."""
    validation_sequences = sweep.validation.sequences_per_domain(sweep.seq_len)
    validation = {domain: build_shards(f"validation-{domain}", components, sweep.tokenizer, sweep.seq_len,
                                       validation_sequences[domain], shards_root)
                  for domain, components in validation_components(sweep).items()}
    validation_dirs = {domain: shards.path for domain, shards in validation.items()}
    bytes_per_token = {domain: read_manifest(shards.path).bytes_per_token for domain, shards in validation.items()}
    tasks = encode_tasks(sweep)
    data = {}
    for recipe in sweep.recipes:
        needed = [t for t in trials if t.recipe == recipe.name]
        if needed:
            shards = build_shards(recipe.name, recipe_components(recipe, sweep), sweep.tokenizer, sweep.seq_len,
                                  max(t.num_sequences for t in needed), shards_root, epochs=recipe.epochs,
                                  key=needed[0].recipe_key)
            data[recipe.name] = TrialData(shards.path, validation_dirs, validation_sequences, bytes_per_token, tasks)
    return data


class LanguageModelTrials:
    """``raysweep.families.TrialFamily`` for a sweep file of text recipes."""

    family = LANGUAGE_MODEL

    def __init__(self, sweep: SweepConfig, cluster: ClusterConfig):
        self.sweep, self.cluster = sweep, cluster
        self.factory = trial_factory(sweep)

    def plan(self) -> list[TrialSpec]:
        return plan_trials(self.sweep, self.factory)

    @property
    def recipes(self) -> list[str]:
        return [r.name for r in self.sweep.recipes]

    @property
    def standard_lr(self) -> float:
        return self.sweep.proxy.standard_lr or max(self.sweep.proxy.lrs)

    @property
    def precision_floor_lr(self) -> float:
        return precision_floor_lr(getattr(torch, self.sweep.training.param_dtype))

    def resources(self, role: Role) -> tuple[float, float]:
        held = self.cluster.resources.proxy if role == Role.PROXY else self.cluster.resources.target
        return held.cpu, held.gpu

    @property
    def tpe(self) -> tuple[TPESearch, TargetGrid, Callable[..., TrialSpec]] | None:
        """The target search and what it proposes from, when Optuna proposes the targets."""
        search = self.sweep.target.search
        return (search, self.sweep.target, self.factory.target) if isinstance(search, TPESearch) else None

    def largest_targets(self, recipes: list[str]) -> list[TrialSpec]:
        return largest_targets(self.sweep, self.factory, recipes)

    @property
    def asha(self) -> ASHA | None:
        return self.sweep.target.asha

    @property
    def early_stop(self) -> EarlyStop | None:
        return self.sweep.proxy.early_stop

    def prepare(self, trials: list[TrialSpec], shards_root: Path) -> dict[str, TrialData]:
        return build_data(self.sweep, trials, shards_root)

    @staticmethod
    def train(spec: TrialSpec, data: dict[str, TrialData], report: Callable[[Evaluation], None],
              checkpoint: Path, stop_after_evals: int | None, compile_model: bool) -> TrialResult:
        """In the Tune worker: a proxy paused for an early-stopping round returns "partial" after its evaluations."""
        return train(spec, data[spec.recipe], report=report, checkpoint=checkpoint,
                     stop_after_evals=stop_after_evals if spec.role == Role.PROXY else None,
                     compile_model=compile_model)
