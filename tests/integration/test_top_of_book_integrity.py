"""The default Binance feed through the simulator: a crossed or older bookTicker never reaches a decision.

Two venues stream top of book (Binance `bookTicker`, Bybit `orderbook.1`) into one cache and
detector, as the daemon wires them. Binance then sends a bookTicker older than the one served
and a crossed one, each of which would open an opportunity if it were believed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest
from kafka_support import wait_until
from prometheus_client import REGISTRY

from connectors.binance import BinanceAdapter
from connectors.bybit import BybitAdapter
from connectors.metrics import frame_counters
from connectors.sim import ExchangeSimulator
from connectors.stream import StreamRunner
from connectors.types import Quote
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USDT"
D = Decimal


class Pipeline:
    """Feeds → cache → detector, wired as `daemon.app.Daemon` wires them, without Kafka."""

    def __init__(self) -> None:
        self.cache = PriceCache()
        self.events: list[Opportunity] = []
        self.quotes: list[Quote] = []
        self.withdrawn: list[tuple[str, str, str]] = []
        self.detector = ArbitrageDetector(self.cache, {"binance": D(10), "bybit": D(10)}, self.events.append)

    def on_quote(self, quote: Quote) -> None:
        self.quotes.append(quote)
        self.cache.update(quote)
        self.detector.on_quote(quote)

    def on_book_invalid(self, venue: str, symbol: str, reason: str) -> None:
        self.withdrawn.append((venue, symbol, reason))
        self.cache.invalidate(venue, symbol)
        self.detector.evaluate(symbol)

    def last(self, venue: str) -> Quote | None:
        return next((q for q in reversed(self.quotes) if q.venue == venue), None)


def rejected(reason: str) -> float:
    labels = {"venue": "binance", "reason": reason}
    return REGISTRY.get_sample_value("smartroute_quotes_rejected_total", labels) or 0.0


async def send_and_wait_read(sim: ExchangeSimulator, frame: str) -> None:
    """Send a raw frame to the Binance connection and wait until the runner has handled it."""
    counters = frame_counters("binance")
    read = counters.messages
    await sim.send_raw("binance", frame)
    await wait_until(lambda: counters.messages > read, 10)


def book_ticker(u: int, bid: str, ask: str) -> str:
    data = {"u": u, "s": "BTCUSDT", "b": bid, "B": "1.0", "a": ask, "A": "1.0"}
    return orjson.dumps({"stream": "btcusdt@bookTicker", "data": data}).decode()


@pytest.fixture
async def world() -> AsyncIterator[tuple[ExchangeSimulator, Pipeline]]:
    pipeline = Pipeline()
    async with ExchangeSimulator(("binance", "bybit"), (SYMBOL,), seed=2, autoplay=False) as sim:
        runners = [
            StreamRunner(adapter, pipeline.on_quote, on_book_invalid=pipeline.on_book_invalid)
            for adapter in (
                BinanceAdapter([SYMBOL], ws_url=sim.ws_url("binance")),
                BybitAdapter([SYMBOL], ws_url=sim.ws_url("bybit")),
            )
        ]
        tasks = [asyncio.create_task(r.run(), name=f"feed-under-test-{n}") for n, r in enumerate(runners)]
        try:
            for venue in ("binance", "bybit"):
                await sim.wait_subscribed(venue, SYMBOL)
            await sim.push_quote("binance", SYMBOL, "64000.00", "1.0", "64000.10", "1.0")
            await sim.push_quote("bybit", SYMBOL, "64000.00", "1.0", "64000.20", "1.0")
            await wait_until(lambda: pipeline.cache.venue_count(SYMBOL) == 2, 10)
            yield sim, pipeline
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_an_older_book_ticker_is_dropped_and_never_opens_an_opportunity(
    world: tuple[ExchangeSimulator, Pipeline],
) -> None:
    sim, pipeline = world
    served = pipeline.last("binance")
    assert served is not None and served.seq is not None
    before = rejected("out_of_order")

    # An older update whose bid (64200) is far above Bybit's ask: believed, it would open an opportunity.
    await send_and_wait_read(sim, book_ticker(served.seq - 1, "64200.00", "64200.10"))

    assert pipeline.events == []
    assert rejected("out_of_order") == before + 1
    entry = pipeline.cache.get("binance", SYMBOL)
    assert entry is not None and entry.quote.seq == served.seq


async def test_a_crossed_book_ticker_is_withdrawn_and_never_opens_an_opportunity(
    world: tuple[ExchangeSimulator, Pipeline],
) -> None:
    sim, pipeline = world
    served = pipeline.last("binance")
    assert served is not None and served.seq is not None
    before = rejected("crossed")

    # Bid 64200 above its own ask and above Bybit's ask: the "selling into that bid".
    await send_and_wait_read(sim, book_ticker(served.seq + 1, "64200.00", "64150.00"))

    assert pipeline.events == []
    assert rejected("crossed") == before + 1
    assert pipeline.withdrawn == [("binance", SYMBOL, "crossed")]
    assert pipeline.cache.get("binance", SYMBOL) is None
    assert all(not q.crossed for q in pipeline.quotes)
    # The venue uncrosses: it serves again.
    await sim.send_raw("binance", book_ticker(served.seq + 2, "64000.00", "64000.10"))
    await wait_until(lambda: pipeline.cache.get("binance", SYMBOL) is not None, 10)
