"""Command line: parse, call, print. Every command's logic lives in the module it names."""

from __future__ import annotations

import argparse
import errno
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from raysweep.config import SweepConfig, load_cluster, load_sweep
from raysweep.config.overrides import Override, effective_text, parse_overrides, split_overrides
from raysweep import __version__
from raysweep.errors import ConfigError, NothingToReport, ReportError, StatusError, UserError
from raysweep.plain import plain, to_json

SET_HELP = ("change one key of the sweep file (proxy.lrs=[1e-4,3e-4], recipes[0].epochs=2) or of the cluster "
            "profile (max_concurrent_trials=1, ray.num_cpus=4), checked like the file; repeatable; the value is YAML")
METRICS = ("loss", "alignment", "acc", "acc_norm", "acc_bytes", "gold_logprob_per_byte")
"""``raysweep.report.records.Metric``'s values, named here so that ``--help`` imports no report code."""

if TYPE_CHECKING:
    from raysweep.report import Report

EXIT_CONFIG = 2
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
"""Storage that is full, over quota, read-only or not this user's: a fact about the machine, not a bug."""
EXIT_NOTHING_YET = 1
"""A launch whose trials failed after their retries, or a report of a run with no finished trial yet."""


def _overrides(args: argparse.Namespace) -> tuple[list[Override], list[Override]]:
    """``--set`` overrides: (the cluster profile's, the sweep file's)."""
    return split_overrides(parse_overrides(args.set))


def _launch(args: argparse.Namespace, console: Console) -> int:
    if args.dry_run:
        return _plan(args, console)
    profile_sets, sweep_sets = _overrides(args)
    cluster = load_cluster(args.cluster, profile_sets)
    if args.up:
        from raysweep.jobs import launch_as_job  # Ray's job client: only when submitting

        return launch_as_job(cluster, Path(args.cluster), Path(args.sweep) if args.sweep else None, console,
                             profile_sets + sweep_sets)
    sweep_path = Path(args.sweep or cluster.sweep)
    sweep = load_sweep(sweep_path, sweep_sets)
    from raysweep import sweep as sweeps  # imports Ray and torch: only when launching

    selection = None
    try:
        if isinstance(sweep, SweepConfig) and sweep.select:
            from raysweep.select import launch_select

            outcome, selection = launch_select(cluster, sweep, console)
        else:
            outcome = sweeps.launch(cluster, sweep, console)
    except ConfigError as err:  # found while planning (a budget too small to train): name the sweep file
        raise ConfigError(sweep_path, err.problems) from None
    from raysweep import store

    run = store.RunDir(outcome.run_dir)
    store.write_sweep_file(run, effective_text(sweep_path.read_text(), sweep_sets, str(sweep_path)))
    console.print(f"Trained {outcome.num_trained} of {outcome.num_planned} planned trials; "
                  f"results in {run.results}")
    for error in outcome.errors:
        console.print(f"[red]failed:[/red] {error}")
    summary = _summarize(outcome.run_dir, "all", console)
    if not isinstance(summary, int):
        from raysweep.report.render import print_report

        print_report(summary, console)
        if cluster.tracking != type(cluster.tracking)():  # any tracker asked for
            from raysweep.sweep.tracking import track_report

            for where in track_report(cluster.tracking, summary, sweep.name, outcome.run_dir):
                console.print(Text(f"Report logged as a run: {where}"), soft_wrap=True)
    if selection:
        from raysweep.select import print_selection

        print_selection(selection, console)
    return EXIT_NOTHING_YET if outcome.errors else 0


def _plan(args: argparse.Namespace, console: Console) -> int:
    from raysweep.dry_run import plan_launch, print_plan

    profile_sets, sweep_sets = _overrides(args)
    cluster = load_cluster(args.cluster, profile_sets)
    sweep_path = Path(args.sweep or cluster.sweep)
    sweep = load_sweep(sweep_path, sweep_sets)
    try:
        with console.status(f"Planning; timing {args.calibrate_steps} training steps of each trial shape"):
            plan = plan_launch(cluster, sweep, args.calibrate_steps)
    except ConfigError as err:  # a budget too small to train: name the sweep file, as a launch does
        raise ConfigError(sweep_path, err.problems) from None
    if args.json:
        print(to_json(plain(plan)))
    else:
        print_plan(plan, sweep, console)
    return 0


