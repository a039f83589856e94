"""Binance Spot local order books: `<symbol>@depth@100ms` diffs aligned to `/api/v3/depth` snapshots.

The documented procedure, per symbol: buffer the diff events; fetch a REST
snapshot; if its `lastUpdateId` is below the first buffered `U`, fetch again;
drop buffered events with `u <= lastUpdateId`; the book is the snapshot at id
`lastUpdateId`, then each event applies in turn. Per event: `u <= id` is old
(ignored); `U > id + 1` is a gap, which discards the book and restarts the
procedure; otherwise apply (qty 0 deletes) and set id := `u`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import structlog

from connectors.base import decode_object, field, frame_sample, levels_of
from connectors.binance.parse import VENUE, request_response, server_shutdown
from connectors.book import BookInvalid, OrderBook, book_quote, quote_rejects
from connectors.errors import ParseError, VenueConnectionError, VenueError
from connectors.types import Level, Quote

# `/api/v3/depth` weight by `limit`: a snapshot costs the same anywhere within a bracket.
DEPTH_WEIGHTS: Final[tuple[tuple[int, int], ...]] = ((100, 5), (500, 25), (1000, 50), (5000, 250))
MAX_DEPTH: Final = DEPTH_WEIGHTS[-1][0]
# Diff events kept per symbol while its snapshot is on the way (100 ms events: 200 s worth).
BUFFER_EVENTS: Final = 2000
# Stay below the documented 6000 REQUEST_WEIGHT a minute: other clients may share the IP.
_WEIGHT_BUDGET_PER_MINUTE: Final = 3000
_REQUEST_TIMEOUT_S: Final = 10.0
_BODY_SAMPLE_CHARS: Final = 200

_log = structlog.get_logger(__name__)


def snapshot_limit(depth: int) -> int:
    """Return the REST `limit` for a book of `depth` levels: the largest within the cheapest bracket."""
    for limit, _weight in DEPTH_WEIGHTS:
        if depth <= limit:
            return limit
    raise ValueError(f"binance: depth must be at most {MAX_DEPTH}, got {depth!r}")


def snapshot_weight(limit: int) -> int:
    """Return the request weight of `/api/v3/depth` with this `limit`."""
    return next(weight for bracket, weight in DEPTH_WEIGHTS if limit <= bracket)


@dataclass(frozen=True, slots=True)
class _Event:
    """One checked diff event: update ids `U..u`, its levels and its event time."""

    first_id: int
    last_id: int
    bids: list[Level]
    asks: list[Level]
    exchange_ns: int


@dataclass(slots=True)
class _Syncing:
    """A symbol without a book: diff events buffered until its snapshot arrives."""

    events: deque[_Event]
    requested: bool = False


class DepthParser:
    """Keep each symbol's book from combined-stream `<symbol>@depth@100ms` frames and REST snapshots.

    A diff event (`E` event time ms, `U`/`u` first/last update id)::

        {"stream": "bnbbtc@depth@100ms",
         "data": {"e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": 157, "u": 160,
                  "b": [["0.0024", "10"]], "a": [["0.0026", "100"]]}}

    and the `GET /api/v3/depth` body it aligns with::

        {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]],
         "asks": [["4.00000200", "12.00000000"]]}

    Each applied event emits the symbol's top `depth` levels (`seq` = last
    applied `u`, `exchange_ns` = `E`). A gap raises BookInvalid("gap") and a
    crossed book BookInvalid("crossed"); either way the book is gone and the
    symbol buffers and asks for a new snapshot (`snapshot_requests`). Unlike
    `connectors.book.ServedBooks`, nothing is held: a book crossed straight from
    its snapshot is discarded and resynced too, and a symbol without a book
    buffers its events for the REST snapshot instead of skipping them.
    `!serverShutdown` raises ReconnectRequested; request responses return [].
    """

    __slots__ = ("_buffer_events", "_depth", "_handlers", "_keep_levels", "_requests", "_states", "_symbols")

    def __init__(self, symbols: Mapping[str, str], depth: int, *, buffer_events: int = BUFFER_EVENTS) -> None:
        """Keep `depth`-level books for the symbols, given as venue form → canonical (`BTCUSDT` → `BTC-USDT`).

        `buffer_events` bounds the diff events kept per symbol while it syncs; the
        oldest go first, which the snapshot alignment then detects if it matters.
        """
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"binance: depth must be in 1..{MAX_DEPTH}, got {depth!r}")
        self._symbols = dict(symbols)
        self._depth = depth
        # Levels beyond the snapshot's are unknown until they change; keep no more than it gave.
        self._keep_levels = snapshot_limit(depth)
        self._buffer_events = buffer_events
        self._states: dict[str, _Syncing | OrderBook] = {
            symbol: _Syncing(deque(maxlen=buffer_events)) for symbol in self._symbols.values()
        }
        self._requests: list[str] = []
        self._handlers: dict[str, Callable[[dict[str, Any], int], list[Quote]]] = {
            "depth": self._depth_update,
            "depth@100ms": self._depth_update,
            "!serverShutdown": server_shutdown,
        }

    def parse(self, frame: str | bytes, received_ns: int) -> list[Quote]:
        """Return the symbol's new top of book after a diff event, [] while it syncs or for a response."""
        message = decode_object(frame)
        stream = message.get("stream")
        if stream is None:
            return request_response(message, frame)
        if not isinstance(stream, str):
            raise ParseError(f"binance: 'stream' must be a string: {frame_sample(frame)!r}")
        # "bnbbtc@depth@100ms" → "depth@100ms"; "!serverShutdown" has no "@" and stays whole.
        handler = self._handlers.get(stream.partition("@")[2] or stream)
        if handler is None:
            raise ParseError(f"binance: unexpected stream {stream!r}")
        return handler(field(message, "data", dict, f"binance {stream}"), received_ns)

    def snapshot_requests(self) -> list[str]:
        """Return, once each, the symbols whose buffered events now wait for a REST snapshot."""
        requests, self._requests = self._requests, []
        return requests

    def load_snapshot(self, symbol: str, payload: bytes, received_ns: int) -> list[Quote]:
        """Start `symbol`'s book from a `/api/v3/depth` body and its buffered events; return its quote.

        A snapshot older than the buffered events is dropped and asked for again
        ([] is returned); one whose buffered events do not continue it raises
        BookInvalid("gap"). A body that is no snapshot raises ParseError and asks again.
        """
        state = self._states.get(symbol)
        if state is None:
            raise ParseError(f"binance: snapshot for unconfigured symbol {symbol!r}")
        if isinstance(state, OrderBook):
            return []  # already in sync: a late duplicate changes nothing
        state.requested = False  # this answers the request; each way below that needs another asks again
        try:
            last_id, bids, asks = _snapshot(payload)
        except ParseError:
            self._request(symbol, state)
            raise
        if not state.events or last_id < state.events[0].first_id:
            # Too old for the buffer: fetch again (with nothing buffered, the next event asks).
            if state.events:
                self._request(symbol, state)
            return []
        book = OrderBook()
        book.apply_snapshot(bids, asks, last_id)
        self._states[symbol] = book
        events = list(state.events)
        applied: _Event | None = None
        for number, event in enumerate(events):
            step = self._apply(book, event)
            if step == "gap":
                self._restart(symbol, events[number:])
                raise BookInvalid(symbol, "gap", f"buffered event U={event.first_id} follows u={book.seq}")
            if step == "applied":
                applied = event
        return self._serve(symbol, book, None if applied is None else applied.exchange_ns, received_ns)

    def _depth_update(self, data: dict[str, Any], received_ns: int) -> list[Quote]:
        symbol, event = self._event(data)
        state = self._states[symbol]
        if isinstance(state, _Syncing):
            state.events.append(event)
            self._request(symbol, state)
            return []
        step = self._apply(state, event)
        if step == "gap":
            self._restart(symbol, [event])
            raise BookInvalid(symbol, "gap", f"event U={event.first_id} follows u={state.seq}")
        if step == "old":
            return []
        return self._serve(symbol, state, event.exchange_ns, received_ns)

    def _apply(self, book: OrderBook, event: _Event) -> Literal["old", "gap", "applied"]:
        """Apply one event if it continues the book; leave the book untouched when it is old or gapped."""
        last_id = book.seq
        assert last_id is not None  # a book always starts from a snapshot's lastUpdateId
        if event.last_id <= last_id:
            return "old"
        if event.first_id > last_id + 1:
            return "gap"
        book.apply_levels(event.bids, event.asks)
        book.seq = event.last_id
        bid_levels, ask_levels = book.depth()
        if max(bid_levels, ask_levels) > 2 * self._keep_levels:
            book.truncate(self._keep_levels)
        return "applied"

    def _serve(self, symbol: str, book: OrderBook, exchange_ns: int | None, received_ns: int) -> list[Quote]:
        if book.crossed:
            quote_rejects(VENUE).crossed += 1
            self._restart(symbol, [])
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

    def _restart(self, symbol: str, events: list[_Event]) -> None:
        """Discard `symbol`'s book and buffer from `events`, asking for a snapshot once one is buffered."""
        state = _Syncing(deque(events, maxlen=self._buffer_events))
        self._states[symbol] = state
        if events:
            self._request(symbol, state)

    def _request(self, symbol: str, state: _Syncing) -> None:
        if not state.requested:
            state.requested = True
            self._requests.append(symbol)

    def _event(self, data: dict[str, Any]) -> tuple[str, _Event]:
        where = "binance depthUpdate"
        venue_symbol = field(data, "s", str, where)
        symbol = self._symbols.get(venue_symbol)
        if symbol is None:
            raise ParseError(f"binance: depthUpdate for unconfigured symbol {venue_symbol!r}")
        first_id, last_id = field(data, "U", int, where), field(data, "u", int, where)
        if first_id > last_id:
            raise ParseError(f"binance: depthUpdate {venue_symbol} has U={first_id} > u={last_id}")
        event = _Event(
            first_id=first_id,
            last_id=last_id,
            bids=levels_of(data.get("b"), f"{where} b"),
            asks=levels_of(data.get("a"), f"{where} a"),
            exchange_ns=field(data, "E", int, where) * 1_000_000,
        )
        return symbol, event


