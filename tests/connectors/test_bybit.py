"""Bybit v5 spot orderbook adapter and parser against the documented payloads."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import orjson
import pytest

from connectors.base import Parser
from connectors.book import BookInvalid
from connectors.bybit import BybitAdapter
from connectors.errors import ParseError
from connectors.types import Quote

VENUE = "bybit"


@pytest.fixture
def adapter() -> BybitAdapter:
    return BybitAdapter(["BTC-USDT", "ETH-USDT"])


@pytest.fixture
def parser(adapter: BybitAdapter) -> Parser:
    return adapter.new_parser()


@pytest.fixture
def level1_snapshot(recorded: Any) -> dict[str, Any]:
    """Return the recorded `orderbook.1.BTCUSDT` snapshot (documented snapshot shape, best levels)."""
    frame: dict[str, Any] = orjson.loads(recorded.lines(VENUE, "bbo.jsonl")[0])
    return frame


def level1(kind: str, bids: list[list[str]], asks: list[list[str]], u: int, ts: int = 1687940967466) -> bytes:
    """Build an `orderbook.1.BTCUSDT` frame of the documented shape."""
    data = {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": 66544703342}
    return orjson.dumps({"topic": "orderbook.1.BTCUSDT", "type": kind, "ts": ts, "data": data, "cts": ts - 2})


def test_documented_snapshot_parses_and_the_documented_delta_is_a_gap_after_it(
    parser: Parser, recorded: Any, received_ns: int
) -> None:
    # The documented examples come from different days (u 18521288 vs 177400507): applied
    # one after the other the delta skips updates, so the book is discarded, never served.
    after_snapshot = parser.parse(recorded.text(VENUE, "bybit-orderbook-snapshot.json"), received_ns)

    assert after_snapshot == [
        Quote(
            venue="bybit",
            symbol="BTC-USDT",
            bid=Decimal("16493.50"),
            bid_qty=Decimal("0.006"),
            ask=Decimal("16611.00"),
            ask_qty=Decimal("0.029"),
            exchange_ns=1672304484978 * 1_000_000,
            received_ns=received_ns,
            seq=18521288,
        )
    ]
    with pytest.raises(BookInvalid) as caught:
        parser.parse(recorded.text(VENUE, "bybit-orderbook-delta.json"), received_ns + 1)
    assert (caught.value.symbol, caught.value.reason) == ("BTC-USDT", "gap")


def test_level1_snapshot_gives_its_single_levels(
    parser: Parser, level1_snapshot: dict[str, Any], received_ns: int
) -> None:
    (quote,) = parser.parse(orjson.dumps(level1_snapshot), received_ns)

    assert (quote.symbol, quote.bid, quote.bid_qty, quote.ask, quote.ask_qty, quote.seq) == (
        "BTC-USDT",
        Decimal("16493.50"),
        Decimal("0.006"),
        Decimal("16611.00"),
        Decimal("0.029"),
        18521288,
    )
    assert quote.exchange_ns == 1672304484978 * 1_000_000


def test_level1_delta_replaces_a_side_and_zero_qty_deletes_it(parser: Parser) -> None:
    parser.parse(level1("snapshot", [["100.0", "1"]], [["101.0", "2"]], u=10), 1)

    moved = parser.parse(level1("delta", [["100.0", "0"], ["100.5", "3"]], [], u=11), 2)
    emptied = parser.parse(level1("delta", [], [["101.0", "0"]], u=12), 3)
    refilled = parser.parse(level1("delta", [], [["102.0", "4"]], u=13), 4)

    assert [(q.bid, q.bid_qty, q.ask, q.ask_qty) for q in moved] == [
        (Decimal("100.5"), Decimal("3"), Decimal("101.0"), Decimal("2"))
    ]
    assert emptied == []  # one side empty: no quote until both sides are present
    assert [(q.bid, q.ask, q.seq) for q in refilled] == [(Decimal("100.5"), Decimal("102.0"), 13)]


def test_repeated_level1_snapshot_with_same_u_is_accepted(parser: Parser) -> None:
    frame = level1("snapshot", [["100.0", "1"]], [["101.0", "2"]], u=10)

    assert parser.parse(frame, 1)[0].seq == 10
    assert parser.parse(frame, 2)[0].seq == 10


def test_u_equal_1_overwrites_the_book_after_a_service_restart(parser: Parser) -> None:
    parser.parse(level1("snapshot", [["100.0", "1"]], [["101.0", "2"]], u=500), 1)

    (quote,) = parser.parse(level1("delta", [["90.0", "5"]], [["91.0", "6"]], u=1), 2)

    assert (quote.bid, quote.ask, quote.seq) == (Decimal("90.0"), Decimal("91.0"), 1)


def test_snapshot_with_an_empty_side_gives_no_quote(parser: Parser) -> None:
    assert parser.parse(level1("snapshot", [["100.0", "1"]], [], u=10), 1) == []


def test_delta_before_any_snapshot_is_rejected(parser: Parser) -> None:
    with pytest.raises(ParseError, match="before any snapshot"):
        parser.parse(level1("delta", [["100.0", "1"]], [["101.0", "2"]], u=10), 1)


def test_new_parser_starts_with_empty_books(adapter: BybitAdapter) -> None:
    adapter.new_parser().parse(level1("snapshot", [["100.0", "1"]], [["101.0", "2"]], u=10), 1)

    with pytest.raises(ParseError, match="before any snapshot"):
        adapter.new_parser().parse(level1("delta", [["100.5", "1"]], [], u=11), 2)


def test_bad_delta_leaves_the_book_unchanged(parser: Parser) -> None:
    parser.parse(level1("snapshot", [["100.0", "1"]], [["101.0", "2"]], u=10), 1)

    with pytest.raises(ParseError):
        parser.parse(level1("delta", [["100.0", "0"]], [["101.0", "NaN"]], u=11), 2)
    (quote,) = parser.parse(level1("delta", [], [["101.0", "2.5"]], u=11), 3)

    assert (quote.bid, quote.bid_qty, quote.ask_qty) == (Decimal("100.0"), Decimal("1"), Decimal("2.5"))


def test_update_lost_in_a_bad_delta_shows_as_a_gap_at_the_next_one(parser: Parser) -> None:
    parser.parse(level1("snapshot", [["100.0", "1"]], [["101.0", "2"]], u=10), 1)
    with pytest.raises(ParseError):
        parser.parse(level1("delta", [["100.0", "0"]], [["101.0", "NaN"]], u=11), 2)

    with pytest.raises(BookInvalid, match="gap"):
        parser.parse(level1("delta", [], [["101.0", "2.5"]], u=12), 3)


def test_documented_control_frames_return_no_quotes(parser: Parser, recorded: Any) -> None:
    lines = recorded.lines(VENUE, "bybit-ws-control.jsonl")
    ack = next(line for line in lines if '"ret_msg": "subscribe"' in line)
    pong = next(line for line in lines if '"ret_msg": "pong"' in line)

    assert orjson.loads(pong)["op"] == "ping"  # the spot pong says "ping"
    assert parser.parse(ack, 1) == []
    assert parser.parse(pong, 1) == []


def test_failed_subscribe_ack_raises_parse_error_naming_ret_msg(parser: Parser, recorded: Any) -> None:
    lines = recorded.lines(VENUE, "bybit-ws-control.jsonl")
    ack = orjson.loads(next(line for line in lines if '"ret_msg": "subscribe"' in line))
    failed = {**ack, "success": False, "ret_msg": "error:handler not found,topic:orderbook.1.NOPE"}

    with pytest.raises(ParseError, match="handler not found"):
        parser.parse(orjson.dumps(failed), 1)


def test_frame_for_unconfigured_symbol_is_rejected(parser: Parser, level1_snapshot: dict[str, Any]) -> None:
    frame = copy.deepcopy(level1_snapshot)
    frame["topic"] = "orderbook.1.SOLUSDT"
    frame["data"]["s"] = "SOLUSDT"

    with pytest.raises(ParseError, match="unconfigured symbol 'SOLUSDT'"):
        parser.parse(orjson.dumps(frame), 1)


def _mutated(frame: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    changed = copy.deepcopy(frame)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return orjson.dumps(changed)


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("data", "b"), [["-16493.50", "0.006"]], "not negative"),
        (("data", "b"), [["NaN", "0.006"]], "finite"),
        (("data", "a"), [["0", "0.029"]], "positive"),
        (("data", "a"), [["16611.00", "-1"]], "not negative"),
        (("data", "a"), [[16611.0, "0.029"]], "decimal string"),
        (("data", "a"), [["16611.00"]], r"\[price, size\]"),
        (("data", "a"), "16611.00", "list of"),
        (("data", "u"), "18521288", "'u' must be int"),
        (("data", "s"), "ETHUSDT", "carries data for"),
        (("ts",), "1672304484978", "'ts' must be int"),
        (("type",), "partial", "unknown type"),
        (("topic",), "publicTrade.BTCUSDT", "unexpected topic"),
        (("topic",), 1, "must be a string"),
    ],
)
def test_orderbook_frame_with_bad_field_is_rejected(
    parser: Parser, level1_snapshot: dict[str, Any], path: tuple[str, ...], value: Any, error: str
) -> None:
    with pytest.raises(ParseError, match=error):
        parser.parse(_mutated(level1_snapshot, path, value), 1)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"pong", id="plain-text"),
        pytest.param(b'{"topic": "orderbook.1.BTCUSDT", "type": "snap', id="truncated"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'{"success": true, "ret_msg": "", "op": "auth"}', id="unexpected-op"),
    ],
)
def test_malformed_frame_raises_parse_error(parser: Parser, frame: bytes) -> None:
    with pytest.raises(ParseError):
        parser.parse(frame, 1)


def test_adapter_subscribes_level1_in_messages_of_at_most_10_topics() -> None:
    symbols = [f"C{number}-USDT" for number in range(23)]
    adapter = BybitAdapter(symbols)

    messages = [orjson.loads(m) for m in adapter.subscribe_messages()]

    assert adapter.connect_url() == "wss://stream.bybit.com/v5/public/spot"
    assert [len(m["args"]) for m in messages] == [10, 10, 3]
    assert all(m["op"] == "subscribe" and m["req_id"] for m in messages)
    assert [a for m in messages for a in m["args"]] == [f"orderbook.1.C{n}USDT" for n in range(23)]


def test_keepalive_is_the_documented_json_ping_every_20_s(adapter: BybitAdapter) -> None:
    message = adapter.keepalive_message()

    assert message is not None
    assert orjson.loads(message)["op"] == "ping"
    assert adapter.keepalive_interval_s == 20.0


def test_too_many_subscription_chars_are_rejected() -> None:
    symbols = [f"LONGNAME{number:04d}-USDT" for number in range(1000)]

    with pytest.raises(ValueError, match="21000 per connection"):
        BybitAdapter(symbols)
