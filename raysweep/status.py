"""`raysweep status RUN_DIR`: how far a sweep has got, from its files alone (no Ray needed).

Every launch writes ``plan.json`` (the trial keys per role and the GPUs each trial holds); trials leave
``running/`` markers while in flight, ``results/trial-*.parquet`` when stored and
``failed/`` records when they failed after their retries. Status counts them per role::

    role     planned  finished  diverged  failed  started, not finished  pending  GPU-hours  trial-hours
    proxy         64        40         0       0                      2       22       0.00        0.10

A marker left by a killed launch reads "started, not finished": a relaunch restarts that trial. The ETA
assumes the remaining trials take the median wall time of their role's finished ones and run
``max_concurrent_trials`` at a time (one when the profile leaves that open).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from raysweep import store
from raysweep.errors import StatusError
from raysweep.trials import Status


@dataclass(frozen=True)
class RoleStatus:
    role: str
    planned: int
    finished: int
    diverged: int
    failed: int
    started: int
    """Started and neither stored nor failed: in flight, or interrupted by a killed launch."""
    gpu_hours: float
    trial_hours: float
    """Wall time summed over trials (concurrent trials add up), not elapsed time."""
    median_wall_s: float | None

    @property
    def pending(self) -> int:
        return self.planned - self.finished - self.failed - self.started


def sweep_status(run_dir: Path) -> tuple[list[RoleStatus], float | None]:
    """Counts per role, and the ETA in seconds (None until every role with work left has a finished trial)."""
    run = store.RunDir(Path(run_dir))
    try:
        plan = store.read_plan(run)
    except ValueError as err:
        raise StatusError(f"{run.plan_file}: unreadable ({err}); launch again to rewrite it") from None
    if plan is None:
        raise StatusError(f"{run_dir}: no {run.plan_file.name}; pass the run directory of a launch "
                          "(<storage>/<sweep name>)")
    if plan.gpus_per_trial is None:
        raise StatusError(f"{run.plan_file} was written by an older raysweep; launch again to refresh it (a launch "
                          "trains only what is not stored yet)")
    trials = _finished_trials(run)
    failed = {f["trial_key"] for f in store.read_failures(run)}
    started = {s["trial_key"] for s in store.read_started(run)}
    roles, remaining_s = [], 0.0
    for role, keys in plan.trial_keys.items():
        planned = set(keys)
        mine = {key: row for key, row in trials.items() if key in planned}
        walls = sorted(row["wall_s"] for row in mine.values())
        median = walls[len(walls) // 2] if walls else None
        num_planned = plan.num_planned.get(role, len(planned))  # a search's targets: its whole budget
        status = RoleStatus(
            role, num_planned, len(mine), sum(row["status"] == Status.DIVERGED for row in mine.values()),
            len(failed & planned - set(mine)), len(started & planned - set(mine) - failed),
            sum(walls) * plan.gpus_per_trial[role] / 3600, sum(walls) / 3600, median)
        roles.append(status)
        left = status.pending + status.started
        if left and median is None:
            remaining_s = None
        elif remaining_s is not None:
            remaining_s += left * (median or 0.0)
    eta = remaining_s / (plan.max_concurrent_trials or 1) if remaining_s is not None else None
    return roles, eta


def _finished_trials(run: store.RunDir) -> dict[str, dict]:
    """trial_key → its status and wall time, reading only those two columns of each stored trial."""
    # A corrupt file is left out: the next launch moves it aside and retrains its trial.
    table, _ = store.read_tables(store.result_files(run), columns=["trial_key", "status", "wall_s"])
    rows = [] if table is None else table.to_pylist()
    return {row["trial_key"]: row for row in reversed(rows)}  # each trial's first row


def print_status(roles: list[RoleStatus], eta_s: float | None, console) -> None:
    table = Table(title="Sweep status")
    columns = ("role", "planned", "finished", "diverged", "failed", "started, not finished", "pending",
               "GPU-hours", "trial-hours")
    for name in columns:
        table.add_column(name, justify="left" if name == "role" else "right")
    for r in roles:
        table.add_row(r.role, str(r.planned), str(r.finished), str(r.diverged), str(r.failed), str(r.started),
                      str(r.pending), f"{r.gpu_hours:.2f}", f"{r.trial_hours:.2f}")
    console.print(table)
    left = sum(r.pending + r.started for r in roles)
    if not left:
        console.print("Every planned trial is stored or failed" + (" (a relaunch retries the failed ones)."
                                                                   if any(r.failed for r in roles) else "."))
    elif eta_s is None:
        console.print(f"{left} trial(s) left; no ETA until each role has a finished trial.")
    else:
        console.print(f"{left} trial(s) left; ETA ≈ {eta_s / 60:.0f} min at the median wall time per role.")
