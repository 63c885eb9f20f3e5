"""A micro sweep through real Ray Tune, real Ray Data and real torch, launched once for this module."""

from __future__ import annotations

import io
import json
import math
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from raysweep.cli import main
from raysweep.config import load_cluster, load_sweep
from raysweep.errors import ClusterError
from raysweep.families.language_model import plan_trials
from raysweep.report import report_run
from raysweep.select import launch_select
from raysweep.status import sweep_status
from raysweep.store import SCHEMA, RunDir, read_results
from raysweep.sweep import LaunchOutcome, launch

from conftest import micro_sweep, storage_with, write_yaml


def launch_quietly(cluster_path, sweep_path) -> tuple[LaunchOutcome, str]:
    """``launch`` through the API, with its console's output kept for the progress-line test."""
    buffer = io.StringIO()
    outcome = launch(load_cluster(cluster_path), load_sweep(sweep_path), Console(file=buffer, width=200))
    return outcome, buffer.getvalue()


@pytest.fixture(scope="module")
def launched(local_ray, tmp_path_factory, shared_shards):
    """Launch the micro sweep with one proxy learning rate so large that its runs diverge."""
    root = tmp_path_factory.mktemp("launch")
    sweep_data = micro_sweep()
    sweep_data["proxy"]["lrs"].append(1.0e30)
    sweep = write_yaml(root / "micro.yaml", sweep_data)
    storage = storage_with(shared_shards, root)
    cluster = write_yaml(root / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("raysweep.sweep.progress.LOG_EVERY_S", 0.0)  # a progress line after every trial
        outcome, output = launch_quietly(cluster, sweep)
    return {"outcome": outcome, "output": output, "cluster": cluster, "sweep": sweep,
            "run_dir": root / "runs" / "micro", "report": repr(report_run(root / "runs" / "micro", pytest.fail))}


@pytest.fixture
def own_copy(launched, tmp_path):
    """The launched run copied for a test that damages it, so that no other test sees the damage."""
    shutil.copytree(launched["run_dir"].parent, tmp_path / "runs")
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(launched["sweep"]),
                                                     "storage": str(tmp_path / "runs")})
    return {"cluster": cluster, "sweep": launched["sweep"], "run_dir": tmp_path / "runs" / "micro"}


def test_launch_trains_every_planned_trial_and_the_report_scores_every_proxy_setting(launched):
    planned = plan_trials(load_sweep(launched["sweep"]))
    assert len(planned) == 2 * 3 * 2 + 2 * 2 * 2
    outcome = launched["outcome"]
    assert (outcome.num_planned, outcome.num_trained, outcome.errors, outcome.corrupt) == (20, 20, [], [])
    report = report_run(launched["run_dir"], pytest.fail)
    assert len(report.main.targets) == 2 and len(report.main.proxies) == 3
    assert all(2 in s.agreement.regret for s in report.main.proxies)


def test_a_launch_without_a_terminal_prints_progress_lines_for_its_log(launched):
    total = 2 * 3 * 2 + 2 * 2 * 2
    lines = [line for line in launched["output"].splitlines() if line.startswith("trials: ")]
    assert [line.split()[1] for line in lines] == [f"{done}/{total}" for done in range(1, total + 1)]
    assert all(" done, 0 failed, " in line and " elapsed, eta " in line for line in lines)


