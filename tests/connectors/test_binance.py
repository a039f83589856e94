"""Binance bookTicker adapter and parser against the documented payloads."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.binance import BinanceAdapter
from connectors.binance.parse import BookTickerParser
from connectors.errors import ParseError, ReconnectRequested
from connectors.types import Quote

VENUE = "binance"


def combined(payload: dict[str, Any], stream: str = "bnbusdt@bookTicker") -> bytes:
    """Wrap a raw payload as the combined stream delivers it."""
    return orjson.dumps({"stream": stream, "data": payload})


@pytest.fixture
def adapter() -> BinanceAdapter:
    return BinanceAdapter(["BNB-USDT", "BTC-USDT"])


@pytest.fixture
def book_ticker(recorded: Any) -> dict[str, Any]:
    """Return the documented bookTicker payload (no `e`/`E` fields)."""
    payload: dict[str, Any] = recorded.json(VENUE, "binance-bookTicker.json")
    assert "e" not in payload and "E" not in payload
    return payload


def test_documented_book_ticker_parses_to_exact_quote(
    adapter: BinanceAdapter, book_ticker: dict[str, Any], received_ns: int
) -> None:
    quotes = adapter.new_parser().parse(combined(book_ticker), received_ns)

    assert quotes == [
        Quote(
            venue="binance",
            symbol="BNB-USDT",
            bid=Decimal("25.35190000"),
            bid_qty=Decimal("31.21000000"),
            ask=Decimal("25.36520000"),
            ask_qty=Decimal("40.66000000"),
            exchange_ns=None,
            received_ns=received_ns,
            seq=400900217,
        )
    ]


def test_book_ticker_as_text_frame_parses_like_bytes(
    adapter: BinanceAdapter, book_ticker: dict[str, Any], received_ns: int
) -> None:
    frame = combined(book_ticker)
    parser = adapter.new_parser()

    assert parser.parse(frame.decode(), received_ns) == parser.parse(frame, received_ns)


def test_documented_server_shutdown_raises_reconnect_requested(
    adapter: BinanceAdapter, recorded: Any
) -> None:
    frame = recorded.text(VENUE, "binance-serverShutdown-combined.json")

    with pytest.raises(ReconnectRequested, match="serverShutdown"):
        adapter.new_parser().parse(frame, 1)


def test_documented_request_responses_return_no_quotes(adapter: BinanceAdapter, recorded: Any) -> None:
    responses = [line for line in recorded.lines(VENUE, "binance-ws-control.jsonl") if "result" in line]
    parser = adapter.new_parser()

    assert len(responses) == 3
    assert [parser.parse(line, 1) for line in responses] == [[], [], []]


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(
            b'{"code": 2, "msg": "Invalid request: too many parameters"}', id="documented-table-form"
        ),
        pytest.param(
            b'{"error": {"code": 2, "msg": "Invalid request: too many parameters"}, "id": 1}', id="wrapped"
        ),
    ],
)
def test_error_response_raises_parse_error_naming_it(adapter: BinanceAdapter, frame: bytes) -> None:
    with pytest.raises(ParseError, match="too many parameters"):
        adapter.new_parser().parse(frame, 1)


def test_book_ticker_for_unconfigured_symbol_is_rejected(
    adapter: BinanceAdapter, book_ticker: dict[str, Any]
) -> None:
    frame = combined({**book_ticker, "s": "ETHUSDT"}, stream="ethusdt@bookTicker")

    with pytest.raises(ParseError, match="unconfigured symbol 'ETHUSDT'"):
        adapter.new_parser().parse(frame, 1)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"b": "-25.35"}, "not negative"),
        ({"a": "NaN"}, "finite"),
        ({"a": "Infinity"}, "finite"),
        ({"b": "0.00000000"}, "positive"),
        ({"B": "-1"}, "not negative"),
        ({"b": 25.3519}, "decimal string"),
        ({"A": None}, "decimal string"),
        ({"a": "25,3652"}, "not a decimal"),
        ({"u": "400900217"}, "'u' must be int"),
        ({"u": True}, "'u' must be int"),
        ({"s": 7}, "'s' must be str"),
    ],
)
def test_book_ticker_with_bad_field_is_rejected(
    adapter: BinanceAdapter, book_ticker: dict[str, Any], change: dict[str, Any], error: str
) -> None:
    with pytest.raises(ParseError, match=error):
        adapter.new_parser().parse(combined({**book_ticker, **change}), 1)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\xffgarbage", id="garbage"),
        pytest.param(b'{"stream": "bnbusdt@bookTicker", "data": {"u": 1', id="truncated"),
        pytest.param(b'["bnbusdt@bookTicker"]', id="array"),
        pytest.param(b'{"stream": 5, "data": {}}', id="stream-not-string"),
        pytest.param(b'{"stream": "bnbusdt@bookTicker", "data": []}', id="data-not-object"),
        pytest.param(b'{"stream": "bnbusdt@aggTrade", "data": {}}', id="unsubscribed-channel"),
        pytest.param(b'{"u": 400900217, "s": "BNBUSDT"}', id="raw-payload-without-wrapper"),
    ],
)
def test_malformed_frame_raises_parse_error(adapter: BinanceAdapter, frame: bytes) -> None:
    with pytest.raises(ParseError):
        adapter.new_parser().parse(frame, 1)


def test_adapter_opens_the_combined_stream_with_one_subscribe(adapter: BinanceAdapter) -> None:
    assert adapter.connect_url() == "wss://stream.binance.com:9443/stream"
    assert [orjson.loads(m) for m in adapter.subscribe_messages()] == [
        {"method": "SUBSCRIBE", "params": ["bnbusdt@bookTicker", "btcusdt@bookTicker"], "id": 1}
    ]
    assert adapter.keepalive_message() is None
    assert adapter.max_connection_age_s is not None and adapter.max_connection_age_s < 24 * 3600


def test_subscribe_is_split_into_messages_of_200_streams() -> None:
    symbols = [f"C{number}-USDT" for number in range(450)]

    messages = [orjson.loads(m) for m in BinanceAdapter(symbols).subscribe_messages()]

    assert [len(m["params"]) for m in messages] == [200, 200, 50]
    assert [m["id"] for m in messages] == [1, 2, 3]
    assert [p for m in messages for p in m["params"]] == [f"c{n}usdt@bookTicker" for n in range(450)]


def test_configured_ws_url_is_used_without_trailing_slash() -> None:
    adapter = BinanceAdapter(["BTC-USDT"], ws_url="ws://127.0.0.1:9000/")

    assert adapter.connect_url() == "ws://127.0.0.1:9000/stream"


@pytest.mark.parametrize(
    ("symbols", "ws_url", "error"),
    [
        ([], None, "at least one symbol"),
        (["btc-usdt"], None, "BASE-QUOTE"),
        (["BTCUSDT"], None, "BASE-QUOTE"),
        (["BTC-USDT", "BTC-USDT"], None, "duplicate"),
        ("BTC-USDT", None, "not the string"),
        (["BTC-USDT"], "https://stream.binance.com", "ws://"),
        ([f"C{n}-USDT" for n in range(1025)], None, "1024 streams"),
    ],
)
def test_bad_configuration_is_rejected_with_clear_error(symbols: Any, ws_url: str | None, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        BinanceAdapter(symbols, ws_url=ws_url)


_values = st.one_of(
    st.sampled_from(["25.35190000", "0", "-1", "NaN", "Infinity", "1e3", "", "abc", "0.00000001"]),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(
    b=_values,
    bq=_values,
    a=_values,
    aq=_values,
    u=st.one_of(st.integers(0, 2**40), st.text(max_size=3), st.booleans(), st.none()),
    s=st.sampled_from(["BTCUSDT", "ETHUSDT", "XXX"]),
    drop=st.sampled_from([None, "b", "B", "a", "A", "u", "s"]),
    stream=st.sampled_from(["btcusdt@bookTicker", "btcusdt@depth", "bookTicker"]),
)
def test_fast_and_checked_book_ticker_paths_always_agree(
    b: object, bq: object, a: object, aq: object, u: object, s: str, drop: str | None, stream: str
) -> None:
    data = {"b": b, "B": bq, "a": a, "A": aq, "u": u, "s": s}
    if drop is not None:
        del data[drop]
    frame = orjson.dumps({"stream": stream, "data": data})

    def outcome(parse: Callable[[bytes, int], list[Quote]]) -> object:
        try:
            return parse(frame, 7)
        except ParseError:
            return ParseError

    # parse() takes the typed fast path first; _parse_checked() is the general path alone.
    # A parser remembers what it served (order, crossings): each path gets a fresh one.
    fast, checked = (BookTickerParser({"BTCUSDT": "BTC-USDT"}) for _ in range(2))
    assert outcome(fast.parse) == outcome(checked._parse_checked)
