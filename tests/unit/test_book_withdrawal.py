"""A book that fails its integrity rule is out of service in the whole daemon until it has resynced.

The daemon's own wiring is under test: real StreamRunners, built by `Daemon` from a config, read
scripted frames from loopback WebSocket servers; the daemon's cache, detector and router act on
them. After a gap (Bybit) or a checksum failure (Kraken) and before the resync snapshot, the
venue's quote is served by nobody: not by the cache, not to the detector (its opportunity closes
at once, and none is opened on it again), not to the router (an order goes to the other venue).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from connectors.kraken.checksum import book_checksum
from connectors.types import Level
from daemon.app import Daemon
from daemon.config import load_config
from router.detector import Opportunity

SYMBOL = "BTC-USDT"
KRAKEN_PRECISION = (1, 8)


class ScriptedVenue:
    """A loopback WebSocket venue whose frames the test sends one by one; it keeps every request."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.url = ""
        self._ws: ServerConnection | None = None
        self._connected = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        self._ws = ws
        self._connected.set()
        async for message in ws:
            self.requests.append(orjson.loads(message))

    async def send(self, frame: dict[str, Any] | str) -> None:
        await asyncio.wait_for(self._connected.wait(), 10)
        assert self._ws is not None
        await self._ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    def ops(self, key: str) -> list[object]:
        return [request.get(key) for request in self.requests]


@contextlib.asynccontextmanager
async def serving(venue: ScriptedVenue) -> AsyncIterator[ScriptedVenue]:
    async with serve(venue.handler, "127.0.0.1", 0) as server:
        venue.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield venue


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for an effect of loopback I/O, polling: the runner offers nothing to await."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - a value moved by a callback; nothing to await
            await asyncio.sleep(0.005)


def book_ticker(update_id: int, bid: str, ask: str) -> dict[str, Any]:
    data = {"u": update_id, "s": "BTCUSDT", "b": bid, "B": "5", "a": ask, "A": "5"}
    return {"stream": "btcusdt@bookTicker", "data": data}


