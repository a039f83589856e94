"""Group commit under SIGKILL: a crash at any step of a batch's ledger writes executes nothing twice.

A router process (`router_child.py`) gets six requests in one Kafka batch —
answered concurrently, so the others are anywhere in their own steps — and
kills itself at one step of the third one's writes; a second process on the
same state dir and consumer group finishes the work. The sent log stands in for
the venue's order log.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest
from contract import assert_valid
from test_router_service import Env, env, order, produce_with_librdkafka, run_child, sim  # noqa: F401

pytestmark = pytest.mark.integration

REQUESTS = [f"g{i}" for i in range(1, 7)]
STEPS = [
    "before_claim",
    "after_claim",
    "after_intent",
    "after_send",
    "after_outcome",
    "after_result",
    "before_commit",
]


# Every step on Tansu; on Apache Kafka the two whose outcome turns on the broker (a send whose
# answer is lost, results acknowledged but the offset not committed): the ledger's steps are the
# same code whichever broker delivers the batch, and each Apache run costs ~5 s of `make test`.
CASES = [pytest.param("tansu", step, id=f"tansu-{step}") for step in STEPS] + [
    pytest.param("apache_kafka", step, marks=pytest.mark.apache_kafka, id=f"apache_kafka-{step}")
    for step in ("after_send", "before_commit")
]


@pytest.mark.parametrize(("embedded_broker", "step"), CASES, indirect=["embedded_broker"])
async def test_a_crash_at_any_step_of_a_batch_executes_nothing_twice_and_answers_once(
    env: Env,  # noqa: F811
    tmp_path: Path,
    step: str,
) -> None:
    sent_log = tmp_path / "sent.log"
    orders = [(rid.encode(), orjson.dumps(order(rid))) for rid in REQUESTS]
    child = await run_child(env, sent_log, crash_after=f"step:{step}:g3")
    try:
        await asyncio.to_thread(produce_with_librdkafka, env.bootstrap, env.cfg.topic("orders"), orders)
        async with asyncio.timeout(30):
            assert await child.wait() == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    # Read everything the crashed process published (its acknowledged results may still be on their
    # way to this reader), so that an answer counted as the restarted process's really is its own.
    while await env.results.poll(500):
        pass
    before_restart = len(env.results.records)  # answers published before the crash
    restarted = await run_child(env, sent_log, crash_after=None)
    try:
        # Every request is answered, and the restarted process answered g3's batch (never committed).
        async with asyncio.timeout(40):
            while not (
                set(REQUESTS) <= {r.key.decode() for r in env.results.records if r.key}
                and any(r.key == b"g3" for r in env.results.records[before_restart:])
            ):
                await env.results.poll()
        await env.results.poll(500)  # a stray second answer would arrive now
    finally:
        restarted.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await restarted.wait() == 0

    lines = sent_log.read_text().splitlines() if sent_log.exists() else []
    sent = Counter(tuple(line.split()[:2]) for line in lines)
    assert all(count == 1 for count in sent.values()), sent  # no leg reached the venue twice
    answers: dict[str, set[bytes]] = {}
    for record in env.results.records:
        result = orjson.loads(record.value)
        assert_valid("execution-result", result)
        answers.setdefault(result["request_id"], set()).add(record.value)
    assert set(answers) == set(REQUESTS)
    assert all(len(values) == 1 for values in answers.values()), answers  # one distinct result each
