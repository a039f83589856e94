"""How a Bybit order whose fate the create answer does not tell is settled: by query, never blindly.

Bybit's create answer is only an acknowledgement (`orderId`, `orderLinkId`;
"please use the websocket to confirm the order status"), so `acknowledged` reads
the order by `orderLinkId` — realtime, then history, which "may delay" — until
it is visible and final. An acknowledged order that stays invisible raises
`AcknowledgedNotVisible` (an OutcomeUnknown): it exists, so "not found" must
never be final for it.

A 10002 ("request time exceeds the time window") on an order is not re-sent
blindly (EXCHANGES-TRADING.md §1.7 and §8: where recv_window is checked is not
documented). `after_clock_rejection` measures the clock again once, then settles
the order by query: found → its report; still absent once the venue's clock has
passed the signed timestamp + recv window + `settle_margin_ms` (no copy can be
accepted any more) → sent once more with a fresh timestamp (Bybit refuses a
reused orderLinkId, a second guard); neither within the queries →
OutcomeUnknown, for the executor to settle. `settle` is that protocol on its
own, for any order of unknown fate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from connectors.bybit.trading_errors import VENUE, AcknowledgedNotVisible, BybitClockRejected
from connectors.bybit.transport import BybitRest
from connectors.errors import OrderNotFound, OutcomeUnknown, ParseError, VenueError
from connectors.trading import OrderReport

__all__ = ["OrderSettler"]

log = structlog.get_logger(__name__)


class OrderSettler:
    """Settle the orders of one Bybit client by query: after an acknowledgement, a 10002, or a lost answer."""

    def __init__(
        self,
        rest: BybitRest,
        query: Callable[[str, str], Awaitable[OrderReport]],
        send: Callable[[dict[str, str]], Awaitable[Any]],
        *,
        recv_window_ms: int,
        settle_margin_ms: int,
        settle_delays_s: tuple[float, ...],
        visibility_delays_s: tuple[float, ...],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        """Read orders with `query(symbol, orderLinkId)`; `send(body)` creates one (only after a 10002)."""
        self._rest = rest
        self._query = query
        self._send = send
        self.recv_window_ms = recv_window_ms
        self.settle_margin_ms = settle_margin_ms
        self.settle_delays_s = settle_delays_s
        self.visibility_delays_s = visibility_delays_s
        self._sleep = sleep

    async def acknowledged(self, symbol: str, client_order_id: str, answer: Any) -> OrderReport:
        """Return the final report of the order the create `answer` acknowledged, read by query."""
        order_id = answer.get("orderId") if isinstance(answer, dict) else None
        if not isinstance(order_id, str) or not order_id:
            raise OutcomeUnknown(f"bybit acknowledged order {client_order_id} without an orderId")
        log.info("order_acknowledged", venue=VENUE, client_order_id=client_order_id, order_id=order_id)
        for pause in (*self.visibility_delays_s, None):
            try:
                report = await self._query(symbol, client_order_id)
            except OrderNotFound:
                report = None  # acknowledged but not visible yet: history "may delay"
            except (VenueError, ParseError) as exc:
                report = None
                log.warning("order_query_failed", client_order_id=client_order_id, error=str(exc))
            if report is not None and (not report.is_open or pause is None):
                return report
            if pause is not None:
                await self._sleep(pause)
        raise AcknowledgedNotVisible(
            f"bybit acknowledged order {client_order_id} (orderId {order_id}) but no query shows it yet; "
            "it exists: settle it by query",
            order_id,
        )

    async def after_clock_rejection(
        self, symbol: str, body: dict[str, str], refused: BybitClockRejected
    ) -> OrderReport:
        """Settle an order refused with 10002 by query (§1.7); send it again only once it cannot exist."""
        client_order_id = body["orderLinkId"]
        log.warning("order_clock_rejected", venue=VENUE, client_order_id=client_order_id)
        try:
            await self._rest.sync_clock(reason="rejected")
        except (VenueError, ParseError) as exc:
            raise OutcomeUnknown(
                f"bybit refused order {client_order_id} as outside the recv window and the clock could "
                f"not be measured again ({type(exc).__name__}); settle it by query"
            ) from None
        try:
            return await self.settle(symbol, client_order_id, signed_ms=refused.signed_ms)
        except OrderNotFound:
            return await self._send_again(symbol, body)

    async def settle(self, symbol: str, client_order_id: str, *, signed_ms: int | None = None) -> OrderReport:
        """Settle an order of unknown fate by query (EXCHANGES-TRADING.md §1.7); never send anything.

        Query its orderLinkId (realtime, then history), pausing `settle_delays_s`
        between queries, until it shows or no copy of it can still be accepted:
        the venue clock past `signed_ms` (the timestamp it was signed with; by
        default now, for an answer just lost) + recv window + `settle_margin_ms`.
        Raise OrderNotFound only then, OutcomeUnknown if the queries cannot tell.
        Not for an acknowledged order (`AcknowledgedNotVisible`): that one exists.
        """
        signed = self._rest.clock.now_ms() if signed_ms is None else signed_ms
        closes_ms = signed + self.recv_window_ms + self.settle_margin_ms  # venue clock
        delays = list(self.settle_delays_s)
        queries, closing = 0, False
        while True:
            queries += 1
            try:
                return await self._query(symbol, client_order_id)
            except OrderNotFound:
                left_s = (closes_ms - self._rest.clock.now_ms()) / 1000
                if left_s <= 0:
                    log.warning("order_settled_absent", venue=VENUE, client_order_id=client_order_id)
                    raise
                if delays:
                    pause = min(delays.pop(0), left_s)
                elif not closing and left_s <= (self.recv_window_ms + self.settle_margin_ms) / 1000:
                    # The schedule ran out before the window closed (the order was signed ahead of
                    # now): wait for it to close and ask once more, rather than leave it unknown.
                    pause, closing = left_s, True
                else:
                    break
            except (VenueError, ParseError) as exc:
                log.warning("order_query_failed", client_order_id=client_order_id, error=str(exc))
                if not delays:
                    break
                pause = delays.pop(0)
            await self._sleep(pause)
        raise OutcomeUnknown(
            f"bybit order {client_order_id}: no final answer after {queries} queries; settle it by query"
        )

    async def _send_again(self, symbol: str, body: dict[str, str]) -> OrderReport:
        client_order_id = body["orderLinkId"]
        log.warning("order_resent_after_clock_rejection", venue=VENUE, client_order_id=client_order_id)
        try:
            answer = await self._send(body)
        except BybitClockRejected:
            raise OutcomeUnknown(
                f"bybit refused order {client_order_id} twice as outside the recv window; settle it by query"
            ) from None
        return await self.acknowledged(symbol, client_order_id, answer)
