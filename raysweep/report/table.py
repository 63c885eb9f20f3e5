"""The report's input: a results table (a run directory, one Parquet file or a folder of them) as a pandas frame,
what the run's plan says about it, and which seeds of a recipe × seed block can be compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from raysweep.errors import NothingToReport, ReportError
from raysweep.store import Plan, RunDir, read_failures, read_tables
from raysweep.trials import FAMILIES, LANGUAGE_MODEL, Family, Role

COLUMNS = ("trial_key", "role", "recipe", "model", "num_params", "lr", "batch_size", "weight_decay", "seed",
           "step", "tokens", "domain", "loss", "status", "wall_s")
"""Columns the report needs; ``bits_per_byte``, ``alignment``, ``initial_loss``, ``num_steps``, ``metric`` and
``value`` are optional (null when absent; a row without ``metric`` is a loss)."""
OPTIONAL_COLUMNS = ("bits_per_byte", "alignment", "initial_loss", "num_steps", "metric", "value")


def load_results(path: str | Path) -> tuple[pa.Table, RunDir | None, list[str]]:
    """Read a run directory (its ``results/``), one Parquet file, or a folder of Parquet files.

    Returns the table, the run directory (where ``plan.json`` lives; None for bare Parquet input) and one line
    per file that could not be read (a truncated or foreign file is reported, never silently dropped, and the
    rest is still reported) and per trial that failed after its retries. Files with and without the optional
    columns (``bits_per_byte``, ``alignment``) combine; the missing values are null.
    """
    path = Path(path)
    candidate = RunDir(path)
    run_dir = candidate if candidate.results.is_dir() else None
    folder = run_dir.results if run_dir else path
    if folder.is_dir():
        files = sorted(folder.glob("*.parquet"))
        if not files:
            raise NothingToReport(f"{folder}: no finished trials yet (no .parquet files); nothing to report")
    elif path.is_file():
        files = [path]
    else:
        raise ReportError(f"{path}: no such file or folder; pass a run directory (<storage>/<sweep name>), "
                          "a results Parquet file, or a folder of them")
    try:
        table, unreadable = read_tables(files)
    except pa.ArrowException as err:
        raise ReportError(f"{path}: files with incompatible columns ({err})") from None
    if table is None:
        raise ReportError(f"{path}: not a readable results table ({unreadable[0]})")
    unreadable += [f"failed after its retries: {f['name']}: {f['cause']}"
                   for f in (read_failures(run_dir) if run_dir else [])]
    return table, run_dir, unreadable


def as_frame(table: pa.Table) -> pd.DataFrame:
    """The table as pandas with the documented columns; optional ones NaN when absent; a non-finite loss → +inf."""
    absent = [c for c in COLUMNS if c not in table.column_names]
    if absent:
        raise ReportError(f"the results table lacks column(s) {', '.join(absent)}; the report needs "
                          f"{', '.join(COLUMNS)} (and optionally {', '.join(OPTIONAL_COLUMNS)}), as written by "
                          "raysweep.store")
    extra = [c for c in OPTIONAL_COLUMNS if c in table.column_names]
    frame = table.select([*COLUMNS, *extra]).to_pandas()
    for column in OPTIONAL_COLUMNS:
        if column not in extra:
            frame[column] = np.nan
    frame["metric"] = frame["metric"].where(frame["metric"].notna(), "loss").astype(str)
    for column in ("loss", *(c for c in OPTIONAL_COLUMNS if c != "metric"), "lr", "weight_decay", "wall_s"):
        frame[column] = frame[column].astype(float)
    losses = frame["metric"] == "loss"
    frame.loc[losses & ~np.isfinite(frame["loss"]), ["loss", "bits_per_byte"]] = np.inf
    return frame


def split_tasks(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validation-loss rows, downstream-task rows) of ``as_frame``'s frame."""
    losses = frame["metric"] == "loss"
    return frame[losses], frame[~losses]


def family_of(frame: pd.DataFrame, plan: Plan | None) -> Family:
    """The plan's family; without one, the family whose computed optimum names the target rows' model."""
    if plan is not None and plan.family in FAMILIES:
        return FAMILIES[plan.family]
    targets = set(frame.loc[frame["role"] == Role.TARGET, "model"])
    return next((f for f in FAMILIES.values() if f.target_model in targets), LANGUAGE_MODEL)


def in_plan(frame: pd.DataFrame, plan: Plan | None) -> tuple[pd.DataFrame, list[str]]:
    """Only the trials of the current plan: results of an edited sweep file's older recipes stay stored, unused."""
    if plan is None:
        return frame, []
    planned = {key for keys in plan.trial_keys.values() for key in keys}
    stale = frame.loc[~frame["trial_key"].isin(planned), "trial_key"].nunique()
    note = [f"{stale} stored trial(s) belong to an earlier version of the sweep file; left out"] if stale else []
    return frame[frame["trial_key"].isin(planned)], note


def plan_gaps(frame: pd.DataFrame, plan: Plan | None) -> list[str]:
    """What the sweep file planned that the table lacks."""
    if plan is None:
        return []
    finished = frame.drop_duplicates("trial_key")["role"].value_counts()
    gaps = [f"{role}: {int(finished.get(role, 0))} of {len(keys)} planned trials finished"
            for role, keys in plan.trial_keys.items() if finished.get(role, 0) < len(keys)]
    present = set(frame["recipe"].unique())
    absent = [r for r in plan.recipes if r not in present]
    if absent:
        gaps.append(f"no finished trial yet for recipe(s) {', '.join(absent)}")
    return gaps


def comparable_seeds(block: pd.DataFrame, seeds_paired: bool) -> tuple[pd.DataFrame, str]:
    """The part of a recipe × seed block (NaN where a run is missing) that statistics compare, and what was cut to
    get it ("" when nothing was).

    Paired seeds (seed s is the same initialisation and data order for every recipe) are compared label by label:
    the seeds every recipe has. Unpaired seed labels mean nothing across recipes, and tables from elsewhere often
    give each recipe its own: each recipe keeps its own seeds in label order, as many as the recipe with the fewest
    has, and the columns become their positions 0, 1, ...
    """
    if seeds_paired:
        complete = block.notna().all(axis=0)
        dropped = [int(s) for s in block.columns[~complete]]
        kept = block.loc[:, complete]
        return kept, (f"seeds {dropped} missing for some recipes; compared on seeds {list(kept.columns)}"
                      if dropped else "")
    counts = block.notna().sum(axis=1)
    fewest = int(counts.min()) if len(counts) else 0
    kept = pd.DataFrame([row.dropna().to_numpy(float)[:fewest] for _, row in block.iterrows()],
                        index=block.index, columns=range(fewest), dtype=float)
    return kept, (f"recipes have {fewest} to {int(counts.max())} seeds (unpaired); each compared on its first "
                  f"{fewest}" if fewest < counts.max() else "")
