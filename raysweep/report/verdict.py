"""The report's conclusion in words: Finding I's line and the verdict (which recipe to ship, how far each proxy
setting can be trusted, and where the tiny-lr window lies), with the number formats every table shares::

    verdict(report)     # "Verdict: ship balanced: lowest tuned target loss 1.2073 …"
"""

from __future__ import annotations

import numpy as np

from raysweep.report.records import Agreement, Interval, Metric, ProxySetting, Report

TRUSTED_SPEARMAN = 0.7
"""A ranking "agrees" with the tuned targets when Spearman reaches this (its CI's lower end, to be trusted)."""
WIDE_CI = 0.5
"""A Spearman CI wider than this is called wide: more seeds would be needed to tell."""


def ci(stat: Interval, digits: int = 2) -> str:
    """"point [low, high]", or "n/a" for an undefined statistic."""
    if np.isnan(stat.point):
        return "n/a"
    return f"{stat.point:.{digits}f} [{stat.low:.{digits}f}, {stat.high:.{digits}f}]"


def setting_name(setting: ProxySetting) -> str:
    return f"{setting.model} @ lr {setting.lr:g}"


def finding_one(report: Report) -> list[str]:
    """Finding I (Fig. 4a): each proxy model's loss at the chosen lr against its own best over the lr sweep."""
    if report.metric != Metric.LOSS:
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


def _stats(agreement: Agreement, bits_per_nat: float | None, unit: str) -> str:
    text = f"Spearman {ci(agreement.spearman)}"
    if 1 in agreement.regret:
        regret = agreement.regret[1]
        text += f", regret@1 {ci(regret, 3)} {unit}"
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
    unit = terms.loss_unit
    chosen = main.chosen()
    if not main.targets:
        if not chosen:
            return f"Verdict: nothing to rank yet: no target runs and no proxy setting covering every {terms.recipe}."
        picks = []
        for s in chosen:
            order = sorted(main.recipes, key=s.rank.__getitem__)
            tied = len(order) > 1 and order[1] in s.within_noise_of_previous
            tie = f" (within seed noise of {order[1]})" if tied else ""
            picks.append(f"proxy {setting_name(s)} ranks {order[0]} first{tie}")
        return f"Verdict: no {terms.target} runs yet, so the proxy ranking is unchecked; {'; '.join(picks)}."
    if not report.family.tuned_targets:
        return _window_verdict(report)
    best = main.targets[0]
    bits = f" ({best.bits_per_byte:.4f} bits/byte)" if best.bits_per_byte is not None else ""
    lowest = "highest" if terms.target_sign < 0 else "lowest"
    parts = [f"ship {best.recipe}: {lowest} tuned target {terms.target_score} "
             f"{ci(terms.shown(best.loss), terms.digits)} "
             f"{terms.loss_unit}{bits}"]
    if report.chance and report.chance.near_chance:
        parts[0] = (f"cannot tell on {main.domain}: the best {terms.target_score} ({report.chance.best:.1f}) is within "
                    f"noise of chance ({report.chance.chance:.1f} ± {report.chance.margin:.1f} points), so no "
                    f"{terms.recipe} stands out")
    if len(main.targets) > 1 and main.targets[1].within_noise_of_previous:
        parts[0] += (f", but {main.targets[1].recipe} is within seed noise of it: the targets cannot separate them, "
                     "add target seeds before committing")
    scored = [s for s in main.proxies if s.agreement]
    ranked_by = f" ranked by {terms.proxy_score}" if report.metric != Metric.LOSS else ""
    untrusted = {c.model for c in main.lr_choices if not c.trusted}
    for s in (s for s in scored if s.is_chosen):
        caveat = " (a fallback: no lr passed the window's checks)" if s.model in untrusted else ""
        trust = (f"cannot be judged by {terms.proxy_score}, at chance on {main.domain}"
                 if (s.model, s.lr) in report.proxies_at_chance else _trust(s.agreement.spearman))
        parts.append(f"proxy {s.model}{ranked_by} at the chosen lr {s.lr:g}{caveat} {trust}: "
                     f"{_stats(s.agreement, main.bits_per_nat, unit)}")
    for s in (s for s in scored if s.is_standard and not s.is_chosen):
        parts.append(f"{s.model} at the standard lr {s.lr:g}: {_stats(s.agreement, main.bits_per_nat, unit)}")
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
