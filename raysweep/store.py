"""The results table: one append-only Parquet dataset per sweep, one file per finished trial.

Each finished trial writes ``<results>/trial-<trial_key>.parquet`` holding one row per evaluation
step × validation domain. A file appears whole or not at all (written aside, then renamed), so a
crash never leaves half a trial, and "is this trial done?" is a file lookup: relaunching a sweep
skips every trial whose file exists. Records become rows only here.

Schema (one row per trial × checkpoint × domain, and per downstream task × metric)::

    trial_key role recipe model num_params lr batch_size weight_decay seed step tokens domain loss bits_per_byte
    alignment initial_loss status num_steps wall_s metric value sweep run_id

A validation domain's row has ``metric`` "loss" and its loss as ``value``. A task's rows (``domain`` the task's
name) have ``metric`` one of ``raysweep.tasks.scoring.METRICS`` (acc, acc_norm, acc_bytes, gold_logprob_per_byte:
higher is better) or ``DESCRIPTIONS`` (chance, items, items_in_task), ``value`` its score and a null loss.
``sweep`` is the sweep's name and ``run_id`` the run's (``run.json``), so that tables from several runs
concatenate and stay apart; the file's metadata (``METADATA_KEYS``) holds the resolved sweep and trial configs.

``status`` is "ok", "diverged", or "stopped" (an early-stopped proxy: its last step is below ``num_steps``, the
steps it was planned for). ``alignment`` is NaN unless the sweep measures it (``proxy.alignment_every``).
``initial_loss`` is the domain's loss at initialisation, before the first step (the same on every row of a trial).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from raysweep import __version__
from raysweep.files import json_writer, replace_atomically, write_atomically, write_json, write_through_outage
from raysweep.plain import plain
from raysweep.trials import AnySpec, Evaluation, Status, TrialResult

SCHEMA = pa.schema([
    ("trial_key", pa.string()),
    ("role", pa.string()),
    ("recipe", pa.string()),
    ("model", pa.string()),
    ("num_params", pa.int64()),
    ("lr", pa.float64()),
    ("batch_size", pa.int64()),
    ("weight_decay", pa.float64()),
    ("seed", pa.int64()),
    ("step", pa.int64()),
    ("tokens", pa.int64()),
    ("domain", pa.string()),
    ("loss", pa.float64()),
    ("bits_per_byte", pa.float64()),
    ("alignment", pa.float64()),
    ("initial_loss", pa.float64()),
    ("status", pa.string()),
    ("num_steps", pa.int64()),
    ("wall_s", pa.float64()),
    ("metric", pa.string()),
    ("value", pa.float64()),
    ("sweep", pa.string()),
    ("run_id", pa.string()),
])

METADATA_KEYS = ("raysweep.version", "raysweep.run_id", "raysweep.sweep", "raysweep.trial")
"""Each result file's Parquet key-value metadata: who wrote it, its run, the resolved sweep config (JSON) the trial
was launched with, and the trial's full spec (JSON): a table found on a disk says where it came from."""


SIDECARS = ("running", "failed", "partial", "corrupt", "outages")
"""What sits beside ``results/`` until it is a row, or instead of one: in-flight, failed, paused, unreadable, and
the notes of writes that waited for the storage."""

STORAGE_PATIENCE_S = 600.0
"""How long a trial's write waits for a storage that has gone away (a shared file system unmounted, a stale
handle) before the trial counts as failed: far cheaper than training it again, at any scale."""


