"""Helpers the venue trading tests share: a metric reading, clients set up on a fake, ban checks."""

from __future__ import annotations

from collections.abc import Sized
from decimal import Decimal
from typing import Any

import fake_binance
import fake_coinbase
import fake_kraken
import fake_okx
import pytest
from fake_bybit import API_KEY as BYBIT_KEY
from fake_bybit import API_SECRET as BYBIT_SECRET
from fake_bybit import FakeBybit, VirtualClock
from fake_okx import FakeOkx
from prometheus_client import REGISTRY

from connectors.bybit.signing import BybitCredentials
from connectors.bybit.trading import BybitTrading
from connectors.errors import VenueBanned
from connectors.okx.signing import OkxCredentials
from connectors.okx.trading import OkxTrading
from connectors.trading import TradingVenue

# The five fake venues' credentials as the daemon reads them from its environment.
FAKE_CREDENTIALS = {
    "BINANCE_API_KEY": fake_binance.API_KEY,
    "BINANCE_API_SECRET": fake_binance.API_SECRET,
    "BYBIT_API_KEY": BYBIT_KEY,
    "BYBIT_API_SECRET": BYBIT_SECRET,
    "OKX_API_KEY": fake_okx.API_KEY,
    "OKX_API_SECRET": fake_okx.API_SECRET,
    "OKX_API_PASSPHRASE": fake_okx.PASSPHRASE,
    "COINBASE_API_KEY_NAME": fake_coinbase.KEY_NAME,
    "COINBASE_API_PRIVATE_KEY": fake_coinbase.EC_PRIVATE_PEM,
    "KRAKEN_API_KEY": fake_kraken.API_KEY,
    "KRAKEN_API_SECRET": fake_kraken.API_SECRET,
}


def metric(name: str, **labels: str) -> float:
    """The sample's current value in the default registry (0 when it was never recorded)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def bybit_client(fake: FakeBybit, clock: VirtualClock, **options: Any) -> BybitTrading:
    """A BybitTrading on `fake` with its time on `clock`; the fake's keys unless `credentials`."""
    options.setdefault("request_timeout_s", 2.0)
    credentials = options.pop("credentials", BybitCredentials(BYBIT_KEY, BYBIT_SECRET))
    return BybitTrading(
        credentials,
        ["BTC-USDT", "ETH-USDT"],
        rest_url=fake.rest_url,
        wall_ms=clock.wall_ms,
        monotonic=clock,
        sleep=clock.sleep,
        **options,
    )


def okx_client(fake: FakeOkx, default_credentials: OkxCredentials, /, **options: Any) -> OkxTrading:
    """An OkxTrading on `fake`, with `default_credentials` unless `options` name `credentials`."""
    options.setdefault("request_timeout_s", 2.0)
    options.setdefault("credentials", default_credentials)
    return OkxTrading(rest_url=fake.rest_url, **options)


async def assert_banned_sends_nothing(
    venue: TradingVenue, requests: Sized, symbol: str, qty: Decimal, client_id: str
) -> None:
    """While `venue` is banned an order is refused as "not sent", a query is refused too, and
    no request reaches the fake (`requests` is its request log)."""
    sent = len(requests)
    with pytest.raises(VenueBanned, match="not sent"):
        await venue.place_order(symbol, "buy", qty, Decimal("64001"), client_id)
    with pytest.raises(VenueBanned):
        await venue.query_order(symbol, client_id)
    assert len(requests) == sent, f"{len(requests) - sent} request(s) left the process during the ban"
