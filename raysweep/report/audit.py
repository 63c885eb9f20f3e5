"""Runs trained elsewhere, audited: any table of proxy and target results mapped onto the results schema, so that
the same decision table, agreement with CIs and figures come out of it.

``--columns`` maps raysweep's columns to the table's (``recipe=data,seed=seed,step=step``); the name a score
column is mapped to says what it is: ``loss`` (lower is better), or ``acc``, ``acc_norm``, ``acc_bytes`` (fractions,
reported in points) and ``gold_logprob_per_byte`` (higher is better). ``--where`` keeps the rows whose column holds
one of the values given, ``--target`` says which rows are targets (the rest are proxies)::

    # DataDecide-style: one row per size, recipe, seed, step, task and metric; the 1B models are the targets
    raysweep report evals.csv --columns recipe=data,model=params,seed=seed,step=step,domain=task,acc_norm=value \\
        --where metric=acc_per_char --target params=1B

Columns left unmapped take neutral values (one lr, one configuration, step 1, no compute); seeds are labels, in
sorted order, resampled independently unless told they are paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.errors import ReportError
from raysweep.identity import content_hash
from raysweep.store import SCHEMA

SCORES = ("loss", "acc", "acc_norm", "acc_bytes", "gold_logprob_per_byte")
MAPPABLE = ("recipe", "role", "model", "num_params", "lr", "batch_size", "weight_decay", "seed", "step", "tokens",
            "domain", *SCORES)
NEUTRAL = {"num_params": 0, "lr": 0.0, "batch_size": 0, "weight_decay": 0.0, "step": 1, "tokens": 0, "domain": "all"}
"""What an unmapped column holds: one lr and one configuration for every run, no compute, one validation domain."""


@dataclass(frozen=True)
class ColumnMap:
    columns: dict[str, str]
    """raysweep's column → the table's."""
    where: dict[str, list[str]]
    """The table's column → the values a kept row holds there (compared as text)."""
    target: tuple[str, str] | None
    """(the table's column, the value) of target rows; None: a mapped ``role`` column says, else all are proxies."""

    @property
    def score(self) -> str:
        return next(name for name in SCORES if name in self.columns)


def parse_column_map(columns: str, where: list[str], target: str | None) -> ColumnMap:
    """``--columns``, ``--where`` and ``--target`` as given; a ``ReportError`` says what is wrong with them."""
    mapping = {}
    for pair in filter(None, (p.strip() for p in columns.split(","))):
        ours, equals, theirs = pair.partition("=")
        if not equals or not theirs.strip():
            raise ReportError(f"--columns: {pair!r} must be RAYSWEEP_COLUMN=TABLE_COLUMN")
        if ours.strip() not in MAPPABLE:
            raise ReportError(f"--columns: {ours.strip()!r} is not a column raysweep maps; map any of "
                              f"{', '.join(MAPPABLE)}")
        mapping[ours.strip()] = theirs.strip()
    scores = [name for name in SCORES if name in mapping]
    if "recipe" not in mapping or len(scores) != 1:
        raise ReportError("--columns must map recipe and exactly one score column, named for what it holds: "
                          f"{', '.join(SCORES)} (e.g. --columns recipe=data,seed=seed,loss=eval_loss)")
    filters = {}
    for condition in where:
        column, equals, values = condition.partition("=")
        if not equals:
            raise ReportError(f"--where: {condition!r} must be TABLE_COLUMN=VALUE[,VALUE...]")
        filters[column.strip()] = [v.strip() for v in values.split(",")]
    role = None
    if target is not None:
        column, equals, value = target.partition("=")
        if not equals:
            raise ReportError(f"--target: {target!r} must be TABLE_COLUMN=VALUE (the rows of target runs)")
        role = (column.strip(), value.strip())
    return ColumnMap(mapping, filters, role)


