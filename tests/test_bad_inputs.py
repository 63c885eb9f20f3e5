"""Bad input, as a new user gives it: each case one clear message naming the file and key, exit status 2 (the
input is wrong; 1 is kept for "nothing to report yet"), no traceback, no hang, and bounded output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import pytest
import yaml

from raysweep.cli import main

from conftest import micro_sweep, write_yaml
from result_tables import sweep, table

Case = Callable[[Path], list[str]]
"""Writes the files of one case under a folder; returns the command line."""


def _launch(sweep: dict | bytes | str | None = None, **profile) -> Case:
    """``raysweep launch`` of a micro sweep edited by ``sweep`` (a dict of top-level changes, or raw file content),
    with a profile of ``profile``'s keys."""
    def case(folder: Path) -> list[str]:
        path = folder / "sweep.yaml"
        if isinstance(sweep, bytes):
            path.write_bytes(sweep)
        elif isinstance(sweep, str):
            path.write_text(sweep)
        else:
            write_yaml(path, micro_sweep(**(sweep or {})))
        cluster = write_yaml(folder / "cluster.yaml", {"sweep": str(path), "storage": str(folder / "runs"), **profile})
        return ["launch", str(cluster)]
    return case


def _edited(edit: Callable[[dict], None]) -> dict:
    sweep = micro_sweep()
    edit(sweep)
    return sweep


def _raw(edit: Callable[[dict], None]) -> str:
    return yaml.safe_dump(_edited(edit), sort_keys=False)


def _file_as_storage(folder: Path) -> list[str]:
    (folder / "taken").write_text("a file, not a folder")
    return _launch(storage=str(folder / "taken"))(folder)


def _folder_as_sweep(folder: Path) -> list[str]:
    (folder / "a_folder").mkdir()
    cluster = write_yaml(folder / "cluster.yaml", {"sweep": str(folder / "a_folder")})
    return ["launch", str(cluster)]


def _run_dir(plan: str | None) -> Case:
    def case(folder: Path) -> list[str]:
        (folder / "run" / "results").mkdir(parents=True)
        if plan is not None:
            (folder / "run" / "plan.json").write_text(plan)
        return ["status", str(folder / "run")]
    return case


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _run_dir_bytes(plan: bytes) -> Case:
    def case(folder: Path) -> list[str]:
        (folder / "run" / "results").mkdir(parents=True)
        (folder / "run" / "plan.json").write_bytes(plan)
        return ["status", str(folder / "run")]
    return case


def _report(content: bytes | None, *options: str) -> Case:
    def case(folder: Path) -> list[str]:
        path = folder / "results.parquet"
        if content is not None:
            path.write_bytes(content)
        return ["report", str(path), *options]
    return case


ALIAS_BOMB = "x0: &x0 [0.1]\n" + "".join(f"x{i + 1}: &x{i + 1} [{', '.join([f'*x{i}'] * 10)}]\n" for i in range(8))
"""Eight levels of ten aliases each: 10^8 elements when expanded."""

