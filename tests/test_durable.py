"""Runs that outlive their driver and proxies that stop once their ranking has settled, on real Ray and torch."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from rich.console import Console

from raysweep.cli import main
from raysweep.config import load_cluster, load_sweep
from raysweep.families.language_model import build_data, plan_trials
from raysweep.report import report_run
from raysweep.status import sweep_status
from raysweep.store import RunDir, read_results
from raysweep.sweep import LaunchOutcome, launch
from raysweep.train import train

from conftest import REPO, micro_sweep, storage_with, wait_for, write_yaml


def launch_profile(cluster_path: Path) -> LaunchOutcome:
    """What ``raysweep launch PROFILE`` does before it prints, with the launch's own lines kept quiet."""
    cluster = load_cluster(cluster_path)
    return launch(cluster, load_sweep(cluster.sweep), Console(file=io.StringIO()))


def eight_evaluation_sweep(tmp_path, shards: Path, name: str, **cluster_fields) -> tuple[Path, Path, Path]:
    """(sweep file, cluster profile, run dir) of a few trials that checkpoint 8 times each, to interrupt."""
    sweep_data = micro_sweep(name=name)
    sweep_data["proxy"].update(lrs=[1.0e-3], tokens_per_param=4)
    sweep_data["target"].update(lrs=[1.0e-3])
    sweep_data["training"]["num_evals"] = 8
    sweep = write_yaml(tmp_path / f"{name}.yaml", sweep_data)
    storage = storage_with(shards, tmp_path)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage), **cluster_fields})
    return sweep, cluster, tmp_path / "runs" / name


def _stored_and_in_flight(run_dir: Path) -> bool:
    """A trial stored, and a checkpoint of one that is not: a trial that has just stored its rows keeps its
    checkpoint for a moment, and killing then would interrupt nothing."""
    stored = {p.name.removesuffix(".parquet") for p in run_dir.glob("results/trial-*.parquet")}
    return bool(stored) and any(p.name.removesuffix(".pt") not in stored for p in run_dir.glob("checkpoints/*.pt"))


def test_a_driver_killed_mid_sweep_resumes_from_checkpoints_without_losing_or_repeating_a_row(local_ray, tmp_path,
                                                                                            shared_shards):
    sweep, cluster, run_dir = eight_evaluation_sweep(tmp_path, shared_shards, "killed", ray={"num_cpus": 2},
                                                     max_concurrent_trials=1)
    driver = subprocess.Popen([sys.executable, "-m", "raysweep.cli", "launch", str(cluster)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: _stored_and_in_flight(run_dir), "a stored trial and a checkpoint of another", process=driver)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, as when a machine goes away
    driver.wait()
    stored_before = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("results/trial-*.parquet")}
    interrupted = {p.name.removesuffix(".pt") for p in run_dir.glob("checkpoints/*.pt")}

    outcome = launch_profile(cluster)

    planned = plan_trials(load_sweep(sweep))
    assert (outcome.num_planned, outcome.num_trained, outcome.errors) == (
        len(planned), len(planned) - len(stored_before), [])
    results = run_dir / "results"
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("trial-*.parquet") if p.name in stored_before} \
        == stored_before  # finished trials were not run again
    frame = read_results(RunDir(run_dir)).to_pandas()
    assert set(frame["trial_key"]) == {t.key for t in planned}
    per_trial = frame.groupby(["trial_key", "step", "domain", "metric"]).size()
    assert per_trial.eq(1).all()  # no row lost or duplicated
    assert not list(run_dir.glob("checkpoints/*.pt")) and not list(run_dir.glob("running/*"))
    assert {f"trial-{t.key}" for t in planned} >= interrupted and interrupted
    # Bit for bit what an uninterrupted run of each interrupted trial gives on this machine, with the one thread a
    # 1-CPU Ray worker computes with (another thread count sums in another order: last-bit differences).
    specs = {f"trial-{t.key}": t for t in planned}
    data = build_data(load_sweep(sweep), planned, tmp_path / "runs" / "shards")  # the cached shards
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in interrupted:
            whole = train(specs[name], data[specs[name].recipe])
            expected = {(e.step, domain, "loss"): loss for e in whole.evaluations for domain, loss in e.losses.items()}
            expected |= {(e.step, task, metric): value for e in whole.evaluations for task, scores in e.tasks.items()
                         for metric, value in scores.items()}  # the task scores of a resumed run are the same too
            stored = frame[frame["trial_key"] == specs[name].key]
            assert dict(zip(zip(stored["step"], stored["domain"], stored["metric"]), stored["value"])) == expected
    finally:
        torch.set_num_threads(threads)


