"""Security contracts: YAML is data, nothing is deserialized as code, the dashboard stays on loopback."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raysweep.config import RayConfig, load_cluster, load_sweep
from raysweep.errors import ConfigError

from conftest import REPO

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.mark.parametrize("load", [load_cluster, load_sweep])
def test_yaml_python_tags_are_refused_and_never_run(load, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"sweep: !!python/object/apply:os.system ['touch {marker}']\nname: x\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.file == str(path)
    assert "not valid YAML" in str(err.value) and "python/object/apply:os.system" in str(err.value)
    assert not marker.exists()


def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that turn bytes from disk into code or objects: (line, why)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, keywords = node.func, {k.arg: k.value for k in node.keywords}
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if isinstance(func, ast.Name) and name in ("eval", "exec"):
            found.append((node.lineno, f"{name}()"))
        elif owner in ("pickle", "cloudpickle", "dill", "marshal", "joblib") and name in ("load", "loads"):
            found.append((node.lineno, f"{owner}.{name}()"))
        elif owner in ("pd", "pandas") and name == "read_pickle":
            found.append((node.lineno, "pandas.read_pickle()"))
        elif owner == "torch" and name == "load" and not _is_true(keywords.get("weights_only")):
            found.append((node.lineno, "torch.load() without weights_only=True"))
        elif owner == "np" and name == "load" and _is_true(keywords.get("allow_pickle")):
            found.append((node.lineno, "np.load(allow_pickle=True)"))
        elif owner == "yaml" and name in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"):
            found.append((node.lineno, f"yaml.{name}()"))
        elif owner == "yaml" and name in ("load", "load_all") and not _safe_loader(node, keywords):
            found.append((node.lineno, f"yaml.{name}() without SafeLoader"))
        elif owner == "Tuner" and name == "restore":
            found.append((node.lineno, "Tuner.restore() unpickles the experiment state in storage"))
        elif _is_true(keywords.get("trust_remote_code")):
            found.append((node.lineno, "trust_remote_code=True runs code from a model or tokenizer folder"))
    return found


def _is_true(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def _safe_loader(node: ast.Call, keywords: dict[str, ast.expr]) -> bool:
    loader = keywords.get("Loader", node.args[1] if len(node.args) > 1 else None)
    text = ast.unparse(loader) if loader is not None else ""
    return text.endswith(("SafeLoader", "CSafeLoader"))


def test_unsafe_call_scan_catches_what_it_looks_for():
    source = ("import pickle, torch, yaml\npickle.load(f)\ntorch.load(p)\ntorch.load(p, weights_only=True)\n"
              "yaml.load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\neval('1')\nmodel.eval()\n")
    assert [line for line, _ in _unsafe_calls(ast.parse(source))] == [2, 3, 5, 7]


def test_package_deserializes_nothing_as_code():
    problems = [f"{path.relative_to(REPO)}:{line}: {why}"
                for path in sorted((REPO / "raysweep").rglob("*.py"))
                for line, why in _unsafe_calls(ast.parse(path.read_text(), filename=str(path)))]
    assert not problems, "\n".join(problems)


def test_dashboard_binds_to_loopback_by_default():
    assert RayConfig().dashboard_host == "127.0.0.1"


def _shipped_files() -> list[Path]:
    return sorted((REPO / "cluster").glob("*.yaml"))


@pytest.mark.parametrize("path", _shipped_files(), ids=lambda p: p.name)
def test_shipped_cluster_files_keep_the_dashboard_on_loopback(path):
    data = yaml.safe_load(path.read_text())
    if "provider" not in data:  # a raysweep profile
        assert load_cluster(path).ray.dashboard_host in LOOPBACK
        return
    # A Ray cluster-launcher file: every head start names a loopback host (`ray start`'s default is loopback too).
    heads = [c for c in data.get("head_start_ray_commands", []) if "ray start" in c and "--head" in c]
    assert heads, f"{path.name} starts no Ray head"
    for command in heads:
        hosts = [arg.split("=", 1)[1] for arg in command.split() if arg.startswith("--dashboard-host=")]
        assert all(host in LOOPBACK for host in hosts), command


PORT_RACE = """
import importlib, socket
from rich.console import Console
from raysweep.config import RayConfig
launch = importlib.import_module("raysweep.sweep.launch")
held = socket.socket()
held.bind(("127.0.0.1", 0))
held.listen()
probes = []
real_probe = launch.free_port
def racy_probe(host, preferred=0):  # another process binds the first port found free before Ray does
    probes.append(preferred)
    return held.getsockname()[1] if len(probes) == 1 else real_probe(host, preferred)
launch.free_port = racy_probe
launch.start_ray(RayConfig(num_cpus=1), Console(width=200))
import ray
print("started", ray.is_initialized(), probes, "in namespace", ray.get_runtime_context().namespace)
"""


def test_a_dashboard_port_taken_between_the_probe_and_ray_binding_it_starts_ray_on_another():
    out = subprocess.run([sys.executable, "-c", PORT_RACE], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "started True [8265, 0] in namespace raysweep" in out.stdout and "the dashboard uses" in out.stdout, \
        out.stdout
