"""The venue-neutral trading seam: client order ids every venue accepts, rounding onto symbol rules."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import OrderRuleViolation
from connectors.trading import SymbolRules, order_uuid, venue_client_order_id

_REQUEST_IDS = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-", min_size=1, max_size=64
)


@given(_REQUEST_IDS, st.integers(min_value=0, max_value=3))
def test_client_order_ids_are_deterministic_and_fit_every_venue(request_id: str, leg: int) -> None:
    hex32 = venue_client_order_id(request_id, leg, "hex32")
    uuid36 = venue_client_order_id(request_id, leg, "uuid36")
    assert hex32 == venue_client_order_id(request_id, leg, "hex32")
    assert re.fullmatch(r"[0-9a-f]{32}", hex32)  # OKX: 1-32 letters and digits; Bybit: <= 36
    parsed = uuid.UUID(uuid36)  # Kraken and Coinbase: a well-formed UUID
    assert len(uuid36) == 36 and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert parsed.hex == hex32


def test_each_leg_of_a_request_gets_its_own_id() -> None:
    ids = {order_uuid("req-1", leg) for leg in range(4)} | {order_uuid("req-2", 0)}
    assert len(ids) == 5


def test_a_known_request_maps_to_a_pinned_id() -> None:
    # Pinned: changing the scheme would give an order in flight across an upgrade a new id.
    assert venue_client_order_id("demo-1", 0, "hex32") == "293857dfb8a14f1ca03dead15719db77"
    assert venue_client_order_id("demo-1", 0, "uuid36") == "293857df-b8a1-4f1c-a03d-ead15719db77"


_RULES = SymbolRules(
    venue_symbol="BTCUSDT",
    base_asset="BTC",
    quote_asset="USDT",
    tradable=True,
    tick_size=Decimal("0.1"),
    step_size=Decimal("0.001"),
    min_qty=Decimal("0.001"),
    min_notional=Decimal("5"),
)


def test_prepare_rounds_in_the_requesters_favour() -> None:
    buy = _RULES.prepare("buy", Decimal("0.0129"), Decimal("1000.19"))
    sell = _RULES.prepare("sell", Decimal("0.0129"), Decimal("1000.11"))
    assert buy == (Decimal("0.012"), Decimal("1000.1"))
    assert sell == (Decimal("0.012"), Decimal("1000.2"))


@pytest.mark.parametrize(
    ("quantity", "price", "words"),
    [
        (Decimal("0.0009"), Decimal("100"), "below the minimum"),
        (Decimal("0.01"), Decimal("100"), "notional 1 (0.01 at 100) is below the minimum 5"),
        (Decimal("1"), Decimal("0.01"), "limit price 0.01 is below the minimum price 0"),
    ],
)
def test_prepare_refuses_what_breaks_a_rule_before_sending(
    quantity: Decimal, price: Decimal, words: str
) -> None:
    with pytest.raises(OrderRuleViolation, match=re.escape(words)):
        _RULES.prepare("buy", quantity, price)
