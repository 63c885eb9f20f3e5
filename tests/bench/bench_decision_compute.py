"""Decision per unit of compute, replayed from a full-protocol run: the pick that cheaper protocols would have made
and their FLOPs as a share of the full protocol's, with no new training.

Run by hand after ``make demo``: ``python tests/bench/bench_decision_compute.py [RUN_DIR]`` (default
``runs/demo``). The full protocol tunes targets on every recipe, so its pick is the recipe with the lowest tuned
target loss, whatever the proxies say. The cheaper protocols below make their pick from the same stored trials:

* select mode (``select.top_k: k``): targets tuned only on the chosen proxy setting's top k; the pick is the best
  tuned target among those. Proxy FLOPs are every proxy setting's, as select mode trains them all (the lr choice
  needs them);
* early-stopped proxies plus select mode: the shortlist comes from the chosen setting's ranking at an earlier
  evaluation, and every proxy trial is counted up to that evaluation (what ``proxy.early_stop`` would have
  stopped at, had its ranking settled there).

Each row gives the pick, whether it is the full protocol's, its regret (tuned target loss above the full pick's,
nats/token, point estimate) against the full protocol's regret@1 CI for the chosen setting, and the FLOPs share.
ASHA cannot be replayed (its stops depend on results it would have seen), and neither can an early stop's own
settle test: those need runs of their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from raysweep.analysis import training_flops
from raysweep.report import load_results, report_run
from raysweep.report.table import as_frame


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    report = report_run(run, print, n_boot=500, n_boot_figures=50)
    frame = as_frame(load_results(run)[0])
    frame = frame[frame["domain"] == report.main.domain]
    tuned = {t.recipe: t.loss.point for t in report.main.targets}
    full_pick = min(tuned, key=tuned.get)
    full = report.full_protocol_flops
    last = frame[frame["step"] == frame.groupby("trial_key")["step"].transform("max")].drop_duplicates("trial_key")
    spent = pd.Series(training_flops(last["num_params"], last["tokens"]), index=last.index)
    target_flops = spent[last["role"] == "target"].groupby(last.loc[last["role"] == "target", "recipe"]).sum()
    proxies = frame[frame["role"] == "proxy"].copy()
    proxies["evaluation"] = proxies.groupby("trial_key")["step"].rank(method="dense").astype(int)
    num_evals = int(proxies["evaluation"].max())
    print(f"{run}: full protocol {full:.3e} FLOPs (proxies {spent[last['role'] == 'proxy'].sum():.3e}, targets "
          f"{target_flops.sum():.3e} on {len(target_flops)} recipes); its pick: {full_pick} "
          f"(tuned target loss {tuned[full_pick]:.4f})")
    for setting in report.main.chosen():
        regret_ci = setting.agreement.regret[1]
        print(f"\nchosen proxy setting {setting.model} @ lr {setting.lr:g}; the full protocol's regret@1 for it: "
              f"{regret_ci.point:.4f} [{regret_ci.low:.4f}, {regret_ci.high:.4f}]")
        print(f"{'proxies up to':>14} {'top k':>6} {'shortlist':40} {'pick':14} {'same':>5} {'regret':>7} "
              f"{'FLOPs share':>12}")
        mine = proxies[(proxies["model"] == setting.model) & (proxies["lr"] == setting.lr)]
        for evaluation in range(1, num_evals + 1):
            upto = proxies[proxies["evaluation"] == evaluation]
            proxy_flops = training_flops(upto["num_params"], upto["tokens"]).sum()
            scores = mine[mine["evaluation"] == evaluation].groupby("recipe")["loss"].mean()
            order = sorted(scores.index, key=lambda r: (scores[r], r))
            for k in range(1, len(order) + 1):
                shortlist = order[:k]
                pick = min(shortlist, key=tuned.get)
                share = (proxy_flops + target_flops.reindex(shortlist).sum()) / full
                label = "end" if evaluation == num_evals else f"eval {evaluation}/{num_evals}"
                print(f"{label:>14} {k:6d} {', '.join(shortlist)[:40]:40} {pick:14} "
                      f"{'yes' if pick == full_pick else 'no':>5} {tuned[pick] - tuned[full_pick]:7.4f} "
                      f"{share:12.1%}")
        final = mine[mine["evaluation"] == mine.groupby("trial_key")["evaluation"].transform("max")]
        final_scores = final.groupby("recipe")["loss"].mean()
        final_order = sorted(final_scores.index, key=lambda r: (final_scores[r], r))
        print(f"at the end of training, select mode needs the top {final_order.index(full_pick) + 1} of "
              f"{len(final_order)} for the full protocol's pick")


if __name__ == "__main__":
    main()
