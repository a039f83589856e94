"""Executing order legs: the executor seam, deterministic order ids, and the paper executor.

An executor receives one `OrderLeg` at a time — an immediate-or-cancel order
with a hard limit price — and returns what filled. The router records the
leg's intent in the ledger before the call and its outcome after, so a
restart can tell an order that was sent from one that never was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import orjson

from connectors.registry import client_order_id
from connectors.types import BPS, Mode, Quote, Side, decimal_text
from router.book_walk import marginal_price, walk_book
from router.cache import PriceCache
from router.precision import money_up, publish_price


@dataclass(frozen=True, slots=True)
class OrderLeg:
    """One IOC order to send: never fills beyond `quantity` or past `limit_price`."""

    request_id: str
    leg: int
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    limit_price: Decimal
    client_order_id: str = ""  # derived from (venue, request_id, leg) when not given

    def __post_init__(self) -> None:
        # The id is a pure function of the leg, so a restart rebuilds the same one; a leg read back
        # from the ledger passes the id it was recorded with (the scheme may have changed since).
        if not self.client_order_id:
            object.__setattr__(
                self, "client_order_id", client_order_id(self.venue, self.request_id, self.leg)
            )


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution against a venue, as it appears in a result's `fills`."""

    venue: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    client_order_id: str
    venue_order_id: str
    ts_ns: int

    def as_message(self) -> dict[str, object]:
        """Return the contract's fill object."""
        return {
            "venue": self.venue,
            "side": self.side,
            "price": decimal_text(self.price),
            "quantity": decimal_text(self.quantity),
            "fee": decimal_text(self.fee),
            "fee_asset": self.fee_asset,
            "client_order_id": self.client_order_id,
            "venue_order_id": self.venue_order_id,
            "ts_ns": self.ts_ns,
        }

    @classmethod
    def from_message(cls, data: Mapping[str, object]) -> Fill:
        """Rebuild a fill stored by `as_message` (ledger outcomes)."""
        side = str(data["side"])
        if side not in ("buy", "sell"):
            raise ValueError(f"stored fill has side {side!r}")
        ts_ns = data["ts_ns"]
        if not isinstance(ts_ns, int):
            raise ValueError("stored fill has no integer ts_ns")
        return cls(
            venue=str(data["venue"]),
            side="buy" if side == "buy" else "sell",
            price=Decimal(str(data["price"])),
            quantity=Decimal(str(data["quantity"])),
            fee=Decimal(str(data["fee"])),
            fee_asset=str(data["fee_asset"]),
            client_order_id=str(data["client_order_id"]),
            venue_order_id=str(data["venue_order_id"]),
            ts_ns=ts_ns,
        )


@dataclass(frozen=True, slots=True)
class LegOutcome:
    """What happened to one leg: its fills (possibly none) and, if it did not fill, why."""

    leg: OrderLeg
    fills: tuple[Fill, ...]
    error: str | None = None
    # Set when the leg was refused before it could execute (nothing reached the order book):
    # an execution whose legs were all refused is answered `rejected` with this code.
    reject_code: str | None = None

    @property
    def filled(self) -> Decimal:
        """Return the filled base quantity."""
        return sum((f.quantity for f in self.fills), Decimal(0))

    def encode(self) -> bytes:
        """Serialise for the ledger's leg outcome."""
        return orjson.dumps(
            {
                "fills": [f.as_message() for f in self.fills],
                "error": self.error,
                "reject_code": self.reject_code,
            }
        )

    @classmethod
    def decode(cls, leg: OrderLeg, raw: bytes) -> LegOutcome:
        """Rebuild an outcome stored by `encode`."""
        data = orjson.loads(raw)
        error = data.get("error")
        return cls(
            leg, tuple(Fill.from_message(f) for f in data["fills"]), None if error is None else str(error)
        )


def all_refused(outcomes: Sequence[LegOutcome]) -> str | None:
    """Return the reject code when every leg was refused before executing, else None."""
    codes = [o.reject_code for o in outcomes]
    if outcomes and all(codes) and not any(o.fills for o in outcomes):
        return codes[0]
    return None


def refusal(outcomes: Sequence[LegOutcome]) -> tuple[str, str] | None:
    """Return the reject code and message when every leg was refused before executing, else None."""
    if code := all_refused(outcomes):
        return code, "; ".join(o.error or "refused" for o in outcomes) + "; nothing was executed"
    return None