def test_results_follow_the_documented_schema_one_row_per_trial_checkpoint_and_domain(launched):
    table = read_results(RunDir(launched["run_dir"]))
    assert table.schema == SCHEMA
    frame = table.to_pandas()
    planned = {t.key: t for t in plan_trials(load_sweep(launched["sweep"]))}
    assert set(frame["trial_key"]) == set(planned)
    finished = frame[frame["status"] == "ok"]
    domains = {"web", "code", "math", "dialog", "science", "all"}
    metrics = {"acc", "acc_norm", "acc_bytes", "gold_logprob_per_byte", "chance", "items", "items_in_task"}
    # 2 evaluations × (6 domains + the continuation task's 7 scores and descriptions)
    assert finished.groupby("trial_key").size().eq(2 * (len(domains) + len(metrics))).all()
    losses, tasks = finished[finished["metric"] == "loss"], finished[finished["metric"] != "loss"]
    assert set(losses["domain"]) == domains and set(tasks["domain"]) == {"continuation"}
    assert set(tasks["metric"]) == metrics and tasks["loss"].isna().all()
    assert (losses["value"] == losses["loss"]).all()
    scores = tasks.set_index("metric")["value"]
    assert scores["acc"].between(0, 1).all() and (scores["chance"] == 0.25).all() and (scores["items"] == 40).all()
    for key, rows in losses.groupby("trial_key"):
        spec = planned[key]
        assert set(rows["step"]) == {spec.num_steps // 2, spec.num_steps}
        assert (rows["tokens"] == rows["step"] * spec.batch_size * spec.seq_len).all()
        assert rows["loss"].between(0, math.log(257) + 1).all() and (rows["wall_s"] > 0).all()


def test_results_read_as_one_dataset_in_pandas_pyarrow_polars_and_duckdb_and_say_where_they_came_from(launched):
    import duckdb
    import polars
    import pyarrow.dataset

    results = launched["run_dir"] / "results"
    frame = pd.read_parquet(results)
    assert len(pyarrow.dataset.dataset(results, format="parquet").to_table()) == len(frame)
    assert polars.read_parquet(results / "*.parquet").height == len(frame)
    assert duckdb.sql(f"select count(*) from '{results}/*.parquet'").fetchall() == [(len(frame),)]
    run = json.loads((launched["run_dir"] / "run.json").read_text())
    assert set(frame["sweep"]) == {"micro"} and set(frame["run_id"]) == {run["run_id"]}
    assert run["run_id"].startswith("micro-") and run["sweep"]["proxy"]["lrs"] == [1.0e-4, 4.0e-3, 1.0e30]
    first = sorted(results.glob("trial-*.parquet"))[0]
    metadata = {k.decode(): v.decode() for k, v in pq.read_metadata(first).metadata.items() if b"raysweep" in k}
    assert metadata["raysweep.run_id"] == run["run_id"] and json.loads(metadata["raysweep.sweep"]) == run["sweep"]
    trial, rows = json.loads(metadata["raysweep.trial"]), pd.read_parquet(first)
    assert (trial["recipe"], trial["lr"], trial["seed"], trial["seq_len"]) == (
        rows["recipe"].iloc[0], rows["lr"].iloc[0], rows["seed"].iloc[0], 64)  # the spec of the file's own trial


def olmix_swarm(ratios_path, metrics_path) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """What `olmix fit` expects of its swarm CSVs (its fit docs): joined by `run`, metadata columns run, name,
    index and unnamed ones skipped, domain weights summing to ~1, numeric metrics."""
    ratios, metrics = pd.read_csv(ratios_path), pd.read_csv(metrics_path)
    meta = {"run", "run_id", "name", "index"}
    domains = [c for c in ratios.columns if c not in meta and not c.startswith("Unnamed")]
    columns = [c for c in metrics.columns if c not in meta and not c.startswith("Unnamed")]
    assert ratios[domains].sum(axis=1).sub(1).abs().max() < 0.01
    assert set(ratios["run"]) == set(metrics["run"])
    assert metrics[columns].apply(pd.to_numeric, errors="coerce").notna().all().all()
    return ratios, metrics, domains, columns


def test_export_writes_the_chosen_proxies_as_an_olmix_swarm(launched, tmp_path, capsys):
    assert main(["export", str(launched["run_dir"]), "--format", "olmix", "--out", str(tmp_path / "swarm")]) == 0
    assert "Wrote 4 proxy runs in Olmix's swarm layout" in capsys.readouterr().out  # 2 recipes × 2 seeds
    swarm = tmp_path / "swarm"
    ratios, metrics, domains, columns = olmix_swarm(swarm / "ratios.csv", swarm / "metrics.csv")
    assert set(domains) == {"web", "code", "math", "dialog", "science", "web_low_quality"}
    balanced = ratios[ratios["name"].str.startswith("balanced-")]
    assert (balanced["web"] == 0.3).all() and (balanced["web_low_quality"] == 0).all()
    assert {"all_loss", "web_bpb", "continuation_acc_norm", "continuation_gold_logprob_per_byte"} <= set(columns)
    report = report_run(launched["run_dir"], pytest.fail)
    (chosen,) = report.main.chosen()
    assert metrics["name"].str.contains(f"-lr{chosen.lr:g}-").all()
    frame = read_results(RunDir(launched["run_dir"])).to_pandas().set_index("trial_key")
    first = metrics.iloc[0]
    stored = frame.loc[first["run"]]
    final = stored[(stored["step"] == stored["step"].max()) & (stored["domain"] == "all")]
    assert first["all_loss"] == pytest.approx(final["loss"].iloc[0])


def test_tune_experiments_are_named_after_the_sweep_in_the_run_s_tune_folder(launched):
    assert [p.name for p in (launched["run_dir"] / "tune").iterdir() if p.is_dir()] == ["micro-trials-1"]


def test_recipes_show_reads_the_profile_s_sweep_and_the_manifests_in_its_storage(launched, capsys):
    assert main(["recipes", "show", str(launched["cluster"]), "balanced"]) == 0
    out = capsys.readouterr().out
    assert "balanced: " in out and " sequences × 64 = " in out and "low_quality" not in out
    assert main(["recipes", "show", str(launched["sweep"])]) == 2
    assert "is a sweep file; `recipes show` takes the cluster profile" in capsys.readouterr().err


def test_a_diverging_trial_is_recorded_as_diverged_and_the_sweep_goes_on(launched):
    frame = read_results(RunDir(launched["run_dir"])).to_pandas()
    diverged = frame[frame["lr"] == 1.0e30]
    assert set(diverged["status"]) == {"diverged"} and diverged["trial_key"].nunique() == 4
    losses, tasks = diverged[diverged["metric"] == "loss"], diverged[diverged["metric"] != "loss"]
    assert (losses["loss"] == math.inf).all() and (tasks["value"] == -math.inf).all()  # ranks last either way
    assert set(frame.loc[frame["lr"] != 1.0e30, "status"]) == {"ok"}


def test_relaunch_after_completion_trains_nothing_and_reports_the_same(launched):
    files = sorted((launched["run_dir"] / "results").glob("*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in files]
    outcome, _ = launch_quietly(launched["cluster"], launched["sweep"])
    assert (outcome.num_planned, outcome.num_trained) == (20, 0)
    assert repr(report_run(launched["run_dir"], pytest.fail)) == launched["report"]
    assert [f.stat().st_mtime_ns for f in sorted((launched["run_dir"] / "results").glob("*.parquet"))] == stamps


def test_the_report_command_reads_the_stored_run_alone_and_writes_its_page(launched, tmp_path):
    page = tmp_path / "page.html"
    assert main(["report", str(launched["run_dir"]), "--html", str(page)]) == 0
    assert page.stat().st_size > 0


def test_select_mode_tunes_targets_only_on_the_proxy_shortlist_and_bounds_the_pick(launched, tmp_path, shared_shards):
    sweep_data = micro_sweep(name="pick", select={"top_k": 1, "validated_by": str(launched["run_dir"])})
    sweep = write_yaml(tmp_path / "pick.yaml", sweep_data)
    storage = storage_with(shared_shards, tmp_path)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage)})
    _, selection = launch_select(load_cluster(cluster), load_sweep(sweep), Console(file=io.StringIO()))
    frame = read_results(RunDir(tmp_path / "runs" / "pick")).to_pandas()
    targets = frame[frame["role"] == "target"]
    (shortlisted,) = set(targets["recipe"])
    assert frame.loc[frame["role"] == "proxy", "recipe"].nunique() == 2 and targets["trial_key"].nunique() == 4
    assert selection.shortlist == [shortlisted] and selection.pick == shortlisted
    validation = report_run(launched["run_dir"], pytest.fail)
    setting = next(s for s in validation.main.proxies if (s.model, s.lr) == ("opt-nano", selection.lr))
    assert (selection.model, selection.lr) == ("opt-nano", 1e-4) and selection.bound == setting.agreement.regret[1]


