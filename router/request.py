"""The checked forms of a `smartroute.orders` message — `OrderRequest` and `ArbitrageRequest` — and the rules.

A request is one of two kinds, each with only its own fields: `Request` is their
union, tagged by `kind`. Build one from bytes with
`router.validation.parse_request`; this module holds only the values, so
executors and the ledger can import them without the validator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from connectors.types import Side

Kind = Literal["order", "arbitrage"]
OrderType = Literal["market", "limit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """An order (kind "order") that passed every check of the contract. `None` means the field was absent."""

    request_id: str
    user_id: str
    symbol: str
    quantity: Decimal
    side: Side
    order_type: OrderType = "market"
    limit_price: Decimal | None = None
    max_slippage_bps: Decimal | None = None
    venues: tuple[str, ...] | None = None
    deadline_ns: int | None = None
    kind: Literal["order"] = field(default="order", init=False)

    def as_message(self) -> dict[str, object]:
        """Return the request in the contract's JSON shape: `"v": 1`, decimals as plain strings.

        Absent optional fields are omitted rather than written as null.
        """
        message = _common(self.request_id, self.user_id, self.kind, self.symbol, self.quantity)
        message |= {"order_type": self.order_type, "side": self.side}
        optional: dict[str, object | None] = {
            "limit_price": None if self.limit_price is None else plain_decimal(self.limit_price),
            "max_slippage_bps": _optional_decimal(self.max_slippage_bps),
            "venues": None if self.venues is None else list(self.venues),
            "deadline_ns": self.deadline_ns,
        }
        return message | {name: value for name, value in optional.items() if value is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class ArbitrageRequest:
    """An arbitrage (kind "arbitrage"): buy on `buy_venue`, sell on `sell_venue`, both at market."""

    request_id: str
    user_id: str
    symbol: str
    quantity: Decimal
    buy_venue: str
    sell_venue: str
    opportunity_id: str | None = None
    max_slippage_bps: Decimal | None = None
    deadline_ns: int | None = None
    kind: Literal["arbitrage"] = field(default="arbitrage", init=False)

    def as_message(self) -> dict[str, object]:
        """Return the request in the contract's JSON shape (no `order_type`: an arbitrage is market-only)."""
        message = _common(self.request_id, self.user_id, self.kind, self.symbol, self.quantity)
        message |= {"buy_venue": self.buy_venue, "sell_venue": self.sell_venue}
        optional: dict[str, object | None] = {
            "max_slippage_bps": _optional_decimal(self.max_slippage_bps),
            "opportunity_id": self.opportunity_id,
            "deadline_ns": self.deadline_ns,
        }
        return message | {name: value for name, value in optional.items() if value is not None}


Request = OrderRequest | ArbitrageRequest


def _common(request_id: str, user_id: str, kind: Kind, symbol: str, quantity: Decimal) -> dict[str, object]:
    return {
        "v": 1,
        "request_id": request_id,
        "user_id": user_id,
        "kind": kind,
        "symbol": symbol,
        "quantity": plain_decimal(quantity),
    }


def _optional_decimal(value: Decimal | None) -> str | None:
    return None if value is None else plain_decimal(value)


@dataclass(frozen=True, slots=True)
class RequestRules:
    """What a request may name and how large its numbers may be, from the running config."""

    venues: frozenset[str]
    symbols: frozenset[str]
    max_quantity: Decimal = Decimal("1e9")
    max_decimal_chars: int = 40


def plain_decimal(value: Decimal) -> str:
    """Format a decimal as the contract writes it: digits and a point, never an exponent."""
    # str(Decimal("0.0000001")) is "1E-7", which the validator (rightly) refuses.
    return format(value, "f")
