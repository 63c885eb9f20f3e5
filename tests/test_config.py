from __future__ import annotations

import pytest
import yaml

from raysweep.cli import main
from raysweep.config import ConfigError, load_cluster, load_sweep

from conftest import REPO, micro_sweep, write_yaml


def problems_of(path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    return dict(info.value.problems)


def test_shipped_profiles_and_sweeps_are_valid():
    for profile in ("local.yaml", "h100.yaml"):
        cluster = load_cluster(REPO / "cluster" / profile)
        assert cluster.ray.dashboard_host == "127.0.0.1"
    sweep = load_sweep(REPO / "search_spaces" / "demo.yaml")
    assert len(sweep.recipes) >= 6 and len(sweep.proxy.seeds) >= 2 and len(sweep.target.lrs) >= 3


def test_every_problem_is_listed_with_its_key_path(tmp_path):
    sweep = micro_sweep()
    sweep["recipes"][0]["mix"][2]["weight"] = -1
    sweep["recipes"][0]["mix"][1]["source"] = "nowhere"
    sweep["proxy"]["lrs"] = []
    sweep["target"]["lrs"] = [1.0e-3, 0]
    sweep["target"]["batch_sizes"] = ["big"]
    sweep["training"]["colour"] = "blue"
    del sweep["seq_len"]
    problems = problems_of(write_yaml(tmp_path / "bad.yaml", sweep))
    assert problems == {
        "recipes[0].mix[2].weight": "must be > 0 (got -1.0)",
        "proxy.lrs": "must not be empty",
        "target.lrs": "must be > 0 (got 0.0)",
        "target.batch_sizes[0]": "must be int (got 'big')",
        "training.colour": "unknown key (expected one of: schedule, grad_clip, num_evals, param_dtype)",
        "seq_len": "missing required key",
    }


def test_cross_field_problems_name_the_reference(tmp_path):
    sweep = micro_sweep()
    sweep["recipes"][0]["mix"][1]["source"] = "nowhere"
    sweep["recipes"][1]["name"] = sweep["recipes"][0]["name"]
    sweep["proxy"]["models"] = ["gpt9-huge"]
    problems = problems_of(write_yaml(tmp_path / "bad.yaml", sweep))
    assert problems["recipes[0].mix[1].source"].startswith("unknown source 'nowhere' (defined: web, code")
    assert problems["recipes[1].name"] == "duplicate recipe name 'balanced'"
    assert problems["proxy.models[0]"].startswith("unknown model 'gpt9-huge' (known: ")


def test_empty_recipe_list_and_bad_source_type_are_reported(tmp_path):
    sweep = micro_sweep(recipes=[])
    sweep["sources"]["web"]["type"] = "webcrawl"
    problems = problems_of(write_yaml(tmp_path / "bad.yaml", sweep))
    assert problems["recipes"] == "must not be empty"
    assert problems["sources.web.type"] == "must be one of 'synthetic', 'jsonl', 'parquet', 'text', 'hf', 'filtered' (got 'webcrawl')"


def test_exponent_without_a_dot_is_read_as_a_float(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(micro_sweep()).replace("0.0001", "1e-4"))
    assert "1e-4" in path.read_text()
    assert load_sweep(path).proxy.lrs[0] == 1e-4


def test_cli_exits_2_and_names_file_and_key_without_traceback(tmp_path, capsys):
    sweep = micro_sweep()
    sweep["recipes"][0]["mix"][0]["weight"] = 0
    bad = write_yaml(tmp_path / "bad.yaml", sweep)
    assert main(["launch", str(REPO / "cluster" / "local.yaml"), "--sweep", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: recipes[0].mix[0].weight: must be > 0 (got 0.0)" in err
    assert "Traceback" not in err


def test_missing_sweep_file_is_a_config_error(tmp_path, capsys):
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(tmp_path / "absent.yaml")})
    assert main(["launch", str(cluster)]) == 2
    assert f"{tmp_path / 'absent.yaml'}: file not found" in capsys.readouterr().err


def test_cluster_profile_rejects_unknown_keys_and_bad_resources(tmp_path):
    cluster = write_yaml(tmp_path / "cluster.yaml", {
        "sweep": "x.yaml", "ray": {"num_cpus": 0, "adress": "auto"}, "resources": {"proxy": {"cpu": -1}}})
    with pytest.raises(ConfigError) as info:
        load_cluster(cluster)
    problems = dict(info.value.problems)
    assert problems["ray.num_cpus"] == "must be > 0 (got 0)"
    assert problems["ray.adress"].startswith("unknown key")
    assert problems["resources.proxy.cpu"] == "must be > 0 (got -1.0)"


def test_a_budget_too_small_to_train_is_a_config_error_naming_the_sweep_file(tmp_path, capsys):
    bad = write_yaml(tmp_path / "bad.yaml", micro_sweep(proxy={**micro_sweep()["proxy"], "tokens_per_param": 1.0e-6}))
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(bad), "storage": str(tmp_path / "runs")})
    assert main(["launch", str(cluster)]) == 2
    assert f"{bad}: proxy.tokens_per_param: opt-nano at batch size 16 trains for 0 steps" in capsys.readouterr().err
