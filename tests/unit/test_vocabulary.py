"""Each shared term is defined once, in `connectors/types.py`, and imported everywhere else."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("connectors", "router", "daemon")
HOME = "connectors/types.py"
TERMS = {"Side", "BookSide", "BPS", "Strategy", "RiskTolerance", "Mode", "VENUE_IDS"}
# The values the terms stand for: spelling one out elsewhere (`Literal["buy", "sell"]`) redefines it.
VALUES = {
    frozenset({"buy", "sell"}): "Side",
    frozenset({"bid", "ask"}): "BookSide",
    frozenset({"best_price", "preferred", "fastest", "split"}): "Strategy",
    frozenset({"low", "medium", "high"}): "RiskTolerance",
    frozenset({"paper", "live"}): "Mode",
    frozenset({"binance", "bybit", "okx", "coinbase", "kraken"}): "VENUE_IDS",
}


def _strings(node: ast.expr) -> frozenset[str] | None:
    elements = node.elts if isinstance(node, ast.Tuple) else [node]
    if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elements):
        return frozenset(str(e.value) for e in elements if isinstance(e, ast.Constant))
    return None


def _is_bps(name: str, value: ast.expr | None) -> bool:
    """`X_BPS = Decimal(10_000)`: the bps constant under another name."""
    return (
        "BPS" in name
        and isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "Decimal"
        and ast.unparse(value.args) == "10000"
    )


def _names(tree: ast.Module) -> Iterator[str]:
    """Module-level names defining a term: its own name (or `_name`), or `X_BPS = Decimal(10_000)`."""
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign):
            target, value = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id.lstrip("_") in TERMS:
            yield target.id.lstrip("_")
        elif isinstance(target, ast.Name) and _is_bps(target.id, value):
            yield "BPS"


def _values(tree: ast.Module) -> Iterator[str]:
    """A term's value spelled out: `Literal["buy", "sell"]` anywhere, or the venue ids' tuple."""
    for node in ast.walk(tree):
        literal = isinstance(node, ast.Subscript) and ast.unparse(node.value) == "Literal"
        if (
            isinstance(node, ast.Subscript)
            and literal
            and (term := VALUES.get(_strings(node.slice) or frozenset()))
        ):
            yield f"Literal of {term}"
        elif isinstance(node, ast.Tuple) and VALUES.get(_strings(node) or frozenset()) == "VENUE_IDS":
            yield "VENUE_IDS value"


def definitions(source: str) -> Iterator[str]:
    """The shared terms a module defines: by name, by a bps alias, or by spelling out a value."""
    tree = ast.parse(source)
    yield from _names(tree)
    yield from _values(tree)


def all_definitions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for term in definitions(path.read_text()):
                found.setdefault(term, []).append(str(path.relative_to(REPO)))
    return found


def test_each_shared_term_is_defined_once_in_the_vocabulary() -> None:
    found = all_definitions()
    elsewhere = {term: paths for term, paths in found.items() if paths != [HOME]}
    assert elsewhere == {}
    assert set(found) >= TERMS


def test_the_check_sees_a_second_definition() -> None:
    source = (
        'Side = Literal["buy", "sell"]\n'
        "_BPS: Final = Decimal(10_000)\n"
        "MAX_BPS = Decimal(10_000)\n"
        'def f(side: Literal["sell", "buy"], mode: Literal["paper", "live"]) -> None: ...\n'
    )
    assert sorted(definitions(source)) == sorted(
        ["Side", "BPS", "BPS", "Literal of Side", "Literal of Side", "Literal of Mode"]
    )
