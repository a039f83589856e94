"""Coinbase's default feed (no `depth`) follows the best bid/offer as the book moves, through the simulator.

The `ticker` channel moves only on trades; the default feed derives the top of book from
`level2`, so every change of the best bid or offer reaches the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

import pytest
from kafka_support import wait_until

from connectors.coinbase import CoinbaseAdapter
from connectors.sim import ExchangeSimulator
from connectors.stream import StreamRunner
from connectors.types import Quote

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USD"
D = Decimal


def top(quote: Quote) -> tuple[Decimal, Decimal]:
    return quote.bid, quote.ask


async def test_default_feed_serves_every_change_of_the_best_bid_and_offer_from_level2() -> None:
    quotes: list[Quote] = []
    async with ExchangeSimulator(("coinbase",), (SYMBOL,), seed=5, autoplay=False) as sim:
        adapter = CoinbaseAdapter([SYMBOL], ws_url=sim.ws_url("coinbase"))
        runner = StreamRunner(adapter, quotes.append)
        task = asyncio.create_task(runner.run(), name="coinbase-default-feed-under-test")
        try:
            await sim.wait_subscribed("coinbase", SYMBOL)
            assert sim.subscribe_requests("coinbase")[0] == {
                "type": "subscribe",
                "product_ids": [SYMBOL],
                "channel": "level2",
            }
            tops = [("64000.01", "64000.02"), ("64000.50", "64000.60"), ("63999.90", "64000.00")]
            for bid, ask in tops:
                await sim.push_quote("coinbase", SYMBOL, bid, "0.5", ask, "0.25")
                await wait_until(lambda b=bid, a=ask: bool(quotes) and top(quotes[-1]) == (D(b), D(a)), 10)  # type: ignore[misc]
                assert (quotes[-1].bid_qty, quotes[-1].ask_qty) == (D("0.5"), D("0.25"))
                bids, asks = sim.depth("coinbase", SYMBOL)
                assert top(quotes[-1]) == (bids[0][0], asks[0][0])
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # A top-of-book feed: one level a side, the quote standing for a one-level book.
    assert all(q.bids == () and q.asks == () and q.venue == "coinbase" for q in quotes)
    assert all(q.exchange_ns is not None for q in quotes)