def test_a_trial_whose_worker_is_killed_is_retried_and_the_sweep_completes_without_a_failure(local_ray, tmp_path,
                                                                                           shared_shards):
    sweep, cluster, run_dir = eight_evaluation_sweep(tmp_path, shared_shards, "lost")
    killed: list[str] = []

    def kill_one_worker() -> bool:
        """Kill the worker of a trial that has a checkpoint, as the OOM killer does; whether one was found."""
        for checkpoint in run_dir.glob("checkpoints/*.pt"):
            marker = run_dir / "running" / checkpoint.with_suffix(".json").name
            with contextlib.suppress(OSError, ValueError):
                os.kill(json.loads(marker.read_text())["pid"], signal.SIGKILL)
                killed.append(checkpoint.stem.removeprefix("trial-"))
                return True
        return False

    def kill_the_first_worker_with_a_checkpoint() -> None:
        wait_for(kill_one_worker, "a running trial with a checkpoint to kill")

    killer = threading.Thread(target=kill_the_first_worker_with_a_checkpoint)
    killer.start()
    outcome = launch_profile(cluster)
    killer.join()

    planned = plan_trials(load_sweep(sweep))
    assert killed and (outcome.num_planned, outcome.num_trained, outcome.errors) == (len(planned), len(planned), [])
    frame = read_results(RunDir(run_dir)).to_pandas()
    assert set(frame["trial_key"]) == {t.key for t in planned} and set(frame["status"]) == {"ok"}
    victim = frame[frame["trial_key"] == killed[0]]
    assert not victim.duplicated(["step", "domain", "metric"]).any() and victim["step"].nunique() == 8
    assert not list(run_dir.glob("failed/*")) and not list(run_dir.glob("checkpoints/*"))


def test_early_stop_stops_settled_proxy_settings_and_reports_the_compute_saved(local_ray, tmp_path, shared_shards):
    sweep_data = micro_sweep(name="settling")
    sweep_data["training"]["num_evals"] = 3
    sweep_data["proxy"]["early_stop"] = {"min_spearman": 0.0, "confidence": 0.6}
    sweep = write_yaml(tmp_path / "settling.yaml", sweep_data)
    storage = storage_with(shared_shards, tmp_path)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage)})

    outcome = launch_profile(cluster)

    assert outcome.errors == []
    (proxies,) = [row for row in report_run(tmp_path / "runs" / "settling", print).compute if row.role == "proxy"]
    assert proxies.num_stopped > 0 and proxies.saved_flops > 0
    frame = read_results(RunDir(tmp_path / "runs" / "settling")).to_pandas()
    last = frame.groupby("trial_key").agg(role=("role", "first"), status=("status", "first"), step=("step", "max"),
                                          num_steps=("num_steps", "first"))
    stopped = last[last["status"] == "stopped"]
    assert len(stopped) == proxies.num_stopped
    assert (stopped["role"] == "proxy").all() and (stopped["step"] < stopped["num_steps"]).all()
    targets = last[last["role"] == "target"]
    assert (targets["status"] == "ok").all() and (targets["step"] == targets["num_steps"]).all()
    assert not list((tmp_path / "runs" / "settling").glob("checkpoints/*.pt"))
    again = launch_profile(cluster)
    assert (again.num_planned, again.num_trained) == (len(last), 0)


def test_a_tpe_target_search_with_asha_gives_every_recipe_its_budget_and_resumes_its_studies(local_ray, tmp_path,
                                                                                            shared_shards, monkeypatch):
    monkeypatch.setattr("raysweep.sweep.trainable.TRIALS_PER_EXPERIMENT", 8)  # 14 trials: two Tune experiments
    sweep_data = micro_sweep(name="searched")
    sweep_data["proxy"].update(lrs=[4.0e-3], seeds=[0])
    sweep_data["target"].update(lrs=[1.0e-3, 3.0e-2], search={"type": "tpe", "trials_per_recipe": 3, "seed": 0},
                                asha={"grace_evals": 1, "reduction_factor": 2})
    sweep = write_yaml(tmp_path / "searched.yaml", sweep_data)
    storage = storage_with(shared_shards, tmp_path)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage)})

    assert launch_profile(cluster).errors == []
    run_dir = tmp_path / "runs" / "searched"
    frame = read_results(RunDir(run_dir)).to_pandas()
    targets = frame[frame["role"] == "target"].groupby("trial_key").agg(
        recipe=("recipe", "first"), lr=("lr", "first"), status=("status", "first"))
    assert targets.groupby("recipe").size().to_dict() == {"balanced": 6, "low_quality": 6}  # 3 configurations × 2 seeds
    assert targets["lr"].between(1.0e-3, 3.0e-2).all() and targets["lr"].nunique() > 2  # searched, not the grid
    assert set(targets["status"]) <= {"ok", "stopped"} and "stopped" in set(targets["status"])
    assert sorted(p.name for p in (run_dir / "studies").iterdir()) == ["balanced.log", "low_quality.log"]
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["trial_keys"]["target"] = plan["trial_keys"]["target"][:5]  # as written while the search was proposing
    (run_dir / "plan.json").write_text(json.dumps(plan))
    assert [(r.role, r.planned) for r in sweep_status(run_dir)[0]] == [("proxy", 2), ("target", 12)]
    again = launch_profile(cluster)
    assert (again.num_planned, again.num_trained) == (14, 0)


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs to fill up (it needs the right to mount one: skipped without it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs privileges this machine does not give")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_up_mid_sweep_loses_and_repeats_nothing_and_the_launch_says_so(local_ray, small_disk,
                                                                                          shared_shards, capsys):
    sweep_data = micro_sweep(name="full")
    sweep_data["proxy"].update(lrs=[1.0e-4], seeds=[0])
    sweep_data["target"].update(lrs=[1.0e-3], seeds=[0])
    sweep = write_yaml(small_disk / "full.yaml", sweep_data)
    storage = storage_with(shared_shards, small_disk)  # the shards stay outside the small disk
    cluster = write_yaml(small_disk / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage),
                                                       "max_concurrent_trials": 1, "trial_retries": 0})
    run_dir = storage / "full"
    stored_before: dict[str, bytes] = {}

    def fill_the_disk_after_the_first_stored_trial() -> None:
        wait_for(lambda: list(run_dir.glob("results/trial-*.parquet")), "a stored trial")
        stored_before.update({p.name: p.read_bytes() for p in run_dir.glob("results/trial-*.parquet")})
        with open(small_disk / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 2**16)

    filler = threading.Thread(target=fill_the_disk_after_the_first_stored_trial)
    filler.start()
    status = main(["launch", str(cluster)])
    filler.join()
    out, err = capsys.readouterr()
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert (status == 2 and last.startswith("raysweep: storage: cannot write")) or \
        (status == 1 and "No space left on device" in out), (out[-2000:], err[-2000:])
    assert {p.name: p.read_bytes() for p in run_dir.glob("results/trial-*.parquet") if p.name in stored_before} \
        == stored_before and stored_before  # what was recorded stays whole

    (small_disk / "filler").unlink()
    again = launch_profile(cluster)
    planned = plan_trials(load_sweep(sweep))
    assert again.errors == [] and again.num_trained == len(planned) - len(stored_before)
    frame = read_results(RunDir(run_dir)).to_pandas()
    assert set(frame["trial_key"]) == {t.key for t in planned}
    assert not frame.duplicated(["trial_key", "step", "domain", "metric"]).any()


