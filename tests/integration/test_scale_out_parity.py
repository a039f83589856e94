"""A detector in another process decides exactly as one in the feeds' process: same bytes, same input.

One scripted recording of real venue frames (Bybit `orderbook.50` and Kraken `book` depth 10, one
symbol, books several levels deep) with a gap, a checksum failure and a reconnection, goes two ways:

- in process: `router.replay.replay`, the deterministic path of `smartroute replay` (parsers →
  cache → detector, a discarded book withdrawn at once), and a daemon running feeds and detector
  in one process (`smartroute run`), its quote callbacks driven by the same parsers;
- scale-out: the same parsers feed a `feeds` daemon's own quote callbacks (`_on_quote`,
  `_on_book_invalid`, `_on_disconnect`, exactly what its StreamRunners call), which publish quote
  and withdrawal messages through its Publisher to a real broker; a `detect` daemon (its
  QuoteFollower, cache and detector, running under `Daemon.run`) reads them.

Both sides write `Opportunity.as_message()` with sorted keys and must give the same bytes. Time is
the recording's on both sides: the replay's clock is the latest `received_ns`, and the detect
daemon's clocks (cache, detector, follower) are set to read the `received_ns` of the latest message
it applied. With that, `detected_ns`, `expires_ns` and the quote ages are deterministic; nothing
else in an event depends on time. Every record lies within `max_quote_age_ms` of the previous one,
so no quote goes stale between records and neither side's periodic sweep (on its own schedule)
has anything to close.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka_support import create_contract_topics, wait_until

from connectors.base import Parser
from connectors.book import BookInvalid
from connectors.errors import ParseError
from connectors.kraken.checksum import book_checksum
from connectors.recording import Record, RecordingHeader
from connectors.registry import build_adapter
from connectors.types import Quote, Withdrawal
from daemon.app import Daemon
from daemon.config import load_config
from daemon.record import replay_settings
from router.detector import Opportunity
from router.replay import replay

pytestmark = pytest.mark.integration

SYMBOL = "BTC-USDT"
T0 = 1_764_000_000_000_000_000
MS = 1_000_000
HEADER = RecordingHeader(
    venues=("bybit", "kraken"), symbols={"bybit": (SYMBOL,), "kraken": (SYMBOL,)}, created_ns=T0
)

Side = list[tuple[str, str]]


def bybit(kind: str, u: int, bids: Side, asks: Side) -> str:
    data = {
        "s": "BTCUSDT",
        "b": [list(level) for level in bids],
        "a": [list(level) for level in asks],
        "u": u,
    }
    message = {"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": 1_764_000_000_000, "cts": 1, "data": data}
    return orjson.dumps({**message, "data": {**data, "seq": u}}).decode()


class KrakenBook:
    """Writes Kraken `book` frames with the checksum of the book they leave (price 1, qty 8 decimals)."""

    def __init__(self) -> None:
        self.bids: dict[D, D] = {}
        self.asks: dict[D, D] = {}

    def frame(self, kind: str, bids: Side, asks: Side, *, corrupt: bool = False) -> str:
        if kind == "snapshot":
            self.bids, self.asks = {}, {}
        for book, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if D(qty):
                    book[D(price)] = D(qty)
                else:
                    book.pop(D(price), None)
        top_bids, top_asks = sorted(self.bids.items(), reverse=True)[:10], sorted(self.asks.items())[:10]
        checksum = book_checksum(top_bids, top_asks, price_decimals=1, qty_decimals=8) ^ int(corrupt)

        def side(levels: Side) -> str:
            return "[" + ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels) + "]"

        item = f'{{"symbol":"BTC/USDT","bids":{side(bids)},"asks":{side(asks)},"checksum":{checksum}}}'
        return f'{{"channel":"book","type":"{kind}","data":[{item}]}}'


def recording() -> list[Record]:
    """Books several levels deep that open, move, break (gap, checksum, reconnect) and resync."""
    kraken = KrakenBook()
    kraken_bids = [("63990.0", "0.40000000"), ("63980.5", "1.0"), ("63950.0", "2.5")]
    kraken_asks = [("64000.0", "0.05000000"), ("64010.0", "0.1"), ("64030.0", "0.2"), ("64100.0", "3.0")]
    bybit_bids = [("64200.00", "0.010"), ("64190.00", "0.050"), ("64150.00", "0.200"), ("64100.00", "1.000")]
    bybit_asks = [("64210.00", "1.000"), ("64220.00", "2.000")]
    script: list[tuple[str, str, int, str | None]] = [
        ("connect", "bybit", 0, None),
        ("frame", "bybit", 1, '{"success":true,"ret_msg":"","conn_id":"a","req_id":"1","op":"subscribe"}'),
        ("frame", "bybit", 2, bybit("snapshot", 100, bybit_bids, bybit_asks)),
        ("connect", "kraken", 3, None),
        ("frame", "kraken", 4, '{"method":"subscribe","success":true,"result":{"channel":"book"}}'),
        ("frame", "kraken", 5, kraken.frame("snapshot", kraken_bids, kraken_asks)),  # opens, sized in depth
        ("frame", "bybit", 40, bybit("delta", 101, [("64190.00", "0.150")], [])),  # more to sell into
        ("frame", "kraken", 80, kraken.frame("update", [], [("64010.0", "0.3")])),  # more to buy
        ("frame", "bybit", 120, bybit("delta", 103, [("64200.00", "0.020")], [])),  # u=102 lost: a gap
        ("frame", "kraken", 160, kraken.frame("update", [], [("64000.0", "0.06000000")])),  # alone: no pair
        ("frame", "bybit", 200, bybit("delta", 104, [("64200.00", "0.5")], [])),  # the old book: ignored
        ("frame", "bybit", 240, bybit("snapshot", 200, bybit_bids, bybit_asks)),  # resynced: opens again
        ("frame", "kraken", 300, kraken.frame("update", [], [("64000.0", "0.07")], corrupt=True)),
        ("frame", "kraken", 340, kraken.frame("snapshot", kraken_bids, kraken_asks)),  # resynced
        ("frame", "kraken", 380, kraken.frame("update", [("63990.0", "0")], [("64000.0", "0.5")])),
        ("connect", "bybit", 500, None),  # the bybit connection ended: its book is gone
        ("frame", "bybit", 540, bybit("snapshot", 300, bybit_bids[1:], bybit_asks)),
        ("frame", "bybit", 600, bybit("delta", 301, [("64190.00", "0")], [])),  # too little left
    ]
    return [Record(kind, venue, T0 + ms * MS, frame) for kind, venue, ms, frame in script]  # type: ignore[arg-type]


DEPTH = {"bybit": 50, "kraken": 10}


def venue_parser(venue: str, symbols: Sequence[str]) -> Parser:
    """A fresh depth parser of `venue`, as a new connection of the configured feed gets."""
    return build_adapter(venue, symbols, depth=DEPTH[venue]).new_parser()


def event_line(event: Opportunity) -> bytes:
    """One event as `smartroute replay` writes it."""
    return orjson.dumps(event.as_message(), option=orjson.OPT_SORT_KEYS) + b"\n"


class FeedDriver:
    """Play records into a feeds daemon as its StreamRunners would: quotes, failed books, lost connections."""

    def __init__(self, feeds: Daemon, now: list[int]) -> None:
        self.feeds = feeds
        self.now = now
        self.parsers = {venue: venue_parser(venue, HEADER.symbols[venue]) for venue in HEADER.venues}
        self.delivered: set[str] = set()

    def play(self, record: Record) -> None:
        self.now[0] = record.received_ns
        venue = record.venue
        if record.kind == "connect":
            if venue in self.delivered:
                self.feeds._on_disconnect(venue, HEADER.symbols[venue])
                self.delivered.discard(venue)
            self.parsers[venue] = venue_parser(venue, HEADER.symbols[venue])
            return
        assert record.frame is not None
        try:
            quotes = self.parsers[venue].parse(record.frame, record.received_ns)
        except BookInvalid as exc:
            self.feeds._on_book_invalid(venue, exc.symbol, exc.reason)
            return
        except ParseError:
            return
        for quote in quotes:
            self.delivered.add(venue)
            self.feeds._on_quote(quote)


def follow_message_time(detect: Daemon) -> Callable[[], int]:
    """Make the detect daemon's clocks read the `received_ns` of the latest message it applied."""
    follower = detect.quote_follower
    assert follower is not None and detect.detector is not None
    now = [0]
    on_quote, on_withdrawal = follower.on_quote, follower.on_withdrawal

    def quote_at(quote: Quote, age_ns: int) -> None:
        now[0] = max(now[0], quote.received_ns)
        on_quote(quote, now[0] - quote.received_ns)

    def withdrawal_at(withdrawal: Withdrawal) -> None:
        now[0] = max(now[0], withdrawal.received_ns)
        on_withdrawal(withdrawal)

    def clock() -> int:
        return now[0]

    follower.on_quote, follower.on_withdrawal = quote_at, withdrawal_at
    follower.wall_clock_ns = detect.cache.clock_ns = detect.detector.wall_clock_ns = clock
    return clock


