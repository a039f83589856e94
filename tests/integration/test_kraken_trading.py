"""KrakenTrading against a fake Kraken REST server that enforces Kraken's documented rules (fake_kraken.py).

Signatures, nonces, deadlines, the open-orders-only client-id rule and the
rate counters are checked by the fake; counters and lockouts run on a virtual
clock shared by the fake and the client's throttle, so no test sleeps to let
time pass.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from fake_kraken import (
    API_KEY,
    API_SECRET,
    FakeKraken,
    Fault,
    kraken_signature,
)
from fake_venue import VirtualClock, VirtualThrottle
from prometheus_client import REGISTRY

from connectors.errors import (
    ClockRejected,
    DuplicateOrder,
    OrderNotFound,
    OrderRuleViolation,
    OutcomeUnknown,
    VenueRejected,
)
from connectors.kraken.private import Tier
from connectors.kraken.signing import KrakenCredentials, NonceSource
from connectors.kraken.trading import KrakenTrading
from connectors.rest_metrics import init_rest_metrics
from connectors.trading import TradingVenue, venue_client_order_id

pytestmark = pytest.mark.integration

D = Decimal
FAST = Tier(rest_capacity=20, rest_decay_per_s=1.0, order_capacity=180, order_decay_per_s=3.75)


def cid(name: str) -> str:
    return venue_client_order_id(f"request-{name}", 0, "uuid36")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1000.0)  # small: at 1.8e9 a float cannot add the throttle's tiny waits


@pytest.fixture
async def fake(clock: VirtualClock) -> AsyncIterator[FakeKraken]:
    async with FakeKraken(clock=clock) as server:
        yield server


def connect(fake: FakeKraken, clock: VirtualClock | None = None, **options: Any) -> KrakenTrading:
    options.setdefault("credentials", KrakenCredentials(API_KEY, API_SECRET))
    options.setdefault("symbols", ["BTC-USD", "BTC-USDT", "ETH-USD"])
    options.setdefault("request_timeout_s", 2.0)
    options.setdefault("tier", FAST)
    if clock is not None:
        options.setdefault("throttle", VirtualThrottle(clock, "kraken"))
    return KrakenTrading(rest_url=fake.rest_url, **options)


# --- configuration ---------------------------------------------------------------------------------


def test_the_client_implements_the_trading_seam_and_refuses_a_testnet() -> None:
    kraken: TradingVenue = KrakenTrading(credentials=None, symbols=["BTC-USD"])
    assert (kraken.venue, kraken.client_id_style, kraken.acceptance_window_ms) == ("kraken", "uuid36", 6000)
    with pytest.raises(ValueError, match="kraken has no spot sandbox"):
        KrakenTrading(credentials=None, symbols=["BTC-USD"], testnet=True)
    with pytest.raises(ValueError, match=r"deadline_s must be in \(0, 60\]"):
        KrakenTrading(credentials=None, symbols=["BTC-USD"], deadline_s=61)


# --- signing, nonces and the deadline ----------------------------------------------------------------


def test_the_fake_verifies_signatures_as_the_docs_test_vector_computes_them() -> None:
    # docs.kraken.com/api/docs/guides/spot-rest-auth; the client's check: tests/unit/test_kraken_signing.py
    secret = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
    body = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    expected = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    assert kraken_signature(secret, "/0/private/AddOrder", body, "1616492376594") == expected


async def test_an_order_is_signed_ioc_with_our_client_id_fees_in_quote_and_a_deadline(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10):
        kraken = connect(fake, clock, deadline_s=5)
        report = await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("signed"))
        await kraken.close()
    [placed] = fake.requests_to("AddOrder")
    params = placed.params
    assert {k: params[k] for k in ("ordertype", "type", "pair", "timeinforce", "oflags", "cl_ord_id")} == {
        "ordertype": "limit",
        "type": "buy",
        "pair": "XBTUSD",
        "timeinforce": "IOC",
        "oflags": "fciq",
        "cl_ord_id": cid("signed"),
    }
    assert (params["volume"], params["price"]) == ("0.1", "64001")
    ahead_ms = datetime.fromisoformat(params["deadline"]).timestamp() * 1000 - fake.server_ms()
    assert 3000 < ahead_ms <= kraken.acceptance_window_ms and params["deadline"].endswith("Z")
    assert placed.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert fake.nonces == sorted(set(fake.nonces)) and len(fake.nonces) == len(fake.signatures)
    assert report.client_order_id == cid("signed") and report.status == "closed"


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        (KrakenCredentials(API_KEY, "bm90LXRoZS1zZWNyZXQ="), "EAPI:Invalid signature"),
        (KrakenCredentials("another-key", API_SECRET), "EAPI:Invalid key"),
    ],
)
async def test_a_wrong_secret_or_key_is_refused_and_nothing_executes(
    fake: FakeKraken, clock: VirtualClock, credentials: KrakenCredentials, code: str
) -> None:
    async with asyncio.timeout(10):
        kraken = connect(fake, clock, credentials=credentials)
        with pytest.raises(VenueRejected) as caught:
            await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("bad-auth"))
        await kraken.close()
    assert caught.value.code == code
    assert fake.executions == {}
    assert_clean(caught.value, fake)


async def test_a_nonce_below_the_last_accepted_is_a_clock_rejection_and_a_restart_resumes(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10):
        first = connect(fake, clock)
        await first.balances()
        await first.close()
        stale = connect(fake, clock, nonces=NonceSource(lambda: 1000))  # a clock far behind
        with pytest.raises(ClockRejected) as caught:
            await stale.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("stale-nonce"))
        await stale.close()
        restarted = connect(fake, clock)  # the default microsecond nonce starts above everything sent
        await restarted.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("after-restart"))
        await restarted.close()
    assert caught.value.code == "EAPI:Invalid nonce"
    assert fake.executions == {cid("after-restart"): 1}


async def test_the_deadline_follows_the_venue_clock_measured_at_start(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    fake.skew_ms = 30_000  # a deadline on our clock would have elapsed on arrival
    async with asyncio.timeout(10):
        kraken = connect(fake, clock)
        report = await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("skewed"))
        await kraken.close()
    assert abs(kraken.clock.now_ms() - fake.server_ms()) < 1500
    assert report.status == "closed" and fake.executions == {cid("skewed"): 1}


# --- the trading surface ---------------------------------------------------------------------------


async def test_rules_come_from_asset_pairs(fake: FakeKraken, clock: VirtualClock) -> None:
    async with asyncio.timeout(10):
        kraken = connect(fake, clock)
        btc = await kraken.symbol_rules("BTC-USD")
        usdt = await kraken.symbol_rules("BTC-USDT")
        eth = await kraken.symbol_rules("ETH-USD")
        with pytest.raises(OrderRuleViolation, match="does not list DOGE-USD"):
            await kraken.symbol_rules("DOGE-USD")
        with pytest.raises(OrderRuleViolation, match="36-character UUID"):
            await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), "not-a-uuid")
        await kraken.close()
    assert (btc.venue_symbol, btc.base_asset, btc.quote_asset, btc.tradable) == ("XBTUSD", "BTC", "USD", True)
    assert (btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == (
        D("0.1"),
        D("1E-8"),
        D("0.0001"),
        D("0.5"),
    )
    assert (usdt.venue_symbol, usdt.quote_asset) == ("XBTUSDT", "USDT")
    assert eth.tradable is False  # cancel_only
    assert fake.requests_to("AddOrder") == []


async def test_an_ioc_fill_is_reported_with_exact_fills_fees_and_balances(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10):
        kraken = connect(fake, clock)
        report = await kraken.place_order("BTC-USD", "buy", D("1"), D("64010"), cid("fill"))
        fills = await kraken.order_trades("BTC-USD", report)
        balances = await kraken.balances()
        fee_bps = await kraken.taker_fee_bps("BTC-USD")
        await kraken.close()
    assert (report.status, report.is_open, report.side) == ("closed", False, "buy")
    assert (report.executed_qty, report.cumulative_quote_qty, report.price) == (
        D(1),
        D("64002.4"),
        D("64010"),
    )
    assert report.average_price == D("64002.4") and report.venue_order_id.startswith("O")
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in fills] == [
        (D("64000.5"), D("0.8"), D("133.12104"), "USD"),  # 0.26 % of 51200.4
        (D("64010.0"), D("0.2"), D("33.28520"), "USD"),  # 0.26 % of 12802
    ]
    assert balances["BTC"].free == D("2.5") and balances["USD"].free == D("100000") - D("64002.4") - D(
        "166.40624"
    )
    assert "XBT.F" not in balances and "BTC.F" not in balances  # earn balances are not spot
    assert fee_bps == D(26)


async def test_an_ioc_sell_without_liquidity_within_its_limit_is_closed_unfilled(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10):
        kraken = connect(fake, clock)
        report = await kraken.place_order("BTC-USD", "sell", D("0.5"), D("65000"), cid("no-fill"))
        fills = await kraken.order_trades("BTC-USD", report)
        await kraken.close()
    assert (report.status, report.is_open, report.executed_qty, report.average_price) == (
        "canceled",
        False,
        D(0),
        None,
    )
    assert fills == ()


async def test_open_orders_are_listed_and_cancelled_by_client_id(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    fake.rest_order("XXBTZUSD", "buy", "63000.0", "0.5", cid("resting"))
    fake.rest_order("XBTUSDT", "sell", "70000.0", "0.1", cid("resting-usdt"))
    async with asyncio.timeout(10):
        kraken = connect(fake, clock, symbols=["BTC-USD"])
        listed = await kraken.open_orders()
        held = (await kraken.balances())["USD"]
        cancelled = await kraken.cancel_order("BTC-USD", cid("resting"))
        with pytest.raises(OrderNotFound):
            await kraken.cancel_order("BTC-USD", cid("resting"))
        await kraken.close()
    assert [(o.client_order_id, o.symbol, o.is_open) for o in listed] == [(cid("resting"), "BTC-USD", True)]
    assert (held.locked, held.total) == (D("31500"), D("100000"))
    assert (cancelled.status, cancelled.is_open) == ("canceled", False)


async def test_a_client_id_is_unique_only_among_open_orders_so_a_resend_would_execute_twice(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    fake.rest_order("XXBTZUSD", "buy", "63000.0", "0.5", cid("same"))
    async with asyncio.timeout(10):
        kraken = connect(fake, clock)
        with pytest.raises(DuplicateOrder):
            await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("same"))
        await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("ioc"))
        # The IOC order closed at once: Kraken takes its id again, and a blind re-send trades again.
        again = await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("ioc"))
        latest = await kraken.query_order("BTC-USD", cid("ioc"))
        await kraken.close()
    assert fake.executions[cid("ioc")] == 2
    assert latest.venue_order_id == again.venue_order_id  # a query answers with the latest order


# --- unknown outcomes: settled by a query, never re-sent ------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        "accept_then_5xx",
        "accept_then_drop",
        "accept_then_hang",
        "accept_then_unavailable",
        "accept_then_busy",
        "accept_then_internal",
    ],
)
async def test_an_ambiguous_answer_is_outcome_unknown_and_the_query_finds_the_one_execution(
    fake: FakeKraken, clock: VirtualClock, fault: Fault
) -> None:
    fake.inject("AddOrder", fault)
    async with asyncio.timeout(10):
        kraken = connect(fake, clock, request_timeout_s=0.5)
        with pytest.raises(OutcomeUnknown) as caught:
            await kraken.place_order("BTC-USD", "buy", D("0.5"), D("64001"), cid(fault))
        settled = await kraken.query_order("BTC-USD", cid(fault))
        await kraken.close()
    assert (settled.status, settled.executed_qty, settled.client_order_id) == ("closed", D("0.5"), cid(fault))
    assert fake.executions == {cid(fault): 1} and len(fake.requests_to("AddOrder")) == 1
    assert_clean(caught.value, fake)


@pytest.mark.parametrize("fault", ["unavailable", "garbage"])
async def test_an_ambiguous_answer_without_execution_is_not_found_by_the_query(
    fake: FakeKraken, clock: VirtualClock, fault: Fault
) -> None:
    fake.inject("AddOrder", fault)
    async with asyncio.timeout(10):
        kraken = connect(fake, clock)
        with pytest.raises(OutcomeUnknown):
            await kraken.place_order("BTC-USD", "buy", D("0.5"), D("64001"), cid(fault))
        with pytest.raises(OrderNotFound):
            await kraken.query_order("BTC-USD", cid(fault))
        await kraken.close()
    assert fake.executions == {} and len(fake.requests_to("AddOrder")) == 1


async def test_an_order_accepted_late_is_not_found_before_the_window_and_found_after(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    fake.late_s = 0.3
    fake.inject("AddOrder", "accept_late")
    async with asyncio.timeout(10):
        kraken = connect(fake, clock, deadline_s=5)
        with pytest.raises(OutcomeUnknown):
            await kraken.place_order("BTC-USD", "buy", D("0.5"), D("64001"), cid("late"))
        with pytest.raises(OrderNotFound):  # not final: the deadline has not passed
            await kraken.query_order("BTC-USD", cid("late"))
        await fake.late_decided.wait()
        found = await kraken.query_order("BTC-USD", cid("late"))
        await kraken.close()
    assert found.executed_qty == D("0.5") and fake.executions == {cid("late"): 1}


async def test_an_order_reaching_the_engine_after_its_deadline_never_executes(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    fake.late_s = 1.6  # longer than the acceptance window: deadline 0.5 s + 1 s clock resolution
    fake.inject("AddOrder", "accept_late")
    async with asyncio.timeout(10):
        kraken = connect(fake, clock, deadline_s=0.5)
        with pytest.raises(OutcomeUnknown):
            await kraken.place_order("BTC-USD", "buy", D("0.5"), D("64001"), cid("too-late"))
        await fake.late_decided.wait()  # the engine refused it: "EService:Deadline elapsed"
        with pytest.raises(OrderNotFound):  # final: the acceptance window (deadline + 1 s) has passed
            await kraken.query_order("BTC-USD", cid("too-late"))
        await kraken.close()
    assert kraken.acceptance_window_ms == 1500 and fake.executions == {}


async def test_an_acknowledged_order_shown_late_is_read_within_the_window(clock: VirtualClock) -> None:
    async with asyncio.timeout(10), FakeKraken(clock=clock, visible_after_s=1.0) as fake:
        kraken = connect(fake, clock)
        report = await kraken.place_order("BTC-USD", "buy", D("0.5"), D("64001"), cid("shown-late"))
        await kraken.close()
    assert report.executed_qty == D("0.5") and fake.executions == {cid("shown-late"): 1}
    assert len(fake.requests_to("AddOrder")) == 1 and len(fake.requests_to("ClosedOrders")) > 1


async def test_an_acknowledged_order_invisible_for_the_whole_window_is_outcome_unknown(
    clock: VirtualClock,
) -> None:
    async with asyncio.timeout(10), FakeKraken(clock=clock, visible_after_s=30.0) as fake:
        kraken = connect(fake, clock, deadline_s=2)
        with pytest.raises(OutcomeUnknown, match="not visible yet"):
            await kraken.place_order("BTC-USD", "buy", D("0.5"), D("64001"), cid("invisible"))
        await clock.sleep(30)
        found = await kraken.query_order("BTC-USD", cid("invisible"))
        await kraken.close()
    assert found.executed_qty == D("0.5")
    assert fake.executions == {cid("invisible"): 1} and len(fake.requests_to("AddOrder")) == 1


def assert_clean(error: BaseException, fake: FakeKraken) -> None:
    """No key, secret or signature in the error's text, nor in anything chained to it."""
    current: BaseException | None = error
    while current is not None:
        text = f"{current} {current!r}"
        assert API_SECRET not in text and API_KEY not in text
        assert not any(sig in text for sig in fake.signatures if sig)
        current = current.__cause__ or current.__context__


