"""Binance on the venue-neutral trading seam (`BinanceTrading`), against the fake Binance REST server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_binance import API_KEY, API_SECRET, FakeBinance

from connectors.binance.rest import BinanceConnector
from connectors.binance.session import ApiCredentials
from connectors.binance.trading import BinanceTrading
from connectors.errors import OrderNotFound
from connectors.trading import AccountBalance
from router.execution import OrderLeg
from router.ledger import Ledger, LegIntent
from router.live import LiveExecutor, SettlePolicy

pytestmark = pytest.mark.integration

D = Decimal


@pytest.fixture
async def trading() -> AsyncIterator[tuple[FakeBinance, BinanceTrading]]:
    async with FakeBinance(commission_rate=D("0.00075")) as fake:
        connector = BinanceConnector(
            rest_url=fake.rest_url, credentials=ApiCredentials(API_KEY, API_SECRET), recv_window_ms=500
        )
        venue = BinanceTrading(connector, ("BTC-USDT",))
        try:
            yield fake, venue
        finally:
            await venue.close()


async def test_the_account_state_reads_in_venue_neutral_terms(
    trading: tuple[FakeBinance, BinanceTrading],
) -> None:
    _, venue = trading
    assert venue.acceptance_window_ms == 500  # recvWindow
    assert await venue.taker_fee_bps("BTC-USDT") == D("7.5")  # 0.00075 standard + 0 tax
    balances = await venue.balances()
    assert balances["USDT"] == AccountBalance("USDT", D("100000"), D("250"))
    assert balances["USDT"].total == D("100250")
    rules = await venue.symbol_rules("BTC-USDT")
    assert rules.venue_symbol == "BTCUSDT" and rules.tradable and rules.quote_asset == "USDT"


async def test_an_order_and_its_fills_read_in_venue_neutral_terms(
    trading: tuple[FakeBinance, BinanceTrading],
) -> None:
    _, venue = trading
    report = await venue.place_order(
        "BTC-USDT", "buy", D("1"), D("64010"), "0123456789abcdef0123456789abcdef"
    )
    assert not report.is_open and report.executed_qty == D("1")
    assert report.venue_order_id.isdigit() and report.client_order_id == "0123456789abcdef0123456789abcdef"
    # 0.8 @ 64000.50 + 0.2 @ 64010.00; Binance charges a buy's fee in the asset received
    assert [(f.price, f.quantity, f.fee, f.fee_asset) for f in report.fills] == [
        (D("64000.50"), D("0.8"), D("0.0006"), "BTC"),
        (D("64010.00"), D("0.2"), D("0.00015"), "BTC"),
    ]
    trades = await venue.order_trades("BTC-USDT", report)
    assert [(t.price, t.quantity) for t in trades] == [(f.price, f.quantity) for f in report.fills]
    assert await venue.open_orders() == []
    with pytest.raises(OrderNotFound):
        await venue.query_order("BTC-USDT", "never-sent")


async def test_recovery_queries_the_id_the_ledger_recorded_not_a_rederived_one(
    trading: tuple[FakeBinance, BinanceTrading], tmp_path: Path
) -> None:
    """A leg sent under an older id scheme (before an upgrade) is still found after a restart."""
    fake, venue = trading
    legacy_id = "sr0f1e2d3c4b5a69788796a5b4c3d2e1"  # the scheme before the venue-neutral UUIDs
    await venue.place_order("BTC-USDT", "buy", D("0.5"), D("64010"), legacy_id)
    ledger = Ledger.open(tmp_path)
    try:
        ledger.claim("r-old", "u1", b"{}", now_ns=1)
        ledger.record_leg_intent(
            LegIntent("r-old", 0, "binance", legacy_id, "buy", D("0.5"), D("64010"), "intent", None)
        )
        [intent] = ledger.legs("r-old")
    finally:
        ledger.close()
    leg = OrderLeg(
        "r-old",
        0,
        "binance",
        "BTC-USDT",
        "buy",
        intent.quantity,
        D("64010"),
        client_order_id=intent.client_order_id,
    )
    executor = LiveExecutor({"binance": venue}, policy=SettlePolicy(query_delays_s=(0.01,)))
    outcome = await executor.recover(leg)
    assert outcome.filled == D("0.5")
    assert fake.accepted == {legacy_id: 1}  # found by query, never sent again
