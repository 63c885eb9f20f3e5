"""A report in words: its tables, built once for the terminal and for the HTML page (the verdict: ``verdict``).

Each table is a ``TextTable`` (title, columns, rows of strings, footnotes); ``print_report`` draws them
with Rich and ``raysweep.report.html`` as HTML, so the two never disagree::

    report = summarize(table)
    print_report(report, Console())        # decision, reliability, per-domain, checkpoints, compute, verdict

Numbers: losses in nats/token with bits/byte beside them when the table records them (mean squared error
for random-feature runs); every statistic as "point [low, high]", its 95% bootstrap interval over seeds.
Words come from ``Report.terms()``: "tuned target" or "infinite-width optimum", proxy "loss" or "gradient
alignment" (shown with its own sign, higher first). A random-feature report ends with App. B's question
answered per width: at which learning rates the proxies rank the datasets in their infinite-width order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from raysweep.report.records import TASK_METRIC, Agreement, Interval, Metric, ProxySetting, Report, Terms
from raysweep.report.verdict import ci, finding_one, setting_name, verdict


class Column(NamedTuple):
    header: str
    numeric: bool = True
    in_terminal: bool = True
    """False for detail columns that only the HTML page shows, to keep terminal tables within 160 characters."""


@dataclass(frozen=True)
class TextTable:
    title: str
    columns: list[Column]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _in_bits(stat: Interval, bits_per_nat: float) -> str:
    """A loss gap in nats/token converted to bits/byte (one factor per domain, so the CI converts too)."""
    return ci(Interval(*(bits_per_nat * np.array(stat))), 3)


def _regret_columns(ks: list[int], bits_per_nat: float | None, unit: str) -> list[Column]:
    """regret@k in the targets' loss unit, then in bits/byte for the HTML page when the table records bits per byte."""
    columns = [Column(f"regret@{k}\n{unit}") for k in ks]
    if bits_per_nat is not None:
        columns += [Column(f"regret@{k}\nbits/byte", in_terminal=False) for k in ks]
    return columns


def _regret_cells(regret: dict[int, Interval], ks: list[int], bits_per_nat: float | None) -> list[str]:
    cells = [ci(regret[k], 3) if k in regret else "–" for k in ks]
    if bits_per_nat is not None:
        cells += [_in_bits(regret[k], bits_per_nat) if k in regret else "–" for k in ks]
    return cells


def _bits_note(bits_per_nat: float | None) -> list[str]:
    if bits_per_nat is None:
        return []
    return [f"Regret in bits/byte = nats/token × {bits_per_nat:.4f} on this domain (the HTML page shows both)."]


def _score(value: float, terms: Terms) -> str:
    """A proxy score (or its spread) as shown: a loss to 4 decimals, an alignment to 4 significant digits."""
    return f"{value:.4f}" if terms.proxy_score == "loss" else f"{value:.4g}"


