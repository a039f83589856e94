"""Five venues with local books: every injected fault is detected, counted and resynced, and no
opportunity is ever built on the faulty book."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from contract import assert_valid
from kafka_support import TopicReader, create_contract_topics, wait_until
from prometheus_client import REGISTRY

from connectors.sim import ExchangeSimulator
from connectors.types import Quote
from daemon.app import Daemon
from daemon.config import load_config

pytestmark = pytest.mark.integration

VENUES = ("binance", "bybit", "okx", "coinbase", "kraken")
DEPTH = {"binance": 20, "bybit": 50, "okx": 20, "coinbase": 20, "kraken": 10}
SYMBOL = "BTC-USDT"


def resyncs(venue: str, reason: str) -> float:
    labels = {"venue": venue, "reason": reason}
    return REGISTRY.get_sample_value("smartroute_book_resyncs_total", labels) or 0.0


@pytest.fixture
async def world(embedded_broker: str, tmp_path: Path) -> AsyncIterator[tuple[Daemon, ExchangeSimulator, str]]:
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    async with ExchangeSimulator(VENUES, (SYMBOL,), seed=3, book_levels=50, tick_interval_s=0.05) as sim:
        sections = []
        for venue in VENUES:
            rest = f'rest_url = "{sim.rest_url(venue)}"\n' if venue in ("binance", "okx") else ""
            fee = "taker_fee_bps = 10\n"  # equal fees: the simulated dislocations show up on every venue
            sections.append(
                f'[venues.{venue}]\nsymbols = ["{SYMBOL}"]\nws_url = "{sim.ws_url(venue)}"\n'
                f"{rest}depth = {DEPTH[venue]}\n{fee}"
            )
        config = tmp_path / "smartroute.toml"
        config.write_text(
            f'[daemon]\nhttp_port = 0\nstate_dir = "{tmp_path / "state"}"\n'
            f'[kafka]\nbootstrap_servers = "{embedded_broker}"\ntopic_prefix = "{prefix}"\n'
            "[router]\nenabled = false\n" + "\n".join(sections)
        )
        daemon = Daemon(load_config(config, environ={}))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="daemon-under-test")
        try:
            await wait_until(lambda: {q.quote.venue for q in daemon.cache.entries()} == set(VENUES), 20)
            yield daemon, sim, f"{prefix}opportunities"
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task


def served_top(daemon: Daemon, venue: str) -> tuple[Decimal, Decimal] | None:
    entry = daemon.cache.get(venue, SYMBOL)
    return None if entry is None else (entry.quote.bid, entry.quote.ask)


async def test_all_five_venues_keep_books_that_match_the_exchange(
    world: tuple[Daemon, ExchangeSimulator, str],
) -> None:
    daemon, sim, _ = world
    for venue in VENUES:
        sim.stall(venue, 1.0)  # hold the venue's book still so both sides can be compared
        await asyncio.sleep(0.3)
        bids, asks = sim.depth(venue, SYMBOL)
        entry = daemon.cache.get(venue, SYMBOL)
        assert entry is not None
        levels = DEPTH[venue]
        assert entry.quote.bids == tuple(bids[:levels]) and entry.quote.asks == tuple(asks[:levels]), venue


@pytest.mark.parametrize("venue", VENUES)
async def test_a_gap_is_counted_withdrawn_resynced_and_the_new_book_matches(
    world: tuple[Daemon, ExchangeSimulator, str], venue: str
) -> None:
    daemon, sim, _ = world
    reason = "checksum" if venue == "kraken" else "gap"  # Kraken numbers nothing: a lost update fails the CRC
    before = resyncs(venue, reason)
    await sim.inject_gap(venue, SYMBOL)
    await wait_until(lambda: resyncs(venue, reason) > before, 10)
    # Resynced: the venue serves again, and what it serves is the exchange's book.
    await wait_until(lambda: served_top(daemon, venue) is not None, 10)
    sim.stall(venue, 1.0)
    await asyncio.sleep(0.3)
    bids, asks = sim.depth(venue, SYMBOL)
    entry = daemon.cache.get(venue, SYMBOL)
    assert entry is not None and entry.quote.bids == tuple(bids[: DEPTH[venue]])
    assert entry.quote.asks == tuple(asks[: DEPTH[venue]])


@pytest.mark.parametrize("venue", VENUES)
async def test_a_crossed_book_is_never_served_and_no_opportunity_uses_it(
    world: tuple[Daemon, ExchangeSimulator, str], venue: str, embedded_broker: str
) -> None:
    daemon, sim, topic = world
    assert daemon.detector is not None
    seen: list[Quote] = []  # every quote the detector evaluates: opportunities are built from these only
    evaluate = daemon.detector.on_quote
    daemon.detector.on_quote = lambda quote: (seen.append(quote), evaluate(quote))[1]  # type: ignore[method-assign]
    before = resyncs(venue, "crossed")
    await sim.inject_crossed(venue, SYMBOL)
    await wait_until(lambda: resyncs(venue, "crossed") > before, 10)
    await wait_until(lambda: served_top(daemon, venue) is not None, 10)  # resynced, serving again
    await asyncio.sleep(0.3)
    assert seen and not [q for q in seen if q.crossed]
    assert all(not e.quote.crossed for e in daemon.cache.entries())
    async with TopicReader(embedded_broker, topic) as reader:
        await reader.poll(1000)
        for record in reader.records:
            event = orjson.loads(record.value)
            assert_valid("opportunity", event)
            assert Decimal(event["buy_price"]) > 0 and event["buy_venue"] != event["sell_venue"]


async def test_bad_checksums_are_caught_on_kraken(world: tuple[Daemon, ExchangeSimulator, str]) -> None:
    daemon, sim, _ = world
    before = resyncs("kraken", "checksum")
    await sim.inject_bad_checksum("kraken", SYMBOL)
    await wait_until(lambda: resyncs("kraken", "checksum") > before, 10)
    await wait_until(lambda: served_top(daemon, "kraken") is not None, 10)
