"""Parse Bybit v5 spot public WebSocket frames into quotes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from connectors.base import decode_object, field, frame_sample, levels_of
from connectors.book import BookInvalid, OrderBook, book_quote, quote_rejects
from connectors.errors import ParseError
from connectors.top_guard import is_older
from connectors.types import Quote

VENUE: Final = "bybit"
_CONTROL_OPS: Final = frozenset({"subscribe", "unsubscribe", "ping", "pong"})
_BOOK_KINDS: Final = frozenset({"snapshot", "delta"})
# Deltas ignored while a symbol waits for its resubscription's snapshot before asking again:
# the old subscription's deltas in flight are few, a lost resubscription would wait forever.
RESYNC_PATIENCE_DELTAS: Final = 200


class OrderbookParser:
    """Keep a book per symbol from `orderbook.<depth>.<SYM>` frames and emit its top after each frame.

    The documented push (here `orderbook.50`; `orderbook.1` is the same shape)::

        {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1672304484978,
         "data": {"s": "BTCUSDT", "b": [["16493.50", "0.006"], ["16493.00", "0.100"]],
                  "a": [["16611.00", "0.029"], ["16612.00", "0.213"]],
                  "u": 18521288, "seq": 7961638724},
         "cts": 1672304484976}

    Bybit numbers each topic's pushes with `u` (and the cross sequence `seq`,
    not used) and stamps them with `ts`. A snapshot replaces the book unless it
    is older than the book: a lower `u` and a `ts` no later (an out-of-order push,
    dropped; a lower `u` with a later `ts` is the venue renumbering, and level 1
    re-pushes an unchanged book with the same `u`, which is served again). A
    delta (qty "0" deletes a level) must carry the next `u`: one at or below the
    book's is old and dropped, one past `u + 1` is a gap. `u == 1` marks a service
    restart whose data overwrites the book. Dropped pushes count as `out_of_order`
    and crossed books as `crossed` in `quote_rejects("bybit")`. A gap, a crossed
    book or a delta before any snapshot discards the book and raises
    BookInvalid; the symbol then waits for a new snapshot (its resubscription
    answers with one), ignoring deltas, and asks again after
    `RESYNC_PATIENCE_DELTAS` of them. Unlike `connectors.book.ServedBooks`,
    nothing is held: a book crossed straight from its snapshot is discarded and
    resubscribed too, and a snapshot older than the book is dropped as out of
    order rather than installed.

    A quote is emitted once both sides have a level: `exchange_ns` = `ts` ms,
    `seq` = `u`, and with `depth` set the top `depth` levels a side.
    Acks and the spot pong (`{"success": true, "ret_msg": "pong", ..., "op": "ping"}`)
    return []; an ack with `"success": false` raises ParseError naming `ret_msg`.
    """

    __slots__ = ("_books", "_depth", "_handlers", "_resyncing", "_stamps", "_symbols")

    def __init__(self, symbols: Mapping[str, str], depth: int | None = None) -> None:
        """Parse for the symbols, given as venue form → canonical (`BTCUSDT` → `BTC-USDT`).

        `depth` None emits top of book only; an int adds that many levels a side.
        """
        self._symbols = dict(symbols)
        self._depth = depth
        self._books: dict[str, OrderBook] = {}
        # Symbol → `ts` (ms) of the last push applied to its book.
        self._stamps: dict[str, int] = {}
        # Symbol → deltas ignored since its book was discarded.
        self._resyncing: dict[str, int] = {}
        self._handlers: dict[str, Callable[[str, dict[str, Any], int], list[Quote]]] = {
            "orderbook": self._orderbook,
        }

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return the symbol's new top of book after an orderbook frame, [] for control frames."""
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
        if kind not in _BOOK_KINDS:
            raise ParseError(f"bybit: {topic} has unknown type {kind!r}")
        # Check the whole frame before touching the book, so a bad frame changes nothing.
        bids = levels_of(data.get("b"), f"bybit: {topic} b")
        asks = levels_of(data.get("a"), f"bybit: {topic} a")
        if kind == "snapshot" or update_id == 1:
            if self._out_of_order(symbol, update_id, ts_ms):
                return []
            book = self._books[symbol] = OrderBook()
            book.apply_snapshot(bids, asks, update_id)
            self._resyncing.pop(symbol, None)
        elif symbol in self._resyncing:
            return self._wait_for_snapshot(symbol, update_id)
        else:
            found = self._books.get(symbol)
            if found is None:
                self._resyncing[symbol] = 0
                raise BookInvalid(symbol, "sequence", f"delta u={update_id} before any snapshot")
            if not self._continues(symbol, found, update_id):
                return []
            book = found
            book.apply_levels(bids, asks)
            book.seq = update_id
        self._stamps[symbol] = ts_ms
        return self._serve(symbol, book, ts_ms * 1_000_000, received_ns)

    def _out_of_order(self, symbol: str, update_id: int, ts_ms: int) -> bool:
        """Return True (and count it) for a snapshot older than the symbol's book; `u == 1` never is."""
        book = self._books.get(symbol)
        if book is None or update_id == 1 or not is_older(update_id, ts_ms, (book.seq, self._stamps[symbol])):
            return False
        quote_rejects(VENUE).out_of_order += 1
        return True

    def _continues(self, symbol: str, book: OrderBook, update_id: int) -> bool:
        """Return True if a delta with `update_id` is the next one, False if it is old; raise on a gap."""
        last_id = book.seq
        assert last_id is not None  # every book starts from a snapshot's u
        if update_id <= last_id:
            quote_rejects(VENUE).out_of_order += 1
            return False
        if update_id != last_id + 1:
            self._discard(symbol)
            raise BookInvalid(symbol, "gap", f"delta u={update_id} follows u={last_id}")
        return True

    def _wait_for_snapshot(self, symbol: str, update_id: int) -> list[Quote]:
        """Ignore a delta of a discarded book; ask again once too many came without a snapshot."""
        ignored = self._resyncing[symbol] + 1
        if ignored < RESYNC_PATIENCE_DELTAS:
            self._resyncing[symbol] = ignored
            return []
        self._resyncing[symbol] = 0
        raise BookInvalid(symbol, "sequence", f"{ignored} deltas without a snapshot, the last u={update_id}")

    def _serve(self, symbol: str, book: OrderBook, exchange_ns: int, received_ns: int) -> list[Quote]:
        if book.crossed:
            quote_rejects(VENUE).crossed += 1
            self._discard(symbol)
            raise BookInvalid(symbol, "crossed", f"best bid {book.best_bid} >= best ask {book.best_ask}")
        quote = book_quote(
            book,
            venue=VENUE,
            symbol=symbol,
            depth=self._depth,
            exchange_ns=exchange_ns,
            received_ns=received_ns,
        )
        return [] if quote is None else [quote]

    def _discard(self, symbol: str) -> None:
        del self._books[symbol]
        self._resyncing[symbol] = 0


def _control(message: dict[str, Any], frame: str | bytes) -> list[Quote]:
    op = message.get("op")
    if not isinstance(op, str) or op not in _CONTROL_OPS:  # a dict or list is unhashable
        raise ParseError(f"bybit: unexpected frame without a topic: {frame_sample(frame)!r}")
    if message.get("success") is False:
        raise ParseError(f"bybit: {op} failed: {message.get('ret_msg')!r}")
    return []
