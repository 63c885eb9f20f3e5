"""Hand-made results tables in the store's schema, for the report's and the figures' tests."""

from __future__ import annotations

import math

import pyarrow as pa

from raysweep.trials import RANDOM_FEATURES

FIELDS = [("trial_key", pa.string()), ("role", pa.string()), ("recipe", pa.string()), ("model", pa.string()),
          ("num_params", pa.int64()), ("lr", pa.float64()), ("batch_size", pa.int64()),
          ("weight_decay", pa.float64()), ("seed", pa.int64()), ("step", pa.int64()), ("tokens", pa.int64()),
          ("domain", pa.string()), ("loss", pa.float64()), ("bits_per_byte", pa.float64()), ("status", pa.string()),
          ("wall_s", pa.float64()), ("alignment", pa.float64()), ("metric", pa.string()), ("value", pa.float64())]
BITS_PER_NAT = 0.4  # as if 1 / (ln 2 · 3.6 bytes per token)
OPTIONAL = ("bits_per_byte", "alignment", "metric", "value")


def rows(role, recipe, lr, seed, loss, *, model=None, status="ok", batch_size=8, weight_decay=0.0, num_params=10,
         domains=None, steps=(1, 2), wall_s=1.0, alignment=None):
    """One trial's rows. ``loss`` is the final loss, or {step: loss}; earlier steps default to loss + 10.

    ``domains`` maps extra validation domains to an offset added to the loss (every trial also has "all").
    ``alignment`` is the final accumulated gradient alignment, written on every domain row (half of it at earlier
    steps); None leaves it unmeasured.
    """
    model = model or ("proxy-m" if role == "proxy" else "target-m")
    by_step = loss if isinstance(loss, dict) else {step: loss + (0 if step == steps[-1] else 10) for step in steps}
    key = f"{role}-{recipe}-{model}-{lr}-{batch_size}-{weight_decay}-{seed}"
    return [{"trial_key": key, "role": role, "recipe": recipe, "model": model, "num_params": num_params, "lr": lr,
             "batch_size": batch_size, "weight_decay": weight_decay, "seed": seed, "step": step,
             "tokens": step * batch_size * 4, "domain": domain, "loss": value + offset,
             "bits_per_byte": (value + offset) * BITS_PER_NAT, "status": status, "wall_s": wall_s,
             "alignment": None if alignment is None else alignment * (1 if step == steps[-1] else 0.5)}
            for step, value in by_step.items() for domain, offset in {"all": 0.0, **(domains or {})}.items()]


def table(*groups, bits=False, alignment=False, tasks=False):
    """The rows as a results table; ``bits=False``, ``alignment=False`` and ``tasks=False`` (no ``metric`` and
    ``value``) leave those columns out, as older tables do."""
    kept = [name for name, on in (("bits_per_byte", bits), ("alignment", alignment), ("metric", tasks),
                                  ("value", tasks)) if on]
    fields = [f for f in FIELDS if f[0] not in OPTIONAL or f[0] in kept]
    records = [{k: v for k, v in row.items() if k not in OPTIONAL or k in kept} for group in groups for row in group]
    return pa.Table.from_pylist(records, schema=pa.schema(fields))


def sweep(target_losses, proxy_losses, lrs=(1e-5,), seeds=(0, 1), jitter=0.01, **kwargs):
    """Targets at one configuration and proxies at each lr, seed s shifted by ``jitter · s``."""
    groups = [rows("target", r, 1e-3, s, loss + jitter * s, **kwargs)
              for r, loss in target_losses.items() for s in seeds]
    groups += [rows("proxy", r, lr, s, loss + jitter * s, **kwargs)
               for lr in lrs for r, loss in proxy_losses.items() for s in seeds]
    return groups


def alignment_sweep(alignments, lr=1e-4):
    """Targets a < b < c < d by loss; proxies whose *loss* orders them backwards, with the given final alignments
    (recipe → alignment, or a list per seed; -inf marks a diverged seed)."""
    groups = [rows("target", r, 1e-3, s, 1.0 + i + 0.01 * s) for i, r in enumerate("abcd") for s in (0, 1)]
    for i, (recipe, values) in enumerate(alignments.items()):
        for seed, value in enumerate(values if isinstance(values, list) else [values, values + 0.01]):
            diverged = value == -math.inf
            groups.append(rows("proxy", recipe, lr, seed, math.inf if diverged else 5.0 - i, alignment=value,
                               status="diverged" if diverged else "ok"))
    return groups


def rf_groups(proxies, optimum=None):
    """Datasets d1 … d4 whose infinite-width optimum is 0.1 … 0.4, one kernel "target" row each, and proxies
    rf-m64: lr → per-dataset final MSE (seed 1 adds 0.01; inf diverges seed 0)."""
    optimum = optimum or {"d1": 0.1, "d2": 0.2, "d3": 0.3, "d4": 0.4}
    groups = [rows("target", d, 0.0, 0, loss, model=RANDOM_FEATURES.target_model, batch_size=0, steps=(1,))
              for d, loss in optimum.items()]
    for lr, losses in proxies.items():
        for d, loss in zip(optimum, losses):
            for seed in (0, 1):
                diverged = math.isinf(loss) and seed == 0
                groups.append(rows("proxy", d, lr, seed, math.inf if diverged else (0.9 if math.isinf(loss) else loss)
                                   + 0.01 * seed, model="rf-m64", status="diverged" if diverged else "ok"))
    return groups


RF_WINDOW = {0.01: [0.9, 0.8, 0.7, 0.6],     # under-trained: ranks by how fast each dataset learns
             1.0: [0.15, 0.25, 0.35, 0.45],  # the infinite-width order
             10.0: [math.inf, math.inf, 0.5, 0.4]}  # d1 and d2 diverge on seed 0