@dataclass(frozen=True)
class RunDir:
    """One sweep's folder, ``<storage>/<sweep name>/``, and every path in it: nothing else joins a path under it.

    ``results/`` is the table and holds nothing else, so that pandas, pyarrow or DuckDB read it as one Parquet
    dataset while trials are in flight; what is not (yet) a row sits beside it: ``running/``, ``failed/``,
    ``partial/`` and ``corrupt/`` records, ``outages/`` (writes that waited for the storage), ``checkpoints/``,
    ``studies/`` (target search journals), ``tune/`` (Tune's experiment state), ``plan.json``, ``sweep.yaml`` and
    ``lr_window.json``.
    """

    path: Path

    @classmethod
    def of(cls, storage: str | Path, sweep_name: str) -> RunDir:
        return cls(Path(storage).absolute() / sweep_name)

    def create(self) -> None:
        """The folders trials write their records into: made once, by the launch, never by a trial's write (see
        ``write_through_outage``)."""
        for folder in (self.results, *(self.sidecar(kind) for kind in ("running", "failed", "partial", "outages"))):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def results(self) -> Path:
        return self.path / "results"

    def trial_file(self, trial_key: str) -> Path:
        return self.results / f"trial-{trial_key}.parquet"

    def sidecar(self, kind: str) -> Path:
        """One of ``SIDECARS``: the folder beside ``results/`` of what is not (yet) a row."""
        return self.path / kind

    def marker(self, kind: str, trial_key: str) -> Path:
        """``kind`` is "running", "failed" or "partial": a trial's record that is not a row."""
        return self.sidecar(kind) / f"trial-{trial_key}.json"

    @property
    def corrupt(self) -> Path:
        """Result files found unreadable, kept aside (never deleted) while their trials train again."""
        return self.sidecar("corrupt")

    def checkpoint(self, trial_key: str) -> Path:
        """Where a trial keeps its training state between evaluations."""
        return self.path / "checkpoints" / f"trial-{trial_key}.pt"

    def study(self, recipe: str) -> Path:
        """The Optuna journal of ``recipe``'s target search."""
        return self.path / "studies" / f"{recipe}.log"

    @property
    def plan_file(self) -> Path:
        return self.path / "plan.json"

    @property
    def sweep_file(self) -> Path:
        return self.path / "sweep.yaml"

    @property
    def lr_window_file(self) -> Path:
        return self.path / "lr_window.json"

    @property
    def run_file(self) -> Path:
        """``run.json``: the run's id (fixed at its first launch) and the resolved sweep of its latest launch."""
        return self.path / "run.json"


def write_run(run: RunDir, sweep: object) -> str:
    """Record the launch's resolved sweep in ``run.json``, keeping the run id of the first launch; returns it."""
    previous = read_run(run)
    run_id = previous.get("run_id") or f"{run.path.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"
    write_json(run.run_file, {"run_id": run_id, "sweep": plain(sweep)})
    return run_id


def read_run(run: RunDir) -> dict:
    """``run.json`` as written, or {} (a run directory made before it existed, or by hand)."""
    try:
        return json.loads(run.run_file.read_text())
    except (OSError, ValueError):
        return {}


def shards_root(storage: str | Path) -> Path:
    """Recipe shard sets, shared by every sweep under ``storage`` (each named by its content hash)."""
    return Path(storage).absolute() / "shards"


def write_trial(run: RunDir, result: TrialResult) -> Path:
    if result.status == Status.PARTIAL:
        raise ValueError(f"trial {result.spec.name} is partial: store it when it finishes or stops")
    spec = result.spec
    record = read_run(run)
    identity = {"trial_key": spec.key, **spec.columns(), "status": result.status, "wall_s": result.wall_s,
                "sweep": run.path.name, "run_id": record.get("run_id")}
    rows = [{**identity, "step": evaluation.step, "tokens": evaluation.tokens, "domain": domain, "loss": loss,
             "bits_per_byte": evaluation.bits_per_byte[domain], "alignment": evaluation.alignment,
             "initial_loss": result.initial_losses.get(domain, math.nan), "metric": "loss", "value": loss}
            for evaluation in result.evaluations for domain, loss in evaluation.losses.items()]
    rows += [{**identity, "step": evaluation.step, "tokens": evaluation.tokens, "domain": task, "loss": math.nan,
              "bits_per_byte": math.nan, "alignment": math.nan, "initial_loss": math.nan, "metric": metric,
              "value": value}
             for evaluation in result.evaluations for task, scores in evaluation.tasks.items()
             for metric, value in scores.items()]
    metadata = dict(zip(METADATA_KEYS, (__version__, record.get("run_id") or "", json.dumps(record.get("sweep")),
                                        json.dumps(plain(spec)))))
    table = pa.Table.from_pylist(rows, schema=SCHEMA.with_metadata(metadata))
    path = _write_record(run, run.trial_file(spec.key), lambda staging: pq.write_table(table, staging))
    for stale in ("failed", "running", "partial"):  # it may have failed before; it is no longer in flight
        with contextlib.suppress(OSError):  # a marker an outage left behind is harmless: the stored file decides
            run.marker(stale, spec.key).unlink(missing_ok=True)
    return path


def mark_started(run: RunDir, spec: AnySpec) -> None:
    """``running/trial-<key>.json``: the trial has started; removed when it is stored or recorded as failed.

    A marker left behind by a killed launch means "interrupted": a relaunch starts that trial again. Its node and
    process id say where to look for a trial that seems stuck.
    """
    _write_json_record(run, run.marker("running", spec.key),
                       {"trial_key": spec.key, "name": spec.name, "role": spec.role, "started_s": time.time(),
                        "node": socket.gethostname(), "pid": os.getpid()})


def read_started(run: RunDir) -> list[dict]:
    """Markers of trials started and not yet stored or failed: in flight, or interrupted."""
    return _read_markers(run, "running")


