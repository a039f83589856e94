"""Helpers the venue trading tests share: a metric reading and the clients set up on a fake."""

from __future__ import annotations

from typing import Any

from fake_bybit import API_KEY as BYBIT_KEY
from fake_bybit import API_SECRET as BYBIT_SECRET
from fake_bybit import FakeBybit, VirtualClock
from fake_okx import FakeOkx
from prometheus_client import REGISTRY

from connectors.bybit.signing import BybitCredentials
from connectors.bybit.trading import BybitTrading
from connectors.okx.signing import OkxCredentials
from connectors.okx.trading import OkxTrading


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
