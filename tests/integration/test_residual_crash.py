"""SIGKILL with one arbitrage leg filled and the other in flight: the restart never reports it filled.

A real router process (`router_child.py`, the `route` role) on the real broker, over a simulator
whose quotes the test sets: binance asks 100, bybit bids 101, so the arbitrage pays. The child kills
itself as the sell leg is about to execute — the buy leg settled with its fill, the sell leg
recorded and sent in the ledger, never executed. The restarted router settles the sell leg from
what the venue knows (paper: never filled), reports the arbitrage `failed` (nothing hedged) with
its residual, which it sells back (on binance, or on bybit if that feed is fresh first) — in the
background when recovery ran before any feed was fresh again; no leg executes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from contract import assert_valid
from kafka_support import wait_until
from test_router_service import Env, env, run_child  # noqa: F401  (env is a fixture)

from connectors.sim import ExchangeSimulator
from daemon.client import send
from router.ledger import Ledger

pytestmark = pytest.mark.integration


async def keep_quoting(sim: ExchangeSimulator, stop: asyncio.Event) -> None:
    """Push both venues' quotes every 200 ms, so they stay fresh (max_quote_age_ms 1500)."""
    while not stop.is_set():
        await sim.push_quote("binance", "BTC-USDT", "99.9", "5", "100", "5")
        await sim.push_quote("bybit", "BTC-USDT", "101", "5", "101.1", "5")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


@pytest.fixture
async def sim() -> AsyncIterator[ExchangeSimulator]:
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT",), seed=11, autoplay=False) as simulator:
        stop = asyncio.Event()
        pusher = asyncio.create_task(keep_quoting(simulator, stop))
        yield simulator
        stop.set()
        await pusher


def probe(request_id: str) -> dict[str, object]:
    """A small buy on binance: filled only once the router serves with both feeds fresh."""
    message: dict[str, object] = {"v": 1, "request_id": request_id, "user_id": "desk-1", "kind": "order"}
    return message | {"symbol": "BTC-USDT", "side": "buy", "quantity": "0.01", "venues": ["binance"]}


async def until_serving(env: Env) -> None:  # noqa: F811 (the fixture's value)
    """Send probes until one fills: the router has joined its group and its feeds are fresh.

    On a loaded machine the first request can arrive before the feeds are fresh; it would then be
    answered `stale_prices` and the arbitrage under test would never reach its sell leg.
    """
    async with asyncio.timeout(45):
        for attempt in range(1_000):
            request_id = f"probe-{attempt}"
            await send(env.cfg.kafka, env.cfg.topic("orders"), request_id.encode(), probe(request_id))
            key = request_id.encode()
            record = await env.results.wait_for(lambda r, key=key: r.key == key, timeout_s=30)
            if orjson.loads(record.value)["status"] == "filled":
                return
            await asyncio.sleep(0.2)


def a1_sends(sent_log: Path) -> list[str]:
    """Return the lines of the legs the arbitrage under test sent (not the probes')."""
    return [line for line in sent_log.read_text().splitlines() if line.startswith("a1 ")]


def arbitrage(request_id: str) -> dict[str, object]:
    message: dict[str, object] = {"v": 1, "request_id": request_id, "user_id": "desk-1", "kind": "arbitrage"}
    return message | {"symbol": "BTC-USDT", "quantity": "0.5", "buy_venue": "binance", "sell_venue": "bybit"}


async def test_sigkill_with_one_arbitrage_leg_filled_recovers_a_residual_never_filled(
    env: Env,  # noqa: F811
    tmp_path: Path,
) -> None:
    sent_log = tmp_path / "sent.log"
    child = await run_child(env, sent_log, crash_after="leg:a1:1")
    try:
        await until_serving(env)
        await send(env.cfg.kafka, env.cfg.topic("orders"), b"a1", arbitrage("a1"))
        async with asyncio.timeout(30):
            assert await child.wait() == -signal.SIGKILL  # killed itself as the sell leg was sent
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert [line.split()[:2] for line in a1_sends(sent_log)] == [["a1", "0"], ["a1", "1"]]

    restarted = await run_child(env, sent_log, crash_after=None)
    try:
        settled = await env.results.wait_for(lambda r: r.key == b"a1", timeout_s=30)
        # Recovery runs before the feeds are fresh again: the result says the residual is being
        # worked, and the background worker sells it back once a feed is fresh.
        await wait_until(lambda: "a1 2 " in sent_log.read_text(), timeout_s=30)
        await asyncio.sleep(0.5)  # a second attempt would follow within a pass (250 ms) if one were made
    finally:
        restarted.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await restarted.wait() == 0
    result = orjson.loads(settled.value)
    assert_valid("execution-result", result)
    assert (result["status"], result["filled_quantity"]) == ("failed", "0"), result
    residual = result["residual"]
    assert (residual["quantity"], residual["venue"], residual["exposure"]) == ("0.5", "binance", "long")
    assert "nothing was sent again" in result["message"]
    if residual["state"] == "working":  # recovery ran before the feeds were fresh: the usual case
        assert residual["remaining_quantity"] == "0.5", residual
        assert residual["message"].endswith("no attempt yet (no fresh quote, or trading is halted)")
        assert [(f["venue"], f["side"]) for f in result["fills"]] == [("binance", "buy")]
    else:  # a feed was fresh already: the first attempt flattened it before the result went out
        assert (residual["state"], residual["remaining_quantity"]) == ("flat", "0"), residual
    # The exchanges saw each leg once: the buy, the sell that never executed, the residual's sell.
    sends = [tuple(line.split()[:2]) for line in a1_sends(sent_log)]
    assert sends == [("a1", "0"), ("a1", "1"), ("a1", "2")]
    with Ledger.open(Path(env.cfg.daemon.state_dir)) as ledger:
        flat = ledger.residual("a1")
        assert flat is not None and (flat.state, flat.remaining, flat.attempts) == ("flat", Decimal(0), 1)
        [attempt] = [leg for leg in ledger.legs("a1") if leg.leg == 2]
        # binance, or bybit (the best other venue) when binance's feed was not fresh yet
        assert attempt.venue in ("binance", "bybit") and (attempt.side, attempt.state) == ("sell", "settled")