def _read_markers(run: RunDir, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.sidecar(kind).glob("trial-*.json"))]


def write_partial(run: RunDir, result: TrialResult) -> None:
    """``partial/trial-<key>.json``: the evaluations of a trial paused between early-stopping rounds (its
    weights are in its checkpoint); the round's settle check reads them, ``write_trial`` removes them."""
    _write_json_record(run, run.marker("partial", result.spec.key),
                       {"trial_key": result.spec.key, "wall_s": result.wall_s, "initial_losses": result.initial_losses,
                        "evaluations": [dataclasses.asdict(e) for e in result.evaluations]})


def read_partial(run: RunDir, spec: AnySpec) -> TrialResult | None:
    """What ``write_partial`` left for ``spec``, as the "partial" result it wrote, or None."""
    path = run.marker("partial", spec.key)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return TrialResult(spec, Status.PARTIAL, [Evaluation(**e) for e in record["evaluations"]], record["wall_s"],
                       record.get("initial_losses", {}))


def read_trial_losses(run: RunDir, trial_key: str, domain: str = "all") -> list[float]:
    """A stored trial's losses on ``domain`` at each of its evaluations, in step order; [] if it is not stored."""
    path = run.trial_file(trial_key)
    table, _ = read_tables([path] if path.is_file() else [], columns=["step", "domain", "loss"])
    rows = [] if table is None else table.to_pylist()
    return [row["loss"] for row in sorted(rows, key=lambda row: row["step"]) if row["domain"] == domain]


@dataclass(frozen=True)
class Plan:
    """What the last launch asked for, so that a partial run can say what is missing and how long the rest takes."""

    recipes: list[str]
    trial_keys: dict[str, list[str]]
    """role → keys of the trials the sweep file expands to; stored trials outside them are from an older plan."""
    standard_lr: float
    """``proxy.standard_lr``, else the largest of ``proxy.lrs``."""
    family: str | None = None
    """``Family.name``; None for a plan written before it was recorded: the table tells."""
    precision_floor_lr: float | None = None
    """The lr below which the proxies' weights round their AdamW updates away (``tiny_lr.precision_floor_lr``)."""
    num_planned: dict[str, int] = field(default_factory=dict)
    """role → trials planned; a target search proposes its trials as it goes: the keys so far, out of this many."""
    gpus_per_trial: dict[str, float] | None = None
    """role → GPUs a trial holds (None in a plan written before it was recorded)."""
    max_concurrent_trials: int | None = None


def write_plan(run: RunDir, plan: Plan) -> None:
    """``plan.json``, written by every launch: the report and ``raysweep status`` read it."""
    write_json(run.plan_file, dataclasses.asdict(plan))


def read_plan(run: RunDir) -> Plan | None:
    """The last launch's plan; None when there is none. Raises ValueError when the file is not a plan."""
    path = run.plan_file
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(Plan)}
    try:
        plan = Plan(**{key: value for key, value in record.items() if key in names})
    except (TypeError, AttributeError) as err:
        raise ValueError(f"not a plan ({err})") from None
    shapes = {"recipes": isinstance(plan.recipes, list),
              "trial_keys": isinstance(plan.trial_keys, dict) and all(isinstance(keys, list)
                                                                      for keys in plan.trial_keys.values()),
              "standard_lr": isinstance(plan.standard_lr, (int, float)),
              "num_planned": isinstance(plan.num_planned, dict),
              "gpus_per_trial": plan.gpus_per_trial is None or isinstance(plan.gpus_per_trial, dict)}
    wrong = [key for key, right in shapes.items() if not right]
    if wrong:
        raise ValueError(f"not a plan ({', '.join(wrong)} of the wrong type)")
    return plan


def write_sweep_file(run: RunDir, text: str) -> None:
    """The sweep file of the last launch, copied into the run: what produced these results."""
    write_atomically(run.sweep_file, lambda staging: staging.write_text(text))


def write_lr_window(run: RunDir, model: str, eta_58: float, precision_floor: float) -> None:
    """Record one model's window measured by ``raysweep estimate-lr`` (the Eq. 58 bound and the precision floor:
    the report keeps the chosen proxy lr below the bound), keeping the other models' entries."""
    windows = read_lr_windows(run)
    windows[model] = {"eta_58": eta_58, "precision_floor": precision_floor}
    write_json(run.lr_window_file, windows)


def read_lr_windows(run: RunDir) -> dict[str, dict[str, float]]:
    """model → {"eta_58", "precision_floor"}; empty when ``estimate-lr`` has not run. ValueError when not JSON."""
    path = run.lr_window_file
    return json.loads(path.read_text()) if path.is_file() else {}


