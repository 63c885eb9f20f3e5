"""The report's figures, drawn with matplotlib's object API (no pyplot, no display: the Agg renderer).

Six figures follow the paper (arXiv 2512.24503); each is returned as PNG bytes with a caption, so the
HTML page can inline them and the CLI can save them::

    for image in draw_figures(report):         # a) … f), skipping those the data cannot support
        (out_dir / image.filename).write_bytes(image.png)

(a) Spearman vs proxy lr with CI bands, a line per proxy model (Fig. 6a); (b) top-k regret vs k, a line
per proxy lr (Fig. 6b); (c) Spearman heatmap, proxy lr × target lr (Fig. 4b); (d) each recipe's loss vs
lr with its optimum starred (Fig. 27); (e) Spearman per validation domain (Fig. 5); (f) Spearman over
training steps and regret@1 against cumulative proxy compute, from the checkpoints (Fig. 29).
Learning-rate axes are logarithmic; losses are nats/token with a bits/byte axis when known, or MSE for
random-feature runs; labels come from ``Report.terms()`` (target and proxy score named as in the tables).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from raysweep.report.records import Metric, Report

DPI = 110
PANEL_IN = (5.2, 4.0)
"""Width and height of one panel, in inches."""


@dataclass(frozen=True)
class FigureImage:
    filename: str
    caption: str
    png: bytes


def _lr_colors(lrs: list[float]) -> dict[float, tuple]:
    """One viridis colour per learning rate, on a log scale: small lrs dark, large lrs yellow."""
    if len(lrs) < 2:
        return {lr: colormaps["viridis"](0.3) for lr in lrs}
    norm = LogNorm(min(lrs), max(lrs))
    return {lr: colormaps["viridis"](0.9 * norm(lr)) for lr in lrs}


def _panels(count: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` panels, at most two per row so that text stays legible when the page scales it."""
    columns = min(count, 2)
    rows = -(-count // columns)
    figure = Figure(figsize=(PANEL_IN[0] * columns + 1.6, PANEL_IN[1] * rows), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for spare in axes[count:]:
        spare.set_visible(False)
    figure.suptitle(title, fontsize=12)
    return figure, axes[:count]


def _correlation_limits(ax: Axes, lows: np.ndarray) -> None:
    """y from just below the lowest CI end (or 0) to just above 1, so that near-1 differences stay visible."""
    finite = lows[np.isfinite(lows)]
    bottom = min(0.0, float(finite.min())) if finite.size else -1.0
    ax.set_ylim(bottom - 0.05, 1.03)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _bits_axis(ax: Axes, bits_per_nat: float | None) -> None:
    """A right-hand axis in bits/byte for a y axis in nats/token (linear conversion, one factor per domain)."""
    if bits_per_nat is not None:
        secondary = ax.secondary_yaxis("right", functions=(lambda y: y * bits_per_nat, lambda y: y / bits_per_nat))
        secondary.set_ylabel("bits/byte")


def _recipe_style(index: int) -> tuple[tuple, str]:
    """Distinct colour and line style for up to 40 recipes: tab10 colours, a new line style every 10."""
    return colormaps["tab10"](index % 10), ["-", "--", ":", "-."][index // 10 % 4]


def _legend_outside(ax: Axes, title: str, bits_per_nat: float | None) -> None:
    """Legend to the right of the axes, clear of the bits/byte axis when there is one."""
    ax.legend(title=title, fontsize=7, loc="center left", bbox_to_anchor=(1.22 if bits_per_nat else 1.02, 0.5))


def _models(report: Report) -> list[str]:
    return sorted({s.model for s in report.main.proxies if s.agreement})


def spearman_vs_lr(report: Report) -> Figure:
    main, terms = report.main, report.terms()
    figure, (ax,) = _panels(1, f"(a) Proxy ranking vs {terms.target} ranking, by proxy learning rate ({main.domain})")
    lows = []
    for color, model in zip(colormaps["tab10"].colors, _models(report)):
        settings = sorted((s for s in main.proxies if s.model == model and s.agreement), key=lambda s: s.lr)
        lrs = [s.lr for s in settings]
        stats = np.array([s.agreement.spearman for s in settings])
        ax.plot(lrs, stats[:, 0], "o-", color=color, label=f"{model} (95% CI band)")
        ax.fill_between(lrs, stats[:, 1], stats[:, 2], color=color, alpha=0.2)
        lows.extend(stats[:, 1])
        for s in settings:
            if s.is_chosen:
                ax.plot(s.lr, s.agreement.spearman.point, "*", ms=16, color=color, mec="black", zorder=5)
            if s.is_standard:
                ax.plot(s.lr, s.agreement.spearman.point, "s", ms=11, mfc="none", mec="black", mew=1.5, zorder=5)
    ax.plot([], [], "*", ms=12, color="grey", mec="black", label="chosen lr (smallest inside the tiny-lr window)")
    ax.plot([], [], "s", ms=9, mfc="none", mec="black", label="standard lr (baseline)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="proxy peak learning rate (log scale)", ylabel=f"Spearman ρ vs {terms.target} ranking")
    _correlation_limits(ax, np.array(lows))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)  # random-feature runs put low agreement at the small-lr end too
    return figure


def regret_vs_k(report: Report) -> Figure:
    terms = report.terms()
    models = sorted({c.model for c in report.regret_curves})
    figure, axes = _panels(len(models), f"(b) Top-k decision regret ({report.main.domain})")
    for ax, model in zip(axes, models):
        curves = sorted((c for c in report.regret_curves if c.model == model), key=lambda c: c.lr)
        colors = _lr_colors([c.lr for c in curves])
        for curve in curves:
            stats = np.array(curve.regret)
            ks = np.arange(1, len(stats) + 1)
            ax.plot(ks, stats[:, 0], "o-", ms=3, color=colors[curve.lr], label=f"lr {curve.lr:g}")
            ax.fill_between(ks, stats[:, 1], np.where(np.isfinite(stats[:, 2]), stats[:, 2], np.nan),
                            color=colors[curve.lr], alpha=0.12)
        ax.set(title=f"proxy {model}", xlabel=f"k ({terms.recipe}s taken from the proxy's top)",
               ylabel=f"top-k regret ({terms.loss_unit})")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(title="proxy lr (95% CI bands)", fontsize=8)
        _bits_axis(ax, report.main.bits_per_nat)
    return figure


def rank_heatmap(report: Report) -> Figure:
    figure, axes = _panels(len(report.heatmaps), f"(c) Spearman ρ of proxy vs target ranking, "
                                                 f"per learning-rate pair ({report.main.domain})")
    for ax, heatmap in zip(axes, report.heatmaps):
        image = ax.imshow(heatmap.spearman, cmap="RdBu", vmin=-1, vmax=1, origin="lower", aspect="auto")
        for (i, j), value in np.ndenumerate(heatmap.spearman):
            text = "n/a" if np.isnan(value) else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if abs(np.nan_to_num(value)) > 0.6 else "black")
        ax.set_xticks(range(len(heatmap.target_lrs)), [f"{lr:g}" for lr in heatmap.target_lrs])
        ax.set_yticks(range(len(heatmap.proxy_lrs)), [f"{lr:g}" for lr in heatmap.proxy_lrs])
        ax.set(title=f"proxy {heatmap.model}", xlabel=f"target learning rate ({report.target_model}; best batch "
                                                      "size and weight decay at each)",
               ylabel="proxy learning rate")
        figure.colorbar(image, ax=ax, label="Spearman ρ")
    return figure


def loss_vs_lr(report: Report) -> Figure:
    terms = report.terms()
    groups = [("target", "")] * any(c.role == "target" for c in report.loss_curves)
    groups += [("proxy", m) for m in sorted({c.model for c in report.loss_curves if c.role == "proxy"})]
    shown = ("validation loss" if terms.proxy_score == "loss" else terms.proxy_score if report.metric.is_task
             else f"target loss and proxy {terms.proxy_score}")
    figure, axes = _panels(len(groups), f"(d) {shown.capitalize()} vs learning rate; ★ marks each {terms.recipe}'s "
                                        f"best lr ({report.main.domain})")
    recipes = report.main.recipes
    for ax, (role, model) in zip(axes, groups):
        sign = terms.proxy_sign if role == "proxy" else terms.target_sign  # a curve holds the ranked value
        for curve in (c for c in report.loss_curves if c.role == role and c.model == model):
            lrs, losses = np.array(curve.lrs), np.array(curve.losses)
            finite = np.isfinite(losses)
            color, style = _recipe_style(recipes.index(curve.recipe))
            ax.plot(lrs[finite], sign * losses[finite], "o" + style, ms=3, color=color, label=curve.recipe)
            if finite.any():
                best = np.argmin(np.where(finite, losses, np.inf))
                ax.plot(lrs[best], sign * losses[best], "*", ms=14, color=color, mec="black", zorder=5)
        title = f"{terms.target} {report.target_model}" if role == "target" else f"proxy {model}"
        ylabel = (f"validation loss ({terms.loss_unit}, mean over seeds)" if sign > 0
                  else f"{terms.proxy_score} (mean over seeds; higher is better)")
        if sign < 0 and report.metric.is_task:
            ylabel = f"{terms.proxy_score}, {terms.loss_unit.replace('accuracy ', '')} (higher is better)"
        ax.set(title=title, xscale="log", xlabel="peak learning rate (log scale)", ylabel=ylabel)
        ax.grid(alpha=0.3)
        _bits_axis(ax, report.main.bits_per_nat if sign > 0 else None)
    _legend_outside(axes[-1], terms.recipe, report.main.bits_per_nat if sign > 0 else None)
    return figure


def spearman_by_domain(report: Report) -> Figure:
    terms = report.terms()
    models = _models(report)
    kind = "task" if report.metric.is_task else "validation domain"
    figure, axes = _panels(len(models), f"(e) Spearman ρ per {kind} (each tuned and ranked on its own)")
    domains = [d.domain for d in report.domains]
    for ax, model in zip(axes, models):
        lrs = sorted({s.lr for d in report.domains for s in d.proxies if s.model == model and s.agreement})
        colors = _lr_colors(lrs)
        width = 0.8 / len(lrs)
        for i, lr in enumerate(lrs):
            stats = np.full((len(domains), 3), np.nan)
            for j, summary in enumerate(report.domains):
                match = [s for s in summary.proxies if s.model == model and s.lr == lr and s.agreement]
                if match:
                    stats[j] = match[0].agreement.spearman
            x = np.arange(len(domains)) - 0.4 + width * (i + 0.5)
            ax.bar(x, stats[:, 0], width, color=colors[lr], label=f"lr {lr:g}")
            below, above = np.clip(stats[:, 0] - stats[:, 1], 0, None), np.clip(stats[:, 2] - stats[:, 0], 0, None)
            ax.errorbar(x, stats[:, 0], yerr=[np.nan_to_num(below), np.nan_to_num(above)], fmt="none",
                        ecolor="black", elinewidth=0.8, capsize=2)
        ax.set_xticks(range(len(domains)), domains)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=f"proxy {model}", xlabel=kind,
               ylabel=f"Spearman ρ vs {terms.target} ranking (95% CI)")
        _correlation_limits(ax, np.array([s.agreement.spearman.low for d in report.domains for s in d.proxies
                                          if s.model == model and s.agreement]))
        ax.grid(alpha=0.3, axis="y")
        _legend_outside(ax, "proxy lr (95% CI bars)", None)
    return figure


def checkpoints(report: Report) -> Figure:
    terms = report.terms()
    figure, (left, right) = _panels(2, f"(f) Decision quality during proxy training, against the final "
                                       f"{terms.target} ranking ({report.main.domain})")
    settings = sorted({(p.model, p.lr) for p in report.checkpoints})
    colors = _lr_colors(sorted({lr for _, lr in settings}))
    styles = dict(zip(sorted({m for m, _ in settings}), ["-", "--", ":", "-."] * 4))
    for model, lr in settings:
        points = sorted((p for p in report.checkpoints if (p.model, p.lr) == (model, lr)), key=lambda p: p.step)
        steps = [p.step for p in points]
        spearman = np.array([p.spearman for p in points])
        regret = np.array([p.regret_at_1 for p in points])
        left.plot(steps, spearman[:, 0], "o" + styles[model], ms=3, color=colors[lr])
        left.fill_between(steps, spearman[:, 1], spearman[:, 2], color=colors[lr], alpha=0.1)
        right.plot([p.proxy_flops for p in points], regret[:, 0], "o" + styles[model], ms=3, color=colors[lr])
    left.set(xlabel="proxy training step", ylabel=f"Spearman ρ vs {terms.target} ranking (95% CI bands)")
    _correlation_limits(left, np.array([p.spearman.low for p in report.checkpoints]))
    right.set(xscale="log", xlabel=f"cumulative proxy compute (FLOPs = 6·N·D, all {terms.recipe}s × seeds; log scale)",
              ylabel=f"regret@1 ({terms.loss_unit})")
    right.xaxis.set_minor_formatter(NullFormatter())
    _bits_axis(right, report.main.bits_per_nat)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    # Colour encodes the lr and line style the model: a legend of each instead of one entry per line.
    for lr, color in colors.items():
        right.plot([], [], "-", color=color, label=f"lr {lr:g}")
    for model, style in styles.items():
        right.plot([], [], style, color="black", label=model)
    _legend_outside(right, "proxy lr (colour), model (line)", report.main.bits_per_nat)
    return figure


def chosen_vs_best(report: Report) -> Figure:
    """Finding I (paper Fig. 4a): per recipe, the proxy's loss at the chosen lr against its own best over its lr
    sweep; points above the diagonal are recipes where the tiny-lr proxy is the worse model."""
    main, terms = report.main, report.terms()
    models = [m for m in _models(report) if main.chosen_vs_own_best(m)]
    figure, axes = _panels(len(models), f"(g) Proxy loss at the chosen lr vs its own best lr ({main.domain})")
    for ax, model in zip(axes, models):
        rows = [r for r in main.chosen_vs_own_best(model) if np.isfinite(r[1]) and np.isfinite(r[2])]
        for index, (recipe, chosen, best, _) in enumerate(rows):
            ax.plot(best, chosen, "o", color=_recipe_style(index)[0], ms=8, label=recipe)
        values = [v for r in rows for v in r[1:3]]
        if values:
            ax.plot([min(values), max(values)], [min(values), max(values)], "--", color="grey", lw=0.8,
                    label="y = x")
        lr = next(s.lr for s in main.chosen() if s.model == model)
        ax.set(xlabel=f"{model}: best loss over its lr sweep ({terms.loss_unit})",
               ylabel=f"loss at the chosen lr {lr:g} ({terms.loss_unit})")
        ax.grid(alpha=0.3)
        _legend_outside(ax, terms.recipe, None)
    return figure


def draw_figures(report: Report) -> list[FigureImage]:
    """Every figure the report's data supports, as PNG bytes, in the order (a) … (f)."""
    has_agreement = any(s.agreement for s in report.main.proxies)
    terms = report.terms()
    proxies_by = f" (proxies: {terms.proxy_score})" if terms.proxy_score != "loss" else ""
    plans = [
        ("a_spearman_vs_lr.png", f"Spearman ρ of each proxy lr's ranking against the {terms.target} ranking "
         "(paper Fig. 6a).",
         spearman_vs_lr, has_agreement),
        ("b_regret_vs_k.png", "Top-k regret against k, one line per proxy lr (paper Fig. 6b).", regret_vs_k,
         bool(report.regret_curves)),
        ("c_rank_heatmap.png", "Spearman ρ between the proxy ranking at each lr and the target ranking at each "
         "target lr (paper Fig. 4b).", rank_heatmap, bool(report.heatmaps)),
        ("d_loss_vs_lr.png", f"Each {terms.recipe}'s validation loss{proxies_by} against learning rate, optimum "
         "starred (paper Fig. 27).",
         loss_vs_lr, bool(report.loss_curves)),
        ("e_spearman_by_domain.png", "Spearman ρ per validation domain, per proxy lr (paper Fig. 5).",
         spearman_by_domain, has_agreement),
        ("f_checkpoints.png", "Spearman over proxy training steps and regret@1 against cumulative proxy compute, "
         "from the intermediate checkpoints (paper Fig. 29).", checkpoints, bool(report.checkpoints)),
        ("g_chosen_vs_best.png", "Each recipe's proxy loss at the chosen lr against the same proxy's best over its "
         "lr sweep (paper Fig. 4a, Finding I).", chosen_vs_best,
         report.metric == Metric.LOSS and any(report.main.chosen_vs_own_best(m) for m in _models(report))),
    ]
    return [FigureImage(name, caption, _png(draw(report))) for name, caption, draw, drawable in plans if drawable]
