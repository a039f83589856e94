"""Every venue's default (top-of-book) feed refuses crossed quotes and out-of-order updates, and counts them.

Each venue is driven through the parser its adapter builds without `depth`, with frames in
the venue's documented shapes; order is judged by what the venue offers (Binance `u`, Bybit
`u` and `ts`, OKX `seqId` and `ts`, Coinbase `sequence_num`, Kraken `timestamp`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from decimal import Decimal

import orjson
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.server import ServerConnection, serve

from connectors.base import Parser
from connectors.binance import BinanceAdapter
from connectors.book import BookInvalid, quote_rejects
from connectors.metrics import init_venue_metrics
from connectors.registry import build_adapter
from connectors.stream import StreamRunner
from connectors.top_guard import RESTART_AFTER_OUT_OF_ORDER
from connectors.types import Quote

D = Decimal
TS_MS = 1_672_304_484_978


def rfc3339(order: int) -> str:
    return f"2023-09-25T09:04:{order:02d}.742648Z"


def binance(bid: str, ask: str, order: int) -> bytes:
    data = {"u": order, "s": "BTCUSDT", "b": bid, "B": "1", "a": ask, "A": "2"}
    return orjson.dumps({"stream": "btcusdt@bookTicker", "data": data})


def bybit(bid: str, ask: str, order: int) -> bytes:
    data = {"s": "BTCUSDT", "b": [[bid, "1"]], "a": [[ask, "2"]], "u": order, "seq": 7961638724}
    message = {"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": TS_MS, "data": data, "cts": 1}
    return orjson.dumps(message)


def okx(bid: str, ask: str, order: int, ts_ms: int = TS_MS) -> bytes:
    data = {"asks": [[ask, "2", "0", "1"]], "bids": [[bid, "1", "0", "1"]], "ts": str(ts_ms), "seqId": order}
    return orjson.dumps({"arg": {"channel": "bbo-tbt", "instId": "BTC-USDT"}, "data": [data]})


def kraken(bid: str, ask: str, order: int) -> bytes:
    """A v2 ticker update: prices are JSON numbers."""
    item = f'"symbol": "BTC/USD", "bid": {bid}, "bid_qty": 1, "ask": {ask}, "ask_qty": 2'
    stamp = rfc3339(order)
    return f'{{"channel": "ticker", "type": "update", "data": [{{{item}, "timestamp": "{stamp}"}}]}}'.encode()


def coinbase(bid: str, ask: str, order: int) -> bytes:
    """A level2 snapshot event: it replaces the product's book whole, like a ticker would."""
    updates = [
        {"side": side, "event_time": rfc3339(order), "price_level": price, "new_quantity": qty}
        for side, price, qty in (("bid", bid, "1"), ("offer", ask, "2"))
    ]
    event = {"type": "snapshot", "product_id": "BTC-USD", "updates": updates}
    envelope = {"channel": "l2_data", "client_id": "", "timestamp": rfc3339(order), "sequence_num": order}
    return orjson.dumps({**envelope, "events": [event]})


FRAMES: dict[str, tuple[str, Callable[[str, str, int], bytes]]] = {
    "binance": ("BTC-USDT", binance),
    "bybit": ("BTC-USDT", bybit),
    "okx": ("BTC-USDT", okx),
    "coinbase": ("BTC-USD", coinbase),
    "kraken": ("BTC-USD", kraken),
}


def default_parser(venue: str) -> Parser:
    symbol, _ = FRAMES[venue]
    return build_adapter(venue, [symbol]).new_parser()