def _language_model_sweep(path: Path) -> SweepConfig:
    sweep = load_sweep(path)
    if not isinstance(sweep, SweepConfig):
        raise ConfigError(path, [("random_features", "this command needs a language-model sweep (recipes, proxy, "
                                                     "target), not a random-feature one")])
    return sweep


def _estimate_lr(args: argparse.Namespace, console: Console) -> int:
    cluster = load_cluster(args.cluster)
    sweep_path = Path(args.sweep or cluster.sweep)
    sweep = _language_model_sweep(sweep_path)
    model = args.model or sweep.proxy.models[0]
    if model not in sweep.proxy.models:
        raise ConfigError(sweep_path, [("proxy.models", f"--model {model!r} is not one of the sweep's proxy models")])
    from raysweep.lr_window import estimate_window, print_window  # imports Ray and torch

    window = estimate_window(cluster, sweep, model, args.warmup_steps, args.batches, console)
    print_window(window, console)
    if args.write:
        from raysweep.lr_window import window_lrs, write_proxy_lrs

        lrs = window_lrs(window, sweep.proxy.standard_lr or max(sweep.proxy.lrs))
        try:
            change = write_proxy_lrs(sweep_path, lrs, window)
        except ValueError as err:
            print(f"raysweep: {err}", file=sys.stderr)
            return EXIT_CONFIG
        console.print(f"Wrote proxy.lrs = {lrs} to {sweep_path}; nothing else in it changed:")
        console.print(change, markup=False, highlight=False)
    from raysweep import store

    run = store.RunDir.of(cluster.storage, sweep.name)
    store.write_lr_window(run, model, window.upper_lr, window.floor_lr)
    console.print(f"Recorded the window in {run.lr_window_file}: the report's chosen {model} lr stays at "
                  f"or below {window.upper_lr:.2g}")
    return 0


