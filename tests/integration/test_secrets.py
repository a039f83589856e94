"""Canary credentials never leak: not in DEBUG logs, metrics, results, exception text or reprs.

A canary API key and secret trade against the fake Binance through every
failure path (bad bodies, lost answers, bans, clock rejections, unreadable
2xx answers, a venue that never answers queries); everything the process could
show a human or another system is searched for the key, the secret and every
signature the fake received.
"""

from __future__ import annotations

import asyncio
import io
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from Crypto.PublicKey import ECC
from fake_binance import FakeBinance
from prometheus_client import REGISTRY, generate_latest
from test_live_executor import LiveWorld, order_message

from connectors.binance.rest import BinanceConnector
from connectors.binance.session import ApiCredentials
from daemon.config import ConfigError
from daemon.credentials import load_binance_credentials

pytestmark = pytest.mark.integration

CANARY_KEY = "CanaryKey7f3a9e1b5c2d8f4a6b0e9c3d7a1f5b2e8c4d0a6f9b3e7c1d5a2f8b4e0c6d9a3f7b1"
CANARY_SECRET = "CanarySecret2b8e4f0a6c9d3b7e1f5a2c8d4b0e6f9a3c7d1b5e2f8a4c0d6b9e3f7a1c5d2"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance(api_key=CANARY_KEY, api_secret=CANARY_SECRET) as server:
        yield server


