"""One training run, from a trial spec to its validation losses. Knows nothing about Ray.

A trial trains a randomly initialised transformers model for one pass over the first
``num_steps × batch_size`` packed sequences of its recipe, with AdamW (β = 0.9/0.999, ε = 1e-8), a
warmup-stable-decay schedule and grad-norm clipping, and evaluates the loss on every validation domain
at ``num_evals`` evenly spaced steps::

    result = train(spec, TrialData(train_dir, {"web": web_dir, "code": code_dir}, {"web": 16, "code": 16},
                                   bytes_per_token))
    result.evaluations[-1].losses      # {"web": 2.31, "code": 1.87, "all": 2.09}  (nats per token)

"all" is the mean over domains, or with ``spec.aggregate == "token_weighted"`` the loss of all evaluated tokens
pooled (the paper's aggregate Pile validation loss, when the domains are sized by the Pile's shares).

The seed sets the initialisation and the order in which the trial visits its sequences. A loss that
becomes NaN or infinite stops the run; it is returned with status ``diverged`` and infinite losses,
which rank last.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from raysweep.config import ModelSpec, WSDSchedule, content_hash
from raysweep.models import build_model
from raysweep.recipes.build import read_sequences

EVAL_BATCH_SIZE = 64
AGGREGATES = ("mean", "token_weighted")


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
        return f"{self.role}-{self.recipe}-{self.model}-lr{self.lr:g}-bs{self.batch_size}-wd{self.weight_decay:g}-s{self.seed}"


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


def lr_at(step: int, num_steps: int, peak_lr: float, schedule: WSDSchedule) -> float:
    """Warmup-stable-decay: linear warmup to the peak, hold, then linear decay to zero at the end.

    Warmup lasts ``warmup_steps`` (at most the whole run) when set, else ``warmup_frac`` of the run. A warmup
    that reaches into the decay (a long fixed warmup in a short run) follows the lower of the two lines there.
    """
    if schedule.warmup_steps is not None:
        warmup = min(schedule.warmup_steps, num_steps)
    else:
        warmup = max(1, round(schedule.warmup_frac * num_steps))
    decay_start = num_steps - round(schedule.decay_frac * num_steps)
    decay = peak_lr * (num_steps - step) / max(1, num_steps - decay_start)
    if step < warmup:
        ramp = peak_lr * (step + 1) / warmup
        return ramp if step < decay_start else min(ramp, decay)
    if step < decay_start:
        return peak_lr
    return decay


def eval_steps(num_steps: int, num_evals: int) -> list[int]:
    """Steps after which the trial evaluates: evenly spaced, the last one at the end."""
    return sorted({max(1, round(num_steps * (i + 1) / num_evals)) for i in range(num_evals)})


def train(spec: TrialSpec, data: TrialData, report: Callable[[Evaluation], None] | None = None,
          checkpoint: Path | None = None, stop_after_evals: int | None = None,
          compile_model: bool = False) -> TrialResult:
    """Train ``spec`` to the end, or until ``stop_after_evals`` evaluations are done (status "partial").

    With a ``checkpoint`` path the run saves its state there after every evaluation and, when the file exists,
    resumes from it: a trial killed with its worker loses at most one evaluation interval, and a resumed run
    continues exactly as the uninterrupted one would (same batches in the same order, no dropout).
    """
    if spec.aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {spec.aggregate!r}; expected one of {AGGREGATES}")
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(spec.seed)
    model = build_model(spec.model_spec, spec.vocab_size, spec.seq_len, spec.eos_id).to(
        device, getattr(torch, spec.param_dtype))
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=spec.weight_decay)
    state = _load_checkpoint(checkpoint, spec, model, optimizer, device)
    evaluations, alignment, first_step, wall_before, initial = state
    # Forward passes may go through the compiled module; state and parameters stay the plain module's.
    forward = torch.compile(model) if compile_model else model
    if stop_after_evals is not None and len(evaluations) >= stop_after_evals:
        return TrialResult(spec, "partial", evaluations, wall_before, initial)
    sequences = torch.from_numpy(read_sequences(data.train_dir, spec.num_sequences).astype(np.int64))
    order = torch.randperm(spec.num_sequences, generator=torch.Generator().manual_seed(spec.seed))
    validation = {domain: torch.from_numpy(read_sequences(path, data.validation_sequences[domain]).astype(np.int64))
                  for domain, path in data.validation_dirs.items()}
    weights = predicted_tokens(validation) if spec.aggregate == "token_weighted" else None
    alignment_batch = _alignment_batch(validation, spec.batch_size).to(device) if spec.alignment_every else None
    checkpoints = set(eval_steps(spec.num_steps, spec.num_evals))
    tokens_per_step = spec.batch_size * spec.seq_len
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.autocast == "bfloat16")

    def elapsed() -> float:
        return wall_before + time.perf_counter() - start

    if first_step == 0:  # evaluation draws no random numbers: training goes on exactly as without it
        with autocast:
            initial = evaluate(forward, validation, device, weights)

    for step in range(first_step, spec.num_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec.num_steps, spec.lr, spec.schedule)
        validation_gradient = (_gradient(forward, alignment_batch, autocast)
                               if alignment_batch is not None and step % spec.alignment_every == 0 else None)
        batch = sequences[order[step * spec.batch_size:(step + 1) * spec.batch_size]].to(device)
        with autocast:
            loss = forward(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            return _diverged(spec, [*validation, "all"], evaluations, step + 1, elapsed(), report, initial)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if validation_gradient is not None:  # the step's own minibatch gradient, before clipping
            alignment += spec.alignment_every * float(validation_gradient @ _flat_gradient(model))
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        if step + 1 in checkpoints:
            with autocast:
                losses = evaluate(forward, validation, device, weights)
            if not all(math.isfinite(v) for v in losses.values()):
                return _diverged(spec, [*validation, "all"], evaluations, step + 1, elapsed(), report, initial)
            evaluations.append(Evaluation(step + 1, (step + 1) * tokens_per_step, losses,
                                          bits_per_byte(losses, data.validation_bytes_per_token, weights),
                                          alignment if spec.alignment_every else math.nan))
            if report:
                report(evaluations[-1])
            if checkpoint and step + 1 < spec.num_steps:
                _save_checkpoint(checkpoint, spec, model, optimizer, evaluations, alignment, step + 1, elapsed(),
                                 initial)
            if stop_after_evals is not None and len(evaluations) >= stop_after_evals and step + 1 < spec.num_steps:
                return TrialResult(spec, "partial", evaluations, elapsed(), initial)
    return TrialResult(spec, "ok", evaluations, elapsed(), initial)


def _alignment_batch(validation: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """One fixed validation batch of ``size`` sequences drawn in turn from every domain (the "all" mix)."""
    domains = list(validation.values())
    rows = [domains[i % len(domains)][i // len(domains)] for i in range(size)
            if i // len(domains) < len(domains[i % len(domains)])]
    return torch.stack(rows)


def _flat_gradient(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                      for p in model.parameters()])


def _gradient(model: torch.nn.Module, batch: torch.Tensor, autocast: torch.autocast) -> torch.Tensor:
    """∇ℓ(θ; batch) as one flat fp32 vector; leaves no gradient behind for the training step."""
    model.zero_grad(set_to_none=True)
    with autocast:
        loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    gradient = _flat_gradient(model)
    model.zero_grad(set_to_none=True)
    return gradient


def _save_checkpoint(path: Path, spec: TrialSpec, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     evaluations: list[Evaluation], alignment: float, step: int, wall_s: float,
                     initial_losses: dict[str, float]) -> None:
    """Written aside, then renamed: a kill during the write leaves the previous checkpoint whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    torch.save({"trial_key": spec.key, "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "evaluations": [asdict(e) for e in evaluations],
                "alignment": alignment, "wall_s": wall_s, "initial_losses": initial_losses}, staging)
    os.replace(staging, path)


