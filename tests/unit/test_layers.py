"""Imports point one way only: daemon → router → connectors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What each package may import from the project's own packages.
ALLOWED = {
    "connectors": {"connectors"},
    "router": {"connectors", "router"},
    "daemon": {"connectors", "router", "daemon"},
}


def project_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_downward(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(project_imports(path) - ALLOWED[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from daemon.config import Config\nimport router.cache\n")
    assert project_imports(bad) - ALLOWED["connectors"] == {"daemon", "router"}
