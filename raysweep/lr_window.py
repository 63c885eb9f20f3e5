"""`raysweep estimate-lr`: the tiny-learning-rate window of a sweep's proxy, measured on its own recipes.

For every recipe, one Ray task warms a proxy up from the shared initialisation at the standard learning rate
(the paper uses 500 steps), then measures at that point, with the tools of ``raysweep.tiny_lr``: λ_max of the
validation-loss Hessian (power iteration), the recipe's gradient alignment with the validation loss, G² and
the per-sequence gradient noise σ_g² over ~20 minibatches. Eq. 58 turns them into an upper bound per recipe;
the float-precision floor of the weights gives the lower end::

    window = estimate_window(cluster, sweep, model="opt-nano", warmup_steps=500, num_batches=20, console=console)
    window.floor_lr, window.upper_lr          # the proxy learning rates worth sweeping lie in between

The training-horizon floor (an lr too small for the step budget under-trains; Theorem 2's c0/T) is not
estimated here: the proxy sweep's report checks it from the proxies themselves (``raysweep.report.lr_choice``).
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import ray
import torch
import yaml
from rich.table import Table

from raysweep import store
from raysweep.config import ClusterConfig, SweepConfig
from raysweep.files import write_atomically
from raysweep.families.language_model import build_data, plan_trials
from raysweep.recipes.sequences import SequenceReader
from raysweep.sweep import start_ray
from raysweep.tiny_lr import (GradientStatistics, TinyLRReport, causal_lm_loss, gradient_statistics,
                              hessian_max_eigenvalue, recommended_lr_range, tiny_lr_reports, trainable)
from raysweep.train import trained_model
from raysweep.trials import TrialData, TrialSpec

VALIDATION_SEQUENCES_PER_DOMAIN = 16
"""Sequences per validation domain in the fixed batch that stands in for the full validation gradient."""


@dataclass(frozen=True)
class LRWindow:
    model: str
    warmup_lr: float
    warmup_steps: int
    reports: list[TinyLRReport]
    floor_lr: float
    upper_lr: float
    param_dtype: str
    """The weights' dtype, which sets the precision floor."""


def recipe_statistics(spec: TrialSpec, data: TrialData, num_batches: int) -> tuple[float, GradientStatistics]:
    """Warm `spec`'s model up for `spec.num_steps` steps at `spec.lr`, then (λ_max, gradient statistics) there,
    on the `num_batches` minibatches that follow the warm-up's sequences.

    The warm-up is a trial's own loop (``train.trained_model``: dtype, autocast, data order, clipping), with the
    schedule's warmup and then a hold at the standard lr, no decay before measuring. Every recipe starts from the
    same initialisation (the sweep's first seed) and is measured on the same validation batch.
    """
    warm = replace(spec, schedule=replace(spec.schedule, decay_frac=0.0), num_evals=1)
    _, model = trained_model(warm, data)
    device = next(model.parameters()).device
    train = SequenceReader(data.train_dir, spec.num_sequences + num_batches * spec.batch_size)
    following = train.take(np.arange(spec.num_sequences, len(train)))
    batches = torch.from_numpy(following.astype(np.int64)).to(device).split(spec.batch_size)
    counts = {domain: min(VALIDATION_SEQUENCES_PER_DOMAIN, count)
              for domain, count in data.validation_sequences.items()}
    validation = torch.cat([torch.from_numpy(SequenceReader(path, counts[domain]).read_all().astype(np.int64))
                            for domain, path in data.validation_dirs.items()]).to(device)
    statistics = gradient_statistics(model, batches, validation)
    lambda_max = hessian_max_eigenvalue(lambda: causal_lm_loss(model, validation), trainable(model))
    return lambda_max, statistics


def estimate_window(cluster: ClusterConfig, sweep: SweepConfig, model: str, warmup_steps: int, num_batches: int,
                    console) -> LRWindow:
    """One Ray task per recipe (proxy resources), then Eq. 58 over all of them and the weights' precision floor."""
    warmup_lr = sweep.proxy.standard_lr or max(sweep.proxy.lrs)
    proxies = {t.recipe: t for t in plan_trials(sweep)
               if t.role == "proxy" and t.model == model and t.lr == warmup_lr and t.seed == sweep.proxy.seeds[0]}
    specs = {recipe: replace(spec, num_steps=warmup_steps) for recipe, spec in proxies.items()}
    start_ray(cluster.ray, console)
    with console.status("Building recipe shards with Ray Data (cached)"):
        data = build_data(sweep, [replace(s, num_steps=warmup_steps + num_batches) for s in specs.values()],
                          store.shards_root(cluster.storage))
    resources = cluster.resources.proxy
    task = ray.remote(recipe_statistics).options(num_cpus=resources.cpu, num_gpus=resources.gpu)
    with console.status(f"Warm-up ({warmup_steps} steps at lr {warmup_lr:g}) and curvature, one task per recipe"):
        results = dict(zip(specs, ray.get([task.remote(spec, data[recipe], num_batches)
                                           for recipe, spec in specs.items()])))
    reports = tiny_lr_reports({r: lam for r, (lam, _) in results.items()}, {r: s for r, (_, s) in results.items()})
    floor_lr, upper_lr = recommended_lr_range(reports, getattr(torch, sweep.training.param_dtype))
    return LRWindow(model, warmup_lr, warmup_steps, reports, floor_lr, upper_lr, sweep.training.param_dtype)


