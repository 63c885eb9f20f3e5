"""The chosen proxy learning rate: inside the tiny-lr window, decided from the proxies alone.

The paper's recommendation is a window, not "the smallest lr" (Theorem 2: c0/T <= eta <= min(alpha B m, eta_max);
App. C). Each proxy model's lrs are checked in ascending order and the first one that passes every check is
chosen; the report prints every check of every lr, so a reader sees why each lr below the chosen one was rejected.
Nothing here reads a target run: the choice is fixed before the proxies are compared with the targets.

Upper end (is the lr tiny?):

- ``lr <= standard_lr / 10``: App. C's rule of thumb, one to two orders of magnitude below the standard lr.
- ``lr <= eta_58`` when ``raysweep estimate-lr`` stored the Eq. 58 bound for the run: above it, curvature and
  gradient noise may reorder recipes.

Lower end (did the proxy train, and enough?):

- Above the precision floor of the weights' dtype (``raysweep.tiny_lr.precision_floor_lr``): smaller AdamW steps
  round away.
- No diverged run.
- The *horizon floor*, Theorem 2's c0/T: too small an lr for the step budget under-trains, and the ranking then
  reflects what the proxy learned first (unigram statistics, early dynamics) rather than the data. Two
  measurable symptoms, both from proxy losses:

  * **progress**: the loss drop from initialisation, median over recipes and seeds, is at least a quarter of the
    drop the standard lr makes in the same steps (``MIN_PROGRESS``). Deliberately lenient: Finding I says a
    tiny-lr proxy ends far above its own best loss and still ranks well; a proxy below a quarter has barely left
    its initialisation. Skipped when the table has no initial losses (tables from elsewhere).
  * **stability**: the lr's ranking agrees, beyond seed noise, with the ranking of the *anchor*: the largest lr
    that passes every other check, the top of the window and the part of it farthest from the horizon (the lower
    end of the 95% bootstrap interval of their Spearman correlation is at least 0.5; seed s is the same
    initialisation and data order at both lrs, so the two are resampled together). Inside the window the
    ordering is the data's and does not depend on the lr (Theorem 2), so an lr in it ranks like the anchor; an
    lr below the horizon ranks by what it learned first. Comparing with the anchor rather than with the next lr
    up keeps two neighbouring lrs that are under-trained the same way from vouching for each other. The anchor
    itself is not compared with anything: every lr above it is outside the window (not tiny, above the Eq. 58
    bound, or diverged), where Theorem 2 promises nothing and the paper finds rankings that disagree with the
    tuned targets (standard-lr proxies, Figs. 5-6), so disagreeing with one says nothing about the anchor. Lrs
    above the anchor are compared with the next lr up, for the reader only: they are rejected anyway.

The share of neighbouring recipe pairs within paired seed noise is reported beside the checks, not used by them:
with three seeds a paired t-test has little power, and it flags most neighbours of well-resolved rankings too.

When no lr passes, the rule still picks one and says it cannot vouch for it (``LrChoice.trusted`` False): the
largest tiny lr without a divergence (the most trained candidate), else the smallest lr without a divergence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raysweep.analysis import rank_transfer
from raysweep.report.records import Interval, LrCheck, LrChoice, ProxySetting

TINY_FACTOR = 10.0
"""App. C: a tiny lr is at least this many times below the standard lr (one to two orders of magnitude)."""
MIN_PROGRESS = 0.25
"""Progress check: an lr's loss drop from initialisation must be at least this share of the standard lr's."""
MIN_STABILITY = 0.5
"""Stability check: the lower end of the 95% interval of the Spearman correlation with the anchor's ranking."""
STABILITY_N_BOOT = 2000


def choose_lr(settings: list[ProxySetting], matrices: dict[float, pd.DataFrame], loss_drops: dict[float, float],
              standard_lr: float | None, eta_58: float | None = None, precision_floor: float | None = None,
              seeds_paired: bool = True) -> LrChoice:
    """The chosen lr of one proxy model from its settings (one per lr), their ranked scores (recipe × seed, the
    columns labelled by seed) and their loss drops from initialisation (lr → median over recipes and seeds; lrs
    without one are absent).

    ``standard_lr`` None means the model's largest lr. ``eta_58`` and ``precision_floor`` are None when unknown.
    """
    own = sorted(settings, key=lambda s: s.lr)
    standard = standard_lr if standard_lr is not None else own[-1].lr
    upper = standard / TINY_FACTOR if eta_58 is None else min(standard / TINY_FACTOR, eta_58)
    reference = _reference_drop(loss_drops, standard)
    progress = {s.lr: loss_drops.get(s.lr, np.nan) / reference if reference else None for s in own}
    basic = {s.lr: _basic_reasons(s, standard, eta_58, precision_floor, progress[s.lr]) for s in own}
    anchor = next((s for s in reversed(own) if not basic[s.lr]), None)
    checks = []
    for i, setting in enumerate(own):
        above = own[i + 1] if i + 1 < len(own) else None
        witness = (anchor if anchor is not None and setting.lr < anchor.lr else
                   None if setting is anchor else above)
        checks.append(_check(setting, matrices, witness, basic[setting.lr], progress[setting.lr], standard, eta_58,
                             seeds_paired))
    passed = [c for c in checks if not c.reasons]
    tiny = [c for c in checks if c.is_tiny and not c.diverged]
    if passed:
        chosen, trusted, caveat = passed[0], True, ""
    elif tiny:
        chosen, trusted = tiny[-1], False
        caveat = (f"no lr at or below {upper:.3g} passed every check, so the chosen lr may be under-trained or "
                  f"too noisy to rank: raysweep cannot vouch for it; add lrs between {chosen.lr:g} and {upper:.3g},"
                  " train longer, or add seeds")
    else:
        finite = [c for c in checks if not c.diverged]
        chosen, trusted = (finite or checks)[0], False
        caveat = (f"no lr in the sweep is tiny (at most {upper:.3g}) and free of divergence; the chosen lr "
                  f"{chosen.lr:g} is not in the window: add lrs below {upper:.3g}")
    return LrChoice(model=own[0].model, lr=chosen.lr, trusted=trusted, standard_lr=standard, upper_lr=upper,
                    eta_58=eta_58, precision_floor=precision_floor, anchor_lr=anchor.lr if anchor else None,
                    checks=checks, caveat=caveat)


