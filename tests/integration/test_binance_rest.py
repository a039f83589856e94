"""BinanceConnector against a fake Binance REST server that enforces the real rules (fake_binance.py).

Signatures, timestamps/recvWindow, weights and bans are checked by the fake;
rate-limit windows run on a virtual clock shared by the fake and the limiter,
so no test sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from Crypto.PublicKey import ECC
from fake_binance import API_KEY, API_SECRET, FakeBinance, Fault, VirtualLimiter, hmac_signature
from fake_venue import VirtualClock
from venue_helpers import metric

from connectors.binance.errors import (
    DuplicateOrder,
    OrderNotFound,
    OutcomeUnknown,
    RateLimited,
    VenueBanned,
    VenueRejected,
    VenueUnreachable,
)
from connectors.binance.filters import SymbolFilters
from connectors.binance.rest import BinanceConnector
from connectors.binance.session import ApiCredentials
from connectors.errors import VenueError

pytestmark = pytest.mark.integration

D = Decimal
# binance-spot-api-docs rest-api.md, "SIGNED Endpoint Examples", HMAC keys (also in test-vectors.json).
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PAYLOAD = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        yield server


def connect(fake: FakeBinance, **options: Any) -> BinanceConnector:
    options.setdefault("request_timeout_s", 2.0)
    options.setdefault("credentials", ApiCredentials(API_KEY, API_SECRET))
    return BinanceConnector(rest_url=fake.rest_url, **options)


# --- signing and the documented vector -------------------------------------------------------------


def test_the_documented_hmac_vector_is_what_the_fake_checks() -> None:
    fake = FakeBinance(api_secret=DOC_SECRET)
    assert hmac_signature(DOC_SECRET, DOC_PAYLOAD) == DOC_SIGNATURE
    assert fake.signature_valid(DOC_PAYLOAD, DOC_SIGNATURE)
    assert fake.signature_valid(DOC_PAYLOAD, DOC_SIGNATURE.upper())  # hex is case-insensitive
    assert not fake.signature_valid(DOC_PAYLOAD.replace("quantity=1", "quantity=2"), DOC_SIGNATURE)


async def test_signed_requests_carry_recv_window_timestamp_and_our_client_order_id(fake: FakeBinance) -> None:
    async with asyncio.timeout(10), connect(fake) as binance:
        await binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "sr0123456789abcdef")
        with pytest.raises(OrderNotFound):
            await binance.cancel_order("BTC-USDT", "sr-not-open")
    [placed] = fake.requests_to("POST", "order")
    assert placed.params["recvWindow"] == "5000"  # not python-binance's 10000
    assert placed.params["newClientOrderId"] == "sr0123456789abcdef"  # never the library's x-HNA2TXFJ id
    assert (placed.params["type"], placed.params["timeInForce"], placed.params["newOrderRespType"]) == (
        "LIMIT",
        "IOC",
        "FULL",
    )
    assert placed.query == "" and placed.body.endswith(f"&signature={fake.signatures[0]}")
    [cancel] = fake.requests_to("DELETE", "order")
    assert cancel.query == "" and "origClientOrderId=sr-not-open" in cancel.body  # DELETE params in the body


async def test_a_wrong_secret_is_refused_as_a_bad_signature_and_nothing_is_placed(fake: FakeBinance) -> None:
    binance = connect(fake, credentials=ApiCredentials(API_KEY, "not-the-secret"))
    async with asyncio.timeout(10), binance:
        with pytest.raises(VenueRejected) as caught:
            await binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "sr-bad-signature")
    assert caught.value.code == -1022
    assert fake.accepted == {}


async def test_an_ed25519_key_signs_what_the_fake_verifies() -> None:
    key = ECC.generate(curve="Ed25519")
    public_pem = key.public_key().export_key(format="PEM")
    async with asyncio.timeout(10), FakeBinance(api_secret=None, ed25519_public_pem=public_pem) as fake:
        credentials = ApiCredentials(API_KEY, private_key=key.export_key(format="PEM"))
        async with connect(fake, credentials=credentials) as binance:
            report = await binance.place_order("BTC-USDT", "sell", D("0.2"), D("63999"), "sr-ed25519")
            assert (await binance.balances())["BTC"].free == D("1.5")
    assert report.status == "FILLED"
    assert len(base64.b64decode(unquote(fake.signatures[0]))) == 64  # an Ed25519 signature


# --- the REST surface ---------------------------------------------------------------------------


async def test_market_data_account_and_rules_map_to_the_projects_types(fake: FakeBinance) -> None:
    async with asyncio.timeout(10), connect(fake) as binance:
        top = await binance.book_ticker("BTC-USDT")
        book = await binance.order_book("BTC-USDT", limit=5)
        ticker = await binance.ticker_24h("BTC-USDT")
        candles = await binance.klines("BTC-USDT", "1m", limit=3)
        balances = await binance.balances()
        rules = await binance.symbol_filters("BTC-USDT")
        with pytest.raises(VenueError, match="does not list DOGE-USDT"):
            await binance.symbol_filters("DOGE-USDT")
    assert (top.venue, top.symbol, top.bid, top.ask, top.ask_qty) == (
        "binance",
        "BTC-USDT",
        D(64000),
        D("64000.5"),
        D("0.8"),
    )
    assert book.asks == ((D("64000.5"), D("0.8")), (D(64010), D(5))) and book.seq == 1027024
    assert (ticker.symbol, ticker.price_change, ticker.trades) == ("BTC-USDT", D("-94.999998"), 76)
    assert [c.open_time_ms for c in candles] == [1499040000000, 1499040060000, 1499040120000]
    assert candles[0].close == D("0.015771") and candles[0].trades == 308
    assert set(balances) == {"BTC", "USDT"} and balances["USDT"].total == D("100250")
    assert isinstance(rules, SymbolFilters) and (rules.tick_size, rules.min_notional) == (D("0.01"), D(5))


async def test_orders_are_placed_queried_listed_and_cancelled(fake: FakeBinance) -> None:
    async with asyncio.timeout(10), connect(fake) as binance:
        filled = await binance.place_order("BTC-USDT", "buy", D("1"), D("64010"), "sr-ioc")
        resting = await binance.place_order(
            "BTC-USDT", "buy", D("0.5"), D("63000"), "sr-gtc", time_in_force="GTC"
        )
        open_orders = await binance.open_orders()
        queried = await binance.query_order("BTC-USDT", "sr-ioc")
        trades = await binance.order_trades("BTC-USDT", filled.order_id)
        cancelled = await binance.cancel_order("BTC-USDT", "sr-gtc")
        await binance.test_order("BTC-USDT", "sell", D("0.1"), D("65000"))
    assert (filled.status, filled.executed_qty, filled.cumulative_quote_qty) == ("FILLED", D(1), D("64002.4"))
    assert [(f.price, f.quantity, f.commission_asset) for f in filled.fills] == [
        (D("64000.5"), D("0.8"), "BTC"),
        (D(64010), D("0.2"), "BTC"),
    ]
    assert resting.status == "NEW" and [o.client_order_id for o in open_orders] == ["sr-gtc"]
    assert (queried.status, queried.fills, queried.average_price) == ("FILLED", (), D("64002.4"))
    assert [t.quantity for t in trades] == [D("0.8"), D("0.2")]
    assert cancelled.status == "CANCELED"
    assert fake.accepted == {"sr-ioc": 1, "sr-gtc": 1}  # the test order placed nothing


async def test_a_client_order_id_is_unique_only_among_open_orders(fake: FakeBinance) -> None:
    async with asyncio.timeout(10), connect(fake) as binance:
        await binance.place_order("BTC-USDT", "buy", D("0.5"), D("63000"), "sr-same", time_in_force="GTC")
        with pytest.raises(DuplicateOrder):
            await binance.place_order("BTC-USDT", "buy", D("0.5"), D("63000"), "sr-same")
        await binance.cancel_order("BTC-USDT", "sr-same")
        # Once the first is no longer open the venue takes the same id again: why a blind retry is unsafe.
        await binance.place_order("BTC-USDT", "buy", D("0.5"), D("64001"), "sr-same")
    assert fake.accepted["sr-same"] == 2


# --- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "executed"),
    [
        ("accept_then_5xx", OutcomeUnknown, 1),
        ("accept_then_1007", OutcomeUnknown, 1),
        ("accept_then_drop", OutcomeUnknown, 1),
        ("accept_then_hang", OutcomeUnknown, 1),
        ("fail_5xx", OutcomeUnknown, 0),
        ("drop", OutcomeUnknown, 0),
        ("429", RateLimited, 0),
        ("418", VenueBanned, 0),
    ],
)
async def test_a_lost_or_refused_answer_maps_to_the_error_tree_without_quoting_the_request(
    fake: FakeBinance, fault: Fault, error: type[Exception], executed: int
) -> None:
    fake.inject("POST", "order", fault)
    async with asyncio.timeout(10), connect(fake, request_timeout_s=0.5) as binance:
        with pytest.raises(error) as caught:
            await binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "sr-fault")
    assert sum(fake.accepted.values()) == executed
    assert_clean(caught.value, fake)


@pytest.mark.parametrize(
    ("call", "error", "code"),
    [
        (lambda b: b.book_ticker("DOGE-USDT"), VenueRejected, -1121),
        (lambda b: b.query_order("BTC-USDT", "sr-never-sent"), OrderNotFound, -2013),
        (lambda b: b.place_order("BTC-USDT", "buy", D("0.0001"), D("100"), "sr-tiny"), VenueRejected, -1013),
        (
            lambda b: b.place_order("BTC-USDT", "buy", D("0.1"), D("64000.001"), "sr-off-tick"),
            VenueRejected,
            -1013,
        ),
    ],
)
async def test_venue_error_codes_map_to_the_error_tree(
    fake: FakeBinance, call: Any, error: type, code: int
) -> None:
    async with asyncio.timeout(10), connect(fake) as binance:
        with pytest.raises(error) as caught:
            await call(binance)
    assert caught.value.code == code
    assert_clean(caught.value, fake)


async def test_a_venue_that_refuses_connections_is_unreachable_and_nothing_was_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        binance = BinanceConnector(rest_url=f"http://127.0.0.1:{port}", request_timeout_s=1.0)
        async with asyncio.timeout(10):
            with pytest.raises(VenueUnreachable, match="nothing was sent"):
                await binance.start()
            await binance.close()


def assert_clean(error: BaseException, fake: FakeBinance) -> None:
    """No signature, key or secret in the error's text, nor in anything chained to it."""
    current: BaseException | None = error
    while current is not None:
        text = f"{current} {current!r}"
        assert API_SECRET not in text and API_KEY not in text and "signature" not in text.lower()
        assert not any(sig in text for sig in fake.signatures)
        current = current.__cause__ or current.__context__


