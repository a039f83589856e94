"""BybitTrading against a fake Bybit v5 server that enforces the documented rules (fake_bybit.py).

Signatures, timestamps, orderLinkId uniqueness, per-endpoint limits and bans are
checked by the fake. The client's venue clock, throttles and pauses run on the
fake's VirtualClock, so no test sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest
from fake_bybit import API_KEY, API_SECRET, FakeBybit, Fault, VirtualClock
from venue_helpers import bybit_client as connect

from connectors.bybit.signing import BybitCredentials
from connectors.bybit.trading_errors import AcknowledgedNotVisible
from connectors.bybit.transport import DEMO_REST_URL, TESTNET_REST_URL, rest_url_for
from connectors.errors import (
    DuplicateOrder,
    OrderNotFound,
    OrderRuleViolation,
    OutcomeUnknown,
    VenueRejected,
)
from connectors.trading import venue_client_order_id

pytestmark = pytest.mark.integration

D = Decimal
CREATE = ("POST", "/v5/order/create")
# The pinned vector of tests/unit/test_bybit_signing.py: the fake must check exactly these bytes.
PIN_KEY, PIN_SECRET = "fake-bybit-key-0123", "fake-bybit-secret-abcdefghij"
PIN_STRING = (
    '1800000000000fake-bybit-key-01235000{"category":"spot","symbol":"BTCUSDT","side":"Buy",'
    '"orderType":"Limit","qty":"0.1","price":"64001","timeInForce":"IOC",'
    '"orderLinkId":"0f1e2d3c4b5a49687766554433221100"}'
)
PIN_SIGNATURE = "ff8f9be09dd7e50b8f14ad9c873503ecb3273a25cbfe46aed5c8078f5caef941"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def fake(clock: VirtualClock) -> AsyncIterator[FakeBybit]:
    async with FakeBybit(clock=clock) as server:
        yield server


def cid(n: int | str) -> str:
    return venue_client_order_id(f"req-{n}", 0, "hex32")


# --- signing -----------------------------------------------------------------------------------


def test_the_fake_checks_exactly_the_bytes_of_the_pinned_vector() -> None:
    fake = FakeBybit(api_key=PIN_KEY, api_secret=PIN_SECRET)
    assert fake.signature_valid(PIN_STRING, PIN_SIGNATURE)
    assert not fake.signature_valid(PIN_STRING.replace('"qty":"0.1"', '"qty":"0.10"'), PIN_SIGNATURE)
    assert not fake.signature_valid(PIN_STRING.replace("5000", "5001", 1), PIN_SIGNATURE)


async def test_an_order_is_a_signed_ioc_limit_with_our_order_link_id(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        assert bybit.acceptance_window_ms == 5000 and bybit.client_id_style == "hex32"
        report = await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(1))
    [sent] = fake.requests_to(*CREATE)
    assert orjson.loads(sent.body) == {
        "category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.1",
        "price": "64001", "timeInForce": "IOC", "orderLinkId": cid(1),
    }  # fmt: skip
    assert sent.headers["X-BAPI-RECV-WINDOW"] == "5000" and sent.headers["X-BAPI-API-KEY"] == API_KEY
    signed = sent.headers["X-BAPI-TIMESTAMP"] + API_KEY + "5000" + sent.body
    assert fake.signature_valid(signed, sent.headers["X-BAPI-SIGN"])
    assert (report.status, report.client_order_id, report.executed_qty) == ("Filled", cid(1), D("0.1"))
    assert fake.executed == {cid(1): 1}


async def test_a_wrong_secret_is_refused_as_a_bad_signature_and_nothing_executes(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    bybit = connect(fake, clock, credentials=BybitCredentials(API_KEY, "not-the-secret"))
    async with asyncio.timeout(10), bybit:
        with pytest.raises(VenueRejected) as caught:
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(2))
    assert caught.value.code == 10004 and fake.executed == {}
    assert_clean(caught.value, "not-the-secret")


async def test_an_unknown_api_key_is_refused_and_nothing_executes(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with (
        asyncio.timeout(10),
        connect(fake, clock, credentials=BybitCredentials("other-key", API_SECRET)) as bybit,
    ):
        with pytest.raises(VenueRejected) as caught:
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(15))
    assert caught.value.code == 10003 and fake.executed == {}


async def test_the_configured_recv_window_is_sent_and_is_the_acceptance_window(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock, recv_window_ms=1500) as bybit:
        await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(16))
        fake.skew_ms = 2_000  # our timestamps now arrive 2 s old: inside 5 s, outside 1.5 s
        await bybit.balances()
    assert bybit.acceptance_window_ms == 1500
    assert {seen.headers["X-BAPI-RECV-WINDOW"] for seen in fake.requests if seen.headers} == {"1500"}
    assert len(fake.requests_to("GET", "/v5/account/wallet-balance")) == 2  # refused once (10002), resynced


def test_the_hosts_are_production_testnet_and_demo() -> None:
    assert rest_url_for(testnet=False, demo=False) == "https://api.bybit.com"
    assert rest_url_for(testnet=True, demo=False) == TESTNET_REST_URL == "https://api-testnet.bybit.com"
    assert rest_url_for(testnet=False, demo=True) == DEMO_REST_URL == "https://api-demo.bybit.com"
    with pytest.raises(ValueError, match="not both"):
        rest_url_for(testnet=True, demo=True)


# --- the trading surface -----------------------------------------------------------------------


async def test_fills_fees_balances_fee_tier_and_rules_are_read_exactly(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        bought = await bybit.place_order("BTC-USDT", "buy", D("1"), D("64010"), cid(3))
        sold = await bybit.place_order("BTC-USDT", "sell", D("0.5"), D("63999.9"), cid(4))
        buy_fills = await bybit.order_trades("BTC-USDT", bought)
        sell_fills = await bybit.order_trades("BTC-USDT", sold)
        balances = await bybit.balances()
        fee_bps = await bybit.taker_fee_bps("BTC-USDT")
        rules = await bybit.symbol_rules("BTC-USDT")
        with pytest.raises(OrderRuleViolation, match="does not list DOGE-USDT"):
            await bybit.symbol_rules("DOGE-USDT")
    assert (bought.status, bought.executed_qty, bought.cumulative_quote_qty) == ("Filled", D(1), D("64002.4"))
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in buy_fills] == [
        (D("64000.5"), D("0.8"), D("0.0008"), "BTC"),  # a buyer pays in the base asset
        (D("64010"), D("0.2"), D("0.0002"), "BTC"),
    ]
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in sell_fills] == [
        (D(64000), D("0.5"), D(32), "USDT")
    ]
    assert balances["BTC"].free == D(2) + D(1) - D("0.001") - D("0.5")
    assert balances["USDT"].free == D(200_000) - D("64002.4") + D(32000) - D(32)
    assert fee_bps == D(10)
    assert (rules.tick_size, rules.step_size, rules.min_qty, rules.min_notional, rules.max_qty) == (
        D("0.1"), D("0.000001"), D("0.000011"), D(5), D(83),
    )  # fmt: skip


async def test_an_ioc_order_that_cannot_fill_is_final_with_nothing_executed(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        report = await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("63000"), cid(5))
        fills = await bybit.order_trades("BTC-USDT", report)
    assert (report.status, report.is_open, report.executed_qty, report.average_price) == (
        "Cancelled",
        False,
        0,
        None,
    )
    assert fills == ()


async def test_a_query_finds_the_order_in_history_after_a_venue_restart(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        await bybit.place_order("ETH-USDT", "sell", D("1"), D("3000"), cid(6))
        fake.restart()  # realtime no longer lists closed orders
        report = await bybit.query_order("ETH-USDT", cid(6))
        with pytest.raises(OrderNotFound):
            await bybit.query_order("ETH-USDT", cid("never-sent"))
    assert (report.symbol, report.side, report.status, report.executed_qty) == (
        "ETH-USDT",
        "sell",
        "Filled",
        D(1),
    )
    assert len(fake.requests_to("GET", "/v5/order/history")) == 2


async def test_open_orders_are_listed_across_pages_and_cancelled_by_order_link_id(
    clock: VirtualClock,
) -> None:
    async with asyncio.timeout(10), FakeBybit(clock=clock, page_size=2) as fake:
        for n, symbol in enumerate(("BTCUSDT", "ETHUSDT", "BTCUSDT", "SOLUSDT")):
            fake.add_open_order(cid(f"open-{n}"), symbol, "Buy", "100", "1")
        async with connect(fake, clock) as bybit:
            listed = await bybit.open_orders()
            cancelled = await bybit.cancel_order("BTC-USDT", cid("open-0"))
            with pytest.raises(OrderNotFound):
                await bybit.cancel_order("BTC-USDT", cid("open-0"))
            after = await bybit.open_orders()
    assert sorted(o.client_order_id for o in listed) == sorted(
        cid(f"open-{n}") for n in range(3)
    )  # not SOLUSDT
    assert len(fake.requests_to("GET", "/v5/order/realtime")) >= 4  # two pages, each signed as sent
    assert (cancelled.status, cancelled.is_open) == ("Cancelled", False)
    assert cid("open-0") not in {o.client_order_id for o in after}


@pytest.mark.parametrize("code", [170141, 110072])
async def test_a_reused_order_link_id_is_a_duplicate_and_never_executes_again(
    clock: VirtualClock, code: int
) -> None:
    async with (
        asyncio.timeout(10),
        FakeBybit(clock=clock, duplicate_code=code) as fake,
        connect(fake, clock) as bybit,
    ):
        await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(7))
        with pytest.raises(DuplicateOrder) as caught:
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(7))
    assert caught.value.code == code and fake.executed == {cid(7): 1}


async def test_bad_orders_are_refused_before_or_by_the_venue(fake: FakeBybit, clock: VirtualClock) -> None:
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        with pytest.raises(OrderRuleViolation, match="orderLinkId"):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "has spaces")
        with pytest.raises(VenueRejected) as caught:
            await bybit.place_order("BTC-USDT", "buy", D("100"), D("64001"), cid(8))
    assert caught.value.code == 170131 and fake.requests_to(*CREATE)[0].params["orderLinkId"] == cid(8)
    assert fake.executed == {}


def assert_clean(error: BaseException, *secrets: str) -> None:
    """No key, secret or signature in the error's text, nor in anything chained to it."""
    current: BaseException | None = error
    while current is not None:
        text = f"{current} {current!r}"
        assert API_SECRET not in text and API_KEY not in text and "X-BAPI-SIGN" not in text
        assert not any(secret in text for secret in secrets)
        current = current.__cause__ or current.__context__


