"""CoinbaseTrading against a fake Advanced Trade REST server that enforces the documented rules.

The fake (fake_coinbase.py) verifies every JWT itself, fills IOC orders against a
book with the taker fee, and counts executions per client order id, so "exactly
once" is `fake.executions[cid] == 1`. Rate-limit windows run on a virtual clock
shared by the fake and the client's throttle, so no test sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import io
import traceback
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fake_coinbase import EC_PRIVATE_PEM, KEY_NAME, FakeCoinbase, Fault
from fake_venue import VirtualClock
from venue_helpers import assert_banned_sends_nothing

from connectors.coinbase import trading as trading_module
from connectors.coinbase.signing import CoinbaseCredentials
from connectors.coinbase.trading import CoinbaseTrading
from connectors.errors import (
    ClockRejected,
    OrderNotFound,
    OrderRuleViolation,
    OutcomeUnknown,
    RateLimited,
    VenueError,
    VenueRejected,
)
from connectors.rest import Throttle
from connectors.trading import venue_client_order_id

pytestmark = pytest.mark.integration

D = Decimal
CREDENTIALS = CoinbaseCredentials(KEY_NAME, EC_PRIVATE_PEM)


def cid(name: str) -> str:
    return venue_client_order_id(f"req-{name}", 0, "uuid36")


@pytest.fixture
async def fake() -> AsyncIterator[FakeCoinbase]:
    async with FakeCoinbase() as server:
        yield server


def connect(fake: FakeCoinbase, **options: Any) -> CoinbaseTrading:
    options.setdefault("request_timeout_s", 2.0)
    options.setdefault("credentials", CREDENTIALS)
    options.setdefault("symbols", ("BTC-USD",))
    return CoinbaseTrading(rest_url=fake.rest_url, **options)


class VirtualThrottle(Throttle):
    """The client's throttle on a VirtualClock, telling the clock what it lets through."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__("coinbase", clock=clock, sleep=clock.sleep)
        self.virtual = clock

    async def acquire(self, name: str | None = None, cost: float = 1.0, *, max_wait_s: float) -> None:
        await super().acquire(name, cost, max_wait_s=max_wait_s)
        self.virtual.sent()


def other_ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def assert_clean(
    error: BaseException, fake: FakeCoinbase, credentials: CoinbaseCredentials = CREDENTIALS
) -> None:
    """No key name, key material or JWT in the error's text, nor in anything chained to it."""
    current: BaseException | None = error
    while current is not None:
        text = f"{current} {current!r} {''.join(traceback.format_exception(current))}"
        assert not any(secret in text for secret in credentials.values())
        assert not any(token in text or token.split(".")[2] in text for token in fake.tokens)
        current = current.__cause__ or current.__context__


# --- signing, clock and the order body -----------------------------------------------------------


async def test_an_order_carries_a_jwt_the_fake_verifies_and_the_documented_ioc_body(
    fake: FakeCoinbase,
) -> None:
    order_id = cid("body")
    async with asyncio.timeout(10), connect(fake) as coinbase:
        report = await coinbase.place_order("BTC-USD", "buy", D("0.5"), D("64001"), order_id)
    [placed] = fake.requests_to("POST", "orders")
    assert orjson.loads(placed.body) == {
        "client_order_id": order_id,
        "product_id": "BTC-USD",
        "side": "BUY",
        "order_configuration": {"sor_limit_ioc": {"base_size": "0.5", "limit_price": "64001"}},
    }
    assert len(order_id) == 36 and fake.auth_failures == []
    assert placed.headers["Authorization"].startswith("Bearer ")
    assert (report.status, report.is_open, report.client_order_id) == ("FILLED", False, order_id)
    assert (report.executed_qty, report.cumulative_quote_qty) == (D("0.5"), D("32000.25"))
    assert fake.executions == {order_id: 1}


async def test_a_wrong_key_is_refused_with_401_and_nothing_is_placed(fake: FakeCoinbase) -> None:
    wrong = CoinbaseCredentials(KEY_NAME, other_ec_pem())
    async with asyncio.timeout(10):
        coinbase = connect(fake, credentials=wrong, symbols=())
        async with coinbase:
            with pytest.raises(VenueRejected) as caught:
                await coinbase.place_order("BTC-USD", "buy", D("0.5"), D("64001"), cid("wrong"))
    assert (caught.value.status, caught.value.code) == (401, "UNAUTHORIZED")
    assert not isinstance(caught.value, ClockRejected)
    assert fake.auth_failures == ["bad signature"] and fake.executions == {}
    assert_clean(caught.value, fake, wrong)


