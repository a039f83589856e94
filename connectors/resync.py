"""Resync one connection's discarded books, one symbol at a time, for the `StreamRunner`.

A depth parser raises `BookInvalid` when a symbol's book fails its integrity
rule. `BookResync.invalid` counts it (`smartroute_book_resyncs_total` and the
gap/checksum/crossed counters), tells `on_book_invalid` (which drops the symbol
from the cache at once) and resyncs that symbol without disturbing the others:

- by REST snapshot, for a `SnapshotParser`: the symbols it asks for
  (`snapshot_requests`) are queued once each and a few workers fetch them and
  hand them to `load_snapshot`; a refetch, or a book that fails again and again,
  waits with backoff first, and a failing fetch is retried with backoff;
- by the adapter's resync messages (unsubscribe + subscribe, answered with a
  snapshot): the first resync of a symbol goes out after the current frame
  (`outbox`), repeats of a symbol that keeps failing are sent later, with backoff;
- else the connection is reopened (`invalid` returns False).

A symbol's resync count is reset by its next quote (`synced`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
import structlog

from connectors import metrics
from connectors.base import Parser, SnapshotParser, VenueAdapter
from connectors.book import BookInvalid
from connectors.errors import ParseError, VenueError
from connectors.types import Quote

# Sending on a connection that is closing or gone.
SEND_FAILED: Final = (ConnectionError, aiohttp.ClientError)
# REST snapshots fetched at once per connection: enough to sync many symbols, gentle on request weight.
SNAPSHOT_WORKERS: Final = 4

_REASON_COUNTERS: Final = {
    "gap": metrics.BOOK_GAPS,
    "checksum": metrics.BOOK_CHECKSUM_FAILURES,
    "crossed": metrics.BOOK_CROSSED,
}

_log = structlog.get_logger(__name__)


class BookResync:
    """The resyncs under way on one connection: messages to send, snapshots to fetch, repeat offenders."""

    __slots__ = (
        "_adapter",
        "_backoff",
        "_delayed",
        "_fetches",
        "_fetching",
        "_group",
        "_on_book_invalid",
        "_parse_error",
        "_queue",
        "_resyncs",
        "_send",
        "_wall_clock_ns",
        "outbox",
        "snapshots",
    )

    def __init__(
        self,
        adapter: VenueAdapter,
        parser: Parser,
        *,
        send: Callable[[list[str]], Awaitable[None]],
        backoff: Callable[[int], float],
        wall_clock_ns: Callable[[], int],
        on_book_invalid: Callable[[str, str, str], None] | None,
        parse_error: Callable[[ParseError, str | bytes], None],
    ) -> None:
        """Resync `parser`'s books on a connection that `send`s paced frames; `backoff(n)` spaces repeats.

        `on_book_invalid(venue, symbol, reason)` is told first of each discarded
        book; `parse_error` counts a snapshot body that does not parse.
        """
        self._adapter = adapter
        # The same parser when it syncs books from REST snapshots (checked once: the hot path asks per frame).
        self.snapshots = parser if isinstance(parser, SnapshotParser) else None
        self._send = send
        self._backoff = backoff
        self._wall_clock_ns = wall_clock_ns
        self._on_book_invalid = on_book_invalid
        self._parse_error = parse_error
        self._group: asyncio.TaskGroup | None = None
        # Frames to send once the current frame is handled (resubscriptions).
        self.outbox: list[str] = []
        # Resyncs per symbol since a frame last gave it a quote: a book that fails again and
        # again (a venue serving a crossed book) is resynced with backoff, not in a loop.
        self._resyncs: dict[str, int] = {}
        self._delayed: set[asyncio.Task[None]] = set()
        # Symbols waiting for a REST snapshot, each queued at most once at a time.
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._fetching: set[str] = set()
        # REST snapshots fetched per symbol since its book was last in sync: spaces out refetches.
        self._fetches: dict[str, int] = {}

    def start(
        self,
        group: asyncio.TaskGroup,
        *,
        deliver: Callable[[list[Quote]], None],
        reopen: Callable[[BookInvalid], Awaitable[None]],
    ) -> list[asyncio.Task[None]]:
        """Resync within `group` from now on; return the snapshot workers started (none without REST sync).

        The workers `deliver` the quotes of each snapshot loaded, and `reopen` the
        connection when a snapshot's BookInvalid cannot be resynced on it.
        """
        self._group = group
        if self.snapshots is None:
            return []
        venue = self._adapter.venue
        workers = min(SNAPSHOT_WORKERS, len(self._adapter.symbols))
        return [
            group.create_task(
                self._fetch_snapshots(self.snapshots, deliver, reopen),
                name=f"{venue}-book-snapshots-{number}",
            )
            for number in range(workers)
        ]

    def cancel(self) -> None:
        """Cancel the resync messages still waiting for their backoff: the connection is over."""
        for task in self._delayed:
            task.cancel()

    def synced(self, quotes: list[Quote]) -> None:
        """Note that these symbols gave quotes: their next failure is a first one again."""
        if quotes and self._resyncs:
            for quote in quotes:
                self._resyncs.pop(quote.symbol, None)

    def invalid(self, exc: BookInvalid) -> bool:
        """Count and withdraw a discarded book and start its resync; return False to reopen the connection."""
        venue = self._adapter.venue
        metrics.BOOK_RESYNCS.labels(venue, exc.reason).inc()
        counter = _REASON_COUNTERS.get(exc.reason)
        if counter is not None:
            counter.labels(venue).inc()
        if self._on_book_invalid is not None:
            self._on_book_invalid(venue, exc.symbol, exc.reason)
        messages = self._adapter.resync_messages(exc.symbol)
        by_snapshot = self.snapshots is not None
        how = "snapshot" if by_snapshot else "reconnect" if messages is None else "messages"
        _log.warning("book_invalid", symbol=exc.symbol, reason=exc.reason, detail=exc.detail, resync=how)
        if messages is None and not by_snapshot:
            return False
        resyncs = self._resyncs[exc.symbol] = self._resyncs.get(exc.symbol, 0) + 1
        if messages and (resyncs == 1 or self._group is None):
            self.outbox.extend(messages)
        elif messages and self._group is not None:
            task = self._group.create_task(
                self._send_later(messages, self._backoff(resyncs - 2)),
                name=f"{venue}-book-resync-{exc.symbol}",
            )
            self._delayed.add(task)
            task.add_done_callback(self._delayed.discard)
        self.queue_snapshots()
        return True

    async def _send_later(self, messages: list[str], delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        try:
            await self._send(messages)
        except SEND_FAILED:
            return  # the connection is ending; the next one subscribes afresh

    def queue_snapshots(self) -> None:
        """Queue, once each, the symbols whose book the parser now syncs from a REST snapshot."""
        if self.snapshots is None:
            return
        for symbol in self.snapshots.snapshot_requests():
            if symbol not in self._fetching:
                self._fetching.add(symbol)
                self._queue.put_nowait(symbol)

    async def _fetch_snapshots(
        self,
        parser: SnapshotParser,
        deliver: Callable[[list[Quote]], None],
        reopen: Callable[[BookInvalid], Awaitable[None]],
    ) -> None:
        """Fetch each queued symbol's REST snapshot and align it with the parser's buffered updates."""
        while True:
            symbol = await self._queue.get()
            fetches = self._fetches.get(symbol, 0)
            # A refetch (the last snapshot was too old or did not align), or a book failing again
            # and again: do not hammer the venue.
            retries = fetches + max(0, self._resyncs.get(symbol, 0) - 1)
            if retries:
                await asyncio.sleep(self._backoff(retries - 1))
            payload = await self._fetch_snapshot(symbol)
            self._fetches[symbol] = fetches + 1
            self._fetching.discard(symbol)
            received_ns = self._wall_clock_ns()
            try:
                quotes = parser.load_snapshot(symbol, payload, received_ns)
            except BookInvalid as exc:
                if not self.invalid(exc):
                    await reopen(exc)
                continue
            except ParseError as exc:
                self._parse_error(exc, payload)
                self.queue_snapshots()
                continue
            if quotes:
                del self._fetches[symbol]
                _log.info("book_synced", symbol=symbol, seq=quotes[-1].seq)
            deliver(quotes)

    async def _fetch_snapshot(self, symbol: str) -> bytes:
        """Return `symbol`'s REST snapshot, retrying venue errors with backoff until one arrives."""
        attempt = 0
        while True:
            try:
                return await self._adapter.fetch_snapshot(symbol)
            except VenueError as exc:
                metrics.BOOK_SNAPSHOT_FAILURES.labels(self._adapter.venue).inc()
                delay_s = self._backoff(attempt)
                _log.warning(
                    "book_snapshot_failed", symbol=symbol, error=str(exc), retry_in_s=round(delay_s, 3)
                )
                await asyncio.sleep(delay_s)
                attempt += 1