def decision_table(report: Report) -> TextTable:
    """Recipes best first (by target loss, or by proxy score without targets) beside each chosen proxy's rank."""
    main, terms = report.main, report.terms()
    computed = not report.family.tuned_targets  # one optimum per dataset: no seed spread, no configuration
    chosen = main.chosen()
    proxy_columns = [column for s in chosen for column in (
        Column(f"{setting_name(s)}\nrank · {terms.proxy_score} ± seed std"),
        *([Column(f"{setting_name(s)}\nbits/byte", in_terminal=False)] if s.mean_bits_per_byte else []))]
    test = ("paired t-test over seeds at 5%: seed s is the same initialisation and data order for every recipe"
            if report.seeds_paired else "two-sided t-test of seed means at 5%, seeds taken as independent")
    notes = [f"≈ : within seed noise of the {terms.recipe} ranked just above ({test})."]
    if main.targets:
        has_bits = any(t.bits_per_byte is not None for t in main.targets)
        title = (f"{terms.recipe.capitalize()}s by {terms.target} {terms.target_score} ({_where(report)}), beside "
                 "each proxy's ranking at its chosen lr (inside the tiny-lr window, decided from the proxies alone)")
        columns = [Column("#"), Column(terms.recipe, False),
                   Column(f"{terms.target} {terms.target_score}\n{terms.loss_unit}"
                          + ("" if computed else " [95% CI]")),
                   *([Column("bits/byte")] if has_bits else []),
                   *([] if computed else [Column("target\nseed std"), Column("best target config", False)]),
                   *proxy_columns]
        rows = []
        for rank, target in enumerate(main.targets, start=1):
            bits = [f"{target.bits_per_byte:.4f}" if target.bits_per_byte is not None else "–"] if has_bits else []
            spread = [] if computed else [f"{target.seed_std:.4f}", str(target.config)]
            rows.append([f"{rank}{' ≈' if target.within_noise_of_previous else ''}", target.recipe,
                         f"{target.loss.point:.4f}" if computed else ci(terms.shown(target.loss), terms.digits), *bits,
                         *spread,
                         *[cell for s in chosen for cell in _proxy_cells(s, target.recipe, terms)]])
        flagged = [f"{prev.recipe} ≈ {t.recipe}" for prev, t in zip(main.targets, main.targets[1:])
                   if t.within_noise_of_previous]
        if flagged:
            notes.append(f"Tuned targets within noise: {', '.join(flagged)}.")
    else:
        order_word = " (higher first)" if terms.proxy_sign < 0 else ""
        title = (f"{terms.recipe.capitalize()}s by proxy {terms.proxy_score}{order_word} ({_where(report)}) "
                 "at the chosen lr; no target runs yet, so nothing checks this ranking")
        columns = [Column(terms.recipe, False), *proxy_columns]
        order = sorted(main.recipes, key=lambda r: chosen[0].rank[r]) if chosen else main.recipes
        rows = [[recipe, *[cell for s in chosen for cell in _proxy_cells(s, recipe, terms)]] for recipe in order]
    for setting in chosen:
        notes.append(f"Proxy {setting_name(setting)}: {len(setting.within_noise_of_previous)} of "
                     f"{len(main.recipes) - 1} neighbouring pairs within noise.")
    return TextTable(title, columns, rows, notes)


def _where(report: Report) -> str:
    """What the ranking is on: a validation domain, or a downstream task ("all": the mean over tasks)."""
    kind = "task" if report.metric.is_task else "validation"
    return f"{kind}: {report.main.domain}"


def _proxy_cells(setting: ProxySetting, recipe: str, terms: Terms) -> list[str]:
    """Rank (≈ when within noise of the recipe ranked above) · seed-mean score ± seed std; bits/byte when known."""
    if recipe not in setting.rank:
        return ["–"] * (1 + bool(setting.mean_bits_per_byte))
    mark = " ≈" if recipe in setting.within_noise_of_previous else ""
    shown = setting.mean_score[recipe]
    cells = [f"{setting.rank[recipe]}{mark} · {_score(shown, terms)} ± {_score(setting.seed_std[recipe], terms)}"]
    if setting.mean_bits_per_byte:
        cells.append(f"{setting.mean_bits_per_byte[recipe]:.4f}")
    return cells


