"""The pieces of the Python API of DESIGN.md that need no router state.

`SmartRouter` (`router.smart`) exposes the API: `get_best_price` picks the best
fresh fee-inclusive top of book with `best_price`; `execute_with_preferences`
and `execute_arbitrage_opportunity` build an order-request message
(`order_message`, `arbitrage_message`) that takes the same path as one from
Kafka, and read its stored result back with `decode_result`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import orjson

from connectors.types import BPS, Side, decimal_text
from router.recovery import result_from_message
from router.results import ExecutionResult
from router.routing import VenueView

__all__ = ["VenuePrice", "arbitrage_message", "best_price", "decode_result", "order_message"]


@dataclass(frozen=True, slots=True)
class VenuePrice:
    """The best fee-inclusive top-of-book price of one symbol and side across venues."""

    venue: str
    price: Decimal
    quantity: Decimal
    fee_bps: Decimal
    all_in_price: Decimal
    quote_age_ms: float


def best_price(views: Iterable[VenueView], action: Side, max_quote_age_ms: float) -> VenuePrice | None:
    """Return the venue with the best fresh all-in (taker fee included) top-of-book price in `views`."""
    best: VenuePrice | None = None
    for view in views:
        quote = view.quote
        fresh = view.quote_age_ms is not None and view.quote_age_ms <= max_quote_age_ms
        if quote is None or not fresh or quote.crossed:
            continue
        price, qty = (quote.ask, quote.ask_qty) if action == "buy" else (quote.bid, quote.bid_qty)
        fee = view.taker_fee_bps / BPS
        all_in = price * (1 + fee) if action == "buy" else price * (1 - fee)
        better = best is None or (
            all_in < best.all_in_price if action == "buy" else all_in > best.all_in_price
        )
        if better:
            age = view.quote_age_ms or 0.0
            best = VenuePrice(view.venue, price, qty, view.taker_fee_bps, all_in, age)
    return best


def order_message(symbol: str, action: Side, amount: Decimal | str, user_id: str) -> dict[str, object]:
    """Return the order request of a market order for `user_id`, with a fresh API request_id."""
    return {
        "v": 1,
        "request_id": _api_request_id(),
        "user_id": user_id,
        "kind": "order",
        "symbol": symbol,
        "side": action,
        "quantity": _decimal_arg(amount),
    }


def arbitrage_message(
    symbol: str, buy_venue: str, sell_venue: str, amount: Decimal | str, user_id: str
) -> dict[str, object]:
    """Return the arbitrage request buying `amount` on `buy_venue` and selling it on `sell_venue`."""
    return {
        "v": 1,
        "request_id": _api_request_id(),
        "user_id": user_id,
        "kind": "arbitrage",
        "symbol": symbol,
        "buy_venue": buy_venue,
        "sell_venue": sell_venue,
        "quantity": _decimal_arg(amount),
    }


def decode_result(raw: bytes) -> ExecutionResult:
    """Rebuild the dataclass view of a stored result (for the Python API)."""
    return result_from_message(orjson.loads(raw))


def _api_request_id() -> str:
    return f"api-{uuid.uuid4().hex}"


def _decimal_arg(amount: Decimal | str) -> str:
    return decimal_text(amount) if isinstance(amount, Decimal) else str(amount)