def read_any(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file, or a folder of Parquet files, as pandas."""
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.is_dir() or path.suffix == ".parquet":
            return pq.read_table(path).to_pandas()
    except (OSError, ValueError, pa.ArrowException) as err:
        raise ReportError(f"{path}: not a readable table ({err})") from None
    raise ReportError(f"{path}: a table to audit is a .csv or .parquet file, or a folder of .parquet files")


def mapped_table(table: pd.DataFrame, mapping: ColumnMap, source: str) -> tuple[pa.Table, list[str]]:
    """The table's rows in raysweep's results schema, one trial per (role, recipe, model, lr, configuration,
    seed), and what was left out: rows whose score is empty are missing runs, not diverged ones (a diverged run's
    score is written inf), so they are dropped and counted, never ranked."""
    wanted = {*mapping.columns.values(), *mapping.where, *([mapping.target[0]] if mapping.target else [])}
    absent = sorted(wanted - set(table.columns))
    if absent:
        raise ReportError(f"{source}: no column(s) {', '.join(absent)}; it has: {', '.join(map(str, table.columns))}")
    for column, values in mapping.where.items():
        table = table[table[column].astype(str).isin(values)]
    if table.empty:
        raise ReportError(f"{source}: no row left after --where {mapping.where}")
    rows = pd.DataFrame({ours: table[theirs].to_numpy() for ours, theirs in mapping.columns.items()})
    if mapping.target:
        column, value = mapping.target
        rows["role"] = np.where(table[column].astype(str).to_numpy() == value, "target", "proxy")
        if not (rows["role"] == "target").any():
            raise ReportError(f"{source}: no row has {column} = {value!r} (--target); its values: "
                              f"{', '.join(sorted(map(str, table[column].unique()))[:20])}")
    elif "role" not in rows:
        rows["role"] = "proxy"
    unknown = set(rows["role"]) - {"proxy", "target"}
    if unknown:
        raise ReportError(f"{source}: the role column holds {sorted(map(str, unknown))}; it must say proxy or target")
    for column, value in NEUTRAL.items():
        if column not in rows:
            rows[column] = value
    rows["model"] = rows["model"].astype(str) if "model" in rows else rows["role"]
    rows["recipe"] = rows["recipe"].astype(str)
    rows["domain"] = rows["domain"].astype(str)
    labels = sorted(map(str, rows["seed"].unique())) if "seed" in rows else ["0"]
    rows["seed"] = rows["seed"].astype(str).map({label: i for i, label in enumerate(labels)}) if "seed" in rows else 0
    try:
        for column in ("num_params", "batch_size", "step", "tokens"):
            rows[column] = pd.to_numeric(rows[column]).astype("int64")
        for column in ("lr", "weight_decay", mapping.score):
            rows[column] = pd.to_numeric(rows[column]).astype(float)
    except (ValueError, TypeError) as err:
        raise ReportError(f"{source}: a mapped column is not numeric ({err}); map a numeric column, or filter with "
                          "--where") from None
    empty = rows[mapping.score].isna()
    left_out = [f"{source}: {int(empty.sum())} row(s) without a {mapping.score} value left out as missing runs "
                f"(recipes {', '.join(sorted(rows.loc[empty, 'recipe'].unique())[:8])}); write inf for a diverged run"
                ] if empty.any() else []
    rows = rows[~empty]
    if rows.empty:
        raise ReportError(f"{source}: no row has a {mapping.score} value (column {mapping.columns[mapping.score]})")
    identity = ["role", "recipe", "model", "lr", "batch_size", "weight_decay", "seed"]
    repeated = rows.duplicated([*identity, "step", "domain"])
    if repeated.any():
        spread = [c for c in table.columns if c not in wanted and table[c].nunique() > 1][:8]
        raise ReportError(f"{source}: {int(repeated.sum())} rows repeat a trial, step and domain; keep one score "
                          f"per trial with --where (columns that vary: {', '.join(map(str, spread)) or 'none'})")
    rows["trial_key"] = [content_hash(*key) for key in rows[identity].itertuples(index=False, name=None)]
    rows["status"] = "ok"
    rows["wall_s"] = 0.0
    rows["sweep"] = Path(source).stem
    if mapping.score == "loss":
        rows["metric"], rows["value"] = "loss", rows["loss"]
    else:
        rows["metric"], rows["value"], rows["loss"] = mapping.score, rows[mapping.score], np.nan
    fields = [f for f in SCHEMA if f.name in rows]
    return pa.Table.from_pandas(rows[[f.name for f in fields]], schema=pa.schema(fields),
                                preserve_index=False), left_out
