"""A trial's records, free of torch so that the store, the analysis and the report can hold them.

``TrialSpec`` is everything that changes a trial's result (its ``key`` is a hash of it), ``TrialData`` where its
shards are, ``Evaluation`` one checkpoint's losses, ``TrialResult`` the run's outcome.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from raysweep.config import ModelSpec, WSDSchedule
from raysweep.identity import content_hash

LANGUAGE_MODEL = "language_model"
RANDOM_FEATURES = "random_features"
"""The sweep families (``plan.json``'s "family"): recipes of text, or the synthetic datasets of App. B."""


@dataclass(frozen=True)
class TrialSpec:
    """Everything that changes a trial's result, and nothing else (no paths): its key is a hash of it."""

    role: str
    """"proxy" or "target"."""
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


@dataclass(frozen=True)
class TrialData:
    train_dir: Path
    validation_dirs: dict[str, Path]
    validation_sequences: dict[str, int]
    """Sequences scored per validation domain (``Validation.sequences_per_domain``)."""
    validation_bytes_per_token: dict[str, float]
    """UTF-8 bytes of text per token of each validation set: converts nats per token to bits per byte."""


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


@dataclass(frozen=True)
class TrialResult:
    spec: TrialSpec
    status: str
    """"ok", "diverged", "partial" (stopped after the evaluations asked for; resumable from its checkpoint) or
    "stopped" (its proxy setting's ranking settled, so the rest of the run was not needed)."""
    evaluations: list[Evaluation] = field(default_factory=list)
    wall_s: float = 0.0
    initial_losses: dict[str, float] = field(default_factory=dict)
    """Loss per validation domain (and "all") of the model at initialisation, before the first step: the report's
    chosen-lr rule measures how far each proxy trained from it. Empty when unknown."""


def eval_steps(num_steps: int, num_evals: int) -> list[int]:
    """Steps after which the trial evaluates: evenly spaced, the last one at the end."""
    return sorted({max(1, round(num_steps * (i + 1) / num_evals)) for i in range(num_evals)})