async def test_an_ed25519_key_signs_what_the_fake_verifies() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    credentials = CoinbaseCredentials(KEY_NAME, pem)
    async with (
        asyncio.timeout(10),
        FakeCoinbase(public_key=key.public_key()) as fake,
        connect(fake, credentials=credentials) as coinbase,
    ):
        report = await coinbase.place_order("BTC-USD", "sell", D("0.2"), D("63999"), cid("ed"))
    assert report.status == "FILLED" and fake.auth_failures == []


async def test_a_skewed_venue_clock_is_measured_at_start_so_tokens_are_valid(fake: FakeCoinbase) -> None:
    fake.skew_s = 600.0  # our local nbf/exp would be ten minutes stale
    async with asyncio.timeout(10), connect(fake) as coinbase:
        await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("skew"))
    assert fake.auth_failures == [] and fake.executions == {cid("skew"): 1}


async def test_a_clock_jump_is_resynced_on_401_and_the_refused_order_placed_exactly_once(
    fake: FakeCoinbase,
) -> None:
    async with asyncio.timeout(10), connect(fake) as coinbase:
        fake.skew_s = -600.0  # the venue's clock jumps back: our nbf is in its future
        report = await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("jump"))
    assert report.status == "FILLED"
    assert len(fake.auth_failures) == 1 and fake.auth_failures[0].startswith("outside nbf..exp")
    assert len(fake.requests_to("POST", "orders")) == 2 and fake.executions == {cid("jump"): 1}


# --- the REST surface ------------------------------------------------------------------------------


async def test_fills_carry_price_quantity_and_the_fee_in_the_quote_currency(fake: FakeCoinbase) -> None:
    async with asyncio.timeout(10), connect(fake) as coinbase:
        report = await coinbase.place_order("BTC-USD", "buy", D("1"), D("64010"), cid("fills"))
        fills = await coinbase.order_trades("BTC-USD", report)
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in fills] == [
        (D("64000.5"), D("0.8"), D("307.2024"), "USD"),
        (D("64010"), D("0.2"), D("76.812"), "USD"),
    ]
    assert report.average_price == D("64002.4") and all(f.trade_id and f.time_ms for f in fills)
    assert fake.requests_to("GET", "orders/historical/fills")[0].query == [
        ("order_ids", report.venue_order_id),
        ("limit", "250"),
    ]


async def test_a_venue_that_ignores_the_filters_never_mixes_other_orders_in(fake: FakeCoinbase) -> None:
    fake.ignore_filters = True
    async with asyncio.timeout(10), connect(fake, symbols=("BTC-USD", "ETH-USD")) as coinbase:
        await coinbase.place_order("ETH-USD", "buy", D("1"), D("3000.1"), cid("other"))
        fake.inject("POST", "orders", "rest_open")
        await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("60000"), cid("resting"))
        report = await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("mine"))
        fills = await coinbase.order_trades("BTC-USD", report)
        listed = await coinbase.open_orders()
    assert [(f.price, f.quantity) for f in fills] == [(D("64000.5"), D("0.1"))]
    assert [o.client_order_id for o in listed] == [cid("resting")]


async def test_balances_are_read_across_every_page_and_the_fee_tier_gives_the_taker_fee(
    fake: FakeCoinbase,
) -> None:
    async with asyncio.timeout(10), connect(fake) as coinbase:
        balances = await coinbase.balances()
        fee = await coinbase.taker_fee_bps("BTC-USD")
    assert len(fake.requests_to("GET", "accounts")) == 3  # five accounts, two a page
    assert set(balances) == {"USD", "BTC", "ETH", "USDC", "SOL"}
    assert (balances["USD"].free, balances["USD"].locked, balances["BTC"].total) == (D(100000), D(250), D(2))
    assert fee == D(60)


