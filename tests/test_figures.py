"""Contracts of raysweep.report.figures: PNGs for every figure the data supports, none for what it cannot."""

from __future__ import annotations

import math

import pytest

from result_tables import RF_WINDOW, alignment_sweep, rf_groups, rows, sweep, table

from raysweep.report.figures import draw_figures, loss_vs_lr, regret_vs_k
from raysweep.report import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_full_sweep_draws_all_seven_figures_as_png():
    groups = sweep({"a": 1.0, "b": 1.2, "c": 1.5}, {"a": 3.0, "b": 3.3, "c": 3.2}, lrs=(1e-5, 1e-4, 1e-3),
                   domains={"web": 0.1})
    groups += [rows("target", r, 1e-2, s, loss + 0.3, domains={"web": 0.1}) for r, loss in
               {"a": 1.0, "b": 1.2, "c": 1.5}.items() for s in (0, 1)]
    images = draw_figures(summarize(table(*groups, bits=True), n_boot=50, n_boot_figures=50))
    assert [image.filename[0] for image in images] == list("abcdefg")
    assert all(image.png.startswith(PNG_MAGIC) and image.caption for image in images)


def test_a_table_of_proxies_alone_draws_only_the_loss_curves():
    images = draw_figures(summarize(table(*sweep({}, {"a": 2.0, "b": 1.0}, lrs=(1e-5, 1e-3))), n_boot=50,
                                    n_boot_figures=50))
    assert [image.filename for image in images] == ["d_loss_vs_lr.png"]


def test_diverged_runs_and_undefined_statistics_still_draw():
    # Every proxy at lr 1: diverged (a constant ranking, Spearman undefined); lr 1e-5 is fine.
    groups = sweep({"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 3.5})
    groups += [rows("proxy", r, 1.0, s, math.inf, status="diverged") for r in "ab" for s in (0, 1)]
    images = draw_figures(summarize(table(*groups), n_boot=50, n_boot_figures=50))
    assert len(images) == 7


def test_random_feature_figures_label_mse_and_leave_out_the_target_lr_heatmap():
    report = summarize(table(*rf_groups(RF_WINDOW)), n_boot=50, n_boot_figures=50)
    assert [image.filename[0] for image in draw_figures(report)] == list("abdefg")  # no target lr to pair with
    (proxy_panel,) = loss_vs_lr(report).axes  # the optimum has no learning rate: proxies only
    assert proxy_panel.get_ylabel() == "validation loss (MSE, mean over seeds)"
    assert regret_vs_k(report).axes[0].get_ylabel() == "top-k regret (MSE)"


def test_ranking_by_alignment_plots_the_proxies_alignment_with_its_sign():
    groups = alignment_sweep({"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5})
    report = summarize(table(*groups, alignment=True), metric="alignment", n_boot=50, n_boot_figures=50)
    target_panel, proxy_panel = (ax for ax in loss_vs_lr(report).axes if ax.get_title())
    assert target_panel.get_ylabel() == "validation loss (nats/token, mean over seeds)"
    assert proxy_panel.get_ylabel() == "gradient alignment (mean over seeds; higher is better)"
    assert max(line.get_ydata()[0] for line in proxy_panel.get_lines()) == pytest.approx(3.005)
