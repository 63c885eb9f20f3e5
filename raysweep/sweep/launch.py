"""``launch``: train what is not stored yet, in one Tune run or in early-stopping rounds, and write ``plan.json``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import ray
from rich.console import Console

from raysweep import store
from raysweep.config import ClusterConfig, RandomFeatureSweep, RayConfig, SweepConfig
from raysweep.config.checks import is_loopback
from raysweep.errors import ClusterError
from raysweep.families import TrialFamily, trial_family
from raysweep.net import free_port
from raysweep.sweep.early_stop import losses_at, saved_flops, settle_check, store_stopped
from raysweep.sweep.search import RecipeTPESearcher, TrialEntry
from raysweep.sweep.trainable import TrialRun, run_trials
from raysweep.trials import AnySpec, Role


@dataclass(frozen=True)
class LaunchOutcome:
    run_dir: Path
    num_planned: int
    num_trained: int
    errors: list[str]
    """One line per trial that raised after its retries: its name, cause and traceback file."""
    corrupt: list[str]
    """One line per stored result file found unreadable: moved aside, its trial trained again."""
    outages: list[str]
    """One line per trial record whose write waited for the storage to come back (or gave up waiting)."""


def start_ray(config: RayConfig, console: Console) -> None:
    """Embedded Ray with explicit resources, or join an existing cluster; print where its dashboard is.

    A Ray the caller started already (a notebook's ``ray.init()``) is used as it is, Ray Data made as quiet."""
    ray.data.DataContext.get_current().enable_progress_bars = False  # the launch shows its own progress
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # a failed build is reported by raysweep itself
    if ray.is_initialized():
        return
    if config.address is None:
        context = _start_embedded_ray(config, console)
    else:
        context = ray.init(address=config.address, namespace=NAMESPACE, logging_level="warning",
                           log_to_driver=False)
    if config.address is None and not is_loopback(config.dashboard_host):
        console.print(f"[bold red]The Ray dashboard listens on {config.dashboard_host}: whoever reaches it can run "
                      "code on this machine (CVE-2023-48022). Prefer 127.0.0.1 and an SSH tunnel.[/bold red]")
    if context.dashboard_url:
        console.print(f"Ray dashboard: [bold]http://{context.dashboard_url}[/bold]  "
                      "(token authentication: `ray get-auth-token` prints the token it asks for)")


NAMESPACE = "raysweep"
"""The Ray namespace of raysweep's jobs and actors (the dashboard's Jobs and Actors views filter by it)."""
PORT_TRIES = 3
"""A free port is a probe, not a reservation: another process may bind it before Ray does, so Ray is started
again on a fresh one this often."""


def _start_embedded_ray(config: RayConfig, console: Console):
    """A new Ray of our own ("local": even when `ray start` left a cluster running on this machine), its dashboard
    on ``dashboard_port`` or, when that is taken, on a port the system picks."""
    wanted = config.dashboard_port
    for _ in range(PORT_TRIES):
        port = free_port(config.dashboard_host, wanted)
        try:
            context = ray.init(address="local", namespace=NAMESPACE, num_cpus=config.num_cpus,
                               num_gpus=config.num_gpus, include_dashboard=True, dashboard_host=config.dashboard_host,
                               dashboard_port=port, logging_level="warning", log_to_driver=False)
        except ValueError as err:  # Ray's own check found the port bound since the probe: nothing started yet
            if "already occupied" not in str(err):
                raise
            wanted = 0
            continue
        if port != config.dashboard_port:
            console.print(f"[yellow]port {config.dashboard_port} is taken (another Ray on this machine?); the "
                          f"dashboard uses {port}[/yellow]")
        return context
    raise ClusterError(f"ray.dashboard_port: {PORT_TRIES} free ports in a row were taken before Ray could bind "
                       "them; is something on this machine binding every free port?")


def launch(cluster: ClusterConfig, sweep: SweepConfig | RandomFeatureSweep, console: Console,
           target_recipes: list[str] | None = None) -> LaunchOutcome:
    """Train what is not stored yet; ``target_recipes`` limits the targets to those recipes (select mode)."""
    run = store.RunDir.of(cluster.storage, sweep.name)
    family = trial_family(sweep, cluster)  # a sweep it cannot plan is refused before anything is written
    trials = [t for t in family.plan()
              if t.role == Role.PROXY or target_recipes is None or t.recipe in target_recipes]
    try:
        run.create()
    except OSError as err:
        raise ClusterError(f"storage: cannot create the run directory {run.path} ({err.strerror}); point `storage:` "
                           "in the cluster profile at a folder this user can write") from None
    store.write_run(run, sweep)  # its id and resolved sweep go into every result file written from now on
    done, corrupt = store.finished_keys(run)
    for line in corrupt:
        console.print(f"[yellow]corrupt result:[/yellow] {line}")
    entry = TrialEntry(family.resources(Role.PROXY), family.resources(Role.TARGET))
    searcher, sizing = None, []
    shortlist = [r for r in family.recipes if target_recipes is None or r in target_recipes]
    if family.tpe and shortlist:
        search, grid, make_target = family.tpe
        searcher = RecipeTPESearcher(search, grid, shortlist, make_target, run,
                                     [t for t in trials if t.key not in done], entry)
        sizing = family.largest_targets(shortlist)
    # a report or status of a partial run says what is missing
    planned_keys = _write_plan(run, cluster, family, trials, searcher)
    todo = [t for t in trials if t.key not in done]
    num_planned = len(trials) + (searcher.num_trials if searcher else 0)
    stored = sum(len(done.intersection(keys)) for keys in planned_keys.values())
    console.print(f"[bold]{sweep.name}[/bold]: {num_planned} trials planned, {stored} already stored in "
                  f"{run.results}")
    if not todo and (searcher is None or searcher.finished):
        return LaunchOutcome(run.path, num_planned, 0, [], corrupt, [])
    start_ray(cluster.ray, console)
    _check_resources(cluster, family, {t.role for t in todo} | ({Role.TARGET} if searcher else set()))
    with console.status("Building recipe shards with Ray Data (cached: a relaunch reuses them)"):
        data = family.prepare(todo + sizing, store.shards_root(cluster.storage))
    trial_run = TrialRun(cluster, family.train, entry, data, run, console)
    if family.early_stop and any(t.role == Role.PROXY for t in todo):
        errors = _run_in_rounds(trial_run, family, trials, todo, searcher)
    else:
        errors = run_trials(trial_run, todo, searcher=searcher, asha=family.asha,
                            num_searched=num_planned - stored - len(todo))
    if searcher:
        _write_plan(run, cluster, family, trials, searcher)  # now with the targets the search proposed
    outages = _outage_lines(run)
    for line in outages:
        console.print(f"[yellow]storage unavailable:[/yellow] {line}")
    return LaunchOutcome(run.path, num_planned, len(store.finished_keys(run)[0] - done), errors, corrupt, outages)


def _outage_lines(run: store.RunDir) -> list[str]:
    """What the trials' writes met while the storage was away: each waited and was written (nothing lost, nothing
    twice), or gave up after ``store.STORAGE_PATIENCE_S`` and its trial is among the failed."""
    lines = []
    for note in store.take_outages(run):
        what = f"{Path(note['file']).name} (node {note['node']}: {note['cause']})"
        lines.append(f"{what} was written after waiting {note['waited_s']:.1f} s" if note["waited_s"] is not None
                     else f"{what} could not be written; its trial failed, a relaunch trains it again")
    return lines


def _check_resources(cluster: ClusterConfig, family: TrialFamily, roles: set[Role]) -> None:
    """Raise ``ClusterError`` when no node of the running cluster could ever hold one trial of a role: Tune would
    otherwise wait at 0 of N trials forever."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    most = {kind: max((node.get(kind, 0.0) for node in nodes), default=0.0) for kind in ("CPU", "GPU")}
    sized_by = "ray.num_cpus and ray.num_gpus size the embedded Ray" if cluster.ray.address is None else \
        "ray.cluster_resources() lists what the cluster has"
    problems = []
    for role in sorted(roles):
        cpu, gpu = family.resources(role)
        if not any(node.get("CPU", 0.0) >= cpu and node.get("GPU", 0.0) >= gpu for node in nodes):
            problems.append(f"resources.{role}: one {role} trial asks for {cpu:g} CPU(s) and {gpu:g} GPU(s) on one "
                            f"node, but the largest node has {most['CPU']:g} CPU(s) and {most['GPU']:g} GPU(s) "
                            f"({sized_by}); ask for less in the cluster profile, or use a cluster that has them")
    if problems:
        raise ClusterError("\n".join(problems))


def _write_plan(run: store.RunDir, cluster: ClusterConfig, family: TrialFamily, trials: list[AnySpec],
                searcher: RecipeTPESearcher | None) -> dict[str, list[str]]:
    """Write ``plan.json``; the trial keys it plans per role (a search's targets: those proposed so far)."""
    keys = {role: [t.key for t in trials if t.role == role] for role in Role}
    if searcher:
        keys[Role.TARGET] = searcher.target_keys()
    store.write_plan(run, store.Plan(
        family=family.family.name, recipes=family.recipes, trial_keys=keys,
        num_planned={role: searcher.num_trials if searcher and role == Role.TARGET else len(role_keys)
                     for role, role_keys in keys.items()},
        standard_lr=family.standard_lr, precision_floor_lr=family.precision_floor_lr,
        gpus_per_trial={role: family.resources(role)[1] for role in Role},
        max_concurrent_trials=cluster.max_concurrent_trials))
    return keys


def _run_in_rounds(run: TrialRun, family: TrialFamily, trials: list[AnySpec], todo: list[AnySpec],
                   searcher: RecipeTPESearcher | None) -> list[str]:
    """Proxies train one evaluation interval per round (targets all in the first); after each round, every proxy
    setting whose ranking has settled stops there, its runs stored as "stopped" (``raysweep.sweep.early_stop``)."""
    rule, run_dir, console = family.early_stop, run.run_dir, run.console
    proxies = [t for t in trials if t.role == Role.PROXY]
    num_rounds = max(t.num_evals for t in proxies)
    recipes, seeds = family.recipes, list(dict.fromkeys(t.seed for t in proxies))
    settings: dict[tuple[str, float], list[list[AnySpec]]] = {}
    for t in proxies:
        grid = settings.setdefault((t.model, t.lr), [[None] * len(seeds) for _ in recipes])
        grid[recipes.index(t.recipe)][seeds.index(t.seed)] = t
    waiting = {t.key for t in todo if t.role == Role.PROXY}
    errors: list[str] = []
    saved = 0.0
    for round_index in range(1, num_rounds + 1):
        batch = [t for t in todo if t.key in waiting or (round_index == 1 and t.role == Role.TARGET)]
        last = round_index == num_rounds
        first = round_index == 1
        errors += run_trials(run, batch, stop_after_evals=None if last else round_index,
                             label=f"round {round_index}/{num_rounds}", searcher=searcher if first else None,
                             asha=family.asha if first else None,
                             num_searched=searcher.num_trials if searcher and first else 0)
        waiting = {t.key for t in batch if t.key in waiting and store.read_partial(run_dir, t)}  # paused
        for (model, lr), grid in settings.items():
            pending = [t for row in grid for t in row if t.key in waiting]
            if not pending or round_index < 2:
                continue
            curves = [[_loss_curve(run_dir, t) for t in row] for row in grid]
            previous, current = losses_at(curves, round_index - 2), losses_at(curves, round_index - 1)
            if previous is None or current is None:
                continue
            check = settle_check(model, lr, round_index, previous, current, rule)
            point, low, high = check.spearman
            console.print(f"  {model} @ lr {lr:g}: ranking at checkpoint {round_index} vs {round_index - 1}: "
                          f"Spearman {point:.2f} [{low:.2f}, {high:.2f}]"
                          + (f" ≥ {rule.min_spearman:g}: settled, {len(pending)} run(s) stop here" if check.settled
                             else ""))
            if check.settled:
                for spec in pending:
                    saved += store_stopped(run_dir, spec)
                    waiting.discard(spec.key)
        if not waiting:
            break
    planned = sum(saved_flops(t.num_params, t.num_steps, t.batch_size * t.seq_len)
                  for t in todo if t.role == Role.PROXY)
    if saved:
        console.print(f"Early stop saved {saved:.3g} FLOPs: {saved / planned:.0%} of the proxy compute planned "
                      "for this launch.")
    return errors


def _loss_curve(run: store.RunDir, spec: AnySpec) -> list[float]:
    """The "all" loss at each evaluation a proxy has reached: stored whole, paused, or nothing yet."""
    partial = store.read_partial(run, spec)
    if partial:
        return [e.losses["all"] for e in partial.evaluations]
    return store.read_trial_losses(run, spec.key)
