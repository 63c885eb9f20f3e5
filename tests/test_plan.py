"""`raysweep plan` (and `launch --dry-run`): counts, FLOPs, shards and a timed calibration, nothing trained."""

from __future__ import annotations

import json

import pytest
import yaml

from raysweep.cli import main
from raysweep.config import load_cluster, load_sweep
from raysweep.families import trial_family

from conftest import micro_sweep, write_yaml


def profile(tmp_path, sweep: dict):
    sweep_file = write_yaml(tmp_path / "micro.yaml", sweep)
    return write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep_file), "storage": str(tmp_path / "runs")})


def planned(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_plan_counts_what_is_left_to_train_and_its_six_n_d_flops_without_training(tmp_path, capsys):
    cluster = profile(tmp_path, micro_sweep())
    trials = trial_family(load_sweep(tmp_path / "micro.yaml"), load_cluster(cluster)).plan()
    stored = trials[0]  # a proxy already stored: only its file's name is read
    (tmp_path / "runs" / "micro" / "results").mkdir(parents=True)
    (tmp_path / "runs" / "micro" / "results" / f"trial-{stored.key}.parquet").write_bytes(b"")

    plan = planned(capsys, ["plan", str(cluster), "--json", "--calibrate-steps", "0"])
    roles = {r["role"]: r for r in plan["roles"]}
    proxies, targets = [t for t in trials if t.role == "proxy"], [t for t in trials if t.role == "target"]
    assert len(proxies) == 2 * 2 * 2 and len(targets) == 2 * 2 * 2  # recipes × lrs × seeds (× one wd, one bs)
    assert (roles["proxy"]["planned"], roles["proxy"]["stored"], roles["proxy"]["to_train"]) == (8, 1, 7)
    assert roles["target"]["to_train"] == 8 and roles["target"]["trial_hours"] is None
    assert roles["proxy"]["flops_to_train"] == pytest.approx(
        sum(6 * t.num_params * t.num_sequences * t.seq_len for t in proxies[1:]))
    assert [recipe for recipe, _ in plan["shards"]] == ["balanced", "low_quality"]
    assert plan["shards"][0][1] == max(t.num_sequences for t in trials if t.recipe == "balanced")
    assert not (tmp_path / "runs" / "micro" / "plan.json").exists()  # nothing written, nothing moved


def test_a_calibrated_plan_prices_every_role_in_trial_hours_and_counts_a_tpe_budget(tmp_path, capsys):
    sweep = micro_sweep()
    sweep["target"]["search"] = {"type": "tpe", "trials_per_recipe": 3}
    cluster = profile(tmp_path, sweep)
    plan = planned(capsys, ["plan", str(cluster), "--json", "--calibrate-steps", "2"])
    roles = {r["role"]: r for r in plan["roles"]}
    assert roles["target"]["proposed"] and roles["target"]["planned"] == 3 * 2 * 2  # per recipe × seeds × recipes
    assert all(r["trial_hours"] > 0 for r in roles.values()) and plan["calibrated_on"].startswith("cpu")
    assert main(["launch", str(cluster), "--dry-run"]) == 0  # the same plan, as a table
    out = capsys.readouterr().out
    assert "proposed by TPE" in out and "Trial-hours from timed steps on cpu" in out


def test_set_overrides_change_the_sweep_and_the_profile_checked_like_the_file(tmp_path, capsys):
    cluster = profile(tmp_path, micro_sweep())
    plan = planned(capsys, ["plan", str(cluster), "--json", "--calibrate-steps", "0",
                            "--set", "proxy.seeds=[0, 1, 2]", "--set", "target.lrs=[1e-3]",
                            "--set", "max_concurrent_trials=1"])
    roles = {r["role"]: r["planned"] for r in plan["roles"]}
    assert roles == {"proxy": 2 * 2 * 3, "target": 2 * 1 * 2}  # recipes × lrs × seeds
    assert main(["plan", str(cluster), "--set", "proxy.lrs=-1", "--set", "recipes[5].epochs=2",
                 "--set", "max_concurrent_trials=0"]) == 2
    err = capsys.readouterr().err
    assert "cluster.yaml: max_concurrent_trials: must be > 0 (got 0) (set by --set max_concurrent_trials=0)" in err
    assert main(["plan", str(cluster), "--set", "proxy.lrs=-1", "--set", "recipes[5].epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "micro.yaml: proxy.lrs: must be a list (got -1) (set by --set proxy.lrs=-1)" in err
    assert "recipes[5].epochs: index 5 cannot be set: the file's value is a list of 2" in err
    assert main(["plan", str(cluster), "--set", "proxy.lrs"]) == 2
    assert "--set: proxy.lrs: must be KEY.PATH=VALUE" in capsys.readouterr().err


def test_a_launch_with_overrides_stores_the_sweep_as_it_ran():
    from raysweep.config.overrides import effective_text, parse_overrides

    text = "# the demo\nname: demo\nproxy: {lrs: [1.0e-4], seeds: [0]}\n"
    assert effective_text(text, [], "s.yaml") == text
    stored = effective_text(text, parse_overrides(["proxy.seeds=[0, 1]", "select.top_k=2"]), "s.yaml")
    assert stored.startswith("# s.yaml with --set proxy.seeds=[0, 1] --set select.top_k=2\n")
    assert yaml.safe_load(stored) == {"name": "demo", "proxy": {"lrs": [1e-4], "seeds": [0, 1]},
                                      "select": {"top_k": 2}}
