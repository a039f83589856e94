"""Deterministic replay of a recording: raw frames → venue parsers → PriceCache → ArbitrageDetector → events.

Nothing is read from the network or the wall clock. Time is the recording's:
before each record the replay clock moves to its `received_ns` (never
backwards), and both the cache's clock and the detector's `wall_clock_ns`
read it, so quote ages, `detected_ns` and `expires_ns` are what the daemon
would have computed. The detector's periodic sweep (which closes opportunities
whose quotes went stale) runs on the same clock every `sweep_interval_ms`,
over symbols in sorted order. Each event is written as one JSON line
(`Opportunity.as_message()`, keys sorted). The same recording and settings
give the same bytes, on every run and in every process.

Per venue, a `connect` record starts a fresh parser, as a new connection does
live, and withdraws the books the previous connection fed (live, they are
withdrawn when it ends; the recording marks only the new one). A book a parser
discards (`BookInvalid`: gap, checksum, crossed) is withdrawn from the cache and
its symbol re-evaluated at once, as the daemon does, until its resync delivers
it again. Frames a parser rejects are counted and skipped, as the runner does.
Venues whose books start from a REST snapshot cannot be replayed from frames
alone and are refused up front.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Final

import orjson

from connectors.base import Parser
from connectors.book import BookInvalid
from connectors.errors import ParseError, ReconnectRequested
from connectors.recording import Record, RecordingHeader
from connectors.registry import build_adapter
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity
from router.errors import RouterError

ParserFactory = Callable[[str, Sequence[str]], Parser]
_NS_PER_MS: Final = 1_000_000


class ReplayError(RouterError):
    """A recording that cannot be replayed with these settings (a venue without parser or fee)."""


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """The detector and cache settings to replay with (the config's `[detector]`, `[cache]`, venue fees)."""

    taker_fee_bps: Mapping[str, Decimal]
    min_net_profit_bps: Decimal = Decimal(5)
    max_notional: Decimal = Decimal(10_000)
    update_min_change_bps: Decimal = Decimal(1)
    ttl_ms: int = 30_000
    max_quote_age_ms: int = 1_500
    sweep_interval_ms: int = 100


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """What a replay went through and produced."""

    records: int
    frames: int
    connects: int
    quotes: int
    parse_errors: int
    reconnects_requested: int
    events: int
    books_withdrawn: int = 0


def venue_parser(venue: str, symbols: Sequence[str]) -> Parser:
    """Return a fresh parser of `venue` for `symbols`, as a new live connection gets."""
    return build_adapter(venue, symbols).new_parser()


def replay(
    header: RecordingHeader,
    records: Iterable[Record],
    out: IO[bytes],
    settings: ReplaySettings,
    *,
    parser_factory: ParserFactory = venue_parser,
) -> ReplayStats:
    """Feed `records` through parsers, cache and detector; write every event to `out`; return counts."""
    missing = [venue for venue in header.venues if venue not in settings.taker_fee_bps]
    if missing:
        raise ReplayError(f"no taker fee for venues {missing}: the detector would never trade against them")
    run = _Replay(header, out, settings, parser_factory)
    for record in records:
        run.handle(record)
    return run.stats()


class _Replay:
    """The state of one replay: clock, parsers, cache, detector and counters."""

    def __init__(
        self, header: RecordingHeader, out: IO[bytes], settings: ReplaySettings, parser_factory: ParserFactory
    ) -> None:
        self._header = header
        self._out = out
        self._parser_factory = parser_factory
        self._now_ns = 0
        self._sweep_ns = settings.sweep_interval_ms * _NS_PER_MS
        self._next_sweep_ns: int | None = None
        self._parsers = {venue: self._new_parser(venue) for venue in header.venues}
        self._cache = PriceCache(
            ttl_ms=settings.ttl_ms, max_quote_age_ms=settings.max_quote_age_ms, clock_ns=self._clock
        )
        self._detector = ArbitrageDetector(
            self._cache,
            settings.taker_fee_bps,
            self._write,
            min_net_profit_bps=settings.min_net_profit_bps,
            max_notional=settings.max_notional,
            update_min_change_bps=settings.update_min_change_bps,
            wall_clock_ns=self._clock,
        )
        self._counts = dict.fromkeys(
            (
                "records",
                "frames",
                "connects",
                "quotes",
                "parse_errors",
                "reconnects_requested",
                "events",
                "books_withdrawn",
            ),
            0,
        )
        self._delivered: set[str] = set()  # venues whose current connection delivered quotes

    def _clock(self) -> int:
        return self._now_ns

    def _new_parser(self, venue: str) -> Parser:
        try:
            parser = self._parser_factory(venue, self._header.symbols[venue])
        except ValueError as exc:
            raise ReplayError(f"cannot replay venue {venue!r}: {exc}") from exc
        if callable(getattr(parser, "load_snapshot", None)):
            raise ReplayError(
                f"cannot replay venue {venue!r}: its books start from REST snapshots, "
                "which a recording of WebSocket frames does not hold"
            )
        return parser

    def handle(self, record: Record) -> None:
        """Advance the clock to the record (sweeping on the way), then apply it."""
        self._advance(record.received_ns)
        self._counts["records"] += 1
        if record.kind == "connect":
            self._counts["connects"] += 1
            self._parsers[record.venue] = self._new_parser(record.venue)
            if record.venue in self._delivered:
                self._delivered.discard(record.venue)
                for symbol in self._header.symbols[record.venue]:
                    if self._cache.invalidate(record.venue, symbol):
                        self._detector.evaluate(symbol)
            return
        assert record.frame is not None
        self._counts["frames"] += 1
        try:
            quotes = self._parsers[record.venue].parse(record.frame, record.received_ns)
        except BookInvalid as exc:
            self._counts["books_withdrawn"] += 1
            self._cache.invalidate(record.venue, exc.symbol)
            self._detector.evaluate(exc.symbol)
            return
        except ParseError:
            self._counts["parse_errors"] += 1
            return
        except ReconnectRequested:
            # Live, the runner reconnects; the recording then holds the new connection's `connect`.
            self._counts["reconnects_requested"] += 1
            return
        if quotes:
            self._delivered.add(record.venue)
        for quote in quotes:
            self._counts["quotes"] += 1
            self._cache.update(quote)
            self._detector.on_quote(quote)

    def _advance(self, received_ns: int) -> None:
        if self._next_sweep_ns is None:
            self._next_sweep_ns = received_ns + self._sweep_ns
        while self._next_sweep_ns <= received_ns:
            open_symbols = sorted({event.symbol for event in self._detector.open_opportunities()})
            if not open_symbols:
                # Nothing can close: skip the idle sweeps in one step (a gap may be hours long).
                missed = (received_ns - self._next_sweep_ns) // self._sweep_ns
                self._next_sweep_ns += (missed + 1) * self._sweep_ns
                break
            self._now_ns = max(self._now_ns, self._next_sweep_ns)
            for symbol in open_symbols:
                self._detector.evaluate(symbol)
            self._next_sweep_ns += self._sweep_ns
        self._now_ns = max(self._now_ns, received_ns)

    def _write(self, event: Opportunity) -> None:
        self._counts["events"] += 1
        self._out.write(orjson.dumps(event.as_message(), option=orjson.OPT_SORT_KEYS) + b"\n")

    def stats(self) -> ReplayStats:
        return ReplayStats(**self._counts)
