"""Scenario 2, redelivery: the orders topic replayed from offset 0, every request delivered 2 or 3 times.

A router (`smartroute route`: paper, the exchange simulator's Binance and Bybit, its SQLite
ledger) answers N order requests. It stops; a seeded half of the requests is produced again as
exact copies; a new router on the same ledger, whose consumer group has no committed offset
(as after an offset reset to 0), reads the whole topic from offset 0: every request is
delivered a second time, the copies a third. The replay starts after `max_request_age_ms`
(5 s here; 2 s small) has passed, so every replayed record is older than the router accepts for new work.

Figures, counted from the ledger (every leg the router ever sent to a venue, intent first):
new executions during the replay (0); results of the replay that differ from the first result
of the same request_id (0); and, without a target, deliveries the replay did not answer.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from bench.orders import router_config
from bench.transport import create_bench_topics, order_request
from connectors.sim import ExchangeSimulator
from daemon.config import Config
from faults.orders import Requests, serving_router, status_of
from faults.scenario import Context, Figure, Outcome, Scenario, measured, zero
from router.ledger.schema import FILE_NAME

SYMBOL: Final = "BTC-USDT"
_ANSWER_TIMEOUT_S: Final = 300.0
_QUIET_S: Final = 3.0
_CHUNK: Final = 100
_GIVE_UP_S: Final = 30.0  # no result for this long: the deliveries left are not answered


def executions(state_dir: Path) -> dict[str, int]:
    """Count, in the ledger, the requests claimed and the legs sent to venues (settled or not)."""
    with sqlite3.connect(f"file:{state_dir / FILE_NAME}?mode=ro", uri=True) as ledger:
        requests = ledger.execute("SELECT count(*) FROM requests").fetchone()[0]
        legs = ledger.execute("SELECT count(*), count(DISTINCT client_order_id) FROM legs").fetchone()
    return {"requests": int(requests), "legs": int(legs[0]), "client_order_ids": int(legs[1])}


def differing(first: dict[str, dict[str, Any]], results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Request ids with a later result that is not equal to the first one."""
    return sorted(rid for rid, answers in results.items() if any(a != first[rid] for a in answers[1:]))


async def run_scenario(context: Context) -> Outcome:
    """Answer N requests, replay them all from offset 0 with copies; return the figures."""
    count = 50 if context.small else 2000
    rng = random.Random(context.seed)
    state_dir = context.workdir / "state"
    async with (
        context.kafka() as bootstrap,
        ExchangeSimulator(("binance", "bybit"), (SYMBOL,), seed=context.seed) as sim,
    ):
        cfg = router_config(bootstrap, sim, state_dir)
        max_age_ms = 2000 if context.small else 5000
        cfg = replace(cfg, router=replace(cfg.router, max_request_age_ms=max_age_ms))
        await create_bench_topics(cfg)
        ids = [f"redeliver-{context.seed}-{n}" for n in range(count)]
        values = [order_request(rid, n, SYMBOL) for n, rid in enumerate(ids)]
        async with Requests(cfg) as client:
            async with serving_router(cfg):
                for start in range(0, count, _CHUNK):  # in chunks: none waits past max_request_age_ms
                    await client.send(values[start : start + _CHUNK])
                    await client.wait_for(ids[start : start + _CHUNK], _ANSWER_TIMEOUT_S)
            first = {rid: client.results[rid][0] for rid in ids}
            before = executions(state_dir)
            copies = [value for value in values if rng.random() < 0.5]
            await client.send(copies)
            await asyncio.sleep(max_age_ms / 1000 + 0.5)
            replayed = replay_config(cfg)
            expected = len(ids) * 2 + len(copies)
            async with serving_router(replayed):
                await wait_for_count(client, ids, expected)
                await client.settle(_QUIET_S, _ANSWER_TIMEOUT_S)
            after = executions(state_dir)
            results = {rid: client.results[rid] for rid in ids}
    answered = sum(len(answers) for answers in results.values())
    changed = differing(first, results)
    figures: list[Figure] = [
        zero("new_executions", "legs sent to a venue during the replay", after["legs"] - before["legs"]),
        zero("results_differing", "requests with a result unlike their first", len(changed)),
        zero(
            "requests_claimed_again",
            "requests the ledger claimed during the replay",
            after["requests"] - before["requests"],
        ),
        measured("deliveries_unanswered", "deliveries the replay did not answer", expected - answered),
        measured(
            "first_filled", "first results `filled`", sum(r["status"] == "filled" for r in first.values())
        ),
    ]
    details = {
        "ledger_before": before,
        "ledger_after": after,
        "first_statuses": dict(Counter(status_of(r) for r in first.values())),
        "replay_statuses": dict(Counter(status_of(r) for answers in results.values() for r in answers[1:])),
        "differing": changed[:20],
        "examples": [{"first": first[rid], "later": results[rid][1:]} for rid in changed[:3]],
    }
    size = {
        "requests": count,
        "copies": len(copies),
        "deliveries": expected,
        "max_request_age_ms": max_age_ms,
    }
    return Outcome(figures, size=size, details=details)


def replay_config(cfg: Config) -> Config:
    """The same router in a consumer group without committed offsets: it reads the topic from offset 0."""
    return replace(cfg, router=replace(cfg.router, group_id=f"{cfg.router.group_id}-replay"))


async def wait_for_count(client: Requests, ids: list[str], expected: int) -> None:
    """Read results until `expected` arrived for `ids`, or nothing more came for `_GIVE_UP_S`."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while sum(len(client.results.get(rid, ())) for rid in ids) < expected and loop.time() - last < _GIVE_UP_S:
        if await client.poll():
            last = loop.time()


def _limit(context: Context) -> float:
    return 240.0 if context.small else 1500.0


SCENARIO: Final = Scenario(2, "redelivery", "Redelivery", run_scenario, _limit)
