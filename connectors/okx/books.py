"""Keep OKX `books` order books in sync: seqId/prevSeqId continuity, REST snapshots, checksums."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from connectors.base import decode_object, field
from connectors.book import BookInvalid, OrderBook, serve_or_hold
from connectors.errors import ParseError
from connectors.okx.checksum import CHECKSUM_LEVELS, book_checksum
from connectors.okx.parse import VENUE, Push, decode_push, levels, ms_to_ns, sequence
from connectors.types import Level, Quote

# The `books` channel keeps 400 levels a side; deeper levels leave the window unannounced.
BOOK_LEVELS: Final = 400
# Updates kept per symbol while its REST snapshot is on the way (100 ms each: over 6 minutes).
MAX_BUFFERED: Final = 4096


@dataclass(frozen=True, slots=True)
class _Update:
    """One `books` push, checked, before it touches a book."""

    prev_seq: int
    seq: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int
    exchange_ns: int


def _after_snapshot(update: _Update, snapshot_seq: int) -> Literal["apply", "old", "gap"]:
    """Classify an update against a book taken at `snapshot_seq` that no update has continued yet.

    It applies when it chains onto the snapshot (`prevSeqId` == its seqId, which
    also holds across a maintenance reset where `seqId` < `prevSeqId`) or
    straddles it (`prevSeqId` ≤ snapshot seqId < `seqId`), as OKX documents; it
    is old when the snapshot already holds it, and a gap when updates are missing.
    """
    if update.prev_seq == snapshot_seq or update.prev_seq < snapshot_seq < update.seq:
        return "apply"
    if update.prev_seq < snapshot_seq:
        return "old"
    return "gap"


class BooksParser:
    """Keep one book per instrument from `books` pushes and emit its top `depth` levels after each.

    A push (snapshot or update) has the shape::

        {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",
         "data": [{"asks": [["8476.98", "415", "0", "13"]], "bids": [["8476.97", "256", "0", "12"]],
                   "ts": "1597026383085", "checksum": 0, "prevSeqId": 123456, "seqId": 123457}]}

    A snapshot (`prevSeqId` -1) replaces the book. An update must have
    `prevSeqId` == the book's last `seqId` (a `seqId` below `prevSeqId` after
    maintenance is legal; an idle keepalive with no levels and `prevSeqId` ==
    `seqId` changes nothing); a push wholly before the book's `seqId` (a
    duplicate) is skipped; anything else is a gap: the book is discarded and
    BookInvalid("gap") raised. Size "0" deletes a level. A non-zero `checksum`
    is verified (signed CRC32 of the top 25, see `connectors.okx.checksum`);
    OKX sends 0 since June 2026. OKX is also retiring the stream's snapshot: an
    update for an instrument without a book starts a REST sync instead
    (`snapshot_requests` → the runner fetches → `load_snapshot`), updates are
    buffered meanwhile and aligned with the snapshot by seqId. A crossed book
    (pre-open) serves nothing; it is discarded and resynced once, and a crossed
    fresh snapshot is then held silently until it uncrosses (`serve_or_hold`,
    the rule `connectors.book.ServedBooks` applies too). The books stay here, not
    in a ServedBooks: a discarded book waits for a REST snapshot with its updates
    buffered (not skipped until the stream sends one), and a push carries one
    instrument, so its BookInvalid is raised at once instead of queued.
    """

    __slots__ = ("_books", "_buffers", "_depth", "_held", "_requests", "_straddle", "_symbols")

    def __init__(self, symbols: Mapping[str, str], depth: int) -> None:
        """Parse for instId → canonical `symbols`, serving the best `depth` levels a side."""
        if not 1 <= depth <= BOOK_LEVELS:
            raise ValueError(f"okx: depth must be in 1..{BOOK_LEVELS}, got {depth!r}")
        self._symbols = dict(symbols)
        self._depth = depth
        self._books: dict[str, OrderBook] = {}
        # Symbols waiting for a REST snapshot, with the updates received since.
        self._buffers: dict[str, deque[_Update]] = {}
        self._requests: list[str] = []
        # Books built from a REST snapshot whose next update may straddle the snapshot's seqId.
        self._straddle: set[str] = set()
        # Books that arrived crossed in a fresh snapshot: silent until they uncross.
        self._held: set[str] = set()

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return the book's quote after a `books` push, [] for control frames and while syncing."""
        push = decode_push(frame, self._symbols)
        if push is None:
            return []
        if push.channel != "books":
            raise ParseError(f"okx: unexpected channel {push.channel!r} on a books connection")
        update = _update_of(push)
        if push.action == "snapshot":
            return self._snapshot(push.symbol, update, received_ns)
        if push.action == "update":
            return self._update(push.symbol, update, received_ns)
        raise ParseError(f"okx: books {push.symbol} has unknown action {push.action!r}")

    def snapshot_requests(self) -> list[str]:
        """Return, once each, the symbols whose book now waits for a REST snapshot."""
        requests, self._requests = self._requests, []
        return requests

    def load_snapshot(self, symbol: str, payload: bytes, received_ns: int) -> list[Quote]:
        """Build `symbol`'s book from a `GET /api/v5/market/books` body and the updates buffered since.

        The first buffered update to apply is the one that follows the snapshot
        (`prevSeqId` ≤ snapshot seqId < `seqId`); earlier ones are in the snapshot
        already. A snapshot older than the buffered stream raises
        BookInvalid("snapshot") and a new one is requested.
        """
        buffer = self._buffers.get(symbol)
        if buffer is None:
            return []  # a stream snapshot synced the book meanwhile
        try:
            snapshot = _rest_snapshot(payload, symbol)
        except ParseError:
            self._requests.append(symbol)
            raise
        pending = list(buffer)
        verdicts = [_after_snapshot(update, snapshot.seq) for update in pending]
        start = verdicts.index("apply") if "apply" in verdicts else len(pending)
        if start == len(pending) and "gap" in verdicts:
            self._resync(symbol, pending)
            raise BookInvalid(
                symbol, "snapshot", f"REST seqId {snapshot.seq} is older than the buffered updates"
            )
        book = OrderBook()
        book.apply_snapshot(snapshot.bids, snapshot.asks, snapshot.seq)
        book.truncate(BOOK_LEVELS)
        last = snapshot
        for index in range(start, len(pending)):
            update = pending[index]
            if index > start and update.prev_seq != last.seq:
                self._resync(symbol, pending[index:])
                raise BookInvalid(symbol, "gap", f"buffered prevSeqId {update.prev_seq} after {last.seq}")
            _apply(book, update)
            self._verify_checksum(symbol, book, update, pending[index + 1 :])
            last = update
        del self._buffers[symbol]
        self._books[symbol] = book
        if start == len(pending):
            self._straddle.add(symbol)
        return self._serve(symbol, book, last.exchange_ns, received_ns, fresh=True)

    def _snapshot(self, symbol: str, update: _Update, received_ns: int) -> list[Quote]:
        self._forget(symbol)
        book = self._books[symbol] = OrderBook()
        book.apply_snapshot(update.bids, update.asks, update.seq)
        book.truncate(BOOK_LEVELS)
        self._verify_checksum(symbol, book, update)
        return self._serve(symbol, book, update.exchange_ns, received_ns, fresh=True)

    def _update(self, symbol: str, update: _Update, received_ns: int) -> list[Quote]:
        buffer = self._buffers.get(symbol)
        if buffer is not None:
            buffer.append(update)
            return []
        book = self._books.get(symbol)
        if book is None:
            # The stream gave no snapshot (OKX is retiring it): sync from REST.
            self._resync(symbol, [update])
            return []
        verdict = self._verdict(symbol, update, book.seq)
        if verdict == "old":
            return []  # the book holds it already
        if verdict == "gap":
            self._resync(symbol, [update])
            raise BookInvalid(symbol, "gap", f"prevSeqId {update.prev_seq} after seqId {book.seq}")
        self._straddle.discard(symbol)
        _apply(book, update)
        self._verify_checksum(symbol, book, update)
        return self._serve(symbol, book, update.exchange_ns, received_ns, fresh=False)

    def _verdict(self, symbol: str, update: _Update, seq: int | None) -> Literal["apply", "old", "gap"]:
        if seq is None:
            return "gap"  # a book without a seqId cannot be continued
        if symbol in self._straddle:
            return _after_snapshot(update, seq)
        if update.prev_seq == seq:
            return "apply"
        # A push from before the book's seqId (a duplicate) was applied already. After a
        # maintenance reset old pushes carry higher numbers and count as a gap: safe.
        return "old" if update.prev_seq < update.seq <= seq else "gap"

    def _verify_checksum(
        self, symbol: str, book: OrderBook, update: _Update, later: Sequence[_Update] = ()
    ) -> None:
        if not update.checksum:
            return  # retired: OKX sends 0
        bids, asks = book.top(CHECKSUM_LEVELS)
        computed = book_checksum(bids, asks)
        if computed != update.checksum:
            self._resync(symbol, later)
            raise BookInvalid(
                symbol, "checksum", f"seqId {update.seq}: computed {computed}, OKX sent {update.checksum}"
            )

    def _serve(
        self, symbol: str, book: OrderBook, exchange_ns: int, received_ns: int, *, fresh: bool
    ) -> list[Quote]:
        return serve_or_hold(
            book,
            self._held,
            self._crossed,
            fresh=fresh,
            venue=VENUE,
            symbol=symbol,
            depth=self._depth,
            exchange_ns=exchange_ns,
            received_ns=received_ns,
        )

    def _crossed(self, symbol: str, detail: str) -> None:
        """Discard a book an update crossed and ask for a REST snapshot (raises BookInvalid)."""
        self._resync(symbol, [])
        raise BookInvalid(symbol, "crossed", detail)

    def _resync(self, symbol: str, buffered: Sequence[_Update]) -> None:
        """Discard `symbol`'s book and ask for a REST snapshot, keeping `buffered` to align it with."""
        self._forget(symbol)
        self._buffers[symbol] = deque(buffered, maxlen=MAX_BUFFERED)
        self._requests.append(symbol)

    def _forget(self, symbol: str) -> None:
        self._books.pop(symbol, None)
        self._buffers.pop(symbol, None)
        self._straddle.discard(symbol)
        self._held.discard(symbol)