# --- unknown outcomes: settled by query, never re-sent ----------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        "accept_then_5xx",
        "accept_then_drop",
        "accept_then_hang",
        "accept_then_10000",
        "accept_then_10016",
        "accept_then_170007",
        "accept_then_170146",
        "accept_then_170032",
    ],
)
async def test_an_ambiguous_answer_is_outcome_unknown_and_a_query_finds_the_one_execution(
    fake: FakeBybit, clock: VirtualClock, fault: Fault
) -> None:
    fake.inject(*CREATE, fault)
    async with asyncio.timeout(10), connect(fake, clock, request_timeout_s=0.5) as bybit:
        with pytest.raises(OutcomeUnknown) as caught:
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(9))
        report = await bybit.query_order("BTC-USDT", cid(9))
    assert (report.status, report.executed_qty) == ("Filled", D("0.1"))
    assert fake.executed == {cid(9): 1} and len(fake.requests_to(*CREATE)) == 1
    assert_clean(caught.value)


@pytest.mark.parametrize("fault", ["fail_5xx", "drop"])
async def test_a_lost_order_that_never_executed_is_unknown_then_not_found(
    fake: FakeBybit, clock: VirtualClock, fault: Fault
) -> None:
    fake.inject(*CREATE, fault)
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        with pytest.raises(OutcomeUnknown):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(10))
        with pytest.raises(OrderNotFound):
            await bybit.query_order("BTC-USDT", cid(10))
    assert fake.executed == {} and len(fake.requests_to(*CREATE)) == 1


