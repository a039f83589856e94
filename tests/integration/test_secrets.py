"""Canary credentials never leak: not in DEBUG logs, metrics, results, exception text or reprs.

Also a canary Kafka SASL password, used for real over SASL_SSL (Apache Kafka, at DEBUG: aiokafka's
own lines too) and shown nowhere, not in /status or /metrics; and a signing key file given to
`smartroute order --key`, good or malformed, quoted nowhere.

A canary API key and secret trade against the fake Binance through every
failure path (bad bodies, lost answers, bans, clock rejections, unreadable
2xx answers, a venue that never answers queries); everything the process could
show a human or another system is searched for the key, the secret and every
signature the fake received.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from Crypto.PublicKey import ECC
from fake_binance import FakeBinance
from prometheus_client import REGISTRY, generate_latest
from secure_kafka import CANARY_PASSWORD, CANARY_USER, SecureKafka, documented_acls
from test_live_executor import LiveWorld, order_message

from connectors.binance.rest import BinanceConnector
from connectors.binance.session import ApiCredentials
from daemon import cli
from daemon.app import Daemon
from daemon.broker import free_port
from daemon.config import ConfigError, build_config, load_config, redacted_view
from daemon.credentials import load_binance_credentials
from daemon.kafka import start_plain_producer
from daemon.kafka.topics import create_topics
from router.signatures import load_private_key

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
        # The venue cannot tell: the request is held by the settler (router.settler), its error on /status.
        dark = await world.router.handle(order_message("dark", "buy", "0.5"))
        assert dark.result is None and world.router.settler.holds("dark")
        sink.texts.extend(orjson.dumps(u.as_status()).decode() for u in world.router.settler.unsettled())
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


# The SASL password and a signing key: through a real SASL_SSL connection, /status, /metrics and errors.


@pytest.mark.apache_kafka
async def test_a_canary_sasl_password_appears_in_no_log_status_metric_view_or_exception(
    secure_kafka: SecureKafka, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    """The canary logs in as the router (its documented ACLs), at DEBUG, from $CREDENTIALS_DIRECTORY."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    acls = documented_acls(
        tmp_path, PREFIX=prefix, ROUTER_GROUP=f"{prefix}router", ROUTER=f"User:{CANARY_USER}"
    )
    await asyncio.to_thread(secure_kafka.grant, acls)
    topics_admin = build_config(
        {"kafka": secure_kafka.kafka_table("smartroute-admin", prefix)},
        secure_kafka.environ("smartroute-admin"),
    )
    await create_topics(topics_admin.kafka, topics_admin.topics)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "kafka_sasl_password").write_text(CANARY_PASSWORD + "\n")
    port = free_port("127.0.0.1")
    config = tmp_path / "smartroute.toml"
    config.write_text(
        f'[daemon]\nhttp_port = {port}\nstate_dir = "{tmp_path / "state"}"\n'
        + secure_kafka.kafka_toml(CANARY_USER, prefix)
        + f'[router]\ngroup_id = "{prefix}router"\nsession_timeout_ms = 2000\n'
        + '[venues.binance]\nsymbols = ["BTC-USDT"]\nws_url = "ws://127.0.0.1:9"\n'
    )
    cfg = load_config(config, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert cfg.kafka.sasl_password is not None and cfg.kafka.sasl_password.reveal() == CANARY_PASSWORD
    daemon = Daemon(cfg, roles=frozenset({"route"}))
    assert daemon.router_service is not None
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="canary-router")
    served: list[str] = []
    try:
        async with asyncio.timeout(30):
            await daemon.router_service.reconciled.wait()
            async with aiohttp.ClientSession() as session:
                for path in ("status", "metrics", "readyz"):
                    async with session.get(f"http://127.0.0.1:{port}/{path}") as response:
                        served.append(await response.text())
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task
    plain = dataclasses.replace(cfg.kafka, sasl_mechanism="PLAIN")  # the password itself goes on the wire
    producer = await start_plain_producer(plain)
    try:
        await producer.send_and_wait(cfg.topic("results"), b"{}", key=b"canary")
    finally:
        await producer.stop()
    sink = Sink()
    elsewhere = dataclasses.replace(cfg.kafka, sasl_username="desk-1")  # the canary is not desk-1's password
    await sink.expect_failure(lambda: start_plain_producer(elsewhere))
    assert "refused the SASL login of User:desk-1" in sink.texts[-1]
    sink.texts += [repr(cfg), str(cfg.kafka), orjson.dumps(redacted_view(cfg)).decode()]
    exposed = {
        "logs": captured_logs.getvalue(),
        "/status, /metrics, /readyz": "\n".join(served),
        "metrics": generate_latest(REGISTRY).decode(),
        "views and exceptions": "\n".join(sink.texts),
    }
    for mechanism in ("SCRAM-SHA-512", "PLAIN"):  # aiokafka's own lines, INFO and DEBUG
        assert f"Authenticated as canary via {mechanism}" in exposed["logs"]
    assert '"router_ready"' in exposed["logs"] and '"ready"' in exposed["/status, /metrics, /readyz"]
    for where, text in exposed.items():
        assert CANARY_PASSWORD not in text, f"the SASL password leaked into {where}"


def test_a_signing_key_file_appears_in_no_output_or_error_of_smartroute_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], captured_logs: io.StringIO
) -> None:
    """A good key (the request is sent; no router answers), then a malformed one (refused, unquoted)."""
    key_file = tmp_path / "desk.key"
    assert cli.main(["keygen", "--out", str(key_file)]) == 0
    key = load_private_key(key_file)
    secrets = {
        *[line for line in key_file.read_text().splitlines() if "-----" not in line],  # the PEM body
        base64.b64encode(key.private_bytes_raw()).decode(),
        key.private_bytes_raw().hex(),
    }
    config = tmp_path / "smartroute.toml"
    config.write_text('[kafka]\nbootstrap_servers = "127.0.0.1:9"\nrequest_timeout_ms = 500\n')
    order = ["order", "--config", str(config), "--symbol", "BTC-USDT", "--side", "buy", "--quantity", "1"]
    assert cli.main([*order, "--signer", "desk-1", "--key", str(key_file)]) == cli.EXIT_FAILURE
    canary_key = tmp_path / "canary.key"
    canary_key.write_text(f"-----BEGIN PRIVATE KEY-----\n{CANARY_SECRET}\n-----END PRIVATE KEY-----\n")
    assert cli.main([*order, "--signer", "desk-1", "--key", str(canary_key)]) == cli.EXIT_CONFIG
    printed = capsys.readouterr()
    assert f"{canary_key} is not an unencrypted PKCS#8 PEM private key" in printed.err
    assert "no Kafka broker answered at 127.0.0.1:9" in printed.err  # the good key got as far as Kafka
    for text in (printed.out, printed.err, captured_logs.getvalue()):
        for secret in (*secrets, CANARY_SECRET):
            assert secret not in text
