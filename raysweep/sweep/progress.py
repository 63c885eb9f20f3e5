"""The launch's progress display: a Rich bar on a terminal, a line a minute in a log; and the watch on trials that
cannot start."""

from __future__ import annotations

import datetime
import math
import time

import ray
from rich.console import Console
from rich.progress import Progress, TaskID

from ray import tune

CHECK_EVERY_S = 1.0
"""How often the watch looks at the trials: Tune calls it on every step of its loop, many times per trial, and a
look reads every trial of the experiment (up to 1,000)."""
WARN_WAITING_AFTER_S = 60.0
"""When the launch first says that trials are waiting for resources (Tune's own warning, which raysweep's quiet
Tune output hides, comes after as long)."""

LOG_EVERY_S = 60.0
"""How often a launch whose output is not a terminal (a Ray Job's log, ``make demo > log``) prints a progress line:
Rich draws its bar only on a terminal."""


class TrialProgress(tune.Callback):
    """Advances a Rich progress bar on Tune's trial events (Tune's own status table is turned off), or prints a
    progress line now and then where no terminal shows the bar."""

    def __init__(self, progress: Progress, task: TaskID):
        self.progress, self.task = progress, task
        self.num_failed = 0
        self.last_line = time.monotonic()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; a live terminal display is not state.
        return {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._advance()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.num_failed += 1
        self._advance()

    def _advance(self) -> None:
        self.progress.advance(self.task)
        if self.progress.console.is_terminal or time.monotonic() - self.last_line < LOG_EVERY_S:
            return
        self.last_line = time.monotonic()
        task = next(task for task in self.progress.tasks if task.id == self.task)
        eta = "unknown" if task.time_remaining is None else _duration(task.time_remaining)
        self.progress.console.print(f"{task.description}: {task.completed:.0f}/{task.total:.0f} done, "
                                    f"{self.num_failed} failed, {_duration(task.elapsed or 0)} elapsed, eta {eta}",
                                    markup=False, highlight=False)


class ResourceWait(tune.Callback):
    """Watches for trials that cannot start: pending with none running. Warns after ``WARN_WAITING_AFTER_S``; after
    ``patience_s`` it holds the reason in ``stalled`` and ``stopper`` ends the experiment, so the launch stops and
    says why instead of waiting forever."""

    def __init__(self, patience_s: float, console: Console):
        self.patience_s, self.console = patience_s, console
        self.since: float | None = None
        self.checked = -math.inf
        self.warned = False
        self.stalled: str | None = None
        self.stopper = _StopWhenStalled(self)

    def __getstate__(self) -> dict:
        return {}

    def on_step_begin(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self.checked < CHECK_EVERY_S:
            return
        self.checked = now
        if any(t.status == "RUNNING" for t in reversed(trials)):  # the newest trials run: found at once
            self.since = None
            return
        pending = [t for t in trials if t.status == "PENDING"]
        if not pending:
            self.since = None
            return
        self.since = self.since or now
        waited = now - self.since
        if self.stalled or waited < (self.patience_s if self.warned else min(WARN_WAITING_AFTER_S, self.patience_s)):
            return  # what the cluster has free is asked only when there is something to say
        asked = {kind: amount for kind, amount in pending[0].placement_group_factory.required_resources.items()
                 if amount}
        free, total = ray.available_resources(), ray.cluster_resources()
        situation = (f"{len(pending)} trial(s) waiting and none running for {_duration(waited)}: the next asks for "
                     f"{_resources(asked)} on one node; the cluster has {_resources(free, asked)} free of "
                     f"{_resources(total, asked)} (other jobs hold the rest, nodes were lost, or an autoscaler "
                     "cannot add them)")
        if waited >= self.patience_s:
            self.stalled = situation
        elif not self.warned:
            self.warned = True
            self.console.print(f"[yellow]{situation}; waiting up to {_duration(self.patience_s)} "
                               "(wait_for_resources_s)[/yellow]")


class _StopWhenStalled(tune.Stopper):
    def __init__(self, watch: ResourceWait):
        self.watch = watch

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.watch.stalled is not None


def _resources(amounts: dict[str, float], kinds: dict[str, float] | None = None) -> str:
    shown = {kind: amounts.get(kind, 0.0) for kind in (kinds or amounts)}
    return ", ".join(f"{amount:g} {kind}" for kind, amount in shown.items())


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
