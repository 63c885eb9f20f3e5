"""`raysweep estimate-lr` on the micro sweep: real Ray tasks, real warm-up, Eq. 58 per recipe."""

from __future__ import annotations

import contextlib
import io
import math

from raysweep.cli import main

from conftest import micro_sweep, write_yaml


def test_estimate_lr_prints_eq58_per_recipe_and_a_window_above_the_precision_floor(local_ray, tmp_path):
    sweep = write_yaml(tmp_path / "micro.yaml", micro_sweep())
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(tmp_path / "runs")})
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(["estimate-lr", str(cluster), "--warmup-steps", "20", "--batches", "4"])
    output = buffer.getvalue()
    assert status == 0, output
    rows = [line for line in output.splitlines() if line.startswith(("│ balanced", "│ low_quality"))]
    assert len(rows) == 2
    bounds = [float(row.split("│")[-2]) for row in rows]
    assert all(math.isfinite(b) and b > 0 for b in bounds)
    assert "Recommended proxy learning rates: between 6e-08" in output or "The window is empty" in output
