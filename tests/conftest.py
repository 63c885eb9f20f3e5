"""Shared fixtures: one real local Ray for the whole session, and a small sweep written to a tmp dir."""

from __future__ import annotations

import os

# Small matrices (random features, kernels) run far slower with BLAS threads fighting over 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def local_ray():
    """A real Ray with 2 CPUs; started once because `ray.init` costs seconds."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_shards(tmp_path_factory) -> Path:
    """One shard cache for the launches of the whole session: builds are keyed by their content, so a recipe built by
    one test is reused by the next (a test that damages shards works on a copy)."""
    return tmp_path_factory.mktemp("shards")


@pytest.fixture
def offline_hf(tmp_path, monkeypatch):
    """Empty Hugging Face caches under tmp_path, and offline mode, whatever the machine's network."""
    import datasets
    from huggingface_hub import constants

    hub_cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return hub_cache


def storage_with(shards: Path, root: Path) -> Path:
    """``root/runs``, a storage folder whose ``shards/`` is the session's shared cache."""
    storage = root / "runs"
    storage.mkdir(parents=True, exist_ok=True)
    (storage / "shards").symlink_to(shards, target_is_directory=True)
    return storage


def micro_sweep(**changes) -> dict:
    """Two recipes, two proxy learning rates, two target configurations, two seeds: ~30 s of training."""
    sweep = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())
    sweep.update(name="micro", recipes=[r for r in sweep["recipes"] if r["name"] in ("balanced", "low_quality")])
    sweep["validation"]["num_tokens"] = 1024
    sweep["proxy"].pop("standard_lr", None)  # the largest lr, whatever `lrs` a test sets
    sweep["proxy"].update(lrs=[1.0e-4, 4.0e-3], seeds=[0, 1], tokens_per_param=1, alignment_every=10)
    sweep["target"].update(lrs=[1.0e-3, 1.0e-2], weight_decays=[0.1], seeds=[0, 1], tokens_per_param=0.5)
    sweep["training"]["num_evals"] = 2
    sweep["tasks"] = [{**task, "max_items": 40} for task in sweep["tasks"]]
    sweep.update(changes)
    return sweep


def wait_for(condition: Callable[[], object], what: str, process: subprocess.Popen | None = None,
             timeout_s: float = 240.0) -> object:
    """``condition()``'s first true value; fails naming ``what`` when ``timeout_s`` pass or ``process`` ends first."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{timeout_s:.0f} s passed without {what}")
        time.sleep(0.02)
    return value


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
