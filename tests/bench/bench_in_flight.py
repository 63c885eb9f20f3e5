"""How many trials a finished launch kept in flight, from its results folder alone.

Run by hand after ``make demo``: ``python tests/bench/bench_in_flight.py [RUN_DIR]`` (default ``runs/demo``).
Each stored trial ran from (its file's modification time − its ``wall_s``) to that time: ``wall_s`` is the
trainer's own clock, so a worker's start-up and the store's write fall outside it, and the figures are a lower
bound on what was in flight. Printed: the share of the span from the first trial's start to the last one's end
during which 0, 1, 2, … trials ran, the longest stretch with fewer than 2, and the same per role.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def intervals(results: Path) -> list[tuple[float, float, str]]:
    """(start, end, role) of every stored trial."""
    spans = []
    for path in sorted(results.glob("trial-*.parquet")):
        table = pq.read_table(path, columns=["wall_s", "role"])
        end = path.stat().st_mtime
        spans.append((end - float(table.column("wall_s")[0].as_py()), end, str(table.column("role")[0].as_py())))
    return spans


def occupancy(spans: list[tuple[float, float, str]]) -> tuple[dict[int, float], float, float]:
    """Seconds with k trials running for each k, the span's length, and the longest stretch with fewer than 2."""
    events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    seconds: dict[int, float] = {}
    running, last, below_since, longest = 0, events[0][0], events[0][0], 0.0
    for t, change in events:
        seconds[running] = seconds.get(running, 0.0) + t - last
        running, last = running + change, t
        if running < 2 and below_since is None:
            below_since = t
        elif running >= 2 and below_since is not None:
            longest, below_since = max(longest, t - below_since), None
    return seconds, events[-1][0] - events[0][0], longest


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    spans = intervals(run / "results")
    if not spans:
        raise SystemExit(f"no stored trials under {run / 'results'}")
    for label, chosen in [("all trials", spans)] + [
            (f"{role} trials only", [s for s in spans if s[2] == role]) for role in sorted({s[2] for s in spans})]:
        seconds, span, longest = occupancy(chosen)
        shares = ", ".join(f"{k} running {100 * v / span:.1f}%" for k, v in sorted(seconds.items()))
        mean = sum(k * v for k, v in seconds.items()) / span
        print(f"{label}: {len(chosen)} trials over {span:.0f} s; {shares}; mean in flight {mean:.2f}; "
              f"longest stretch with fewer than 2: {longest:.0f} s")
    walls = np.array([e - s for s, e, _ in spans])
    print(f"trial wall time: median {np.median(walls):.1f} s, max {walls.max():.1f} s; summed trial time / span = "
          f"{walls.sum() / occupancy(spans)[1]:.2f} (2.00 = both cores always busy with trials)")


if __name__ == "__main__":
    main()
