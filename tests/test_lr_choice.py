"""The chosen proxy lr: tiny, inside the window, decided from the proxies alone (raysweep.report.lr_choice)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raysweep.report.lr_choice import MIN_STABILITY
from raysweep.report.render import lr_choice_table
from raysweep.report import summarize

RECIPES = ("a", "b", "c", "d", "e", "f")
SEED_OFFSET = np.array([0.0, 0.03, -0.02])
"""Seed s shifts every recipe alike (paired seeds): it must not pass for recipe noise."""


def _trained(gap: float, order=RECIPES) -> list[float]:
    """Recipe losses that rank ``order`` first to last, ``gap`` apart."""
    return [3.0 + gap * order.index(r) for r in RECIPES]


INITIAL_LOSS = 5.5
"""Every proxy's loss before its first step (same initialisation per seed, same validation set)."""


def _results(proxies: dict[float, list[float]], targets: list[float] | None = None, noise: float = 0.002,
             diverged: float | None = None, initial_loss: float | None = INITIAL_LOSS) -> pa.Table:
    """Three seeds per recipe and lr; ``diverged`` is an lr whose first run diverges; ``initial_loss`` None leaves the
    column out, as tables from elsewhere do."""
    rng = np.random.default_rng(0)
    records = []

    def add(role: str, lr: float, losses: list[float]) -> None:
        for recipe, loss in zip(RECIPES, losses):
            for seed, offset in enumerate(SEED_OFFSET):
                value = np.inf if lr == diverged and recipe == "a" and seed == 0 else (
                    loss + offset + noise * rng.standard_normal())
                records.append({"trial_key": f"{role}-{recipe}-{lr}-{seed}", "role": role, "recipe": recipe,
                                "model": "m" if role == "proxy" else "t", "num_params": 10, "lr": lr,
                                "batch_size": 8, "weight_decay": 0.0, "seed": seed, "step": 5, "tokens": 160,
                                "domain": "all", "loss": float(value), "status": "ok", "wall_s": 1.0,
                                **({} if initial_loss is None else {"initial_loss": initial_loss})})

    for lr, losses in proxies.items():
        add("proxy", lr, losses)
    if targets is not None:
        add("target", 1e-3, targets)
    return pa.Table.from_pylist(records)


def _choice(table: pa.Table, **kwargs):
    (choice,) = summarize(table, n_boot=200, n_boot_figures=50, **kwargs).main.lr_choices
    return choice


# An lr too small for the step budget: 0.2 below the initial loss (the trained ones drop ~2.5), recipes bunched
# within 0.001 of each other and ranked by early dynamics.
UNDER_TRAINED = [5.3 + 0.0002 * i for i in (3, 0, 5, 1, 4, 2)]
# Under-trained too, but consistently across seeds and in the same order as the next lr up.
BARELY_MOVED = [5.2 + 0.01 * i for i in range(6)]


def test_an_under_trained_smallest_lr_is_rejected_and_the_next_tiny_lr_is_chosen():
    choice = _choice(_results({1e-6: UNDER_TRAINED, 1e-5: _trained(0.05), 1e-4: _trained(0.04),
                               3e-4: _trained(0.03, order=("b", "a", "d", "c", "f", "e"))}), standard_lr=3e-4)
    assert choice.lr == 1e-5 and choice.trusted
    rejected = choice.checks[0]
    assert rejected.lr == 1e-6 and any(r.startswith("under-trained") for r in rejected.reasons)
    assert rejected.progress < 0.25 < choice.checks[1].progress
    assert [c.is_tiny for c in choice.checks] == [True, True, False, False]  # standard / 10 = 3e-5


def test_a_sweep_whose_every_lr_is_tiny_still_picks_one():
    choice = _choice(_results({1e-6: _trained(0.05), 3e-6: _trained(0.05), 1e-5: _trained(0.06)}),
                     standard_lr=3e-4)
    assert choice.lr == 1e-6 and choice.trusted and all(c.is_tiny for c in choice.checks)


def test_the_standard_lr_is_never_chosen_even_when_it_is_the_only_trained_one():
    choice = _choice(_results({1e-6: UNDER_TRAINED, 3e-4: _trained(0.05)}), standard_lr=3e-4)
    assert choice.lr == 1e-6 and not choice.trusted and "cannot vouch" in choice.caveat


def test_the_eq58_bound_and_divergence_keep_an_lr_out_of_the_window():
    proxies = {1e-6: UNDER_TRAINED, 1e-5: _trained(0.05), 1e-4: _trained(0.05), 1e-2: _trained(0.05)}
    assert _choice(_results(proxies)).lr == 1e-5
    choice = _choice(_results(proxies), eta_58={"m": 5e-6})
    assert choice.upper_lr == 5e-6 and not choice.trusted  # only the under-trained lr is below the bound
    assert any("Eq. 58" in r for r in choice.checks[1].reasons)
    choice = _choice(_results(proxies, diverged=1e-5))
    assert choice.lr == 1e-4 and any("diverged" in r for r in choice.checks[1].reasons)


