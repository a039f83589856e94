"""OkxTrading against a fake OKX v5 REST server that enforces the documented rules (fake_okx.py).

Signatures, timestamps, expTime, the pending-only clOrdId rule and the per-2-s budgets
are checked by the fake; rate-limit time runs on a virtual clock shared by the fake and
the client's throttle, so no test sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fake_okx import API_KEY, API_SECRET, PASSPHRASE, FakeOkx, Fault
from venue_helpers import metric, okx_client

from connectors.errors import (
    DuplicateOrder,
    OrderNotFound,
    OrderRuleViolation,
    OutcomeUnknown,
    VenueRejected,
    VenueUnreachable,
)
from connectors.okx.signing import OkxCredentials
from connectors.okx.trading import DEMO_REST_URL, PRODUCTION_REST_URL, OkxTrading
from connectors.rest_metrics import init_rest_metrics
from connectors.trading import TradingVenue, venue_client_order_id

pytestmark = pytest.mark.integration

D = Decimal
CREDENTIALS = OkxCredentials(API_KEY, API_SECRET, PASSPHRASE)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOkx]:
    async with FakeOkx() as server:
        yield server


def connect(fake: FakeOkx, **options: Any) -> OkxTrading:
    return okx_client(fake, CREDENTIALS, **options)


def cid(name: str) -> str:
    return venue_client_order_id(name, 0, "hex32")


def test_the_client_is_a_trading_venue_with_hex32_ids_and_an_explicit_window() -> None:
    okx: TradingVenue = OkxTrading(credentials=CREDENTIALS, order_deadline_ms=3000, visibility_margin_ms=2000)
    assert (okx.venue, okx.client_id_style, okx.acceptance_window_ms) == ("okx", "hex32", 5000)
    assert OkxTrading(credentials=None).rest.session.base_url == PRODUCTION_REST_URL
    assert OkxTrading(credentials=None, testnet=True).rest.session.base_url == DEMO_REST_URL
    assert "fake-okx" not in repr(OkxTrading(credentials=CREDENTIALS))


# --- signing --------------------------------------------------------------------------------------


async def test_an_order_is_signed_with_exp_time_and_sent_as_a_cash_ioc_limit(fake: FakeOkx) -> None:
    client_id = cid("signed")
    async with asyncio.timeout(10), connect(fake, order_deadline_ms=4000) as okx:
        report = await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64000.5"), client_id)
    [placed] = fake.requests_to("POST", "trade/order")
    assert orjson.loads(placed.body) == {
        "instId": "BTC-USDT", "tdMode": "cash", "clOrdId": client_id, "side": "buy", "ordType": "ioc",
        "px": "64000.5", "sz": "0.5",
    }  # fmt: skip
    stamp_ms = fake.server_ms()  # the request was signed moments ago
    assert 0 < int(placed.headers["exptime"]) - stamp_ms <= 4000
    assert "x-simulated-trading" not in placed.headers
    assert fake.statuses[401] == 0 and fake.executions == {client_id: 1}
    assert (report.status, report.executed_qty, report.is_open) == ("filled", D("0.5"), False)


async def test_a_wrong_secret_is_refused_as_an_invalid_signature_and_nothing_executes(fake: FakeOkx) -> None:
    okx = connect(fake, credentials=OkxCredentials(API_KEY, "not-the-secret", PASSPHRASE))
    async with asyncio.timeout(10), okx:
        with pytest.raises(VenueRejected) as caught:
            await okx.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid("bad-secret"))
    assert (caught.value.code, caught.value.status) == ("50113", 401)
    assert fake.executions == {}


async def test_a_wrong_passphrase_is_refused(fake: FakeOkx) -> None:
    okx = connect(fake, credentials=OkxCredentials(API_KEY, API_SECRET, "wrong"))
    async with asyncio.timeout(10), okx:
        with pytest.raises(VenueRejected) as caught:
            await okx.balances()
    assert caught.value.code == "50105"


async def test_demo_trading_sends_the_simulated_header_that_demo_keys_require() -> None:
    async with asyncio.timeout(10), FakeOkx(demo=True) as fake:
        async with connect(fake, testnet=True) as okx:
            assert (await okx.balances())["USDT"].free == D(100000)
        async with connect(fake, testnet=False) as live:
            with pytest.raises(VenueRejected) as caught:
                await live.balances()
    assert caught.value.code == "50101"  # "APIKey does not match current environment"
    assert fake.requests_to("GET", "account/balance")[0].headers["x-simulated-trading"] == "1"


async def test_a_query_string_is_signed_as_part_of_the_request_path(fake: FakeOkx) -> None:
    async with asyncio.timeout(10), connect(fake) as okx:
        await okx.taker_fee_bps("BTC-USDT")
    [seen] = fake.requests_to("GET", "account/trade-fee")
    assert seen.query == "instType=SPOT&instId=BTC-USDT" and fake.statuses[401] == 0


# --- clock --------------------------------------------------------------------------------------


async def test_a_skewed_venue_clock_is_measured_at_start(fake: FakeOkx) -> None:
    fake.skew_ms = 45_000  # beyond OKX's 30 s: an unmeasured offset would be refused
    async with asyncio.timeout(10), connect(fake) as okx:
        assert abs(okx.rest.clock.now_ms() - fake.server_ms()) < 1000
        await okx.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid("skewed"))
    assert fake.statuses[401] == 0 and fake.executions == {cid("skewed"): 1}


async def test_a_clock_jump_is_resynced_on_50102_and_the_refused_order_executes_once(fake: FakeOkx) -> None:
    init_rest_metrics("okx")
    before = metric("smartroute_clock_syncs_total", venue="okx", reason="rejected")
    async with asyncio.timeout(10), connect(fake) as okx:
        fake.skew_ms = -40_000  # the venue's clock jumps back after we measured it
        report = await okx.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid("jump"))
    assert report.status == "filled" and fake.statuses[401] == 1  # the one 50102
    assert fake.executions == {cid("jump"): 1} and len(fake.requests_to("POST", "trade/order")) == 2
    assert metric("smartroute_clock_syncs_total", venue="okx", reason="rejected") == before + 1


# --- the REST surface ---------------------------------------------------------------------------


async def test_rules_balances_and_the_taker_fee_are_read_from_the_venue(fake: FakeOkx) -> None:
    async with asyncio.timeout(10), connect(fake) as okx:
        rules = await okx.symbol_rules("BTC-USDT")
        suspended = await okx.symbol_rules("ETH-BTC")
        balances = await okx.balances()
        fee = await okx.taker_fee_bps("BTC-USDT")
        fee_group_2 = await okx.taker_fee_bps("ETH-BTC")
        with pytest.raises(OrderRuleViolation, match="does not list"):
            await okx.symbol_rules("DOGE-USDT")
    assert (rules.tick_size, rules.step_size, rules.min_qty, rules.tradable) == (
        D("0.1"), D("0.00000001"), D("0.00001"), True,
    )  # fmt: skip
    assert (rules.base_asset, rules.quote_asset, suspended.tradable) == ("BTC", "USDT", False)
    assert set(balances) == {"BTC", "ETH", "USDT"} and balances["BTC"].free == D(2)
    # OKX reports a charge as a negative rate: -0.001 is a 10 bps taker fee, -0.0015 is 15 bps.
    assert (fee, fee_group_2) == (D(10), D(15))


async def test_an_ioc_order_reports_its_fills_with_exact_prices_quantities_and_fees(fake: FakeOkx) -> None:
    async with asyncio.timeout(10), connect(fake) as okx:
        bought = await okx.place_order("BTC-USDT", "buy", D("1"), D("64010"), cid("buy"))
        buy_fills = await okx.order_trades("BTC-USDT", bought)
        sold = await okx.place_order("BTC-USDT", "sell", D("2"), D("63995"), cid("sell"))
        sell_fills = await okx.order_trades("BTC-USDT", sold)
        balances = await okx.balances()
    assert (bought.status, bought.executed_qty, bought.cumulative_quote_qty) == ("filled", D(1), D("64002.4"))
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in buy_fills] == [
        (D("64000.5"), D("0.8"), D("0.0008"), "BTC"),  # OKX: fee "-0.0008" (charged, in the base received)
        (D("64010"), D("0.2"), D("0.0002"), "BTC"),
    ]
    assert (sold.status, sold.executed_qty, sold.orig_qty) == ("canceled", D("1.5"), D(2))  # IOC remainder
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in sell_fills] == [
        (D(64000), D("1.5"), D(96), "USDT")
    ]
    assert balances["BTC"].free == D(2) + D("0.999") - D("1.5")
    assert balances["USDT"].free == D(100000) - D("64002.4") + D(96000) - D(96)


async def test_fills_older_than_three_days_are_read_from_the_history_endpoint(fake: FakeOkx) -> None:
    async with asyncio.timeout(10), connect(fake) as okx:
        report = await okx.place_order("BTC-USDT", "buy", D("1"), D("64010"), cid("old"))
        fake.archived.add(report.venue_order_id)
        fills = await okx.order_trades("BTC-USDT", report)
    assert sum(f.quantity for f in fills) == D(1)
    assert len(fake.requests_to("GET", "trade/fills-history")) == 1


async def test_an_order_past_the_query_retention_is_settled_from_the_fills_history(fake: FakeOkx) -> None:
    fake.set_book("ETH-USDT", [("3000", "20")], [("3000.1", "0.5"), ("3000.2", "0.25")])
    async with asyncio.timeout(10), connect(fake) as okx:
        since_ms = fake.server_ms() - 1
        await okx.place_order("ETH-USDT", "buy", D("2"), D("3000.2"), cid("partial-old"))
        await okx.place_order("ETH-USDT", "buy", D("1"), D("2999"), cid("unfilled-old"))
        await okx.place_order("ETH-USDT", "buy", D("0.1"), D("3000.2"), cid("someone-else"))
        fake.forget(cid("partial-old"))
        fake.forget(cid("unfilled-old"))
        with pytest.raises(OrderNotFound):
            await okx.query_order("ETH-USDT", cid("partial-old"))
        partial = await okx.fills_by_client_id("ETH-USDT", cid("partial-old"), since_ms)
        unfilled = await okx.fills_by_client_id("ETH-USDT", cid("unfilled-old"), since_ms)
        later = await okx.fills_by_client_id("ETH-USDT", cid("partial-old"), fake.server_ms() + 1000)
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in partial] == [
        (D("3000.1"), D("0.5"), D("0.0005"), "ETH"),
        (D("3000.2"), D("0.25"), D("0.00025"), "ETH"),
    ]
    assert unfilled == () and later == ()


async def test_orders_are_queried_listed_and_cancelled_by_client_id(fake: FakeOkx) -> None:
    fake.set_book("ETH-USDT", [("3000", "20")], [("3000.1", "0.5")])
    async with asyncio.timeout(10), connect(fake) as okx:
        partial = await okx.place_order("ETH-USDT", "buy", D("2"), D("3000.1"), cid("partial"))
        queried = await okx.query_order("ETH-USDT", cid("partial"))
        with pytest.raises(OrderNotFound):
            await okx.query_order("ETH-USDT", cid("never-sent"))
        with pytest.raises(OrderNotFound):
            await okx.cancel_order("ETH-USDT", cid("partial"))  # terminal: nothing pending to cancel
        assert await okx.open_orders() == []
    assert (partial.status, partial.executed_qty, partial.average_price) == (
        "canceled",
        D("0.5"),
        D("3000.1"),
    )
    assert queried == partial


# --- the pending-only clOrdId rule ----------------------------------------------------------------


async def test_a_terminal_orders_client_id_executes_again_which_is_why_the_client_never_resends(
    fake: FakeOkx,
) -> None:
    client_id = cid("reused")
    async with asyncio.timeout(10), connect(fake) as okx:
        await okx.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), client_id)
        again = await okx.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), client_id)
        latest = await okx.query_order("BTC-USDT", client_id)
    assert fake.executions[client_id] == 2  # OKX takes a reused id once the first order is terminal
    assert latest.venue_order_id == again.venue_order_id  # "only the latest one will be returned"


async def test_a_client_id_of_a_pending_order_is_a_duplicate(fake: FakeOkx) -> None:
    resting = fake._new_order(  # a resting limit order, as a GTC order from elsewhere would be
        {
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "limit",
            "px": "60000",
            "sz": "0.1",
        },
        cid("pending"),
    )
    fake._match(resting)
    fake.orders.append(resting)
    async with asyncio.timeout(10), connect(fake) as okx:
        with pytest.raises(DuplicateOrder) as caught:
            await okx.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), cid("pending"))
        [listed] = await okx.open_orders()
        cancelled = await okx.cancel_order("BTC-USDT", cid("pending"))
    assert caught.value.code == "51016" and fake.executions == {}
    assert (listed.client_order_id, listed.status, listed.is_open) == (cid("pending"), "live", True)
    assert (cancelled.status, cancelled.is_open) == ("canceled", False)


async def test_an_id_okx_would_refuse_is_refused_before_sending(fake: FakeOkx) -> None:
    async with asyncio.timeout(10), connect(fake) as okx:
        with pytest.raises(OrderRuleViolation, match="letters and digits"):
            await okx.place_order(
                "BTC-USDT", "buy", D("0.1"), D("64001"), "293857df-b8a1-4f1c-a03d-ead15719db77"
            )
    assert fake.requests_to("POST", "trade/order") == []


# --- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "quantity", "price", "code"),
    [
        ("BTC-USDT", D("10"), D("64001"), "51008"),  # insufficient USDT balance
        ("BTC-USDT", D("0.1"), D("64000.05"), "51000"),  # off the tick grid
        ("BTC-USDT", D("0.000001"), D("64001"), "51020"),  # below minSz
    ],
)
async def test_a_per_order_refusal_inside_a_200_answer_is_a_venue_rejection(
    fake: FakeOkx, symbol: str, quantity: Decimal, price: Decimal, code: str
) -> None:
    async with asyncio.timeout(10), connect(fake) as okx:
        with pytest.raises(VenueRejected) as caught:
            await okx.place_order(symbol, "buy", quantity, price, cid(f"refused-{code}"))
    assert (caught.value.code, caught.value.status) == (code, 200)
    assert fake.executions == {}


async def test_a_venue_that_refuses_connections_is_unreachable_and_nothing_was_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        okx = OkxTrading(credentials=CREDENTIALS, rest_url=f"http://127.0.0.1:{port}", request_timeout_s=1.0)
        async with asyncio.timeout(10):
            with pytest.raises(VenueUnreachable, match="nothing was sent"):
                await okx.start()
            await okx.close()


UNKNOWN_AFTER_EXECUTING: list[Fault] = [
    "accept_then_hang", "accept_then_5xx", "accept_then_drop", "accept_then_50004", "accept_then_50001",
    "accept_then_50013", "accept_then_50026",
]  # fmt: skip


@pytest.mark.parametrize("fault", UNKNOWN_AFTER_EXECUTING)
async def test_an_order_executed_without_an_answer_is_unknown_and_settled_by_one_query(
    fake: FakeOkx, fault: Fault
) -> None:
    client_id = cid(f"unknown-{fault}")
    fake.inject("POST", "trade/order", fault)
    async with asyncio.timeout(15), connect(fake, request_timeout_s=0.5, backoff_s=0.0) as okx:
        with pytest.raises(OutcomeUnknown) as caught:
            await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), client_id)
        settled = await okx.query_order("BTC-USDT", client_id)
    assert (settled.status, settled.executed_qty) == ("filled", D("0.5"))
    assert fake.executions == {client_id: 1} and len(fake.requests_to("POST", "trade/order")) == 1
    assert_clean(caught.value, fake)


@pytest.mark.parametrize("fault", ["fail_50004", "fail_5xx", "drop"])
async def test_an_order_lost_before_executing_is_unknown_and_the_query_finds_nothing(
    fake: FakeOkx, fault: Fault
) -> None:
    client_id = cid(f"lost-{fault}")
    fake.inject("POST", "trade/order", fault)
    async with asyncio.timeout(10), connect(fake, request_timeout_s=0.5) as okx:
        with pytest.raises(OutcomeUnknown):
            await okx.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), client_id)
        with pytest.raises(OrderNotFound):
            await okx.query_order("BTC-USDT", client_id)
    assert fake.executions == {} and len(fake.requests_to("POST", "trade/order")) == 1


def assert_clean(error: BaseException, fake: FakeOkx) -> None:
    """No key, secret, passphrase or signature in the error's text, nor in anything chained to it."""
    current: BaseException | None = error
    while current is not None:
        text = f"{current} {current!r}"
        assert API_SECRET not in text and API_KEY not in text and PASSPHRASE not in text
        assert not any(sig in text for sig in fake.signatures)
        current = current.__cause__ or current.__context__
