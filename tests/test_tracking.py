"""Tracking, offline: a launch with MLflow (file store), W&B (offline mode) and TensorBoard logs every trial and the
report's summary, read back with each tool's own reader."""

from __future__ import annotations

import struct

import pytest

from raysweep.cli import main

from conftest import micro_sweep, storage_with, write_yaml


def tensorboard_tags(folder) -> set[str]:
    """Scalar tags of the TensorBoard event files under `folder` (TFRecord framing around Event protos)."""
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in folder.rglob("events.out.tfevents.*"):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            offset += 12 + length + 4
    return tags


@pytest.mark.slow
def test_a_tracked_launch_logs_every_trial_and_the_report_to_mlflow_wandb_and_tensorboard(
        local_ray, tmp_path, shared_shards, capsys, monkeypatch):
    import mlflow

    monkeypatch.setenv("WANDB_SILENT", "true")
    sweep = micro_sweep(name="tracked")
    sweep["proxy"].update(lrs=[1.0e-4], seeds=[0])
    sweep["target"].update(lrs=[1.0e-3], seeds=[0])
    sweep_path = write_yaml(tmp_path / "tracked.yaml", sweep)
    storage = storage_with(shared_shards, tmp_path)
    cluster = write_yaml(tmp_path / "cluster.yaml", {
        "sweep": str(sweep_path), "storage": str(storage),
        "tracking": {"mlflow": {"tracking_uri": str(tmp_path / "mlruns")},
                     "wandb": {"project": "raysweep-test", "mode": "offline"}, "tensorboard": True}})
    assert main(["launch", str(cluster)]) == 0
    out = capsys.readouterr().out
    assert "Report logged as a run: MLflow" in out and "W&B project raysweep-test (offline)" in out

    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    runs = mlflow.search_runs(experiment_names=["tracked"])
    trials = runs[runs["tags.raysweep.group"] != "report"]
    assert len(trials) == 4 and set(trials["tags.raysweep.role"]) == {"proxy", "target"}
    assert set(trials["tags.raysweep.group"]) == {"proxy opt-nano lr 0.0001", "target balanced", "target low_quality"}
    assert trials["metrics.loss"].notna().all()
    (ship,) = runs.loc[runs["tags.raysweep.group"] == "report", "params.ship"]
    assert ship in ("balanced", "low_quality")

    offline = sorted((storage / "tracked" / "wandb").glob("offline-run-*"))
    assert len(offline) == 5  # four trials and the report
    assert {"ray/tune/loss", "ray/tune/step"} <= tensorboard_tags(storage / "tracked" / "tune")
    assert any(tag.startswith("chosen/opt-nano/spearman") for tag in
               tensorboard_tags(storage / "tracked" / "tune" / "report"))
