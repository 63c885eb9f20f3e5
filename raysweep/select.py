"""Select mode: proxies on every recipe, targets tuned only on the proxies' top k, and the pick among those.

The full protocol tunes targets on every recipe to *validate* the proxies; once a validation sweep has shown how
far a proxy setting can be trusted (its top-k regret), a team deciding on new recipes trains targets only where
the proxy points. ``launch_select`` runs the proxies, shortlists the top ``k`` of the chosen proxy setting (the
tiny-lr rule, fixed before any target is trained), tunes targets on the shortlist, and picks the best of it by
tuned target loss; the bound it comes with is the validation sweep's regret@k for the same proxy setting::

    outcome, selection = launch_select(cluster, sweep, console)
    selection.pick, selection.shortlist, selection.bound   # "web_strict", [...], Interval(0.0, 0.0, 0.02)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from raysweep import store
from raysweep.config import ClusterConfig, SweepConfig
from raysweep.errors import DataError, ReportError
from raysweep.report import report_run
from raysweep.report.records import Interval
from raysweep.sweep import LaunchOutcome, launch


@dataclass(frozen=True)
class Selection:
    model: str
    lr: float
    """The proxy setting whose ranking shortlisted: the model's chosen lr (``raysweep.report.lr_choice``)."""
    shortlist: list[str]
    """Its top k recipes, best first."""
    pick: str | None
    """The shortlisted recipe with the lowest tuned target loss; None while its targets are not all stored."""
    pick_loss: Interval | None
    bound: Interval | None
    """regret@k of the same proxy setting on the validation sweep (nats/token), or None without one."""
    bound_note: str
    """Where the bound comes from, or why there is none."""


def launch_select(cluster: ClusterConfig, sweep: SweepConfig, console: Console) -> tuple[LaunchOutcome, Selection]:
    rule = sweep.select
    model = rule.model or sweep.proxy.models[0]
    run_dir = store.RunDir.of(cluster.storage, sweep.name).path
    proxies = launch(cluster, sweep, console, target_recipes=[])
    # the plan of this launch has no targets: stored ones (an earlier shortlist) are left out of the ranking
    warn = functools.partial(console.print, style="yellow", markup=False)  # what the report leaves out
    proxy_report = report_run(run_dir, warn, n_boot=200, n_boot_figures=50)
    chosen = next((s for s in proxy_report.main.chosen() if s.model == model), None)
    if chosen is None:
        raise DataError(f"select: proxy {model} has no learning rate with runs on every recipe; nothing to "
                        "shortlist (see `raysweep report` for what is missing)")
    shortlist = sorted(chosen.rank, key=chosen.rank.get)[:rule.top_k]
    console.print(f"Select: proxy {model} @ lr {chosen.lr:g} shortlists {', '.join(shortlist)}; tuning targets "
                  "on those only")
    targets = launch(cluster, sweep, console, target_recipes=shortlist)
    final = report_run(run_dir, warn)
    tuned = [t for t in final.main.targets if t.recipe in shortlist]
    complete = len(tuned) == len(shortlist)
    bound, note = _validated_bound(rule.validated_by, model, chosen.lr, rule.top_k, warn)
    outcome = LaunchOutcome(run_dir, targets.num_planned, proxies.num_trained + targets.num_trained,
                            proxies.errors + targets.errors, proxies.corrupt + targets.corrupt,
                            proxies.outages + targets.outages)
    return outcome, Selection(model, chosen.lr, shortlist, tuned[0].recipe if complete else None,
                              tuned[0].loss if complete else None, bound, note)


def _validated_bound(validated_by: str | None, model: str, lr: float, k: int,
                     warn: Callable[[str], None]) -> tuple[Interval | None, str]:
    """regret@k of proxy ``model`` at ``lr`` on a full sweep's run directory, with where it comes from."""
    if validated_by is None:
        return None, ("no validation sweep named (select.validated_by): run the full protocol once, targets on "
                      "every recipe, to know how far a top-k shortlist can be trusted")
    try:
        report = report_run(Path(validated_by), warn)
    except (ReportError, ValueError, KeyError, TypeError) as err:
        return None, f"validation sweep {validated_by}: unreadable ({err})"
    setting = next((s for s in report.main.proxies if s.model == model and abs(s.lr - lr) <= 1e-12 * lr), None)
    if setting is None or setting.agreement is None or k not in setting.agreement.regret:
        return None, f"validation sweep {validated_by} has no proxy {model} @ lr {lr:g} scored against tuned targets"
    return setting.agreement.regret[k], (f"regret@{k} of proxy {model} @ lr {lr:g} on the validation sweep "
                                         f"{validated_by} ({len(report.main.recipes)} recipes, targets tuned on all)")


def print_selection(selection: Selection, console: Console) -> None:
    console.print(f"[bold]Select[/bold]: proxy {selection.model} @ lr {selection.lr:g} shortlisted "
                  f"{', '.join(selection.shortlist)} (best first).")
    if selection.pick is None:
        console.print("No pick yet: some shortlisted recipes have no stored target runs (see the failures above).")
    else:
        point, low, high = selection.pick_loss
        console.print(f"[bold]Pick: {selection.pick}[/bold] — tuned target loss {point:.4f} [{low:.4f}, {high:.4f}] "
                      "nats/token, the best of the shortlist.")
    if selection.bound is None:
        console.print(f"Bound: none; {selection.bound_note}.")
    else:
        point, low, high = selection.bound
        console.print(f"Bound: {point:.4f} [{low:.4f}, {high:.4f}] nats/token — {selection.bound_note}: the best "
                      f"of a top-{len(selection.shortlist)} shortlist was that far from the best recipe there.")
