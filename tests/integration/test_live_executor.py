"""The SmartRouter trading live through LiveExecutor against the fake Binance (fake_binance.py).

What must never happen is a second order for one leg: after a timeout, a 5xx,
-1007, a dropped connection or a SIGKILL of the router mid-order, the fake
counts exactly one order per client order id. Run as a script, this module is
the router child process of the SIGKILL test (see `child_main`).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from fake_binance import API_KEY, API_SECRET, FakeBinance, Fault

from connectors.binance.errors import VenueBanned
from connectors.binance.rest import BinanceConnector
from connectors.binance.session import ApiCredentials
from connectors.binance.trading import BinanceTrading
from connectors.registry import client_order_id
from daemon.config import ConfigError, build_config
from daemon.routing import RouterSections
from daemon.routing import build_router as build_daemon_router
from router.cache import PriceCache
from router.execution import OrderLeg, PaperExecutor
from router.kill_switch import KillSwitch
from router.ledger import Ledger, LegIntent
from router.live import LiveExecutor, SettlePolicy
from router.preferences import PreferenceStore
from router.request import RequestRules
from router.residuals import ResidualSettings
from router.risk import RiskGate, RiskLimits
from router.smart import SmartRouter

pytestmark = pytest.mark.integration

D = Decimal
FEE_BPS = D(10)
RECV_WINDOW_MS = 500  # short, so that "never accepted" becomes certain quickly
POLICY = SettlePolicy(query_delays_s=(0.05, 0.1, 0.2, 0.4, 0.8), finality_margin_ms=200)
HERE = Path(__file__)
FAKE_CREDENTIALS = ApiCredentials(API_KEY, API_SECRET)


def build_router(
    cache: PriceCache, executor: LiveExecutor | PaperExecutor, ledger: Ledger, venues: tuple[str, ...]
) -> SmartRouter:
    fees = dict.fromkeys(venues, FEE_BPS)
    return SmartRouter(
        cache,
        executor,
        ledger,
        PreferenceStore({}, known_venues=venues),
        RiskGate(RiskLimits(D(10_000_000), 100, D(100_000_000))),
        KillSwitch(ledger),
        RequestRules(frozenset(venues), frozenset({"BTC-USDT"})),
        fees,
        residuals=ResidualSettings("unwind"),
    )


class LiveWorld:
    """A SmartRouter whose executor trades on fake venues; the cache is seeded from their REST books."""

    def __init__(
        self,
        state: Path,
        venues: dict[str, str],
        *,
        request_timeout_s: float = 0.5,
        credentials: ApiCredentials = FAKE_CREDENTIALS,
    ) -> None:
        self.connectors = {
            venue: BinanceConnector(
                rest_url=url,
                credentials=credentials,
                recv_window_ms=RECV_WINDOW_MS,
                request_timeout_s=request_timeout_s,
            )
            for venue, url in venues.items()
        }
        self.executor = LiveExecutor(
            {venue: BinanceTrading(connector) for venue, connector in self.connectors.items()},
            taker_fee_bps=dict.fromkeys(venues, FEE_BPS),
            policy=POLICY,
        )
        self.cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=60_000)
        self.ledger = Ledger.open(state)
        self.router = build_router(self.cache, self.executor, self.ledger, tuple(venues))

    async def __aenter__(self) -> LiveWorld:
        await self.executor.start()
        for venue, connector in self.connectors.items():
            book = await connector.order_book("BTC-USDT", limit=5)
            self.cache.update(msgspec.structs.replace(book, venue=venue))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.executor.close()
        self.ledger.close()

    async def order(self, request_id: str, side: str, quantity: str) -> dict[str, Any]:
        handled = await self.router.handle(order_message(request_id, side, quantity))
        assert handled.result is not None
        result: dict[str, Any] = orjson.loads(handled.result)
        return result


def order_message(request_id: str, side: str, quantity: str) -> bytes:
    message = {"v": 1, "request_id": request_id, "user_id": "desk", "kind": "order", "symbol": "BTC-USDT"}
    return orjson.dumps(message | {"side": side, "quantity": quantity, "venues": ["binance"]})


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        yield server


@pytest.fixture
async def world(tmp_path: Path, fake: FakeBinance) -> AsyncIterator[LiveWorld]:
    async with LiveWorld(tmp_path / "state", {"binance": fake.rest_url}) as live:
        yield live


# --- the results contract -----------------------------------------------------------------------


async def test_an_order_fills_live_with_the_same_results_contract_as_paper(
    world: LiveWorld, fake: FakeBinance, tmp_path: Path
) -> None:
    async with asyncio.timeout(10):
        result = await world.order("live-1", "buy", "0.5")
        again = await world.router.handle(order_message("live-1", "buy", "0.5"))
        paper = await paper_result(tmp_path, world.cache)
    coid = client_order_id("binance", "live-1", 0)
    assert (result["status"], result["mode"], result["filled_quantity"]) == ("filled", "live", "0.5")
    [fill] = result["fills"]
    assert fill | {"ts_ns": 0} == {
        "venue": "binance", "side": "buy", "price": "64000.5", "quantity": "0.5", "fee": "0.0005",
        "fee_asset": "BTC", "client_order_id": coid, "venue_order_id": "1", "ts_ns": 0,
    }  # fmt: skip
    assert again.replayed and again.result is not None and orjson.loads(again.result) == result
    assert fake.accepted == {coid: 1}
    assert set(result) == set(paper) and set(fill) == set(paper["fills"][0])
    assert world.executor.observed_ack_latency_ms("binance") is not None


async def paper_result(tmp_path: Path, cache: PriceCache) -> dict[str, Any]:
    with Ledger.open(tmp_path / "paper") as ledger:
        router = build_router(cache, PaperExecutor(cache, {"binance": FEE_BPS}), ledger, ("binance",))
        handled = await router.handle(order_message("paper-1", "buy", "0.5"))
    assert handled.result is not None
    paper: dict[str, Any] = orjson.loads(handled.result)
    return paper


async def test_quantity_and_price_are_rounded_the_safe_way_before_sending(
    world: LiveWorld, fake: FakeBinance
) -> None:
    async with asyncio.timeout(10):
        result = await world.order("live-round", "sell", "0.123456789")
    [sent] = fake.requests_to("POST", "order")
    limit = world.ledger.legs("live-round")[0].limit_price
    assert limit is not None
    assert sent.params["quantity"] == "0.12345"  # down to the lot step, never above the request
    assert D(sent.params["price"]) >= limit and D(sent.params["price"]) - limit < D("0.01")  # sell: up
    assert (result["status"], result["filled_quantity"]) == ("partially_filled", "0.12345")


async def test_an_order_below_min_notional_is_rejected_without_being_sent(
    world: LiveWorld, fake: FakeBinance
) -> None:
    async with asyncio.timeout(10):
        result = await world.order("live-tiny", "buy", "0.00005")  # 3.2 USDT < 5
    assert (result["status"], result["reject_code"]) == ("rejected", "venue_error")
    assert "below the minimum 5" in result["message"]
    assert "not sent" in result["message"]
    assert fake.requests_to("POST", "order") == []


# --- unknown outcomes: query, never re-send -------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["accept_then_hang", "accept_then_5xx", "accept_then_1007", "accept_then_drop"]
)
async def test_an_accepted_order_whose_answer_is_lost_is_settled_by_query_never_sent_twice(
    world: LiveWorld, fake: FakeBinance, fault: Fault
) -> None:
    fake.inject("POST", "order", fault)
    async with asyncio.timeout(10):
        result = await world.order(f"live-{fault}", "buy", "0.5")
    coid = client_order_id("binance", f"live-{fault}", 0)
    assert (result["status"], result["filled_quantity"]) == ("filled", "0.5")
    [fill] = result["fills"]
    assert (fill["price"], fill["fee"], fill["fee_asset"]) == ("64000.5", "0.0005", "BTC")  # from myTrades
    assert fake.accepted == {coid: 1} and len(fake.requests_to("POST", "order")) == 1
    assert len(fake.requests_to("GET", "order")) >= 1


async def test_an_order_the_venue_never_accepted_is_not_executed_once_recv_window_has_passed(
    world: LiveWorld, fake: FakeBinance
) -> None:
    fake.inject("POST", "order", "fail_5xx")
    async with asyncio.timeout(10):
        result = await world.order("live-lost", "buy", "0.5")
    assert result["status"] == "failed" and "never accepted" in result["message"]
    queries = fake.requests_to("GET", "order")
    assert fake.accepted == {} and len(queries) >= 2
    assert queries[-1].time - fake.requests_to("POST", "order")[0].time >= RECV_WINDOW_MS / 1000


async def test_an_order_accepted_late_after_a_5xx_is_found_not_reported_as_not_executed(
    world: LiveWorld, fake: FakeBinance
) -> None:
    fake.late_s = 0.25  # the engine takes it after the first "no such order" but inside recvWindow
    fake.inject("POST", "order", "accept_late")
    async with asyncio.timeout(10):
        result = await world.order("live-late", "buy", "0.5")
    assert (result["status"], result["filled_quantity"]) == ("filled", "0.5")
    assert fake.accepted == {client_order_id("binance", "live-late", 0): 1}
    assert fake.statuses[400] >= 1  # at least one -2013 came before the order existed


async def test_a_venue_that_cannot_say_leaves_the_leg_in_flight_and_the_settler_settles_it(
    tmp_path: Path, fake: FakeBinance
) -> None:
    fake.inject("POST", "order", "accept_then_5xx")
    fake.inject("GET", "order", *(["fail_5xx"] * (len(POLICY.query_delays_s) + 1)))
    async with asyncio.timeout(15):
        async with LiveWorld(tmp_path / "state", {"binance": fake.rest_url}) as first:
            held = await first.router.handle(order_message("live-dark", "buy", "0.5"))
            assert held.result is None  # not answered with a guess: the settler owns it
            assert [u.request_id for u in first.router.settler.unsettled()] == ["live-dark"]
            assert [leg.state for leg in first.ledger.legs("live-dark")] == ["sent"]
        async with LiveWorld(tmp_path / "state", {"binance": fake.rest_url}) as restarted:
            assert await restarted.router.recover() == []  # owed: the settler tries it at once
            published: dict[str, bytes] = {}

            async def publish(request_id: str, result: bytes) -> None:
                published[request_id] = result

            assert await restarted.router.settler.step(publish) == 1
            recovered = published["live-dark"]
    result = orjson.loads(recovered)
    assert (result["status"], result["filled_quantity"]) == ("filled", "0.5")
    assert fake.accepted == {client_order_id("binance", "live-dark", 0): 1}


async def test_a_restart_settles_a_leg_by_the_id_the_ledger_recorded_even_from_an_older_scheme(
    tmp_path: Path, fake: FakeBinance
) -> None:
    """Ids were `sr` + 30 hex before the venue-neutral UUIDs: a leg in flight across the upgrade is found."""
    legacy_id = "sr0f1e2d3c4b5a69788796a5b4c3d2e1"
    await fake_order(fake, legacy_id, "0.5")
    ledger = Ledger.open(tmp_path / "state")
    try:
        ledger.claim("live-old", "desk", order_message("live-old", "buy", "0.5"), now_ns=1)
        ledger.record_leg_intent(
            LegIntent("live-old", 0, "binance", legacy_id, "buy", D("0.5"), D("64010"), "intent", None)
        )
        ledger.mark_leg("live-old", 0, "sent", None)
    finally:
        ledger.close()
    async with asyncio.timeout(15), LiveWorld(tmp_path / "state", {"binance": fake.rest_url}) as restarted:
        [recovered] = await restarted.router.recover()
    result = orjson.loads(recovered)
    assert (result["status"], result["filled_quantity"]) == ("filled", "0.5")
    assert fake.accepted == {legacy_id: 1}  # found by that id, never sent again under a new one


async def fake_order(fake: FakeBinance, coid: str, quantity: str) -> None:
    """Place an order at the fake directly, as an earlier run of the router did."""
    connector = BinanceConnector(rest_url=fake.rest_url, credentials=FAKE_CREDENTIALS, recv_window_ms=500)
    try:
        await connector.place_order("BTC-USDT", "buy", D(quantity), D("64010"), coid)
    finally:
        await connector.close()


async def test_our_client_id_already_open_is_settled_from_that_order_not_placed_again(
    world: LiveWorld, fake: FakeBinance
) -> None:
    coid = client_order_id("binance", "live-dup", 0)
    resting = world.connectors["binance"]
    async with asyncio.timeout(10):
        await resting.place_order("BTC-USDT", "buy", D("0.5"), D("63000"), coid, time_in_force="GTC")
        result = await world.order("live-dup", "buy", "0.5")
    assert result["status"] == "failed" and "nothing filled" in result["message"]
    assert fake.accepted == {coid: 1}
    assert fake.orders[0].status == "CANCELED"  # found open, cancelled, then settled


async def test_recover_cancels_an_order_found_open_and_settles_what_it_filled(
    world: LiveWorld, fake: FakeBinance
) -> None:
    fake.set_book("BTCUSDT", [("64000.00", "1")], [("64000.50", "0.2")])
    coid = client_order_id("binance", "live-open", 0)
    async with asyncio.timeout(10):
        await world.connectors["binance"].place_order(
            "BTC-USDT", "buy", D("0.5"), D("64001"), coid, time_in_force="GTC"
        )
        leg = OrderLeg("live-open", 0, "binance", "BTC-USDT", "buy", D("0.5"), D("64001"))
        outcome = await world.executor.recover(leg)
    assert outcome.filled == D("0.2") and outcome.error is None
    assert fake.orders[0].status == "CANCELED" and fake.accepted == {coid: 1}


# --- venue limits and arbitrage -----------------------------------------------------------------


async def test_a_banned_venue_gets_no_order_and_the_request_is_rejected_with_venue_error(
    world: LiveWorld, fake: FakeBinance
) -> None:
    fake.inject("GET", "ticker/bookTicker", "418")
    async with asyncio.timeout(10):
        with pytest.raises(VenueBanned):
            await world.connectors["binance"].book_ticker("BTC-USDT")
        result = await world.order("live-banned", "buy", "0.5")
    assert (result["status"], result["reject_code"]) == ("rejected", "venue_error")  # nothing was sent
    assert "bans this IP" in result["message"]
    assert fake.requests_to("POST", "order") == []


async def test_arbitrage_sends_both_ioc_legs_and_the_router_unwinds_a_partial_leg(tmp_path: Path) -> None:
    async with FakeBinance() as buy_side, FakeBinance() as sell_side:
        buy_side.set_book("BTCUSDT", [("63990.00", "5")], [("64000.50", "5")])
        sell_side.set_book("BTCUSDT", [("64300.00", "0.3")], [("64310.00", "5")])
        venues = {"binance": buy_side.rest_url, "bybit": sell_side.rest_url}
        async with asyncio.timeout(15), LiveWorld(tmp_path / "state", venues) as world:
            sell_side.set_book("BTCUSDT", [("64300.00", "0.2")], [("64310.00", "5")])  # depth left
            result = await world.router.execute_arbitrage_opportunity("BTC-USDT", "binance", "bybit", "0.3")
    assert result.status == "partially_filled" and result.hedged_quantity == D("0.2")
    assert result.residual is not None and result.residual["action"] == "unwound"
    assert max(buy_side.accepted.values()) == 1 and len(buy_side.accepted) == 2  # the buy and its unwind
    assert list(sell_side.accepted.values()) == [1]


# --- the daemon's wiring --------------------------------------------------------------------------


async def test_the_daemon_builds_a_live_router_that_routes_only_to_its_tradable_venues(
    tmp_path: Path, fake: FakeBinance
) -> None:
    cfg = build_config(
        {
            "daemon": {"mode": "live", "state_dir": str(tmp_path / "state")},
            "security": {"require_signatures": False},  # the venues are under test (see test_signed_kafka)
            "venues": {
                "binance": {"rest_url": fake.rest_url, "recv_window_ms": 500},
                "bybit": {"trade": False},
            },
        },
        {},
    )
    cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=60_000)
    with pytest.raises(ConfigError, match="BINANCE_API_KEY"):
        build_daemon_router(RouterSections.of(cfg), cache, environ={})
    parts = build_daemon_router(
        RouterSections.of(cfg), cache, environ={"BINANCE_API_KEY": API_KEY, "BINANCE_API_SECRET": API_SECRET}
    )
    try:
        assert parts.live is not None and parts.router.mode == "live"
        assert set(parts.router.taker_fees) == {"binance"}  # bybit is enabled for market data only
        async with asyncio.timeout(10):
            await parts.connect()
            binance = parts.live.connectors["binance"]
            assert isinstance(binance, BinanceTrading)
            cache.update(await binance.connector.order_book("BTC-USDT"))
            handled = await parts.router.handle(order_message("daemon-1", "buy", "0.5"))
    finally:
        await parts.disconnect()
        parts.ledger.close()
    assert handled.result is not None and orjson.loads(handled.result)["status"] == "filled"
    assert fake.requests_to("POST", "order")[0].params["recvWindow"] == "500"
    assert fake.accepted == {client_order_id("binance", "daemon-1", 0): 1}


def test_the_testnet_is_one_config_switch() -> None:
    testnet = build_config({"venues": {"binance": {"testnet": True}}}, {}).venues["binance"]
    assert (testnet.rest_url, testnet.ws_url) == (
        "https://testnet.binance.vision",
        "wss://stream.testnet.binance.vision",
    )
    production = build_config({"venues": {"binance": {}}}, {}).venues["binance"]
    assert (production.rest_url, production.recv_window_ms) == ("https://api.binance.com", 5000)
    with pytest.raises(ConfigError, match="recv_window_ms"):
        build_config({"venues": {"binance": {"recv_window_ms": 60_001}}}, {})
    with pytest.raises(ConfigError, match=r"venues\.kraken\.testnet: Kraken has no spot sandbox"):
        build_config({"venues": {"kraken": {"testnet": True}}}, {})
    with pytest.raises(ConfigError, match=r"venues\.coinbase\.testnet: Coinbase.s sandbox is a static mock"):
        build_config({"venues": {"coinbase": {"testnet": True}}}, {})


@pytest.mark.parametrize(
    ("venue", "ws_url", "rest_url", "trade_url"),
    [
        ("bybit", "wss://stream-testnet.bybit.com/v5/public/spot", "https://api-testnet.bybit.com",
         "https://api-testnet.bybit.com"),
        ("okx", "wss://wspap.okx.com:8443/ws/v5/public", "https://www.okx.com", "https://openapi.okx.com"),
    ],
)  # fmt: skip
def test_bybit_and_okx_testnets_are_one_config_switch_too(
    venue: str, ws_url: str, rest_url: str, trade_url: str
) -> None:
    testnet = build_config({"venues": {venue: {"testnet": True}}}, {}).venues[venue]
    assert (testnet.ws_url, testnet.rest_url, testnet.trade_url) == (ws_url, rest_url, trade_url)
    pointed = build_config({"venues": {venue: {"testnet": True, "rest_url": "http://127.0.0.1:1"}}}, {})
    assert pointed.venues[venue].trade_url == "http://127.0.0.1:1"  # rest_url given: orders follow it


# --- SIGKILL mid-order ----------------------------------------------------------------------------


async def test_a_router_killed_after_the_venue_accepted_settles_the_order_at_restart_exactly_once(
    tmp_path: Path, fake: FakeBinance
) -> None:
    state = tmp_path / "state"
    fake.inject("POST", "order", "accept_then_hang")  # accepted, answer never comes
    async with asyncio.timeout(30):
        child = await start_child("handle", state, fake)
        try:
            await asyncio.wait_for(fake.order_accepted.wait(), 15)
            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        with Ledger.open(state) as ledger:
            assert [rid for rid, _ in ledger.in_flight()] == ["kill-1"]
            assert [leg.state for leg in ledger.legs("kill-1")] == ["sent"]

        recovered = await run_child("recover", state, fake)
        replayed = await run_child("handle", state, fake)
    coid = client_order_id("binance", "kill-1", 0)
    [result] = recovered
    assert (result["status"], result["filled_quantity"]) == ("filled", "0.5")
    assert result["fills"][0]["client_order_id"] == coid
    assert replayed == [result]  # the redelivered request is answered from the ledger
    assert fake.accepted == {coid: 1} and len(fake.requests_to("POST", "order")) == 1


async def start_child(command: str, state: Path, fake: FakeBinance) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE),
        command,
        str(state),
        fake.rest_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_child(command: str, state: Path, fake: FakeBinance) -> list[dict[str, Any]]:
    child = await start_child(command, state, fake)
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode(errors="replace")
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


async def child_main(command: str, state: Path, rest_url: str) -> None:
    """Run a live router over `state` against the fake at `rest_url`; print each result as a JSON line.

    "handle": answer the order request kill-1 (its answer may never come: the test kills us);
    "recover": settle what a previous run left in flight, before taking any request.
    """
    async with LiveWorld(state, {"binance": rest_url}, request_timeout_s=30.0) as world:
        if command == "recover":
            results = await world.router.recover()
        else:
            handled = await world.router.handle(order_message("kill-1", "buy", "0.5"))
            results = [handled.result] if handled.result else []
    for result in results:
        sys.stdout.write(result.decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the protocol
    asyncio.run(child_main(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))
