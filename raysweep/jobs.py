"""`raysweep launch PROFILE --up`: start the cluster, then run the sweep on it as a Ray Job.

The sweep's driver must outlive the machine that starts it, so it runs on the head node as a Ray Job::

    ray up -y --no-restart LAUNCHER                      # the profile's `launcher:` file
    ray dashboard --port P --remote-port 8265 LAUNCHER   # SSH forward to the head's loopback-only job API
    JobSubmissionClient("http://127.0.0.1:P").submit_job(
        entrypoint="python -m raysweep.cli launch PROFILE --sweep SWEEP",
        runtime_env={"working_dir": CWD, "excludes": [...]})

The job runs in an uploaded copy of the working directory, so the code, profile and sweep file the user has
are what runs; the forward lives only while submitting. Ray's job API does all the scheduling.

Security: the job API runs whatever it is sent. It stays bound to 127.0.0.1 on the head and is reached over
SSH, never over the network. When the cluster uses token authentication, the token is sent from where Ray's
own clients read it (``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``),
with or without ``RAY_AUTH_MODE=token`` on this machine.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

from ray.exceptions import AuthenticationError
from ray.job_submission import JobSubmissionClient
from rich.console import Console

from raysweep.config import ClusterConfig, load_sweep
from raysweep.config.overrides import Override, split_overrides
from raysweep.errors import ConfigError, DataError
from raysweep.net import free_port

EXCLUDES = ["/.git", "/.venv", "/venv", "/runs", "__pycache__", "*.egg-info"]
"""Left out of the uploaded working directory: environments and local results have no place on the head, and
Ray caps an upload at 512 MiB. Ray also skips what .gitignore and .rayignore list."""

START_TIMEOUT_S = 120
"""How long a background process (the SSH forward) may take before its HTTP endpoint answers."""


class ClusterError(DataError):
    """The cluster could not be started or reached, or refused the submission; the message says what to do."""


def launch_as_job(cluster: ClusterConfig, profile: Path, sweep: Path | None, console: Console,
                  overrides: list[Override] = ()) -> int:
    """Start the profile's cluster, submit the sweep to it as a Ray Job, print how to follow it; 0 once submitted.
    The ``--set`` `overrides` go with it."""
    launcher = check_up_profile(cluster, profile)
    sweep_path = sweep or Path(cluster.sweep)
    # a broken sweep file stops here, before any cluster starts
    sweep_name = load_sweep(sweep_path, split_overrides(list(overrides))[1]).name
    entrypoint = job_entrypoint(profile, sweep_path, overrides)
    ray = _ray_executable()
    _say(console, f"Starting the cluster: {shlex.join(['ray', *up_args(launcher)])}")
    if subprocess.run([ray, *up_args(launcher)], stdin=subprocess.DEVNULL).returncode != 0:
        raise ClusterError(f"`{shlex.join(['ray', *up_args(launcher)])}` failed (its output is above): fix {launcher} "
                           "or the hosts it names, then run again")
    local_port = free_port()
    address = f"http://127.0.0.1:{local_port}"
    token_command = f"ray exec {launcher} 'ray get-auth-token'"
    _say(console, f"Forwarding the head's job API to {address} over SSH")
    silent = (f"Ray may not be running on the head (a restarted machine): `ray up -y --restart-only {launcher}` "
              "starts it, and stops any sweep running there")
    with background([ray, *dashboard_args(launcher, local_port, cluster.ray.dashboard_port)], address, silent):
        job_id = submit_job(address, entrypoint, job_runtime_env(Path.cwd()), submission_id(sweep_name), token_command)
    port = cluster.ray.dashboard_port
    follow = f"--address http://127.0.0.1:{port}"
    _say(console, f"Submitted {job_id}: `{entrypoint}` runs on the head node; this machine may disconnect.\n"
                  f"  follow it:  {shlex.join(['ray', *dashboard_args(launcher, port, port)])}   (keep it open)\n"
                  f"              ray job logs -f {job_id} {follow}\n"
                  f"  stop it:    ray job stop {job_id} {follow}\n"
                  f"  progress:   raysweep status {cluster.storage}/{sweep_name}   (on the head: "
                  f"ray attach {launcher})")
    if find_auth_token():
        _say(console, "  token:      `ray job` sends it only with `export RAY_AUTH_MODE=token` beside the token")
    return 0


def check_up_profile(cluster: ClusterConfig, profile: Path) -> Path:
    """The launcher file of a profile fit to run as a job on the cluster it starts; every problem otherwise."""
    problems = []
    launcher = Path(cluster.launcher) if cluster.launcher else None
    if launcher is None:
        problems.append(("launcher", "--up needs the Ray cluster-launcher file that starts the cluster, e.g. "
                                     "`launcher: cluster/h100-cluster.yaml`"))
    elif not launcher.is_file():
        problems.append(("launcher", f"file not found: {launcher} (relative paths are taken from the working "
                                     "directory)"))
    if cluster.ray.address is None:
        problems.append(("ray.address", "the sweep runs as a Ray Job on the head node and must join its cluster: "
                                        "set `address: auto` (null would start a second Ray inside the job)"))
    if not Path(cluster.storage).is_absolute():
        problems.append(("storage", f"must be an absolute path every node shares (got {cluster.storage!r}): the "
                                    "job runs in a temporary copy of this folder, where results would be lost"))
    if problems:
        raise ConfigError(profile, problems)
    return launcher


def up_args(launcher: Path) -> list[str]:
    """`ray up` without its prompt (the user asked for the cluster by passing --up), and without restarting Ray
    on a head that runs it: a restart kills every sweep running there as a job. A new head gets Ray started."""
    return ["up", "-y", "--no-restart", str(launcher)]


def dashboard_args(launcher: Path, local_port: int, remote_port: int) -> list[str]:
    """`ray dashboard`: an SSH forward from 127.0.0.1:local_port here to the head's loopback dashboard."""
    return ["dashboard", "--port", str(local_port), "--remote-port", str(remote_port), str(launcher)]


