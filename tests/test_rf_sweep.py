"""The random-feature family through the real launch: Tune trials, the results table and the report."""

from __future__ import annotations

import contextlib
import io

from raysweep.cli import main
from raysweep.config import load_sweep
from raysweep.store import RunDir, read_results

from conftest import REPO, write_yaml


def test_shipped_random_feature_sweep_plans_over_a_thousand_trials():
    from raysweep.families.random_features import plan_rf_trials

    trials = plan_rf_trials(load_sweep(REPO / "search_spaces" / "random_features.yaml"))
    assert len(trials) == 8 * 3 * 10 * 5 + 8 and len({t.key for t in trials}) == len(trials)


def test_a_random_feature_sweep_launches_and_reports_agreement_with_the_infinite_width_order(local_ray, tmp_path,
                                                                                             monkeypatch):
    monkeypatch.setattr("raysweep.sweep.trainable.TRIALS_PER_EXPERIMENT", 7)  # 20 trials: three successive experiments
    sweep = write_yaml(tmp_path / "rf.yaml", {"name": "rf", "random_features": {
        "widths": [256], "lrs": [0.003, 1.0], "seeds": [0, 1], "num_distributions": 4, "num_steps": 500,
        "kernel_samples": 1000}})
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(tmp_path / "runs")})
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(["launch", str(cluster)])
    output = buffer.getvalue()
    assert status == 0, output
    assert "Trained 20 of 20 planned trials" in output  # 4 datasets × 2 lrs × 2 seeds + 4 optima
    frame = read_results(RunDir(tmp_path / "runs" / "rf")).to_pandas()
    assert set(frame["model"]) == {"rf-m256", "infinite-width (kernel)"} and frame["loss"].ge(0).all()
    assert "proxy rf-m256 @ lr 1" in output and "Verdict:" in output
