from __future__ import annotations

import math

import pyarrow as pa
import pytest

from raysweep.report import summarize
from raysweep.store import SCHEMA


def rows(role, recipe, lr, seed, loss, status="ok"):
    return [{"trial_key": f"{role}-{recipe}-{lr}-{seed}", "role": role, "recipe": recipe, "model": "m",
             "num_params": 1, "lr": lr, "batch_size": 8, "weight_decay": 0.0, "seed": seed, "step": step,
             "tokens": step * 8, "domain": "all", "loss": loss + (10 if step == 1 else 0), "status": status,
             "wall_s": 1.0} for step in (1, 2)]


def table(*groups):
    return pa.Table.from_pylist([row for group in groups for row in group], schema=SCHEMA)


def test_tuned_loss_is_the_best_configurations_seed_mean_at_the_final_step():
    summary = summarize(table(
        rows("target", "a", 1e-3, 0, 2.0), rows("target", "a", 1e-3, 1, 2.2),   # mean 2.1
        rows("target", "a", 1e-2, 0, 1.9), rows("target", "a", 1e-2, 1, 2.5),   # mean 2.2
        rows("target", "b", 1e-3, 0, 1.5), rows("target", "b", 1e-3, 1, 1.7),
        rows("proxy", "a", 1e-5, 0, 3.0), rows("proxy", "a", 1e-5, 1, 3.0),
        rows("proxy", "b", 1e-5, 0, 2.0), rows("proxy", "b", 1e-5, 1, 2.0)), n_boot=200)
    assert summary.recipes == ["b", "a"]
    assert summary.target_loss["a"] == pytest.approx(2.1) and summary.target_config["a"].startswith("lr 0.001")
    assert summary.target_std["b"] == pytest.approx(math.sqrt(0.02))
    (proxy,) = summary.proxies
    assert proxy.ranks == {"b": 1, "a": 2}
    assert proxy.stats["spearman"][0] == pytest.approx(1.0) and proxy.stats["regret@1"][0] == 0.0


def test_missing_runs_are_reported_not_dropped():
    summary = summarize(table(
        rows("target", "a", 1e-3, 0, 2.0), rows("target", "a", 1e-3, 1, 2.2),
        rows("target", "b", 1e-3, 0, 1.5),
        rows("proxy", "a", 1e-5, 0, 3.0), rows("proxy", "b", 1e-5, 0, 2.0),
        rows("proxy", "c", 1e-5, 0, 2.0)), n_boot=200)
    assert any(line.startswith("c: no target runs") for line in summary.missing)
    assert any("uneven seeds: a" in line for line in summary.missing)


def test_a_diverged_target_seed_makes_its_configuration_lose():
    summary = summarize(table(
        rows("target", "a", 1e-3, 0, 2.0), rows("target", "a", 1e-3, 1, math.inf, status="diverged"),
        rows("target", "a", 1e-4, 0, 2.5), rows("target", "a", 1e-4, 1, 2.5),
        rows("target", "b", 1e-3, 0, 1.5), rows("target", "b", 1e-3, 1, 1.5)), n_boot=200)
    assert summary.target_loss["a"] == pytest.approx(2.5) and summary.num_diverged == 1