def test_a_results_folder_briefly_away_loses_and_repeats_nothing_and_the_launch_says_so(local_ray, tmp_path,
                                                                                        shared_shards):
    sweep_data = micro_sweep(name="away")
    sweep_data["proxy"].update(lrs=[1.0e-4], seeds=[0])
    sweep_data["target"].update(lrs=[1.0e-3], seeds=[0])
    sweep = write_yaml(tmp_path / "away.yaml", sweep_data)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "max_concurrent_trials": 1,
                                                     "storage": str(storage_with(shared_shards, tmp_path))})
    run_dir = tmp_path / "runs" / "away"
    results, away = run_dir / "results", run_dir / "results.away"
    stored_before: dict[str, bytes] = {}

    def take_the_results_folder_away_for_a_while() -> None:
        wait_for(lambda: list(results.glob("trial-*.parquet")), "a stored trial")
        stored_before.update({p.name: p.read_bytes() for p in results.glob("trial-*.parquet")})
        os.replace(results, away)  # as an unmounted share: the folder is gone, not empty
        try:
            wait_for(lambda: list(run_dir.glob("outages/*.json")), "a trial's write meeting the outage")
        finally:
            os.replace(away, results)

    thread = threading.Thread(target=take_the_results_folder_away_for_a_while)
    thread.start()
    outcome = launch_profile(cluster)
    thread.join()

    planned = plan_trials(load_sweep(sweep))
    assert outcome.errors == [] and outcome.num_trained == len(planned)
    assert len(outcome.outages) == 1 and "was written after waiting" in outcome.outages[0], outcome.outages
    assert {p.name: p.read_bytes() for p in results.glob("trial-*.parquet") if p.name in stored_before} \
        == stored_before and stored_before
    frame = read_results(RunDir(run_dir)).to_pandas()
    assert set(frame["trial_key"]) == {t.key for t in planned}
    assert not frame.duplicated(["trial_key", "step", "domain", "metric"]).any()
    assert not away.exists() and not list(run_dir.glob("outages/*"))  # said once, then gone


def test_trials_that_cannot_start_for_long_stop_the_launch_with_what_they_ask_and_what_is_free(local_ray, tmp_path,
                                                                                               shared_shards, capsys):
    sweep_data = micro_sweep(name="starved")
    sweep_data["proxy"].update(lrs=[1.0e-4], seeds=[0])
    sweep = write_yaml(tmp_path / "starved.yaml", sweep_data)
    cluster = write_yaml(tmp_path / "cluster.yaml", {
        "sweep": str(sweep), "storage": str(storage_with(shared_shards, tmp_path)), "wait_for_resources_s": 2,
        "resources": {"proxy": {"cpu": 2}, "target": {"cpu": 2}}})  # a node has 2: another job holds one
    held = local_ray.util.placement_group([{"CPU": 1}])
    local_ray.get(held.ready(), timeout=60)
    try:
        status = main(["launch", str(cluster)])
    finally:
        local_ray.util.remove_placement_group(held)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err[-2000:]
    assert "wait_for_resources_s: stopped after" in err and "asks for 2 CPU" in err and "1 CPU free" in err, err
