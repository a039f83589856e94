"""Scenario 10, clock skew: the venue's clock shifted ±3 s, then jumped 10 s, during a stream of orders.

smartroute's Binance trading client (`BinanceConnector`: it measures the venue's clock at start,
signs every request with `timestamp` on that clock and `recvWindow` 5000 ms, and re-measures
after a -1021, then sends the refused request once more) places a stream of orders, one after
another, against the fake Binance REST server (`tests/integration/fake_binance.py`), which
accepts a signed request only when its timestamp is within the recvWindow of its own clock
(timestamp < server time + 1000 and server time − timestamp ≤ recvWindow). The fake's clock is
moved three times, each a clock event followed by the next stretch of the stream: +3 s (ahead
of us, within the window), −3 s (behind us: our timestamps are from its future), then +10 s at
once (to +7 s: our timestamps are 10 s old).

Figures, from every request the fake logged with the offset of its clock at the time: timestamp
rejections (-1021) in any one clock event (≤ 1, hard: one refused request, then resynced);
requests sent outside the venue's recvWindow after that first one (0, hard); orders not placed
exactly once (0, hard: a refused order must be sent again after the resync, and only once);
then measured: clock measurements after the start, orders placed.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Final

from connectors.binance.rest import BinanceConnector
from connectors.binance.session import ApiCredentials
from connectors.bybit.signing import BybitCredentials
from connectors.bybit.trading import BybitTrading
from connectors.errors import OutcomeUnknown
from connectors.trading import venue_client_order_id
from connectors.types import Side
from faults.fakes import fake
from faults.scenario import Context, Figure, Outcome, Scenario, measured, zero

RECV_WINDOW_MS: Final = 5000
EVENTS_MS: Final = (3000, -3000, 7000)  # the venue's clock offset after each event: ±3 s, then a 10 s jump
_SIDES: Final[tuple[tuple[Side, Decimal], ...]] = (("buy", Decimal("3000.1")), ("sell", Decimal("2999.9")))
_GENEROUS: Final = 1_000_000  # rate limits out of the way: this scenario is about time


def outside(seen: Any, skew_ms: int) -> bool:
    """Whether a logged signed request's timestamp was outside the recvWindow of the venue's clock then."""
    server = int(seen.time * 1000) + skew_ms
    stamp, window = int(seen.params["timestamp"]), int(seen.params.get("recvWindow", "5000"))
    return stamp >= server + 1000 or server - stamp > window


async def run_scenario(context: Context) -> Outcome:
    """Stream orders across the clock events; count the timestamp rejections of each."""
    per_event = 20 if context.small else 500
    fake_binance = fake("fake_binance")
    async with fake_binance.FakeBinance(
        clock=time.time, weight_limit=_GENEROUS, orders_per_10s=_GENEROUS
    ) as venue:
        connector = BinanceConnector(
            rest_url=venue.rest_url,
            credentials=ApiCredentials(fake_binance.API_KEY, fake_binance.API_SECRET),
            recv_window_ms=RECV_WINDOW_MS,
            request_timeout_s=10.0,
        )
        phases: list[tuple[int, int, int]] = []  # (skew, first request index, end index)
        sent: list[str] = []
        async with connector:
            for number, skew in enumerate((0, *EVENTS_MS)):
                venue.skew_ms = skew
                first = len(venue.requests)
                for i in range(per_event):
                    client_order_id = f"sr-skew-{number}-{i:04d}"
                    sent.append(client_order_id)
                    await connector.place_order("BTC-USDT", "buy", Decimal("0.001"), Decimal("64001"),
                                                client_order_id)  # fmt: skip
                phases.append((skew, first, len(venue.requests)))
        rejections = []
        for skew, first, end in phases:
            signed = [s for s in venue.requests[first:end] if "timestamp" in s.params]
            rejections.append(sum(outside(seen, skew) for seen in signed))
        syncs = len(venue.requests_to("GET", "time"))
        not_once = sorted(cid for cid in sent if venue.accepted[cid] != 1)
    b_rejections, b_not_once, b_syncs, b_unknown = await bybit_stream(per_event)
    figures = [
        *skew_figures("", "Binance", "-1021", "recvWindow", rejections, not_once),
        *skew_figures("bybit_", "Bybit", "10002", "recv window", b_rejections, b_not_once),
        measured("resyncs", "Binance: clock measurements after the start", syncs - 1),
        measured("orders", "Binance: orders placed", sum(venue.accepted[cid] for cid in sent)),
        measured("bybit_resyncs", "Bybit: clock measurements after the start", b_syncs - 1),
        measured("bybit_unknown", "Bybit: orders left to settle by query (OutcomeUnknown)", len(b_unknown)),
    ]
    details = {
        "events_ms": list(EVENTS_MS),
        "rejections_by_phase": dict(zip(("start", "+3 s", "-3 s", "+10 s jump"), rejections, strict=True)),
        "not_placed_once": not_once[:50],
        "bybit_rejections_by_phase": dict(
            zip(("start", "+3 s", "-3 s", "+10 s jump"), b_rejections, strict=True)
        ),
        "bybit_not_placed_once": b_not_once[:50],
        "bybit_unknown": b_unknown[:50],
        "statuses": {str(k): v for k, v in sorted(venue.statuses.items())},
    }
    size = {"orders_per_event": per_event, "events": len(EVENTS_MS), "recv_window_ms": RECV_WINDOW_MS}
    return Outcome(figures, size=size, details=details)


def bybit_outside(seen: Any, skew_ms: int) -> bool:
    """Whether a logged signed Bybit request's timestamp was outside its recv window on the venue's clock."""
    server = int(seen.time * 1000) + skew_ms
    stamp, window = int(seen.headers["X-BAPI-TIMESTAMP"]), int(seen.headers.get("X-BAPI-RECV-WINDOW", "5000"))
    return not server - window <= stamp < server + 1000


async def bybit_stream(per_event: int) -> tuple[list[int], list[str], int, list[str]]:
    """The same stream at Bybit (10002 for a timestamp out of window); its rejections by phase."""
    fake_bybit = fake("fake_bybit")
    clock = fake_bybit.VirtualClock()
    async with fake_bybit.FakeBybit(clock=clock) as venue:
        client = BybitTrading(
            BybitCredentials(fake_bybit.API_KEY, fake_bybit.API_SECRET), ["ETH-USDT"],
            rest_url=venue.rest_url, wall_ms=clock.wall_ms, monotonic=clock, sleep=clock.sleep,
            recv_window_ms=RECV_WINDOW_MS,
        )  # fmt: skip
        phases: list[tuple[int, int, int]] = []
        sent: list[str] = []
        unknown: list[str] = []
        labels: dict[str, str] = {}  # venue id -> the readable id it was made from
        async with client:
            for number, skew in enumerate((0, *EVENTS_MS)):
                venue.skew_ms = skew
                first = len(venue.requests)
                for i in range(per_event):
                    client_order_id = venue_client_order_id(f"skew-{number}-{i}", 0, "hex32")
                    sent.append(client_order_id)
                    labels[client_order_id] = f"skew-{number}-{i}"
                    side, price = _SIDES[i % 2]
                    try:
                        await client.place_order("ETH-USDT", side, Decimal("0.002"), price, client_order_id)
                    except OutcomeUnknown:
                        unknown.append(
                            labels[client_order_id]
                        )  # left to settle by query: not placed, not refused
                    await clock.sleep(0.1)  # a stream, not a burst: a tenth of a second apart
                phases.append((skew, first, len(venue.requests)))
        rejections = [
            sum(
                bybit_outside(seen, skew)
                for seen in venue.requests[first:end]
                if "X-BAPI-TIMESTAMP" in seen.headers
            )
            for skew, first, end in phases
        ]
        not_once = sorted(labels[cid] for cid in sent if venue.executed[cid] != 1)
        syncs = len(venue.requests_to("GET", "/v5/market/time"))
    return rejections, not_once, syncs, unknown


SCENARIO: Final = Scenario(
    10,
    "clock_skew",
    "Clock skew",
    run_scenario,
    lambda context: 120.0 if context.small else 1200.0,
)


def skew_figures(
    prefix: str, venue: str, code: str, window: str, rejections: list[int], not_once: list[str]
) -> list[Figure]:
    """Return one venue's hard figures: most rejections in a clock event, outside after, not placed once."""
    worst = max(rejections[1:])
    return [
        Figure(
            f"{prefix}rejections_per_event",
            f"{venue}: timestamp rejections ({code}) in one clock event, most",
            worst,
            "≤ 1",
            worst <= 1,
            hard=True,
        ),
        zero(
            f"{prefix}outside_after_resync",
            f"{venue}: requests outside the {window} after the first of an event",
            sum(max(0, n - 1) for n in rejections[1:]),
        ),
        zero(f"{prefix}not_placed_once", f"{venue}: orders not placed exactly once", len(not_once)),
    ]
