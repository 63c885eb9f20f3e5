"""One training run, from a trial spec to its validation losses. Knows nothing about Ray.

A trial trains a randomly initialised transformers model for one pass over the first
``num_steps × batch_size`` packed sequences of its recipe, with AdamW (β = 0.9/0.999, ε = 1e-8), a
warmup-stable-decay schedule and grad-norm clipping, and evaluates the loss on every validation domain
at ``num_evals`` evenly spaced steps::

    result = train(spec, TrialData(train_dir, {"web": web_dir, "code": code_dir}))
    result.evaluations[-1].losses      # {"web": 2.31, "code": 1.87, "all": 2.09}  (nats per token)

The seed sets the initialisation and the order in which the trial visits its sequences. A loss that
becomes NaN or infinite stops the run; it is returned with status ``diverged`` and infinite losses,
which rank last.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from raysweep.config import ModelSpec, WSDSchedule, content_hash
from raysweep.models import build_model
from raysweep.recipes.build import read_sequences

EVAL_BATCH_SIZE = 64


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

    @property
    def key(self) -> str:
        return content_hash(self)

    @property
    def num_sequences(self) -> int:
        return self.num_steps * self.batch_size

    @property
    def name(self) -> str:
        """Readable trial name for the Ray dashboard."""
        return f"{self.role}-{self.recipe}-{self.model}-lr{self.lr:g}-bs{self.batch_size}-wd{self.weight_decay:g}-s{self.seed}"


@dataclass(frozen=True)
class TrialData:
    train_dir: Path
    validation_dirs: dict[str, Path]
    validation_sequences: int
    validation_bytes_per_token: dict[str, float]
    """UTF-8 bytes of text per token of each validation set: converts nats per token to bits per byte."""


@dataclass(frozen=True)
class Evaluation:
    step: int
    tokens: int
    losses: dict[str, float]
    """Mean loss per validation domain, plus "all": the mean over domains."""
    bits_per_byte: dict[str, float]
    """The same losses in bits per byte of text, comparable across tokenizers."""


@dataclass(frozen=True)
class TrialResult:
    spec: TrialSpec
    status: str
    """"ok" or "diverged"."""
    evaluations: list[Evaluation] = field(default_factory=list)
    wall_s: float = 0.0


def lr_at(step: int, num_steps: int, peak_lr: float, schedule: WSDSchedule) -> float:
    """Warmup-stable-decay: linear warmup to the peak, hold, then linear decay to zero at the end."""
    warmup = max(1, round(schedule.warmup_frac * num_steps))
    decay_start = num_steps - round(schedule.decay_frac * num_steps)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    if step < decay_start:
        return peak_lr
    return peak_lr * (num_steps - step) / max(1, num_steps - decay_start)


def eval_steps(num_steps: int, num_evals: int) -> list[int]:
    """Steps after which the trial evaluates: evenly spaced, the last one at the end."""
    return sorted({max(1, round(num_steps * (i + 1) / num_evals)) for i in range(num_evals)})


def train(spec: TrialSpec, data: TrialData, report: Callable[[Evaluation], None] | None = None) -> TrialResult:
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(spec.seed)
    model = build_model(spec.model_spec, spec.vocab_size, spec.seq_len, spec.eos_id).to(
        device, getattr(torch, spec.param_dtype))
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=spec.weight_decay)
    sequences = torch.from_numpy(read_sequences(data.train_dir, spec.num_sequences).astype(np.int64))
    order = torch.randperm(spec.num_sequences, generator=torch.Generator().manual_seed(spec.seed))
    validation = {domain: torch.from_numpy(read_sequences(path, data.validation_sequences).astype(np.int64))
                  for domain, path in data.validation_dirs.items()}
    checkpoints = set(eval_steps(spec.num_steps, spec.num_evals))
    evaluations: list[Evaluation] = []
    tokens_per_step = spec.batch_size * spec.seq_len
    for step in range(spec.num_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec.num_steps, spec.lr, spec.schedule)
        batch = sequences[order[step * spec.batch_size:(step + 1) * spec.batch_size]].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            return _diverged(spec, [*validation, "all"], evaluations, step + 1, start, report)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        if step + 1 in checkpoints:
            losses = evaluate(model, validation, device)
            evaluation = Evaluation(step + 1, (step + 1) * tokens_per_step, losses,
                                    bits_per_byte(losses, data.validation_bytes_per_token))
            if not all(math.isfinite(v) for v in losses.values()):
                return _diverged(spec, [*validation, "all"], evaluations, step + 1, start, report)
            evaluations.append(evaluation)
            if report:
                report(evaluation)
    return TrialResult(spec, "ok", evaluations, time.perf_counter() - start)


def _diverged(spec: TrialSpec, domains: list[str], evaluations: list[Evaluation], step: int, start: float,
              report: Callable[[Evaluation], None] | None) -> TrialResult:
    """The run stops at `step`; its losses there are +inf so that it ranks last."""
    infinite = {name: math.inf for name in domains}
    evaluation = Evaluation(step, step * spec.batch_size * spec.seq_len, infinite, infinite)
    if report:
        report(evaluation)
    return TrialResult(spec, "diverged", [*evaluations, evaluation], time.perf_counter() - start)


def bits_per_byte(losses: dict[str, float], bytes_per_token: dict[str, float]) -> dict[str, float]:
    """nats/token ÷ (ln 2 × bytes/token) per domain; "all" is the mean over domains, as for the losses."""
    out = {domain: losses[domain] / (math.log(2) * bytes_per_token[domain]) for domain in bytes_per_token}
    out["all"] = float(np.mean(list(out.values())))
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, validation: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """Mean next-token loss per domain (nats per token) and "all", the mean over domains."""
    model.eval()
    losses = {}
    for domain, sequences in validation.items():
        total, count = 0.0, 0
        for batch in sequences.split(EVAL_BATCH_SIZE):
            batch = batch.to(device)
            # transformers averages over the seq_len - 1 predicted positions of the batch
            total += model(input_ids=batch, labels=batch).loss.item() * batch.shape[0]
            count += batch.shape[0]
        losses[domain] = total / count
    losses["all"] = float(np.mean(list(losses.values())))
    model.train()
    return losses