CASES: dict[str, tuple[Case, int, str]] = {
    # sweep files
    "binary sweep file": (_launch(b"\x89PNG\r\n\x1a\n\x00\xff\xfe"), 2, "not UTF-8 text"),
    "deeply nested sweep file": (_launch("a: " + "[" * 20000 + "]" * 20000), 2, "sweep.yaml"),
    "a key given twice": (_launch("name: a\nname: b\n"), 2, "key 'name' is given twice"),
    "a folder as sweep file": (_folder_as_sweep, 2, "is a folder; pass a YAML file"),
    "missing sweep file": (lambda folder: ["launch", str(write_yaml(folder / "c.yaml", {"sweep": "nowhere.yaml"}))],
                           2, "nowhere.yaml: file not found"),
    "empty name": (_launch({"name": ""}), 2, "name: must be a plain name"),
    "a name that leaves storage": (_launch({"name": "../../escape_run"}), 2, "name: must be a plain name"),
    "a 200 KB recipe name": (_launch(_edited(lambda s: s["recipes"][0].update(name="r" * 200_000))), 2,
                             "recipes[0].name: must be a plain name"),
    "a source name with a slash": (_launch(_edited(lambda s: s["sources"].update({"a/b": s["sources"]["web"]}))), 2,
                                   "sources.a/b: must be a plain name"),
    "a hidden domain name": (_launch(_edited(lambda s: s["validation"]["domains"].update(
        {".hidden": {"type": "synthetic", "domain": "web"}}))), 2, "validation.domains..hidden: must be a plain name"),
    "an alias bomb in a typed key": (_launch(ALIAS_BOMB + _raw(lambda s: s["proxy"].update(lrs="PLACEHOLDER"))
                                             .replace("PLACEHOLDER", "*x8")), 2, "proxy.lrs[0]: must be float"),
    "a string for a list": (_launch(_edited(lambda s: s["proxy"].update(lrs="1e-4"))), 2, "proxy.lrs: must be a list"),
    "an unknown key": (_launch(_edited(lambda s: s.update(epochs=3))), 2, "epochs: unknown key"),
    "an absurd seq_len": (_launch({"seq_len": 10**15}), 2, "seq_len: must be at most 1,048,576 tokens"),
    "a negative learning rate": (_launch(_edited(lambda s: s["proxy"].update(lrs=[-1e-4]))), 2,
                                 "proxy.lrs: must be > 0"),
    "a YAML list for a sweep": (_launch("- a\n- b\n"), 2, "must be a mapping"),
    "a negative mix weight": (_launch(_edited(lambda s: s["recipes"][0]["mix"][0].update(weight=-1))), 2,
                              "recipes[0].mix[0].weight: must be > 0"),
    "an unknown source in a mix": (_launch(_edited(lambda s: s["recipes"][0]["mix"][0].update(source="nope"))), 2,
                                   "recipes[0].mix[0].source: unknown source 'nope'"),
    "a recipe based on itself": (_launch(_edited(lambda s: s["recipes"][1].update(base="low_quality"))), 2,
                                 "recipes[1].base: must name another recipe, without cycles"),
    "an unknown proxy model": (_launch(_edited(lambda s: s["proxy"].update(models=["gpt5"]))), 2,
                               "proxy.models[0]: unknown model 'gpt5'"),
    "an unknown target model": (_launch(_edited(lambda s: s["target"].update(model="gpt5"))), 2,
                                "target.model: unknown model 'gpt5'"),
    "a standard lr outside the grid": (_launch(_edited(lambda s: s["proxy"].update(standard_lr=0.5))), 2,
                                       "proxy.standard_lr: must be one of proxy.lrs"),
    "no evaluations": (_launch(_edited(lambda s: s["training"].update(num_evals=0))), 2,
                       "training.num_evals: must be > 0"),
    "a warmup over the whole run": (_launch(_edited(lambda s: s["training"]["schedule"].update(warmup_frac=2))), 2,
                                    "training.schedule.warmup_frac: must be within [0, 1]"),
    "a negative clipping norm": (_launch(_edited(lambda s: s["training"].update(grad_clip=-1))), 2,
                                 "training.grad_clip: must be > 0"),
    "an hf tokenizer without a name": (_launch(_edited(lambda s: s.update(tokenizer={"type": "hf"}))), 2,
                                       "tokenizer.name: give a name"),
    "a shortlist longer than the recipes": (_launch(_edited(lambda s: s.update(select={"top_k": 5}))), 2,
                                            "select.top_k: must be <= the number of recipes"),
    "ASHA's grace at the last evaluation": (_launch(_edited(lambda s: s["target"].update(
        asha={"grace_evals": 2, "reduction_factor": 2}))), 2, "target.asha.grace_evals: must be < training.num_evals"),
    "a token share above one": (_launch(_edited(lambda s: s["recipes"][1].update(weights={"web_low_quality": 1.5}))),
                                2, "must be a token share in (0, 1]"),
    "dropping a source the base lacks": (_launch(_edited(lambda s: s["recipes"][1].update(drop=["nope"]))), 2,
                                         "recipes[1].drop[0]: 'nope' is not in the base mix"),
    "an early-stop confidence below one half": (_launch(_edited(lambda s: s["proxy"].update(
        early_stop={"confidence": 0.3}))), 2, "proxy.early_stop.confidence: must be within (0.5, 1)"),
    "no proxy learning rate": (_launch(_edited(lambda s: s["proxy"].update(lrs=[]))), 2,
                               "proxy.lrs: must not be empty"),
    "no target seed": (_launch(_edited(lambda s: s["target"].update(seeds=[]))), 2, "target.seeds: must not be empty"),
    "a zero batch size": (_launch(_edited(lambda s: s["proxy"].update(batch_size=0))), 2,
                          "proxy.batch_size: must be > 0"),
    "an unknown source type": (_launch(_edited(lambda s: s["sources"]["web"].update(type="webcrawl"))), 2,
                               "sources.web.type: must be one of"),
    "a mapping for the recipe list": (_launch(_edited(lambda s: s.update(recipes={"a": 1}))), 2,
                                      "recipes: must be a list"),
    "an unknown weight precision": (_launch(_edited(lambda s: s["training"].update(param_dtype="float8"))), 2,
                                    "training.param_dtype: must be one of 'float32', 'bfloat16'"),
    "a missing task file": (_launch(_edited(lambda s: s.update(tasks=[
        {"name": "hellaswag", "preset": "hellaswag", "path": "nowhere/hellaswag.jsonl"}]))), 2,
        "nowhere/hellaswag.jsonl does not exist; fetch it on a machine with network: python -c"),
    "a task named like a validation domain": (_launch(_edited(lambda s: s.update(tasks=[
        {"name": "web", "preset": "continuation"}]))), 2, "tasks[0].name: 'web' is taken"),
    "a task item without a gold answer": (lambda folder: _launch(_edited(lambda s: s.update(tasks=[
        {"name": "mine", "path": str(_written(folder / "mine.jsonl", b'{"context": "a", "choices": ["b", "c"]}\n'))}
    ])))(folder), 2, "mine.jsonl:1: not an item of"),
    "YAML that does not parse": (_launch("name: [unclosed\n"), 2, "not valid YAML"),
    "an empty sweep file": (_launch(""), 2, "name: missing required key"),
    # cluster profiles
    "negative GPUs per trial": (_launch(resources={"target": {"gpu": -1}}), 2, "resources.target.gpu: must be >= 0"),
    "negative retries": (_launch(trial_retries=-1), 2, "trial_retries: must be >= 0"),
    "zero CPUs for the embedded Ray": (_launch(ray={"num_cpus": 0}), 2, "ray.num_cpus: must be > 0"),
    "a number for storage": (_launch(storage=123), 2, "storage: must be str"),
    "a binary profile": (lambda folder: ["launch", str(_written(folder / "c.yaml", b"\xff\xfe\x00"))], 2,
                         "c.yaml: not UTF-8 text"),
    "a profile key given twice": (lambda folder: ["launch", str(_written(folder / "c.yaml", b"sweep: a\nsweep: b\n"))],
                                  2, "key 'sweep' is given twice"),
    "a profile without a sweep": (lambda folder: ["launch", str(_written(folder / "c.yaml", b"storage: runs\n"))], 2,
                                  "c.yaml: sweep: missing required key"),
    "a missing profile": (lambda folder: ["launch", str(folder / "nowhere.yaml")], 2, "nowhere.yaml: file not found"),
    "negative GPUs": (_launch(ray={"num_gpus": -1}), 2, "ray.num_gpus: must be >= 0"),
    "a port out of range": (_launch(ray={"dashboard_port": 99999}), 2, "ray.dashboard_port: must be a TCP port"),
    "not an address": (_launch(ray={"address": "not an address"}), 2, "ray.address: must be auto, local, HOST:PORT"),
    "an exposed dashboard without consent": (_launch(ray={"dashboard_host": "0.0.0.0"}), 2, "CVE-2023-48022"),
    "storage that is a file": (_file_as_storage, 2, "storage: cannot create the run directory"),
    "zero CPUs per trial": (_launch(resources={"proxy": {"cpu": 0}}), 2, "resources.proxy.cpu: must be > 0"),
    "zero concurrent trials": (_launch(max_concurrent_trials=0), 2, "max_concurrent_trials: must be > 0"),
    "an unknown profile key": (_launch(gpus=8), 2, "gpus: unknown key"),
    # run directories and result tables
    "a plan of the wrong structure": (_run_dir(json.dumps({"recipes": [], "standard_lr": 1.0, "trial_keys": []})), 2,
                                      "plan.json: unreadable (not a plan (trial_keys of the wrong type))"),
    "a plan that is not JSON": (_run_dir("{not json"), 2, "plan.json: unreadable"),
    "a plan that is a list": (_run_dir("[1, 2]"), 2, "plan.json: unreadable"),
    "a run directory without a plan": (_run_dir(None), 2, "no plan.json"),
    "a plan that is not UTF-8": (_run_dir_bytes(b"\xff\xfe"), 2, "plan.json: unreadable"),
    "a status of a missing folder": (lambda folder: ["status", str(folder / "nowhere")], 2, "no plan.json"),
    "a report of a missing path": (_report(None), 2, "no such file or folder"),
    "a report of a file that is not Parquet": (_report(b"col\n1\n"), 2, "not a readable results table"),
    "an unknown domain": (lambda folder: _table(folder, "--domain", "nowhere"), 2, "no rows for validation domain"),
    "alignment ranked by one domain": (lambda folder: _table(folder, "--metric", "alignment", "--domain", "web"), 2,
                                       "ranks by the domain \"all\" only"),
    "accuracy from a table without tasks": (lambda folder: _table(folder, "--metric", "acc_norm"), 2,
                                            "add tasks: to the sweep file"),
}


