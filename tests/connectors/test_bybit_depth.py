"""Bybit depth books: the documented `orderbook.50` snapshot and delta, `u` continuity and resubscription."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from connectors.book import BookInvalid, quote_rejects
from connectors.bybit import BybitAdapter, OrderbookParser
from connectors.bybit.parse import RESYNC_PATIENCE_DELTAS
from connectors.bybit.stream import topic_depth
from connectors.types import Quote

VENUE = "bybit"
D = Decimal


@pytest.fixture
def parser() -> OrderbookParser:
    return OrderbookParser({"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT"}, depth=50)


def frame(
    kind: str,
    u: int,
    bids: list[list[str]],
    asks: list[list[str]],
    symbol: str = "BTCUSDT",
    ts: int = 1687940967466,
) -> bytes:
    """Build an `orderbook.50` frame of the documented shape."""
    data = {"s": symbol, "b": bids, "a": asks, "u": u, "seq": 66544703342}
    message = {"topic": f"orderbook.50.{symbol}", "type": kind, "ts": ts, "data": data, "cts": 1}
    return orjson.dumps(message)


def synced(parser: OrderbookParser, u: int = 10) -> None:
    assert parser.parse(frame("snapshot", u, [["100", "1"], ["99", "2"]], [["101", "3"], ["102", "4"]]), 1)


def test_documented_snapshot_gives_its_levels(
    parser: OrderbookParser, recorded: Any, received_ns: int
) -> None:
    quotes = parser.parse(recorded.text(VENUE, "bybit-orderbook-snapshot.json"), received_ns)

    assert quotes == [
        Quote(
            venue="bybit",
            symbol="BTC-USDT",
            bid=D("16493.50"),
            bid_qty=D("0.006"),
            ask=D("16611.00"),
            ask_qty=D("0.029"),
            exchange_ns=1672304484978 * 1_000_000,
            received_ns=received_ns,
            seq=18521288,
            bids=((D("16493.50"), D("0.006")), (D("16493.00"), D("0.100"))),
            asks=((D("16611.00"), D("0.029")), (D("16612.00"), D("0.213"))),
        )
    ]


def test_documented_delta_applies_to_the_book_it_continues(
    parser: OrderbookParser, recorded: Any, received_ns: int
) -> None:
    delta = recorded.json(VENUE, "bybit-orderbook-delta.json")
    # A book one update before the documented delta, holding the levels it deletes.
    before = frame(
        "snapshot",
        delta["data"]["u"] - 1,
        [["30247.20", "1"], ["30240.00", "2"], ["30239.00", "3"]],
        [["30248.70", "4"], ["30249.60", "5"], ["30260.00", "6"]],
    )
    parser.parse(before, received_ns - 1)

    (quote,) = parser.parse(orjson.dumps(delta), received_ns)

    assert (quote.seq, quote.exchange_ns) == (177400507, 1687940967466 * 1_000_000)
    assert quote.bids == (
        (D("30247.20"), D("30.028")),
        (D("30245.40"), D("0.224")),
        (D("30242.10"), D("1.593")),
        (D("30240.30"), D("1.305")),
        (D("30239.00"), D("3")),
    )
    assert quote.asks == (
        (D("30249.30"), D("0.892")),
        (D("30249.50"), D("1.778")),
        (D("30251.90"), D("2.947")),
        (D("30252.20"), D("0.659")),
        (D("30252.50"), D("4.591")),
        (D("30260.00"), D("6")),
    )


def test_gap_discards_the_book_until_a_new_snapshot(parser: OrderbookParser) -> None:
    synced(parser, u=10)

    with pytest.raises(BookInvalid) as caught:
        parser.parse(frame("delta", 12, [["100", "5"]], []), 2)

    assert (caught.value.symbol, caught.value.reason) == ("BTC-USDT", "gap")
    # The old subscription's deltas never touch the next book.
    assert parser.parse(frame("delta", 13, [["100.5", "9"]], []), 3) == []
    (quote,) = parser.parse(frame("snapshot", 20, [["90", "1"]], [["91", "1"]]), 4)
    assert (quote.seq, quote.bids, quote.asks) == (20, ((D("90"), D("1")),), ((D("91"), D("1")),))
    (quote,) = parser.parse(frame("delta", 21, [["90.5", "2"]], []), 5)
    assert quote.bids == ((D("90.5"), D("2")), (D("90"), D("1")))


def test_old_and_duplicate_deltas_are_ignored(parser: OrderbookParser) -> None:
    synced(parser, u=10)
    parser.parse(frame("delta", 11, [["100", "7"]], []), 2)

    assert parser.parse(frame("delta", 11, [["100", "7"]], []), 3) == []
    assert parser.parse(frame("delta", 9, [["100", "0"]], []), 4) == []
    (quote,) = parser.parse(frame("delta", 12, [], []), 5)
    assert quote.bids[0] == (D("100"), D("7"))


def test_new_snapshot_with_a_later_ts_replaces_the_book_whatever_its_u(parser: OrderbookParser) -> None:
    synced(parser, u=10)

    (quote,) = parser.parse(frame("snapshot", 5, [["50", "1"]], [["51", "1"]], ts=1687940967467), 2)

    assert (quote.seq, quote.bids, quote.asks) == (5, ((D("50"), D("1")),), ((D("51"), D("1")),))


def test_snapshot_older_than_the_book_is_dropped_and_counted(parser: OrderbookParser) -> None:
    synced(parser, u=10)
    before = quote_rejects(VENUE).out_of_order

    assert parser.parse(frame("snapshot", 9, [["50", "1"]], [["51", "1"]]), 2) == []
    (quote,) = parser.parse(frame("snapshot", 10, [["100", "5"]], [["101", "5"]]), 3)

    assert quote_rejects(VENUE).out_of_order == before + 1
    assert (quote.seq, quote.bid, quote.bid_qty) == (10, D("100"), D("5"))


@pytest.mark.parametrize("kind", ["snapshot", "delta"])
def test_u_equal_1_overwrites_the_book(parser: OrderbookParser, kind: str) -> None:
    synced(parser, u=500)

    (quote,) = parser.parse(frame(kind, 1, [["80", "1"]], [["81", "1"]]), 2)

    assert (quote.seq, quote.bids, quote.asks) == (1, ((D("80"), D("1")),), ((D("81"), D("1")),))
    (quote,) = parser.parse(frame("delta", 2, [["80", "3"]], []), 3)
    assert quote.bid_qty == D("3")


def test_u_equal_1_also_ends_a_resync(parser: OrderbookParser) -> None:
    synced(parser, u=10)
    with pytest.raises(BookInvalid):
        parser.parse(frame("delta", 15, [], []), 2)

    (quote,) = parser.parse(frame("delta", 1, [["80", "1"]], [["81", "1"]]), 3)

    assert quote.seq == 1


def test_delta_that_crosses_the_book_discards_it(parser: OrderbookParser) -> None:
    synced(parser, u=10)

    with pytest.raises(BookInvalid) as caught:
        parser.parse(frame("delta", 11, [["101", "1"]], []), 2)

    assert caught.value.reason == "crossed"
    assert parser.parse(frame("delta", 12, [["101", "0"]], []), 3) == []


def test_crossed_snapshot_is_not_served(parser: OrderbookParser) -> None:
    with pytest.raises(BookInvalid, match="crossed"):
        parser.parse(frame("snapshot", 10, [["101", "1"]], [["100", "1"]]), 1)


def test_delta_before_any_snapshot_asks_for_a_resync(parser: OrderbookParser) -> None:
    with pytest.raises(BookInvalid) as caught:
        parser.parse(frame("delta", 10, [["100", "1"]], [["101", "1"]]), 1)

    assert caught.value.reason == "sequence"
    assert parser.parse(frame("delta", 11, [], []), 2) == []


def test_resync_is_asked_again_when_no_snapshot_comes(parser: OrderbookParser) -> None:
    synced(parser, u=10)
    with pytest.raises(BookInvalid):
        parser.parse(frame("delta", 12, [], []), 2)

    for u in range(13, 12 + RESYNC_PATIENCE_DELTAS):
        assert parser.parse(frame("delta", u, [], []), u) == []
    with pytest.raises(BookInvalid, match="without a snapshot"):
        parser.parse(frame("delta", 12 + RESYNC_PATIENCE_DELTAS, [], []), 0)


def test_a_gap_on_one_symbol_leaves_the_others_served(parser: OrderbookParser) -> None:
    synced(parser, u=10)
    parser.parse(frame("snapshot", 70, [["10", "1"]], [["11", "1"]], symbol="ETHUSDT"), 1)

    with pytest.raises(BookInvalid):
        parser.parse(frame("delta", 30, [], []), 2)
    (quote,) = parser.parse(frame("delta", 71, [["10", "2"]], [], symbol="ETHUSDT"), 3)

    assert (quote.symbol, quote.bid_qty) == ("ETH-USDT", D("2"))


def test_quote_carries_at_most_depth_levels() -> None:
    parser = OrderbookParser({"BTCUSDT": "BTC-USDT"}, depth=2)

    (quote,) = parser.parse(
        frame("snapshot", 1, [["3", "1"], ["2", "1"], ["1", "1"]], [["4", "1"], ["5", "1"]]), 1
    )

    assert (quote.bids, quote.asks) == (
        ((D("3"), D("1")), (D("2"), D("1"))),
        ((D("4"), D("1")), (D("5"), D("1"))),
    )


def test_top_of_book_parser_serves_no_levels() -> None:
    (quote,) = OrderbookParser({"BTCUSDT": "BTC-USDT"}).parse(
        frame("snapshot", 1, [["3", "1"]], [["4", "1"]]), 1
    )

    assert (quote.bid, quote.ask, quote.bids, quote.asks) == (D("3"), D("4"), (), ())


@pytest.mark.parametrize(
    ("depth", "published"),
    [(None, 1), (1, 1), (2, 50), (50, 50), (51, 200), (200, 200), (201, 1000), (1000, 1000)],
)
def test_adapter_subscribes_the_shallowest_published_depth_holding_the_depth(
    depth: int | None, published: int
) -> None:
    adapter = BybitAdapter(["BTC-USDT"], depth=depth)

    (message,) = [orjson.loads(m) for m in adapter.subscribe_messages()]

    assert topic_depth(depth) == published
    assert message["args"] == [f"orderbook.{published}.BTCUSDT"]


def test_depth_beyond_the_deepest_published_book_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        BybitAdapter(["BTC-USDT"], depth=1001)


def test_resync_resubscribes_the_symbols_topic_only() -> None:
    adapter = BybitAdapter(["BTC-USDT", "ETH-USDT"], depth=50)

    messages = [orjson.loads(m) for m in adapter.resync_messages("ETH-USDT") or []]

    assert [(m["op"], m["args"]) for m in messages] == [
        ("unsubscribe", ["orderbook.50.ETHUSDT"]),
        ("subscribe", ["orderbook.50.ETHUSDT"]),
    ]
