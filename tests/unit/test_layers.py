"""Imports point one way only: daemon → router → connectors; and no product module is over 400 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterable
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


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Map each module of `packages` under `root` to the project modules it imports, TYPE_CHECKING too.

    `from package import name` counts as importing `package.name` when that is a module, else `package`.
    """
    paths = {
        module_name_under(root, path): path for package in packages for path in (root / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.update(
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in paths else node.module
                    for alias in node.names
                )
        graph[module] = {t for t in targets if t in paths and t != module}
    return graph


def module_name_under(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle of `graph` (its modules in order, the first repeated last), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            if cycle := visit(target, [*path, module]):
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module, []):
            return cycle
    return None


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_has_an_import_cycle(package: str) -> None:
    assert find_cycle(import_graph(REPO, [package])) is None


def test_the_cycle_check_sees_a_cycle_hidden_behind_type_checking(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import run\n")
    (tmp_path / "pkg" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    (tmp_path / "pkg" / "b.py").write_text("import pkg.c\n")
    assert find_cycle(import_graph(tmp_path, ["pkg"])) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (tmp_path / "pkg" / "c.py").write_text("")
    assert find_cycle(import_graph(tmp_path, ["pkg"])) is None


MAX_MODULE_LINES = 400
# A product module over MAX_MODULE_LINES, with the reason it stays one module. Keep it empty:
# a module that grows past the limit is usually two ideas (STYLE.md, "Size and words").
LONG_MODULES: dict[str, str] = {}


def long_modules(root: Path, packages: Iterable[str], limit: int) -> dict[str, int]:
    """Map each module of `packages` under `root` longer than `limit` lines to its line count."""
    counts = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for package in packages
        for path in (root / package).rglob("*.py")
    }
    return {name: n for name, n in counts.items() if n > limit}


def test_no_product_module_is_over_400_lines_without_a_stated_reason() -> None:
    over = long_modules(REPO, ALLOWED, MAX_MODULE_LINES)

    assert {name: n for name, n in over.items() if name not in LONG_MODULES} == {}
    assert all(reason.strip() for reason in LONG_MODULES.values())
    assert set(LONG_MODULES) <= set(over), "a module that is no longer long leaves LONG_MODULES"


def test_the_size_check_sees_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * 5)
    (tmp_path / "pkg" / "short.py").write_text("x = 1\n" * 4)

    assert long_modules(tmp_path, ["pkg"], 4) == {str(Path("pkg", "sub", "long.py")): 5}
