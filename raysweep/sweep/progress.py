"""The launch's progress display: a Rich bar on a terminal, a line a minute in a log."""

from __future__ import annotations

import datetime
import time

from rich.progress import Progress, TaskID

from ray import tune

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


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