def reliability_table(report: Report) -> TextTable:
    """Every proxy setting and the baselines, scored against the tuned targets."""
    main, terms = report.main, report.terms()
    ks = sorted({k for s in main.proxies if s.agreement for k in s.agreement.regret})
    columns = [Column("ranking by", False), Column("", False), Column("Spearman"),
               Column("Kendall τ", in_terminal=False), Column("pairs ordered\nright", in_terminal=False),
               *_regret_columns(ks, main.bits_per_nat, terms.loss_unit)]
    hindsight = main.best_in_hindsight()
    rows = []

    def add(name: str, label: str, agreement: Agreement) -> None:
        rows.append([name, label, ci(agreement.spearman), ci(agreement.kendall), ci(agreement.decision_accuracy),
                     *_regret_cells(agreement.regret, ks, main.bits_per_nat)])

    for setting in main.proxies:
        if setting.agreement:
            labels = [("chosen", setting.is_chosen), ("standard lr (baseline)", setting.is_standard),
                      ("best in hindsight", setting in hindsight)]
            add(f"proxy {setting_name(setting)}", ", ".join(t for t, on in labels if on), setting.agreement)
    for baseline in report.fixed_configs:
        label = "fixed target config (baseline)" + (f", {baseline.label}" if baseline.label else "")
        add(f"{report.target_model} @ {baseline.config}", label, baseline.agreement)
    notes = ["chosen: the model's smallest lr inside the tiny-lr window, decided from the proxies alone before the "
             "targets (see the table of lr checks); best in hindsight: highest Spearman, knowable only after "
             "training the targets."]
    if report.fixed_configs:
        notes.append("Fixed target config: every recipe trained at one target configuration (DataDecide-style) and "
                     "ranked against the per-recipe tuned ranking; paired bootstrap, as both share runs.")
    notes += _bits_note(main.bits_per_nat)
    if report.fixed_configs and report.fixed_configs[0].label:
        notes.append(f"{report.num_target_configs} target configurations: best, median and worst by Spearman shown "
                     "(the best is itself chosen in hindsight).")
    ranked_by = f"proxies ranked by {terms.proxy_score}; " if report.metric != Metric.LOSS else ""
    seeds = "paired seeds" if report.seeds_paired else "seeds"
    notes += [f"{report.metric} ranking vs loss ranking (validation: all), {who}: Spearman {rho:.2f}."
              for who, rho in report.versus_loss]
    return TextTable(f"How far each ranking can be trusted against the {terms.target} ranking ({_where(report)}; "
                     f"{ranked_by}95% bootstrap CI over {seeds}; regret in {terms.loss_unit}, lower is "
                     "better)", columns, rows, notes)


def domain_table(report: Report) -> TextTable:
    """Per validation domain: its best tuned recipe and the agreement of the chosen and standard proxies."""
    terms = report.terms()
    shown = [*report.main.chosen(), *[s for s in report.main.standard() if not s.is_chosen]]
    columns = [Column("domain", False), Column(f"best {terms.recipe}\n({terms.target})", False),
               *[Column(f"{setting_name(s)}\n{'chosen' if s.is_chosen else 'standard lr'}: Spearman",
                        in_terminal=s.is_chosen) for s in shown]]
    rows = []
    for summary in report.domains:
        settings = {(s.model, s.lr): s for s in summary.proxies}
        cells = []
        for s in shown:
            match = settings.get((s.model, s.lr))
            cells.append(ci(match.agreement.spearman) if match and match.agreement else "–")
        best = summary.targets[0].recipe if summary.targets else "–"
        rows.append([summary.domain + (" (ranked by)" if summary is report.main else ""), best, *cells])
    title = ("Agreement per task (each tuned and ranked on its own score)" if report.metric.is_task
             else "Agreement per validation domain (each domain tuned and ranked on its own loss)")
    return TextTable(title, columns, rows,
                     ["Other domains' CIs use fewer resamples (those of the figures); the HTML page adds the "
                      "standard lr."])


