"""`launch --up`: profile checks, the commands and job composed from a profile, and a real submission to a local
Ray job server with token authentication on."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from raysweep import jobs
from raysweep.config import load_cluster
from raysweep.config.overrides import parse_overrides
from raysweep.errors import ConfigError
from raysweep.net import free_port

from conftest import REPO

RAY = str(Path(sys.executable).parent / "ray")
AUTH_ENV_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _problems(err: ConfigError) -> dict[str, str]:
    return dict(err.problems)


def test_up_refuses_the_embedded_profile_naming_every_problem(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as err:
        jobs.launch_as_job(load_cluster("cluster/local.yaml"), Path("cluster/local.yaml"), None, Console())
    problems = _problems(err.value)
    assert err.value.file == "cluster/local.yaml"
    assert set(problems) == {"launcher", "ray.address", "storage"}
    assert "cluster-launcher file" in problems["launcher"]
    assert "address: auto" in problems["ray.address"]


def test_up_refuses_a_launcher_file_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpu.yaml").write_text(f"sweep: s.yaml\nlauncher: missing-cluster.yaml\nstorage: {tmp_path}\n"
                                       "ray: {address: auto}\n")
    with pytest.raises(ConfigError) as err:
        jobs.launch_as_job(load_cluster("gpu.yaml"), Path("gpu.yaml"), None, Console())
    assert _problems(err.value) == {"launcher": "file not found: missing-cluster.yaml (relative paths are taken "
                                                "from the working directory)"}


def test_shipped_h100_profile_is_fit_for_up(monkeypatch):
    monkeypatch.chdir(REPO)
    launcher = jobs.check_up_profile(load_cluster("cluster/h100.yaml"), Path("cluster/h100.yaml"))
    assert launcher == Path("cluster/h100-cluster.yaml")


def test_failed_ray_up_is_a_one_line_error(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "search_spaces" / "demo.yaml", tmp_path / "demo.yaml")
    (tmp_path / "broken-cluster.yaml").write_text("cluster_name: broken\nprovider: {type: nowhere}\n")
    (tmp_path / "gpu.yaml").write_text(f"sweep: demo.yaml\nlauncher: broken-cluster.yaml\nstorage: {tmp_path}\n"
                                       "ray: {address: auto}\n")
    with pytest.raises(jobs.ClusterError) as err:
        jobs.launch_as_job(load_cluster("gpu.yaml"), Path("gpu.yaml"), None, Console())
    assert str(err.value) == ("`ray up -y --no-restart broken-cluster.yaml` failed (its output is above): fix "
                              "broken-cluster.yaml or the hosts it names, then run again")
    assert "Unknown provider type" in capfd.readouterr().err  # ray up's own output reached the terminal


def test_ray_up_and_dashboard_forward_command_lines():
    launcher = Path("cluster/h100-cluster.yaml")
    assert jobs.up_args(launcher) == ["up", "-y", "--no-restart", "cluster/h100-cluster.yaml"]
    assert jobs.dashboard_args(launcher, 43001, 8265) == [
        "dashboard", "--port", "43001", "--remote-port", "8265", "cluster/h100-cluster.yaml"]


def test_the_shipped_launcher_file_passes_rays_schema_and_starts_every_listed_worker_with_the_token():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster" / "h100-cluster.yaml").read_text())
    config["provider"].update(head_ip="10.0.0.1", worker_ips=["10.0.0.2", "10.0.0.3"])
    validate_config(config)
    prepared = prepare_config(config)
    validate_config(prepared)
    workers = prepared["available_node_types"]["local.cluster.node"]
    assert workers["min_workers"] == workers["max_workers"] == 2  # every listed host joins
    assert "/home/ubuntu/.ray/auth_token" in config["cluster_synced_files"]  # the head's token reaches the workers
    assert any("RAY_AUTH_MODE=token" in command for command in config["setup_commands"])
    assert any("RAY_enable_autoscaler_v2=0" in command for command in config["head_start_ray_commands"])


def test_this_rays_up_and_dashboard_take_the_flags_we_pass():
    from ray.scripts.scripts import dashboard, up

    def options(command) -> set[str]:
        return {opt for param in command.params for opt in param.opts}

    assert {"--port", "--remote-port"} <= options(dashboard)
    assert {"-y", "--no-restart", "--restart-only"} <= options(up)


def test_job_runs_the_checked_sweep_from_the_uploaded_working_dir(monkeypatch):
    monkeypatch.chdir(REPO)
    entrypoint = jobs.job_entrypoint(REPO / "cluster" / "h100.yaml", Path("search_spaces/my sweep.yaml"))
    assert entrypoint == "python -m raysweep.cli launch cluster/h100.yaml --sweep 'search_spaces/my sweep.yaml'"
    overridden = jobs.job_entrypoint(REPO / "cluster" / "h100.yaml", Path("search_spaces/s.yaml"),
                                     parse_overrides(["proxy.seeds=[0, 1]"]))
    assert overridden.endswith("--sweep search_spaces/s.yaml '--set=proxy.seeds=[0, 1]'")  # the job runs the same
    runtime_env = jobs.job_runtime_env(Path.cwd())
    assert runtime_env["working_dir"] == str(REPO)
    assert {"/.git", "/.venv", "/runs"} <= set(runtime_env["excludes"])


def test_files_outside_the_working_dir_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(jobs.ClusterError, match="outside the working directory"):
        jobs.job_entrypoint(Path("cluster/h100.yaml"), tmp_path / "sweep.yaml")


def test_submission_id_names_the_sweep_and_the_time():
    now = datetime(2026, 11, 23, 14, 5, 6)
    assert jobs.submission_id("demo", now) == "raysweep-demo-20261123-140506"
    assert jobs.submission_id("paper v2/23 recipes", now) == "raysweep-paper-v2-23-recipes-20261123-140506"


@pytest.mark.parametrize("env_token, path_token, home_token", [("from-env", "from-path", "from-home"),
                                                               (None, "from-path", "from-home"),
                                                               (None, None, "from-home")])
def test_auth_token_is_found_where_ray_finds_it(env_token, path_token, home_token, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(f"{home_token}\n")
    env = {k: v for k, v in os.environ.items() if k not in AUTH_ENV_VARS} | {"HOME": str(home)}
    if env_token:
        env["RAY_AUTH_TOKEN"] = f"  {env_token} "
    if path_token:
        (tmp_path / "token").write_text(path_token)
        env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "token")
    for name in (*AUTH_ENV_VARS, "HOME"):
        monkeypatch.delenv(name, raising=False)
        if name in env:
            monkeypatch.setenv(name, env[name])
    token, _ = jobs.find_auth_token()
    rays = subprocess.run([RAY, "get-auth-token"], env=env, capture_output=True, text=True, check=True).stdout
    assert token == rays == (env_token or path_token or home_token)


def test_no_auth_token_anywhere_is_none_and_a_dangling_token_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert jobs.find_auth_token() is None
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(jobs.ClusterError, match="RAY_AUTH_TOKEN_PATH names .*nowhere, which is missing or empty"):
        jobs.find_auth_token()


def test_background_process_is_up_inside_the_block_and_gone_after():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with jobs.background([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], url, ""):
        urllib.request.urlopen(url, timeout=5).close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_background_process_that_stops_early_is_a_one_line_error():
    command = [sys.executable, "-c", "print('ssh: connect to host h100: No route to host'); raise SystemExit(255)"]
    with pytest.raises(jobs.ClusterError) as err:
        with jobs.background(command, f"http://127.0.0.1:{free_port()}", ""):
            pytest.fail("entered the block of a process that stopped")
    assert "exit 255" in str(err.value) and "No route to host" in str(err.value)
    assert "\n" not in str(err.value)


def test_background_process_whose_url_never_answers_is_stopped_with_the_given_advice(monkeypatch):
    monkeypatch.setattr(jobs, "START_TIMEOUT_S", 1)
    command = [sys.executable, "-c", "import time; time.sleep(60)"]  # an SSH forward to a head without Ray
    started = time.monotonic()
    with pytest.raises(jobs.ClusterError) as err:
        with jobs.background(command, f"http://127.0.0.1:{free_port()}", "Start Ray on the head."):
            pytest.fail("entered the block of a process whose URL never answered")
    assert str(err.value).endswith("did not answer within 1 s of `" + shlex.join(command) + "`. Start Ray on the head.")
    assert time.monotonic() - started < 30  # stopped, not waited for


def test_submission_refuses_a_ray_address_that_would_redirect_it(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.9:8265")
    with pytest.raises(jobs.ClusterError, match="RAY_ADDRESS=http://10.0.0.9:8265 is set"):
        jobs.submit_job("http://127.0.0.1:1", "true", {}, "raysweep-x", "ray get-auth-token")


# ---------------------------------------------------------------------------------------------
# A real job server: `ray start --head --block` on free ports, token authentication on, one CPU.


@pytest.fixture(scope="module")
def job_server():
    """(address, token) of a local head whose dashboard answers only with its token."""
    token = secrets.token_hex(16)
    temp_dir = Path(tempfile.mkdtemp(prefix="rsj", dir="/tmp"))  # Ray's socket paths stay under 107 characters
    port = free_port()
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0",
                        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # stop at once when the test ends
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["env", *(f"{k}={v}" for k, v in env.items() if k.startswith("RAY_") or k == "PATH"),
               RAY, "start", "--head", "--block", f"--temp-dir={temp_dir}", "--num-cpus=1", "--num-gpus=0",
               f"--port={free_port()}", f"--dashboard-port={port}", "--dashboard-host=127.0.0.1",
               f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    try:
        with jobs.background(command, f"http://127.0.0.1:{port}", "ray start failed"):
            yield f"http://127.0.0.1:{port}", token
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _use_token(monkeypatch, token: str | None, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))  # no ~/.ray/auth_token of this machine's own Ray
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    if token is None:
        monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    else:
        monkeypatch.setenv("RAY_AUTH_TOKEN", token)


@pytest.mark.slow
def test_sweep_job_runs_on_the_cluster_from_the_uploaded_code(job_server, tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, token = job_server
    _use_token(monkeypatch, token, tmp_path)
    work = tmp_path / "work"
    shutil.copytree(REPO / "raysweep", work / "raysweep", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "UPLOADED").write_text("")
    (work / "runs").mkdir()
    (work / "runs" / "big.parquet").write_bytes(b"results that stay on this machine")
    entrypoint = "python -m raysweep.cli --help && test -f UPLOADED && test ! -e runs"
    job_id = jobs.submit_job(address, entrypoint, jobs.job_runtime_env(work), jobs.submission_id("e2e"),
                             "ray get-auth-token")
    assert job_id.startswith("raysweep-e2e-")

    client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})

    async def follow() -> None:  # ends when the job does
        async for _ in client.tail_job_logs(job_id):
            pass

    asyncio.run(follow())
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs
    assert "usage: raysweep" in logs
    with pytest.raises(jobs.ClusterError, match="did not take the job: .*already exists") as err:
        jobs.submit_job(address, entrypoint, jobs.job_runtime_env(work), job_id, "ray get-auth-token")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_job_api_without_a_token_is_refused_with_how_to_get_one(job_server, tmp_path, monkeypatch):
    address, _ = job_server
    _use_token(monkeypatch, None, tmp_path)
    with pytest.raises(jobs.ClusterError) as err:
        jobs.submit_job(address, "true", {}, jobs.submission_id("e2e"),
                        "ray exec cluster/h100-cluster.yaml 'ray get-auth-token'")
    message = str(err.value)
    assert "uses token authentication and no token was found" in message
    assert "`ray exec cluster/h100-cluster.yaml 'ray get-auth-token'`" in message
    assert "export RAY_AUTH_TOKEN=<token>" in message


@pytest.mark.slow
def test_job_api_with_a_wrong_token_is_refused_naming_where_it_came_from(job_server, tmp_path, monkeypatch):
    address, _ = job_server
    _use_token(monkeypatch, "not-this-clusters-token", tmp_path)
    with pytest.raises(jobs.ClusterError, match="refused the token from RAY_AUTH_TOKEN"):
        jobs.submit_job(address, "true", {}, jobs.submission_id("e2e"), "ray get-auth-token")


STAND_IN_RAY = '''
import socket, sys, threading
# `ray up` succeeds; `ray dashboard --port L --remote-port R FILE` forwards 127.0.0.1:L to 127.0.0.1:R, as SSH does.
if sys.argv[1] == "up":
    sys.exit(0)
local, remote = int(sys.argv[sys.argv.index("--port") + 1]), int(sys.argv[sys.argv.index("--remote-port") + 1])

def pipe(source, sink):
    with source, sink:
        while data := source.recv(65536):
            sink.sendall(data)

server = socket.create_server(("127.0.0.1", local))
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", remote))
    threading.Thread(target=pipe, args=(client, upstream.dup()), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client.dup()), daemon=True).start()
'''


@pytest.mark.slow
def test_launch_up_submits_through_the_forward_and_says_how_to_follow(job_server, tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, token = job_server
    dashboard_port = int(address.rsplit(":", 1)[1])
    _use_token(monkeypatch, token, tmp_path)
    stand_in = tmp_path / "ray"
    stand_in.write_text(f"#!{sys.executable}\n{STAND_IN_RAY}")
    stand_in.chmod(0o755)
    monkeypatch.setattr(jobs, "_ray_executable", lambda: str(stand_in))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    shutil.copy(REPO / "search_spaces" / "demo.yaml", work / "demo.yaml")
    (work / "gpu-cluster.yaml").write_text("cluster_name: test\n")
    (work / "gpu.yaml").write_text(f"sweep: demo.yaml\nlauncher: gpu-cluster.yaml\nstorage: {tmp_path}/runs\n"
                                   f"ray: {{address: auto, dashboard_port: {dashboard_port}}}\n")
    out = io.StringIO()
    assert jobs.launch_as_job(load_cluster("gpu.yaml"), Path("gpu.yaml"), None, Console(file=out, width=80)) == 0

    printed = out.getvalue()
    job_id = next(word for word in printed.split() if word.startswith("raysweep-demo-")).rstrip(":")
    client = JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})
    assert client.get_job_info(job_id).entrypoint == "python -m raysweep.cli launch gpu.yaml --sweep demo.yaml"
    client.stop_job(job_id)  # the sweep itself is not this test's business

    async def follow() -> None:
        async for _ in client.tail_job_logs(job_id):
            pass

    asyncio.run(follow())
    assert client.get_job_status(job_id) in (JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED)
    follow_at = f"--address http://127.0.0.1:{dashboard_port}"
    assert f"ray dashboard --port {dashboard_port} --remote-port {dashboard_port} gpu-cluster.yaml" in printed
    assert f"ray job logs -f {job_id} {follow_at}" in printed
    assert f"ray job stop {job_id} {follow_at}" in printed
    assert f"raysweep status {tmp_path}/runs/demo" in printed
    assert "`ray job` sends it only with `export RAY_AUTH_MODE=token`" in printed