def job_entrypoint(profile: Path, sweep: Path, overrides: list[Override] = ()) -> str:
    """The command the job runs on the head: a plain launch of the sweep checked here, from the uploaded working
    directory (`python` is the head's: its Ray must have raysweep's dependencies), with the same overrides."""
    return shlex.join(["python", "-m", "raysweep.cli", "launch", _in_working_dir(profile),
                       "--sweep", _in_working_dir(sweep), *(f"--set={o.text}" for o in overrides)])


def job_runtime_env(working_dir: Path) -> dict[str, object]:
    """Upload the working directory; the job runs inside that copy."""
    return {"working_dir": str(working_dir), "excludes": list(EXCLUDES)}


def submission_id(sweep_name: str, now: datetime | None = None) -> str:
    """Readable and unique per second: raysweep-<sweep name>-<YYYYmmdd-HHMMSS>."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", sweep_name).strip("-") or "sweep"
    return f"raysweep-{name}-{(now or datetime.now()):%Y%m%d-%H%M%S}"


def find_auth_token() -> tuple[str, str] | None:
    """The token Ray's clients would send and where it comes from, in Ray 2.60's order: RAY_AUTH_TOKEN, the file
    named by RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token (surrounding whitespace dropped)."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token, "RAY_AUTH_TOKEN"
    if named := os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(named).expanduser()
        token = path.read_text().strip() if path.is_file() else ""
        if not token:  # Ray refuses this too, rather than fall back to another token
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH names {path}, which is missing or empty")
        return token, str(path)
    path = Path.home() / ".ray" / "auth_token"
    token = path.read_text().strip() if path.is_file() else ""
    return (token, str(path)) if token else None


def submit_job(address: str, entrypoint: str, runtime_env: dict[str, object], job_id: str, token_command: str) -> str:
    """Submit through Ray's job API at `address`, with the auth token when there is one; the submission id.

    `token_command` prints the cluster's token; a refusal for want of the right token says to run it."""
    overriding = [name for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if os.environ.get(name)]
    if overriding:  # Ray's client would send the job (and the token) there instead of `address`
        raise ClusterError(f"{overriding[0]}={os.environ[overriding[0]]} is set, and Ray's job client would submit "
                           f"there instead of {address}: unset it for --up")
    token = find_auth_token()
    headers = {"Authorization": f"Bearer {token[0]}"} if token else {}
    fix = f"get the cluster's token with `{token_command}`, then `export RAY_AUTH_TOKEN=<token>` and run again"
    try:
        client = JobSubmissionClient(address, headers=headers)
        return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=job_id)
    except AuthenticationError:
        if token is None:
            raise ClusterError(f"the job API at {address} uses token authentication and no token was found "
                               f"(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token): {fix}") from None
        raise ClusterError(f"the job API at {address} refused the token from {token[1]}: {fix}") from None
    except (ConnectionError, RuntimeError) as err:  # the server's reason may span lines: keep the message one line
        raise ClusterError(f"the job API at {address} did not take the job: {' '.join(str(err).split())}") from None


@contextmanager
def background(command: list[str], url: str, silent: str) -> Iterator[None]:
    """Run `command` in its own process group while the block runs, entered once `url` answers HTTP; `silent`
    says what to do when it never does.

    Its own group: `ray dashboard` leaves its ssh child behind when only it is stopped."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            _wait_until_answering(url, process, output, shlex.join(command), silent)
            yield
        finally:
            _stop_group(process)


def _wait_until_answering(url: str, process: subprocess.Popen, output: IO[bytes], command: str,
                          silent: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            output.seek(0)
            tail = " | ".join(output.read().decode(errors="replace").strip().splitlines()[-5:])
            raise ClusterError(f"`{command}` stopped (exit {process.returncode}) before {url} answered: {tail}")
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=5).close()
            return
        except urllib.error.HTTPError:  # 401/403/404: something answers, it just wants a token or another path
            return
        except OSError:  # refused, reset or timed out: not up yet
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"{url} did not answer within {START_TIMEOUT_S} s of `{command}`. {silent}")
        time.sleep(0.5)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group (what is left of it when its leader already stopped), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # nothing of the group is left
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            pass


def _ray_executable() -> str:
    """This environment's `ray`: the cluster launcher must match the Ray the sweep is written for."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.is_file():
        raise ClusterError(f"no `ray` beside {sys.executable}: install raysweep's dependencies in this environment")
    return str(ray)


def _in_working_dir(path: Path) -> str:
    """`path` as the job sees it: relative to the uploaded working directory."""
    try:
        return Path(path).absolute().relative_to(Path.cwd()).as_posix()
    except ValueError:
        raise ClusterError(f"{path} is outside the working directory {Path.cwd()}, which is all the job gets: "
                           "run from the folder that holds it") from None


def _say(console: Console, text: str) -> None:
    """Plain text, never wrapped: users copy these commands."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