# --- clock --------------------------------------------------------------------------------------


async def test_a_skewed_venue_clock_is_measured_at_start(fake: FakeBinance) -> None:
    fake.skew_ms = 30_000  # beyond any recvWindow: an unmeasured offset would be refused
    async with asyncio.timeout(10), connect(fake) as binance:
        assert abs(binance.server_now_ms() - fake.server_ms()) < 1000
        await binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "sr-skewed")
    assert fake.statuses[400] == 0 and fake.accepted == {"sr-skewed": 1}


async def test_a_clock_jump_is_resynced_on_1021_and_the_refused_order_is_placed_exactly_once(
    fake: FakeBinance,
) -> None:
    before = metric("smartroute_clock_syncs_total", venue="binance", reason="rejected")
    async with asyncio.timeout(10), connect(fake) as binance:
        fake.skew_ms = -20_000  # the venue's clock jumps back after we measured it
        report = await binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "sr-jump")
    assert report.status == "FILLED"
    assert fake.statuses[400] == 1  # the one -1021
    assert fake.accepted == {"sr-jump": 1} and len(fake.requests_to("POST", "order")) == 2
    assert metric("smartroute_clock_syncs_total", venue="binance", reason="rejected") == before + 1


async def test_the_clock_is_measured_again_after_the_sync_interval(fake: FakeBinance) -> None:
    async with asyncio.timeout(10), connect(fake, clock_sync_interval_s=0.0) as binance:
        await binance.balances()
        await binance.balances()
    assert len(fake.requests_to("GET", "time")) == 3  # at start, then before each signed request


