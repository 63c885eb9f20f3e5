"""``raysweep plan``: what a launch would do, and roughly what it costs, before anything is trained.

A plan counts the trials per role (planned, already stored, left to train), their training compute (6 N D at
each trial's last planned step, the paper's accounting), and the recipe shard sets the launch would build. With a
calibration it also times a few real training steps of each distinct trial shape on this machine (the GPU when
there is one, else the CPU, with the threads a trial gets) and scales them to trial-hours::

    plan = plan_launch(cluster, sweep)                 # no Ray, no training: the sweep file and the stored results
    plan = plan_launch(cluster, sweep, calibrate_steps=5)   # a few steps per shape: seconds on the demo's models
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from raysweep import store
from raysweep.analysis import training_flops
from raysweep.config import ClusterConfig, RandomFeatureSweep, SweepConfig
from raysweep.families import TrialFamily, trial_family
from raysweep.trials import AnySpec, Role


@dataclass(frozen=True)
class RolePlan:
    role: str
    planned: int
    stored: int
    to_train: int
    flops_to_train: float
    """6 · parameters · tokens, summed over the trials left to train, at their last planned step."""
    proposed: bool
    """Its trials are proposed during the run (a TPE target search): counted from its budget."""
    trial_hours: float | None = None
    """Measured step time × steps, summed over the trials left to train (None until calibrated)."""


@dataclass(frozen=True)
class LaunchPlan:
    sweep: str
    run_dir: str
    roles: list[RolePlan]
    shards: list[tuple[str, int]]
    """(recipe, sequences) of every recipe shard set the trials left to train read, sized for the largest."""
    max_concurrent_trials: int | None
    calibrated_on: str | None = None
    """Where the calibration steps ran ("cpu, 1 thread", "cuda"), or None without one."""


@dataclass(frozen=True)
class _Work:
    family: TrialFamily
    trials: list[AnySpec]
    """Every trial the sweep file plans."""
    stored: set[str]
    """Keys of the trials stored already (read only: a plan moves no file, unlike a launch)."""
    proposed: list[AnySpec]
    """Targets a TPE search will still propose, each as its recipe's target at the grid's first batch size."""
    proposed_stored: int


def _work(cluster: ClusterConfig, sweep: SweepConfig | RandomFeatureSweep) -> _Work:
    family = trial_family(sweep, cluster)
    run = store.RunDir.of(cluster.storage, sweep.name)
    stored = {path.name[len("trial-"):-len(".parquet")] for path in store.result_files(run)}
    proposed, proposed_stored = [], 0
    if family.tpe:
        search, grid, _ = family.tpe
        budget = search.trials_per_recipe * len(grid.seeds)
        proposed = [target for target in family.largest_targets(family.recipes)[::len(grid.batch_sizes)]
                    for _ in range(budget)]
        previous = store.read_plan(run) if run.plan_file.is_file() else None
        proposed_stored = len(stored.intersection(previous.trial_keys.get(Role.TARGET, []))) if previous else 0
    return _Work(family, family.plan(), stored, proposed[:len(proposed) - proposed_stored], proposed_stored)


def _tokens(spec: AnySpec) -> int:
    return spec.num_sequences * getattr(spec, "seq_len", 1)


def plan_launch(cluster: ClusterConfig, sweep: SweepConfig | RandomFeatureSweep,
                calibrate_steps: int = 0) -> LaunchPlan:
    """Count what ``launch`` would train, from the sweep file and the results already stored; nothing starts. With
    ``calibrate_steps`` (language-model sweeps), also time that many training steps of each trial shape."""
    work = _work(cluster, sweep)
    roles = []
    for role in Role:
        mine = [t for t in work.trials if t.role == role]
        todo = [t for t in mine if t.key not in work.stored]
        stored = len(mine) - len(todo)
        if role == Role.TARGET and work.family.tpe:
            todo, stored = todo + work.proposed, stored + work.proposed_stored
        flops = float(sum(training_flops(t.num_params, _tokens(t)) for t in todo))
        roles.append(RolePlan(str(role), stored + len(todo), stored, len(todo), flops,
                              role == Role.TARGET and bool(work.family.tpe)))
    sequences: dict[str, int] = {}
    for t in [t for t in work.trials if t.key not in work.stored] + work.proposed:
        sequences[t.recipe] = max(sequences.get(t.recipe, 0), t.num_sequences)
    shards = [] if isinstance(sweep, RandomFeatureSweep) else \
        [(recipe, sequences[recipe]) for recipe in work.family.recipes if recipe in sequences]
    plan = LaunchPlan(sweep.name, str(store.RunDir.of(cluster.storage, sweep.name).path), roles, shards,
                      cluster.max_concurrent_trials)
    return _calibrated(plan, work, cluster, calibrate_steps) if calibrate_steps and isinstance(sweep, SweepConfig) \
        else plan


def _calibrated(plan: LaunchPlan, work: _Work, cluster: ClusterConfig, steps: int) -> LaunchPlan:
    """`plan` with trial-hours from `steps` timed training steps (after one untimed) of each distinct shape."""
    import torch

    from raysweep.models import build_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = max(1, int(cluster.resources.proxy.cpu))
    if device == "cpu":
        torch.set_num_threads(threads)
    step_s: dict[tuple, float] = {}
    hours = {role: 0.0 for role in Role}
    for t in [t for t in work.trials if t.key not in work.stored] + work.proposed:
        shape = (t.model_spec, t.vocab_size, t.seq_len, t.batch_size, t.autocast)
        if shape not in step_s:
            torch.manual_seed(0)
            model = build_model(t.model_spec, t.vocab_size, t.seq_len, t.eos_id)
            step_s[shape] = _time_steps(model, t, device, steps)
        hours[t.role] += step_s[shape] * t.num_steps / 3600
    roles = [dataclasses.replace(r, trial_hours=hours[Role(r.role)]) for r in plan.roles]
    where = f"cpu, {threads} thread(s)" if device == "cpu" else torch.cuda.get_device_name()
    return dataclasses.replace(plan, roles=roles, calibrated_on=where)


def _time_steps(model, spec, device: str, steps: int) -> float:
    """Median seconds of a forward, backward and AdamW step on random ids of the trial's batch shape, after one
    untimed step (the median: a step that another process delayed does not move it)."""
    import torch

    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    batch = torch.randint(0, spec.vocab_size, (spec.batch_size, spec.seq_len), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=spec.autocast == "bfloat16")
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def print_plan(plan: LaunchPlan, sweep: SweepConfig | RandomFeatureSweep, console: Console) -> None:
    calibrated = plan.calibrated_on is not None
    table = Table(title=f"{plan.sweep}: what a launch would train (results in {plan.run_dir})")
    for name in ("role", "planned", "stored", "to train", "FLOPs to train", *(("trial-hours",) if calibrated else ())):
        table.add_column(name, justify="left" if name == "role" else "right")
    for r in plan.roles:
        table.add_row(r.role + (" (proposed by TPE)" if r.proposed else ""), str(r.planned), str(r.stored),
                      str(r.to_train), f"{r.flops_to_train:.3g}",
                      *((f"{r.trial_hours:.3g}",) if calibrated else ()))
    console.print(table)
    if plan.shards:
        console.print("Shard sets the trials read (built once, cached by content): "
                      + ", ".join(f"{recipe} {n:,} sequences" for recipe, n in plan.shards))
    if isinstance(sweep, SweepConfig) and sweep.select:
        console.print(f"Select mode: targets train only on the proxies' top {sweep.select.top_k} of "
                      f"{len(sweep.recipes)} recipes; the target row counts every recipe.")
    if calibrated:
        total = sum(r.trial_hours for r in plan.roles)
        concurrent = plan.max_concurrent_trials
        console.print(f"Trial-hours from timed steps on {plan.calibrated_on} (training steps only: evaluations, "
                      f"data and start-up add to them); {total:.3g} in all"
                      + (f", about {total / concurrent:.3g} hours of wall time at {concurrent} trials at a time"
                         if concurrent else "") + ".")
