"""One contract every registered venue adapter meets, checked against its recorded frames."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest

from connectors import facts as venue_facts
from connectors.base import VenueAdapter
from connectors.registry import ADAPTERS, FACTS, VENUES, build_adapter
from connectors.symbols import validate_symbol
from connectors.trading import ClientIdStyle
from connectors.types import VENUE_IDS

FRAMES_DIR = Path(__file__).parent / "frames"
REPO = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("connectors", "router", "daemon", "bench")
FEE_NAMES = frozenset({"taker_fee_bps", "maker_fee_bps"})
FACT_TYPES = frozenset({"VenueFacts", "Testnet"})
RECEIVED_NS = 1_732_400_000_000_000_000


def _contract(venue: str) -> dict[str, Any]:
    path = FRAMES_DIR / venue / "contract.json"
    if not path.is_file():
        pytest.fail(f"venue {venue!r} is registered but has no recorded frames: {path} is missing")
    contract: dict[str, Any] = orjson.loads(path.read_bytes())
    return contract


def _adapter(venue: str) -> VenueAdapter:
    return build_adapter(venue, _contract(venue)["symbols"])


@pytest.fixture(params=sorted(ADAPTERS))
def venue(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_registry_key_is_the_adapters_venue_id(venue: str) -> None:
    assert ADAPTERS[venue].venue == venue
    assert venue in VENUE_IDS


def test_default_endpoint_is_a_production_tls_websocket(venue: str) -> None:
    adapter = _adapter(venue)

    assert ADAPTERS[venue].default_ws_url.startswith("wss://")
    assert adapter.connect_url().startswith(adapter.ws_url)


def test_configured_endpoint_replaces_the_default(venue: str) -> None:
    adapter = build_adapter(venue, _contract(venue)["symbols"], ws_url="ws://127.0.0.1:8765")

    assert adapter.connect_url().startswith("ws://127.0.0.1:8765")


def test_subscribe_messages_are_json(venue: str) -> None:
    messages = _adapter(venue).subscribe_messages()

    assert messages
    for message in messages:
        assert isinstance(orjson.loads(message), dict | list)


def test_recorded_bbo_frames_parse_into_canonical_quotes(venue: str) -> None:
    contract = _contract(venue)
    adapter = build_adapter(venue, contract["symbols"])
    parser = adapter.new_parser()
    frames = (FRAMES_DIR / venue / contract["bbo_frames"]).read_text(encoding="utf-8").splitlines()

    quotes = [quote for frame in frames if frame.strip() for quote in parser.parse(frame, RECEIVED_NS)]

    assert quotes, f"{venue}: recorded BBO frames gave no quote"
    for quote in quotes:
        assert quote.venue == venue
        assert validate_symbol(quote.symbol) in contract["symbols"]
        assert all(isinstance(v, Decimal) for v in (quote.bid, quote.bid_qty, quote.ask, quote.ask_qty))
        assert quote.bid > 0 and quote.ask > 0
        assert quote.received_ns == RECEIVED_NS


def test_each_connection_gets_a_fresh_parser(venue: str) -> None:
    adapter = _adapter(venue)

    assert adapter.new_parser() is not adapter.new_parser()


def test_every_venue_with_recorded_frames_is_registered() -> None:
    recorded = {path.name for path in FRAMES_DIR.iterdir() if (path / "contract.json").is_file()}

    assert recorded <= set(ADAPTERS)


def test_unknown_venue_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="no market-data adapter for venue 'mtgox'"):
        build_adapter("mtgox", ["BTC-USD"])


def test_the_registry_lists_every_venue_id_in_order() -> None:
    assert tuple(VENUES) == VENUE_IDS


def test_every_venue_declares_all_its_facts(venue: str) -> None:
    facts = FACTS[venue]

    assert facts.venue == venue
    assert facts.ws_url.startswith("wss://") and facts.rest_url.startswith("https://")
    assert isinstance(facts.taker_fee_bps, Decimal) and facts.taker_fee_bps > 0
    assert isinstance(facts.maker_fee_bps, Decimal) and 0 <= facts.maker_fee_bps <= facts.taker_fee_bps
    assert facts.client_id_style in get_args(ClientIdStyle)
    if facts.testnet is None:
        assert facts.no_testnet, f"{venue}: no testnet and no reason why"
    else:
        assert all(
            getattr(facts.testnet, f.name).startswith(("wss://", "https://"))
            for f in fields(venue_facts.Testnet)
        )


def test_adapter_defaults_are_the_venues_facts(venue: str) -> None:
    adapter = ADAPTERS[venue]

    assert adapter.default_ws_url == FACTS[venue].ws_url
    assert adapter.default_rest_url in (None, FACTS[venue].rest_url)


def test_venue_facts_refuse_both_or_neither_testnet_and_reason() -> None:
    net = venue_facts.Testnet("wss://t", "https://t", "https://t")
    base: dict[str, Any] = {
        "venue": "x",
        "ws_url": "wss://x",
        "rest_url": "https://x",
        "taker_fee_bps": Decimal(1),
        "maker_fee_bps": Decimal(1),
        "client_id_style": "hex32",
    }
    with pytest.raises(ValueError, match="not both"):
        venue_facts.VenueFacts(**base)
    with pytest.raises(ValueError, match="not both"):
        venue_facts.VenueFacts(**base, testnet=net, no_testnet="none")
    assert venue_facts.VenueFacts(**base, testnet=net).default_tier is None
    assert venue_facts.VenueFacts(**base, no_testnet="none", tiers=("a", "b")).default_tier == "a"


def _endpoints() -> set[str]:
    urls = set()
    for facts in FACTS.values():
        urls |= {facts.ws_url, facts.rest_url}
        if facts.testnet is not None:
            urls |= {getattr(facts.testnet, f.name) for f in fields(venue_facts.Testnet)}
    return urls


def _docstrings(tree: ast.AST) -> set[int]:
    """Return the ids of the string nodes that are docstrings (they may cite an endpoint)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def _literal_number(node: ast.expr | None) -> bool:
    """Tell whether `node` is a number written down: `10`, `"7.5"` or `Decimal(10)`."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float | str)
    is_decimal = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Decimal"
    return is_decimal and bool(node.args) and _literal_number(node.args[0])


def venue_facts_outside_their_home(path: Path, endpoints: set[str]) -> Iterator[str]:
    """Yield each venue endpoint literal, literal fee default and venue facts declared in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield from (f"endpoint {url}" for url in endpoints if node.value.startswith(url))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FACT_TYPES:
            yield f"facts {node.func.id}"
        elif isinstance(node, ast.keyword) and node.arg in FEE_NAMES and _literal_number(node.value):
            yield f"fee {node.arg}"
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and _literal_number(node.value)
        ):
            yield from (f"fee {name}" for name in {node.target.id} & FEE_NAMES)


