"""`raysweep estimate-lr` on the micro sweep: real Ray tasks, real warm-up, Eq. 58 per recipe."""

from __future__ import annotations

import contextlib
import io
import math

import pytest

from raysweep.cli import main
from raysweep.store import RunDir, read_lr_windows

from conftest import micro_sweep, storage_with, write_yaml


def test_estimate_lr_records_the_eq58_bound_and_the_precision_floor_for_the_report(local_ray, tmp_path, shared_shards):
    sweep = write_yaml(tmp_path / "micro.yaml", micro_sweep())
    storage = storage_with(shared_shards, tmp_path)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(sweep), "storage": str(storage)})
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["estimate-lr", str(cluster), "--warmup-steps", "20", "--batches", "4"]) == 0
    (model, window), = read_lr_windows(RunDir.of(storage, "micro")).items()
    assert model == "opt-nano" and math.isfinite(window["eta_58"]) and window["eta_58"] > 0
    assert window["precision_floor"] == pytest.approx(6e-8, rel=0.05)  # fp32 weights


def test_a_sweep_with_bf16_weights_at_a_tiny_lr_is_refused_before_training_with_the_reason(tmp_path, capsys):
    sweep = micro_sweep()
    sweep["training"]["param_dtype"] = "bfloat16"
    sweep["proxy"]["lrs"] = [1.0e-6, 1.0e-2]
    sweep["target"]["lrs"] = [1.0e-2]
    path = write_yaml(tmp_path / "bf16.yaml", sweep)
    cluster = write_yaml(tmp_path / "cluster.yaml", {"sweep": str(path), "storage": str(tmp_path / "runs")})
    assert main(["launch", str(cluster)]) == 2
    error = capsys.readouterr().err
    assert f"{path}: proxy.lrs[0]: learning rate 1e-06 is below the precision floor of bfloat16 weights" in error
    assert "Keep fp32 master weights" in error and "proxy.lrs[1]" not in error
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_write_replaces_only_the_proxy_lrs_line_and_keeps_the_comments(tmp_path):
    from raysweep.config import load_sweep
    from raysweep.lr_window import LRWindow, window_lrs, write_proxy_lrs

    from conftest import REPO

    path = tmp_path / "demo.yaml"
    original = (REPO / "search_spaces" / "demo.yaml").read_text()
    path.write_text(original)
    window = LRWindow("opt-nano", 4e-3, 500, [], floor_lr=6e-8, upper_lr=2e-4, param_dtype="float32")
    lrs = window_lrs(window, standard_lr=4e-3)
    assert lrs == [2e-6, 9.3e-6, 4.3e-5, 2e-4, 4e-3]  # two decades below the window's upper end, and the baseline
    change = write_proxy_lrs(path, lrs, window)
    changed = [(a, b) for a, b in zip(original.splitlines(), path.read_text().splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][1].startswith("  lrs: [")
    assert len(original.splitlines()) == len(path.read_text().splitlines())
    assert load_sweep(path).proxy.lrs == lrs
    assert f"-{changed[0][0]}\n+{changed[0][1]}\n" in change  # what changed is said


def test_write_keeps_a_flow_style_sweep_file_and_refuses_one_without_a_proxy_block(tmp_path):
    import yaml

    from raysweep.lr_window import LRWindow, write_proxy_lrs

    from conftest import micro_sweep

    window = LRWindow("opt-nano", 4e-3, 500, [], floor_lr=6e-8, upper_lr=2e-4, param_dtype="float32")
    path = tmp_path / "flow.yaml"
    sweep = micro_sweep()
    path.write_text("# flow style\n" + yaml.safe_dump(sweep, default_flow_style=True, width=80))
    write_proxy_lrs(path, [2e-5, 4e-3], window)
    edited = yaml.safe_load(path.read_text())
    assert path.read_text().startswith("# flow style\n") and edited["proxy"]["lrs"] == [2e-5, 4e-3]
    edited["proxy"]["lrs"] = sweep["proxy"]["lrs"]
    assert edited == sweep  # every other key as it was
    block = tmp_path / "block.yaml"
    block.write_text("name: x  # a sweep\nproxy:\n  models: [opt-nano]\n  lrs:\n    - 1.0e-5\n    - 4.0e-3\n"
                     "  seeds: [0]   # one seed\ntarget: {lrs: [1e-3,\n         2e-3]}\n")
    change = write_proxy_lrs(block, [2e-5, 4e-3], window)
    assert block.read_text() == ("name: x  # a sweep\nproxy:\n  models: [opt-nano]\n  lrs: [2.0e-05, 0.004]  "
                                 "# estimate-lr: window 6e-08 .. 0.0002 (opt-nano)\n  seeds: [0]   # one seed\n"
                                 "target: {lrs: [1e-3,\n         2e-3]}\n")
    lines = [line[0] for line in change.splitlines()[2:] if line[0] in "+-"]
    assert lines == ["-", "-", "-", "+"]  # three lines replaced by one, and said
    (tmp_path / "none.yaml").write_text("name: x\n")
    with pytest.raises(ValueError, match="no `proxy.lrs` list to replace"):
        write_proxy_lrs(tmp_path / "none.yaml", [1e-4], window)
