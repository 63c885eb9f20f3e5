from __future__ import annotations

import pytest
import yaml

from raysweep.cli import main
from raysweep.config import ModelSpec, WSDSchedule, load_cluster, load_sweep, sweep_from_dict
from raysweep.errors import ConfigError
from raysweep.identity import content_hash, hashable

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
    assert len(sweep.recipes) >= 6 and len(sweep.proxy.seeds) >= 2 and len(sweep.target.lrs) >= 2


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


# The Pile's domains with their "Effective Size" (GiB) from Table 1 of Gao et al. 2020 (arXiv 2101.00027): the
# proportions paper.yaml gives the full Pile and its validation split.
PILE_GIB = {
    "pile_cc": 227.12, "pubmed_central": 180.55, "books3": 151.44, "openwebtext2": 125.54, "arxiv": 112.42,
    "github": 95.16, "freelaw": 76.73, "stackexchange": 64.39, "uspto_backgrounds": 45.81,
    "pubmed_abstracts": 38.53, "gutenberg_pg19": 27.19, "opensubtitles": 19.47, "wikipedia_en": 19.13,
    "dm_mathematics": 15.49, "ubuntu_irc": 11.03, "bookcorpus2": 9.45, "europarl": 9.17, "hackernews": 7.80,
    "youtubesubtitles": 7.47, "philpapers": 4.76, "nih_exporter": 3.79, "enron_emails": 1.76,
}


def mix_of(sweep, name: str) -> dict[str, float]:
    (recipe,) = [r for r in sweep.recipes if r.name == name]
    return {c.source: c.weight for c in recipe.mix}


def test_paper_sweep_has_exactly_the_23_recipes_of_table_1():
    sweep = load_sweep(REPO / "search_spaces" / "paper.yaml")
    assert [r.name for r in sweep.recipes] == [
        "Pile-CC70-S0A30", "Pile-CC70-S10A20", "Pile-CC70-S20A10", "Pile-CC70-S30A0",
        "Pile-noArXiv", "Pile-noGitHub", "Pile-noEuroParl", "Pile-noStackExchange", "Pile-noPubMedCentral",
        "Pile-noWikipedia",
        "C4", "DCLM", "RefinedWeb",
        "RP2-H50T50", "RP2-H60T40", "RP2-H70T30", "RP2-H80T20", "RP2-H90T10", "RP2-H100T0",
        "DCLM-dedup-L", "DCLM-dedup-LS", "DCLM-dedup-G", "DCLM-dedup-GS"]
    for s, a in ((0, 30), (10, 20), (20, 10), (30, 0)):
        expected = {"pile_cc": 0.7, "stackexchange": s / 100, "arxiv": a / 100}
        assert mix_of(sweep, f"Pile-CC70-S{s}A{a}") == pytest.approx({k: v for k, v in expected.items() if v})
    for head in (50, 60, 70, 80, 90, 100):
        expected = {"rpv2_head_middle": head / 100, "rpv2_tail": 1 - head / 100}
        assert mix_of(sweep, f"RP2-H{head}T{100 - head}") == pytest.approx({k: v for k, v in expected.items() if v})
    for suffix in ("L", "LS", "G", "GS"):
        (source,) = mix_of(sweep, f"DCLM-dedup-{suffix}")
        assert sweep.sources[source].source == "dclm" and sweep.sources[source].repetition.preset == f"dedup-{suffix}"


def test_paper_pile_ablations_keep_the_piles_own_proportions_without_one_domain():
    sweep = load_sweep(REPO / "search_spaces" / "paper.yaml")
    for recipe, dropped in (("Pile-noArXiv", "arxiv"), ("Pile-noGitHub", "github"), ("Pile-noEuroParl", "europarl"),
                            ("Pile-noStackExchange", "stackexchange"), ("Pile-noPubMedCentral", "pubmed_central"),
                            ("Pile-noWikipedia", "wikipedia_en")):
        kept = {domain: gib for domain, gib in PILE_GIB.items() if domain != dropped}
        assert mix_of(sweep, recipe) == pytest.approx({d: gib / sum(kept.values()) for d, gib in kept.items()})
    assert set(sweep.validation.domains) == set(PILE_GIB) and sweep.validation.token_shares == PILE_GIB
    assert sweep.validation.aggregate == "token_weighted"


def test_paper_sweep_uses_the_training_settings_of_appendix_d1():
    sweep = load_sweep(REPO / "search_spaces" / "paper.yaml")
    proxy, target = sweep.proxy, sweep.target
    assert set(proxy.models) == {"gpt2-small", "pythia-70m", "opt-125m"}
    assert (proxy.batch_size, proxy.weight_decay, proxy.standard_lr, proxy.autocast) == (128, 0.1, 3e-4, "none")
    assert proxy.standard_lr in proxy.lrs and min(proxy.lrs) <= 1e-6 and 1e-5 in proxy.lrs
    assert target.lrs == [8e-5, 1e-4, 3e-4, 5e-4, 7e-4, 1e-3] and target.batch_sizes == [128, 256, 512, 1024]
    assert target.weight_decays == [0.001, 0.01, 0.1] and target.autocast == "bfloat16"
    assert len(proxy.seeds) == len(target.seeds) == 3
    assert proxy.tokens_per_param == target.tokens_per_param == 20 and sweep.seq_len == 1024
    schedule = sweep.training.schedule
    assert (schedule.warmup_steps, schedule.decay_frac, sweep.training.grad_clip) == (2000, 0.34, 1.0)