class BybitScript:
    """Bybit `orderbook.50`: the fault is a delta whose `u` skips one; the resync is a resubscription."""

    venue = "bybit"
    reason = "gap"
    config = "depth = 50"

    @staticmethod
    def _frame(kind: str, u: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        data = {
            "s": "BTCUSDT",
            "b": [[str(p), str(q)] for p, q in bids],
            "a": [[str(p), str(q)] for p, q in asks],
            "u": u,
            "seq": u,
        }
        return {"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": 1, "cts": 1, "data": data}

    def snapshot(self, seq: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        return self._frame("snapshot", seq, bids, asks)

    def update(self, seq: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        return self._frame("delta", seq, bids, asks)

    def fault(self, seq: int, bids: list[Level], asks: list[Level]) -> dict[str, Any]:
        """Return an update that cannot follow `seq`."""
        return self._frame("delta", seq + 2, bids, asks)  # the update after `seq` was lost on the way

    def resync_requested(self, venue: ScriptedVenue) -> bool:
        return venue.ops("op") == ["subscribe", "unsubscribe", "subscribe"]


class KrakenScript:
    """Kraken `book` depth 10: every frame carries the CRC32 of the book; the fault is a wrong one."""

    venue = "kraken"
    reason = "checksum"
    config = "depth = 10"

    def __init__(self) -> None:
        self._bids: dict[D, D] = {}
        self._asks: dict[D, D] = {}

    def _frame(self, kind: str, bids: list[Level], asks: list[Level], *, corrupt: bool = False) -> str:
        if kind == "snapshot":
            self._bids, self._asks = {}, {}
        for side, levels in ((self._bids, bids), (self._asks, asks)):
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
        top_bids = sorted(self._bids.items(), reverse=True)[:10]
        top_asks = sorted(self._asks.items())[:10]
        checksum = book_checksum(
            top_bids, top_asks, price_decimals=KRAKEN_PRECISION[0], qty_decimals=KRAKEN_PRECISION[1]
        )
        if corrupt:
            checksum ^= 1

        def side_text(levels: list[Level]) -> str:
            return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)

        item = (
            f'{{"symbol":"BTC/USDT","bids":[{side_text(bids)}],"asks":[{side_text(asks)}],'
            f'"checksum":{checksum}}}'
        )
        return f'{{"channel":"book","type":"{kind}","data":[{item}]}}'

    def snapshot(self, seq: int, bids: list[Level], asks: list[Level]) -> str:
        return self._frame("snapshot", bids, asks)

    def update(self, seq: int, bids: list[Level], asks: list[Level]) -> str:
        return self._frame("update", bids, asks)

    def fault(self, seq: int, bids: list[Level], asks: list[Level]) -> str:
        return self._frame("update", bids, asks, corrupt=True)

    def resync_requested(self, venue: ScriptedVenue) -> bool:
        return venue.ops("method") == ["subscribe", "unsubscribe", "subscribe"]


def config_text(tmp_path: Path, binance_url: str, script: BybitScript | KrakenScript, url: str) -> str:
    return f"""
[daemon]
http_port = 0
state_dir = "{tmp_path / "state"}"
[kafka]
bootstrap_servers = "127.0.0.1:9"
[venues.binance]
symbols = ["{SYMBOL}"]
ws_url = "{binance_url}"
taker_fee_bps = 10
[venues.{script.venue}]
symbols = ["{SYMBOL}"]
ws_url = "{url}"
taker_fee_bps = 10
{script.config}
"""


@pytest.mark.parametrize("script", [BybitScript(), KrakenScript()], ids=["bybit-gap", "kraken-checksum"])
async def test_a_failed_book_is_served_to_nobody_until_it_has_resynced(
    tmp_path: Path, script: BybitScript | KrakenScript
) -> None:
    venue = script.venue
    async with serving(ScriptedVenue()) as binance, serving(ScriptedVenue()) as other:
        config = tmp_path / "smartroute.toml"
        config.write_text(config_text(tmp_path, binance.url, script, other.url))
        daemon = Daemon(load_config(config, environ={}))
        assert daemon.detector is not None and daemon.router is not None
        events: list[Opportunity] = []
        daemon.detector.on_event = events.append
        router, cache = daemon.router.router, daemon.cache

        def served(bid: Level | None = None) -> bool:
            entry = cache.get(venue, SYMBOL)
            return entry is not None and (bid is None or (entry.quote.bid, entry.quote.bid_qty) == bid)

        def binance_update(u: int) -> bool:
            entry = cache.get("binance", SYMBOL)
            return entry is not None and entry.quote.seq == u

        tasks = [asyncio.create_task(r.run(), name=f"feed:{v}") for v, r in daemon.runners.items()]
        try:
            async with asyncio.timeout(20):
                await binance.send(book_ticker(1, "100", "100.1"))
                await wait_for(lambda: len(other.requests) == 1)
                bids, asks = [(D("101"), D("1")), (D("100.9"), D("2"))], [(D("101.2"), D("1"))]
                await other.send(script.snapshot(10, bids, asks))
                await other.send(script.update(11, [(D("101"), D("1.5"))], []))
                await wait_for(lambda: binance_update(1) and served((D("101"), D("1.5"))))
                opened = events[0]  # then `updated` to the new size
                assert (opened.event, opened.buy_venue, opened.sell_venue) == ("opened", "binance", venue)
                best = await router.get_best_price(SYMBOL, "sell")
                assert best is not None and best.venue == venue  # before the fault: its bid is the best

                await other.send(script.fault(11, [(D("101"), D("3"))], []))
                # The runner asks for the resync right after telling the daemon: from here on, and
                # until the new snapshot arrives, nothing may come from that book.
                await wait_for(lambda: script.resync_requested(other))
                assert cache.get(venue, SYMBOL) is None
                assert set(cache.fresh(SYMBOL)) == {"binance"}
                seen = len(events)
                [closed] = [event for event in events if event.event == "closed"]
                assert events[-1] is closed and closed.id == opened.id
                assert daemon.detector.open_opportunities() == []
                best = await router.get_best_price(SYMBOL, "sell")
                assert best is not None and best.venue == "binance"
                result = await router.execute_with_preferences(SYMBOL, "sell", "0.5", "alice")
                assert result.status == "filled" and {fill.venue for fill in result.fills} == {"binance"}

                # Another quote re-evaluates the symbol: still nothing opens on the withdrawn book.
                await binance.send(book_ticker(2, "100", "100.05"))
                await wait_for(lambda: binance_update(2))
                assert len(events) == seen and not served()

                # The resync: a new snapshot puts the venue back in service, and only its new book.
                await other.send(script.snapshot(40, [(D("101.5"), D("1"))], [(D("101.6"), D("1"))]))
                await wait_for(lambda: served((D("101.5"), D("1"))) and len(events) == seen + 1)
            reopened = events[-1]
            assert (reopened.event, reopened.sell_venue, reopened.sell_price) == ("opened", venue, D("101.5"))
            assert reopened.id != opened.id
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            daemon.router.ledger.close()
