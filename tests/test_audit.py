"""Audits of runs trained elsewhere: tables in other tools' layouts mapped onto the results schema.

The fixtures follow those tools' documented layouts: DataDecide's evaluation results (one row per model size,
data recipe, seed, step, task and metric, its value), Olmix's swarm CSVs (``ratios.csv`` and ``metrics.csv``,
joined by ``run``, one column per domain weight or metric), and a lab's own table of proxy and target losses.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from raysweep.cli import main

RECIPES = {"dolma17": 0.62, "fineweb-edu": 0.60, "c4": 0.55, "falcon": 0.50}
"""Each recipe's 1B accuracy; the 150M proxies keep the order at a lower level."""


def datadecide(path) -> str:
    rows, rng = [], np.random.default_rng(0)
    for size, level in (("150M", 0.45), ("1B", 0.0)):
        for recipe, accuracy in RECIPES.items():
            for seed in ("default", "small aux 2", "small aux 3"):
                for step in (10_000, 20_000):
                    for task in ("arc_easy", "hellaswag"):
                        score = accuracy * (1 - level) + 0.004 * rng.standard_normal() - (0.05 if step == 10_000 else 0)
                        tokens = step * 2048 * 256
                        for metric, value in (("acc_per_char", score), ("correct_prob", score / 2)):
                            rows.append({"params": size, "data": recipe, "seed": seed, "step": step,
                                         "tokens": tokens, "compute": 6 * tokens, "task": task, "metric": metric,
                                         "value": value})
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def reported(capsys, argv) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return {"report": json.loads(captured.out), "err": captured.err}


def test_a_datadecide_table_ranks_its_proxies_against_its_1b_models(tmp_path, capsys):
    out = reported(capsys, ["report", datadecide(tmp_path / "evals.csv"), "--json",
                            "--columns", "recipe=data,model=params,seed=seed,step=step,tokens=tokens,domain=task,"
                                         "acc_norm=value",
                            "--where", "metric=acc_per_char", "--target", "params=1B"])
    report = out["report"]
    assert [t["recipe"] for t in report["main"]["targets"]] == list(RECIPES)
    assert report["main"]["domain"] == "all" and {d["domain"] for d in report["domains"]} == {
        "all", "arc_easy", "hellaswag"}
    (proxy,) = report["main"]["proxies"]
    assert proxy["model"] == "150M" and proxy["agreement"]["spearman"]["point"] == pytest.approx(1.0)
    assert report["seeds_paired"] is False and "resampled independently" in out["err"]
    assert report["main"]["targets"][0]["loss"]["point"] == pytest.approx(-62.0, abs=0.5)  # points, negated inside


def test_an_olmix_swarm_ranks_its_runs_by_a_metric_column_with_no_target_to_check_them(tmp_path, capsys):
    (tmp_path / "ratios.csv").write_text("run,name,index,dclm,stack_edu\nr0,mix-a,0,0.7,0.3\nr1,mix-b,1,0.5,0.5\n"
                                         "r2,mix-c,2,0.2,0.8\n")
    (tmp_path / "metrics.csv").write_text("run,name,index,arc_easy_bpb,humaneval_bpb\nr0,mix-a,0,0.81,1.20\n"
                                          "r1,mix-b,1,0.84,1.05\nr2,mix-c,2,0.90,0.96\n")
    assert main(["report", str(tmp_path / "metrics.csv"), "--columns", "recipe=name,loss=arc_easy_bpb"]) == 0
    text = capsys.readouterr().out
    assert "no tuned target runs yet, so the proxy ranking is unchecked" in text
    assert "ranks mix-a first" in text


def test_a_lab_table_of_losses_gets_the_chosen_lr_and_the_decision(tmp_path, capsys):
    rows = [{"mix": r, "kind": "big", "eta": 1e-3, "rep": s, "eval_loss": 2.0 + i + 0.01 * s}
            for i, r in enumerate("abc") for s in range(3)]
    rows += [{"mix": r, "kind": "small", "eta": lr, "rep": s, "eval_loss": 4.0 + i * (1 if lr < 1e-3 else -1)
              + 0.01 * s} for lr in (1e-4, 4e-3) for i, r in enumerate("abc") for s in range(3)]
    pd.DataFrame(rows).to_parquet(tmp_path / "lab.parquet")
    out = reported(capsys, ["report", str(tmp_path / "lab.parquet"), "--json", "--paired-seeds",
                            "--columns", "recipe=mix,lr=eta,seed=rep,loss=eval_loss", "--target", "kind=big"])
    report = out["report"]
    assert [t["recipe"] for t in report["main"]["targets"]] == ["a", "b", "c"] and report["seeds_paired"] is True
    by_lr = {p["lr"]: p["agreement"]["spearman"]["point"] for p in report["main"]["proxies"]}
    assert by_lr == {1e-4: pytest.approx(1.0), 4e-3: pytest.approx(-1.0)}
    assert [p["lr"] for p in report["main"]["proxies"] if p["is_standard"]] == [4e-3]


def test_an_empty_score_is_a_missing_run_not_a_diverged_one(tmp_path, capsys):
    # The best recipe's proxy lost one score (an empty cell); "inf" is how a table says a run diverged.
    rows = [{"mix": r, "size": "1B", "rep": s, "eval_loss": 1.0 + 0.1 * i + 0.01 * s}
            for i, r in enumerate("abcd") for s in range(3)]
    rows += [{"mix": r, "size": "60M", "rep": s, "eval_loss": np.nan if (r, s) == ("a", 2) else 3.0 + 0.1 * i + 0.01 * s}
             for i, r in enumerate("abcd") for s in range(3)]
    rows += [{"mix": r, "size": "20M", "rep": s, "eval_loss": "inf" if (r, s) == ("a", 2) else 3.5 + 0.1 * i}
             for i, r in enumerate("abcd") for s in range(3)]
    pd.DataFrame(rows).to_csv(tmp_path / "lab.csv", index=False)
    report = reported(capsys, ["report", str(tmp_path / "lab.csv"), "--json", "--columns",
                               "recipe=mix,model=size,seed=rep,loss=eval_loss", "--target", "size=1B"])["report"]
    proxies = {p["model"]: p for p in report["main"]["proxies"]}
    assert proxies["60M"]["num_diverged"] == 0 and proxies["60M"]["agreement"]["regret"]["1"]["point"] == 0.0
    assert proxies["20M"]["num_diverged"] == 1 and proxies["20M"]["rank"]["a"] == 4
    assert any("1 row(s) without a loss value left out as missing runs (recipes a)" in m for m in report["missing"])


@pytest.mark.parametrize("argv, message", [
    (["--columns", "recipe=data,acc_norm=value", "--target", "params=1B"], "rows repeat a trial, step and domain"),
    (["--columns", "recipe=data,acc_norm=nope", "--target", "params=1B"], "no column(s) nope"),
    (["--columns", "recipe=data"], "exactly one score column"),
    (["--columns", "recipe=data,acc_norm=value", "--where", "metric=acc_per_char", "--target", "params=7B"],
     "no row has params = '7B'"),
    (["--columns", "recipe=data,colour=value"], "'colour' is not a column raysweep maps"),
])
def test_a_table_that_does_not_map_says_what_to_change(tmp_path, capsys, argv, message):
    assert main(["report", datadecide(tmp_path / "evals.csv"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
