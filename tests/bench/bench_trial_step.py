"""A trial's step against a minimal hand-written torch loop, and where a trial's time goes.

For the demo's proxy and target (their specs from ``search_spaces/demo.yaml``, their shards built here) and for a
gpt2-small-shaped model at seq 1024 (a few steps), on one thread as a 1-CPU Ray worker computes:

- ``raysweep.train.train`` with a checkpoint file, as a Tune trial runs it, its wall time split into training,
  evaluation (the validation loss), tasks (downstream scoring), checkpoints, gradient alignment and data (each part
  timed where the trainer calls it); for gpt2-small, the tasks' share at the paper's budget, from the measured
  step and scoring times;
- the same steps in a bare loop: the same model, AdamW, clipping and batches, nothing else;
- for the demo proxy, that bare loop under ``torch.compile`` (steady-state steps; compile time apart).

Prints ratios measured side by side in one run; asserts nothing. Scheduling by Tune is measured by
``bench_scheduler.py``. Run: ``python tests/bench/bench_trial_step.py`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from pathlib import Path

import ray
import torch

from raysweep import train as trainer
from raysweep.config import SyntheticSource, Task, TokenizerConfig, WSDSchedule, load_sweep
from raysweep.config.sizes import MODEL_SIZES
from raysweep.families.language_model import build_data, plan_trials
from raysweep.models import build_model, count_parameters
from raysweep.recipes import sequences, synthetic
from raysweep.recipes.build import Component, build_shards, read_manifest
from raysweep.recipes.streams import Stream
from raysweep.recipes.tokenizer import ByteTokenizer
from raysweep.tasks.items import continuation_items
from raysweep.tasks.scoring import encode_task
from raysweep.trials import Role, TrialData, TrialSpec

REPO = Path(__file__).resolve().parents[2]
PARTS = ("evaluation", "tasks", "checkpoints", "alignment", "data")


class Parts:
    """Wall seconds spent inside the trainer's helpers, outermost call only (a helper may call another)."""

    def __init__(self):
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self._depth = 0

    def wrap(self, part: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self._depth += 1
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds[part] += time.perf_counter() - start
        return timed


def raysweep_trial(spec: TrialSpec, data: TrialData, folder: Path) -> tuple[float, dict[str, float]]:
    """(wall seconds, seconds per part) of ``train`` with a checkpoint, its helpers timed where it calls them."""
    parts = Parts()
    originals = {"evaluate": trainer.evaluate, "_save_checkpoint": trainer._save_checkpoint,
                 "_gradient": trainer._gradient, "_flat_gradient": trainer._flat_gradient,
                 "score_tasks": trainer.score_tasks}
    take = sequences.SequenceReader.take
    trainer.evaluate = parts.wrap("evaluation", trainer.evaluate)
    trainer.score_tasks = parts.wrap("tasks", trainer.score_tasks)
    trainer._save_checkpoint = parts.wrap("checkpoints", trainer._save_checkpoint)
    trainer._gradient = parts.wrap("alignment", trainer._gradient)
    trainer._flat_gradient = parts.wrap("alignment", trainer._flat_gradient)
    sequences.SequenceReader.take = parts.wrap("data", take)
    checkpoint = folder / f"{spec.key}.pt"
    try:
        start = time.perf_counter()
        trainer.train(spec, data, checkpoint=checkpoint)
        wall = time.perf_counter() - start
    finally:
        for name, function in originals.items():
            setattr(trainer, name, function)
        sequences.SequenceReader.take = take
        checkpoint.unlink(missing_ok=True)
    return wall, parts.seconds


def bare_loop(spec: TrialSpec, batches: torch.Tensor, compiled: bool = False) -> tuple[float, float]:
    """(seconds per step, seconds before the first step) of forward, backward, clip and AdamW on ``batches``."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.model_spec, spec.vocab_size, spec.seq_len, spec.eos_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=spec.weight_decay)
    forward = torch.compile(model) if compiled else model

    def step(batch: torch.Tensor) -> None:
        loss = forward(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        optimizer.step()

    start = time.perf_counter()
    warmup = 3 if compiled else 0  # compiled: the first steps trace and compile
    for batch in batches[:warmup]:
        step(batch)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    return (time.perf_counter() - start) / (len(batches) - warmup), first


def batches_of(spec: TrialSpec, data: TrialData) -> torch.Tensor:
    reader = sequences.SequenceReader(data.train_dir, spec.num_sequences)
    order = torch.randperm(spec.num_sequences, generator=torch.Generator().manual_seed(spec.seed))
    return torch.from_numpy(reader.take(order.numpy())).long().reshape(spec.num_steps, spec.batch_size, -1)


HELLASWAG_LIKE = Task(name="continuation", preset="continuation", max_items=8, context_chars=230,
                      continuation_chars=80)
"""Items of HellaSwag's size in characters (context ~230, endings ~80, 4 choices); a few are scored and the cost of
``PAPER_ITEMS`` is scaled from them."""
PAPER_ITEMS = 500
PAPER_TOKENS_PER_PARAM = 20


def gpt2_small(root: Path, num_steps: int = 4, batch_size: int = 4) -> tuple[TrialSpec, TrialData]:
    """A gpt2-small-shaped proxy (byte vocabulary) at seq 1024, with one 4-sequence validation domain and
    ``HELLASWAG_LIKE`` as its task."""
    seq_len, model_spec = 1024, MODEL_SIZES["gpt2-small"]
    web = [Component("web", Stream(SyntheticSource("synthetic", "web")), 1.0)]
    train_dir = build_shards("bench-gpt2", web, TokenizerConfig(), seq_len, num_steps * batch_size, root).path
    held_out = [Component("web", Stream(SyntheticSource("synthetic", "web", seed=1)), 1.0)]
    validation = build_shards("bench-gpt2-validation", held_out, TokenizerConfig(), seq_len, 4, root).path
    items = continuation_items(synthetic.generate_documents("web", 200_000, 1), HELLASWAG_LIKE)
    tokenizer = ByteTokenizer()
    tasks = {"continuation": encode_task("continuation", items, tokenizer.encode_texts, seq_len, tokenizer.eos_id)}
    data = TrialData(train_dir, {"web": validation}, {"web": 4}, {"web": read_manifest(validation).bytes_per_token},
                     tasks)
    spec = TrialSpec(role=Role.PROXY, recipe="web", recipe_key="bench", validation_key="bench", model="gpt2-small",
                     model_spec=model_spec, num_params=count_parameters(model_spec, 257, seq_len, 256), lr=1e-4,
                     batch_size=batch_size, weight_decay=0.0, seed=0, num_steps=num_steps, seq_len=seq_len,
                     vocab_size=257, eos_id=256, schedule=WSDSchedule(), grad_clip=1.0, num_evals=2,
                     alignment_every=2)
    return spec, data


def main() -> None:
    torch.set_num_threads(1)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    sweep = load_sweep(REPO / "search_spaces" / "demo.yaml")
    planned = plan_trials(sweep)
    proxy = next(t for t in planned if t.role == Role.PROXY and t.recipe == "balanced" and t.lr == 1e-4)
    target = next(t for t in planned if t.role == Role.TARGET and t.recipe == "balanced")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        data = build_data(sweep, [proxy, target], folder / "shards")["balanced"]
        cases = [("demo proxy (opt-nano)", proxy, data), ("demo target (opt-micro)", target, data),
                 ("gpt2-small, seq 1024", *gpt2_small(folder / "shards"))]
        rows = []
        for label, spec, trial_data in cases:
            wall, parts = raysweep_trial(spec, trial_data, folder)
            training = wall - sum(parts.values())
            bare, _ = bare_loop(spec, batches_of(spec, trial_data))
            rows.append((label, spec, wall, parts, training / spec.num_steps, bare))
        compiled, compile_s = bare_loop(proxy, batches_of(proxy, data), compiled=True)
        eager = rows[0][5]
    print(f"one thread (torch.set_num_threads(1)), {torch.__version__}; per step = training share / steps")
    header = (f"{'trial':<24} {'steps':>5} {'raysweep ms/step':>16} {'bare ms/step':>12} {'bare/raysweep':>13}  "
              + "  ".join(f"{name:>8}" for name in ("training", *PARTS)))
    print(header)
    for label, spec, wall, parts, per_step, bare in rows:
        shares = [wall - sum(parts.values()), *parts.values()]
        print(f"{label:<24} {spec.num_steps:>5} {1e3 * per_step:>16.2f} {1e3 * bare:>12.2f} {bare / per_step:>13.2f}  "
              + "  ".join(f"{share / wall:>8.1%}" for share in shares))
    print(f"demo proxy, bare loop: eager {1e3 * eager:.2f} ms/step, torch.compile {1e3 * compiled:.2f} ms/step "
          f"(eager/compiled {eager / compiled:.2f}x; first 3 steps with compilation {compile_s:.1f} s)")
    print(f"alignment every {proxy.alignment_every} steps in the demo proxy; evaluations: {proxy.num_evals} + the "
          f"initial one; tasks: {', '.join(f'{n} ({len(t.gold)} items)' for n, t in data.tasks.items())} at each "
          "evaluation but the initial one")
    label, spec, wall, parts, per_step, _ = rows[2]
    per_evaluation = parts["tasks"] / spec.num_evals * PAPER_ITEMS / HELLASWAG_LIKE.max_items
    steps = PAPER_TOKENS_PER_PARAM * spec.num_params / (spec.batch_size * spec.seq_len)
    print(f"{label}: {PAPER_ITEMS} HellaSwag-sized items cost {per_evaluation:.0f} s per evaluation (scaled from "
          f"{HELLASWAG_LIKE.max_items}); at {PAPER_TOKENS_PER_PARAM} tokens per parameter ({steps:,.0f} steps of "
          f"{1e3 * per_step:.0f} ms at batch {spec.batch_size}) with {proxy.num_evals} evaluations, tasks take "
          f"{proxy.num_evals * per_evaluation / (steps * per_step + proxy.num_evals * per_evaluation):.2%} of the "
          "trial")


if __name__ == "__main__":
    main()
