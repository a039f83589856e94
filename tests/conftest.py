"""Fixtures shared by the whole suite.

embedded_broker  one Tansu Kafka broker (memory only) for the whole test session; the value is its
                 bootstrap address, "127.0.0.1:PORT". Tests share it, so each one uses its own
                 topics and consumer groups: take names from the `kafka_topic` fixture.
kafka_topic      a topic name no other test uses.

Tansu auto-creates a topic on first produce; a consumer group gets its partitions only after
about half of `session_timeout_ms` (keep it small, or assign partitions by hand).
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Iterator

import pytest

from daemon.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run one embedded Kafka broker for the session and yield its bootstrap address."""
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("tansu") / "broker.log")
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic() -> str:
    """Return a topic name unique to this test."""
    return f"test.{uuid.uuid4().hex}"


def _decimal_settings(context: decimal.Context) -> tuple[object, ...]:
    return (context.prec, context.rounding, context.Emin, context.Emax, dict(context.traps))


@pytest.fixture(autouse=True)
def decimal_context_untouched() -> Iterator[None]:
    """Fail a test that leaves the process-wide Decimal context changed, and restore it.

    Money math runs in the ambient context; a library that rewrites it (ccxt does, in
    place) would silently change every later result. The offender is named here.
    """
    context = decimal.getcontext()
    before = _decimal_settings(context)
    saved = context.copy()
    yield
    after = _decimal_settings(decimal.getcontext())
    if after != before:
        decimal.setcontext(saved)
        pytest.fail(f"this test changed the process-wide Decimal context: {before} -> {after}")
