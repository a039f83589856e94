"""Parse Binance Spot combined-stream frames (`/stream`) into quotes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from connectors.base import decimal_of, decode_object, field, frame_sample, price_of
from connectors.errors import ParseError, ReconnectRequested
from connectors.top_guard import TopGuard, raise_now
from connectors.types import Quote

VENUE: Final = "binance"
_ZERO: Final = Decimal(0)


class _BookTickerData(msgspec.Struct):
    u: int
    s: str
    # Strings, as Binance sends them: a JSON number here is a format change, not a price.
    b: str
    B: str  # Binance's field names are case-sensitive: B is the bid quantity
    a: str
    A: str


class _BookTickerFrame(msgspec.Struct):
    stream: str
    data: _BookTickerData


# Decodes a well-formed bookTicker frame in one typed pass; any other frame fails it and
# takes the general path, which dispatches or names the problem.
_decode_book_ticker: Final = msgspec.json.Decoder(_BookTickerFrame).decode


class BookTickerParser:
    """Parse `<symbol>@bookTicker` frames of a combined stream; dispatch on the stream name.

    A bookTicker payload has no `e`/`E` field, so the channel is the stream-name suffix
    and there is no exchange time (`exchange_ns` is None; `seq` is the book update id `u`)::

        {"stream": "bnbusdt@bookTicker",
         "data": {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
                  "a": "25.36520000", "A": "40.66000000"}}

    Binance offers no exchange time on bookTicker, only `u`, which grows per symbol:
    a bookTicker with a lower `u` than the last one served is out of order and
    dropped, a crossed one (`b` >= `a`) is refused, its first one raising
    BookInvalid("crossed") to withdraw the served quote (`connectors.top_guard.TopGuard`).

    `{"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1770123456789}}`
    raises ReconnectRequested. Request responses `{"result": null, "id": 1}` return [];
    error responses (`{"code": 2, "msg": "Invalid request: ..."}`, also seen wrapped as
    `{"error": {"code": .., "msg": ..}, "id": 1}`) raise ParseError naming the error.
    """

    __slots__ = ("_guard", "_handlers", "_symbols")

    def __init__(self, symbols: Mapping[str, str]) -> None:
        """Parse for the configured symbols, given as venue form → canonical (`BTCUSDT` → `BTC-USDT`)."""
        self._symbols = dict(symbols)
        self._guard = TopGuard(VENUE, raise_now, ("b (bid)", "a (ask)"))
        self._handlers: dict[str, Callable[[dict[str, Any], int], list[Quote]]] = {
            "bookTicker": self._book_ticker,
            "!serverShutdown": server_shutdown,
        }

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return the quote in a bookTicker frame, [] for a request response or a refused quote."""
        # Fast path for the well-formed bookTicker frame (nearly all of them); anything odd
        # takes the general path below, which raises the precise ParseError.
        try:
            message = _decode_book_ticker(frame)
            data = message.data
            bid, bid_qty, ask, ask_qty = Decimal(data.b), Decimal(data.B), Decimal(data.a), Decimal(data.A)
            if (
                message.stream.endswith("@bookTicker")
                and bid.is_finite() and ask.is_finite() and bid_qty.is_finite() and ask_qty.is_finite()
                and bid > _ZERO and ask > _ZERO and bid_qty >= _ZERO and ask_qty >= _ZERO
            ):  # fmt: skip
                symbol = self._symbols[data.s]
                quote = Quote(VENUE, symbol, bid, bid_qty, ask, ask_qty, None, received_ns, data.u)
                return [quote] if self._guard.admit(quote) else []
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError, InvalidOperation):
            pass
        return self._parse_checked(frame, received_ns)

    def _parse_checked(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        message = decode_object(frame)
        stream = message.get("stream")
        if stream is None:
            return request_response(message, frame)
        if not isinstance(stream, str):
            raise ParseError(f"binance: 'stream' must be a string: {frame_sample(frame)!r}")
        # "btcusdt@bookTicker" → "bookTicker"; "!serverShutdown" has no "@" and stays whole.
        handler = self._handlers.get(stream.rpartition("@")[2])
        if handler is None:
            raise ParseError(f"binance: unexpected stream {stream!r}")
        return handler(field(message, "data", dict, f"binance {stream}"), received_ns)

    def _book_ticker(self, data: dict[str, Any], received_ns: int) -> list[Quote]:
        venue_symbol = field(data, "s", str, "binance bookTicker")
        symbol = self._symbols.get(venue_symbol)
        if symbol is None:
            raise ParseError(f"binance: bookTicker for unconfigured symbol {venue_symbol!r}")
        quote = Quote(
            venue=VENUE,
            symbol=symbol,
            bid=price_of(data.get("b"), "binance bookTicker b (bid)"),
            bid_qty=decimal_of(data.get("B"), "binance bookTicker B (bid qty)"),
            ask=price_of(data.get("a"), "binance bookTicker a (ask)"),
            ask_qty=decimal_of(data.get("A"), "binance bookTicker A (ask qty)"),
            exchange_ns=None,
            received_ns=received_ns,
            seq=field(data, "u", int, "binance bookTicker"),
        )
        return [quote] if self._guard.admit(quote) else []


def server_shutdown(data: dict[str, Any], received_ns: int) -> list[Quote]:
    """Raise ReconnectRequested for the `!serverShutdown` event."""
    raise ReconnectRequested(f"binance: serverShutdown announced at E={data.get('E')!r}")


def request_response(message: dict[str, Any], frame: str | bytes) -> list[Quote]:
    """Return [] for a request's success response; raise ParseError naming a request's error."""
    if "result" in message and "id" in message:
        return []
    error = message.get("error")
    if isinstance(error, dict):
        code, msg = error.get("code"), error.get("msg")
    elif "code" in message and "msg" in message:
        code, msg = message["code"], message["msg"]
    else:
        raise ParseError(f"binance: unexpected frame without a stream: {frame_sample(frame)!r}")
    raise ParseError(f"binance: request id={message.get('id')!r} rejected with code {code!r}: {msg!r}")