def write_failure(run: RunDir, spec: AnySpec, cause: str) -> Path:
    """Record a trial that raised after its retries: ``failed/trial-<key>.json`` with its cause.

    Failed trials are not finished: a relaunch retries them, and their record goes when one succeeds.
    """
    path = _write_json_record(run, run.marker("failed", spec.key),
                              {"trial_key": spec.key, "name": spec.name, "role": spec.role, "recipe": spec.recipe,
                               "model": spec.model, "lr": spec.lr, "seed": spec.seed, "cause": cause})
    run.marker("running", spec.key).unlink(missing_ok=True)
    return path


def _write_record(run: RunDir, path: Path, write) -> Path:
    """A trial's record, written through a storage outage of up to ``STORAGE_PATIENCE_S``: the wait is noted in
    ``outages/`` when it begins (where the storage lets it) and when it ends, for the launch to say."""
    note = run.sidecar("outages") / f"{path.name}.{os.getpid()}-{time.time_ns()}.json"
    record = {"file": str(path), "node": socket.gethostname(), "since_s": time.time(), "waited_s": None}

    def write_note(**changes) -> None:
        record.update(changes)
        with contextlib.suppress(OSError):  # a note, never a reason to fail the write it is about
            replace_atomically(note, json_writer(record))

    waited = write_through_outage(path, write, STORAGE_PATIENCE_S,
                                  lambda err: write_note(cause=err.strerror or str(err), since_s=time.time()))
    if "cause" in record:
        write_note(waited_s=waited)
    return path


def _write_json_record(run: RunDir, path: Path, record: dict) -> Path:
    return _write_record(run, path, json_writer(record))


def take_outages(run: RunDir) -> list[dict]:
    """The notes of writes that waited for the storage (``waited_s`` None: it gave up), removed once read: the
    launch that reads them says them."""
    notes = []
    for path in run.sidecar("outages").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            notes.append(json.loads(path.read_text()))
            path.unlink()
    return sorted(notes, key=lambda note: note["since_s"])


def read_failures(run: RunDir) -> list[dict]:
    """The failure records of trials that have not succeeded since (see ``write_failure``)."""
    return _read_markers(run, "failed")


def finished_keys(run: RunDir) -> tuple[set[str], list[str]]:
    """Keys of the trials stored whole, and one line per result file that is not (moved to ``corrupt/``).

    A file that is truncated or not Parquet cannot have come from ``write_trial`` (which renames only whole
    files): it is kept aside, never deleted, and its trial counts as unfinished so the next launch retrains it.
    """
    _adopt_older_layout(run)
    keys, problems = set(), []
    for path in result_files(run):
        try:
            pq.read_metadata(path)
        except (pa.ArrowException, OSError) as err:
            aside = run.corrupt / path.name
            aside.parent.mkdir(exist_ok=True)
            os.replace(path, aside)
            problems.append(f"{path.name} is unreadable ({err}); moved to {aside}, its trial will be retrained")
            continue
        keys.add(path.name[len("trial-"):-len(".parquet")])
    return keys, problems


def _adopt_older_layout(run: RunDir) -> None:
    """Move the records a run written by an older raysweep keeps inside ``results/`` beside it instead."""
    for kind in SIDECARS:
        inside = run.results / kind
        if inside.is_dir():
            run.sidecar(kind).mkdir(parents=True, exist_ok=True)
            for record in inside.iterdir():
                os.replace(record, run.sidecar(kind) / record.name)
            inside.rmdir()


def result_files(run: RunDir) -> list[Path]:
    """The stored trials' files, in key order."""
    return sorted(run.results.glob("trial-*.parquet"))


def read_tables(files: list[Path], columns: list[str] | None = None) -> tuple[pa.Table | None, list[str]]:
    """The one reader of results files: their rows concatenated (None when no file could be read), and one line per
    file that could not be (truncated or foreign: reported and left out, never dropped silently).

    Files with and without the optional columns combine, the missing values null. Raises ``pa.ArrowInvalid`` when
    two files' columns cannot be combined.
    """
    tables, unreadable = [], []
    for file in files:
        try:
            tables.append(pq.read_table(file, columns=columns))
        except (pa.ArrowException, OSError) as err:
            unreadable.append(f"{file}: unreadable, left out ({err}); a launch moves it aside and retrains its trial")
    if not tables:
        return None, unreadable
    return pa.concat_tables(tables, promote_options="default"), unreadable


def read_results(run: RunDir) -> pa.Table:
    """Every stored trial's rows (the schema above; empty when none is stored)."""
    table, _ = read_tables(result_files(run))
    return SCHEMA.empty_table() if table is None else table
