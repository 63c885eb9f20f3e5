"""Rules that span fields of a sweep file (one field's own rules sit in the schema's field metadata)."""

from __future__ import annotations

import math

from raysweep.config.presets import REPETITION_PRESETS
from raysweep.config.rules import safe_name
from raysweep.config.schema import ClusterConfig, FilteredSource, Source, SweepConfig


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def check_cluster(cluster: ClusterConfig) -> list[tuple[str, str]]:
    """A dashboard reachable from the network runs anyone's code (CVE-2023-48022): only with its acknowledgement."""
    ray = cluster.ray
    if is_loopback(ray.dashboard_host) or ray.expose_dashboard:
        return []
    return [("ray.dashboard_host", f"{ray.dashboard_host!r} exposes the Ray dashboard, through which whoever reaches "
                                   f"port {ray.dashboard_port} can run code on this machine (CVE-2023-48022); keep "
                                   "127.0.0.1 and reach it with `ssh -L 8265:127.0.0.1:8265 HOST`, or set "
                                   "ray.expose_dashboard: true to accept the risk")]


def check_sweep(sweep: SweepConfig, model_names: set[str]) -> list[tuple[str, str]]:
    """Rules that span fields: references resolve, names are unique, sizes are coherent."""
    problems: list[tuple[str, str]] = []
    known_models = model_names | set(sweep.models)
    known = ", ".join(sorted(known_models))
    seen: set[str] = set()
    for i, recipe in enumerate(sweep.recipes):
        if recipe.name in seen:
            problems.append((f"recipes[{i}].name", f"duplicate recipe name {recipe.name!r}"))
        seen.add(recipe.name)
        for j, component in enumerate(recipe.mix):
            if component.source not in sweep.sources:
                problems.append((f"recipes[{i}].mix[{j}].source",
                                 f"unknown source {component.source!r} (defined: {', '.join(sweep.sources)})"))
    problems += _check_sources(sweep)
    problems += [(f"{where}.{name}", message) for where, names in (("sources", sweep.sources),
                                                                   ("validation.domains", sweep.validation.domains))
                 for name in names if (message := safe_name(name))]
    if sweep.proxy.standard_lr is not None and sweep.proxy.standard_lr not in sweep.proxy.lrs:
        problems.append(("proxy.standard_lr", f"must be one of proxy.lrs (got {sweep.proxy.standard_lr:g})"))
    problems += _check_validation(sweep)
    problems += _check_tasks(sweep)
    if (sweep.tokenizer.type == "hf") != (sweep.tokenizer.name is not None):
        problems.append(("tokenizer.name", "give a name (hub name or local folder) for type hf, and only then"))
    for i, name in enumerate(sweep.proxy.models):
        if name not in known_models:
            problems.append((f"proxy.models[{i}]", f"unknown model {name!r} (known: {known})"))
    if sweep.target.model not in known_models:
        problems.append(("target.model", f"unknown model {sweep.target.model!r} (known: {known})"))
    if sweep.target.asha and sweep.target.asha.grace_evals >= sweep.training.num_evals:
        problems.append(("target.asha.grace_evals", f"must be < training.num_evals ({sweep.training.num_evals}): "
                                                    "ASHA stops runs only before their last evaluation"))
    if sweep.select and sweep.select.top_k > len(sweep.recipes):
        problems.append(("select.top_k", f"must be <= the number of recipes ({len(sweep.recipes)})"))
    if sweep.select and sweep.select.model is not None and sweep.select.model not in sweep.proxy.models:
        problems.append(("select.model", f"must be one of proxy.models (got {sweep.select.model!r})"))
    for name, spec in sweep.models.items():
        if spec.d_model % spec.n_head:
            problems.append((f"models.{name}.n_head", f"must divide d_model={spec.d_model} (got {spec.n_head})"))
    schedule = sweep.training.schedule
    if schedule.warmup_steps is None and schedule.warmup_frac + schedule.decay_frac > 1:
        problems.append(("training.schedule", "warmup_frac + decay_frac must be <= 1"))
    return problems