# --- rate limits --------------------------------------------------------------------------------


async def test_a_burst_slows_down_before_the_weight_limit_and_never_earns_a_429_or_418() -> None:
    clock = VirtualClock()
    async with asyncio.timeout(20), FakeBinance(clock=clock, weight_limit=100) as fake:
        binance = connect(fake, limiter=VirtualLimiter(clock, "test-burst"), max_wait_s=120.0)
        async with binance:
            started = clock()
            quotes = await asyncio.gather(*(binance.book_ticker("BTC-USDT") for _ in range(120)))
    assert len(quotes) == 120
    assert fake.statuses[429] == fake.statuses[418] == 0 and fake.violations == []
    assert clock() - started >= 120  # 261 weight at ≤ 90 a minute: at least three windows
    assert metric("smartroute_rate_limit_waits_total", venue="test-burst", reason="weight") > 0


async def test_no_request_is_sent_before_retry_after_has_passed() -> None:
    clock = VirtualClock()
    async with asyncio.timeout(20), FakeBinance(clock=clock, retry_after_s=7) as fake:
        binance = connect(fake, limiter=VirtualLimiter(clock, "test-429"))
        async with binance:
            fake.inject("GET", "ticker/bookTicker", "429")
            with pytest.raises(RateLimited) as caught:
                await binance.book_ticker("BTC-USDT")
            limited_at = clock()
            await asyncio.gather(*(binance.book_ticker("BTC-USDT") for _ in range(5)), binance.ping())
            fake.inject("GET", "ticker/bookTicker", "429")
            with pytest.raises(RateLimited):
                await binance.book_ticker("BTC-USDT")
            with pytest.raises(RateLimited, match="not sent"):  # an order never waits 7 s for its turn
                await binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "sr-limited")
    assert caught.value.retry_after_s == 7
    later = [seen.time for seen in fake.requests if seen.time > limited_at]
    assert len(later) >= 6 and min(later) >= limited_at + 7
    assert fake.violations == [] and fake.statuses[418] == 0
    assert fake.accepted == {}


