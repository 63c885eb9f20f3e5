"""Time the report on a synthetic results table shaped like the paper's sweep.

Run by hand: ``python tests/bench/bench_report.py``. 23 recipes; proxies: 3 models × 8 learning rates ×
3 seeds; targets: 72 configurations (6 lrs × 4 batch sizes × 3 weight decays) × 3 seeds; every trial
evaluated at 5 checkpoints on 6 validation domains ("all" and 5 others): about 200,000 rows. Losses are
a recipe quality plus a learning-rate bowl plus seed noise, so every statistic has something to find.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pyarrow as pa

from raysweep.report.figures import draw_figures
from raysweep.report.html import html_page
from raysweep.report.render import tables
from raysweep.report.verdict import verdict
from raysweep.report import summarize

N_RECIPES, SEEDS, STEPS = 23, (0, 1, 2), (200, 400, 600, 800, 1000)
DOMAINS = ("all", "web", "code", "math", "books", "wiki")
PROXY_MODELS = {"gpt2-small": 124_000_000, "pythia-70m": 70_000_000, "opt-125m": 125_000_000}
PROXY_LRS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
TARGET_LRS, TARGET_BATCHES, TARGET_WDS = (8e-5, 1e-4, 3e-4, 5e-4, 7e-4, 1e-3), (128, 256, 512, 1024), (0.001, 0.01, 0.1)
BYTES_PER_TOKEN = 4.2


def paper_shaped_table(seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    quality = rng.normal(0, 0.05, N_RECIPES)
    best_log_lr = np.log10(3e-4) + rng.normal(0, 0.3, N_RECIPES)  # each recipe's own optimum
    trials = [("proxy", m, lr, 8, 0.0) for m in PROXY_MODELS for lr in PROXY_LRS]
    trials += [("target", "gpt2-large", lr, bs, wd) for lr, bs, wd in
               itertools.product(TARGET_LRS, TARGET_BATCHES, TARGET_WDS)]
    columns: dict[str, list] = {name: [] for name in (
        "trial_key", "role", "recipe", "model", "num_params", "lr", "batch_size", "weight_decay", "seed", "step",
        "tokens", "domain", "loss", "bits_per_byte", "status", "wall_s")}
    for index, ((role, model, lr, batch, wd), recipe, seed_) in enumerate(
            itertools.product(trials, range(N_RECIPES), SEEDS)):
        num_params = PROXY_MODELS.get(model, 774_000_000)
        noise = rng.normal(0, 0.01 if role == "proxy" else 0.005)
        for step, domain in itertools.product(STEPS, DOMAINS):
            progress = 3.0 / (1 + step / 200)
            if role == "proxy":
                loss = 3.5 + 0.3 * abs(np.log10(lr) + 4.5) ** 1.5 + quality[recipe] * (1 + 2 * (lr > 1e-4))
            else:
                loss = 2.6 + 0.1 * (np.log10(lr) - best_log_lr[recipe]) ** 2 + quality[recipe] + 0.01 * wd
            loss += progress + noise + 0.05 * DOMAINS.index(domain)
            for name, value in zip(columns, (
                    f"t{index}", role, f"recipe_{recipe:02d}", model, num_params, lr, batch, wd, seed_, step,
                    step * batch * 1024, domain, loss, loss / (math.log(2) * BYTES_PER_TOKEN), "ok", 60.0)):
                columns[name].append(value)
    return pa.table(columns)


def main() -> None:
    start = time.perf_counter()
    table = paper_shaped_table()
    print(f"built {table.num_rows:,} rows in {time.perf_counter() - start:.1f} s")
    wall, cpu = time.perf_counter(), time.process_time()
    report = summarize(table, standard_lr=3e-3)
    print(f"summarize: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")
    wall, cpu = time.perf_counter(), time.process_time()
    tables(report), verdict(report)
    images = draw_figures(report)
    html_page(report, images)
    print(f"tables, figures, HTML: {time.perf_counter() - wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")
    print(verdict(report))


if __name__ == "__main__":
    main()