def config_text(tmp_path: Path, broker: str, prefix: str) -> str:
    venues = "".join(
        f'[venues.{venue}]\nsymbols = ["{SYMBOL}"]\ndepth = {depth}\ntaker_fee_bps = 10\n'
        for venue, depth in DEPTH.items()
    )
    return (
        f'[daemon]\nhttp_port = 0\nstate_dir = "{tmp_path / "state"}"\n'
        f'[kafka]\nbootstrap_servers = "{broker}"\ntopic_prefix = "{prefix}"\n'
        "[router]\nenabled = false\nsession_timeout_ms = 2000\n" + venues
    )


async def test_a_detector_behind_kafka_publishes_the_same_bytes_as_one_in_process(
    embedded_broker: str, tmp_path: Path
) -> None:
    config = tmp_path / "smartroute.toml"
    prefix = f"t{uuid.uuid4().hex[:12]}."
    config.write_text(config_text(tmp_path, embedded_broker, prefix))
    await create_contract_topics(embedded_broker, prefix)
    cfg = load_config(config, environ={})
    records = recording()

    in_process = io.BytesIO()
    stats = replay(
        HEADER,
        records,
        in_process,
        replay_settings(cfg.detector, cfg.cache, cfg.venues),
        parser_factory=venue_parser,
    )
    expected = in_process.getvalue().splitlines(keepends=True)
    assert stats.parse_errors == 0 and stats.books_withdrawn == 2 and stats.quotes == 10
    summary = [(e["event"], e["detected_ns"] - T0) for e in map(orjson.loads, expected)]
    assert [(event, ns // MS) for event, ns in summary] == [
        ("opened", 5), ("updated", 40), ("updated", 80),  # sized over the depth, which grows
        ("closed", 120),  # the gap withdraws Bybit's book
        ("opened", 240), ("closed", 300),  # resynced; then Kraken's checksum fails
        ("opened", 340), ("updated", 380), ("closed", 500),  # resynced; then Bybit's connection ends
        ("opened", 540), ("closed", 600),  # a new snapshot; then its best bid goes and the spread with it
    ]  # fmt: skip
    first = orjson.loads(expected[0])
    assert D(first["quantity"]) > D("0.05")  # more than either top level holds: the depth counts

    feeds = Daemon(cfg, roles=frozenset({"publish_quotes"}))
    detect = Daemon(cfg, roles=frozenset({"consume_quotes", "detect"}))
    assert detect.detector is not None
    produced: list[bytes] = []
    detect.detector.on_event = lambda event: produced.append(event_line(event))
    clock = follow_message_time(detect)
    feed_now = [T0]
    feeds.wall_clock_ns = lambda: feed_now[0]
    driver = FeedDriver(feeds, feed_now)
    stop = asyncio.Event()
    await feeds.publisher.start()
    publishing = asyncio.create_task(feeds.publisher.run(), name="feeds-publisher")
    detecting = asyncio.create_task(detect.run(stop), name="detect")
    try:
        # The detector reads from the end of the topic once its group is assigned: announce a quote of
        # another symbol, from before the recording, until it is seen, then play the recording.
        warm_up = Quote("okx", "ETH-USDT", D("3000"), D("1"), D("3001"), D("1"), None, T0 - MS, None)
        async with asyncio.timeout(30):
            while detect.cache.get("okx", "ETH-USDT") is None:
                feeds._on_quote(warm_up)
                await asyncio.sleep(0.2)
        for record in records:
            driver.play(record)
        last = records[-1].received_ns
        # Each message is applied, and its events written, in one call: at the last one's time, all are.
        await wait_until(lambda: clock() == last, 20)
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await detecting
        await feeds.publisher.close()
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
    assert b"".join(produced) == b"".join(expected)


def test_a_daemon_with_feeds_and_detector_in_one_process_publishes_the_same_bytes_as_replay(
    tmp_path: Path,
) -> None:
    config = tmp_path / "smartroute.toml"
    config.write_text(config_text(tmp_path, "127.0.0.1:9", "t."))
    cfg = load_config(config, environ={})
    records = recording()
    in_replay = io.BytesIO()
    replay(
        HEADER,
        records,
        in_replay,
        replay_settings(cfg.detector, cfg.cache, cfg.venues),
        parser_factory=venue_parser,
    )
    daemon = Daemon(cfg, roles=frozenset({"feeds", "detect"}))
    assert daemon.detector is not None
    produced: list[bytes] = []
    daemon.detector.on_event = lambda event: produced.append(event_line(event))
    now = [T0]
    daemon.cache.clock_ns = daemon.detector.wall_clock_ns = lambda: now[0]
    driver = FeedDriver(daemon, now)
    for record in records:
        driver.play(record)
    assert b"".join(produced) == in_replay.getvalue()


def test_withdrawals_and_depth_travel_in_the_quote_messages(tmp_path: Path) -> None:
    """What the scale-out path carries that a top-of-book message did not: depth and withdrawals."""
    sent: list[dict[str, Any]] = []

    class Capture:
        def publish(self, topic: str, key: bytes | None, value: bytes) -> bool:
            sent.append(orjson.loads(value))
            return True

    config = tmp_path / "smartroute.toml"
    config.write_text(config_text(tmp_path, "127.0.0.1:9", "t."))
    feeds = Daemon(load_config(config, environ={}), roles=frozenset({"publish_quotes"}))
    feeds.publisher = Capture()  # type: ignore[assignment]
    feeds.wall_clock_ns = lambda: T0 + 7
    driver = FeedDriver(feeds, [T0])
    for record in recording()[:3]:
        driver.play(record)
    feeds._on_book_invalid("bybit", SYMBOL, "gap")
    feeds._on_disconnect("bybit", [SYMBOL])  # already withdrawn: nothing more to tell
    assert [message.get("event") for message in sent] == [None, "withdrawn"]
    assert sent[0]["bids"][0] == ["64200.00", "0.010"] and len(sent[0]["bids"]) == 4
    assert sent[1] == Withdrawal("bybit", SYMBOL, "gap", T0 + 7).as_message()
