"""A micro sweep through real Ray Tune, real Ray Data and real torch, launched once for this module."""

from __future__ import annotations

import contextlib
import io
import math
import shutil

import pytest

from raysweep.cli import main
from raysweep.config import load_sweep
from raysweep.report import report_run
from raysweep.status import sweep_status
from raysweep.store import SCHEMA, RunDir, read_results
from raysweep.families.language_model import plan_trials

from conftest import micro_sweep, storage_with, write_yaml


def summary_part(output: str) -> str:
    return output[output.index("Recipes by tuned target loss"):]


@pytest.fixture(scope="module")
def launched(local_ray, tmp_path_factory, shared_shards):
    """Launch the micro sweep with one proxy learning rate so large that its runs diverge."""
    root = tmp_path_factory.mktemp("launch")
    sweep_data = micro_sweep()
    sweep_data["proxy"]["lrs"].append(1.0e30)
    sweep = write_yaml(root / "micro.yaml", sweep_data)
    storage = storage_with(shared_shards, root)
    cluster = write_yaml(root / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage)})
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.MonkeyPatch.context() as patch:
        patch.setattr("raysweep.sweep.progress.LOG_EVERY_S", 0.0)  # a progress line after every trial
        status = main(["launch", str(cluster)])
    return {"status": status, "output": buffer.getvalue(), "cluster": cluster, "sweep": sweep,
            "run_dir": root / "runs" / "micro"}


@pytest.fixture
def own_copy(launched, tmp_path):
    """The launched run copied for a test that damages it, so that no other test sees the damage."""
    shutil.copytree(launched["run_dir"].parent, tmp_path / "runs")
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(launched["sweep"]),
                                                     "storage": str(tmp_path / "runs")})
    return {"cluster": cluster, "run_dir": tmp_path / "runs" / "micro"}


def test_launch_trains_every_planned_trial_and_prints_the_ranking(launched):
    planned = plan_trials(load_sweep(launched["sweep"]))
    assert len(planned) == 2 * 3 * 2 + 2 * 2 * 2
    assert launched["status"] == 0
    output = launched["output"]
    assert f"Trained {len(planned)} of {len(planned)} planned trials" in output
    assert "Spearman" in output and "regret@2" in output


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
    assert finished.groupby("trial_key").size().eq(2 * len(domains)).all()  # 2 evaluations × 6 domains
    assert set(finished["domain"]) == domains
    for key, rows in finished.groupby("trial_key"):
        spec = planned[key]
        assert set(rows["step"]) == {spec.num_steps // 2, spec.num_steps}
        assert (rows["tokens"] == rows["step"] * spec.batch_size * spec.seq_len).all()
        assert rows["loss"].between(0, math.log(257) + 1).all() and (rows["wall_s"] > 0).all()


def test_a_diverging_trial_is_recorded_as_diverged_and_the_sweep_goes_on(launched):
    frame = read_results(RunDir(launched["run_dir"])).to_pandas()
    diverged = frame[frame["lr"] == 1.0e30]
    assert set(diverged["status"]) == {"diverged"} and diverged["trial_key"].nunique() == 4
    assert (diverged["loss"] == math.inf).all()
    assert set(frame.loc[frame["lr"] != 1.0e30, "status"]) == {"ok"}


def test_relaunch_after_completion_trains_nothing_and_prints_the_same_summary(launched, capsys):
    files = sorted((launched["run_dir"] / "results").glob("*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main(["launch", str(launched["cluster"])]) == 0
    output = capsys.readouterr().out
    assert "Trained 0 of 20 planned trials" in output
    assert summary_part(output) == summary_part(launched["output"])
    assert [f.stat().st_mtime_ns for f in sorted((launched["run_dir"] / "results").glob("*.parquet"))] == stamps


def test_report_prints_the_summary_from_the_stored_table_alone(launched, capsys):
    assert main(["report", str(launched["run_dir"])]) == 0
    assert summary_part(capsys.readouterr().out) == summary_part(launched["output"])


def test_select_mode_tunes_targets_only_on_the_proxy_shortlist_and_bounds_the_pick(launched, tmp_path, shared_shards,
                                                                                    capsys):
    sweep_data = micro_sweep(name="pick", select={"top_k": 1, "validated_by": str(launched["run_dir"])})
    sweep = write_yaml(tmp_path / "pick.yaml", sweep_data)
    storage = storage_with(shared_shards, tmp_path)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage)})
    assert main(["launch", str(cluster)]) == 0
    out = capsys.readouterr().out
    frame = read_results(RunDir(tmp_path / "runs" / "pick")).to_pandas()
    targets = frame[frame["role"] == "target"]
    (shortlisted,) = set(targets["recipe"])
    assert frame.loc[frame["role"] == "proxy", "recipe"].nunique() == 2 and targets["trial_key"].nunique() == 4
    assert f"shortlisted {shortlisted} (best first)" in out and f"Pick: {shortlisted}" in out
    assert f"regret@1 of proxy opt-nano @ lr 0.0001 on the validation sweep {launched['run_dir']}" in out


def test_a_truncated_result_file_is_moved_aside_reported_and_its_trial_retrained(own_copy, capsys):
    results = own_copy["run_dir"] / "results"
    victim = sorted(results.glob("trial-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    assert main(["launch", str(own_copy["cluster"])]) == 0
    out = capsys.readouterr().out
    assert f"corrupt result: {victim.name} is unreadable" in out and "Trained 1 of" in out
    assert (results / "corrupt" / victim.name).is_file() and victim.is_file()


def test_trials_that_raise_are_retried_then_recorded_as_failed_and_the_sweep_goes_on(own_copy, capsys):
    results = own_copy["run_dir"] / "results"
    frame = read_results(RunDir(own_copy["run_dir"])).to_pandas()
    doomed = set(frame.loc[(frame["recipe"] == "low_quality") & (frame["role"] == "target"), "trial_key"])
    for key in doomed:
        (results / f"trial-{key}.parquet").unlink()
    (shards,) = (own_copy["run_dir"].parent / "shards").glob("low_quality-*")
    for part in (shards / "data").rglob("*.parquet"):
        part.write_bytes(b"not parquet")  # storage gone bad under a finished build
    assert main(["launch", str(own_copy["cluster"])]) == 1
    out = capsys.readouterr().out
    assert "Trained 0 of 20 planned trials" in out and out.count("failed:") == len(doomed)
    failures = {f.name for f in (results / "failed").iterdir()}
    assert failures == {f"trial-{key}.json" for key in doomed}
    report = report_run(own_copy["run_dir"], print)
    assert sum(line.startswith("failed after its retries: target-low_quality") for line in report.missing) \
        == len(doomed)
    roles, _ = sweep_status(own_copy["run_dir"])  # counted from the files alone
    counts = {r.role: (r.planned, r.finished, r.diverged, r.failed, r.started, r.pending) for r in roles}
    assert counts == {"proxy": (12, 12, 4, 0, 0, 0), "target": (8, 4, 0, 4, 0, 0)}