def _load_checkpoint(path: Path | None, spec: TrialSpec, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     device: torch.device) -> tuple[list[Evaluation], float, int, float, dict[str, float]]:
    """(evaluations, accumulated alignment, first step, wall seconds so far, initial losses) from ``path``, or a
    fresh start.

    ``weights_only=True``: the file lives in user-writable storage, so nothing in it is unpickled as code.
    """
    if path is None or not path.is_file():
        return [], 0.0, 0, 0.0, {}
    state = torch.load(path, map_location=device, weights_only=True)
    if state["trial_key"] != spec.key:
        raise ValueError(f"{path} holds trial {state['trial_key']}, not {spec.key}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return ([Evaluation(**e) for e in state["evaluations"]], state["alignment"], state["step"], state["wall_s"],
            state.get("initial_losses", {}))


def _diverged(spec: TrialSpec, domains: list[str], evaluations: list[Evaluation], step: int, wall_s: float,
              report: Callable[[Evaluation], None] | None, initial_losses: dict[str, float]) -> TrialResult:
    """The run stops at `step`; its losses there are +inf (and its alignment -inf) so that it ranks last."""
    infinite = {name: math.inf for name in domains}
    evaluation = Evaluation(step, step * spec.batch_size * spec.seq_len, infinite, infinite,
                            -math.inf if spec.alignment_every else math.nan)
    if report:
        report(evaluation)
    return TrialResult(spec, "diverged", [*evaluations, evaluation], wall_s, initial_losses)


def predicted_tokens(validation: dict[str, torch.Tensor]) -> dict[str, int]:
    """Tokens whose prediction is scored in each domain: seq_len - 1 per sequence (the first has no context)."""
    return {domain: sequences.shape[0] * (sequences.shape[1] - 1) for domain, sequences in validation.items()}


def aggregate(values: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """The "all" entry over domains: their plain mean, or Σ_d w_d·v_d / Σ_d w_d with `weights`."""
    if weights is None:
        return float(np.mean(list(values.values())))
    return sum(weights[domain] * value for domain, value in values.items()) / sum(weights[d] for d in values)


def bits_per_byte(losses: dict[str, float], bytes_per_token: dict[str, float],
                  tokens: dict[str, int] | None = None) -> dict[str, float]:
    """nats/token ÷ (ln 2 × bytes/token) per domain. "all" follows the losses: the mean over domains, or with
    the `tokens` scored per domain, total bits over total bytes (each domain's bits/byte weighted by its bytes,
    tokens × bytes/token), so that it is the pooled loss in bits per byte."""
    out = {domain: losses[domain] / (math.log(2) * bytes_per_token[domain]) for domain in bytes_per_token}
    num_bytes = None if tokens is None else {d: tokens[d] * bytes_per_token[d] for d in bytes_per_token}
    out["all"] = aggregate(out, num_bytes)
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, validation: dict[str, torch.Tensor], device: torch.device,
             weights: dict[str, int] | None = None) -> dict[str, float]:
    """Mean next-token loss per domain (nats per token) and "all": the mean over domains, or with `weights`
    (``predicted_tokens``) the mean over every scored token."""
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
    losses["all"] = aggregate(losses, weights)
    model.train()
    return losses
