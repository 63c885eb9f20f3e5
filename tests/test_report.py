"""Contracts of the report: tuned scores, baselines, compute, checkpoints, domains, units, partial runs, CLI,
ranking proxies by gradient alignment, and random-feature runs.

Tables are built here in memory (pyarrow, no Ray), with and without the optional ``bits_per_byte`` and
``alignment`` columns.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

import raysweep
from raysweep.analysis import seed_mean_interval
from raysweep.cli import main
from raysweep.errors import ReportError
from raysweep.plain import plain
from raysweep.report import load_results, report_run, summarize
from raysweep.report.figures import draw_figures
from raysweep.report.html import html_page
from raysweep.report.render import print_report, tables
from raysweep.report.verdict import verdict
from raysweep.store import Plan
from raysweep.trials import LANGUAGE_MODEL, RANDOM_FEATURES

from result_tables import BITS_PER_NAT, RF_WINDOW, alignment_sweep, rf_groups, rows, sweep, table


def rendered(report) -> str:
    console = Console(width=160, record=True)
    print_report(report, console)
    return console.export_text()


# --- tuned targets -------------------------------------------------------------------------------


def test_tuned_loss_is_the_best_configurations_seed_mean_at_the_final_step():
    report = summarize(table(
        rows("target", "a", 1e-3, 0, 2.0), rows("target", "a", 1e-3, 1, 2.2),   # mean 2.1
        rows("target", "a", 1e-2, 0, 1.9), rows("target", "a", 1e-2, 1, 2.5),   # mean 2.2
        rows("target", "b", 1e-3, 0, 1.5), rows("target", "b", 1e-3, 1, 1.7),
        rows("proxy", "a", 1e-5, 0, 3.0), rows("proxy", "a", 1e-5, 1, 3.0),
        rows("proxy", "b", 1e-5, 0, 2.0), rows("proxy", "b", 1e-5, 1, 2.0)), n_boot=200, n_boot_figures=50)
    b, a = report.main.targets
    assert (b.recipe, a.recipe) == ("b", "a")
    assert a.loss.point == pytest.approx(2.1) and a.config.lr == 1e-3 and str(a.config).startswith("lr 0.001")
    assert b.seed_std == pytest.approx(math.sqrt(0.02))
    (proxy,) = report.main.proxies
    assert proxy.rank == {"b": 1, "a": 2}
    assert proxy.agreement.spearman.point == pytest.approx(1.0) and proxy.agreement.regret[1].point == 0.0


def test_tuned_loss_ci_is_the_seed_bootstrap_of_the_best_configurations_mean():
    report = summarize(table(*sweep({"a": 2.0, "b": 1.5}, {"a": 3.0, "b": 2.0}, seeds=(0, 1, 2), jitter=0.1)),
                       n_boot=500, n_boot_figures=50)
    a = next(t for t in report.main.targets if t.recipe == "a")
    assert tuple(a.loss) == pytest.approx(seed_mean_interval(np.array([2.0, 2.1, 2.2]), n_boot=500))
    assert a.loss.low < a.loss.point < a.loss.high


def test_a_diverged_target_seed_makes_its_configuration_lose():
    report = summarize(table(
        rows("target", "a", 1e-3, 0, 2.0), rows("target", "a", 1e-3, 1, math.inf, status="diverged"),
        rows("target", "a", 1e-4, 0, 2.5), rows("target", "a", 1e-4, 1, 2.5),
        rows("target", "b", 1e-3, 0, 1.5), rows("target", "b", 1e-3, 1, 1.5)), n_boot=200, n_boot_figures=50)
    assert report.main.targets[1].loss.point == pytest.approx(2.5) and report.num_diverged == 1


def test_recipes_within_seed_noise_are_flagged_in_the_table_and_the_verdict():
    # a and b: 0.005 apart, per-seed differences +0.055 and -0.045 (2 seeds, paired t = 12.7): not separable.
    groups = [rows("target", "a", 1e-3, 0, 1.90), rows("target", "a", 1e-3, 1, 2.00),
              rows("target", "b", 1e-3, 0, 1.955), rows("target", "b", 1e-3, 1, 1.955),
              rows("target", "c", 1e-3, 0, 3.0), rows("target", "c", 1e-3, 1, 3.01),
              *sweep({}, {"a": 3.0, "b": 3.1, "c": 3.5})]
    report = summarize(table(*groups), n_boot=200, n_boot_figures=50)
    assert [t.within_noise_of_previous for t in report.main.targets] == [False, True, False]
    text = rendered(report)
    assert "2 ≈" in text and "Tuned targets within noise: a ≈ b" in text
    assert "but b is within seed noise of it" in verdict(report)


# --- proxy settings and baselines ----------------------------------------------------------------


def test_a_proxy_tie_counts_as_a_random_pick_whichever_recipe_is_listed_first():
    # The proxy cannot tell the recipes apart: its pick is a coin flip, worth half the gap, whichever is the best.
    for best, other in (("z", "a"), ("a", "z")):
        report = summarize(table(*sweep({best: 1.0, other: 2.0}, {"a": 3.0, "z": 3.0}, jitter=0.0)), n_boot=50,
                           n_boot_figures=50)
        assert report.main.recipes == ["a", "z"] and report.main.targets[0].recipe == best
        assert report.main.proxies[0].agreement.regret[1].point == pytest.approx(0.5)


def test_chosen_lr_is_the_smallest_without_a_diverged_run_and_standard_defaults_to_the_largest():
    groups = sweep({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "b": 2.0, "c": 3.0}, lrs=(1e-4, 1e-3, 1e-2))
    groups.append(rows("proxy", "a", 1e-5, 0, math.inf, status="diverged"))
    groups += [rows("proxy", r, 1e-5, s, 5.0) for r in "bc" for s in (0, 1)] + [rows("proxy", "a", 1e-5, 1, 5.0)]
    report = summarize(table(*groups), n_boot=200, n_boot_figures=50)
    labels = {s.lr: (s.is_chosen, s.is_standard, s.num_diverged) for s in report.main.proxies}
    assert labels == {1e-5: (False, False, 1), 1e-4: (True, False, 0), 1e-3: (False, False, 0),
                      1e-2: (False, True, 0)}
    explicit = summarize(table(*groups), standard_lr=1e-3, n_boot=200, n_boot_figures=50)
    assert [s.lr for s in explicit.main.standard()] == [1e-3]
    not_run = summarize(table(*groups), standard_lr=3e-3, n_boot=200, n_boot_figures=50)
    assert not not_run.main.standard() and any("no runs at the standard lr 0.003" in m for m in not_run.missing)
    assert "standard lr (baseline)" in rendered(explicit)


def test_fixed_target_configurations_are_scored_against_the_tuned_ranking_with_paired_resampling():
    # Configuration lr 1e-3 is every recipe's best, so it reproduces the tuned ranking exactly, seed for
    # seed: Spearman 1 with a zero-width interval. Configuration lr 1e-2 reverses the ranking.
    groups = sweep({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "b": 2.0, "c": 3.0}, jitter=0.05)
    groups += [rows("target", r, 1e-2, s, loss + 0.05 * s) for r, loss in {"a": 5.0, "b": 4.5, "c": 4.0}.items()
               for s in (0, 1)]
    report = summarize(table(*groups), n_boot=300, n_boot_figures=50)
    by_lr = {b.config.lr: b for b in report.fixed_configs}
    assert tuple(by_lr[1e-3].agreement.spearman) == (1.0, 1.0, 1.0) and by_lr[1e-3].label == ""
    assert by_lr[1e-2].agreement.spearman.point == pytest.approx(-1.0)
    assert by_lr[1e-2].agreement.regret[1].point == pytest.approx(2.0)  # picks c (3.0) instead of a (1.0)
    assert "fixed target config (baseline)" in rendered(report)


def test_many_fixed_target_configurations_show_best_median_and_worst():
    groups = sweep({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "b": 2.0, "c": 3.0})
    for i, batch_size in enumerate((16, 32, 64, 128, 256)):
        order = [{"a": 4.0, "b": 5.0, "c": 6.0}, {"a": 6.0, "b": 5.0, "c": 4.0}][i % 2]
        groups += [rows("target", r, 1e-3, s, loss, batch_size=batch_size) for r, loss in order.items() for s in (0, 1)]
    report = summarize(table(*groups), n_boot=100, n_boot_figures=50)
    assert [b.label for b in report.fixed_configs] == ["best of 6", "median of 6", "worst of 6"]
    assert report.num_target_configs == 6


def test_compute_accounting_sums_six_n_d_at_each_trials_last_step_and_wall_time():
    groups = [rows("target", r, 1e-3, 0, 1.0 + i, num_params=100, steps=(5, 10), wall_s=1800.0)
              for i, r in enumerate("ab")]
    groups += [rows("proxy", r, 1e-5, 0, 1.0 + i, num_params=10, wall_s=360.0) for i, r in enumerate("ab")]
    groups.append(rows("proxy", "a", 1e-2, 0, {1: 2.0, 2: math.inf}, num_params=10, status="diverged", wall_s=36.0))
    compute = {row.role: row for row in summarize(table(*groups), n_boot=50, n_boot_figures=50).compute}
    # tokens = step · batch size 8 · 4 tokens per sequence: targets 320 at step 10, proxies 64 at step 2.
    assert compute["target"].flops == pytest.approx(2 * 6 * 100 * 320) and compute["target"].wall_hours == 1.0
    assert compute["proxy"].flops == pytest.approx(3 * 6 * 10 * 64)
    assert compute["proxy"].wall_hours == pytest.approx(0.21) and compute["proxy"].num_diverged == 1


def test_early_stopped_proxies_count_the_flops_of_the_steps_they_did_not_train():
    groups = [rows("target", r, 1e-3, 0, 1.0 + i) for i, r in enumerate("ab")]
    groups += [rows("proxy", r, 1e-5, 0, 1.0 + i, num_params=10, status="stopped") for i, r in enumerate("ab")]
    frame = table(*groups).append_column("num_steps", pa.array([8] * sum(map(len, groups)), pa.int64()))
    report = summarize(frame, n_boot=50, n_boot_figures=50)
    proxy = {row.role: row for row in report.compute}["proxy"]
    # stopped at step 2 of 8: 6 planned steps × 32 tokens per step left, × 6 · 10 parameters, for two runs
    assert proxy.num_stopped == 2 and proxy.saved_flops == pytest.approx(2 * 6 * 10 * 6 * 32)
    assert "FLOPs saved" in rendered(report)
    assert "FLOPs saved" not in rendered(summarize(table(*sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})),
                                                   n_boot=50, n_boot_figures=50))


def test_the_decision_is_priced_against_the_full_protocol_it_stands_in_for():
    # Proxies on three recipes (two stopped at step 2 of 8), targets tuned on a shortlist of two.
    groups = [rows("target", r, lr, 0, 1.0 + i, num_params=100) for i, r in enumerate("ab") for lr in (1e-3, 3e-3)]
    groups += [rows("proxy", r, 1e-5, 0, 1.0 + i, num_params=10, status="stopped" if r != "c" else "ok")
               for i, r in enumerate("abc")]
    num_steps = [8 if g[0]["role"] == "proxy" and g[0]["status"] == "stopped" else 2 for g in groups for _ in g]
    frame = table(*groups).append_column("num_steps", pa.array(num_steps, pa.int64()))
    report = summarize(frame, n_boot=50, n_boot_figures=50)
    # 32 tokens per step. Spent: 4 targets × 6·100·64, 3 proxies × 6·10·64. Full: the stopped proxies to step 8
    # (6·10·256 each) and each target recipe's two configurations on the third recipe too.
    spent = 4 * 6 * 100 * 64 + 3 * 6 * 10 * 64
    full = 6 * 100 * 64 * 2 * 3 + 2 * 6 * 10 * 256 + 6 * 10 * 64
    assert sum(r.flops for r in report.compute) == pytest.approx(spent)
    assert report.full_protocol_flops == pytest.approx(full)
    assert f"This decision cost {spent / full:.1%} of the full protocol" in rendered(report).replace("\n", " ")
    complete = summarize(table(*sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})), n_boot=50, n_boot_figures=50)
    assert complete.full_protocol_flops == pytest.approx(sum(r.flops for r in complete.compute))
    assert "This decision ran the full protocol" in rendered(complete)


def test_checkpoints_score_each_step_against_the_final_targets_with_cumulative_proxy_flops():
    # At step 1 the proxy orders the recipes backwards; by step 2 it has it right.
    groups = [rows("target", r, 1e-3, s, loss) for r, loss in {"a": 1.0, "b": 2.0, "c": 3.0}.items() for s in (0, 1)]
    groups += [rows("proxy", r, 1e-5, s, {1: 9.0 - loss, 2: loss}, num_params=10)
               for r, loss in {"a": 1.0, "b": 2.0, "c": 3.0}.items() for s in (0, 1)]
    report = summarize(table(*groups), n_boot=100, n_boot_figures=100)
    first, last = report.checkpoints
    assert (first.step, last.step) == (1, 2)
    assert first.spearman.point == pytest.approx(-1.0) and first.regret_at_1.point == pytest.approx(2.0)
    assert last.spearman == report.main.proxies[0].agreement.spearman  # the headline statistics, reused
    assert first.proxy_flops == pytest.approx(6 * 10 * 32 * 6) and last.proxy_flops == pytest.approx(6 * 10 * 64 * 6)
    assert "Decision quality vs proxy compute" in rendered(report)


def test_a_run_diverged_before_a_checkpoint_counts_as_infinite_there_and_stops_adding_compute():
    groups = [rows("target", r, 1e-3, 0, loss) for r, loss in {"a": 1.0, "b": 2.0, "c": 3.0}.items()]
    groups += [rows("proxy", r, 1e-5, 0, {2: loss, 4: loss}, num_params=10) for r, loss in {"b": 2.0, "c": 3.0}.items()]
    groups.append(rows("proxy", "a", 1e-5, 0, {2: 1.0, 3: math.inf}, num_params=10, status="diverged"))
    report = summarize(table(*groups), n_boot=50, n_boot_figures=50)
    at_step = {p.step: p for p in report.checkpoints}
    assert sorted(at_step) == [2, 4]  # step 3 is where a stopped, not an evaluation
    assert at_step[2].regret_at_1.point == 0.0 and at_step[4].regret_at_1.point == pytest.approx(1.0)
    assert at_step[4].proxy_flops == pytest.approx(6 * 10 * (2 * 128 + 96))


# --- domains and units ---------------------------------------------------------------------------


def test_domain_option_ranks_by_that_domain_and_every_domain_is_summarized():
    # On "code" recipe b is 2.0 better than on "all"; a 1.5 better: the order flips from a < b to b < a.
    groups = [rows("target", "a", 1e-3, s, 1.0, domains={"code": -1.5}) for s in (0, 1)]
    groups += [rows("target", "b", 1e-3, s, 2.0, domains={"code": -2.0 - 0.6}) for s in (0, 1)]
    groups += [rows("proxy", r, 1e-5, s, 3.0 + i, domains={"code": 0.0}) for i, r in enumerate("ab") for s in (0, 1)]
    by_all = summarize(table(*groups), n_boot=50, n_boot_figures=50)
    by_code = summarize(table(*groups), domain="code", n_boot=50, n_boot_figures=50)
    assert [t.recipe for t in by_all.main.targets] == ["a", "b"]
    assert [t.recipe for t in by_code.main.targets] == ["b", "a"] and by_code.main.domain == "code"
    assert [d.domain for d in by_code.domains] == ["all", "code"]
    assert {d.domain: d.proxies[0].agreement.spearman.point for d in by_all.domains} == {"all": 1.0, "code": -1.0}
    assert "code (ranked by)" in rendered(by_code)


def test_bits_per_byte_is_shown_beside_nats_when_recorded():
    report = summarize(table(*sweep({"a": 2.0, "b": 2.5}, {"a": 3.0, "b": 3.2}), bits=True), n_boot=50,
                       n_boot_figures=50)
    assert report.main.bits_per_nat == pytest.approx(BITS_PER_NAT)
    assert report.main.targets[0].bits_per_byte == pytest.approx(2.005 * BITS_PER_NAT)
    assert report.main.proxies[0].mean_bits_per_byte["a"] == pytest.approx(3.005 * BITS_PER_NAT)
    text = rendered(report)
    assert "bits/byte" in text and f"{2.005 * BITS_PER_NAT:.4f}" in text
    assert "bits/byte)" in verdict(report)
    assert all(len(row) == len(t.columns) for t in tables(report) for row in t.rows)


def test_a_table_without_bits_per_byte_reads_it_as_unknown():
    report = summarize(table(*sweep({"a": 2.0, "b": 2.5}, {"a": 3.0, "b": 3.2}), bits=False), n_boot=50,
                       n_boot_figures=50)
    assert report.main.bits_per_nat is None and report.main.targets[0].bits_per_byte is None
    assert report.main.proxies[0].mean_bits_per_byte is None
    assert "bits/byte" not in rendered(report)


def test_files_with_and_without_bits_per_byte_combine(tmp_path):
    pq.write_table(table(*sweep({"a": 2.0}, {"a": 3.0}), bits=False), tmp_path / "old.parquet")
    pq.write_table(table(*sweep({"b": 2.5}, {"b": 3.2}), bits=True), tmp_path / "new.parquet")
    combined, run_dir, unreadable = load_results(tmp_path)
    assert run_dir is None and unreadable == [] and combined.column("bits_per_byte").null_count > 0
    assert summarize(combined, n_boot=50, n_boot_figures=50).main.bits_per_nat == pytest.approx(BITS_PER_NAT)


def test_a_truncated_results_file_is_reported_and_the_rest_still_is(tmp_path):
    (tmp_path / "results").mkdir()
    pq.write_table(table(*demo_like_groups()), tmp_path / "results" / "trial-good.parquet")
    whole = (tmp_path / "results" / "trial-good.parquet").read_bytes()
    (tmp_path / "results" / "trial-cut.parquet").write_bytes(whole[: len(whole) // 2])
    report = report_run(tmp_path, pytest.fail, n_boot=50, n_boot_figures=50)
    assert any("trial-cut.parquet: unreadable, left out" in line for line in report.missing)
    assert report.main.targets[0].recipe == "a"


# --- partial runs --------------------------------------------------------------------------------


PARTIAL_RUNS = {
    "recipe without targets": (
        sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0, "c": 1.5}), "c: no target runs; left out"),
    "recipe without proxies": (
        sweep({"a": 1.0, "b": 2.0, "c": 0.5}, {"a": 1.0, "b": 2.0}), "c: no proxy runs yet"),
    "uneven seeds": (
        sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}) + [rows("proxy", "a", 1e-5, 2, 1.0)],
        "seeds [2] missing for some recipes"),
    "proxy setting missing a recipe": (
        sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}) + [rows("proxy", "a", 1e-3, 0, 1.0)],
        "proxy proxy-m lr 0.001: no runs for b; not compared"),
    "only proxies": (sweep({}, {"a": 1.0, "b": 2.0}), "no tuned target runs yet"),
    "only targets": (sweep({"a": 1.0, "b": 2.0}, {}), "no proxy setting covering every recipe"),
    "one recipe": (sweep({"a": 1.0}, {"a": 1.0}), "only one recipe has target runs"),
}


def test_unpaired_seeds_with_labels_of_their_own_are_compared_recipe_by_recipe():
    # Each recipe's runs carry their own seed labels (10 i + j): no label is common, and none needs to be.
    groups = [rows(role, r, 1e-3 if role == "target" else 1e-5, 10 * i + j, base + 0.1 * i + 0.01 * j)
              for role, base in (("target", 1.0), ("proxy", 5.0)) for i, r in enumerate("abcd") for j in range(3)]
    groups.append(rows("proxy", "d", 1e-5, 33, 5.3))  # one recipe with a fourth seed: each uses its first three
    report = summarize(table(*groups), n_boot=50, n_boot_figures=20, seeds_paired=False)
    (setting,) = report.main.proxies
    assert setting.num_seeds == 3 and setting.agreement.spearman.point == 1.0
    assert any("recipes have 3 to 4 seeds (unpaired); each compared on its first 3" in m for m in report.missing)


def test_a_target_configuration_missing_seeds_cannot_win_the_recipe():
    # Configuration Y of recipe a has finished seed 0 only, worse there than X (1.005 > 1.00): its one-seed mean
    # still beats X's three-seed mean (1.01), which must not make it a's tuned configuration.
    groups = sweep({r: 1.0 + 0.1 * i for i, r in enumerate("abcd")}, {r: 5.0 + 0.1 * i for i, r in enumerate("abcd")},
                   seeds=(0, 1, 2))
    groups.append(rows("target", "a", 3e-4, 0, 1.005))
    report = summarize(table(*groups), n_boot=50, n_boot_figures=20)
    best = report.main.targets[0]
    assert (best.recipe, best.config.lr, best.num_seeds) == ("a", 1e-3, 3)
    assert any("a: target configuration(s) lr 0.0003 batch 8 wd 0 (1 of 3 seeds) lack seeds" in m
               for m in report.missing)


@pytest.mark.parametrize("groups, message", PARTIAL_RUNS.values(), ids=PARTIAL_RUNS.keys())
def test_partial_runs_say_what_is_missing_and_still_report(groups, message):
    report = summarize(table(*groups), n_boot=50, n_boot_figures=50)
    text = rendered(report)
    assert message in text and text.rstrip().splitlines()[-1].startswith("Verdict:")
    assert tables(report)  # something to read, never an empty report
    assert all(len(row) == len(t.columns) for t in tables(report) for row in t.rows)


def test_only_proxies_rank_recipes_by_proxy_loss_at_the_chosen_lr():
    report = summarize(table(*sweep({}, {"a": 2.0, "b": 1.0}, lrs=(1e-5, 1e-3))), n_boot=50, n_boot_figures=50)
    assert verdict(report).endswith("proxy proxy-m @ lr 1e-05 ranks b first.")
    assert "Recipes by proxy loss" in rendered(report)


def planned_keys(role, recipes, lrs, seeds=(0, 1)):
    model = "proxy-m" if role == "proxy" else "target-m"
    return [f"{role}-{r}-{model}-{lr}-8-0.0-{s}" for r in recipes for lr in lrs for s in seeds]


def test_the_plan_lists_unfinished_trials_and_recipes_without_any():
    plan = Plan(["a", "b", "c"], {"proxy": planned_keys("proxy", "abc", [1e-5]),
                                  "target": planned_keys("target", "abc", [1e-3])}, 1e-5)
    report = summarize(table(*sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})), n_boot=50, n_boot_figures=50,
                       plan=plan)
    assert report.missing[:3] == ["proxy: 4 of 6 planned trials finished", "target: 4 of 6 planned trials finished",
                                  "no finished trial yet for recipe(s) c"]


def test_trials_of_an_earlier_version_of_the_sweep_file_are_left_out_and_counted():
    plan = Plan(["a", "b"], {"proxy": planned_keys("proxy", "ab", [1e-5]),
                             "target": planned_keys("target", "ab", [1e-3])}, 1e-5)
    current = sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})
    stale = [rows("proxy", "a", 1e-4, 0, 0.1)]  # a proxy lr the sweep file no longer asks for
    report = summarize(table(*current, *stale), n_boot=50, n_boot_figures=50, plan=plan)
    assert report.missing[0] == "1 stored trial(s) belong to an earlier version of the sweep file; left out"
    assert [p.lr for p in report.main.proxies] == [1e-5]


def test_unreportable_tables_raise_a_report_error_that_says_why():
    with pytest.raises(ReportError, match="empty"):
        summarize(table())
    with pytest.raises(ReportError, match="lacks column.*wall_s"):
        summarize(table(*sweep({"a": 1.0}, {"a": 1.0})).drop_columns(["wall_s"]))
    with pytest.raises(ReportError, match="'web'; the table has: all"):
        summarize(table(*sweep({"a": 1.0}, {"a": 1.0})), domain="web")


# --- proxies ranked by gradient alignment ---------------------------------------------------------


def test_ranking_by_alignment_puts_the_largest_alignment_first_and_a_diverged_run_last():
    groups = alignment_sweep({"a": 3.0, "b": 2.0, "c": 1.0, "d": [0.5, -math.inf]})
    by_alignment = summarize(table(*groups, bits=True, alignment=True), metric="alignment", n_boot=100,
                             n_boot_figures=50)
    (proxy,) = by_alignment.main.proxies
    assert proxy.rank == {"a": 1, "b": 2, "c": 3, "d": 4} and proxy.num_diverged == 1
    assert proxy.agreement.spearman.point == pytest.approx(1.0) and proxy.agreement.regret[1].point == 0.0
    assert proxy.mean_bits_per_byte is None  # alignment has no bits/byte
    by_loss = summarize(table(*groups, bits=True, alignment=True), n_boot=100, n_boot_figures=50)
    assert by_loss.main.proxies[0].rank == {"c": 1, "b": 2, "a": 3, "d": 4}  # the same runs by loss
    text = rendered(by_alignment)
    assert "rank · gradient alignment ± seed std" in text and "1 · 3.005 ± 0.007071" in text
    assert "rank · loss" not in text and "ranked by gradient alignment at the chosen lr" in verdict(by_alignment)
    assert by_alignment.main.targets[0].bits_per_byte is not None  # targets keep their loss, and its bits/byte


def test_a_table_without_alignment_says_how_to_measure_it(tmp_path, capsys):
    groups = sweep({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})
    with pytest.raises(ReportError, match="launch with proxy.alignment_every: K in the sweep file"):
        summarize(table(*groups), metric="alignment")
    pq.write_table(table(*groups), tmp_path / "old.parquet")
    assert main(["report", str(tmp_path / "old.parquet"), "--metric", "alignment"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "proxy.alignment_every: K" in err


def test_alignment_ranks_on_the_mixed_validation_batch_only():
    groups = [rows("proxy", r, 1e-4, 0, 1.0, alignment=1.0, domains={"web": 0.1}) for r in "ab"]
    with pytest.raises(ReportError, match="one validation batch mixing every domain"):
        summarize(table(*groups, alignment=True), domain="web", metric="alignment")
    report = summarize(table(*groups, alignment=True), metric="alignment", n_boot=50, n_boot_figures=50)
    assert [d.domain for d in report.domains] == ["all"]


def test_files_with_and_without_alignment_combine(tmp_path):
    old = sweep({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}, lrs=(1e-5,))
    pq.write_table(table(*old), tmp_path / "old.parquet")
    new = [g for g in alignment_sweep({"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}) if g[0]["role"] == "proxy"]
    pq.write_table(table(*new, bits=True, alignment=True), tmp_path / "new.parquet")
    combined, _, unreadable = load_results(tmp_path)
    assert unreadable == [] and combined.column("alignment").null_count == len(table(*old))
    report = summarize(combined, metric="alignment", n_boot=50, n_boot_figures=50)
    assert [(p.lr, p.agreement.spearman.point) for p in report.main.proxies] == [(1e-4, pytest.approx(1.0))]
    assert "8 proxy trial(s) have no gradient alignment at their last evaluation; left out" in report.missing[0]
    by_loss = summarize(combined, n_boot=50, n_boot_figures=50)
    assert sorted(p.lr for p in by_loss.main.proxies) == [1e-5, 1e-4] and not by_loss.missing


# --- random-feature runs -------------------------------------------------------------------------


def test_a_random_feature_table_reads_in_mse_against_the_infinite_width_optimum():
    report = summarize(table(*rf_groups(RF_WINDOW)), n_boot=100, n_boot_figures=50)
    assert report.family == RANDOM_FEATURES and report.terms().target == "infinite-width optimum"
    assert not report.fixed_configs and not report.heatmaps and {c.role for c in report.loss_curves} == {"proxy"}
    text = rendered(report)
    page = html_page(report, draw_figures(report))
    for output in (text, page):
        assert "nats" not in output and "bits/byte" not in output and "tuned target" not in output
        assert "infinite-width optimum" in output and "MSE" in output
    assert "one target seed only" not in text  # an optimum is one computation, not a missing seed


def test_the_random_feature_verdict_finds_the_window_and_both_of_its_ends():
    line = verdict(summarize(table(*rf_groups(RF_WINDOW)), n_boot=100, n_boot_figures=50))
    assert line.startswith("Verdict: does a proxy learning rate rank the datasets in the order of their infinite-width")
    assert "rf-m64 ranks the datasets in their infinite-width order at lr 1 (Spearman 1.00 [1.00, 1.00])" in line
    assert "smaller lrs under-train: Spearman -1.00 [-1.00, -1.00] at lr 0.01, clearly below the best" in line
    assert re.search(r"larger lrs scramble it: Spearman -0\.95 \[[^]]+\] at lr 10, and 2 of 8 runs above lr 1 "
                     "diverged", line)


def test_the_random_feature_verdict_follows_the_numbers_when_every_lr_matches():
    in_order = {lr: [0.15 + 0.1 * i + lr / 100 for i in range(4)] for lr in (0.01, 1.0, 10.0)}
    line = verdict(summarize(table(*rf_groups(in_order)), n_boot=100, n_boot_figures=50))
    assert "order at lr 0.01 (Spearman 1.00 [1.00, 1.00]), 1 (Spearman 1.00 [1.00, 1.00]), 10 (" in line
    assert "no lr below 0.01 was swept, so no under-training shows" in line
    assert "no lr above 10 was swept, so no scrambling shows" in line and "under-train:" not in line


def test_the_plan_names_the_family_and_an_older_plan_leaves_it_to_the_table(tmp_path):
    (tmp_path / "results").mkdir()
    groups = rf_groups(RF_WINDOW)
    pq.write_table(table(*groups), tmp_path / "results" / "trial-x.parquet")
    keys = {role: sorted({g[0]["trial_key"] for g in groups if g[0]["role"] == role}) for role in ("proxy", "target")}
    plan = {"recipes": ["d1", "d2", "d3", "d4"], "standard_lr": 10.0, "trial_keys": keys}
    (tmp_path / "plan.json").write_text(json.dumps(plan))  # written before plans named their family
    assert report_run(tmp_path, warn=pytest.fail).family == RANDOM_FEATURES
    (tmp_path / "plan.json").write_text(json.dumps({**plan, "family": LANGUAGE_MODEL.name}))
    assert report_run(tmp_path, warn=pytest.fail).family == LANGUAGE_MODEL


# --- command line --------------------------------------------------------------------------------


def demo_like_groups():
    targets = {"a": 1.0, "b": 1.2, "c": 1.5, "d": 1.6}
    groups = sweep(targets, {"a": 3.0, "b": 3.3, "c": 3.2, "d": 3.6}, lrs=(1e-5, 1e-3), domains={"web": 0.1})
    return groups + [rows("target", r, 1e-2, s, loss + 0.3, domains={"web": 0.1}) for r, loss in targets.items()
                     for s in (0, 1)]


def test_cli_report_on_a_parquet_folder_writes_one_self_contained_html_page(tmp_path):
    results = tmp_path / "tables"
    results.mkdir()
    pq.write_table(table(*demo_like_groups(), bits=True), results / "part-0.parquet")
    html = tmp_path / "out" / "report.html"
    assert main(["report", str(results), "--html", str(html)]) == 0
    page = html.read_text()
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 7 and "Verdict: ship a" in page
    assert sorted(p.name for p in (tmp_path / "out" / "report_figures").iterdir())[0] == "a_spearman_vs_lr.png"


def test_a_run_dir_report_takes_the_standard_lr_and_plan_from_its_launch(tmp_path):
    (tmp_path / "results").mkdir()
    pq.write_table(table(*demo_like_groups()), tmp_path / "results" / "trial-x.parquet")
    plan = {"recipes": list("abcde"), "standard_lr": 1e-3,
            "trial_keys": {"proxy": planned_keys("proxy", "abcde", [1e-5, 1e-3, 1e-2]),
                           "target": planned_keys("target", "abcde", [1e-3, 1e-2])}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    report = report_run(tmp_path, pytest.fail, domain="web", n_boot=50, n_boot_figures=50)
    assert report.main.domain == "web" and [s.lr for s in report.main.standard()] == [1e-3]
    assert "proxy: 16 of 30 planned trials finished" in report.missing
    assert "no finished trial yet for recipe(s) e" in report.missing
    assert main(["report", str(tmp_path), "--domain", "web", "--figures", str(tmp_path / "figs")]) == 0
    assert len(list((tmp_path / "figs").glob("*.png"))) == 7


def test_cli_report_without_results_exits_1_and_of_a_wrong_path_exits_2(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    assert main(["report", str(tmp_path)]) == 1
    assert "no finished trials yet" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_report_json_is_the_typed_report_as_plain_data_and_the_version_is_the_package_s(tmp_path, capsys):
    pq.write_table(table(*demo_like_groups()), tmp_path / "results.parquet")
    assert main(["report", str(tmp_path / "results.parquet"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = report_run(tmp_path / "results.parquet", pytest.fail)
    assert printed == plain(report) and printed["main"]["targets"][0]["recipe"] == report.main.targets[0].recipe
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"raysweep {raysweep.__version__}"


def test_every_view_of_the_report_is_a_dataframe_with_its_intervals_spread_into_columns():
    report = summarize(table(*sweep({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "b": 2.5, "c": 2.0}, lrs=(1e-5, 1e-4))),
                       n_boot=50, n_boot_figures=50)
    targets = report.to_pandas("targets")
    assert targets["recipe"].tolist() == ["a", "b", "c"] and {"loss", "loss_low", "loss_high", "lr"} <= set(targets)
    assert targets["loss"].tolist() == [t.loss.point for t in report.main.targets]
    proxies = report.to_pandas("proxies")
    assert len(proxies) == 2 * 3 and proxies.set_index(["lr", "recipe"])["rank"][(1e-5, "c")] == 2
    agreement = report.to_pandas("agreement").set_index("lr")
    setting = next(s for s in report.main.proxies if s.lr == 1e-5)
    assert agreement.loc[1e-5, "spearman_low"] == setting.agreement.spearman.low
    assert agreement.loc[1e-5, "regret@2"] == setting.agreement.regret[2].point
    assert report.to_pandas("compute")["role"].tolist() == [r.role for r in report.compute]
    assert len(report.to_pandas("checkpoints")) == len(report.checkpoints)
    with pytest.raises(ValueError, match="the views are targets, proxies"):
        report.to_pandas("everything")
