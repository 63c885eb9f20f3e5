"""A report in words: its tables and its verdict line, built once for the terminal and for the HTML page.

Each table is a ``TextTable`` (title, columns, rows of strings, footnotes); ``print_report`` draws them
with Rich and ``raysweep.html_page`` as HTML, so the two never disagree::

    report = summarize(table)
    print_report(report, Console())        # decision, reliability, per-domain, checkpoints, compute, verdict
    verdict(report)                        # "Verdict: ship balanced: lowest tuned target loss 1.2073 …"

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

from raysweep.report_records import RANDOM_FEATURES, Agreement, Interval, ProxySetting, Report, Terms

TRUSTED_SPEARMAN = 0.7
"""A ranking "agrees" with the tuned targets when Spearman reaches this (its CI's lower end, to be trusted)."""
WIDE_CI = 0.5
"""A Spearman CI wider than this is called wide: more seeds would be needed to tell."""


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


def ci(stat: Interval, digits: int = 2) -> str:
    """"point [low, high]", or "n/a" for an undefined statistic."""
    if np.isnan(stat.point):
        return "n/a"
    return f"{stat.point:.{digits}f} [{stat.low:.{digits}f}, {stat.high:.{digits}f}]"


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


def _setting_name(setting: ProxySetting) -> str:
    return f"{setting.model} @ lr {setting.lr:g}"


def _score(value: float, terms: Terms) -> str:
    """A proxy score (or its spread) as shown: a loss to 4 decimals, an alignment to 4 significant digits."""
    return f"{value:.4f}" if terms.proxy_score == "loss" else f"{value:.4g}"


def decision_table(report: Report) -> TextTable:
    """Recipes best first (by target loss, or by proxy score without targets) beside each chosen proxy's rank."""
    main, terms = report.main, report.terms()
    rf = report.family == RANDOM_FEATURES  # one optimum per dataset: no seed spread, no configuration
    chosen = main.chosen()
    proxy_columns = [column for s in chosen for column in (
        Column(f"{_setting_name(s)}\nrank · {terms.proxy_score} ± seed std"),
        *([Column(f"{_setting_name(s)}\nbits/byte", in_terminal=False)] if s.mean_bits_per_byte else []))]
    test = ("paired t-test over seeds at 5%: seed s is the same initialisation and data order for every recipe"
            if report.seeds_paired else "two-sided t-test of seed means at 5%, seeds taken as independent")
    notes = [f"≈ : within seed noise of the {terms.recipe} ranked just above ({test})."]
    if main.targets:
        has_bits = any(t.bits_per_byte is not None for t in main.targets)
        title = (f"{terms.recipe.capitalize()}s by {terms.target} loss (validation: {main.domain}), beside each "
                 "proxy's ranking at its chosen lr (inside the tiny-lr window, decided from the proxies alone)")
        columns = [Column("#"), Column(terms.recipe, False),
                   Column(f"{terms.target} loss\n{terms.loss_unit}" + ("" if rf else " [95% CI]")),
                   *([Column("bits/byte")] if has_bits else []),
                   *([] if rf else [Column("target\nseed std"), Column("best target config", False)]), *proxy_columns]
        rows = []
        for rank, target in enumerate(main.targets, start=1):
            bits = [f"{target.bits_per_byte:.4f}" if target.bits_per_byte is not None else "–"] if has_bits else []
            spread = [] if rf else [f"{target.seed_std:.4f}", str(target.config)]
            rows.append([f"{rank}{' ≈' if target.within_noise_of_previous else ''}", target.recipe,
                         f"{target.loss.point:.4f}" if rf else ci(target.loss, 4), *bits, *spread,
                         *[cell for s in chosen for cell in _proxy_cells(s, target.recipe, terms)]])
        flagged = [f"{prev.recipe} ≈ {t.recipe}" for prev, t in zip(main.targets, main.targets[1:])
                   if t.within_noise_of_previous]
        if flagged:
            notes.append(f"Tuned targets within noise: {', '.join(flagged)}.")
    else:
        order_word = " (higher first)" if terms.proxy_sign < 0 else ""
        title = (f"{terms.recipe.capitalize()}s by proxy {terms.proxy_score}{order_word} (validation: {main.domain}) "
                 "at the chosen lr; no target runs yet, so nothing checks this ranking")
        columns = [Column(terms.recipe, False), *proxy_columns]
        order = sorted(main.recipes, key=lambda r: chosen[0].rank[r]) if chosen else main.recipes
        rows = [[recipe, *[cell for s in chosen for cell in _proxy_cells(s, recipe, terms)]] for recipe in order]
    for setting in chosen:
        notes.append(f"Proxy {_setting_name(setting)}: {len(setting.within_noise_of_previous)} of "
                     f"{len(main.recipes) - 1} neighbouring pairs within noise.")
    return TextTable(title, columns, rows, notes)


def _proxy_cells(setting: ProxySetting, recipe: str, terms: Terms) -> list[str]:
    """Rank (≈ when within noise of the recipe ranked above) · seed-mean score ± seed std; bits/byte when known."""
    if recipe not in setting.rank:
        return ["–"] * (1 + bool(setting.mean_bits_per_byte))
    mark = " ≈" if recipe in setting.within_noise_of_previous else ""
    shown = terms.proxy_sign * setting.mean_loss[recipe]
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
            add(f"proxy {_setting_name(setting)}", ", ".join(t for t, on in labels if on), setting.agreement)
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
    ranked_by = f"proxies ranked by {terms.proxy_score}; " if report.metric == "alignment" else ""
    seeds = "paired seeds" if report.seeds_paired else "seeds"
    return TextTable(f"How far each ranking can be trusted against the {terms.target} ranking (validation: "
                     f"{main.domain}; {ranked_by}95% bootstrap CI over {seeds}; regret in {terms.loss_unit}, lower is "
                     "better)", columns, rows, notes)


def domain_table(report: Report) -> TextTable:
    """Per validation domain: its best tuned recipe and the agreement of the chosen and standard proxies."""
    terms = report.terms()
    shown = [*report.main.chosen(), *[s for s in report.main.standard() if not s.is_chosen]]
    columns = [Column("domain", False), Column(f"best {terms.recipe}\n({terms.target})", False),
               *[Column(f"{_setting_name(s)}\n{'chosen' if s.is_chosen else 'standard lr'}: Spearman",
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
    return TextTable("Agreement per validation domain (each domain tuned and ranked on its own loss)", columns, rows,
                     ["Other domains' CIs use fewer resamples (those of the figures); the HTML page adds the "
                      "standard lr."])


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
                     [*(cells(r.role, [r]) for r in compute), cells("total", compute)])


def tables(report: Report) -> list[TextTable]:
    """Every table of the report, in reading order; tables with nothing to show are left out."""
    main = report.main
    candidates = [decision_table(report)]
    if any(s.agreement for s in main.proxies) or report.fixed_configs:
        candidates += [reliability_table(report), domain_table(report)]
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
            stability = f"{ci(check.stability)} (lr {check.compared_lr:g})" if check.stability else "–"
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
                 "25% of the standard lr's, and a ranking that agrees beyond seed noise (Spearman CI lower end ≥ 0.5) with "
                 "the anchor's, the largest lr passing every other check (the anchor is compared with the next lr "
                 "up). Neighbours within seed noise are shown, not checked. No target run is read.")
    return TextTable("How the proxy lr was chosen (from the proxies alone)", columns, rows, notes)


def finding_one(report: Report) -> list[str]:
    """Finding I (Fig. 4a): each proxy model's loss at the chosen lr against its own best over the lr sweep."""
    if report.metric != "loss":
        return []
    lines = []
    for model in sorted({s.model for s in report.main.chosen()}):
        rows = report.main.chosen_vs_own_best(model)
        finite = [(c, b) for _, c, b, _ in rows if np.isfinite(c) and np.isfinite(b)]
        if not finite:
            continue
        gaps = np.array([c - b for c, b in finite])
        best_lrs = sorted({lr for *_, lr in rows})
        chosen_lr = next(s.lr for s in report.main.chosen() if s.model == model)
        lines.append(f"Finding I: {model} at the chosen lr {chosen_lr:g} ends {gaps.mean():.3f} "
                     f"{report.terms().loss_unit} above its own best over the lr sweep (per {report.terms().recipe}: "
                     f"{gaps.min():.3f} to {gaps.max():.3f}; best at lr {', '.join(f'{lr:g}' for lr in best_lrs)}): "
                     "a tiny-lr proxy is a worse model and is used for its ranking, not its loss.")
    return lines


def _stats(agreement: Agreement, bits_per_nat: float | None) -> str:
    text = f"Spearman {ci(agreement.spearman)}"
    if 1 in agreement.regret:
        regret = agreement.regret[1]
        text += f", regret@1 {ci(regret, 3)} nats/token"
        if bits_per_nat is not None and not np.isnan(regret.point):
            text += f" ({regret.point * bits_per_nat:.3f} bits/byte)"
    return text


def _trust(spearman: Interval) -> str:
    if np.isnan(spearman.point):
        return "cannot be scored (a ranking is constant)"
    wide = " (CI wide: more seeds needed)" if spearman.high - spearman.low > WIDE_CI else ""
    if spearman.low >= TRUSTED_SPEARMAN:
        return "agrees with the tuned targets" + wide
    if spearman.point >= TRUSTED_SPEARMAN:
        return "agrees with the tuned targets on the point estimate only" + wide
    return "does not reliably agree with the tuned targets" + wide


def verdict(report: Report) -> str:
    """One plain line: what to ship, and how far the proxy that would have picked it can be trusted; for random
    features, where the proxies' learning rates rank the datasets in their infinite-width order."""
    main, terms = report.main, report.terms()
    chosen = main.chosen()
    if not main.targets:
        if not chosen:
            return f"Verdict: nothing to rank yet: no target runs and no proxy setting covering every {terms.recipe}."
        picks = []
        for s in chosen:
            order = sorted(main.recipes, key=s.rank.__getitem__)
            tied = len(order) > 1 and order[1] in s.within_noise_of_previous
            tie = f" (within seed noise of {order[1]})" if tied else ""
            picks.append(f"proxy {_setting_name(s)} ranks {order[0]} first{tie}")
        return f"Verdict: no {terms.target} runs yet, so the proxy ranking is unchecked; {'; '.join(picks)}."
    if report.family == RANDOM_FEATURES:
        return _window_verdict(report)
    best = main.targets[0]
    bits = f" ({best.bits_per_byte:.4f} bits/byte)" if best.bits_per_byte is not None else ""
    parts = [f"ship {best.recipe}: lowest tuned target loss {ci(best.loss, 4)} nats/token{bits}"]
    if len(main.targets) > 1 and main.targets[1].within_noise_of_previous:
        parts[0] += (f", but {main.targets[1].recipe} is within seed noise of it: the targets cannot separate them, "
                     "add target seeds before committing")
    scored = [s for s in main.proxies if s.agreement]
    ranked_by = " ranked by gradient alignment" if report.metric == "alignment" else ""
    untrusted = {c.model for c in main.lr_choices if not c.trusted}
    for s in (s for s in scored if s.is_chosen):
        caveat = " (a fallback: no lr passed the window's checks)" if s.model in untrusted else ""
        parts.append(f"proxy {s.model}{ranked_by} at the chosen lr {s.lr:g}{caveat} {_trust(s.agreement.spearman)}: "
                     f"{_stats(s.agreement, main.bits_per_nat)}")
    for s in (s for s in scored if s.is_standard and not s.is_chosen):
        parts.append(f"{s.model} at the standard lr {s.lr:g}: {_stats(s.agreement, main.bits_per_nat)}")
        chosen = next((c for c in scored if c.is_chosen and c.model == s.model), None)
        if chosen and not _clearly_below(s.agreement.spearman, chosen.agreement.spearman):
            parts.append(f"here the standard lr ranks {_as_well(s.agreement.spearman, chosen.agreement.spearman)} "
                         f"the chosen tiny lr: this run does not show a tiny-lr advantage for {s.model}")
    for s in (s for s in main.best_in_hindsight() if not s.is_chosen and not s.is_standard):
        parts.append(f"{s.model}'s best lr in hindsight, {s.lr:g}: Spearman {ci(s.agreement.spearman)}")
    if not scored:
        parts.append("no proxy setting covering every recipe to check")
    if report.missing:
        parts.append(f"{len(report.missing)} gap(s) listed above")
    return "Verdict: " + "; ".join(parts) + "."


def _as_well(standard: Interval, chosen: Interval) -> str:
    """How the standard lr's Spearman compares with the chosen lr's, given that it is not clearly below it."""
    return "better than" if standard.low > chosen.high else "as well as (within seed noise)"


def _clearly_below(stat: Interval, best: Interval) -> bool:
    """Lower beyond seed noise: the whole 95% interval under the best one's. A constant ranking (Spearman
    undefined) orders nothing, so it counts as lower."""
    return bool(np.isnan(stat.point) or stat.high < best.low)


def _window_verdict(report: Report) -> str:
    """App. B's question, answered per width from the numbers: the learning rates whose ranking of the datasets
    matches their infinite-width order (Spearman CI lower end ≥ ``TRUSTED_SPEARMAN``), whether the smallest
    rate under-trains (its Spearman clearly below the best) and whether larger rates scramble the order (the
    largest one's Spearman clearly below the best, and how many runs above the matching rates diverged)."""
    sentences = []
    for model in sorted({s.model for s in report.main.proxies if s.agreement}):
        settings = sorted((s for s in report.main.proxies if s.model == model and s.agreement), key=lambda s: s.lr)
        scored = [s for s in settings if not np.isnan(s.agreement.spearman.point)]
        if not scored:
            sentences.append(f"{model} cannot be scored: its ranking is constant at every lr.")
            continue
        best = max(scored, key=lambda s: s.agreement.spearman.point)
        matched = [s for s in settings if s.agreement.spearman.low >= TRUSTED_SPEARMAN]
        if matched:
            at = [f"{s.lr:g} (Spearman {ci(s.agreement.spearman)})" for s in matched]
            text = f"{model} ranks the datasets in their infinite-width order at lr {', '.join(at)}"
        else:
            text = (f"{model} ranks the datasets in their infinite-width order at no lr (no Spearman CI lower end "
                    f"reaches {TRUSTED_SPEARMAN}); its best is lr {best.lr:g} (Spearman {ci(best.agreement.spearman)})")
        window = matched or [best]
        below = [s for s in settings if s.lr < window[0].lr]
        above = [s for s in settings if s.lr > window[-1].lr]
        sentences.append(f"{text}; {_small_end(below, window[0], best)}; {_large_end(above, window[-1], best)}.")
    gaps = f" {len(report.missing)} gap(s) listed above." if report.missing else ""
    return ("Verdict: does a proxy learning rate rank the datasets in the order of their infinite-width optimum? "
            f"{' '.join(sentences)}{gaps}")


def _small_end(below: list[ProxySetting], edge: ProxySetting, best: ProxySetting) -> str:
    """Does the smallest lr under-train? ``edge``: the smallest lr of the window (all lrs below it are ``below``)."""
    if not below:
        return f"no lr below {edge.lr:g} was swept, so no under-training shows"
    smallest = below[0]
    at = f"Spearman {ci(smallest.agreement.spearman)} at lr {smallest.lr:g}"
    rule = " (the tiny-lr rule's chosen lr)" if smallest.is_chosen else ""
    if _clearly_below(smallest.agreement.spearman, best.agreement.spearman):
        return f"smaller lrs under-train: {at}{rule}, clearly below the best"
    return f"smaller lrs are not clearly worse: {at}{rule}"


def _large_end(above: list[ProxySetting], edge: ProxySetting, best: ProxySetting) -> str:
    """Do larger lrs scramble the order? ``edge``: the largest lr of the window (all lrs above it are ``above``)."""
    if not above:
        diverged = f", though {edge.num_diverged} of its {edge.num_runs} runs diverged" if edge.num_diverged else ""
        return f"no lr above {edge.lr:g} was swept, so no scrambling shows{diverged}"
    largest = above[-1]
    at = f"Spearman {ci(largest.agreement.spearman)} at lr {largest.lr:g}"
    diverged = sum(s.num_diverged for s in above)
    count = f"{diverged} of {sum(s.num_runs for s in above)} runs above lr {edge.lr:g} diverged"
    lower = _clearly_below(largest.agreement.spearman, best.agreement.spearman)
    if lower and diverged:
        return f"larger lrs scramble it: {at}, and {count}"
    if lower:
        return f"larger lrs scramble it without diverging: {at}"
    if diverged:
        return f"larger lrs diverge ({count}) without clearly scrambling the rest: {at}"
    return f"larger lrs neither diverge nor clearly scramble it: {at}"


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