async def test_symbol_rules_come_from_the_product_and_an_unlisted_one_is_refused(fake: FakeCoinbase) -> None:
    async with asyncio.timeout(10), connect(fake) as coinbase:
        rules = await coinbase.symbol_rules("BTC-USD")
        with pytest.raises(OrderRuleViolation, match="does not list DOGE-USD"):
            await coinbase.symbol_rules("DOGE-USD")
    assert (rules.venue_symbol, rules.base_asset, rules.quote_asset, rules.tradable) == (
        "BTC-USD",
        "BTC",
        "USD",
        True,
    )
    assert (rules.tick_size, rules.step_size, rules.min_notional, rules.max_qty) == (
        D("0.01"),
        D("0.00000001"),
        D(1),
        D(3400),
    )


async def test_a_business_refusal_is_a_definite_reject_with_the_venues_reason(fake: FakeCoinbase) -> None:
    async with asyncio.timeout(10), connect(fake) as coinbase:
        with pytest.raises(VenueRejected) as caught:
            await coinbase.place_order("BTC-USD", "buy", D("5"), D("64010"), cid("broke"))
    assert (caught.value.code, caught.value.status) == ("INSUFFICIENT_FUND", 200)
    assert fake.executions == {}


async def test_a_repeated_client_order_id_creates_nothing_and_returns_the_first_order(
    fake: FakeCoinbase,
) -> None:
    # The documented Coinbase rule, shown on the fake; the client itself never sends an order twice.
    async with asyncio.timeout(10), connect(fake) as coinbase:
        first = await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("twice"))
        again = await coinbase.place_order("BTC-USD", "buy", D("0.3"), D("64001"), cid("twice"))
    assert again.venue_order_id == first.venue_order_id and again.executed_qty == D("0.1")
    assert fake.executions == {cid("twice"): 1} and fake.replays == {cid("twice"): 1}


async def test_a_query_by_client_id_lists_the_products_orders_and_never_uses_the_deprecated_param(
    fake: FakeCoinbase,
) -> None:
    async with asyncio.timeout(10), connect(fake) as coinbase:
        for name in ("a", "b", "c", "d"):
            await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid(name))
    sent_ms = int(fake.server_s() * 1000) - 5000
    fresh = connect(fake)  # a restarted process: it remembers no send and no order id
    async with asyncio.timeout(10), fresh:
        found = await fresh.query_order("BTC-USD", cid("a"))
        with pytest.raises(OrderNotFound, match="listed for BTC-USD ever"):
            await fresh.query_order("BTC-USD", cid("never-sent"))
        with pytest.raises(OrderNotFound, match="since"):
            await fresh.query_order("BTC-USD", cid("never-sent-either"), since_ms=sent_ms)
    assert (found.client_order_id, found.status, found.executed_qty) == (cid("a"), "FILLED", D("0.1"))
    listed = fake.requests_to("GET", "orders/historical/batch")
    assert len(listed) == 3 * 2  # four orders, two a page: the oldest is on the second page
    assert all(("product_ids", "BTC-USD") in seen.query for seen in listed)
    assert ["start_date" in dict(seen.query) for seen in listed] == [False] * 4 + [True] * 2
    assert not any(key == "client_order_id" for seen in fake.requests for key, _ in seen.query)
    assert sum(fake.executions.values()) == 4


async def test_a_listing_too_long_to_read_fails_instead_of_answering_not_found(
    fake: FakeCoinbase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trading_module, "MAX_PAGES", 1)
    async with asyncio.timeout(10), connect(fake) as coinbase:
        for name in ("a", "b", "c"):
            await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid(name))
        fresh = connect(fake)
        async with fresh:
            with pytest.raises(VenueError, match="incomplete") as caught:
                await fresh.query_order("BTC-USD", cid("never-sent"))
    assert not isinstance(caught.value, OrderNotFound)


async def test_the_clock_is_measured_again_after_the_sync_interval(fake: FakeCoinbase) -> None:
    async with asyncio.timeout(10), connect(fake, clock_sync_interval_s=0.0, symbols=()) as coinbase:
        await coinbase.taker_fee_bps("BTC-USD")
        await coinbase.balances()
    assert len(fake.requests_to("GET", "time")) == 1 + 1 + 3  # at start, then before each signed request


def test_testnet_is_the_static_sandbox_and_production_the_default() -> None:
    assert CoinbaseTrading(credentials=None, testnet=True).rest.session.base_url == (
        "https://api-sandbox.coinbase.com"
    )
    assert CoinbaseTrading(credentials=None).rest.session.base_url == "https://api.coinbase.com"


