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


def imported_modules(path: Path) -> set[str]:
    """Return every absolute module name `path` imports, in full (`aiokafka.errors`, not `aiokafka`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imports_aiokafka(path: Path) -> bool:
    return any(name == "aiokafka" or name.startswith("aiokafka.") for name in imported_modules(path))


def test_only_daemon_kafka_imports_aiokafka() -> None:
    kafka_package = REPO / "daemon" / "kafka"
    offenders = [
        str(path.relative_to(REPO))
        for package in ALLOWED
        for path in (REPO / package).rglob("*.py")
        if not path.is_relative_to(kafka_package) and imports_aiokafka(path)
    ]
    assert offenders == []


def test_the_aiokafka_check_sees_an_import(tmp_path: Path) -> None:
    for line in ("import aiokafka\n", "from aiokafka.errors import KafkaError\n", "from aiokafka import X\n"):
        bad = tmp_path / "bad.py"
        bad.write_text(line)
        assert imports_aiokafka(bad)
    (tmp_path / "ok.py").write_text("from daemon.kafka import KafkaError\nimport aiokafkax\n")
    assert not imports_aiokafka(tmp_path / "ok.py")
