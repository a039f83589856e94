"""LiveExecutor on the venue-neutral seam: how an unknown outcome is settled, with a scripted venue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.errors import OrderAcknowledged, OrderNotFound, OutcomeUnknown
from connectors.trading import AccountBalance, ClientIdStyle, OrderReport, SymbolRules, TradeFill
from connectors.types import Side
from router.execution import OrderLeg
from router.live import LiveExecutor, SettlePolicy

D = Decimal
RULES = SymbolRules("BTC-USD", "BTC", "USD", True, D("0.1"), D("0.0001"))


class ScriptedVenue:
    """A venue whose placement raises `placement` and whose order shows up after `invisible_for` queries."""

    venue = "kraken"
    client_id_style: ClientIdStyle = "uuid36"
    acceptance_window_ms = 1000

    def __init__(self, placement: Exception, *, invisible_for: int) -> None:
        self.placement = placement
        self.invisible_for = invisible_for
        self.sent = 0
        self.queries = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        return RULES

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        self.sent += 1
        raise self.placement

    async def query_order(self, symbol: str, client_order_id: str) -> OrderReport:
        self.queries += 1
        if self.queries <= self.invisible_for:
            raise OrderNotFound("EOrder:Unknown order", "not visible yet", 200, venue=self.venue)
        fill = TradeFill("t1", D("100"), D("0.5"), D("0.13"), "USD", 1)
        return OrderReport(
            symbol,
            "O-1",
            client_order_id,
            "buy",
            "closed",
            False,
            D("101"),
            D("0.5"),
            D("0.5"),
            D("50"),
            1,
            (fill,),
        )

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport:
        raise OrderNotFound("x", "not open", 200, venue=self.venue)

    async def order_trades(self, symbol: str, report: OrderReport) -> tuple[TradeFill, ...]:
        return report.fills

    async def open_orders(self) -> list[OrderReport]:
        return []

    async def balances(self) -> dict[str, AccountBalance]:
        return {}

    async def taker_fee_bps(self, symbol: str) -> Decimal | None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _executor(venue: ScriptedVenue, clock: Clock) -> LiveExecutor:
    return LiveExecutor(
        {"kraken": venue},
        policy=SettlePolicy(query_delays_s=(1.0, 2.0, 4.0, 8.0), finality_margin_ms=0),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )


LEG = OrderLeg("r-1", 0, "kraken", "BTC-USD", "buy", D("0.5"), D("101"))


async def test_an_acknowledged_order_is_never_taken_for_one_never_placed() -> None:
    """Invisible well past the acceptance window, it is still queried for until it appears."""
    clock = Clock()
    venue = ScriptedVenue(OrderAcknowledged("kraken accepted it as O-1; not visible", "O-1"), invisible_for=3)
    outcome = await _executor(venue, clock).execute(LEG)
    assert outcome.filled == D("0.5") and [f.venue_order_id for f in outcome.fills] == ["O-1"]
    assert venue.sent == 1 and venue.queries == 4
    assert clock.now > venue.acceptance_window_ms / 1000  # it would have been "never accepted" by then


async def test_an_unknown_outcome_is_not_found_only_once_the_window_has_passed() -> None:
    clock = Clock()
    venue = ScriptedVenue(OutcomeUnknown("timeout"), invisible_for=99)
    outcome = await _executor(venue, clock).execute(LEG)
    assert outcome.filled == 0 and "never accepted" in (outcome.error or "")
    assert venue.sent == 1 and clock.now >= venue.acceptance_window_ms / 1000


@pytest.mark.parametrize("invisible_for", [0, 1])
async def test_an_unknown_outcome_found_by_query_is_settled_from_it(invisible_for: int) -> None:
    clock = Clock()
    venue = ScriptedVenue(OutcomeUnknown("5xx"), invisible_for=invisible_for)
    outcome = await _executor(venue, clock).execute(LEG)
    assert outcome.filled == D("0.5") and venue.sent == 1
