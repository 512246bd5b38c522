"""The dependency rules of ARCHITECTURE.md, checked on every import statement in the packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "edge_runtime": {"torch", "tensorflow", "opensim", "host_training", "quantization",
                     "ble_gateway", "onnx", "onnx2tf", "dask", "pyarrow"},
    "host_training": {"quantization", "ble_gateway", "tensorflow", "onnx2tf", "bleak"},
    "quantization": {"host_training", "ble_gateway", "opensim", "bleak"},
    "ble_gateway": {"host_training", "quantization", "opensim", "torch", "tensorflow"},
    # the demo composes every package (quantisation only through its subprocess front end)
    "cervical_demo": {"tensorflow", "onnx2tf"},
}  # fmt: skip
ORCHESTRATOR = "cervical_demo"  # composes the others; none of them may import it
# Other packages may use only edge_runtime's contract modules and its low-level helpers.
EDGE_SHARED = ("edge_runtime.contracts", "edge_runtime.common")
# The console root lives in edge_runtime but loads groups by entry point, never by import.
# `cervical bench sync` measures hub and gateway together on one virtual radio in one process:
# the one module allowed to compose both sides (no product code path goes through it).
BOTH_SIDES = {"ble_gateway/bench.py", "ble_gateway/bench_restarts.py"}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def _violations(package: str) -> list[str]:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for module, line in _imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(REPO)}:{line} imports {module}"
            if top in FORBIDDEN[package] or (top == ORCHESTRATOR and package != ORCHESTRATOR):
                bad.append(where)
            if package == ORCHESTRATOR:
                continue
            if (top == "edge_runtime" and package != "edge_runtime"
                    and not module.startswith(EDGE_SHARED)
                    and str(path.relative_to(REPO)) not in BOTH_SIDES):  # fmt: skip
                bad.append(where + " (only edge_runtime.contracts and .common are shared)")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_import_boundaries(package: str) -> None:
    assert (REPO / package / "__init__.py").is_file()
    assert _violations(package) == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import opensim\nfrom host_training.model.anatomy import load_anatomy\n")
    modules = [m for m, _ in _imports(bad)]
    assert modules == ["opensim", "host_training.model.anatomy"]
    assert {m.split(".")[0] for m in modules} <= FORBIDDEN["edge_runtime"]


def test_the_shared_helpers_import_only_the_standard_library_and_base_dependencies() -> None:
    """edge_runtime.common is imported by every package: it must pull in nothing they lack
    (numpy, typer and rich are the base install's dependencies)."""
    import sys

    allowed = {"__future__", "numpy", "rich"}
    for path in sorted((REPO / "edge_runtime" / "common").rglob("*.py")):
        for module, line in _imports(path):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or top in allowed, f"{path}:{line} {module}"


# host_training's stages in pipeline order: a stage imports only from the stages before it (and
# from the package's cross-stage modules: errors, and the CLI helpers the ROM CLI shares).
HOST_STAGES = ("population", "model", "simulation", "learning", "rom")


def _stage_violations(root: Path) -> list[str]:
    bad = []
    for rank, stage in enumerate(HOST_STAGES):
        for path in sorted((root / stage).rglob("*.py")):
            for module, line in _imports(path):
                parts = module.split(".")
                if parts[0] != "host_training" or len(parts) < 2 or parts[1] not in HOST_STAGES:
                    continue
                if HOST_STAGES.index(parts[1]) > rank:
                    bad.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    return bad


def test_host_training_stages_import_only_earlier_stages() -> None:
    root = REPO / "host_training"
    assert sorted(p.name for p in root.iterdir() if (p / "__init__.py").is_file()) == sorted(
        HOST_STAGES
    )
    assert _stage_violations(root) == []


def test_stage_checker_catches_an_import_from_a_later_stage(tmp_path: Path) -> None:
    for stage in HOST_STAGES:
        (tmp_path / "host_training" / stage).mkdir(parents=True)
    (tmp_path / "host_training" / "model" / "m.py").write_text(
        "from host_training.learning.training import train\n"
    )
    assert _stage_violations(tmp_path / "host_training") == [
        "host_training/model/m.py:1 imports host_training.learning.training"
    ]
