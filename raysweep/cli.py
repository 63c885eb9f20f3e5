"""Command line: parse, call, print. Every command's logic lives in the module it names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from raysweep.config import ConfigError, load_cluster, load_sweep

EXIT_CONFIG = 2


def _launch(args: argparse.Namespace, console: Console) -> int:
    cluster = load_cluster(args.cluster)
    sweep_path = Path(args.sweep or cluster.sweep)
    sweep = load_sweep(sweep_path)
    from raysweep import report, store, sweep as sweeps  # imports Ray and torch: only when launching

    try:
        outcome = sweeps.launch(cluster, sweep, console)
    except ConfigError as err:  # found while planning (a budget too small to train): name the sweep file
        raise ConfigError(sweep_path, err.problems) from None
    outcome.run_dir.mkdir(parents=True, exist_ok=True)
    (outcome.run_dir / "sweep.yaml").write_text(sweep_path.read_text())  # what produced these results
    console.print(f"Trained {outcome.num_trained} of {outcome.num_planned} planned trials; "
                  f"results in {outcome.run_dir / 'results'}")
    for error in outcome.errors:
        console.print(f"[red]failed:[/red] {error}")
    report.print_summary(report.summarize(store.read_results(outcome.run_dir / "results")), console)
    return 1 if outcome.errors else 0


def _report(args: argparse.Namespace, console: Console) -> int:
    from raysweep import report, store

    results = Path(args.run_dir) / "results"
    if not results.is_dir():
        console.print(f"[red]{args.run_dir}: no results/ folder here; pass the run directory "
                      f"(<storage>/<sweep name>) of a launch[/red]")
        return EXIT_CONFIG
    report.print_summary(report.summarize(store.read_results(results), domain=args.domain), console)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raysweep",
        description="Rank pretraining data recipes with small proxy runs, checked against tuned target runs, "
                    "on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    launch = commands.add_parser(
        "launch", help="run a sweep (trains only what is not stored yet), then print the summary",
        description="Build each recipe's shards, run the proxy and target trials that are not stored yet on "
                    "Ray Tune, then print the ranking and how far the proxies can be trusted.")
    launch.add_argument("cluster", help="cluster profile, e.g. cluster/local.yaml")
    launch.add_argument("--sweep", help="sweep file to run instead of the profile's `sweep:`")
    launch.set_defaults(handler=_launch)
    report = commands.add_parser("report", help="print the summary of a run from its stored results",
                                 description="Print the summary of a run from its stored results table alone.")
    report.add_argument("run_dir", help="run directory: <storage>/<sweep name>, e.g. runs/demo")
    report.add_argument("--domain", default="all", help="validation domain to rank by (default: all, the mean)")
    report.set_defaults(handler=_report)
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


if __name__ == "__main__":
    sys.exit(main())