def _apply(book: OrderBook, update: _Update) -> None:
    book.apply_levels(update.bids, update.asks)
    book.seq = update.seq
    book.truncate(BOOK_LEVELS)


def _update_of(push: Push) -> _Update:
    where = f"okx books {push.symbol}"
    data = push.data
    checksum = data.get("checksum", 0)
    if not isinstance(checksum, int) or isinstance(checksum, bool):
        raise ParseError(f"{where}: 'checksum' must be an integer, got {checksum!r}")
    return _Update(
        prev_seq=sequence(data, "prevSeqId", where),
        seq=sequence(data, "seqId", where),
        bids=tuple(levels(data.get("bids"), f"books {push.symbol} bids")),
        asks=tuple(levels(data.get("asks"), f"books {push.symbol} asks")),
        checksum=checksum,
        exchange_ns=ms_to_ns(data.get("ts"), f"{where} ts"),
    )


def _rest_snapshot(payload: bytes, symbol: str) -> _Update:
    """Return the book in a REST body `{"code": "0", "data": [{"asks", "bids", "ts", "seqId"}]}`."""
    where = f"okx REST books {symbol}"
    body: dict[str, Any] = decode_object(payload)
    code = body.get("code")
    if code != "0":
        raise ParseError(f"{where}: code {code!r}: {body.get('msg')!r}")
    data = field(body, "data", list, where)
    if len(data) != 1 or not isinstance(data[0], dict):
        raise ParseError(f"{where}: 'data' must hold one book, got {len(data)} items")
    book = data[0]
    seq = sequence(book, "seqId", where)
    return _Update(
        prev_seq=-1,
        seq=seq,
        bids=tuple(levels(book.get("bids"), f"REST books {symbol} bids")),
        asks=tuple(levels(book.get("asks"), f"REST books {symbol} asks")),
        checksum=0,
        exchange_ns=ms_to_ns(book.get("ts"), f"{where} ts"),
    )