async def test_an_order_found_open_is_listed_and_cancelled_once(fake: FakeCoinbase) -> None:
    fake.inject("POST", "orders", "rest_open")
    async with asyncio.timeout(10), connect(fake) as coinbase:
        placed = await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("60000"), cid("open"))
        listed = await coinbase.open_orders()
        cancelled = await coinbase.cancel_order("BTC-USD", cid("open"))
        with pytest.raises(OrderNotFound):
            await coinbase.cancel_order("BTC-USD", cid("open"))
    assert placed.is_open and [o.client_order_id for o in listed] == [cid("open")]
    assert (cancelled.status, cancelled.is_open) == ("CANCELLED", False)
    assert ("order_status", "OPEN") in fake.requests_to("GET", "orders/historical/batch")[0].query


# --- unknown outcomes: settled by query, never by sending again -------------------------------------


@pytest.mark.parametrize(
    ("fault", "executed"),
    [
        ("accept_then_5xx", 1),
        ("accept_then_drop", 1),
        ("accept_then_hang", 1),
        ("accept_then_unknown", 1),
        ("fail_5xx", 0),
        ("drop", 0),
        ("unknown_failure", 0),
        ("garbage", 0),
    ],
)
async def test_an_ambiguous_answer_is_outcome_unknown_and_a_query_settles_it_without_resending(
    fake: FakeCoinbase, fault: Fault, executed: int
) -> None:
    order_id = cid(fault)
    fake.inject("POST", "orders", fault)
    async with asyncio.timeout(10), connect(fake, request_timeout_s=0.5) as coinbase:
        with pytest.raises(OutcomeUnknown) as caught:
            await coinbase.place_order("BTC-USD", "buy", D("0.5"), D("64001"), order_id)
        if executed:
            report = await coinbase.query_order("BTC-USD", order_id)
            assert (report.status, report.executed_qty, report.client_order_id) == (
                "FILLED",
                D("0.5"),
                order_id,
            )
        else:
            with pytest.raises(OrderNotFound):
                await coinbase.query_order("BTC-USD", order_id)
    assert len(fake.requests_to("POST", "orders")) == 1  # never sent again
    assert fake.executions[order_id] == executed and fake.replays == {}
    assert_clean(caught.value, fake)


async def test_a_late_visible_order_is_not_found_within_the_window_then_found_once(
    fake: FakeCoinbase,
) -> None:
    order_id = cid("late-visible")
    fake.visibility_lag = 2  # the new order is missing from its first two queries
    fake.inject("POST", "orders", "accept_then_5xx")
    async with asyncio.timeout(10), connect(fake) as coinbase:
        with pytest.raises(OutcomeUnknown):
            await coinbase.place_order("BTC-USD", "buy", D("0.5"), D("64001"), order_id)
        sent_at = fake.server_s()
        for _ in range(2):
            with pytest.raises(OrderNotFound):  # not final: the acceptance window is still open
                await coinbase.query_order("BTC-USD", order_id)
        assert (fake.server_s() - sent_at) * 1000 < coinbase.acceptance_window_ms
        report = await coinbase.query_order("BTC-USD", order_id)
    assert report.status == "FILLED" and fake.executions[order_id] == 1
    assert len(fake.requests_to("POST", "orders")) == 1


async def test_an_order_that_reaches_the_venue_within_its_jwt_life_executes_once_and_is_found(
    fake: FakeCoinbase,
) -> None:
    order_id = cid("late-in-time")
    fake.inject("POST", "orders", "accept_late")
    async with asyncio.timeout(10), connect(fake) as coinbase:
        with pytest.raises(OutcomeUnknown):
            await coinbase.place_order("BTC-USD", "buy", D("0.5"), D("64001"), order_id)
        with pytest.raises(OrderNotFound):  # before the window ends "not found" proves nothing ...
            await coinbase.query_order("BTC-USD", order_id)
        fake.process_late()  # ... the order still arrives within its token's 120 s
        report = await coinbase.query_order("BTC-USD", order_id)
    assert report.status == "FILLED" and fake.executions[order_id] == 1