def test_the_choice_never_reads_the_targets():
    proxies = {1e-6: UNDER_TRAINED, 1e-5: _trained(0.05), 1e-4: _trained(0.04)}
    without = _choice(_results(proxies))
    for targets in (_trained(0.05), _trained(0.05, order=tuple(reversed(RECIPES)))):
        with_targets = _choice(_results(proxies, targets=targets))
        assert (with_targets.lr, with_targets.checks) == (without.lr, without.checks)


def test_the_report_marks_the_chosen_setting_and_prints_why_each_lower_lr_was_rejected():
    report = summarize(_results({1e-6: UNDER_TRAINED, 1e-5: _trained(0.05), 1e-4: _trained(0.04)}, targets=_trained(0.05)),
                       n_boot=200, n_boot_figures=50)
    assert [s.lr for s in report.main.chosen()] == [1e-5]
    rows = lr_choice_table(report).rows
    assert rows[0][-1].startswith("rejected: under-trained") and rows[1][-1] == "chosen"


def test_an_lr_that_barely_moved_is_rejected_even_when_it_ranks_like_the_lr_above_it():
    choice = _choice(_results({1e-6: BARELY_MOVED, 3e-6: BARELY_MOVED, 1e-5: _trained(0.05), 3e-4: _trained(0.05)}),
                     standard_lr=3e-4)
    assert choice.lr == 1e-5 and choice.trusted
    assert [c.stability.low >= MIN_STABILITY for c in choice.checks[:2]] == [True, True]  # stability would pass them
    assert all("loss drop" in c.reasons[0] for c in choice.checks[:2])


def test_without_initial_losses_the_progress_check_is_skipped_and_stability_decides():
    choice = _choice(_results({1e-6: UNDER_TRAINED, 1e-5: _trained(0.05), 1e-4: _trained(0.04)}, initial_loss=None))
    assert choice.lr == 1e-5 and all(c.progress is None for c in choice.checks)
    assert any("ranks unlike lr 1e-05" in r for r in choice.checks[0].reasons)


def test_two_neighbouring_under_trained_lrs_do_not_vouch_for_each_other():
    window = tuple(reversed(RECIPES))  # trained proxies rank the recipes unlike the early dynamics do
    choice = _choice(_results({1e-6: BARELY_MOVED, 3e-6: BARELY_MOVED, 1e-5: _trained(0.05, order=window),
                               3e-5: _trained(0.05, order=window), 3e-4: _trained(0.05, order=window)},
                              initial_loss=None), standard_lr=3e-4)
    assert choice.lr == 1e-5 and choice.trusted
    assert [c.compared_lr for c in choice.checks] == [3e-5, 3e-5, 3e-5, None, None]  # the anchor is 3e-5
    assert choice.anchor_lr == 3e-5
    assert all("ranks unlike lr 3e-05" in c.reasons[0] for c in choice.checks[:2])


def test_the_anchor_is_not_judged_by_an_lr_outside_the_window():
    # The paper's failure: at the standard lr the ranking is reversed. The one tiny lr trained well and ranks by the
    # data; disagreeing with an lr outside the window says nothing against it.
    choice = _choice(_results({1e-5: _trained(0.05), 3e-4: _trained(0.05, order=tuple(reversed(RECIPES)))}),
                     standard_lr=3e-4)
    assert choice.lr == 1e-5 and choice.trusted and choice.anchor_lr == 1e-5
    assert choice.checks[0].stability is None and choice.checks[0].reasons == []
    assert lr_choice_table(summarize(_results({1e-5: _trained(0.05), 3e-4: _trained(0.05)}), n_boot=50,
                                     n_boot_figures=20)).rows[0][4] == "anchor"


def test_stability_compares_seed_s_at_one_lr_with_seed_s_at_the_other():
    # Seed 0 of the anchor ranks the recipes backwards; seeds 1 and 2 agree with the lr below, which lacks seed 0 for
    # one recipe and so is compared on seeds 1 and 2 only: the anchor's seed 0 must not stand in for its seed 1.
    table = _results({1e-5: _trained(0.05), 3e-5: _trained(0.05)}, noise=0.0)
    rows = table.to_pylist()
    kept = [r for r in rows if not (r["lr"] == 1e-5 and r["recipe"] == "a" and r["seed"] == 0)]
    for r in kept:
        if r["lr"] == 3e-5 and r["seed"] == 0:
            r["loss"] = 3.0 + 0.05 * (len(RECIPES) - 1 - RECIPES.index(r["recipe"]))
    choice = _choice(pa.Table.from_pylist(kept), standard_lr=3e-3)
    lower = choice.checks[0]
    assert lower.compared_lr == 3e-5 and lower.stability.low == 1.0
    assert choice.lr == 1e-5 and choice.trusted