def task_table(report: Report) -> TextTable:
    """The loss report's downstream tasks: each ranked by ``TASK_METRIC`` with its own tuned targets, beside the
    loss ranking of the same runs; near chance, flagged as uninformative."""
    metric = TASK_METRIC
    rows, flagged = [], []
    for ranking in report.tasks:
        score = ci(ranking.best_score, 1) if ranking.best_score else "–"
        check = ranking.chance
        of = f" of {check.items_in_task:,}" if check and check.items_in_task > check.items else ""
        chance = f"{check.chance:.1f} ({check.items:,}{of} items)" if check else "–"
        if ranking.chance and ranking.chance.near_chance:
            flagged.append(ranking.task)
        def spearman(settings: list[ProxySetting]) -> str:
            return "; ".join(f"{setting_name(s)}: {ci(s.agreement.spearman)}"
                             + (" (at chance)" if (s.model, s.lr) in ranking.proxies_at_chance else "")
                             for s in settings if s.agreement)

        chosen, standard = spearman(ranking.chosen), spearman([s for s in ranking.standard if not s.is_chosen])
        versus = "; ".join(f"{rho:.2f}" for who, rho in ranking.versus_loss if who == "tuned targets")
        rows.append([ranking.task + (" (near chance)" if ranking.task in flagged else ""),
                     ranking.best or "–", score, chance, chosen or "–", standard or "–", versus or "–"])
    notes = [f"Each task tunes the targets on its own {metric} (accuracy points; higher is better); "
             f"`raysweep report RUN --metric {metric} --domain TASK` gives its full report. The last column: "
             "Spearman between the tuned targets' ranking by it and by the validation loss (all)."]
    if flagged:
        notes.append(f"Near chance ({', '.join(flagged)}): the best {metric} is within two standard errors of a "
                     "uniform guess, so these rankings say nothing; do not decide on them.")
    if any(ranking.proxies_at_chance for ranking in report.tasks):
        notes.append(f"At chance: a proxy whose best {metric} is within two standard errors of a uniform guess; its "
                     "Spearman by it is noise (tiny-lr proxies often are: rank them by loss, or by "
                     "gold_logprob_per_byte).")
    return TextTable(f"Downstream tasks ranked by {metric} (task \"all\": their mean)",
                     [Column("task", False), Column(f"best {report.terms().recipe}\n(tuned target)", False),
                      Column(f"its {metric}\npoints [95% CI]"), Column("chance\npoints"),
                      Column("chosen proxy\nSpearman", False), Column("standard lr\nSpearman", False),
                      Column(f"targets: {metric}\nvs loss ranking")], rows, notes)


def checkpoint_table(report: Report) -> TextTable:
    """Decision quality against proxy compute at the chosen lr, from the intermediate checkpoints."""
    terms = report.terms()
    chosen = {(s.model, s.lr) for s in report.main.chosen()}
    bits_per_nat = report.main.bits_per_nat
    rows = [[f"{p.model} @ lr {p.lr:g}", str(p.step), f"{p.proxy_flops:.2e}", ci(p.spearman),
             *_regret_cells({1: p.regret_at_1}, [1], bits_per_nat)]
            for p in report.checkpoints if (p.model, p.lr) in chosen]
    return TextTable("Decision quality vs proxy compute at the chosen lr (intermediate checkpoints scored against the "
                     f"final {terms.target} ranking)",
                     [Column("proxy", False), Column("step"),
                      Column(f"proxy FLOPs so far\n(all {terms.recipe}s × seeds)"), Column("Spearman"),
                      *_regret_columns([1], bits_per_nat, terms.loss_unit)], rows, _bits_note(bits_per_nat))


def compute_table(report: Report) -> TextTable:
    """Per role and in total; with early-stopped trials, how many and the FLOPs their unrun steps saved."""
    compute, early = report.compute, any(r.num_stopped for r in report.compute)

    def cells(role: str, rows: list) -> list[str]:
        saved = [str(sum(r.num_stopped for r in rows)), f"{sum(r.saved_flops for r in rows):.2e}"] if early else []
        return [role, str(sum(r.num_trials for r in rows)), str(sum(r.num_diverged for r in rows)),
                f"{sum(r.flops for r in rows):.2e}", f"{sum(r.wall_hours for r in rows):.2f}", *saved]

    saved_columns = [Column("stopped early"), Column("FLOPs saved\nby early stop")] if early else []
    return TextTable("Compute spent (FLOPs = 6 · parameters · tokens trained, at each trial's last step)",
                     [Column("role", False), Column("trials"), Column("diverged"), Column("FLOPs"),
                      Column("wall hours\n(summed over trials)"), *saved_columns],
                     [*(cells(r.role, [r]) for r in compute), cells("total", compute)], [protocol_share_line(report)])


def protocol_share_line(report: Report) -> str:
    """The decision's FLOPs as a share of the full protocol's (every proxy and every recipe's search to the end)."""
    spent, full = sum(r.flops for r in report.compute), report.full_protocol_flops
    terms = report.terms()
    if full <= 0 or spent >= full * (1 - 1e-9):
        return f"This decision ran the full protocol: every proxy and every {terms.recipe}'s target search to the end."
    return (f"This decision cost {spent / full:.1%} of the full protocol ({full:.2e} FLOPs: every proxy to its last "
            f"planned step, the target search on every {terms.recipe} to the end); the rest was never trained "
            "(early stops, or targets on a shortlist only).")