def rejected(venue: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("smartroute_quotes_rejected_total", {"venue": venue, "reason": reason})
    return -1.0 if value is None else value


def parse(parser: Parser, frame: bytes) -> list[Quote]:
    return parser.parse(frame, 1)


@pytest.mark.parametrize("venue", sorted(FRAMES))
def test_refused_quotes_are_counted_from_zero_per_venue_and_reason(venue: str) -> None:
    init_venue_metrics(venue)

    assert rejected(venue, "crossed") >= 0
    assert rejected(venue, "out_of_order") >= 0


@pytest.mark.parametrize("venue", sorted(FRAMES))
def test_a_crossed_top_of_book_is_refused_withdrawn_and_counted(venue: str) -> None:
    _, frame = FRAMES[venue]
    parser = default_parser(venue)
    init_venue_metrics(venue)
    crossed_before = rejected(venue, "crossed")
    (served,) = parse(parser, frame("100", "101", 5))

    if venue == "coinbase":
        # A level2 snapshot that is crossed is held, not served; an update that crosses the book
        # discards it. Either way nothing crossed is served.
        assert parse(parser, frame("101", "100", 6)) == []
    else:
        with pytest.raises(BookInvalid) as raised:
            parse(parser, frame("101", "100", 6))
        assert (raised.value.symbol, raised.value.reason) == (served.symbol, "crossed")

    assert rejected(venue, "crossed") == crossed_before + 1
    (uncrossed,) = parse(parser, frame("100.5", "101", 7))
    assert (uncrossed.bid, uncrossed.ask) == (D("100.5"), D("101"))


@pytest.mark.parametrize("venue", sorted(FRAMES))
def test_an_older_update_is_dropped_and_counted_and_a_new_connection_starts_afresh(venue: str) -> None:
    _, frame = FRAMES[venue]
    parser = default_parser(venue)
    init_venue_metrics(venue)
    before = rejected(venue, "out_of_order")
    parse(parser, frame("100", "101", 5))

    assert parse(parser, frame("99", "100", 3)) == []
    assert rejected(venue, "out_of_order") == before + 1
    (newer,) = parse(parser, frame("99", "100", 6))
    assert newer.bid == D("99")
    # A reconnect may restart the numbering: the first quote of a new connection is served.
    (restarted,) = parse(default_parser(venue), frame("98", "99", 3))
    assert restarted.bid == D("98")


def test_binance_issue_example_crossed_then_older_book_ticker_is_never_served() -> None:
    parser = default_parser("binance")
    (first,) = parse(parser, binance("100", "101", 5))

    with pytest.raises(BookInvalid, match="crossed"):
        parse(parser, binance("101", "100", 6))
    assert parse(parser, binance("101", "100", 7)) == []  # still crossed: refused quietly
    assert parse(parser, binance("100", "101", 3)) == []  # u 3 after u 5
    assert first.seq == 5


def test_binance_checked_path_refuses_like_the_fast_path() -> None:
    parser = BinanceAdapter(["BTC-USDT"]).new_parser()
    checked = parser._parse_checked  # type: ignore[attr-defined]  # the general path alone
    checked(binance("100", "101", 5), 1)

    with pytest.raises(BookInvalid, match="crossed"):
        checked(binance("101", "100", 6), 1)
    assert checked(binance("99", "100", 4), 1) == []
    assert [q.seq for q in checked(binance("99", "100", 7), 1)] == [7]


def test_okx_seq_id_restarting_lower_with_a_later_ts_is_a_renumbering_not_old() -> None:
    parser = default_parser("okx")
    parse(parser, okx("100", "101", 500))

    assert parse(parser, okx("100", "101", 400, ts_ms=TS_MS)) == []
    (renumbered,) = parse(parser, okx("100", "102", 3, ts_ms=TS_MS + 1))
    assert (renumbered.seq, renumbered.ask) == (3, D("102"))


def test_kraken_ticker_without_timestamp_cannot_be_judged_old_and_is_served() -> None:
    parser = default_parser("kraken")
    parse(parser, kraken("100", "101", 9))
    item = {"symbol": "BTC/USD", "bid": 99, "bid_qty": 1, "ask": 100, "ask_qty": 2}

    (quote,) = parse(parser, orjson.dumps({"channel": "ticker", "type": "update", "data": [item]}))

    assert quote.exchange_ns is None and quote.bid == D("99")


def test_a_venue_that_keeps_sending_older_ids_is_taken_to_have_renumbered() -> None:
    parser = default_parser("binance")
    parse(parser, binance("100", "101", 10_000))
    for number in range(RESTART_AFTER_OUT_OF_ORDER - 1):
        assert parse(parser, binance("100", "101", 1 + number)) == []

    with pytest.raises(BookInvalid) as raised:
        parse(parser, binance("100", "101", RESTART_AFTER_OUT_OF_ORDER))
    (quote,) = parse(parser, binance("100", "101", RESTART_AFTER_OUT_OF_ORDER + 1))

    assert raised.value.reason == "sequence"
    assert quote.seq == RESTART_AFTER_OUT_OF_ORDER + 1


def test_counts_are_shared_by_every_parser_of_a_venue() -> None:
    before = quote_rejects("okx").crossed
    for parser in (default_parser("okx"), default_parser("okx")):
        with contextlib.suppress(BookInvalid):
            parse(parser, okx("101", "100", 1))

    assert quote_rejects("okx").crossed == before + 2


async def test_runner_withdraws_a_crossed_book_ticker_without_reconnecting() -> None:
    """Binance bookTicker: the crossing withdraws the served quote; the connection stays up."""
    quotes: list[Quote] = []
    invalid: list[tuple[str, str, str]] = []
    done = asyncio.Event()
    connections = 0

    async def venue(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.recv()  # the SUBSCRIBE
        for frame in (binance("100", "101", 5), binance("101", "100", 6), binance("99", "100", 4)):
            await ws.send(frame)
        await ws.send(binance("100", "102", 7))
        await ws.wait_closed()

    def on_quote(quote: Quote) -> None:
        quotes.append(quote)
        if quote.seq == 7:
            done.set()

    async with asyncio.timeout(10), serve(venue, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        adapter = BinanceAdapter(["BTC-USDT"], ws_url=f"ws://127.0.0.1:{port}")
        runner = StreamRunner(adapter, on_quote, on_book_invalid=lambda *args: invalid.append(args))
        task = asyncio.create_task(runner.run(), name="binance-runner-under-test")
        try:
            await done.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    assert [(q.seq, q.bid, q.ask) for q in quotes] == [(5, D("100"), D("101")), (7, D("100"), D("102"))]
    assert invalid == [("binance", "BTC-USDT", "crossed")]
    assert connections == 1