def _status(args: argparse.Namespace, console: Console) -> int:
    from raysweep.status import print_status, sweep_status

    try:
        roles, eta_s = sweep_status(Path(args.run_dir))
    except StatusError as err:
        print(f"raysweep status: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(to_json({"roles": [{**plain(role), "pending": role.pending} for role in roles], "eta_s": eta_s}))
        return 0
    print_status(roles, eta_s, console)
    return 0


def _recipes_show(args: argparse.Namespace, console: Console) -> int:
    from raysweep.recipes.show import show_recipes
    from raysweep.store import shards_root

    try:
        cluster = load_cluster(args.cluster)
    except ConfigError as err:
        if any(path == "recipes" for path, _ in err.problems):  # a sweep file, as this command took before
            raise ConfigError(args.cluster, [("", "is a sweep file; `recipes show` takes the cluster profile, like "
                                                  "every command: raysweep recipes show CLUSTER.yaml [RECIPE] "
                                                  f"[--sweep {args.cluster}]")]) from None
        raise
    sweep = _language_model_sweep(Path(args.sweep or cluster.sweep))
    return show_recipes(sweep, shards_root(cluster.storage), console, args.recipe)


def _summarize(path: Path, domain: str, console: Console, metric: str = "loss",
               seeds_paired: bool = True) -> Report | int:
    """The report of a run directory or Parquet table; when there is none, the reason on stderr and the exit
    status that says why (``EXIT_NOTHING_YET`` or ``EXIT_CONFIG``)."""
    from raysweep import report  # pandas and pyarrow: only when reporting

    warn = functools.partial(console.print, style="yellow", markup=False)  # what the report leaves out
    try:
        return report.report_run(path, warn, domain=domain, metric=metric, seeds_paired=seeds_paired)
    except ReportError as err:
        return _report_error(err)


def _audited(args: argparse.Namespace, console: Console) -> Report | int:
    """``report TABLE --columns ...``: the report of a table trained elsewhere, mapped onto the results schema."""
    from raysweep import report
    from raysweep.report.audit import mapped_table, parse_column_map, read_any

    try:
        mapping = parse_column_map(args.columns, args.where, args.target)
        if args.metric not in (None, mapping.score):
            raise ReportError(f"--metric {args.metric} but --columns maps {mapping.score}: the score column is named "
                              "for what it holds")
        if not args.paired_seeds:
            console.print("seeds resampled independently per recipe (--paired-seeds if seed s is the same "
                          "initialisation and data order for every recipe)", style="yellow", markup=False)
        table, left_out = mapped_table(read_any(Path(args.path)), mapping, args.path)
        return report.summarize(table, domain=args.domain, metric=mapping.score, source=args.path,
                                seeds_paired=args.paired_seeds, unreadable=left_out)
    except ReportError as err:
        return _report_error(err)


def _report_error(err: ReportError, command: str = "report") -> int:
    print(f"raysweep {command}: {err}", file=sys.stderr)
    return EXIT_NOTHING_YET if isinstance(err, NothingToReport) else EXIT_CONFIG


def _report(args: argparse.Namespace, console: Console) -> int:
    if args.json:
        console = Console(file=sys.stderr, width=160)  # what the report leaves out, and files written: stdout is JSON
    summary = (_audited(args, console) if args.columns else
               _summarize(Path(args.path), args.domain, console, args.metric or "loss", not args.independent_seeds))
    if isinstance(summary, int):
        return summary
    if args.json:
        print(to_json(summary))
    else:
        from raysweep.report.render import print_report

        print_report(summary, console)
    if args.html or args.figures:
        from raysweep.report.figures import draw_figures  # matplotlib: only when drawing
        from raysweep.report.html import html_page

        images = draw_figures(summary)
        html = Path(args.html) if args.html else None
        figures_dir = Path(args.figures) if args.figures else html.with_name(f"{html.stem}_figures")
        figures_dir.mkdir(parents=True, exist_ok=True)
        for image in images:
            (figures_dir / image.filename).write_bytes(image.png)
        console.print(Text(f"Figures: {len(images)} PNG file(s) in {figures_dir}"), soft_wrap=True)
        if html:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(html_page(summary, images), encoding="utf-8")
            console.print(Text(f"HTML report (self-contained): {html}"), soft_wrap=True)
    return 0


def _export(args: argparse.Namespace, console: Console) -> int:
    from raysweep.report.export import export_olmix

    warn = functools.partial(console.print, style="yellow", markup=False)
    try:
        ratios, metrics, count = export_olmix(Path(args.path), Path(args.out), args.role, warn)
    except ReportError as err:
        return _report_error(err, "export")
    console.print(Text(f"Wrote {count} {args.role} runs in Olmix's swarm layout: {ratios} and {metrics} "
                       f"(olmix fit: swarm.ratios and swarm.metrics)"), soft_wrap=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raysweep",
        description="Rank pretraining data recipes with small proxy runs, checked against tuned target runs, "
                    "on Ray.")
    parser.add_argument("--version", action="version", version=f"raysweep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    launch = commands.add_parser(
        "launch", help="run a sweep (trains only what is not stored yet), then print the summary",
        description="Build each recipe's shards, run the proxy and target trials that are not stored yet on "
                    "Ray Tune, then print the ranking and how far the proxies can be trusted.")
    launch.add_argument("cluster", help="cluster profile, e.g. cluster/local.yaml")
    launch.add_argument("--sweep", help="sweep file to run instead of the profile's `sweep:`")
    launch.add_argument("--up", action="store_true",
                        help="first start the cluster from the profile's `launcher:` file (ray up), then run the "
                             "sweep there as a Ray Job that outlives this machine; prints the job id and how to "
                             "follow it")
    launch.add_argument("--dry-run", action="store_true",
                        help="print what the launch would train and build, and its cost, instead (as `plan`)")
    launch.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help=SET_HELP)
    launch.set_defaults(handler=_launch, calibrate_steps=5, json=False)
    plan = commands.add_parser(
        "plan", help="what a launch would train and build, its FLOPs and trial-hours, before anything runs",
        description="Count the trials per role a launch would train (planned, already stored, left), their "
                    "training FLOPs (6 · parameters · tokens), the recipe shard sets it would build, and, from a "
                    "few timed training steps of each trial shape on this machine, the trial-hours they need. "
                    "Nothing is trained and Ray is not started.")
    plan.add_argument("cluster", help="cluster profile, e.g. cluster/local.yaml")
    plan.add_argument("--sweep", help="sweep file to plan instead of the profile's `sweep:`")
    plan.add_argument("--calibrate-steps", type=int, default=5, metavar="N",
                      help="timed training steps per trial shape (default: 5; 0 skips the calibration)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help=SET_HELP)
    plan.set_defaults(handler=_plan)
    report_parser = commands.add_parser(
        "report", help="the decision and how far the proxies can be trusted, from stored results",
        description="Print the decision table, reliability table (with baselines), per-domain agreement, decision "
                    "quality per unit of proxy compute, compute spent, and a verdict line, from a results table "
                    "alone. Works on partial runs and says what is missing.")
    report_parser.add_argument("path", help="run directory (<storage>/<sweep name>, e.g. runs/demo), or a results "
                                            "Parquet file, or a folder of them")
    report_parser.add_argument("--domain", default="all",
                               help="validation domain to rank by, or with a task metric the task (default: all, "
                                    "the aggregate over domains, or the mean over tasks)")
    report_parser.add_argument("--metric", choices=METRICS, default=None,
                               help="what ranks: the validation loss (default); the proxies' accumulated gradient "
                                    "alignment with it (higher first; needs proxy.alignment_every; targets still by "
                                    "loss); or a downstream task's score for proxies and targets alike (acc, "
                                    "acc_norm, acc_bytes in accuracy points, gold_logprob_per_byte; higher first; "
                                    "needs tasks: in the sweep file)")
    report_parser.add_argument("--columns", metavar="OURS=THEIRS,...",
                               help="audit a table trained elsewhere (CSV or Parquet): map raysweep's columns to its "
                                    "own, e.g. recipe=data,seed=seed,step=step,domain=task and one score named for "
                                    "what it holds (loss=..., or acc=/acc_norm=/acc_bytes= fractions, "
                                    "gold_logprob_per_byte=...)")
    report_parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE...]",
                               help="with --columns: keep only the rows whose column holds one of the values "
                                    "(repeatable), e.g. metric=acc_per_char")
    report_parser.add_argument("--target", metavar="COLUMN=VALUE",
                               help="with --columns: the rows of target runs (e.g. params=1B); the rest are proxies")
    report_parser.add_argument("--paired-seeds", action="store_true",
                               help="with --columns: seed s is the same initialisation and data order for every "
                                    "recipe (default: resampled independently)")
    report_parser.add_argument("--independent-seeds", action="store_true",
                               help="resample each recipe's seeds on its own, for tables whose seed s is not the "
                                    "same initialisation and data order for every recipe (runs made elsewhere); "
                                    "raysweep's own runs are paired, and paired resampling is the default")
    report_parser.add_argument("--html", metavar="OUT.html",
                               help="also write one self-contained HTML page (figures inlined); the PNGs go to "
                                    "OUT_figures/ beside it unless --figures says otherwise")
    report_parser.add_argument("--figures", metavar="DIR", help="also save the figures as PNG files in DIR")
    report_parser.add_argument("--json", action="store_true",
                               help="print the typed report as JSON instead of tables (NaN and infinities as null)")
    report_parser.set_defaults(handler=_report)
    status = commands.add_parser(
        "status", help="trials finished / in flight / failed / diverged per role, GPU-hours and an ETA",
        description="Count a run's trials per role from its files alone (plan.json and results/): finished, "
                    "diverged, failed after retries, started but not finished (in flight, or interrupted by a "
                    "killed launch), pending; GPU-hours and trial-hours (wall time summed over trials) spent; "
                    "and an ETA.")
    status.add_argument("run_dir", help="run directory: <storage>/<sweep name>, e.g. runs/demo")
    status.add_argument("--json", action="store_true", help="print the counts and the ETA as JSON")
    status.set_defaults(handler=_status)
    estimate = commands.add_parser(
        "estimate-lr", help="how tiny: the proxy learning-rate window from curvature and gradient noise (Eq. 58)",
        description="Warm a proxy up on every recipe at the standard learning rate, then measure the validation "
                    "Hessian's top eigenvalue, each recipe's gradient alignment and the gradient noise, and print the "
                    "Eq. 58 upper bound per recipe with the float-precision floor: the range of proxy learning "
                    "rates worth sweeping. One Ray task per recipe.")
    estimate.add_argument("cluster", help="cluster profile, e.g. cluster/local.yaml")
    estimate.add_argument("--sweep", help="sweep file to use instead of the profile's `sweep:`")
    estimate.add_argument("--model", help="proxy model (default: the sweep's first)")
    estimate.add_argument("--warmup-steps", type=int, default=500, help="steps at the standard lr (default: 500)")
    estimate.add_argument("--batches", type=int, default=20,
                          help="minibatches for the gradient statistics (default: 20)")
    estimate.add_argument("--write", action="store_true",
                          help="replace the sweep file's proxy.lrs with rates inside the window (and the standard lr)")
    estimate.set_defaults(handler=_estimate_lr)
    export = commands.add_parser(
        "export", help="write a run's results in another tool's layout (Olmix's swarm CSVs)",
        description="Write one run per trial at its last evaluation: the proxies at each model's chosen lr (or each "
                    "recipe's best target configuration), their recipes' token shares by source (ratios.csv) and "
                    "their validation losses, bits per byte and task scores (metrics.csv), joined by run.")
    export.add_argument("path", help="run directory, e.g. runs/demo")
    export.add_argument("--format", choices=("olmix",), required=True, help="the layout to write")
    export.add_argument("--out", required=True, metavar="DIR", help="folder for ratios.csv and metrics.csv")
    export.add_argument("--role", choices=("proxy", "target"), default="proxy",
                        help="which runs: the chosen proxies (default) or the tuned targets")
    export.set_defaults(handler=_export)
    recipes = commands.add_parser("recipes", help="inspect recipes: their mix and what their build removed")
    recipes_commands = recipes.add_subparsers(dest="recipes_command", required=True)
    show = recipes_commands.add_parser(
        "show", help="each recipe's sources, token shares and build manifest (what every filter removed)",
        description="Print each recipe's mix and, once built, its build manifest: sequences and tokens per "
                    "source, documents read and kept, and what each curation operator removed, by reason.")
    show.add_argument("cluster", help="cluster profile, e.g. cluster/local.yaml (its sweep, and its storage where "
                                      "the shards are)")
    show.add_argument("recipe", nargs="?", help="only this recipe")
    show.add_argument("--sweep", help="sweep file to show instead of the profile's `sweep:`")
    show.set_defaults(handler=_recipes_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs keep tables unwrapped
    try:
        return args.handler(args, console)
    except ConfigError as err:
        # Plain lines, never wrapped: users grep and copy them.
        print(f"raysweep: invalid configuration ({len(err.problems)} problem(s)):\n{err}", file=sys.stderr)
        return EXIT_CONFIG
    except UserError as err:  # results stored before it stay stored; a relaunch resumes
        print(f"raysweep: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as err:
        if err.errno not in STORAGE_ERRORS:
            raise
        print(f"raysweep: storage: cannot write {err.filename or 'a file'} ({err.strerror}); every result stored "
              "before this stays stored, and a relaunch once there is room trains only what is missing",
              file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
