"""The random-feature family through the real launch: Tune trials, the results table and the report."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from raysweep.config import load_cluster, load_sweep
from raysweep.report import report_run
from raysweep.store import RunDir, read_results
from raysweep.sweep import launch
from raysweep.trials import RANDOM_FEATURES

from conftest import REPO, write_yaml


def test_shipped_random_feature_sweep_plans_over_a_thousand_trials():
    from raysweep.families.random_features import plan_rf_trials

    trials = plan_rf_trials(load_sweep(REPO / "search_spaces" / "random_features.yaml"))
    assert len(trials) == 8 * 3 * 10 * 5 + 8 and len({t.key for t in trials}) == len(trials)


def test_a_random_feature_sweep_launches_and_reports_agreement_with_the_infinite_width_order(local_ray, tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setattr("raysweep.sweep.trainable.TRIALS_PER_EXPERIMENT", 12)  # 20 trials: two successive experiments
    sweep = write_yaml(tmp_path / "rf.yaml", {"name": "rf", "random_features": {
        "widths": [256], "lrs": [0.003, 1.0], "seeds": [0, 1], "num_distributions": 4, "num_steps": 500,
        "kernel_samples": 1000}})
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(tmp_path / "runs")})
    outcome = launch(load_cluster(cluster), load_sweep(sweep), Console(file=io.StringIO()))
    assert (outcome.num_planned, outcome.num_trained, outcome.errors) == (20, 20, [])  # 4 datasets × 2 lrs × 2 seeds
    frame = read_results(RunDir(tmp_path / "runs" / "rf")).to_pandas()                 # + 4 optima
    assert set(frame["model"]) == {"rf-m256", RANDOM_FEATURES.target_model} and frame["loss"].ge(0).all()
    report = report_run(outcome.run_dir, pytest.fail)
    assert report.family == RANDOM_FEATURES and len(report.main.targets) == 4
    assert {(s.model, s.lr) for s in report.main.proxies if s.agreement} == {("rf-m256", 0.003), ("rf-m256", 1.0)}