async def test_an_acknowledged_order_invisible_for_a_while_is_read_once_visible(clock: VirtualClock) -> None:
    async with asyncio.timeout(10), FakeBybit(clock=clock, late_s=1.0) as fake, connect(fake, clock) as bybit:
        fake.inject(*CREATE, "late_visible")
        started = clock()
        report = await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(11))
    assert (report.status, report.executed_qty) == ("Filled", D("0.1")) and clock() - started >= 1.0
    assert fake.executed == {cid(11): 1} and len(fake.requests_to(*CREATE)) == 1


async def test_an_acknowledged_order_that_stays_invisible_is_unknown_never_absent(
    clock: VirtualClock,
) -> None:
    async with (
        asyncio.timeout(10),
        FakeBybit(clock=clock, late_s=60.0) as fake,
        connect(fake, clock) as bybit,
    ):
        fake.inject(*CREATE, "late_visible")
        with pytest.raises(AcknowledgedNotVisible) as caught:
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(12))
        await clock.sleep(60)
        report = await bybit.query_order("BTC-USDT", cid(12))
    assert isinstance(caught.value, OutcomeUnknown) and caught.value.venue_order_id == report.venue_order_id
    assert fake.executed == {cid(12): 1} and len(fake.requests_to(*CREATE)) == 1


async def test_a_lost_answer_is_settled_by_query_when_the_order_shows_late(clock: VirtualClock) -> None:
    async with (
        asyncio.timeout(10),
        FakeBybit(clock=clock, visibility_lag_s=3.0) as fake,
        connect(fake, clock) as bybit,
    ):
        fake.inject(*CREATE, "accept_then_5xx")
        with pytest.raises(OutcomeUnknown):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(13))
        with pytest.raises(OrderNotFound):
            await bybit.query_order("BTC-USDT", cid(13))  # not there yet: no proof of anything
        report = await bybit.settle_order("BTC-USDT", cid(13))
    assert (report.status, report.executed_qty) == ("Filled", D("0.1"))
    assert fake.executed == {cid(13): 1} and len(fake.requests_to(*CREATE)) == 1


async def test_not_found_is_final_only_once_the_recv_window_has_passed(
    fake: FakeBybit, clock: VirtualClock
) -> None:
    fake.inject(*CREATE, "fail_5xx")
    async with asyncio.timeout(10), connect(fake, clock) as bybit:
        with pytest.raises(OutcomeUnknown):
            await bybit.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid(14))
        settling = clock()
        with pytest.raises(OrderNotFound):
            await bybit.settle_order("BTC-USDT", cid(14))
    assert clock() - settling >= (5000 + 1000) / 1000  # recv window + margin on the venue's clock
    assert len(fake.requests_to("GET", "/v5/order/realtime")) > 2
    assert fake.executed == {} and len(fake.requests_to(*CREATE)) == 1