async def test_a_418_ban_stops_every_request_until_it_ends() -> None:
    clock = VirtualClock()
    async with asyncio.timeout(20), FakeBinance(clock=clock, ban_s=120) as fake:
        binance = connect(fake, limiter=VirtualLimiter(clock, "test-ban"))
        async with binance:
            fake.inject("GET", "ticker/bookTicker", "418")
            with pytest.raises(VenueBanned):
                await binance.book_ticker("BTC-USDT")
            sent = len(fake.requests)
            assert metric("smartroute_venue_banned", venue="test-ban") == 1
            with pytest.raises(VenueBanned, match="not sent"):
                await binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), "sr-banned")
            with pytest.raises(VenueBanned):
                await binance.balances()
            assert len(fake.requests) == sent  # nothing left the process during the ban
            await clock.sleep(120)
            assert (await binance.book_ticker("BTC-USDT")).symbol == "BTC-USDT"
    assert metric("smartroute_venue_banned", venue="test-ban") == 0
    assert fake.accepted == {} and fake.violations == []


async def test_orders_are_paced_by_the_order_count_limit_without_a_429() -> None:
    clock = VirtualClock()
    async with asyncio.timeout(20), FakeBinance(clock=clock, orders_per_10s=5) as fake:
        binance = connect(fake, limiter=VirtualLimiter(clock, "test-orders"), order_max_wait_s=30.0)
        async with binance:
            started = clock()
            reports = await asyncio.gather(
                *(
                    binance.place_order("BTC-USDT", "buy", D("0.1"), D("64001"), f"sr-paced-{i}")
                    for i in range(12)
                )
            )
    assert [r.status for r in reports] == ["FILLED"] * 12 and fake.statuses[429] == 0
    assert clock() - started >= 20  # at most 4 orders (90 % of 5) per 10-second window
    assert metric("smartroute_rate_limit_waits_total", venue="test-orders", reason="orders") > 0
