"""Ingest scenario: each client reads the loopback server's bookTicker frames as fast as it can.

Clients (one fresh process per run, `bench.worker ingest`):

    a      bare websockets + orjson, combined frames  (the issue's yardstick: the transport we began on)
    a_raw  bare websockets + orjson, raw frames       (PEERS.md's baseline row)
    a_http bare aiohttp + orjson, combined frames     (the limit of the transport smartroute uses now)
    b      smartroute: StreamRunner → BinanceAdapter parser → PriceCache → ArbitrageDetector
    c      cryptofeed Binance TICKER
    d      ccxt.pro watch_bids_asks
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Final

from bench.meter import Meter
from bench.peers import (
    bare_aiohttp,
    bare_websockets,
    bare_websockets_raw,
    ccxt_pro_bids_asks,
    cryptofeed_binance,
)
from connectors.registry import build_adapter
from connectors.stream import StreamRunner
from connectors.types import Quote
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity

Client = Callable[[int, Sequence[str], Meter], Awaitable[None]]


async def smartroute_pipeline(port: int, symbols: Sequence[str], meter: Meter) -> None:
    """Run the daemon's feed path (runner, parser, cache, detector) on the loopback server."""
    cache = PriceCache()
    events: list[Opportunity] = []
    detector = ArbitrageDetector(cache, {"binance": Decimal(10)}, events.append)

    def on_quote(quote: Quote) -> None:
        # Exactly what daemon.app.Daemon does with every quote.
        cache.update(quote)
        detector.on_quote(quote)
        meter.tick()

    runner = StreamRunner(build_adapter("binance", symbols, ws_url=f"ws://127.0.0.1:{port}"), on_quote)
    streaming = asyncio.create_task(runner.run(), name="bench-smartroute-feed")
    done = asyncio.create_task(meter.done.wait(), name="bench-meter")
    try:
        await asyncio.wait({streaming, done}, return_when=asyncio.FIRST_COMPLETED)
        if streaming.done():
            streaming.result()  # the runner ended before the meter was done: say why
    finally:
        for task in (streaming, done):
            task.cancel()
        await asyncio.gather(streaming, done, return_exceptions=True)


CLIENTS: Final[dict[str, Client]] = {
    "a": bare_websockets,
    "a_raw": bare_websockets_raw,
    "a_http": bare_aiohttp,
    "b": smartroute_pipeline,
    "c": cryptofeed_binance,
    "d": ccxt_pro_bids_asks,
}
LABELS: Final = {
    "a": "bare websockets + orjson (combined frames, the issue's yardstick)",
    "a_raw": "bare websockets + orjson (raw /ws frames)",
    "a_http": "bare aiohttp + orjson (combined frames, the limit of smartroute's transport)",
    "b": "smartroute connector → cache → detector",
    "c": "cryptofeed Binance TICKER",
    "d": "ccxt.pro watch_bids_asks",
}
# Which optional package each peer needs.
REQUIRES: Final = {"c": "cryptofeed", "d": "ccxt"}


async def run_client(name: str, port: int, symbols: Sequence[str], frames: int) -> dict[str, float]:
    """Run client `name` against the server on `port` until it handled `frames` frames; return its rate."""
    meter = Meter(frames)
    await CLIENTS[name](port, symbols, meter)
    return meter.result()