class Executor(Protocol):
    """Send one leg to its venue and report what filled."""

    mode: Mode

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        """Execute `leg` as an IOC order; never raise for a venue's refusal, report it in the outcome."""
        ...

    def observed_ack_latency_ms(self, venue: str) -> float | None:
        """Return the measured order-acknowledgement latency of `venue`, if any was measured."""
        ...

    async def recover(self, leg: OrderLeg, *, acknowledged: bool = False) -> LegOutcome:
        """Settle a leg a crash left unsettled from what the venue knows; never send it again.

        `acknowledged`: the venue gave the leg an order id, so it exists; "not found" is never final.
        """
        ...


def protective_limit(expected: Decimal, side: Side, slippage_bps: Decimal, limit: Decimal | None) -> Decimal:
    """Return the IOC limit: the planned VWAP moved by the slippage allowance, never past a user limit."""
    allowance = slippage_bps / BPS
    protective = expected * (1 + allowance) if side == "buy" else expected * (1 - allowance)
    if limit is None:
        return protective
    return min(protective, limit) if side == "buy" else max(protective, limit)


def leg_limit(
    quote: Quote | None, quantity: Decimal, side: Side, slippage_bps: Decimal, limit: Decimal | None
) -> Decimal:
    """Return a leg's IOC limit: the worst level the plan takes, widened by the slippage allowance.

    The order can take what the plan saw even if the book moves by up to the
    allowance, and never more; a user's limit price always binds.
    """
    if quote is None:
        raise ValueError("a planned leg always has a quote")
    levels = quote.ask_levels() if side == "buy" else quote.bid_levels()
    marginal = marginal_price(levels, quantity, limit, side)
    if marginal is None:
        raise ValueError("a planned leg always takes at least one level")
    return protective_limit(marginal, side, slippage_bps, limit)


def quote_asset(symbol: str) -> str:
    """Return the quote currency of a canonical symbol (`BTC-USDT` → `USDT`)."""
    return symbol.rsplit("-", 1)[1]


class PaperExecutor:
    """Fill legs against the live cached book at the moment of execution; touch no exchange.

    A leg takes the venue's current levels best-first up to its quantity and
    limit price, pays the venue's taker fee in the quote currency, and fills
    partly when depth runs out. Like a venue's, its figures have a precision
    (`router.precision`): one fill per leg at the VWAP of the levels taken,
    rounded against the taker to 4 decimals beyond the book's prices, and a fee
    rounded up to 8 decimals. A venue whose quote is stale or missing at
    execution time fills nothing. Paper mode loads no credential.
    """

    mode: Mode = "paper"

    def __init__(
        self,
        cache: PriceCache,
        taker_fee_bps: Mapping[str, Decimal],
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.cache = cache
        self.taker_fee_bps = dict(taker_fee_bps)
        self.clock_ns = clock_ns

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        """Fill `leg` against the cached book now."""
        entry = self.cache.fresh(leg.symbol).get(leg.venue)
        if entry is None:
            return LegOutcome(leg, (), f"{leg.venue} has no fresh {leg.symbol} quote at execution time")
        quote = entry.quote
        if quote.crossed:
            return LegOutcome(leg, (), f"{leg.venue} {leg.symbol} book is crossed at execution time")
        levels = quote.ask_levels() if leg.side == "buy" else quote.bid_levels()
        filled, notional = walk_book(levels, leg.quantity, leg.limit_price, leg.side)
        if filled <= 0:
            return LegOutcome(
                leg, (), f"no {leg.venue} liquidity within limit {decimal_text(leg.limit_price)}"
            )
        price = publish_price(notional / filled, (price for price, _ in levels), leg.side)
        fee = money_up(notional * self.taker_fee_bps[leg.venue] / BPS)
        fill = Fill(
            venue=leg.venue,
            side=leg.side,
            price=price,
            quantity=filled,
            fee=fee,
            fee_asset=quote_asset(leg.symbol),
            client_order_id=leg.client_order_id,
            venue_order_id=f"paper-{leg.client_order_id[2:18]}",
            ts_ns=self.clock_ns(),
        )
        return LegOutcome(leg, (fill,))

    def observed_ack_latency_ms(self, venue: str) -> float | None:
        """Paper fills are instantaneous: no latency is measured."""
        return None

    async def recover(self, leg: OrderLeg, *, acknowledged: bool = False) -> LegOutcome:
        """A paper fill exists only once recorded: an unsettled paper leg never filled."""
        return LegOutcome(leg, (), "interrupted before its paper fill was recorded; not executed again")
