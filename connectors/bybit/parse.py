"""Parse Bybit v5 spot public WebSocket frames into quotes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from connectors.base import decimal_of, decode_object, field, frame_sample, price_of
from connectors.errors import ParseError
from connectors.types import Quote

VENUE: Final = "bybit"
_CONTROL_OPS: Final = frozenset({"subscribe", "unsubscribe", "ping", "pong"})

Level = tuple[Decimal, Decimal]


class _Book:
    """One symbol's book as price → quantity per side; level 1 holds a single price a side."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        """Set each level's quantity; quantity 0 deletes the level."""
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)


class OrderbookParser:
    """Keep a book per symbol from `orderbook.<depth>.<SYM>` frames and emit its best bid and ask.

    We subscribe to `orderbook.1`; deeper topics of the same shape parse too::

        {"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": 1672304484978,
         "data": {"s": "BTCUSDT", "b": [["16493.50", "0.006"]], "a": [["16611.00", "0.029"]],
                  "u": 18521288, "seq": 7961638724},
         "cts": 1672304484976}

    A snapshot replaces the book, a delta updates it (qty "0" deletes a level) and
    `u == 1` marks a service restart whose data overwrites the book. A quote is
    emitted once both sides have a level: `exchange_ns` = `ts` ms, `seq` = `u`.
    Acks and the spot pong (`{"success": true, "ret_msg": "pong", ..., "op": "ping"}`)
    return []; an ack with `"success": false` raises ParseError naming `ret_msg`.
    """

    __slots__ = ("_books", "_handlers", "_symbols")

    def __init__(self, symbols: Mapping[str, str]) -> None:
        """Parse for the configured symbols, given as venue form → canonical (`BTCUSDT` → `BTC-USDT`)."""
        self._symbols = dict(symbols)
        self._books: dict[str, _Book] = {}
        self._handlers: dict[str, Callable[[str, dict[str, Any], int], list[Quote]]] = {
            "orderbook": self._orderbook,
        }

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return the symbol's new best bid/ask after an orderbook frame, [] for control frames."""
        message = decode_object(frame)
        topic = message.get("topic")
        if topic is None:
            return _control(message, frame)
        if not isinstance(topic, str):
            raise ParseError(f"bybit: 'topic' must be a string: {frame_sample(frame)!r}")
        handler = self._handlers.get(topic.partition(".")[0])
        if handler is None:
            raise ParseError(f"bybit: unexpected topic {topic!r}")
        return handler(topic, message, received_ns)

    def _orderbook(self, topic: str, message: dict[str, Any], received_ns: int) -> list[Quote]:
        kind = field(message, "type", str, topic)
        ts_ms = field(message, "ts", int, topic)
        data = field(message, "data", dict, topic)
        venue_symbol = field(data, "s", str, topic)
        if topic.rpartition(".")[2] != venue_symbol:
            raise ParseError(f"bybit: topic {topic!r} carries data for {venue_symbol!r}")
        symbol = self._symbols.get(venue_symbol)
        if symbol is None:
            raise ParseError(f"bybit: {topic} is for unconfigured symbol {venue_symbol!r}")
        update_id = field(data, "u", int, topic)
        # Check the whole frame before touching the book, so a bad frame changes nothing.
        bids = _levels(data.get("b"), f"{topic} b")
        asks = _levels(data.get("a"), f"{topic} a")
        if kind == "snapshot" or update_id == 1:
            book = self._books[symbol] = _Book()
        elif kind == "delta":
            found = self._books.get(symbol)
            if found is None:
                raise ParseError(f"bybit: {topic} delta u={update_id} before any snapshot")
            book = found
        else:
            raise ParseError(f"bybit: {topic} has unknown type {kind!r}")
        book.apply(bids, asks)
        if not book.bids or not book.asks:
            return []
        bid, ask = max(book.bids), min(book.asks)
        quote = Quote(
            venue=VENUE,
            symbol=symbol,
            bid=bid,
            bid_qty=book.bids[bid],
            ask=ask,
            ask_qty=book.asks[ask],
            exchange_ns=ts_ms * 1_000_000,
            received_ns=received_ns,
            seq=update_id,
        )
        return [quote]


def _levels(value: object, name: str) -> list[Level]:
    if not isinstance(value, list):
        raise ParseError(f"bybit: {name} must be a list of [price, size] levels, got {value!r}")
    levels: list[Level] = []
    for level in value:
        if not isinstance(level, list) or len(level) != 2:
            raise ParseError(f"bybit: {name} level must be [price, size], got {level!r}")
        levels.append((price_of(level[0], f"bybit {name} price"), decimal_of(level[1], f"bybit {name} size")))
    return levels


def _control(message: dict[str, Any], frame: str | bytes) -> list[Quote]:
    op = message.get("op")
    if op not in _CONTROL_OPS:
        raise ParseError(f"bybit: unexpected frame without a topic: {frame_sample(frame)!r}")
    if message.get("success") is False:
        raise ParseError(f"bybit: {op} failed: {message.get('ret_msg')!r}")
    return []