def _reference_drop(loss_drops: dict[float, float], standard: float) -> float | None:
    """The standard lr's loss drop, or, when it has none (not run, or diverged), the largest drop of the sweep."""
    drop = next((d for lr, d in loss_drops.items() if np.isclose(lr, standard, rtol=1e-9)), None)
    if drop is None or not drop > 0:
        drop = max((d for d in loss_drops.values() if d > 0), default=None)
    return drop


def _below_tiny_factor(lr: float, standard: float) -> bool:
    """At most standard / 10, with a relative tolerance so that a grid value written as 4e-4 for 4e-3 / 10 counts."""
    return lr <= standard / TINY_FACTOR * (1 + 1e-9)


def _basic_reasons(setting: ProxySetting, standard: float, eta_58: float | None, precision_floor: float | None,
                   progress: float | None) -> list[str]:
    """Every check of one lr but stability: tiny, above the precision floor, no divergence, enough progress."""
    lr, reasons = setting.lr, []
    if not _below_tiny_factor(lr, standard):
        reasons.append(f"not tiny: above standard lr / {TINY_FACTOR:g} = {standard / TINY_FACTOR:.3g}")
    if eta_58 is not None and lr > eta_58:
        reasons.append(f"above the Eq. 58 bound {eta_58:.3g}")
    if precision_floor is not None and lr < precision_floor:
        reasons.append(f"below the precision floor {precision_floor:.3g}")
    if setting.num_diverged:
        reasons.append(f"{setting.num_diverged} of {setting.num_runs} runs diverged")
    if progress is not None and progress < MIN_PROGRESS:  # NaN (no finite drop at this lr) is not a verdict
        reasons.append(f"under-trained: loss drop {progress:.0%} of the standard lr's (< {MIN_PROGRESS:.0%})")
    return reasons


def _check(setting: ProxySetting, matrices: dict[float, pd.DataFrame], witness: ProxySetting | None,
           basic: list[str], progress: float | None, standard: float, eta_58: float | None,
           seeds_paired: bool) -> LrCheck:
    """Every check of one lr, stability against ``witness``; ``reasons`` lists the failed ones (empty: the lr is in
    the window)."""
    lr, reasons = setting.lr, list(basic)
    is_tiny = _below_tiny_factor(lr, standard) and (eta_58 is None or lr <= eta_58)
    stability = None
    if witness is not None and not setting.num_diverged and not witness.num_diverged:
        stability = _stability(matrices[lr], matrices[witness.lr], seeds_paired)
        if not stability.low >= MIN_STABILITY:  # NaN (a constant ranking) fails too
            reasons.append(f"under-trained: ranks unlike lr {witness.lr:g} (Spearman {stability.point:.2f} "
                           f"[{stability.low:.2f}, {stability.high:.2f}])")
    num_pairs = len(setting.rank) - 1
    share = len(setting.within_noise_of_previous) / num_pairs if num_pairs > 0 and setting.num_seeds > 1 else None
    return LrCheck(lr=lr, is_tiny=is_tiny, diverged=bool(setting.num_diverged), progress=progress,
                   share_within_noise=share, compared_lr=witness.lr if witness is not None else None,
                   stability=stability, reasons=reasons)


def _stability(losses: pd.DataFrame, losses_other: pd.DataFrame, seeds_paired: bool) -> Interval:
    """Spearman of two lrs' rankings with its 95% interval, on the seeds both have (seed s with seed s), resampled
    together; NaN without a common seed."""
    seeds = [s for s in losses.columns if s in losses_other.columns]
    if not seeds:
        return Interval(np.nan, np.nan, np.nan)
    return Interval(*rank_transfer(losses[seeds].to_numpy(float), losses_other[seeds].to_numpy(float), ks=(),
                                   n_boot=STABILITY_N_BOOT, seeds_paired=seeds_paired, same_runs=True)["spearman"])
