"""One error base per package: every exception class a package defines descends from it, so a
front end catches the package's refusals once (the trees are drawn in each ``errors`` module)."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

# package folder -> its base (the shared contracts have their own, ContractError)
BASES = {
    "edge_runtime/contracts": "ContractError",
    "edge_runtime": "HubError",
    "ble_gateway": "GatewayError",
    "quantization": "QuantizationError",
    "host_training": "HostTrainingError",
}


def _exception_classes(folder: str) -> dict[str, list[str]]:
    """Every class named *Error in the folder (not in a sub-folder with a base of its own),
    with the names of its bases."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        inner = str(path.parent.relative_to(REPO))
        if any(f != folder and inner.startswith(f) and f.startswith(folder) for f in BASES):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                found[f"{path.relative_to(REPO)}:{node.name}"] = bases
    return found


def _descends(name: str, base: str, classes: dict[str, list[str]], seen: set[str]) -> bool:
    if name == base:
        return True
    if name in seen:
        return False
    seen.add(name)
    parents = [b for key, bases in classes.items() if key.endswith(f":{name}") for b in bases]
    return any(_descends(p, base, classes, seen) for p in parents)


@pytest.mark.parametrize("folder", sorted(BASES))
def test_every_error_of_a_package_descends_from_its_base(folder: str) -> None:
    base = BASES[folder]
    classes = _exception_classes(folder)
    assert any(key.endswith(f":{base}") for key in classes), f"{base} is not defined in {folder}"
    strays = [k for k in classes if not _descends(k.split(":")[1], base, classes, set())]
    assert strays == [], f"not under {base}: {strays}"


def test_the_check_finds_a_stray_error() -> None:
    classes = {
        "a.py:BaseError": [],
        "a.py:GoodError": ["BaseError"],
        "a.py:StrayError": ["ValueError"],
    }
    assert _descends("GoodError", "BaseError", classes, set())
    assert not _descends("StrayError", "BaseError", classes, set())
