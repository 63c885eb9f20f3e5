"""A trial's records, free of torch so that the store, the analysis and the report can hold them.

``Role`` and ``Status`` name a trial's part and its end, ``Family`` what the report needs of a sweep family,
``AnySpec`` what every family's spec provides; ``TrialSpec`` (the language-model spec) is everything that changes a
trial's result (its ``key`` is a hash of it), ``TrialData`` where its shards are, ``Evaluation`` one checkpoint's
losses, ``TrialResult`` the run's outcome.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from raysweep.config import ModelSpec, WSDSchedule
from raysweep.identity import content_hash

if TYPE_CHECKING:
    from raysweep.tasks.scoring import EncodedTask


class Role(StrEnum):
    """A proxy ranks recipes cheaply; a target is the tuned run whose ranking the proxies should predict."""

    PROXY = "proxy"
    TARGET = "target"


class Status(StrEnum):
    """How a trial ended (the results table's ``status``)."""

    OK = "ok"
    DIVERGED = "diverged"
    """Its loss became NaN or infinite: stored with infinite losses, so that it ranks last."""
    PARTIAL = "partial"
    """Stopped after the evaluations asked for; resumable from its checkpoint, never stored as rows."""
    STOPPED = "stopped"
    """Its proxy setting's ranking settled (or ASHA stopped the target), so the rest of the run was not needed."""


@dataclass(frozen=True)
class Family:
    """What the store, status and report need to know of a sweep family (its trials: ``raysweep.families``)."""

    name: str
    """``plan.json``'s "family"."""
    question: str
    """What its report answers (the HTML page's heading)."""
    recipe_word: str
    target_word: str
    loss_unit: str
    """Unit of validation losses, and of regret (a target loss gap)."""
    tuned_targets: bool
    """Targets are trained per configuration and seed, then tuned; else each recipe's target is one computed
    optimum, with no configuration and no seed spread."""
    target_model: str | None = None
    """The model name of every target row when it is one computed optimum: how a results table written without
    a plan says which family it holds."""


LANGUAGE_MODEL = Family("language_model", "Which data recipe, and can the proxies be trusted?", "recipe",
                        "tuned target", "nats/token", tuned_targets=True)
RANDOM_FEATURES = Family("random_features", "Do proxy learning rates rank the datasets in their infinite-width order?",
                         "dataset", "infinite-width optimum", "MSE", tuned_targets=False,
                         target_model="infinite-width (kernel)")
"""Recipes of text, or the synthetic datasets of App. B (each one's target is its kernel-regression optimum)."""
FAMILIES = {family.name: family for family in (LANGUAGE_MODEL, RANDOM_FEATURES)}


class AnySpec(Protocol):
    """What the sweep, Tune and the store read of any family's trial spec."""

    role: Role
    lr: float
    seed: int
    num_steps: int
    num_evals: int

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def recipe(self) -> str: ...

    @property
    def num_params(self) -> int: ...

    @property
    def num_sequences(self) -> int: ...

    def columns(self) -> dict[str, object]:
        """The trial's identity columns in the results table (``raysweep.store.SCHEMA``)."""


@dataclass(frozen=True)
class TrialSpec:
    """Everything that changes a trial's result, and nothing else (no paths): its key is a hash of it."""

    role: Role
    recipe: str
    recipe_key: str
    """Content hash of the recipe's shards: a changed recipe is a different trial."""
    validation_key: str
    model: str
    model_spec: ModelSpec
    num_params: int
    lr: float
    batch_size: int
    weight_decay: float
    seed: int
    num_steps: int
    seq_len: int
    vocab_size: int
    eos_id: int
    schedule: WSDSchedule
    grad_clip: float
    num_evals: int
    param_dtype: str = "float32"
    autocast: str = "none"
    """"bfloat16": forward passes under bf16 autocast over ``param_dtype`` master weights."""
    alignment_every: int = 0
    """Measure the gradient alignment every this many steps (0: off)."""
    aggregate: str = "mean"
    """How the "all" loss combines the validation domains: "mean" or "token_weighted" (``Validation.aggregate``)."""
    tasks_key: str = ""
    """Content hash of the downstream tasks scored at each evaluation ("": none)."""

    @property
    def key(self) -> str:
        """Fields at their default stay out of the hash, so a new option keeps every stored trial's key (the
        defaults here must therefore never change); inside nested configs (model, schedule) the same holds for
        the fields they declare as added later (``config.hashable``)."""
        return content_hash({f.name: getattr(self, f.name) for f in fields(self)
                             if f.default is MISSING or getattr(self, f.name) != f.default})

    @property
    def num_sequences(self) -> int:
        return self.num_steps * self.batch_size

    @property
    def name(self) -> str:
        """Readable trial name for the Ray dashboard."""
        return (f"{self.role}-{self.recipe}-{self.model}-lr{self.lr:g}-bs{self.batch_size}-wd{self.weight_decay:g}"
                f"-s{self.seed}")

    def columns(self) -> dict[str, object]:
        return {"role": self.role, "recipe": self.recipe, "model": self.model, "num_params": self.num_params,
                "lr": self.lr, "batch_size": self.batch_size, "weight_decay": self.weight_decay, "seed": self.seed,
                "num_steps": self.num_steps}


@dataclass(frozen=True)
class TrialData:
    train_dir: Path
    validation_dirs: dict[str, Path]
    validation_sequences: dict[str, int]
    """Sequences scored per validation domain (``Validation.sequences_per_domain``)."""
    validation_bytes_per_token: dict[str, float]
    """UTF-8 bytes of text per token of each validation set: converts nats per token to bits per byte."""
    tasks: dict[str, EncodedTask] = field(default_factory=dict)
    """Downstream tasks by name, tokenized once for every trial (``raysweep.tasks.scoring``)."""


@dataclass(frozen=True)
class Evaluation:
    step: int
    tokens: int
    losses: dict[str, float]
    """Mean loss per validation domain, plus "all": their mean, or their token-weighted mean (``spec.aggregate``)."""
    bits_per_byte: dict[str, float]
    """The same losses in bits per byte of text, comparable across tokenizers."""
    alignment: float = math.nan
    """Σ_t ∇ℓ_val(θ_t)·∇ℓ(θ_t; B_t) up to this step (paper D.2.4), estimated every ``alignment_every`` steps on
    one fixed validation batch; larger means training moved further down the validation loss. NaN when off."""
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    """task → its scores (``raysweep.tasks.scoring.METRICS`` and ``DESCRIPTIONS``); -inf scores for a diverged run."""


@dataclass(frozen=True)
class TrialResult:
    spec: AnySpec
    status: Status
    evaluations: list[Evaluation] = field(default_factory=list)
    wall_s: float = 0.0
    initial_losses: dict[str, float] = field(default_factory=dict)
    """Loss per validation domain (and "all") of the model at initialisation, before the first step: the report's
    chosen-lr rule measures how far each proxy trained from it. Empty when unknown."""


def eval_steps(num_steps: int, num_evals: int) -> list[int]:
    """Steps after which the trial evaluates: evenly spaced, the last one at the end."""
    return sorted({max(1, round(num_steps * (i + 1) / num_evals)) for i in range(num_evals)})