def test_a_truncated_result_file_is_moved_aside_reported_and_its_trial_retrained(own_copy):
    results = own_copy["run_dir"] / "results"
    victim = sorted(results.glob("trial-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    outcome, _ = launch_quietly(own_copy["cluster"], own_copy["sweep"])
    assert outcome.num_trained == 1 and [line.split()[0] for line in outcome.corrupt] == [victim.name]
    assert (own_copy["run_dir"] / "corrupt" / victim.name).is_file() and victim.is_file()


def test_trials_that_raise_are_retried_then_recorded_as_failed_and_the_sweep_goes_on(own_copy, capsys):
    results = own_copy["run_dir"] / "results"
    frame = read_results(RunDir(own_copy["run_dir"])).to_pandas()
    doomed = set(frame.loc[(frame["recipe"] == "low_quality") & (frame["role"] == "target"), "trial_key"])
    for key in doomed:
        (results / f"trial-{key}.parquet").unlink()
    (shards,) = (own_copy["run_dir"].parent / "shards").glob("low_quality-*")
    for part in (shards / "data").rglob("*.parquet"):
        part.write_bytes(b"not parquet")  # storage gone bad under a finished build
    assert main(["launch", str(own_copy["cluster"])]) == 1  # the command says some trials failed
    failures = {f.name for f in (own_copy["run_dir"] / "failed").iterdir()}
    assert failures == {f"trial-{key}.json" for key in doomed}
    # the results folder holds the table alone: it reads as one Parquet dataset whatever failed or is in flight
    assert len(pd.read_parquet(results)) == len(pq.ParquetDataset(results).read()) == \
        read_results(RunDir(own_copy["run_dir"])).num_rows
    report = report_run(own_copy["run_dir"], print)
    assert sum(line.startswith("failed after its retries: target-low_quality") for line in report.missing) \
        == len(doomed)
    capsys.readouterr()  # the launch's own lines
    assert main(["status", str(own_copy["run_dir"]), "--json"]) == 0
    listed = {r["role"]: r for r in json.loads(capsys.readouterr().out)["roles"]}
    assert (listed["target"]["failed"], listed["target"]["pending"]) == (4, 0)
    roles, _ = sweep_status(own_copy["run_dir"])  # counted from the files alone
    counts = {r.role: (r.planned, r.finished, r.diverged, r.failed, r.started, r.pending) for r in roles}
    assert counts == {"proxy": (12, 12, 4, 0, 0, 0), "target": (8, 4, 0, 4, 0, 0)}


@pytest.mark.parametrize("resources", [{"proxy": {"cpu": 8}}, {"target": {"cpu": 1, "gpu": 1.5}}])
def test_a_trial_larger_than_every_node_is_refused_before_anything_trains(local_ray, tmp_path, resources):
    sweep = write_yaml(tmp_path / "micro.yaml", micro_sweep())
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(tmp_path / "runs"),
                                                     "resources": resources})
    (role,) = resources
    with pytest.raises(ClusterError, match=rf"resources\.{role}: one {role} trial asks for .* but the largest node "
                                           r"has 2 CPU\(s\) and 0 GPU\(s\)"):
        launch_quietly(cluster, sweep)
    assert not list((tmp_path / "runs").glob("shards/*"))  # refused before the build
