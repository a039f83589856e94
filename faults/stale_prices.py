"""Scenario 6, stale prices: one venue's feed frozen with its socket open, the others still moving.

A daemon with every role (`smartroute run`: feeds, detector, router; paper mode) on the exchange
simulator's Binance and Bybit, BTC-USDT, with frequent dislocations (so that opportunities come
and go). After a warm-up, Bybit goes silent (`ExchangeSimulator.set_silent`: the socket stays
open, nothing is sent; the silence watchdog is set far beyond the run, so it is not reopened).
N order requests are sent evenly over twice `max_quote_age_ms` from the freeze, straddling the
threshold: every other one may only use Bybit (`venues: ["bybit"]`), the rest may use either.

Bybit's last update is the wall-clock time the daemon received its last Bybit frame
(`smartroute_ws_last_message_timestamp_seconds`, read at the end: frozen since). A use of Bybit
is over age when it happened more than `max_quote_age_ms` after that, or when the event itself
reports a Bybit quote older than that. Figures: opportunities opened or updated with Bybit over
age (0); router decisions (a planned leg or a fill at Bybit) over age, timed from when the router
received the request, which is before it decided (0); and, without a target, how many requests
Bybit filled before the threshold and how many were refused `stale_prices` after it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Final

import orjson
from prometheus_client import REGISTRY

from bench.transport import create_bench_topics
from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.config import Config, build_config
from daemon.kafka import new_consumer
from faults.orders import Requests, status_of
from faults.scenario import Context, Figure, Outcome, Scenario, measured, zero

SYMBOL: Final = "BTC-USDT"
FROZEN: Final = "bybit"
MAX_QUOTE_AGE_MS: Final = 1500  # the default
_WARMUP_S: Final = 2.0
_START_TIMEOUT_S: Final = 60.0
_ANSWER_TIMEOUT_S: Final = 120.0


def stale_config(bootstrap: str, sim: ExchangeSimulator, context: Context) -> Config:
    """Paper daemon, every role, Binance + Bybit; Bybit's silence watchdog beyond the run."""
    tag = f"{context.seed}{time.time_ns() % 10**9}"
    venue = {"symbols": [SYMBOL]}
    raw: dict[str, Any] = {
        "daemon": {"http_port": 0, "state_dir": str(context.workdir / "state"), "log_level": "warning"},
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": f"stale{tag}."},
        "router": {"session_timeout_ms": 2000, "group_id": f"stale-router-{tag}"},
        "cache": {"max_quote_age_ms": MAX_QUOTE_AGE_MS},
        "detector": {"max_notional": 2000},
        "risk": {"max_orders_per_second": 1_000_000, "max_gross_exposure": 1_000_000_000},
        "venues": {
            "binance": venue | {"ws_url": sim.ws_url("binance")},
            FROZEN: venue | {"ws_url": sim.ws_url(FROZEN), "silence_timeout_ms": 3_600_000},
        },
    }
    return build_config(raw, {})


def order(request_id: str, number: int) -> bytes:
    """A paper market order of 0.001 BTC; every other one may only use the frozen venue."""
    request: dict[str, Any] = {
        "v": 1,
        "request_id": request_id,
        "user_id": "faults",
        "kind": "order",
        "symbol": SYMBOL,
        "side": ("buy", "sell")[number % 2],
        "quantity": "0.001",
    }
    if number % 2 == 0:
        request["venues"] = [FROZEN]
    return orjson.dumps(request)


def uses_frozen(result: dict[str, Any]) -> bool:
    """Whether a result planned a leg or filled at the frozen venue."""
    legs = (result.get("route") or {}).get("legs") or []
    return any(leg.get("venue") == FROZEN for leg in [*legs, *(result.get("fills") or [])])


def reported_age_ms(result: dict[str, Any]) -> float:
    """The age of the frozen venue's quote the router reported considering (0 if it did not)."""
    considered = (result.get("route") or {}).get("considered") or []
    return max(
        (float(c.get("quote_age_ms") or 0) for c in considered if c.get("venue") == FROZEN), default=0.0
    )


def over_age_decisions(results: list[dict[str, Any]], last_ns: int) -> list[dict[str, Any]]:
    """Results that used the frozen venue once its last update was over age."""
    limit_ns = MAX_QUOTE_AGE_MS * 1_000_000
    return [
        r
        for r in results
        if uses_frozen(r)
        and (int(r["received_ns"]) - last_ns > limit_ns or reported_age_ms(r) > MAX_QUOTE_AGE_MS)
    ]


def over_age_opportunities(events: list[dict[str, Any]], last_ns: int) -> list[dict[str, Any]]:
    """Opened or updated opportunities that used the frozen venue over age."""
    limit_ns = MAX_QUOTE_AGE_MS * 1_000_000
    found = []
    for event in events:
        if event.get("event") not in ("opened", "updated"):
            continue
        for side in ("buy", "sell"):
            if event.get(f"{side}_venue") == FROZEN and (
                int(event["detected_ns"]) - last_ns > limit_ns
                or float(event.get(f"{side}_quote_age_ms") or 0) > MAX_QUOTE_AGE_MS
            ):
                found.append(event)
                break
    return found