def tables(report: Report) -> list[TextTable]:
    """Every table of the report, in reading order; tables with nothing to show are left out."""
    main = report.main
    candidates = [decision_table(report)]
    if any(s.agreement for s in main.proxies) or report.fixed_configs:
        candidates += [reliability_table(report), domain_table(report)]
    candidates.append(task_table(report))
    candidates += [lr_choice_table(report), checkpoint_table(report), compute_table(report)]
    return [t for t in candidates if t.rows]


def lr_choice_table(report: Report) -> TextTable:
    """How each proxy model's lr was chosen: every lr's checks and why each one below the chosen was rejected."""
    main = report.main
    columns = [Column("proxy", False), Column("lr"), Column("tiny?", False),
               Column("loss drop\nvs standard lr's"), Column("ranking vs anchor\nSpearman"),
               Column("neighbours within\nseed noise"), Column("decision", False)]
    rows, notes = [], []
    for choice in main.lr_choices:
        for check in choice.checks:
            share = f"{check.share_within_noise:.0%}" if check.share_within_noise is not None else "–"
            progress = f"{check.progress:.0%}" if check.progress is not None and np.isfinite(check.progress) else "–"
            stability = (f"{ci(check.stability)} (lr {check.compared_lr:g})" if check.stability else
                         "anchor" if check.lr == choice.anchor_lr else "–")
            if check.lr == choice.lr:
                decision = "chosen" if choice.trusted else "chosen (fallback: " + "; ".join(check.reasons) + ")"
            elif check.lr < choice.lr:
                decision = "rejected: " + "; ".join(check.reasons)
            else:
                decision = "; ".join(check.reasons) or "in the window (a smaller lr passed first)"
            rows.append([choice.model, f"{check.lr:g}", "yes" if check.is_tiny else "no", progress, stability, share,
                         decision])
        bound = f", Eq. 58 bound {choice.eta_58:.3g}" if choice.eta_58 is not None else ", Eq. 58 bound not estimated"
        floor = f", precision floor {choice.precision_floor:.2g}" if choice.precision_floor is not None else ""
        notes.append(f"{choice.model}: standard lr {choice.standard_lr:g}, window's upper end {choice.upper_lr:.3g} "
                     f"(standard / 10{bound}){floor}." + (f" {choice.caveat}." if choice.caveat else ""))
    notes.append("Rule: the smallest lr that is tiny (≤ standard / 10 and ≤ the Eq. 58 bound), above the precision "
                 "floor, without divergence, and above the horizon floor: a loss drop from initialisation of at least "
                 "25% of the standard lr's, and a ranking that agrees beyond seed noise (Spearman CI lower end ≥ 0.5) "
                 "with "
                 "the anchor's, the largest lr passing every other check (the anchor is not compared with the lrs "
                 "above it: they are outside the window, where rankings may differ). Neighbours within seed noise "
                 "are shown, not checked. No target run is read.")
    return TextTable("How the proxy lr was chosen (from the proxies alone)", columns, rows, notes)


def print_report(report: Report, console: Console) -> None:
    """The tables, what is missing, and the verdict, for a terminal or a log."""
    for text_table in tables(report):
        table = Table(title=text_table.title)
        shown = [i for i, column in enumerate(text_table.columns) if column.in_terminal]
        for i in shown:
            column = text_table.columns[i]
            table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=column.numeric)
        for row in text_table.rows:
            table.add_row(*[Text(row[i]) for i in shown])
        console.print(table)
        for note in text_table.notes:
            console.print(Text(note, style="dim"))
    if report.num_diverged:
        console.print(f"{report.num_diverged} run(s) diverged; their loss counts as +inf.")
    for line in report.missing:
        console.print(Text.assemble(("missing: ", "yellow"), line))
    for line in finding_one(report):
        console.print(Text(line), soft_wrap=True)
    console.print(Text(verdict(report), style="bold"), soft_wrap=True)
