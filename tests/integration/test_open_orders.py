"""Open orders the ledger does not know, on the five fake venues: reported, never touched.

Each fake serves its venue's own open-orders endpoint in its documented shape (Binance
`GET /api/v3/openOrders`, Bybit `GET /v5/order/realtime`, OKX `GET /api/v5/trade/orders-pending`,
Coinbase `GET /orders/historical/batch?order_status=OPEN`, Kraken `POST /0/private/OpenOrders`).
Orders are put on the fakes "behind the ledger's back" (`rest_order`/`add_open_order`: straight
into the fake's state, as a hand-placed order would be), and the router — built exactly as
`smartroute run --live` builds it — must report each of them, and only them.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import fake_binance
import fake_bybit
import fake_coinbase
import fake_kraken
import fake_okx
import orjson
import pytest
from kafka_support import create_contract_topics, wait_until
from prometheus_client import REGISTRY
from venue_helpers import FAKE_CREDENTIALS

from connectors.registry import client_order_id
from daemon.app import Daemon
from daemon.config import Config, load_config
from daemon.routing import RouterParts, RouterSections, build_router
from router.cache import PriceCache
from router.ledger import LegIntent
from router.metrics import UNKNOWN_VENUE_ORDERS

pytestmark = pytest.mark.integration

VENUES = ("binance", "bybit", "okx", "coinbase", "kraken")
SYMBOL = {
    "binance": "BTC-USDT",
    "bybit": "BTC-USDT",
    "okx": "BTC-USDT",
    "coinbase": "BTC-USD",
    "kraken": "BTC-USD",
}
ENVIRON = FAKE_CREDENTIALS
# Rest a buy of 0.5 at 30000 (far below any book) on a fake, in the venue's own symbol and words.
REST: dict[str, Callable[[Any, str], object]] = {
    "binance": lambda fake, cid: fake.rest_order("BTCUSDT", "BUY", "30000", "0.5", cid),
    "bybit": lambda fake, cid: fake.add_open_order(cid, "BTCUSDT", "Buy", "30000", "0.5"),
    "okx": lambda fake, cid: fake.rest_order("BTC-USDT", "buy", "30000", "0.5", cid),
    "coinbase": lambda fake, cid: fake.rest_order("BTC-USD", "BUY", "30000", "0.5", cid),
    "kraken": lambda fake, cid: fake.rest_order("XXBTZUSD", "buy", "30000.0", "0.5", cid),
}


@dataclass
class Fakes:
    by_venue: dict[str, Any]

    def rest(self, venue: str, client_id: str) -> None:
        REST[venue](self.by_venue[venue], client_id)


@pytest.fixture(autouse=True)
def no_unknown_orders_left_behind() -> Iterator[None]:
    """Clear the gauge after each test: the registry is per process, and another test's daemon
    (the Prometheus alert test) must not see this test's hand-placed orders as its own."""
    yield
    UNKNOWN_VENUE_ORDERS.clear()


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with AsyncExitStack() as stack:
        by_venue: dict[str, Any] = {
            "binance": await stack.enter_async_context(fake_binance.FakeBinance()),
            "bybit": await stack.enter_async_context(fake_bybit.FakeBybit(clock=time.time)),
            "okx": await stack.enter_async_context(fake_okx.FakeOkx()),
            "coinbase": await stack.enter_async_context(fake_coinbase.FakeCoinbase()),
            "kraken": await stack.enter_async_context(fake_kraken.FakeKraken()),
        }
        yield Fakes(by_venue)


def live_config(tmp_path: Path, fakes: Fakes, venues: tuple[str, ...], extra: str = "") -> Config:
    sections = "".join(
        f'[venues.{venue}]\nsymbols = ["{SYMBOL[venue]}"]\ntrade_url = "{fakes.by_venue[venue].rest_url}"\n'
        + ('tier = "pro"\n' if venue == "kraken" else "")  # the fake's account tier: no slow pacing
        for venue in venues
    )
    path = tmp_path / "smartroute.toml"
    path.write_text(
        f'[daemon]\nmode = "live"\nhttp_port = 0\nstate_dir = "{tmp_path / "state"}"\n' + extra + sections
    )
    return load_config(path, environ={})


def hand_placed_id(venue: str) -> str:
    """A client id someone else chose, in a form the venue accepts (UUID on Coinbase and Kraken)."""
    return str(uuid.uuid4()) if venue in ("coinbase", "kraken") else uuid.uuid4().hex


def unknown_gauge(venue: str) -> float | None:
    return REGISTRY.get_sample_value("smartroute_unknown_venue_orders", {"venue": venue})


def logged(stream: io.StringIO, event: str) -> list[dict[str, Any]]:
    lines = (orjson.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


def leg(request_id: str, venue: str, state: str = "intent") -> LegIntent:
    cid = client_order_id(venue, request_id, 0)
    return LegIntent(request_id, 0, venue, cid, "buy", Decimal("0.5"), Decimal(30000), "intent", None)  # type: ignore[arg-type]


def in_flight(parts: RouterParts, request_id: str, venue: str) -> str:
    """Record a leg in the ledger as the router does before sending it; return its client order id."""
    intent = leg(request_id, venue)
    parts.ledger.claim(request_id, "desk", b"{}", now_ns=time.time_ns())
    parts.ledger.record_leg_intent(intent)
    parts.ledger.mark_leg(request_id, 0, "sent")
    return intent.client_order_id


@pytest.fixture
async def live(fakes: Fakes, tmp_path: Path) -> AsyncIterator[RouterParts]:
    cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=60_000)
    parts = build_router(RouterSections.of(live_config(tmp_path, fakes, VENUES)), cache, environ=ENVIRON)
    try:
        async with asyncio.timeout(30):
            await parts.connect()
        yield parts
    finally:
        await parts.disconnect()
        parts.ledger.close()


