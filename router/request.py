"""OrderRequest, the checked form of a `smartroute.orders` message, and the rules it is checked against.

Build an `OrderRequest` from bytes with `router.validation.parse_request`; this
module holds only the values, so executors and the ledger can import them
without the validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Kind = Literal["order", "arbitrage"]
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order request that passed every check of the contract.

    `side`, `limit_price` and `venues` belong to kind "order"; `buy_venue`,
    `sell_venue` and `opportunity_id` to kind "arbitrage" (which always
    executes at market). `None` means the field was absent.
    """

    request_id: str
    user_id: str
    kind: Kind
    symbol: str
    quantity: Decimal
    side: Side | None = None
    order_type: OrderType = "market"
    limit_price: Decimal | None = None
    max_slippage_bps: Decimal | None = None
    venues: tuple[str, ...] | None = None
    buy_venue: str | None = None
    sell_venue: str | None = None
    opportunity_id: str | None = None
    deadline_ns: int | None = None

    def as_message(self) -> dict[str, object]:
        """Return the request in the contract's JSON shape: `"v": 1`, decimals as plain strings.

        Absent optional fields are omitted rather than written as null, and
        `order_type` is written for orders only (arbitrage is market-only).
        """
        message: dict[str, object] = {
            "v": 1,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "kind": self.kind,
            "symbol": self.symbol,
            "quantity": plain_decimal(self.quantity),
        }
        if self.kind == "order" or self.order_type != "market":
            message["order_type"] = self.order_type
        optional: dict[str, object | None] = {
            "side": self.side,
            "limit_price": None if self.limit_price is None else plain_decimal(self.limit_price),
            "max_slippage_bps": (
                None if self.max_slippage_bps is None else plain_decimal(self.max_slippage_bps)
            ),
            "venues": None if self.venues is None else list(self.venues),
            "buy_venue": self.buy_venue,
            "sell_venue": self.sell_venue,
            "opportunity_id": self.opportunity_id,
            "deadline_ns": self.deadline_ns,
        }
        message.update({name: value for name, value in optional.items() if value is not None})
        return message


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
