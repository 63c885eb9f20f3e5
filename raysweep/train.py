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
At each evaluation the downstream tasks of ``data.tasks`` are scored too (``raysweep.tasks.scoring``:
``result.evaluations[-1].tasks["hellaswag"]["acc_norm"]``).

The seed sets the initialisation and the order in which the trial visits its sequences. A loss that
becomes NaN or infinite stops the run; it is returned with status ``diverged`` and infinite losses,
which rank last.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from raysweep.config import WSDSchedule
from raysweep.files import OUTAGE_ERRORS, write_atomically
from raysweep.models import build_model
from raysweep.recipes.sequences import SequenceReader
from raysweep.tasks.scoring import METRICS, score_tasks
from raysweep.trials import Evaluation, TrialData, TrialResult, TrialSpec, eval_steps

EVAL_BATCH_SIZE = 64
AGGREGATES = ("mean", "token_weighted")


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


def train(spec: TrialSpec, data: TrialData, report: Callable[[Evaluation], None] | None = None,
          checkpoint: Path | None = None, stop_after_evals: int | None = None,
          compile_model: bool = False) -> TrialResult:
    """Train ``spec`` to the end, or until ``stop_after_evals`` evaluations are done (status "partial").

    With a ``checkpoint`` path the run saves its state there after every evaluation and, when the file exists,
    resumes from it: a trial killed with its worker loses at most one evaluation interval, and a resumed run
    continues exactly as the uninterrupted one would (same batches in the same order, no dropout).
    """
    return _train(spec, data, report, checkpoint, stop_after_evals, compile_model)[0]


def trained_model(spec: TrialSpec, data: TrialData) -> tuple[TrialResult, torch.nn.Module]:
    """``train(spec, data)`` and the model it leaves: what ``estimate-lr`` measures after its warm-up, trained by
    the same loop (dtype, autocast, data order, clipping) as every trial."""
    return _train(spec, data, None, None, None, False)


def _train(spec: TrialSpec, data: TrialData, report: Callable[[Evaluation], None] | None, checkpoint: Path | None,
           stop_after_evals: int | None, compile_model: bool) -> tuple[TrialResult, torch.nn.Module]:
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
        return TrialResult(spec, "partial", evaluations, wall_before, initial), model
    reader = SequenceReader(data.train_dir, spec.num_sequences)
    order = torch.randperm(spec.num_sequences, generator=torch.Generator().manual_seed(spec.seed))
    validation = {domain: torch.from_numpy(SequenceReader(path, data.validation_sequences[domain]).read_all()).long()
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
    # Kept on the device and read only at evaluations, so that a step never waits for the accelerator: the first
    # step whose loss was not finite (-1: none; the run is stopped there at the next evaluation, as if at once),
    # and the accumulated alignment, summed in float64 exactly as a Python float would be.
    first_nonfinite = torch.tensor(-1, device=device)
    alignment_sum = torch.tensor(alignment, dtype=torch.float64, device=device)

    for step in range(first_step, spec.num_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec.num_steps, spec.lr, spec.schedule)
        validation_gradient = (_gradient(forward, alignment_batch, autocast)
                               if alignment_batch is not None and step % spec.alignment_every == 0 else None)
        batch = torch.from_numpy(reader.take(order[step * spec.batch_size:(step + 1) * spec.batch_size].numpy()))
        batch = batch.long().to(device)
        with autocast:
            loss = forward(input_ids=batch, labels=batch).loss
        first_nonfinite = torch.where((first_nonfinite < 0) & ~torch.isfinite(loss.detach()), step, first_nonfinite)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if validation_gradient is not None:  # the step's own minibatch gradient, before clipping
            alignment_sum += spec.alignment_every * (validation_gradient @ _flat_gradient(model)).double()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()
        if step + 1 in checkpoints:
            diverged_at = int(first_nonfinite)
            if diverged_at >= 0:
                return _diverged(spec, data, evaluations, diverged_at + 1, elapsed(), report, initial), model
            alignment = float(alignment_sum)
            with autocast:
                losses = evaluate(forward, validation, device, weights)
            if not all(math.isfinite(v) for v in losses.values()):
                return _diverged(spec, data, evaluations, step + 1, elapsed(), report, initial), model
            with autocast:
                tasks = score_tasks(forward, data.tasks, device)
            evaluations.append(Evaluation(step + 1, (step + 1) * tokens_per_step, losses,
                                          bits_per_byte(losses, data.validation_bytes_per_token, weights),
                                          alignment if spec.alignment_every else math.nan, tasks))
            if report:
                report(evaluations[-1])
            if checkpoint and step + 1 < spec.num_steps:
                _save_checkpoint(checkpoint, spec, model, optimizer, evaluations, alignment, step + 1, elapsed(),
                                 initial)
            if stop_after_evals is not None and len(evaluations) >= stop_after_evals and step + 1 < spec.num_steps:
                return TrialResult(spec, "partial", evaluations, elapsed(), initial), model
    return TrialResult(spec, "ok", evaluations, elapsed(), initial), model


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
    """Written atomically: a kill during the write leaves the previous checkpoint whole. While the storage is away
    the checkpoint is skipped and training goes on: only a kill before the next one would cost more."""
    state = {"trial_key": spec.key, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "evaluations": [asdict(e) for e in evaluations], "alignment": alignment, "wall_s": wall_s,
             "initial_losses": initial_losses}
    try:
        write_atomically(path, lambda staging: torch.save(state, staging))
    except OSError as err:
        if err.errno not in OUTAGE_ERRORS:
            raise


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


def _diverged(spec: TrialSpec, data: TrialData, evaluations: list[Evaluation], step: int, wall_s: float,
              report: Callable[[Evaluation], None] | None, initial_losses: dict[str, float]) -> TrialResult:
    """The run stops at `step`; its losses there are +inf (its alignment and task scores -inf) so that it ranks
    last."""
    infinite = {name: math.inf for name in [*data.validation_dirs, "all"]}
    tasks = {task: {metric: -math.inf for metric in METRICS} for task in data.tasks}
    evaluation = Evaluation(step, step * spec.batch_size * spec.seq_len, infinite, infinite,
                            -math.inf if spec.alignment_every else math.nan, tasks)
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
