"""The README's consumer examples, run as users run them, against the embedded broker.

A real detector's opportunity is on the topic first; a small fake router inside the test checks
the order request the example sends with smartroute's own validator and answers it with a result
built by smartroute's own ExecutionResult. Each example must exit 0 and print that result.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from contract import assert_valid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka_support import TopicReader, create_contract_topics

from connectors.types import VENUE_IDS, Quote, Side, decimal_text
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity
from router.execution import Fill
from router.request import ArbitrageRequest, Request, RequestRules
from router.results import ExecutionResult
from router.signatures import KeyRing, private_key_pem, verify
from router.validation import parse_request

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RULES = RequestRules(venues=frozenset(VENUE_IDS), symbols=frozenset({"BTC-USDT"}))
SOMEONE_ELSES: dict[str, object] = {
    "v": 1, "request_id": "someone-else", "user_id": "bob", "kind": "order", "symbol": "BTC-USDT",
    "side": "buy", "quantity": "0.3",
}  # fmt: skip


def opened_opportunity() -> Opportunity:
    """Return the `opened` event of a real detector fed two quotes 25 bps apart."""
    cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=lambda: 0)
    events: list[Opportunity] = []
    detector = ArbitrageDetector(cache, {"binance": Decimal(10), "bybit": Decimal(10)}, events.append)
    for venue, bid, ask in (("binance", "63990.00", "64000.00"), ("bybit", "64200.00", "64210.00")):
        quote = Quote(
            venue, "BTC-USDT", Decimal(bid), Decimal("0.3"), Decimal(ask), Decimal("0.3"), None, 0, 7
        )
        cache.update(quote)
        detector.on_quote(quote)
    [opened] = events
    return opened


def filled_result(request: Request, opportunity: Opportunity) -> ExecutionResult:
    """Answer `request` the way the router would after filling it at the opportunity's prices."""
    now = time.time_ns()
    legs: list[tuple[Side, str, Decimal]] = [("buy", opportunity.buy_venue, opportunity.buy_price)]
    if request.kind == "arbitrage":
        legs.append(("sell", opportunity.sell_venue, opportunity.sell_price))
    qty = request.quantity
    fills = tuple(
        Fill(venue, side, price, qty, price * qty / 1000, "USDT", f"c{i}", f"v{i}", now)
        for i, (side, venue, price) in enumerate(legs)
    )
    route: dict[str, object] = {
        "strategy": "arbitrage" if request.kind == "arbitrage" else "best_price",
        "legs": [
            {"venue": f.venue, "quantity": decimal_text(f.quantity), "expected_price": decimal_text(f.price)}
            for f in fills
        ],
        "considered": [],
        "reason": "the opportunity's venues",
    }
    hedged = request.quantity if request.kind == "arbitrage" else None
    return ExecutionResult(
        request.request_id, request.user_id, request.kind, "paper", "filled", None, "filled", now, now,
        fills=fills, route=route, hedged_quantity=hedged,
    )  # fmt: skip


async def fake_router(
    bootstrap: str, prefix: str, opportunity: Opportunity, key: Ed25519PrivateKey
) -> dict[str, Any]:
    """Answer the first order request on `<prefix>orders`, checking its signature; return the result."""
    async with (
        TopicReader(bootstrap, prefix + "orders") as orders,
        AIOKafkaProducer(bootstrap_servers=bootstrap) as producer,
    ):
        record = await orders.wait_for(lambda _: True, timeout_s=30)
        ring = KeyRing({"example": (key.public_key(),)})
        assert verify("orders", record.value, record.headers, ring) == "example"  # signed by its user
        assert_valid("order-request", orjson.loads(record.value))
        request = parse_request(record.value, RULES, now_ns=time.time_ns())
        assert request.symbol == opportunity.symbol and request.quantity == opportunity.quantity
        if isinstance(request, ArbitrageRequest):
            assert (request.buy_venue, request.sell_venue) == (opportunity.buy_venue, opportunity.sell_venue)
            assert request.opportunity_id == opportunity.id
        else:
            assert (request.side, request.venues) == ("buy", (opportunity.buy_venue,))
        result = filled_result(request, opportunity).as_message()
        assert_valid("execution-result", result)
        await producer.send_and_wait(prefix + "results", orjson.dumps(result), key=record.key)
        return result


async def run_example(script: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("kind", ["order", "arbitrage"])
@pytest.mark.parametrize(
    "script", ["consume_opportunities_aiokafka.py", "consume_opportunities_confluent.py"]
)
async def test_example_acts_on_an_opportunity_and_prints_its_result(
    embedded_broker: str, script: str, kind: str, tmp_path: Path
) -> None:
    prefix = f"test.{uuid.uuid4().hex}."
    await create_contract_topics(embedded_broker, prefix)
    opportunity = opened_opportunity()
    async with AIOKafkaProducer(bootstrap_servers=embedded_broker) as producer:
        message = opportunity.as_message()
        assert_valid("opportunity", message)
        await producer.send_and_wait(prefix + "opportunities", orjson.dumps(message), key=b"BTC-USDT")
        # The results topic is busy with other users' results; the example must pick out its own.
        other = filled_result(parse_request(orjson.dumps(SOMEONE_ELSES), RULES, now_ns=0), opportunity)
        await producer.send_and_wait(prefix + "results", other.encode(), key=b"someone-else")
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "example.key"
    key_file.write_bytes(private_key_pem(key))
    args = ("--bootstrap-servers", embedded_broker, "--topic-prefix", prefix, "--from-beginning")
    args += ("--key", str(key_file))
    async with asyncio.timeout(60):
        (code, stdout, stderr), sent = await asyncio.gather(
            run_example(script, *args, "--kind", kind, "--timeout-s", "40"),
            fake_router(embedded_broker, prefix, opportunity, key),
        )
    assert code == 0, stderr
    assert orjson.loads(stdout.strip().splitlines()[-1]) == sent