def test_warmup_is_given_in_steps_or_as_a_fraction_not_both(tmp_path):
    sweep = micro_sweep()
    sweep["training"]["schedule"] = {"type": "wsd", "warmup_frac": 0.1, "warmup_steps": 200}
    assert problems_of(write_yaml(tmp_path / "both.yaml", sweep)) == {
        "training.schedule": "give one of warmup_frac or warmup_steps, not both"}
    sweep["training"]["schedule"] = {"type": "wsd", "warmup_steps": 0}
    assert problems_of(write_yaml(tmp_path / "zero.yaml", sweep)) == {
        "training.schedule.warmup_steps": "must be > 0 (got 0)"}
    sweep["training"]["schedule"] = {"type": "wsd", "warmup_steps": 200, "decay_frac": 0.99}  # no frac sum check
    assert load_sweep(write_yaml(tmp_path / "steps.yaml", sweep)).training.schedule.warmup_steps == 200


def test_token_shares_name_every_domain_and_need_the_token_weighted_aggregate(tmp_path):
    sweep = micro_sweep()
    domains = list(sweep["validation"]["domains"])
    sweep["validation"]["token_shares"] = {domains[0]: 2.0, domains[1]: 0, "books": 1.0}
    with pytest.raises(ConfigError) as info:
        load_sweep(write_yaml(tmp_path / "bad.yaml", sweep))
    assert sorted(info.value.problems) == sorted([
        ("validation.token_shares", "sizes the domains for `aggregate: token_weighted`; give that too, or drop the "
                                    "shares (each domain then gets num_tokens)"),
        (f"validation.token_shares.{domains[1]}", "must be > 0 (got 0.0)"),
        ("validation.token_shares.books", f"not a validation domain (domains: {', '.join(domains)})"),
        ("validation.token_shares", f"give every domain a share (missing: {', '.join(domains[2:])})"),
    ])
    sweep["validation"].update(aggregate="token_weighted", token_shares=dict.fromkeys(domains, 1.0))
    sweep["validation"]["token_shares"][domains[0]] = 0.25
    validation = load_sweep(write_yaml(tmp_path / "good.yaml", sweep)).validation
    # the largest share gets num_tokens (1024 = 16 sequences of 64), the others in proportion, whole sequences
    assert validation.sequences_per_domain(64) == {domains[0]: 4, **dict.fromkeys(domains[1:], 16)}
    assert validation.sequences_per_domain(1000) == {domains[0]: 1, **dict.fromkeys(domains[1:], 2)}
    without = load_sweep(write_yaml(tmp_path / "plain.yaml", micro_sweep())).validation
    assert without.sequences_per_domain(64) == dict.fromkeys(domains, 16)  # num_tokens each, as before


def test_a_config_field_added_later_leaves_existing_content_hashes_alone():
    # Pinned before WSDSchedule had warmup_steps: schedules without it hash (and key their trials) as before.
    assert content_hash(WSDSchedule()) == "96597e0072636f0a"
    assert content_hash(ModelSpec(family="gpt2", n_layer=2, d_model=32, n_head=2)) == "03adac665dcbf510"
    assert content_hash(WSDSchedule(warmup_steps=2000)) != content_hash(WSDSchedule())
    assert hashable({"s": [WSDSchedule()]}) == {"s": [{"type": "wsd", "warmup_frac": 0.05, "decay_frac": 0.34}]}


def test_a_sweep_from_a_dict_is_the_sweep_from_its_file_and_its_errors_name_key_paths(tmp_path):
    data = micro_sweep()
    data["sources"]["files"] = {"type": "jsonl", "path": "data/*.jsonl"}
    from_file = load_sweep(write_yaml(tmp_path / "s.yaml", data))
    assert sweep_from_dict(data, base_dir=tmp_path) == from_file  # relative paths from base_dir, as from the file's
    data["proxy"]["lrs"] = []
    data["recipes"][0]["mix"][0]["weight"] = -1
    with pytest.raises(ConfigError) as info:
        sweep_from_dict(data)
    assert info.value.file == "<dict>"
    assert set(dict(info.value.problems)) == {"proxy.lrs", "recipes[0].mix[0].weight"}
    with pytest.raises(ConfigError, match="<dict>: must be a mapping"):
        sweep_from_dict(["not", "a", "mapping"])