async def test_after_the_jwt_life_a_late_order_can_no_longer_execute_so_not_found_is_final(
    fake: FakeCoinbase,
) -> None:
    order_id = cid("late-expired")
    fake.inject("POST", "orders", "accept_late")
    async with asyncio.timeout(10), connect(fake) as coinbase:
        assert coinbase.acceptance_window_ms == 121_000  # the JWT's 120 s plus the clock margin
        with pytest.raises(OutcomeUnknown):
            await coinbase.place_order("BTC-USD", "buy", D("0.5"), D("64001"), order_id)
        fake.skew_s += coinbase.acceptance_window_ms / 1000  # the window passes
        fake.process_late()
        with pytest.raises(OrderNotFound):
            await coinbase.query_order("BTC-USD", order_id)
    assert fake.expired_late == [order_id] and fake.executions[order_id] == 0
    assert len(fake.requests_to("POST", "orders")) == 1


# --- rate limits -----------------------------------------------------------------------------------


async def test_the_venues_remaining_count_paces_requests_without_a_429() -> None:
    clock = VirtualClock()
    async with asyncio.timeout(20), FakeCoinbase(clock=clock, requests_per_s=4) as fake:
        coinbase = connect(fake, throttle=VirtualThrottle(clock))
        async with coinbase:
            started = clock()
            for _ in range(6):
                await coinbase.balances()  # three pages each: 18 requests at 4 a second
    assert fake.statuses[429] == 0 and fake.violations == []
    assert clock() - started >= 3


async def test_no_request_is_sent_before_retry_after_and_an_order_is_refused_unsent() -> None:
    clock = VirtualClock()
    async with asyncio.timeout(20), FakeCoinbase(clock=clock, retry_after_s=7) as fake:
        coinbase = connect(fake, throttle=VirtualThrottle(clock))
        async with coinbase:
            fake.inject("GET", "accounts", "429")
            with pytest.raises(RateLimited) as caught:
                await coinbase.balances()
            limited_at = clock()
            with pytest.raises(RateLimited, match="not sent"):  # an order never waits 7 s for its turn
                await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("limited"))
            await coinbase.balances()
    assert caught.value.retry_after_s == 7
    later = [seen.time for seen in fake.requests if seen.time > limited_at]
    assert later and min(later) >= limited_at + 7
    assert fake.violations == [] and fake.executions == {}


async def test_during_a_ban_nothing_leaves_the_process(fake: FakeCoinbase) -> None:
    # Coinbase documents no ban signal; a ban set on the throttle still stops every request.
    async with asyncio.timeout(10), connect(fake) as coinbase:
        coinbase.rest.throttle.ban(600, reason="operator")
        await assert_banned_sends_nothing(coinbase, fake.requests, "BTC-USD", D("0.1"), cid("banned"))


# --- secrets ---------------------------------------------------------------------------------------


async def test_canary_credentials_appear_in_no_log_exception_or_repr(
    fake: FakeCoinbase, captured_logs: io.StringIO
) -> None:
    texts: list[str] = []
    wrong = CoinbaseCredentials(KEY_NAME, other_ec_pem())
    async with asyncio.timeout(20), connect(fake, request_timeout_s=0.5) as coinbase:
        await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid("canary-ok"))
        for fault in ("accept_then_5xx", "accept_then_drop", "garbage", "unknown_failure"):
            fake.inject("POST", "orders", fault)
            try:
                await coinbase.place_order("BTC-USD", "buy", D("0.1"), D("64001"), cid(f"canary-{fault}"))
            except OutcomeUnknown as exc:
                texts.append("".join(traceback.format_exception(exc)))
        fake.skew_s = -600.0  # a 401, a resync, a resend
        await coinbase.balances()
        texts += [repr(coinbase), str(coinbase), repr(coinbase.rest), repr(CREDENTIALS)]
    async with asyncio.timeout(10), connect(fake, credentials=wrong, symbols=()) as bad:
        try:
            await bad.balances()
        except VenueRejected as exc:
            texts.append("".join(traceback.format_exception(exc)))
    exposed = captured_logs.getvalue() + "\n".join(texts)
    assert fake.tokens and fake.auth_failures and "coinbase" in exposed
    secrets = [*CREDENTIALS.values(), *wrong.values(), *fake.tokens, *(t.split(".")[2] for t in fake.tokens)]
    assert [s[:12] for s in secrets if s in exposed] == []