async def test_each_venues_orders_the_ledger_does_not_know_are_reported_and_left_alone(
    fakes: Fakes, live: RouterParts, captured_logs: io.StringIO
) -> None:
    assert live.open_orders is not None
    stranger = {venue: hand_placed_id(venue) for venue in VENUES}
    mine = {}
    for venue in VENUES:
        fakes.rest(venue, stranger[venue])
        mine[venue] = in_flight(live, f"req-{venue}", venue)
        fakes.rest(venue, mine[venue])  # the router's own leg, open at the venue while it works on it
    # A settled leg the venue still lists open: the ledger thinks it final, the venue does not.
    settled = in_flight(live, "req-settled", "kraken")
    live.ledger.mark_leg("req-settled", 0, "settled", b'{"filled": "0"}')
    fakes.rest("kraken", settled)

    async with asyncio.timeout(30):
        found = await live.open_orders.check()

    for venue in VENUES:
        check = found[venue]
        assert check.error is None and check.open_orders == 2 + (venue == "kraken"), check
        reported = {(o.client_order_id, o.finding) for o in check.unknown}
        expected = {(stranger[venue], "unknown")} | ({(settled, "settled")} if venue == "kraken" else set())
        assert reported == expected, venue
        assert unknown_gauge(venue) == len(expected)
    [binance] = found["binance"].unknown
    assert (binance.symbol, binance.side, binance.quantity, binance.price) == (
        "BTC-USDT",
        "buy",
        Decimal("0.5"),
        Decimal(30000),
    )
    lines = logged(captured_logs, "unknown_venue_order")
    assert {(line["venue"], line["client_order_id"]) for line in lines} == {
        *((venue, stranger[venue]) for venue in VENUES),
        ("kraken", settled),
    }
    line = next(line for line in lines if line["venue"] == "okx")
    assert (line["symbol"], line["side"], line["quantity"], line["finding"]) == (
        "BTC-USDT",
        "buy",
        "0.5",
        "unknown",
    )
    assert line["venue_order_id"]
    status = live.open_orders.status()
    assert [o["client_order_id"] for o in status["coinbase"]["unknown"]] == [stranger["coinbase"]]  # type: ignore[index]
    # Reported, never cancelled: every order is still open at its venue.
    for venue in VENUES:
        listed = await live.live.connectors[venue].open_orders()  # type: ignore[union-attr]
        assert {stranger[venue], mine[venue]} <= {o.client_order_id for o in listed}


async def test_the_router_checks_at_start_before_readiness_and_then_every_interval(
    fakes: Fakes, tmp_path: Path, embedded_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    prefix = f"t{uuid.uuid4().hex[:12]}."
    await create_contract_topics(embedded_broker, prefix)
    venues = ("binance", "kraken")
    extra = (
        f'[kafka]\nbootstrap_servers = "{embedded_broker}"\ntopic_prefix = "{prefix}"\n'
        "[router]\nsession_timeout_ms = 2000\nreconcile_interval_ms = 1000\n"
    )
    cfg = live_config(tmp_path, fakes, venues, extra)
    before_start = {venue: hand_placed_id(venue) for venue in venues}
    for venue in venues:
        fakes.rest(venue, before_start[venue])
    daemon = Daemon(cfg, roles=frozenset({"route"}))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="router-under-test")
    try:
        assert daemon.router_service is not None
        await asyncio.wait_for(daemon.router_service.reconciled.wait(), 30)
        # Checked before readiness: the orders are on /status the moment the router says it reconciled.
        at_start = daemon.status()["unknown_venue_orders"]
        assert [o["client_order_id"] for o in at_start["binance"]["unknown"]] == [before_start["binance"]]
        assert [o["client_order_id"] for o in at_start["kraken"]["unknown"]] == [before_start["kraken"]]
        assert unknown_gauge("binance") == 1 and unknown_gauge("kraken") == 1
        later = uuid.uuid4().hex
        fakes.rest("binance", later)  # placed by hand while the router runs: found by the next pass
        await wait_until(lambda: unknown_gauge("binance") == 2, timeout_s=10)
        periodic = daemon.status()["unknown_venue_orders"]["binance"]["unknown"]
        assert {o["client_order_id"] for o in periodic} == {before_start["binance"], later}
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    assert fakes.by_venue["binance"].orders[-1].status == "NEW"  # still open: never cancelled


async def test_paper_mode_has_no_venue_orders_to_check(tmp_path: Path) -> None:
    path = tmp_path / "smartroute.toml"
    path.write_text(
        f'[daemon]\nhttp_port = 0\nstate_dir = "{tmp_path / "state"}"\n[venues.okx]\nsymbols = ["BTC-USDT"]\n'
    )
    parts = build_router(
        RouterSections.of(load_config(path, environ={})), PriceCache(ttl_ms=1000, max_quote_age_ms=1000)
    )
    try:
        assert parts.open_orders is None
    finally:
        parts.ledger.close()