def test_client_ids_are_the_seams_uuids() -> None:
    assert str(uuid.UUID(cid("x"))) == cid("x") and len(cid("x")) == 36


def setup_module() -> None:
    init_rest_metrics("kraken")


async def test_a_clock_jump_is_refused_as_deadline_elapsed_and_the_next_order_measures_again(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    before = REGISTRY.get_sample_value(
        "smartroute_clock_syncs_total", {"venue": "kraken", "reason": "rejected"}
    )
    async with asyncio.timeout(10), connect(fake, clock) as kraken:
        fake.skew_ms = 30_000  # the venue's clock jumps ahead after we measured it
        with pytest.raises(VenueRejected) as caught:
            await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("jumped"))
        report = await kraken.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("resynced"))
    after = REGISTRY.get_sample_value(
        "smartroute_clock_syncs_total", {"venue": "kraken", "reason": "rejected"}
    )
    assert caught.value.code == "EService:Deadline elapsed"
    assert report.status == "closed" and fake.executions == {cid("resynced"): 1}
    assert (after or 0) == (before or 0) + 1


async def test_an_order_whose_trades_are_not_listed_yet_is_one_fill_with_its_exact_totals(
    fake: FakeKraken, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as kraken:
        report = await kraken.place_order("BTC-USD", "sell", D("2"), D("63990"), cid("unlisted"))
        fake.list_trades = False
        fills = await kraken.order_trades("BTC-USD", report)
    assert [(f.trade_id, f.price, f.quantity, f.fee, f.fee_asset) for f in fills] == [
        (report.venue_order_id, D("63997.5"), D(2), D("332.78700"), "USD")  # 249.6 + 83.187: 0.26 % a level
    ]
