"""A scripted market for the isolation and reaction scenarios, served from its own process.

`python -m bench.worker market --period-ms P --hold-ms H` serves Binance and
Bybit (`connectors.sim.ExchangeSimulator`, no autoplay) for BTC-USDT and
ETH-USDT, prints the venues' URLs as one JSON line and drives the market
until its stdin closes; then it prints one JSON line: every dislocation it
made. Both symbols rest at one price on both venues (re-sent every 100 ms,
so the quotes stay fresh); every `P` ms one venue's ETH-USDT bid jumps ~50 bps
above the other venue's ask (an arbitrage opportunity opens) and returns to
rest `H` ms later (it closes). The venue alternates, so arbitrages done on
them leave positions flat. Each dislocation's bid is unique (2010.00 +
n × 0.01), so the opportunity it opened is found again by its `sell_price`.

For each dislocation it records `sent_ns` (wall clock, just before the quote
is handed to the simulator) and `written_ns` (once the simulator's connections
wrote it out): a loaded machine that delays the simulator itself shows as a
longer write, not as detector latency.
"""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal
from typing import Final

import orjson

from connectors.sim import ExchangeSimulator

VENUES: Final = ("binance", "bybit")
LOAD_SYMBOL: Final = "BTC-USDT"
ARB_SYMBOL: Final = "ETH-USDT"
_REST: Final = {LOAD_SYMBOL: ("50000.00", "50000.10"), ARB_SYMBOL: ("2000.00", "2000.10")}
_QTY: Final = "100"
_REFRESH_S: Final = 0.1
_BASE_BID: Final = Decimal("2010.00")
_STEP: Final = Decimal("0.01")
_SPREAD: Final = Decimal("0.10")


def dislocated_bid(number: int) -> Decimal:
    """Return the bid of dislocation `number` (unique within a run)."""
    return _BASE_BID + number * _STEP


def dislocation_number(sell_price: str) -> int:
    """Return which dislocation an opportunity's `sell_price` comes from."""
    return int((Decimal(sell_price).quantize(_STEP) - _BASE_BID) / _STEP)


class ScriptedMarket:
    """Drive the simulator: rest prices, refreshed; a dislocation every period, held for `hold_s`."""

    def __init__(self, sim: ExchangeSimulator, period_s: float, hold_s: float) -> None:
        self.sim = sim
        self.period_s = period_s
        self.hold_s = hold_s
        self.records: list[dict[str, object]] = []

    async def rest(self, venue: str, symbol: str) -> None:
        """Put `symbol` back at its resting price on `venue`."""
        bid, ask = _REST[symbol]
        await self.sim.push_quote(venue, symbol, bid, _QTY, ask, _QTY)

    async def refresh(self) -> None:
        """Re-send the resting quotes on both venues every 100 ms (a dislocated venue is left as it is)."""
        while True:
            for venue in VENUES:
                await self.rest(venue, LOAD_SYMBOL)
            await asyncio.sleep(_REFRESH_S)

    async def dislocate(self) -> None:
        """Open and close one dislocation per period, alternating venues."""
        number = 0
        next_s = time.monotonic()
        while True:
            venue = VENUES[number % 2]
            bid = dislocated_bid(number)
            sent_ns = time.time_ns()
            await self.sim.push_quote(venue, ARB_SYMBOL, bid, _QTY, bid + _SPREAD, _QTY)
            await self.sim.flush(venue)
            self.records.append(
                {"n": number, "venue": venue, "sent_ns": sent_ns, "written_ns": time.time_ns()}
            )
            await asyncio.sleep(self.hold_s)
            await self.rest(venue, ARB_SYMBOL)
            await self.rest(VENUES[(number + 1) % 2], ARB_SYMBOL)  # keeps the other side fresh too
            number += 1
            next_s += self.period_s
            await asyncio.sleep(max(0.0, next_s - time.monotonic()))


async def serve_market(period_s: float, hold_s: float) -> None:
    """Serve the scripted market until stdin closes; print the URLs first and the dislocations last."""
    async with ExchangeSimulator(VENUES, (LOAD_SYMBOL, ARB_SYMBOL), autoplay=False, seed=7) as sim:
        market = ScriptedMarket(sim, period_s, hold_s)
        for venue in VENUES:
            for symbol in _REST:
                await market.rest(venue, symbol)
        sys.stdout.write(orjson.dumps({venue: sim.ws_url(venue) for venue in VENUES}).decode() + "\n")
        sys.stdout.flush()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(market.refresh()), tg.create_task(market.dislocate())]
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            for task in tasks:
                task.cancel()
        sys.stdout.write(orjson.dumps(market.records).decode() + "\n")
        sys.stdout.flush()
