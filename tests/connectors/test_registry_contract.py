"""One contract every registered venue adapter meets, checked against its recorded frames."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.base import VenueAdapter
from connectors.registry import ADAPTERS, build_adapter
from connectors.symbols import validate_symbol
from connectors.types import VENUE_IDS

FRAMES_DIR = Path(__file__).parent / "frames"
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
