"""Readiness rule, venue freshness and the broker watch, with injected clocks."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import pytest
from aiokafka.errors import KafkaError

from connectors.types import Quote
from daemon.config import KafkaConfig
from daemon.health import (
    BrokerHealth,
    BrokerWatch,
    RouterState,
    VenueHealth,
    assess,
    classify_venue,
    venue_health,
)
from daemon.kafka import KafkaMetadataProbe
from router.cache import PriceCache

REACHABLE = BrokerHealth(reachable=True, since_s=100.0)
FRESH = VenueHealth("fresh", 12.5)


def quote_into(cache: PriceCache, venue: str, symbol: str = "BTC-USDT") -> None:
    one = Decimal(1)
    cache.update(Quote(venue, symbol, Decimal(100), one, Decimal(101), one, None, 0, None))


# ── classify_venue ─────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("streaming", "age_ms", "expected"),
    [
        (True, 0.0, "fresh"),
        (True, 1500.0, "fresh"),  # at the limit is still usable for a decision
        (True, 1500.001, "stale"),
        (True, None, "stale"),  # connected, but no quote yet
        (False, 10.0, "down"),  # a young quote does not make a dropped connection fresh
        (False, None, "down"),
    ],
)
def test_a_venue_is_fresh_only_while_streaming_with_a_quote_within_the_decision_age(
    streaming: bool, age_ms: float | None, expected: str
) -> None:
    assert classify_venue(streaming=streaming, quote_age_ms=age_ms, max_quote_age_ms=1500) == expected


# ── venue_health ───────────────────────────────────────────────────────────────


def test_venue_health_uses_each_venues_newest_quote_and_reports_venues_without_quotes() -> None:
    now = [0]
    cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=1_000, clock_ns=lambda: now[0])
    quote_into(cache, "binance", "BTC-USDT")
    now[0] = 2_000_000_000  # 2 s later
    quote_into(cache, "binance", "ETH-USDT")  # binance's newest quote is now 0 ms old
    quote_into(cache, "bybit", "BTC-USDT")
    now[0] = 2_500_000_000

    health = venue_health(
        {"binance": "streaming", "bybit": "backoff", "okx": "streaming"},
        cache.entries(),
        now_ns=now[0],
        max_quote_age_ms=1_000,
    )

    assert health == {
        "binance": VenueHealth("fresh", 500.0),
        "bybit": VenueHealth("down", 500.0),
        "okx": VenueHealth("stale", None),
    }


def test_a_venue_whose_quotes_all_aged_past_the_limit_is_stale() -> None:
    now = [0]
    cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=1_000, clock_ns=lambda: now[0])
    quote_into(cache, "binance")
    now[0] = 1_000_000_001
    health = venue_health({"binance": "streaming"}, cache.entries(), now_ns=now[0], max_quote_age_ms=1_000)
    assert health["binance"].state == "stale"


# ── assess ─────────────────────────────────────────────────────────────────────


def test_ready_when_started_kafka_reachable_router_reconciled_and_a_venue_fresh() -> None:
    verdict = assess(
        started=True, broker=REACHABLE, venues={"binance": FRESH}, router="reconciled", now_s=103.0
    )
    assert verdict.ready
    ready, reasons = verdict.as_response()
    assert ready is True
    assert reasons == {
        "not_ready": [],
        "kafka": {"reachable": True, "for_s": 3.0, "error": None},
        "router": "reconciled",
        "fresh_venues": ["binance"],
        "degraded_venues": {},
    }


def test_a_process_without_a_router_does_not_wait_for_reconciliation() -> None:
    verdict = assess(
        started=True, broker=REACHABLE, venues={"binance": FRESH}, router="not_running", now_s=100.0
    )
    assert verdict.ready


def test_a_stale_venue_is_reported_degraded_but_does_not_block_while_another_is_fresh() -> None:
    venues = {"binance": FRESH, "bybit": VenueHealth("stale", 4000.0), "okx": VenueHealth("down", None)}
    verdict = assess(started=True, broker=REACHABLE, venues=venues, router="reconciled", now_s=100.0)
    assert verdict.ready
    _, reasons = verdict.as_response()
    assert reasons["fresh_venues"] == ["binance"]
    assert reasons["degraded_venues"] == {
        "bybit": {"state": "stale", "quote_age_ms": 4000.0},
        "okx": {"state": "down", "quote_age_ms": None},
    }


@pytest.mark.parametrize(
    ("started", "broker", "venues", "router", "reasons"),
    [
        (False, REACHABLE, {"binance": FRESH}, "not_running", ("starting",)),
        (
            True,
            BrokerHealth(reachable=False, since_s=90.0, error="KafkaConnectionError()"),
            {"binance": FRESH},
            "reconciled",
            ("kafka_unreachable",),
        ),
        (True, REACHABLE, {"binance": FRESH}, "reconciling", ("router_reconciling",)),
        (True, REACHABLE, {"binance": VenueHealth("stale", 9000.0)}, "reconciled", ("no_fresh_venue",)),
        (True, REACHABLE, {}, "reconciled", ("no_fresh_venue",)),
        (
            False,
            BrokerHealth(reachable=False, since_s=0.0, error="not probed yet"),
            {"binance": VenueHealth("down", None)},
            "reconciling",
            ("starting", "kafka_unreachable", "router_reconciling", "no_fresh_venue"),
        ),
    ],
)
def test_not_ready_names_every_blocking_reason(
    started: bool,
    broker: BrokerHealth,
    venues: dict[str, VenueHealth],
    router: RouterState,
    reasons: tuple[str, ...],
) -> None:
    verdict = assess(started=started, broker=broker, venues=venues, router=router, now_s=100.0)
    assert not verdict.ready
    assert verdict.not_ready == reasons
    assert verdict.as_response()[1]["not_ready"] == list(reasons)


def test_the_kafka_reason_says_since_when_and_why() -> None:
    broker = BrokerHealth(reachable=False, since_s=90.0, error="KafkaConnectionError('refused')")
    verdict = assess(started=True, broker=broker, venues={"binance": FRESH}, router="reconciled", now_s=97.5)
    assert verdict.detail["kafka"] == {
        "reachable": False,
        "for_s": 7.5,
        "error": "KafkaConnectionError('refused')",
    }


# ── BrokerWatch ────────────────────────────────────────────────────────────────


class ScriptedProbe:
    """Answer (None) or fail (an exception) as scripted; count checks and closes."""

    def __init__(self, script: list[BaseException | None]) -> None:
        self.script = script
        self.checks = 0
        self.closed = 0

    async def check(self) -> None:
        outcome = self.script[self.checks]
        self.checks += 1
        if outcome is not None:
            raise outcome

    async def close(self) -> None:
        self.closed += 1


class Stop(Exception):
    pass


def test_the_broker_is_unreachable_until_a_probe_answers() -> None:
    watch = BrokerWatch(ScriptedProbe([]), clock=lambda: 5.0)
    assert watch.health == BrokerHealth(reachable=False, since_s=5.0, error="not probed yet")


def test_since_moves_only_when_reachability_changes() -> None:
    now = [10.0]
    watch = BrokerWatch(ScriptedProbe([]), clock=lambda: now[0])
    now[0] = 11.0
    assert watch.record(None) == BrokerHealth(True, 11.0, None)
    now[0] = 15.0
    assert watch.record(None).since_s == 11.0
    now[0] = 20.0
    assert watch.record("OSError('refused')") == BrokerHealth(False, 20.0, "OSError('refused')")
    now[0] = 22.0
    assert watch.record("TimeoutError()") == BrokerHealth(False, 20.0, "TimeoutError()")


async def test_the_watch_follows_the_probe_and_closes_it_when_cancelled() -> None:
    probe = ScriptedProbe([None, KafkaError("metadata"), OSError("refused"), None])
    seen: list[BrokerHealth] = []
    now = [0.0]

    async def fake_sleep(_: float) -> None:
        seen.append(watch.health)
        now[0] += 2.0
        if len(seen) == 4:
            raise Stop

    watch = BrokerWatch(probe, interval_s=2.0, clock=lambda: now[0], sleep=fake_sleep)
    with pytest.raises(Stop):
        await watch.run()
    assert [h.reachable for h in seen] == [True, False, False, True]
    assert seen[1].since_s == 2.0 and seen[2].since_s == 2.0  # unreachable since the first failure
    assert seen[2].error is not None and "refused" in seen[2].error
    assert probe.closed == 1


async def test_a_probe_that_hangs_counts_as_unreachable_after_the_timeout() -> None:
    class Hanging(ScriptedProbe):
        async def check(self) -> None:
            await asyncio.Event().wait()

    async def stop_after_first(_: float) -> None:
        raise Stop

    watch = BrokerWatch(Hanging([]), timeout_s=0.01, sleep=stop_after_first)
    with pytest.raises(Stop):
        await watch.run()
    assert not watch.health.reachable
    assert watch.health.error is not None and "TimeoutError" in watch.health.error


async def test_an_unexpected_probe_error_is_not_mistaken_for_an_outage() -> None:
    watch = BrokerWatch(ScriptedProbe([ValueError("bug")]))
    with pytest.raises(ValueError, match="bug"):
        await watch.run()


def test_the_watch_refuses_non_positive_periods() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        BrokerWatch(ScriptedProbe([]), interval_s=0)


# ── KafkaMetadataProbe ─────────────────────────────────────────────────────────


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here once the socket is closed


async def test_the_metadata_probe_fails_with_a_kafka_error_when_nothing_listens() -> None:
    probe = KafkaMetadataProbe(KafkaConfig(bootstrap_servers=(f"127.0.0.1:{closed_port()}",)))
    try:
        with pytest.raises(KafkaError):
            async with asyncio.timeout(10):
                await probe.check()
    finally:
        await probe.close()
        await probe.close()  # idempotent
