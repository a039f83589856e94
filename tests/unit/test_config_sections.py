"""Each service receives its own config sections: only the composition roots see the whole `Config`."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.client import ResultWaiter
from daemon.quotes import QuoteFollower
from daemon.router_service import RouterService
from daemon.routing import build_router

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("daemon", "router", "connectors")
# The composition roots: they load the whole config and hand each part the sections it uses.
WHOLE_CONFIG_ALLOWED = frozenset(
    {
        "daemon.cli",  # every command loads the config and passes sections on
        "daemon.app.Daemon.__init__",  # one process's parts, each built from its own sections
        "daemon.routing.RouterSections.of",  # picks the router's sections
    }
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_whole_config(annotation: ast.expr | None) -> bool:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value.split(".")[-1] == "Config"
    if isinstance(annotation, ast.Attribute):
        return annotation.attr == "Config"
    return isinstance(annotation, ast.Name) and annotation.id == "Config"


def whole_config_parameters(tree: ast.AST, module: str) -> Iterator[str]:
    """Yield `module.Qualified.name(parameter)` for each parameter annotated with the whole `Config`."""

    def visit(node: ast.AST, prefix: str) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}.{child.name}")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}.{child.name}"
                args = child.args
                for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                    if _is_whole_config(arg.annotation):
                        yield f"{name}({arg.arg})"
                yield from visit(child, name)

    yield from visit(tree, module)


def _allowed(found: str) -> bool:
    function = found.split("(", maxsplit=1)[0]
    return any(function == root or function.startswith(root + ".") for root in WHOLE_CONFIG_ALLOWED)


def test_only_the_composition_roots_take_the_whole_config() -> None:
    offenders = [
        found
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if not path.is_relative_to(REPO / "daemon" / "config")  # the config's own loading and view
        for found in whole_config_parameters(ast.parse(path.read_text(), str(path)), _module_name(path))
        if not _allowed(found)
    ]
    assert offenders == []


def test_the_check_sees_a_service_taking_the_whole_config() -> None:
    source = (
        "class Service:\n"
        "    def __init__(self, cfg: Config, kafka: KafkaConfig) -> None: ...\n"
        "async def serve(*, config: 'daemon.config.Config') -> None:\n"
        "    def inner(c: config.Config) -> None: ...\n"
    )
    found = list(whole_config_parameters(ast.parse(source), "daemon.x"))

    assert found == ["daemon.x.Service.__init__(cfg)", "daemon.x.serve(config)", "daemon.x.serve.inner(c)"]
    assert not any(_allowed(name) for name in found)
    assert _allowed("daemon.cli.cmd_run(cfg)") and not _allowed("daemon.client.send(cfg)")


@pytest.mark.parametrize(
    "service", [RouterService, QuoteFollower, ResultWaiter, build_router], ids=lambda s: s.__name__
)
def test_each_service_is_built_from_sections_not_the_config(service: Callable[..., object]) -> None:
    annotations = [str(p.annotation) for p in inspect.signature(service).parameters.values()]

    assert annotations
    assert not [a for a in annotations if a.split(".")[-1] == "Config"]
