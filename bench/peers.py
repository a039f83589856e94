# mypy: disable-error-code="import-untyped,import-not-found,unused-ignore"
"""The ingest bench's reference clients, pointed at the loopback frame server (`bench.server`).

- `bare_websockets`: `websockets` + orjson and nothing else, the limit of our
  transport. `combined=True` reads the same combined-stream frames as
  smartroute (`/stream` + SUBSCRIBE); `combined=False` the smaller raw frames
  (`/ws` + SUBSCRIBE), PEERS.md's baseline row.
- `bare_aiohttp`: aiohttp's WebSocket client + orjson and nothing else on the
  same combined frames: the limit of the transport smartroute's runner uses.
- `cryptofeed_binance`: cryptofeed's Binance feed, TICKER channel (bookTicker),
  on `/stream?streams=...`; its symbol map comes from the server's exchangeInfo.
- `ccxt_pro_bids_asks`: ccxt.pro `binance.watch_bids_asks`, counted per frame
  handled (its watch loop returns far less often than frames arrive).

Every client counts a message once it is fully handled (`Meter.tick`) and
returns when the meter has seen its target. All run on the stdlib asyncio
loop (no uvloop), so the comparison is of the clients, not of the loops.
"""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import orjson
from websockets.asyncio.client import connect

from bench.meter import Meter

_MAX_FRAME_BYTES: Final = 16 * 2**20
_STOP_TIMEOUT_S: Final = 5.0


def stream_names(symbols: Sequence[str]) -> list[str]:
    """Return the Binance bookTicker stream names of canonical symbols (`QAA-USDT` → `qaausdt@bookTicker`)."""
    return [symbol.replace("-", "").lower() + "@bookTicker" for symbol in symbols]


async def bare_websockets(port: int, symbols: Sequence[str], meter: Meter, *, combined: bool = True) -> None:
    """Read and decode frames with websockets + orjson only, until the meter is done."""
    path = "/stream" if combined else "/ws"
    subscribe = orjson.dumps({"method": "SUBSCRIBE", "params": stream_names(symbols), "id": 1}).decode()
    async with connect(f"ws://127.0.0.1:{port}{path}", max_size=_MAX_FRAME_BYTES) as ws:
        await ws.send(subscribe)
        await ws.recv()  # the SUBSCRIBE ack comes before any data frame
        async for frame in ws:
            orjson.loads(frame)
            meter.tick()
            if meter.done.is_set():
                break


async def bare_websockets_raw(port: int, symbols: Sequence[str], meter: Meter) -> None:
    """Run the bare loop on raw `/ws` frames (no `{"stream", "data"}` wrapper)."""
    await bare_websockets(port, symbols, meter, combined=False)


async def bare_aiohttp(port: int, symbols: Sequence[str], meter: Meter) -> None:
    """Read and decode combined frames with aiohttp's WebSocket client + orjson only."""
    subscribe = orjson.dumps({"method": "SUBSCRIBE", "params": stream_names(symbols), "id": 1}).decode()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/stream", max_msg_size=_MAX_FRAME_BYTES) as ws,
    ):
        await ws.send_str(subscribe)
        await ws.receive()  # the SUBSCRIBE ack comes before any data frame
        async for message in ws:
            orjson.loads(message.data)
            meter.tick()
            if meter.done.is_set():
                break


def _loopback_cryptofeed(port: int) -> Any:
    """Return a cryptofeed Binance subclass whose endpoints are the loopback server.

    cryptofeed only accepts `wss://` addresses (`WSAsyncConn.__init__`); the
    connection class its feeds instantiate is swapped for one that also takes
    the loopback `ws://` address, which is the only change to its code path.
    """
    import cryptofeed.feed  # noqa: PLC0415 - an optional bench dependency
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn  # noqa: PLC0415
    from cryptofeed.exchanges import Binance  # noqa: PLC0415

    class LoopbackWSConn(WSAsyncConn):  # type: ignore[misc]
        def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
            super().__init__("wss://" + address.removeprefix("ws://"), *args, **kwargs)
            self.address = address

    cryptofeed.feed.WSAsyncConn = LoopbackWSConn

    class LoopbackBinance(Binance):  # type: ignore[misc]
        # cryptofeed's own (mutable) class attributes, overridden as its docs show.
        websocket_endpoints = [WebsocketEndpoint(f"ws://127.0.0.1:{port}")]  # noqa: RUF012
        rest_endpoints = [  # noqa: RUF012
            RestEndpoint(f"http://127.0.0.1:{port}", routes=Routes("/api/v3/exchangeInfo"))
        ]

    return LoopbackBinance


async def cryptofeed_binance(port: int, symbols: Sequence[str], meter: Meter) -> None:
    """Run cryptofeed's Binance TICKER feed on the loopback server until the meter is done."""
    from cryptofeed import FeedHandler  # noqa: PLC0415
    from cryptofeed.defines import TICKER  # noqa: PLC0415

    feed_class = _loopback_cryptofeed(port)

    async def on_ticker(ticker: Any, receipt_timestamp: float) -> None:
        meter.tick()

    handler = FeedHandler(config={"uvloop": False, "log": {"disabled": True}})
    # Construction fetches exchangeInfo with a blocking `requests` call: keep it off the loop.
    feed = await asyncio.to_thread(
        feed_class, symbols=list(symbols), channels=[TICKER], callbacks={TICKER: on_ticker}
    )
    handler.add_feed(feed)
    handler.run(start_loop=False, install_signal_handlers=False)
    try:
        await meter.done.wait()
    finally:
        async with asyncio.timeout(_STOP_TIMEOUT_S):
            await handler.stop_async()


async def ccxt_pro_bids_asks(port: int, symbols: Sequence[str], meter: Meter) -> None:
    """Run ccxt.pro `binance.watch_bids_asks` on the loopback server until the meter is done.

    ccxt rewrites the current Decimal context in place (rounding HALF_UP, Underflow
    trapped), and that context object is shared by every task of the process: it runs
    in a private context, so smartroute's money math around it is never affected.
    """
    with decimal.localcontext():
        await _ccxt_pro_bids_asks(port, symbols, meter)


async def _ccxt_pro_bids_asks(port: int, symbols: Sequence[str], meter: Meter) -> None:
    import ccxt.pro  # noqa: PLC0415 - an optional bench dependency

    exchange = ccxt.pro.binance({"options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False}})
    exchange.urls["api"]["public"] = f"http://127.0.0.1:{port}/api/v3"
    exchange.urls["api"]["ws"]["spot"] = f"ws://127.0.0.1:{port}/ws"
    handle = exchange.handle_bids_asks

    def counting_handler(client: Any, message: Any) -> None:
        handle(client, message)
        meter.tick()

    # handle_message looks the handler up on the instance for every frame.
    exchange.handle_bids_asks = counting_handler
    unified = [symbol.replace("-", "/") for symbol in symbols]

    async def watch() -> None:
        while True:
            await exchange.watch_bids_asks(unified)

    watcher = asyncio.create_task(watch(), name="ccxt-watch-bids-asks")
    try:
        done = asyncio.create_task(meter.done.wait())
        await asyncio.wait({watcher, done}, return_when=asyncio.FIRST_COMPLETED)
        if watcher.done():
            done.cancel()
            watcher.result()  # it failed before the meter was done: say why
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        async with asyncio.timeout(_STOP_TIMEOUT_S):
            await exchange.close()
