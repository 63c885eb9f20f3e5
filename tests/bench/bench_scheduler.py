"""Driver memory and scheduling overhead of ``raysweep launch`` on thousands of short trials, beside the same
trials run back to back in one plain process, in one run.

Run by hand: ``python tests/bench/bench_scheduler.py [NUM_TRIALS] [--workdir DIR] [--shipped-only]`` (default
2000 trials, a temporary folder; ``--shipped-only``: rows 1 and 2 alone).
2,000 trials take 5-30 min on 2 cores, depending on other load.
It writes a random-feature sweep of at least NUM_TRIALS trials (widths 64/256/1024, the shipped ten learning
rates, 1,000 SGD steps: ~5-35 ms of numpy each on one core) and an embedded-Ray cluster profile (2 CPUs, storage
in a temporary folder), then runs, each in its own child process sampled by this one every 0.25 s (RSS
of the child, i.e. the driver, and of every process under it; result files counted as they appear):

1. plain: ``plan_rf_trials`` → ``mark_started`` / ``run_rf_trial`` / ``store.write_trial`` in a loop, the work
   each Tune trial does, in one process on one core;
2. ``raysweep launch`` as shipped (``run_trials`` sets ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` by default);
3. ``raysweep launch`` with Tune's JSON/CSV/TensorBoard loggers back on (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0``
   in the child's environment), the choice (2) makes, measured in the same run;
4. as shipped but with Tune's own experiment-state snapshots (``TUNE_GLOBAL_CHECKPOINT_S=auto``: every max(10 s,
   19 × the last snapshot's cost), where ``run_trials`` sets ``sweep.trainable.EXPERIMENT_SNAPSHOT_S``);
5. plain again, last: the two plain rows bracket the launches, so a change in the machine's load shows.

The launches go through ``raysweep.cli.main(["launch", profile])``; the child only wraps ``sweep.start_ray`` and
``sweep.run_trials`` to timestamp them, so Ray's start-up can be told apart from scheduling. The children get
``OPENBLAS_NUM_THREADS=1``, as the tests do. Timings:

* start-up: child spawned → first result file (imports, ``ray.init`` with its dashboard, Tune and worker start);
* trials: first → last result file (file mtimes); overhead/trial is the difference from the mean of the plain
  rows divided by the trial count, over the whole run ("total", spawn → last result) and over the trials alone
  ("excl. start");
* CPU ms/trial: the driver's user+system CPU over the trials window, per trial; for a plain row, the trials' own
  CPU. The 2 cores are shared by the driver, Ray's own processes and 2 trial workers, so a driver that needs more
  CPU per trial than a trial does is what limits throughput, and unlike wall time this figure barely moves with
  the machine's load;
* RSS growth per 1,000 finished trials: least-squares slope of driver RSS against trials finished, from 10% to
  100% finished (past the warm-up), plus the RSS at 0/25/50/75/100% finished, and the size of Tune's
  experiment-state snapshot at the end.

Other work on a shared machine moves wall times (compare the two plain rows); RSS and CPU per trial move less.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from raysweep.net import free_port

SAMPLE_S = 0.25
TREE_REFRESH_S = 2.0
"""Finding the processes under the driver scans /proc; done every 2 s, their RSS read every sample."""
WIDTHS = [64, 256, 1024]
LRS = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 3.0, 5.0, 10.0]
MIB = 2**20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# The sweep and the cluster profile


def sweep_grid(num_trials: int) -> dict:
    """A random-feature grid of at least `num_trials` trials and as few more as the grid allows: num_distributions ×
    (|widths| × |lrs| × seeds proxies + 1 target)."""
    per_seed = len(WIDTHS) * len(LRS)
    best = None
    for seeds in range(1, 200):
        dists = max(4, math.ceil(num_trials / (per_seed * seeds + 1)))
        total = dists * (per_seed * seeds + 1)
        if dists <= 16 and (best is None or total < best[0]):
            best = (total, dists, seeds)
    _, dists, seeds = best
    return {"widths": WIDTHS, "lrs": LRS, "seeds": list(range(seeds)), "num_distributions": dists, "dim": 4,
            "batch_size": 8, "num_steps": 1000, "num_evals": 4, "kernel_samples": 500}


def write_profile(folder: Path, sweep_path: Path) -> Path:
    """Embedded Ray as in cluster/local.yaml (2 CPUs, 1 CPU a trial, 2 at a time), storage in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    profile = {"sweep": str(sweep_path), "storage": str(folder / "runs"),
               "ray": {"address": None, "num_cpus": 2, "num_gpus": 0, "dashboard_host": "127.0.0.1",
                       "dashboard_port": free_port()},
               "resources": {"proxy": {"cpu": 1}, "target": {"cpu": 1}}, "max_concurrent_trials": 2}
    path = folder / "cluster.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# Children: what is measured