def _table(folder: Path, *options: str) -> list[str]:
    pq.write_table(table(*sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}, domains={"web": 0.1})),
                   folder / "results.parquet")
    return ["report", str(folder / "results.parquet"), *options]


def test_a_run_without_a_finished_trial_has_nothing_to_report_yet_exit_1(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    assert main(["report", str(tmp_path)]) == 1
    assert "no finished trials yet" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_message_and_its_exit_status(name, tmp_path, capsys):
    case, status, text = CASES[name]
    argv = case(tmp_path)
    assert main(argv) == status
    out, err = capsys.readouterr()
    assert text in err, err[:2000]
    assert "Traceback" not in out + err and len(err) < 5000  # no stack, and a bounded message whatever the input
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.parquet"))  # nothing trained


def test_an_exposed_dashboard_loads_once_acknowledged():
    from raysweep.config import ClusterConfig, RayConfig
    from raysweep.config.checks import check_cluster

    exposed = RayConfig(dashboard_host="0.0.0.0")
    assert check_cluster(ClusterConfig(sweep="s.yaml", ray=exposed)) != []
    assert check_cluster(ClusterConfig(sweep="s.yaml", ray=RayConfig(dashboard_host="0.0.0.0",
                                                                      expose_dashboard=True))) == []


@pytest.mark.parametrize("content, text", [  # each reader's messages: test_sources.py; here, through a Ray build
    (b'{"text": "a document"}\n{not json\n', "corpus.jsonl:2: not valid JSON"),
    (b'{"text": "caf\xe9"}\n', "corpus.jsonl: not UTF-8 text"),
])
def test_a_bad_corpus_file_is_named_first_not_buried_under_the_build_s_stack(local_ray, tmp_path, capsys, content,
                                                                             text):
    (tmp_path / "corpus.jsonl").write_bytes(content)
    sweep = micro_sweep()
    sweep["sources"]["web"] = {"type": "jsonl", "path": str(tmp_path / "corpus.jsonl")}
    argv = _launch(sweep)(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("raysweep: recipe 'balanced', source 'web': ") and text in err, err[:2000]
    assert err.count("\n") == 1 and "Traceback" not in err  # one line: no Ray task header, stack or retry advice