async def run_scenario(context: Context) -> Outcome:
    """Freeze Bybit, send requests straddling the threshold, watch opportunities; return the figures."""
    count = 20 if context.small else 1000
    watch_s = (2 if context.small else 20) * MAX_QUOTE_AGE_MS / 1000
    sim = ExchangeSimulator(("binance", FROZEN), (SYMBOL,), seed=context.seed, dislocation_probability=0.05)
    async with context.kafka() as bootstrap, sim:
        cfg = stale_config(bootstrap, sim, context)
        await create_bench_topics(cfg)
        events: list[dict[str, Any]] = []
        daemon, stop = Daemon(cfg), asyncio.Event()
        running = asyncio.create_task(daemon.run(stop), name="faults-stale-daemon")
        watching = asyncio.create_task(_watch(cfg, events, stop), name="faults-stale-opportunities")
        try:
            assert daemon.router_service is not None
            async with asyncio.timeout(_START_TIMEOUT_S):
                await daemon.router_service.reconciled.wait()
            await asyncio.sleep(_WARMUP_S)
            async with Requests(cfg) as client:
                sim.set_silent(FROZEN, True)
                frozen_ns = time.time_ns()
                ids = await _send_straddling(client, count, f"stale-{context.seed}")
                await client.wait_for(ids, _ANSWER_TIMEOUT_S)
                await asyncio.sleep(max(0.0, frozen_ns / 1e9 + watch_s - time.time()))
                last_s = REGISTRY.get_sample_value(
                    "smartroute_ws_last_message_timestamp_seconds", {"venue": FROZEN}
                )
                results = [client.results[rid][0] for rid in ids]
        finally:
            stop.set()
            await running
            await watching
    last_ns = int((last_s or 0) * 1e9)
    return analyse(results, events, last_ns, frozen_ns, count, watch_s)


def analyse(
    results: list[dict[str, Any]],
    events: list[dict[str, Any]],
    last_ns: int,
    frozen_ns: int,
    count: int,
    watch_s: float,
) -> Outcome:
    """Count the over-age uses of the frozen venue among results and opportunity events."""
    decisions = over_age_decisions(results, last_ns)
    opportunities = over_age_opportunities(events, last_ns)
    limit_ns = MAX_QUOTE_AGE_MS * 1_000_000
    after = [r for r in results if int(r["received_ns"]) - last_ns > limit_ns]
    figures: list[Figure] = [
        zero("opportunities_over_age", f"opportunities using {FROZEN} over age", len(opportunities)),
        zero("decisions_over_age", f"router decisions on {FROZEN} prices over age", len(decisions)),
        measured(
            "frozen_filled_before",
            f"requests filled at {FROZEN} before the threshold",
            sum(1 for r in results if uses_frozen(r) and r.get("fills") and r not in after),
        ),
        measured("requests_after", "requests received after the threshold", len(after)),
        measured(
            "stale_refused_after",
            "of those, refused `stale_prices`",
            sum(1 for r in after if r.get("reject_code") == "stale_prices"),
        ),
    ]
    using = [e for e in events if FROZEN in (e.get("buy_venue"), e.get("sell_venue"))]
    details = {
        "last_update_ns": last_ns,
        "frozen_ns": frozen_ns,
        "last_update_after_freeze_ms": (last_ns - frozen_ns) / 1e6,
        "statuses_after": dict(Counter(status_of(r) for r in after)),
        "opportunity_events": dict(Counter(e.get("event") for e in events)),
        "events_using_frozen_after_last_update": dict(
            Counter(e.get("event") for e in using if int(e["detected_ns"]) > last_ns)
        ),
        "example_after": {
            status: next(r for r in after if status_of(r) == status)
            for status in {status_of(r) for r in after}
        },
        "over_age_opportunities": opportunities[:5],
        "over_age_decisions": decisions[:5],
    }
    size = {"requests": count, "max_quote_age_ms": MAX_QUOTE_AGE_MS, "watched_s": watch_s}
    return Outcome(figures, size=size, details=details)


async def _send_straddling(client: Requests, count: int, prefix: str) -> list[str]:
    """Send `count` requests evenly over twice max_quote_age_ms from now; return their ids."""
    span_s = 2 * MAX_QUOTE_AGE_MS / 1000
    start = time.monotonic()
    ids, sends = [], []
    for number in range(count):
        await asyncio.sleep(max(0.0, start + span_s * number / max(1, count - 1) - time.monotonic()))
        ids.append(f"{prefix}-{number}")
        sends.append(asyncio.create_task(client.send([order(ids[-1], number)])))
    await asyncio.gather(*sends)
    return ids


async def _watch(cfg: Config, events: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Collect every opportunity event until `stop`."""
    consumer = new_consumer(cfg.kafka, cfg.topic("opportunities"), fetch_max_wait_ms=50)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            events += [orjson.loads(r.value or b"{}") for records in batches.values() for r in records]
    finally:
        await consumer.stop()


def _limit(context: Context) -> float:
    return 180.0 if context.small else 600.0


SCENARIO: Final = Scenario(6, "stale_prices", "Stale prices", run_scenario, _limit)