def _snapshot(payload: bytes) -> tuple[int, list[Level], list[Level]]:
    body = decode_object(payload)
    where = "binance /api/v3/depth"
    last_id = field(body, "lastUpdateId", int, where)
    return last_id, levels_of(body.get("bids"), f"{where} bids"), levels_of(body.get("asks"), f"{where} asks")


class DepthSnapshots:
    """Fetch `/api/v3/depth` snapshots over one aiohttp session, within the IP's request-weight budget.

    The session opens on first use and `close()` releases it. A 429/418 answer
    blocks further requests for its `Retry-After`; the used weight the venue
    reports (`X-MBX-USED-WEIGHT-1M`) holds requests until the next minute when
    the next one would pass the budget.
    """

    def __init__(
        self,
        rest_url: str,
        depth: int,
        *,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Fetch from `rest_url` (e.g. `https://api.binance.com`) with the limit that `depth` needs."""
        self._url = f"{rest_url}/api/v3/depth"
        self.limit = snapshot_limit(depth)
        self.weight = snapshot_weight(self.limit)
        self._clock = wall_clock
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._used_weight = 0
        self._weight_minute = -1
        self._blocked_until = 0.0

    async def fetch(self, venue_symbol: str) -> bytes:
        """Return the snapshot body of `venue_symbol` (`BTCUSDT`); raise VenueError on failure."""
        await self._wait_for_budget()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S))
        params = {"symbol": venue_symbol, "limit": str(self.limit)}
        try:
            async with self._session.get(self._url, params=params) as response:
                body = await response.read()
                self._note_weight(response.headers.get("X-MBX-USED-WEIGHT-1M"))
                status, retry_after = response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise VenueConnectionError(f"binance: GET {self._url} {venue_symbol} failed: {exc!r}") from exc
        if status in {418, 429}:
            self._blocked_until = self._clock() + _seconds(retry_after, default=60.0)
        if status != 200:
            sample = body[:_BODY_SAMPLE_CHARS].decode("utf-8", "replace")
            raise VenueError(f"binance: GET {self._url} {venue_symbol} answered HTTP {status}: {sample!r}")
        return body

    async def close(self) -> None:
        """Close the HTTP session; idempotent, and the next fetch opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _wait_for_budget(self) -> None:
        now = self._clock()
        # The venue counts weight per calendar minute: what it reported in an earlier one is spent.
        used = self._used_weight if int(now // 60) == self._weight_minute else 0
        pause_s = self._blocked_until - now
        if used + self.weight > _WEIGHT_BUDGET_PER_MINUTE:
            pause_s = max(pause_s, 60.0 - now % 60.0)
        if pause_s > 0:
            _log.warning("binance_rest_weight_pause", pause_s=round(pause_s, 3), used_weight=used)
            await self._sleep(pause_s)

    def _note_weight(self, header: str | None) -> None:
        if header is not None and header.isdigit():
            self._used_weight = int(header)
            self._weight_minute = int(self._clock() // 60)


def _seconds(header: str | None, *, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default