def _check_validation(sweep: SweepConfig) -> list[tuple[str, str]]:
    """`all` is not a domain name; token shares size every domain and only for the token-weighted aggregate."""
    validation, problems = sweep.validation, []
    if "all" in validation.domains:
        problems.append(("validation.domains.all", "`all` is reserved for the aggregate over domains; rename it"))
    if not validation.token_shares:
        return problems
    if validation.aggregate != "token_weighted":
        problems.append(("validation.token_shares", "sizes the domains for `aggregate: token_weighted`; give that "
                                                    "too, or drop the shares (each domain then gets num_tokens)"))
    for domain, share in validation.token_shares.items():
        if domain not in validation.domains:
            problems.append((f"validation.token_shares.{domain}",
                             f"not a validation domain (domains: {', '.join(validation.domains)})"))
        elif not (share > 0 and math.isfinite(share)):
            problems.append((f"validation.token_shares.{domain}", f"must be > 0 (got {share!r})"))
    missing = [domain for domain in validation.domains if domain not in validation.token_shares]
    if missing:
        problems.append(("validation.token_shares", f"give every domain a share (missing: {', '.join(missing)})"))
    return problems


def _check_tasks(sweep: SweepConfig) -> list[tuple[str, str]]:
    """Task names are the report's domains: unique, apart from the validation domains and their "all"."""
    problems, seen = [], set()
    for i, task in enumerate(sweep.tasks):
        if task.name in seen or task.name == "all" or task.name in sweep.validation.domains:
            problems.append((f"tasks[{i}].name", f"{task.name!r} is taken (task names must differ from each other, "
                                                 "from the validation domains and from \"all\")"))
        seen.add(task.name)
        if task.preset == "continuation" and task.path is not None:
            problems.append((f"tasks[{i}].path", "continuation is made from the validation text: give no path"))
        if task.preset is None and task.path is None:
            problems.append((f"tasks[{i}].path", "give the task's local file (JSON lines, or a harness task YAML), "
                                                 "or a preset"))
    return problems


def _check_sources(sweep: SweepConfig) -> list[tuple[str, str]]:
    """Filtered sources name existing sources, without cycles; filter presets and thresholds exist."""
    problems: list[tuple[str, str]] = []
    named = {**sweep.sources, **{f"validation.domains.{k}": v for k, v in sweep.validation.domains.items()}}
    for name, source in named.items():
        if not isinstance(source, FilteredSource):
            continue
        where = name if name.startswith("validation.") else f"sources.{name}"
        if source.source not in sweep.sources:
            problems.append((f"{where}.source", f"must name a source in `sources` (got {source.source!r})"))
        perplexity = source.perplexity
        if perplexity and perplexity.kenlm_model is None and perplexity.reference not in sweep.sources:
            problems.append((f"{where}.perplexity.reference", f"unknown source {perplexity.reference!r}"))
        if _reaches(sweep.sources, source, name):
            problems.append((where, "depends on itself (through `source:` or `perplexity.reference:`)"))
        if source.repetition:
            if source.repetition.preset not in REPETITION_PRESETS:
                problems.append((f"{where}.repetition.preset", f"must be one of {', '.join(REPETITION_PRESETS)} "
                                                               f"(got {source.repetition.preset!r})"))
            measurements = REPETITION_PRESETS["default"]
            for key, value in source.repetition.thresholds.items():
                if key not in measurements:
                    problems.append((f"{where}.repetition.thresholds.{key}",
                                     f"unknown measurement (expected one of: {', '.join(measurements)})"))
                elif not 0 <= value <= 1:
                    problems.append((f"{where}.repetition.thresholds.{key}", f"must be within [0, 1] (got {value!r})"))
    return problems


def _reaches(sources: dict[str, Source], start: Source, name: str) -> bool:
    """Whether the sources `start` is built from (its `source`, its perplexity reference, theirs...) include `name`."""
    todo, seen = [start], set()
    while todo:
        current = todo.pop()
        if not isinstance(current, FilteredSource):
            continue
        upstream = [current.source]
        if current.perplexity and current.perplexity.kenlm_model is None:
            upstream.append(current.perplexity.reference)
        for other in upstream:
            if other == name:
                return True
            if other in sources and other not in seen:
                seen.add(other)
                todo.append(sources[other])
    return False