def print_window(window: LRWindow, console) -> None:
    table = Table(title=f"Eq. 58 per recipe: {window.model} after {window.warmup_steps} steps at lr "
                        f"{window.warmup_lr:g}; Δa = {window.reports[0].alignment_gap:.3g} (closest pair)")
    for name in ("recipe", "λ_max", "alignment a_i", "G²", "σ_g²", "B", "η_tiny ≤"):
        table.add_column(name, justify="left" if name == "recipe" else "right")
    for r in sorted(window.reports, key=lambda r: r.eta_upper):
        table.add_row(r.recipe, f"{r.lambda_max:.3g}", f"{r.alignment:.3g}", f"{r.grad_sq_max:.3g}",
                      f"{r.grad_noise_trace:.3g}", str(r.batch_size), f"{r.eta_upper:.3g}")
    console.print(table)
    if window.floor_lr < window.upper_lr:
        console.print(f"Recommended proxy learning rates: between {window.floor_lr:.2g} ({window.param_dtype} "
                      "precision floor) and "
                      f"{window.upper_lr:.2g} (Eq. 58 with the largest λ_max, G² and σ_g²/B over recipes). Below that range updates "
                      "round away; above it curvature can reorder recipes. Too small for the step budget also "
                      "under-trains: the proxy sweep's report shows where agreement drops.")
    else:
        console.print(f"[yellow]The window is empty: the Eq. 58 bound {window.upper_lr:.2g} is below the precision "
                      f"floor {window.floor_lr:.2g}; recipes this close cannot be separated by a tiny-lr proxy.")


def window_lrs(window: LRWindow, standard_lr: float, count: int = 4) -> list[float]:
    """`count` log-spaced rates over the two decades below the window's upper end, plus the standard lr.

    The upper end is min(Eq. 58 bound, standard lr / 10) (App. C: one to two orders of magnitude below the standard
    lr); two decades below it the step budget may under-train, so the grid brackets the window from both sides and
    the report's horizon check finds where it starts.
    """
    upper = min(window.upper_lr, standard_lr / 10)
    low = max(window.floor_lr, upper / 100)
    rates = np.geomspace(low, upper, count) if low < upper else np.array([])
    return sorted({float(f"{rate:.2g}") for rate in rates} | {standard_lr})


def write_proxy_lrs(sweep_path: Path, lrs: list[float], window: LRWindow) -> str:
    """Set the sweep file's ``proxy.lrs`` in place: only the characters of its value change, whatever the file's
    YAML style (a flow list on one line or several, a block list, ``proxy:`` in flow style), every other key and
    comment kept as written. Returns the change as a unified diff of the file's lines.

    Nothing is written (ValueError) when the file has no ``proxy.lrs`` list, or when the edited file would read
    differently anywhere but in ``proxy.lrs``."""
    from ruamel.yaml import YAML  # a round-trip parse: where each key and value is in the text

    path = Path(sweep_path)
    text = path.read_text()
    by_hand = f"set proxy.lrs to [{', '.join(f'{lr:g}' for lr in lrs)}] by hand"
    data = YAML().load(text)
    proxy = data.get("proxy") if isinstance(data, dict) else None
    if not isinstance(proxy, dict) or not isinstance(proxy.get("lrs"), list):
        raise ValueError(f"{path}: no `proxy.lrs` list to replace; {by_hand}")
    starts = [0, *itertools.accumulate(len(line) for line in text.splitlines(keepends=True))]
    key_line, key_column = proxy.lc.key("lrs")
    value_line, value_column = proxy.lc.value("lrs")
    values = f"[{', '.join(_yaml_float(lr) for lr in lrs)}]"
    begin = starts[value_line] + value_column
    if text.startswith("[", begin):  # a flow list, maybe over several lines
        end = _closing_bracket(text, begin) + 1
    else:  # a block list: the lines below the key indented deeper than it
        begin = text.index(":", starts[key_line] + key_column) + 1
        end = starts[value_line]
        for line_start, line in zip(starts[value_line:], text[end:].splitlines(keepends=True)):
            indent = len(line) - len(line.lstrip(" "))
            if line.strip() and indent <= key_column and not line.lstrip().startswith("-"):
                break
            end = line_start + len(line.rstrip("\n"))
        values = " " + values
    line_end = text.find("\n", end)
    rest = text[end:line_end if line_end >= 0 else len(text)]
    if not rest.strip():  # the value ends its line: say where it came from there
        values += f"  # estimate-lr: window {window.floor_lr:.2g} .. {window.upper_lr:.2g} ({window.model})"
    edited = text[:begin] + values + text[end:]
    before, after = yaml.safe_load(text), yaml.safe_load(edited)
    before["proxy"]["lrs"] = lrs
    if before != after:
        raise ValueError(f"{path}: replacing proxy.lrs in place would change more than it; {by_hand}")
    write_atomically(path, lambda staging: staging.write_text(edited))
    return "".join(difflib.unified_diff(text.splitlines(keepends=True), edited.splitlines(keepends=True),
                                        fromfile=str(path), tofile=str(path), n=0))


def _yaml_float(value: float) -> str:
    """Exact (``repr``), and read as a float by any YAML reader: ``2.0e-05``, not the ``2e-05`` YAML 1.1 reads as
    a string."""
    text = repr(float(value))
    mantissa, exponent, power = text.partition("e")
    return f"{mantissa}.0e{power}" if exponent and "." not in mantissa else text


def _closing_bracket(text: str, start: int) -> int:
    """The index of the ``]`` closing the flow list opened at `start` (numbers, no quoted brackets)."""
    depth = 0
    for index in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError("an unclosed flow list")


