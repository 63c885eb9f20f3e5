"""The errors a user can meet: each carries one clear message that the command line prints without a traceback
(``raysweep.cli``); results stored before it stay stored. The exit status says whose move it is: 2 when the input
is wrong (``UserError``, ``ReportError``, ``StatusError``: fix the file, path or option), 1 when it is right but
holds nothing to report yet (``NothingToReport``: wait for a trial to finish, or launch)."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """The user's input is wrong or cannot be used: the message says what, where, and what would work."""


class DataError(UserError):
    """Data cannot be read or built as the sweep asks (a missing corpus, too few tokens): the message says
    which recipe or source, what is wrong and what would fix it."""


class ClusterError(UserError):
    """The cluster cannot give what the profile asks (a trial larger than every node): refused before anything
    trains, where Tune would wait for it forever."""


class ConfigError(UserError):
    """Every problem found in one file, each as (key path, message)."""

    def __init__(self, file: str | Path, problems: list[tuple[str, str]]):
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(f"{self.file}: {p}: {m}" if p else f"{self.file}: {m}" for p, m in problems))


class ReportError(Exception):
    """The input cannot be reported on (exit status 2); the message says why and what would work."""


class NothingToReport(ReportError):
    """A run or table that holds no finished trial yet (exit status 1)."""


class StatusError(Exception):
    """The folder is not a launched run, or its plan cannot be read (exit status 2); the message says what to pass."""
