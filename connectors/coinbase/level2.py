"""Keep Coinbase `level2` order books: snapshot + updates, in sync by the connection's `sequence_num`.

This is Coinbase's only live top of book (the `ticker` channel moves on trades
only), so the adapter uses it with and without `depth`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from connectors.base import decimal_of, field, price_of
from connectors.book import OrderBook, ServedBooks, quote_rejects
from connectors.coinbase.parse import (
    CONTROL_CHANNELS,
    VENUE,
    Envelope,
    SequenceCheck,
    decode_envelope,
    product_symbol,
)
from connectors.errors import ParseError
from connectors.types import BookSide, Level, Quote

# Coinbase names the ask side "offer"; "ask" is accepted too (the name is not confirmed everywhere).
_SIDES: Final[dict[str, BookSide]] = {"bid": "bid", "offer": "ask", "ask": "ask"}


@dataclass(frozen=True, slots=True)
class _Event:
    """One checked `l2_data` event for one product."""

    kind: Literal["snapshot", "update"]
    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class Level2Parser:
    """Keep one book per product from `l2_data` messages and emit its top after each::

        {"channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z",
         "sequence_num": 0, "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
            {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73",
             "new_quantity": "0.06317902"}, ...]}]}

    A `snapshot` event replaces the product's book, an `update` sets each level's
    absolute `new_quantity` ("0" deletes; the ask side is "offer"). The envelope's
    `sequence_num` counts every message of the connection (heartbeats too): a jump
    means a message was lost, so every book is discarded and reported (BookInvalid
    "gap", one per parse call) and resubscribed; a lower number is out of order and
    dropped (counted in `quote_rejects`). An update for a product without a book (its snapshot was lost) is
    reported as "snapshot". Updates for a product waiting for its new snapshot are
    skipped. A crossed book serves nothing: it is discarded and reported once, and a
    crossed fresh snapshot is held silently until it uncrosses. `seq` is the
    `sequence_num`, `exchange_ns` the envelope `timestamp`.

    Every event of a product gives a quote of its book as of that message: each
    change of the best bid or offer, and changes deeper down too (they confirm the
    top is current). With `depth` None the quote is the top level alone, otherwise
    it carries the best `depth` levels a side.
    """

    __slots__ = ("_books", "_products", "_sequence")

    def __init__(self, products: Mapping[str, str], depth: int | None) -> None:
        """Parse for product_id → canonical `products`, serving `depth` levels a side (None: the top only)."""
        if depth is not None and depth < 1:
            raise ValueError(f"coinbase: depth must be at least 1, got {depth!r}")
        self._products = dict(products)
        self._sequence = SequenceCheck()
        self._books = ServedBooks(VENUE, depth)

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return a quote per book an `l2_data` message changed; [] for control messages."""
        envelope = decode_envelope(frame)
        if envelope.channel not in CONTROL_CHANNELS and envelope.channel != "l2_data":
            raise ParseError(f"coinbase: unexpected channel {envelope.channel!r} on a level2 connection")
        # Check the whole message before its sequence_num counts: a bad one shows as a jump next.
        events = [self._event(event) for event in envelope.events] if envelope.channel == "l2_data" else []
        last = self._sequence.last
        verdict = self._sequence.check(envelope.sequence_num)
        if verdict == "stale":
            if events:
                quote_rejects(VENUE).out_of_order += 1
            return self._books.deliver([])
        if verdict == "jump":
            for symbol in self._products.values():
                self._books.discard(
                    symbol, "gap", f"sequence_num jumped from {last} to {envelope.sequence_num}"
                )
        quotes: list[Quote] = []
        for event in events:
            quotes.extend(self._apply(event, envelope, received_ns))
        return self._books.deliver(quotes)

    def _apply(self, event: _Event, envelope: Envelope, received_ns: int) -> list[Quote]:
        symbol, books = event.symbol, self._books
        if event.kind == "snapshot":
            book = OrderBook()
            book.apply_snapshot(event.bids, event.asks, envelope.sequence_num)
            books.start(symbol, book)
            fresh = True
        else:
            found = books.for_update(
                symbol, f"update at sequence_num {envelope.sequence_num} before a snapshot"
            )
            if found is None:
                return []
            book, fresh = found, False
            book.apply_levels(event.bids, event.asks)
            book.seq = envelope.sequence_num
        return books.serve(
            symbol, book, fresh=fresh, exchange_ns=envelope.exchange_ns, received_ns=received_ns
        )

    def _event(self, event: dict[str, Any]) -> _Event:
        kind: Literal["snapshot", "update"]
        if event.get("type") == "snapshot":
            kind = "snapshot"
        elif event.get("type") == "update":
            kind = "update"
        else:
            raise ParseError(
                f"coinbase: l2_data event type must be snapshot or update: {event.get('type')!r}"
            )
        symbol = product_symbol(self._products, event.get("product_id"), f"l2_data {kind}")
        sides: dict[str, list[Level]] = {"bid": [], "ask": []}
        for update in field(event, "updates", list, f"coinbase l2_data {symbol}"):
            if not isinstance(update, dict):
                raise ParseError(f"coinbase: l2_data {symbol} update must be an object, got {update!r}")
            raw_side = update.get("side")
            side = _SIDES.get(raw_side) if isinstance(raw_side, str) else None
            if side is None:
                raise ParseError(f"coinbase: l2_data {symbol} side must be bid or offer, got {update!r}")
            where = f"coinbase l2_data {symbol} {update.get('side')}"
            price = price_of(update.get("price_level"), f"{where} price_level")
            sides[side].append((price, decimal_of(update.get("new_quantity"), f"{where} new_quantity")))
        return _Event(kind=kind, symbol=symbol, bids=tuple(sides["bid"]), asks=tuple(sides["ask"]))