def test_no_venue_endpoint_or_fee_default_is_written_outside_the_venues_facts() -> None:
    endpoints = _endpoints()
    homes = {REPO / "connectors" / venue / "facts.py" for venue in VENUES}
    offenders = {
        str(path.relative_to(REPO)): found
        for package in SOURCE_PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if path not in homes and (found := sorted(set(venue_facts_outside_their_home(path, endpoints))))
    }
    assert offenders == {}


def test_the_facts_check_sees_a_copied_endpoint_and_fee(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""Cites https://api.kraken.com, which is fine in a docstring."""\n'
        'URL = "https://api.kraken.com/0/public/Time"\n'
        "taker_fee_bps: Decimal = Decimal(40)\n"
        "VenueDefaults(maker_fee_bps=25)\n"
        'TESTNETS = {"kraken": Testnet("wss://t", "https://t", "https://t")}\n'
    )
    found = sorted(venue_facts_outside_their_home(bad, {"https://api.kraken.com"}))

    assert found == [
        "endpoint https://api.kraken.com",
        "facts Testnet",
        "fee maker_fee_bps",
        "fee taker_fee_bps",
    ]


def test_the_contract_schema_names_every_registered_venue() -> None:
    common = orjson.loads((REPO / "schemas" / "common.schema.json").read_bytes())

    assert tuple(common["$defs"]["venue_id"]["enum"]) == tuple(VENUES)
