"""What the best-execution planner takes and gives: venue snapshots, requests, plans, and their messages.

`router.routing` plans with these; `as_message` renders a plan (or a `NoRoute`)
as the execution result's `route` object, with prices at the published
precision (`router.precision`): rounded against the taker, 4 decimals beyond the
venue's book prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from connectors.types import BPS, Quote, Side, Strategy, decimal_text
from router.errors import RouterError
from router.precision import price_step, round_price

STRATEGIES: Final = ("best_price", "preferred", "fastest", "split")

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class VenueView:
    """What the planner knows of one venue at decision time."""

    venue: str
    quote: Quote | None  # latest cached quote/book, None if nothing cached
    quote_age_ms: float | None
    taker_fee_bps: Decimal
    ack_latency_ms: float | None = None  # measured order-ack latency (for "fastest"); None = unknown
    resyncing: bool = False  # the venue's book is being rebuilt
    # What a new leg may spend of the symbol's base and quote asset there (`router.balances`);
    # None = not tracked, unlimited. A buy needs quote, a sell base (`router.funding`).
    available_base: Decimal | None = None
    available_quote: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.taker_fee_bps.is_finite() or abs(self.taker_fee_bps) >= BPS:
            raise ValueError(
                f"{self.venue}: taker_fee_bps must be finite and within ±10000, got {self.taker_fee_bps}"
            )


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One order to plan: what, how much, at what price, and the user's routing preferences."""

    symbol: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None  # None = market
    max_slippage_bps: Decimal
    strategy: Strategy
    max_quote_age_ms: float
    allowed_venues: frozenset[str] | None = None  # the request's allow-list
    excluded_venues: frozenset[str] = frozenset()  # from preferences
    preferred_venues: tuple[str, ...] = ()
    preferred_bias_bps: Decimal = _ZERO
    max_venues: int = 1  # split: at most this many venues

    def __post_init__(self) -> None:
        limit, slippage, bias = self.limit_price, self.max_slippage_bps, self.preferred_bias_bps
        checks = {
            "side must be buy or sell": self.side in ("buy", "sell"),
            "strategy is unknown": self.strategy in STRATEGIES,
            "quantity must be > 0": self.quantity.is_finite() and self.quantity > 0,
            "limit_price must be > 0": limit is None or (limit.is_finite() and limit > 0),
            "max_slippage_bps must be >= 0": slippage.is_finite() and slippage >= 0,
            "preferred_bias_bps must be within ±10000": bias.is_finite() and abs(bias) < BPS,
            "max_venues must be >= 1": self.max_venues >= 1,
        }
        if problems := [text for text, ok in checks.items() if not ok]:
            raise ValueError(f"invalid route request {self!r}: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Considered:
    """One venue as the planner saw it; `excluded` is None when it was eligible (chosen or not).

    `expected_price` is the VWAP of what this venue's book alone offers for the
    quantity within the limit, and `score` its all-in (for `preferred`, biased)
    per-unit price; both None when the book was not walked or offered nothing.
    """

    venue: str
    expected_price: Decimal | None
    fee_bps: Decimal
    quote_age_ms: float | None
    score: Decimal | None
    excluded: str | None
    side: Side = "buy"
    places: int = 0  # the most decimals the venue's prices on this side show (`router.precision`)

    def as_message(self) -> dict[str, object]:
        """Return the contract's `considered` entry: decimals as plain strings, null when absent.

        Prices are published as `router.precision` says: rounded against the taker.
        """
        return {
            "venue": self.venue,
            "expected_price": _price_text(self.expected_price, self.places, self.side),
            "fee_bps": decimal_text(self.fee_bps),
            "quote_age_ms": self.quote_age_ms,
            "score": _price_text(self.score, self.places, self.side),
            "excluded": self.excluded,
        }


@dataclass(frozen=True, slots=True)
class RouteLeg:
    """What to take on one venue: quantity, VWAP of the levels taken, and the taker fee on it."""

    venue: str
    quantity: Decimal
    expected_price: Decimal  # VWAP of the levels taken
    expected_fee: Decimal  # quote currency: notional × fee_bps / 10⁴
    side: Side = "buy"
    places: int = 0  # the most decimals the venue's prices on this side show (`router.precision`)

    def published_price(self) -> Decimal:
        """Return `expected_price` as published: rounded against the taker (`router.precision`)."""
        return round_price(self.expected_price, price_step(self.places), self.side)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The chosen route, every venue considered, and a sentence saying why."""

    strategy: Strategy
    side: Side
    legs: tuple[RouteLeg, ...]
    considered: tuple[Considered, ...]
    reason: str
    expected_price: Decimal  # overall VWAP

    def as_message(self) -> dict[str, object]:
        """Return the execution result's `route` object: decimals as plain strings."""
        return _route_message(self.strategy, self.legs, self.considered, self.reason)


class NoRoute(RouterError):
    """No route fits the request; `reject_code` is the contract's code, `str(exc)` the human sentence.

    `reject_code` is `stale_prices` (no venue the request may use has a fresh
    usable book), `slippage_exceeded` (books could fill it, but only beyond the
    slippage limit), `insufficient_balance` (a venue that could take it cannot
    fund its leg) or `no_liquidity` (not enough depth within the limit price,
    or no venue allowed at all).
    """

    def __init__(
        self, reject_code: str, message: str, considered: tuple[Considered, ...], strategy: Strategy
    ) -> None:
        super().__init__(message)
        self.reject_code = reject_code
        self.message = message
        self.considered = considered
        self.strategy = strategy

    def as_message(self) -> dict[str, object]:
        """Return the `route` object of the rejected result: no legs, every venue considered."""
        return _route_message(self.strategy, (), self.considered, self.message)


def _route_message(
    strategy: Strategy, legs: tuple[RouteLeg, ...], considered: tuple[Considered, ...], reason: str
) -> dict[str, object]:
    return {
        "strategy": strategy,
        "legs": [
            {
                "venue": leg.venue,
                "quantity": decimal_text(leg.quantity),
                "expected_price": decimal_text(leg.published_price()),
            }
            for leg in legs
        ],
        "considered": [entry.as_message() for entry in considered],
        "reason": reason,
    }


def price_text(value: Decimal, places: int, side: Side) -> str:
    """Return a price computed from a book quoted to `places` decimals, as published (`router.precision`)."""
    return decimal_text(round_price(value, price_step(places), side))


def _price_text(value: Decimal | None, places: int, side: Side) -> str | None:
    return None if value is None else price_text(value, places, side)