def _marker(events_path: Path):
    events: dict[str, float] = {}

    def mark(name: str) -> None:
        events[name] = time.time()
        events_path.write_text(json.dumps(events))
    return mark


def child_plain(sweep_path: Path, results_dir: Path, events_path: Path) -> int:
    """The trials of the sweep back to back: the work of ``sweep.trainable._tune_trial`` without Ray or Tune."""
    mark = _marker(events_path)
    from raysweep import store
    from raysweep.config import load_sweep
    from raysweep.families.random_features import plan_rf_trials, run_rf_trial

    trials = plan_rf_trials(load_sweep(sweep_path))
    run = store.RunDir(results_dir.parent)
    run.create()
    mark("trials_start")
    for spec in trials:
        store.mark_started(run, spec)
        store.write_trial(run, run_rf_trial(spec))
    mark("trials_end")
    return 0


def child_launch(profile: Path, events_path: Path) -> int:
    """``raysweep launch PROFILE``, with ``start_ray`` and ``run_trials`` timestamped (their behaviour unchanged)."""
    mark = _marker(events_path)
    import importlib

    from raysweep.cli import main

    sweeps = importlib.import_module("raysweep.sweep.launch")  # the module whose calls are timed (`raysweep.sweep`
    # exports a function of that name)

    mark("imported")
    start_ray, run_trials = sweeps.start_ray, sweeps.run_trials

    def timed_start_ray(*args, **kwargs):
        start_ray(*args, **kwargs)
        mark("ray_started")

    def timed_run_trials(*args, **kwargs):
        mark("trials_start")
        try:
            return run_trials(*args, **kwargs)
        finally:
            mark("trials_end")

    sweeps.start_ray, sweeps.run_trials = timed_start_ray, timed_run_trials
    status = main(["launch", str(profile)])
    mark("launch_end")
    return status


# ---------------------------------------------------------------------------------------------
# The parent: sampling (from /proc, as tests/bench/bench_build.py does)


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3, the state, comes first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # a zombie has no VmRSS


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = set(), list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


@dataclass
class Sample:
    t: float
    finished: int
    driver_rss: int
    tree_rss: int
    driver_cpu: float


@dataclass
class Run:
    label: str
    num_trials: int
    spawn_t: float
    exit_t: float
    status: int
    samples: list[Sample]
    result_mtimes: list[float]
    events: dict[str, float] = field(default_factory=dict)
    log: Path | None = None
    state_mib: float = math.nan
    """Size of Tune's last experiment-state snapshot (experiment_state-*.json)."""


def _count_results(results_dir: Path) -> int:
    try:
        return sum(1 for e in os.scandir(results_dir) if e.name.startswith("trial-") and e.name.endswith(".parquet"))
    except FileNotFoundError:
        return 0


