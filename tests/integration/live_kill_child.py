"""A live router process for the kill test: `python live_kill_child.py CONFIG VENUE PHASE [KILL_AT POINT]`.

The router is the daemon's own (`daemon.routing.build_router` from the live config at
CONFIG, credentials from this process's environment, orders to the venue's `trade_url`),
answering the burst of order requests `burst_requests(VENUE)` one after another as the
router service does, each result printed on stdout as `result <json>`.

PHASE "first": answer the burst; the KILL_AT-th order (1-based) is where the process dies:
- POINT "unanswered": before sending that order, say `placing <client order id>` and wait for
  a line on stdin (the test makes the venue hold its answer, then replies); the test SIGKILLs
  this process once the venue executed the order, whose answer never arrived;
- POINT "unrecorded": the process SIGKILLs itself right after the venue answered that order,
  before the executor returns, so the ledger never records the outcome.
PHASE "restart": what the router service does at start, `recover()` (every leg in flight is
settled by querying the venue, never sent again), then the whole burst again, as Kafka
redelivers every request whose offset was not committed: those already answered are
replayed from the ledger, the others executed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path

import orjson
import structlog

from connectors.kraken.private import REST_BUDGET
from connectors.kraken.trading import KrakenTrading
from connectors.trading import OrderReport, TradingVenue
from connectors.types import Quote, Side
from daemon.config import load_config
from daemon.routing import RouterParts, RouterSections, build_router
from router.cache import PriceCache

BURST = 20
QUANTITY = "0.01"
BID, ASK, DEPTH = Decimal("64000"), Decimal("64001"), Decimal("50")  # every fake's book, deep enough
SYMBOLS = {"okx": "BTC-USDT", "bybit": "BTC-USDT", "kraken": "BTC-USDT", "coinbase": "BTC-USD"}
# Kraken's REST counter (starter tier: 15, −0.33/s) would spread the burst's ~120 units of queries
# over minutes; the fake and the client both get a wider one (the counters are tested elsewhere).
KRAKEN_REST_CAPACITY, KRAKEN_REST_DECAY_PER_S = 500.0, 50.0


def burst_requests(venue: str) -> list[dict[str, object]]:
    """Return the burst: 20 IOC orders on `venue`, buys and sells in turn so that balances last."""
    return [
        {
            "v": 1,
            "request_id": f"kill-{n:02d}",
            "user_id": "desk",
            "kind": "order",
            "symbol": SYMBOLS[venue],
            "side": "buy" if n % 2 == 0 else "sell",
            "quantity": QUANTITY,
            "venues": [venue],
        }
        for n in range(BURST)
    ]


class KillingVenue:
    """The venue's client, unchanged except at the `kill_at`-th order: see the module docstring."""

    def __init__(self, inner: TradingVenue, kill_at: int, point: str) -> None:
        self._inner = inner
        self._kill_at = kill_at
        self._point = point
        self._orders = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        self._orders += 1
        if self._orders != self._kill_at:
            return await self._inner.place_order(symbol, side, quantity, price, client_order_id)
        if self._point == "unanswered":
            say(f"placing {client_order_id}")
            await asyncio.to_thread(sys.stdin.readline)  # the venue is told to hold the answer
            await self._inner.place_order(symbol, side, quantity, price, client_order_id)
            raise AssertionError("the venue answered an order it was told to hold")
        await self._inner.place_order(symbol, side, quantity, price, client_order_id)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: SIGKILL")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def seed(cache: PriceCache, venue: str) -> None:
    """Put the fake's book in the cache, as the venue's feed would."""
    now = time.time_ns()
    bids, asks = ((BID, DEPTH),), ((ASK, DEPTH),)
    cache.update(Quote(venue, SYMBOLS[venue], BID, DEPTH, ASK, DEPTH, None, now, None, bids, asks))


def widen_kraken_counter(parts: RouterParts) -> None:
    assert parts.live is not None
    kraken = parts.live.connectors.get("kraken")
    if isinstance(kraken, KrakenTrading):
        kraken.rest.throttle.budget(REST_BUDGET, KRAKEN_REST_CAPACITY, KRAKEN_REST_DECAY_PER_S)


async def main(config: Path, venue: str, phase: str, kill_at: int, point: str) -> None:
    cache = PriceCache(ttl_ms=600_000, max_quote_age_ms=600_000)
    parts = build_router(RouterSections.of(load_config(config, environ={})), cache, environ=os.environ)
    assert parts.live is not None and set(parts.live.venues) == {venue}
    widen_kraken_counter(parts)
    if phase == "first":
        parts.live.connectors[venue] = KillingVenue(parts.live.connectors[venue], kill_at, point)  # type: ignore[assignment]
    try:
        await parts.connect()
        seed(cache, venue)
        if phase == "restart":
            for result in await parts.router.recover():
                say("result " + result.decode())
        for request in burst_requests(venue):
            handled = await parts.router.handle(orjson.dumps(request))
            assert handled.result is not None
            say("result " + handled.result.decode())
    finally:
        await parts.disconnect()
        parts.ledger.close()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the protocol
    config, venue, phase, *kill = sys.argv[1:]
    asyncio.run(main(Path(config), venue, phase, int(kill[0]) if kill else 0, kill[1] if kill else ""))
