"""The simulator speaks OKX v5, Coinbase Advanced Trade and Kraken WS v2 to plain WebSocket clients.

Frames are checked against the documented samples (field names, order and
types), sequences for continuity, checksums against the documented rules and
test vectors, and each fault switch for what a client would see.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import orjson
import pytest
from test_sim_depth import (
    QUOTE,
    LocalBook,
    assert_nothing_arrives,
    documented,
    http_get,
    recv_json,
    same_book,
    shape,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.sim import ExchangeSimulator, SimulatorError, VenueRules
from connectors.sim.depth import DepthEvent, DepthSnapshot
from connectors.sim.kraken import KrakenProtocol
from connectors.sim.okx import OkxProtocol
from connectors.types import Level

pytestmark = pytest.mark.integration

NEXT_QUOTE = ("64000.00", "0.10000", "64000.20", "1.25000")


async def drain(ws: ClientConnection, quiet: float = 0.3) -> list[Any]:
    """Read frames until none comes for `quiet` seconds."""
    frames = []
    while True:
        try:
            frames.append(await recv_json(ws, timeout=quiet))
        except TimeoutError:
            return frames


async def assert_closed(ws: ClientConnection, timeout: float = 3.0) -> ConnectionClosed:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await ws.recv()
    return info.value


def without(message: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in keys}


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    async with asyncio.timeout(10):
        simulator = ExchangeSimulator(
            ("okx", "coinbase", "kraken"),
            ("BTC-USDT", "BTC-USD"),
            autoplay=False,
            seed=7,
            book_levels=30,
            shutdown_grace_s=0.05,
        )
        await simulator.start()
    try:
        yield simulator
    finally:
        async with asyncio.timeout(10):
            await simulator.close()


# -- OKX ----------------------------------------------------------------------------------------


def okx_crc(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
    """The documented OKX rule, written independently: 25 levels interleaved bid:ask, signed CRC32."""
    parts: list[str] = []
    for i in range(25):
        parts += [*bids[i][:2]] if i < len(bids) else []
        parts += [*asks[i][:2]] if i < len(asks) else []
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def okx_text_book(book: LocalBook) -> tuple[list[list[str]], list[list[str]]]:
    bids, asks = book.top()
    return [[format(p.normalize(), "f"), format(q.normalize(), "f")] for p, q in bids], [
        [format(p.normalize(), "f"), format(q.normalize(), "f")] for p, q in asks
    ]


async def okx_subscribe(ws: ClientConnection, *channels: str, inst_id: str = "BTC-USDT") -> list[Any]:
    args = [{"channel": channel, "instId": inst_id} for channel in channels]
    await ws.send(orjson.dumps({"id": "7", "op": "subscribe", "args": args}).decode())
    return [await recv_json(ws) for _ in channels]


async def test_okx_control_frames_have_the_documented_shapes(sim: ExchangeSimulator) -> None:
    control = documented("okx-ws-control.jsonl")
    async with asyncio.timeout(10), connect(sim.ws_url("okx")) as ws:
        await ws.send(json.dumps({**control[0], "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
        ack, snapshot = await recv_json(ws), await recv_json(ws)
        await ws.send(
            json.dumps({"id": "9", "op": "subscribe", "args": [{"channel": "books", "instId": "X-Y"}]})
        )
        unknown = await recv_json(ws)
        await ws.send('{"op": "subscribe", "argss": []}')
        malformed = await recv_json(ws)
        await ws.send("ping")
        pong = await ws.recv()
        await okx_subscribe(ws, "tickers")
        await ws.send(json.dumps(control[3]))  # unsubscribe tickers, no id
        unsubscribed = await recv_json(ws)
    assert ack == {**control[1], "connId": ack["connId"]} and len(ack["connId"]) == 8
    assert snapshot["action"] == "snapshot"
    assert list(unknown) == list(control[2]) and (unknown["id"], unknown["code"]) == ("9", "60018")
    assert unknown["msg"].startswith("Wrong URL or channel:books,instId:X-Y doesn't exist")
    assert malformed["code"] == "60012" and malformed["event"] == "error" and "id" not in malformed
    assert pong == "pong"
    assert unsubscribed == {**control[4], "connId": ack["connId"]}


async def test_okx_books_chain_seq_ids_and_rebuild_the_book_and_bbo_follows(sim: ExchangeSimulator) -> None:
    await sim.push_quote("okx", "BTC-USDT", *QUOTE)
    async with asyncio.timeout(10), connect(sim.ws_url("okx")) as ws:
        await okx_subscribe(ws, "books", "bbo-tbt", "tickers")
        snapshot, first_bbo, first_ticker = await recv_json(ws), await recv_json(ws), await recv_json(ws)
        await sim.advance(20)
        frames = await drain(ws)
    assert shape(snapshot) == shape(documented("okx-books-snapshot.json"))
    data = snapshot["data"][0]
    assert (data["prevSeqId"], data["checksum"]) == (-1, 0) and len(data["bids"]) == 30
    assert data["bids"][0][:2] == ["64000.1", "0.5"] and data["asks"][0][:2] == ["64000.2", "1.25"]
    assert shape(first_bbo) == shape(documented("okx-bbo-tbt.json"))
    assert first_bbo["data"][0]["bids"][0][:2] == ["64000.1", "0.5"]
    assert shape(first_ticker) == shape(documented("okx-tickers.json"))
    assert (first_ticker["data"][0]["bidPx"], first_ticker["data"][0]["askSz"]) == ("64000.1", "1.25")
    book, last = LocalBook(data["bids"], data["asks"]), data["seqId"]
    updates = [f for f in frames if f.get("action") == "update"]
    assert len(updates) >= 15
    for update in updates:
        assert shape(update) == shape(documented("okx-books-update.json"))
        item = update["data"][0]
        assert item["prevSeqId"] == last and item["seqId"] > last and item["checksum"] == 0
        for side, key in (("bid", "bids"), ("ask", "asks")):
            for price, qty, _, _ in item[key]:
                book.apply(side, price, qty)
        last = item["seqId"]
    assert same_book(book.top(), sim.depth("okx", "BTC-USDT"))
    bbo = [f for f in frames if f["arg"]["channel"] == "bbo-tbt"]
    top = book.top()
    assert bbo and [Decimal(x) for x in bbo[-1]["data"][0]["bids"][0][:2]] == list(top[0][0])


async def test_okx_rest_books_has_the_documented_shape_and_the_stream_seq_id(sim: ExchangeSimulator) -> None:
    await sim.push_quote("okx", "BTC-USDT", *QUOTE)
    base = sim.rest_url("okx") + "/api/v5/market/books"
    async with asyncio.timeout(10), connect(sim.ws_url("okx")) as ws:
        await okx_subscribe(ws, "books")
        snapshot = await recv_json(ws)
        status, one = await http_get(base + "?instId=BTC-USDT")
        _, five = await http_get(base + "?instId=BTC-USDT&sz=5")
        errors = [await http_get(base + q) for q in ("", "?instId=BTC-USDT&sz=401", "?instId=DOGE-USDT")]
    assert status == 200 and shape(one) == shape(documented("okx-rest-books.json"))
    assert len(one["data"][0]["bids"]) == 1 and len(five["data"][0]["asks"]) == 5
    assert one["data"][0]["seqId"] == snapshot["data"][0]["seqId"]
    assert five["data"][0]["bids"] == snapshot["data"][0]["bids"][:5]
    assert [(s, b["code"]) for s, b in errors] == [(400, "50014"), (400, "51000"), (200, "51001")]


def test_okx_checksum_reproduces_the_documented_vectors() -> None:
    vectors = documented("test-vectors.json")["okx_checksum_strings"]
    protocol = OkxProtocol("/ws/v5/public", {"ETH-USDT": "ETH-USDT"}, "c0ffee00", checksums=True)
    protocol.handle('{"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"}]}')
    for case in ("case_more_than_25_levels", "case_fewer_than_25_levels"):
        vector = vectors[case]
        book = snapshot_of(vector["bids"], vector["asks"], tick="0.1", step="1")
        frame = json.loads(protocol.encode_snapshot("books", "ETH-USDT", None, book, 0) or "")
        assert frame["data"][0]["checksum"] == vector["crc32_signed_computed"]
        assert okx_crc(vector["bids"], vector["asks"]) == vector["crc32_signed_computed"]


async def test_okx_real_checksums_when_switched_on_and_a_bad_one_when_injected() -> None:
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("okx",), ("BTC-USDT",), autoplay=False, seed=3, okx_checksums=True) as sim,
        connect(sim.ws_url("okx")) as ws,
    ):
        await sim.push_quote("okx", "BTC-USDT", *QUOTE)
        await okx_subscribe(ws, "books")
        frames = [await recv_json(ws)]
        await sim.advance(5)
        await sim.inject_bad_checksum("okx", "BTC-USDT")
        await sim.push_quote("okx", "BTC-USDT", *NEXT_QUOTE)
        await sim.advance(2)
        frames += await drain(ws)
    book, verdicts = LocalBook(), []
    for frame in frames:
        for side, key in (("bid", "bids"), ("ask", "asks")):
            for price, qty, _, _ in frame["data"][0][key]:
                book.apply(side, price, qty)
        verdicts.append(okx_crc(*okx_text_book(book)) == frame["data"][0]["checksum"] != 0)
    bad = verdicts.index(False)
    assert bad >= 6 and all(verdicts[:bad]) and all(verdicts[bad + 1 :]) and len(verdicts) > bad + 1
    assert sim.faults_injected("okx", "bad_checksum") == 1


async def test_okx_gap_breaks_the_prev_seq_id_chain(sim: ExchangeSimulator) -> None:
    await sim.push_quote("okx", "BTC-USDT", *QUOTE)
    with pytest.raises(SimulatorError):
        await sim.inject_bad_checksum("okx", "BTC-USDT")  # checksums are 0 unless switched on
    async with asyncio.timeout(10), connect(sim.ws_url("okx")) as ws:
        await okx_subscribe(ws, "books")
        snapshot = await recv_json(ws)
        await sim.inject_gap("okx", "BTC-USDT")
        await sim.push_quote("okx", "BTC-USDT", *NEXT_QUOTE)
        update = await recv_json(ws)
    assert update["data"][0]["prevSeqId"] > snapshot["data"][0]["seqId"]


async def test_okx_cuts_a_silent_connection_but_text_pings_keep_one_open() -> None:
    rules = {"okx": VenueRules(idle_timeout_s=0.3, idle_counts_sent=True)}
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("okx",), autoplay=False, rules=rules) as sim,
        connect(sim.ws_url("okx")) as idle,
        connect(sim.ws_url("okx")) as pinging,
    ):
        for _ in range(8):
            await pinging.send("ping")
            assert await pinging.recv() == "pong"
            await asyncio.sleep(0.1)
        closed = await assert_closed(idle, timeout=0.1)  # long since cut
        await pinging.send("ping")
        assert await pinging.recv() == "pong"
    assert closed.rcvd is not None and closed.rcvd.code == 1000


async def test_okx_server_shutdown_sends_the_documented_upgrade_notice(sim: ExchangeSimulator) -> None:
    notice_doc = documented("okx-ws-control.jsonl")[5]
    async with asyncio.timeout(10), connect(sim.ws_url("okx")) as ws:
        await sim.server_shutdown("okx")
        notice = await recv_json(ws)
        closed = await assert_closed(ws)
    assert without(notice, "connId") == without(notice_doc, "connId")
    assert closed.rcvd is not None and closed.rcvd.code == 1001


# -- Coinbase -----------------------------------------------------------------------------------


async def coinbase_subscribe(ws: ClientConnection, channel: str, *products: str) -> Any:
    message: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if products:
        message["product_ids"] = list(products)
    await ws.send(orjson.dumps(message).decode())
    return await recv_json(ws)


async def test_coinbase_level2_snapshot_and_updates_number_every_message(sim: ExchangeSimulator) -> None:
    await sim.push_quote("coinbase", "BTC-USD", *QUOTE)
    async with asyncio.timeout(10), connect(sim.ws_url("coinbase")) as ws:
        subscriptions = await coinbase_subscribe(ws, "level2", "BTC-USD")
        snapshot = await recv_json(ws)
        await sim.advance(15)
        updates = await drain(ws)
    documented_snapshot = documented("coinbase-l2_data-snapshot.json")
    assert list(subscriptions) == list(documented_snapshot) and subscriptions["channel"] == "subscriptions"
    assert subscriptions["events"] == [{"subscriptions": {"level2": ["BTC-USD"]}}]
    assert shape(snapshot) == shape(documented_snapshot)
    event = snapshot["events"][0]
    assert (event["type"], event["product_id"]) == ("snapshot", "BTC-USD")
    assert {u["side"] for u in event["updates"]} == {"bid", "offer"}
    assert {"side": "bid", "price_level": "64000.1", "new_quantity": "0.5"}.items() <= event["updates"][
        0
    ].items()
    book = LocalBook()
    for message in [snapshot, *updates]:
        assert message["channel"] == "l2_data"
        for update in message["events"][0]["updates"]:
            book.apply(
                "bid" if update["side"] == "bid" else "ask", update["price_level"], update["new_quantity"]
            )
    numbers = [m["sequence_num"] for m in (subscriptions, snapshot, *updates)]
    assert numbers == list(range(len(numbers)))  # +1 per message on the connection, from 0
    assert len(updates) >= 10 and updates[0]["events"][0]["type"] == "update"
    assert same_book(book.top(), sim.depth("coinbase", "BTC-USD"))


async def test_coinbase_ticker_has_the_documented_fields_and_follows_the_bbo(sim: ExchangeSimulator) -> None:
    await sim.push_quote("coinbase", "BTC-USD", *QUOTE)
    async with asyncio.timeout(10), connect(sim.ws_url("coinbase")) as ws:
        await coinbase_subscribe(ws, "ticker", "BTC-USD")
        snapshot = await recv_json(ws)
        await sim.push_quote("coinbase", "BTC-USD", *NEXT_QUOTE)
        update = await recv_json(ws)
    assert shape(snapshot) == shape(documented("coinbase-ticker.json"))
    assert snapshot["events"][0]["type"] == "snapshot" and update["events"][0]["type"] == "update"
    ticker = update["events"][0]["tickers"][0]
    assert (ticker["product_id"], ticker["best_bid"], ticker["best_bid_quantity"]) == (
        "BTC-USD",
        "64000",
        "0.1",
    )
    assert (ticker["best_ask"], ticker["best_ask_quantity"]) == ("64000.2", "1.25")
    assert update["sequence_num"] == snapshot["sequence_num"] + 1


async def test_coinbase_heartbeats_come_once_subscribed_with_a_rising_counter() -> None:
    rules = {"coinbase": VenueRules(subscribe_timeout_s=5.0, heartbeat_interval_s=0.05)}
    heartbeat_request = documented("coinbase-ws-control.jsonl")[2]  # with a jwt: accepted, ignored
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("coinbase",), ("BTC-USD",), autoplay=False, rules=rules) as sim,
        connect(sim.ws_url("coinbase")) as ws,
    ):
        await assert_nothing_arrives(ws, window=0.2)  # nothing before a subscription
        await ws.send(json.dumps(heartbeat_request))
        listing = await recv_json(ws)
        beats = [await recv_json(ws) for _ in range(3)]
    assert listing["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]
    for beat in beats:
        assert shape(beat) == shape(documented("coinbase-heartbeats.json"))
    assert [int(b["events"][0]["heartbeat_counter"]) for b in beats] == [1, 2, 3]
    assert [b["sequence_num"] for b in beats] == [1, 2, 3]
    assert " +0000 UTC m=+" in beats[0]["events"][0]["current_time"]


async def test_coinbase_closes_a_connection_that_does_not_subscribe_in_time() -> None:
    rules = {"coinbase": VenueRules(subscribe_timeout_s=0.2)}
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("coinbase",), ("BTC-USD",), autoplay=False, rules=rules) as sim,
        connect(sim.ws_url("coinbase")) as lazy,
        connect(sim.ws_url("coinbase")) as prompt,
    ):
        await coinbase_subscribe(prompt, "level2", "BTC-USD")
        await recv_json(prompt)  # the (empty) snapshot
        closed = await assert_closed(lazy)
        await asyncio.sleep(0.2)
        await sim.push_quote("coinbase", "BTC-USD", *QUOTE)
        still = await recv_json(prompt)
    assert closed.rcvd is not None and closed.rcvd.code == 1000
    assert still["channel"] == "l2_data"


async def test_coinbase_refuses_unknown_channels_and_products(sim: ExchangeSimulator) -> None:
    async with asyncio.timeout(10), connect(sim.ws_url("coinbase")) as ws:
        refusals = [
            await coinbase_subscribe(ws, "level3", "BTC-USD"),
            await coinbase_subscribe(ws, "level2", "DOGE-USD"),
            await coinbase_subscribe(ws, "level2"),
        ]
        await ws.send("{")
        refusals.append(await recv_json(ws))
    assert all(set(r) == {"type", "message"} and r["type"] == "error" for r in refusals)


async def test_coinbase_gap_and_duplicate_show_in_the_sequence_numbers(sim: ExchangeSimulator) -> None:
    await sim.push_quote("coinbase", "BTC-USD", *QUOTE)
    async with asyncio.timeout(10), connect(sim.ws_url("coinbase")) as ws:
        await coinbase_subscribe(ws, "level2", "BTC-USD")
        snapshot = await recv_json(ws)
        await sim.inject_gap("coinbase", "BTC-USD")
        await sim.push_quote("coinbase", "BTC-USD", *NEXT_QUOTE)
        after_gap = await recv_json(ws)
        await sim.inject_duplicate("coinbase", "BTC-USD")
        await sim.push_quote("coinbase", "BTC-USD", *QUOTE)
        first, again = await recv_json(ws), await recv_json(ws)
    assert after_gap["sequence_num"] == snapshot["sequence_num"] + 2
    assert first == again and first["sequence_num"] == after_gap["sequence_num"] + 1
    assert sim.faults_injected("coinbase") == 2


# -- Kraken -------------------------------------------------------------------------------------


def kraken_crc(book: LocalBook, price_decimals: int, qty_decimals: int) -> int:
    """The documented Kraken rule, written independently: top 10 asks then bids, fixed decimals."""

    def text(value: Decimal, decimals: int) -> str:
        return f"{value:.{decimals}f}".replace(".", "").lstrip("0")

    bids, asks = book.top(10)
    joined = "".join(text(p, price_decimals) + text(q, qty_decimals) for p, q in (*asks, *bids))
    return zlib.crc32(joined.encode())


def kraken_json(frame: str | bytes) -> Any:
    return json.loads(frame, parse_float=Decimal)


async def kraken_send(ws: ClientConnection, method: str, params: dict[str, Any] | None = None) -> None:
    message: dict[str, Any] = {"method": method, "req_id": 5}
    if params is not None:
        message["params"] = params
    await ws.send(orjson.dumps(message).decode())


async def test_kraken_control_frames_match_the_documented_ones() -> None:
    control = documented("kraken-ws-control.jsonl")
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("kraken",), ("ALGO-USD", "MATIC-USD"), autoplay=False) as sim,
        connect(sim.ws_url("kraken")) as ws,
    ):
        await ws.send(json.dumps(control[0]))  # book, ALGO/USD and MATIC/USD, default depth
        acks = [await recv_json(ws) for _ in range(2)]
        snapshots = [await recv_json(ws) for _ in range(2)]
        await ws.send(json.dumps(control[2]))  # ping, req_id 101
        pong = await recv_json(ws)
        await kraken_send(ws, "subscribe", {"channel": "book", "symbol": ["XBT/USD"]})
        refused = await recv_json(ws)
    times = ("time_in", "time_out")
    assert without(acks[0], *times) == without(control[1], *times) and list(acks[0]) == list(control[1])
    assert acks[1]["result"]["symbol"] == "MATIC/USD"
    assert [s["data"][0]["symbol"] for s in snapshots] == ["ALGO/USD", "MATIC/USD"]
    assert without(pong, *times) == without(control[3], *times) and list(pong) == list(control[3])
    assert refused["error"] == "Currency pair not supported XBT/USD" and refused["success"] is False
    assert (refused["symbol"], refused["req_id"], refused["method"]) == ("XBT/USD", 5, "subscribe")


async def test_kraken_book_updates_carry_checksums_a_truncating_client_reproduces(
    sim: ExchangeSimulator,
) -> None:
    await sim.push_quote("kraken", "BTC-USD", *QUOTE)
    async with asyncio.timeout(10), connect(sim.ws_url("kraken")) as ws:
        await kraken_send(ws, "subscribe", {"channel": "book", "symbol": ["BTC/USD"], "depth": 10})
        await recv_json(ws)
        raw = [await ws.recv()]
        await sim.advance(25)
        await sim.flush("kraken")
        while True:
            try:
                async with asyncio.timeout(0.3):
                    raw.append(await ws.recv())
            except TimeoutError:
                break
    snapshot = json.loads(raw[0])
    assert shape(snapshot) == shape(documented("kraken-book-snapshot.json"))
    assert '{"price":64000.10,"qty":0.50000}' in str(raw[0])  # JSON numbers at the pair's decimals
    book = LocalBook()
    for frame in raw:
        message = kraken_json(frame)
        if message["type"] == "update":
            update_doc = documented("kraken-book-update.json")
            assert list(message) == list(update_doc) and list(message["data"][0]) == list(
                update_doc["data"][0]
            )
        for side, key in (("bid", "bids"), ("ask", "asks")):
            for level in message["data"][0][key]:
                book.apply(side, level["price"], level["qty"])
        book.truncate(10)
        assert kraken_crc(book, 2, 5) == message["data"][0]["checksum"]
    assert len(raw) >= 15
    bids, asks = sim.depth("kraken", "BTC-USD")
    assert same_book(book.top(), (bids[:10], asks[:10]))


def test_kraken_checksum_reproduces_the_documented_example() -> None:
    snapshot_doc, update_doc = documented("kraken-book-snapshot.json"), documented("kraken-book-update.json")
    vector = documented("test-vectors.json")["kraken_v2_book_checksum"]
    protocol = KrakenProtocol("/v2", {"MATIC/USD": "MATIC-USD"}, "c1")
    protocol.handle('{"method": "subscribe", "params": {"channel": "book", "symbol": ["MATIC/USD"]}}')
    levels = kraken_json(json.dumps(snapshot_doc))["data"][0]
    bids = [[lv["price"], lv["qty"]] for lv in levels["bids"]]
    asks = [[lv["price"], lv["qty"]] for lv in levels["asks"]]
    before = snapshot_of(bids, asks, tick="0.0001", step="0.00000001", symbol="MATIC-USD")
    first = kraken_json(protocol.encode_snapshot("book", "MATIC-USD", None, before, 0) or "")
    changed = kraken_json(json.dumps(update_doc))["data"][0]["bids"][0]
    bids[-1] = [changed["price"], changed["qty"]]
    after = snapshot_of(bids, asks, tick="0.0001", step="0.00000001", symbol="MATIC-USD")
    event = DepthEvent(changes=(("bid", changed["price"], changed["qty"]),), before=before, after=after)
    (update,) = [kraken_json(f) for f in protocol.encode_depth(event, 0)]
    assert (
        first["data"][0]["checksum"]
        == vector["expected_after_snapshot"]
        == snapshot_doc["data"][0]["checksum"]
    )
    assert update["data"][0]["checksum"] == vector["expected_after_applying_update"]
    assert update["data"][0]["bids"] == [{"price": Decimal("0.5657"), "qty": Decimal("1098.39475580")}]
    assert first["data"][0]["bids"] == kraken_json(json.dumps(snapshot_doc))["data"][0]["bids"]


async def test_kraken_ticker_with_the_bbo_trigger_follows_every_bbo_change(sim: ExchangeSimulator) -> None:
    await sim.push_quote("kraken", "BTC-USD", *QUOTE)
    async with asyncio.timeout(10), connect(sim.ws_url("kraken")) as ws:
        params = {"channel": "ticker", "symbol": ["BTC/USD"], "event_trigger": "bbo"}
        await kraken_send(ws, "subscribe", params)
        ack = await recv_json(ws)
        snapshot = json.loads(await ws.recv())
        await sim.push_quote("kraken", "BTC-USD", *NEXT_QUOTE)
        update = kraken_json(await ws.recv())
    assert ack["result"] == {
        "channel": "ticker",
        "event_trigger": "bbo",
        "snapshot": True,
        "symbol": "BTC/USD",
    }
    assert shape(snapshot) == shape(documented("kraken-ticker-snapshot.json"))
    data = update["data"][0]
    assert update["type"] == "update" and data["symbol"] == "BTC/USD"
    assert (data["bid"], data["bid_qty"], data["ask"], data["ask_qty"]) == tuple(map(Decimal, NEXT_QUOTE))


async def test_kraken_heartbeats_a_subscribed_connection_only_while_it_is_quiet() -> None:
    rules = {"kraken": VenueRules(idle_timeout_s=60.0, idle_counts_sent=True, heartbeat_interval_s=0.05)}
    async with (
        asyncio.timeout(10),
        ExchangeSimulator(("kraken",), ("BTC-USD",), autoplay=False, rules=rules) as sim,
        connect(sim.ws_url("kraken")) as subscribed,
        connect(sim.ws_url("kraken")) as bare,
    ):
        await kraken_send(subscribed, "subscribe", {"channel": "book", "symbol": ["BTC/USD"]})
        await recv_json(subscribed), await recv_json(subscribed)
        beats = [await recv_json(subscribed) for _ in range(3)]
        await assert_nothing_arrives(bare, window=0.2)
    assert beats == [documented("kraken-ws-control.jsonl")[4]] * 3


async def test_kraken_bad_checksum_and_a_lost_update_break_the_clients_checksum(
    sim: ExchangeSimulator,
) -> None:
    await sim.push_quote("kraken", "BTC-USD", *QUOTE)
    async with asyncio.timeout(10), connect(sim.ws_url("kraken")) as ws:
        await kraken_send(ws, "subscribe", {"channel": "book", "symbol": ["BTC/USD"]})
        await recv_json(ws)
        book = LocalBook()

        async def verdict() -> bool:
            message = kraken_json(await ws.recv())
            for side, key in (("bid", "bids"), ("ask", "asks")):
                for level in message["data"][0][key]:
                    book.apply(side, level["price"], level["qty"])
            book.truncate(10)
            return bool(kraken_crc(book, 2, 5) == message["data"][0]["checksum"])

        assert await verdict()  # the snapshot
        await sim.inject_bad_checksum("kraken", "BTC-USD")
        await sim.push_quote("kraken", "BTC-USD", *NEXT_QUOTE)
        bad = await verdict()
        await sim.push_quote("kraken", "BTC-USD", *QUOTE)
        recovered = await verdict()
        await sim.inject_gap("kraken", "BTC-USD")
        await sim.push_quote("kraken", "BTC-USD", "64000.10", "0.60000", "64000.20", "1.25000")
        after_gap = await verdict()
    assert (bad, recovered, after_gap) == (False, True, False)
    assert sim.faults_injected("kraken") == 2


# -- helpers ------------------------------------------------------------------------------------


def snapshot_of(
    bids: Sequence[Sequence[Any]],
    asks: Sequence[Sequence[Any]],
    *,
    tick: str,
    step: str,
    symbol: str = "ETH-USDT",
) -> DepthSnapshot:
    def levels(side: Sequence[Sequence[Any]]) -> tuple[Level, ...]:
        return tuple((Decimal(str(p)), Decimal(str(q))) for p, q, *_ in side)

    return DepthSnapshot(symbol, levels(bids), levels(asks), 1, (), 0, Decimal(tick), Decimal(step))