def measure(label: str, command: list[str], env: dict[str, str], results_dir: Path, num_trials: int,
            folder: Path) -> Run:
    log = folder / f"{label.replace(' ', '_')}.log"
    events_path = folder / "events.json"
    command = command + [str(events_path)]
    samples: list[Sample] = []
    spawn_t = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    tree: set[int] = set()
    seen: set[int] = set()
    refreshed = 0.0
    while proc.poll() is None:
        now = time.time()
        try:
            if now - refreshed > TREE_REFRESH_S:
                tree = _descendants(proc.pid)
                seen |= tree
                refreshed = now
            rss, cpu = _rss(proc.pid), _cpu_s(proc.pid)
        except (OSError, IndexError, ValueError):
            break
        tree_rss = rss
        for pid in list(tree):
            try:
                tree_rss += _rss(pid)
            except OSError:
                tree.discard(pid)
        samples.append(Sample(now, _count_results(results_dir), rss, tree_rss, cpu))
        time.sleep(SAMPLE_S)
    status = proc.wait()
    exit_t = time.time()
    _wait_gone(seen)
    mtimes = sorted(p.stat().st_mtime for p in results_dir.glob("trial-*.parquet"))
    events = json.loads(events_path.read_text()) if events_path.is_file() else {}
    events_path.unlink(missing_ok=True)
    snapshots = list(results_dir.parent.glob("tune/experiment_state-*.json"))
    state_mib = sum(p.stat().st_size for p in snapshots) / MIB if snapshots else math.nan
    run = Run(label, num_trials, spawn_t, exit_t, status, samples, mtimes, events, log, state_mib)
    if status != 0 or len(mtimes) != num_trials:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        message = f"{label}: exit status {status}, {len(mtimes)} of {num_trials} result files; log {log}:\n{tail}"
        if len(mtimes) != num_trials:
            raise SystemExit(message)
        print(f"  (note: every trial stored, but {message})")  # e.g. the report printed after the trials failed
    return run


def _wait_gone(pids: set[int], timeout_s: float = 20.0) -> None:
    """Ray's processes end after the driver: let them go before the next row starts."""
    deadline = time.time() + timeout_s
    alive = pids
    while alive and time.time() < deadline:
        alive = {pid for pid in alive if Path(f"/proc/{pid}").exists() and _stat_fields_or_zombie(pid)}
        time.sleep(0.2)
    if alive:
        print(f"  (note: {len(alive)} process(es) of the previous run still alive after {timeout_s:.0f} s)")


