"""raysweep's runs in another tool's layout: ``raysweep export RUN --format olmix --out DIR``.

Olmix fits a regression from mixture weights to metrics over a swarm of runs: ``ratios.csv`` (a ``run`` id, a
``name``, then one column per domain holding its weight, summing to 1) and ``metrics.csv`` (``run``, ``name``, then
one column per metric), joined by ``run``. Each exported run is one trial at its last evaluation: the proxies at
each model's chosen lr (the report's), or with ``role="target"`` each recipe's best target configuration; its
weights are its recipe's token shares by source, its metrics every validation domain's loss (``<domain>_loss``,
nats/token) and bits per byte (``<domain>_bpb``), and every task score (``<task>_<metric>``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from raysweep.errors import ReportError
from raysweep.report.summarize import report_run
from raysweep.report.table import as_frame, load_results
from raysweep.store import RunDir, read_run

def export_olmix(run_path: Path, out_dir: Path, role: str, warn: Callable[[str], None]) -> tuple[Path, Path, int]:
    """Write ``ratios.csv`` and ``metrics.csv`` under `out_dir`; returns their paths and the number of runs."""
    run = RunDir(Path(run_path))
    sweep = read_run(run).get("sweep")
    if not sweep or "recipes" not in sweep:
        raise ReportError(f"{run.path}: no run.json with the sweep's recipes (launch it with this raysweep once); "
                          "the mixture weights come from there")
    report = report_run(run.path, warn)
    table, _, _ = load_results(run.path)
    frame = as_frame(table)
    frame = frame[frame["step"] == frame.groupby("trial_key")["step"].transform("max")]
    if role == "proxy":
        chosen = {(s.model, s.lr) for s in report.main.chosen()}
        keep = [(m, lr) in chosen for m, lr in zip(frame["model"], frame["lr"])]
    else:
        best = {(t.recipe, t.config.lr, t.config.batch_size, t.config.weight_decay) for t in report.main.targets}
        keep = [k in best for k in zip(frame["recipe"], frame["lr"], frame["batch_size"], frame["weight_decay"])]
    frame = frame[pd.Series(keep, index=frame.index) & (frame["role"] == role)]
    if frame.empty:
        raise ReportError(f"{run.path}: no finished {role} trial to export (a {role} at the chosen setting)")
    runs = frame.drop_duplicates("trial_key").sort_values(["recipe", "model", "lr", "seed"])
    names = {row.trial_key: f"{row.recipe}-{row.model}-lr{row.lr:g}-bs{row.batch_size}-wd{row.weight_decay:g}"
                            f"-s{row.seed}" for row in runs.itertuples()}
    mixes = {recipe["name"]: {c["source"]: c["weight"] / sum(m["weight"] for m in recipe["mix"])
                              for c in recipe["mix"]} for recipe in sweep["recipes"]}  # token shares, summing to 1
    sources = sorted({source for mix in mixes.values() for source in mix})
    ratios = pd.DataFrame([{"run": key, "name": names[key],
                            **{source: mixes[recipe].get(source, 0.0) for source in sources}}
                           for key, recipe in zip(runs["trial_key"], runs["recipe"])])
    losses = frame[frame["metric"] == "loss"]
    columns = [losses.pivot(index="trial_key", columns="domain", values="loss").add_suffix("_loss"),
               losses.pivot(index="trial_key", columns="domain", values="bits_per_byte").add_suffix("_bpb")]
    scores = frame[frame["metric"] != "loss"]
    if not scores.empty:
        columns.append(scores.assign(column=scores["domain"] + "_" + scores["metric"])
                       .pivot(index="trial_key", columns="column", values="value"))
    metrics = pd.concat(columns, axis=1).dropna(axis=1, how="all").reindex(runs["trial_key"])
    metrics.insert(0, "name", [names[key] for key in metrics.index])
    out_dir.mkdir(parents=True, exist_ok=True)
    ratios_path, metrics_path = out_dir / "ratios.csv", out_dir / "metrics.csv"
    ratios.to_csv(ratios_path, index=False)
    metrics.rename_axis("run").reset_index().to_csv(metrics_path, index=False)
    return ratios_path, metrics_path, len(runs)