class Sink:
    """Everything observable: exception renderings and result messages."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def expect_failure(self, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            await call()
        except Exception as exc:
            self.texts.append("".join(traceback.format_exception(exc)) + repr(exc))
        else:
            pytest.fail("the call was expected to fail")


async def test_canary_credentials_appear_in_no_log_metric_result_or_exception(
    tmp_path: Path, fake: FakeBinance, captured_logs: io.StringIO
) -> None:
    sink = Sink()
    async with (
        asyncio.timeout(30),
        LiveWorld(
            tmp_path / "state",
            {"binance": fake.rest_url},
            credentials=ApiCredentials(CANARY_KEY, CANARY_SECRET),
        ) as world,
    ):
        binance = world.connectors["binance"]
        for request_id, fault in (("ok", None), ("lost", "accept_then_5xx"), ("drop", "accept_then_drop")):
            if fault is not None:
                fake.inject("POST", "order", fault)
            handled = await world.router.handle(order_message(request_id, "buy", "0.5"))
            sink.texts.append((handled.result or b"").decode())
        for path, fault in (
            ("order", "fail_5xx"),
            ("order", "garbage"),
            ("account", "garbage"),
            ("order", "drop"),
        ):
            fake.inject("GET", path, fault)
            call = binance.balances if path == "account" else lambda: binance.query_order("BTC-USDT", "sr-x")
            await sink.expect_failure(call)
        fake.inject("GET", "order", *(["fail_5xx"] * 6))
        fake.inject("POST", "order", "accept_then_1007")
        await sink.expect_failure(lambda: world.router.handle(order_message("dark", "buy", "0.5")))
        fake.skew_ms = -20_000  # a -1021, then a resync
        await binance.balances()
        fake.skew_ms = 0
        bad = BinanceConnector(
            rest_url=fake.rest_url, credentials=ApiCredentials(CANARY_KEY, "wrong" + CANARY_SECRET)
        )
        async with bad:
            await sink.expect_failure(bad.balances)
        fake.inject("GET", "openOrders", "418")
        await sink.expect_failure(binance.open_orders)
        await sink.expect_failure(binance.balances)  # refused locally during the ban
        sink.texts += [repr(binance), str(binance), repr(ApiCredentials(CANARY_KEY, CANARY_SECRET))]
    exposed = {
        "logs": captured_logs.getvalue(),
        "metrics": generate_latest(REGISTRY).decode(),
        "results and exceptions": "\n".join(sink.texts),
    }
    assert fake.signatures and fake.statuses[418] and fake.statuses[400]  # every path was exercised
    assert '"order_completed"' in exposed["logs"] and "smartroute_live_orders_total" in exposed["metrics"]
    for where, text in exposed.items():
        for canary in (CANARY_KEY, CANARY_SECRET, *fake.signatures):
            assert canary not in text, f"{canary[:12]}… leaked into {where}"
        assert "signature=" not in text, where


def test_loaded_credentials_never_render_their_values(tmp_path: Path) -> None:
    credentials = load_binance_credentials(
        {"BINANCE_API_KEY": CANARY_KEY, "BINANCE_API_SECRET": CANARY_SECRET}
    )
    assert credentials.for_connector() == ApiCredentials(CANARY_KEY, CANARY_SECRET)
    for text in (repr(credentials), str(credentials), repr(credentials.for_connector())):
        assert CANARY_KEY not in text and CANARY_SECRET not in text


def test_credentials_come_from_the_systemd_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "binance_api_key").write_text(CANARY_KEY + "\n")
    (tmp_path / "binance_api_secret").write_text(CANARY_SECRET + "\n")
    credentials = load_binance_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert credentials.for_connector() == ApiCredentials(CANARY_KEY, CANARY_SECRET)


def test_an_ed25519_key_file_is_the_alternative_to_the_hmac_secret(tmp_path: Path) -> None:
    pem = ECC.generate(curve="Ed25519").export_key(format="PEM")
    (tmp_path / "key.pem").write_text(pem + "\n")
    credentials = load_binance_credentials(
        {"BINANCE_API_KEY": CANARY_KEY, "BINANCE_PRIVATE_KEY_FILE": str(tmp_path / "key.pem")}
    )
    assert credentials.for_connector() == ApiCredentials(CANARY_KEY, private_key=pem)
    (tmp_path / "binance_private_key").write_text(pem)
    from_directory = load_binance_credentials(
        {"BINANCE_API_KEY": CANARY_KEY, "CREDENTIALS_DIRECTORY": str(tmp_path)}
    )
    assert from_directory.for_connector() == ApiCredentials(CANARY_KEY, private_key=pem)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "BINANCE_API_KEY"),
        ({"BINANCE_API_KEY": CANARY_KEY}, "BINANCE_API_SECRET"),
        ({"BINANCE_API_KEY": CANARY_KEY, "BINANCE_API_SECRET": ""}, "BINANCE_API_SECRET"),
        (
            {"BINANCE_API_KEY": CANARY_KEY, "BINANCE_PRIVATE_KEY_FILE": "/nonexistent/key.pem"},
            "/nonexistent/key.pem",
        ),
    ],
)
def test_missing_credentials_are_named_without_any_value(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_binance_credentials(environ)
    assert named in str(caught.value) and CANARY_KEY not in str(caught.value)


def test_a_key_file_that_is_not_an_ed25519_key_is_refused_without_quoting_it(tmp_path: Path) -> None:
    canary_file = tmp_path / "canary.pem"
    canary_file.write_text(f"-----BEGIN PRIVATE KEY-----\n{CANARY_SECRET}\n-----END PRIVATE KEY-----\n")
    p256_file = tmp_path / "p256.pem"
    p256_file.write_text(ECC.generate(curve="P-256").export_key(format="PEM"))
    for path, problem in ((canary_file, "not a PEM private key"), (p256_file, "must be an Ed25519")):
        with pytest.raises(ConfigError, match=problem) as caught:
            load_binance_credentials({"BINANCE_API_KEY": CANARY_KEY, "BINANCE_PRIVATE_KEY_FILE": str(path)})
        text = "".join(traceback.format_exception(caught.value))
        assert CANARY_SECRET not in text and CANARY_KEY not in text


def test_a_secret_and_a_key_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text(ECC.generate(curve="Ed25519").export_key(format="PEM"))
    with pytest.raises(ConfigError, match="keep one"):
        load_binance_credentials(
            {
                "BINANCE_API_KEY": "k",
                "BINANCE_API_SECRET": "s",
                "BINANCE_PRIVATE_KEY_FILE": str(tmp_path / "key.pem"),
            }
        )