def _stat_fields_or_zombie(pid: int) -> bool:
    """True while `pid` runs (a zombie, or a pid gone meanwhile, counts as ended)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


# ---------------------------------------------------------------------------------------------
# Figures


def rss_at_fraction(run: Run, fraction: float) -> int:
    """Driver RSS when `fraction` of the trials had finished (0: the last sample before the first finished)."""
    if fraction == 0:
        before = [s for s in run.samples if s.finished == 0]
        return (before or run.samples)[-1].driver_rss
    target = math.ceil(fraction * run.num_trials)
    return next((s.driver_rss for s in run.samples if s.finished >= target), run.samples[-1].driver_rss)


def growth_per_1000(run: Run) -> float:
    """Least-squares slope of driver RSS (MiB) against trials finished, from 10% to 100% finished, × 1,000."""
    points = [(s.finished, s.driver_rss / MIB) for s in run.samples
              if 0.1 * run.num_trials <= s.finished <= run.num_trials]
    if len(points) < 3:
        return math.nan
    n = len(points)
    mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    return 1000 * sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx if sxx else math.nan


def _in_trials(run: Run) -> list[Sample]:
    first, last = run.result_mtimes[0], run.result_mtimes[-1]
    return [s for s in run.samples if first - SAMPLE_S <= s.t <= last + SAMPLE_S] or run.samples


@dataclass
class Figures:
    startup_s: float
    trials_s: float
    to_last_s: float
    exit_s: float
    rss_start: float
    rss_peak: float
    rss_end: float
    growth: float
    rss_run_peak: float
    tree_peak: float
    driver_cpu_ms: float
    quartiles: list[float]


def figures(run: Run) -> Figures:
    first, last = run.result_mtimes[0], run.result_mtimes[-1]
    window = _in_trials(run)
    cpu = (window[-1].driver_cpu - window[0].driver_cpu) / max(1e-9, window[-1].t - window[0].t) * (last - first)
    return Figures(
        startup_s=first - run.spawn_t, trials_s=last - first, to_last_s=last - run.spawn_t,
        exit_s=run.exit_t - run.spawn_t, rss_start=rss_at_fraction(run, 0) / MIB,
        rss_peak=max(s.driver_rss for s in window) / MIB, rss_end=rss_at_fraction(run, 1.0) / MIB,
        growth=growth_per_1000(run), rss_run_peak=max(s.driver_rss for s in run.samples) / MIB,
        tree_peak=max(s.tree_rss for s in run.samples) / MIB,
        driver_cpu_ms=1000 * cpu / run.num_trials,
        quartiles=[rss_at_fraction(run, q) / MIB for q in (0, 0.25, 0.5, 0.75, 1.0)])


def print_tables(runs: list[Run]) -> None:
    """The plain process runs first and last; the launches are compared with the mean of the two, and the
    difference between the two plain rows shows how much the machine's load moved during the run."""
    n = runs[0].num_trials
    table = {run.label: figures(run) for run in runs}
    plains = [table[run.label] for run in runs if run.label.startswith("plain")]
    plain_trials_s = sum(f.trials_s for f in plains) / len(plains)
    plain_total_s = sum(f.to_last_s for f in plains) / len(plains)
    plain_cpu_ms = sum(f.driver_cpu_ms for f in plains) / len(plains)
    width = max(len(r.label) for r in runs) + 1
    print(f"\n{n} trials, 2 CPUs (Tune: 2 trials at a time; plain: 1 process, 1 core).")
    print("Time. ovh = (row - plain) / trials, plain = mean of the two plain rows, over spawn → last result "
          "(total) and first → last result (excl. start). CPU ms/tr: the driver's (the plain process's own) CPU.")
    print(f"{'':{width}} {'start-up s':>10} {'trials s':>9} {'total s':>8} {'trials/s':>9} {'ovh ms/trial':>13} "
          f"{'excl. start':>12} {'CPU ms/tr':>10} {'exit s':>7}")
    for label, f in table.items():
        is_plain = label.startswith("plain")
        ovh = ("-", "-") if is_plain else (f"{1000 * (f.to_last_s - plain_total_s) / n:.1f}",
                                           f"{1000 * (f.trials_s - plain_trials_s) / n:.1f}")
        print(f"{label:{width}} {f.startup_s:10.1f} {f.trials_s:9.1f} {f.to_last_s:8.1f} {n / f.trials_s:9.1f} "
              f"{ovh[0]:>13} {ovh[1]:>12} {f.driver_cpu_ms:10.1f} {f.exit_s:7.1f}")
    for label, f in table.items():
        if not label.startswith("plain"):
            print(f"{'':{width}} {label}: {f.trials_s / plain_trials_s:.2f}x the plain trials time, "
                  f"{f.to_last_s / plain_total_s:.2f}x its total; driver CPU {f.driver_cpu_ms / plain_cpu_ms:.2f}x "
                  f"the trials' own")
    print("\nDriver RSS, MiB (driver = the launching process; 'Ray tree' adds raylet, GCS, dashboard, workers). "
          "peak: up to the last result; peak, run: up to exit")
    print(f"{'':{width}} {'start':>7} {'peak':>7} {'end':>7} {'MiB/1k trials':>14} {'peak, run':>10} "
          f"{'Ray tree peak':>14}   {'at 0%':>7} {'25%':>7} {'50%':>7} {'75%':>7} {'100%':>7}")
    for label, f in table.items():
        quartiles = " ".join(f"{q:7.1f}" for q in f.quartiles)
        print(f"{label:{width}} {f.rss_start:7.1f} {f.rss_peak:7.1f} {f.rss_end:7.1f} {f.growth:14.2f} "
              f"{f.rss_run_peak:10.1f} {f.tree_peak:14.0f}   {quartiles}")
    print("\nLaunches, s from spawn (Tune = run_trials, which builds the Tuner and calls fit), and the size of "
          "Tune's experiment-state snapshot")
    print(f"{'':{width}} {'imports':>7} {'Ray up':>7} {'Tune in':>7} {'1st res':>7} {'last res':>8} {'Tune out':>8} "
          f"{'exit':>7} {'state MiB':>10}")
    for run in runs:
        if run.label.startswith("plain"):
            continue
        e = run.events
        marks = [e.get("imported"), e.get("ray_started"), e.get("trials_start"), run.result_mtimes[0],
                 run.result_mtimes[-1], e.get("trials_end"), run.exit_t]
        print(f"{run.label:{width}} " + " ".join(f"{m - run.spawn_t:7.1f}" if m else "      -" for m in marks[:4])
              + " " + " ".join(f"{m - run.spawn_t:8.1f}" if m else "       -" for m in marks[4:6])
              + f" {marks[6] - run.spawn_t:7.1f} {run.state_mib:10.1f}")


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("num_trials", nargs="?", type=int, default=2000, help="at least this many trials")
    parser.add_argument("--workdir", type=Path, help="keep sweep, profiles, results and logs here (default: a "
                                                     "temporary folder, removed at the end)")
    parser.add_argument("--shipped-only", action="store_true",
                        help="only rows 1 and 2, the plain process and the launch as shipped (for 20,000 trials)")
    args = parser.parse_args()

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # one BLAS thread, as tests/conftest.py
    for name in ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "TUNE_GLOBAL_CHECKPOINT_S", "TUNE_RESULT_BUFFER_LENGTH"):
        env.pop(name, None)
    me = [sys.executable, str(Path(__file__).resolve())]
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        folder = Path(args.workdir or tmp).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        sweep_path = folder / "sweep.yaml"
        sweep_path.write_text(yaml.safe_dump({"name": "bench", "random_features": sweep_grid(args.num_trials)},
                                             sort_keys=False))
        from raysweep.config import load_sweep
        from raysweep.families.random_features import plan_rf_trials

        num_trials = len(plan_rf_trials(load_sweep(sweep_path)))
        grid = sweep_grid(args.num_trials)
        print(f"Sweep: {num_trials} trials = {grid['num_distributions']} datasets × ({len(WIDTHS)} widths × "
              f"{len(LRS)} lrs × {len(grid['seeds'])} seeds + 1 kernel target), {grid['num_steps']} SGD steps")

        plain = ("--child", "plain", str(sweep_path))
        rows = [("plain process", me + [*plain, str(folder / "plain" / "results")], {}, folder / "plain" / "results"),
                ("launch as shipped", None, {}, None)]
        if not args.shipped_only:
            rows.append(("launch, Tune loggers on", None, {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0"}, None))
            rows.append(("launch, Tune's auto snapshots", None, {"TUNE_GLOBAL_CHECKPOINT_S": "auto"}, None))
            rows.append(("plain process, again", me + [*plain, str(folder / "plain2" / "results")], {},
                         folder / "plain2" / "results"))
        runs = []
        for i, (label, command, extra_env, results_dir) in enumerate(rows):
            if command is None:
                profile = write_profile(folder / f"launch{i}", sweep_path)
                command = me + ["--child", "launch", str(profile)]
                results_dir = folder / f"launch{i}" / "runs" / "bench" / "results"
            print(f"running: {label} ...", flush=True)
            runs.append(measure(label, command, {**env, **extra_env}, results_dir, num_trials, folder))
        print_tables(runs)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], [Path(a) for a in sys.argv[3:]]
        sys.exit(child_plain(*rest) if kind == "plain" else child_launch(*rest))
    main()
