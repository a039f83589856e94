"""The demo's desk: it reads opportunities and results from Kafka, prints them, and sends a few orders.

`Desk.watch` prints each opportunity event and execution result as it arrives,
sends one market order (its answer says the router is serving), then signed
arbitrage requests on the next opportunities opened, as a desk watching the
topic would, and times each: opportunity published (its `detected_ns`) → order
executed (the result's `completed_ns`). `reaction_summary` sums those times up.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.config import KafkaConfig
from daemon.kafka import Producer, new_consumer, start_plain_producer
from router.signatures import sign

__all__ = ["DEMO_USER", "Desk", "Reaction", "describe", "describe_result", "reaction_summary", "say"]

DEMO_USER = "demo"  # the desk the demo trades as; its requests are signed, as a live router requires

ORDER_DEMO_ARBITRAGES = 3  # arbitrage requests sent on the first opportunities opened once the router serves
MARKET_ORDER_AFTER_S = 4.0  # the market order goes out on the first opportunity event, or after this
# The demo's own consumer: a fetch that finds nothing waits this long at the broker. Tansu holds it
# for about half of that whatever arrives meanwhile; aiokafka's 500 ms default cost ~100 ms a read.
_FETCH_MAX_WAIT_MS = 20
_ANSWER_WAIT_S = 5.0  # when its time is up, how long the demo waits for the answers to what it sent


def say(line: str) -> None:
    """Print one line to the terminal now."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _px(value: object) -> str:
    """Show a price for people: exact VWAPs carry up to 28 digits, the screen needs 6 decimals at most."""
    if value is None:
        return "-"
    text = f"{Decimal(str(value)):.6f}".rstrip("0").rstrip(".")
    return text or "0"


def describe(event: dict[str, Any]) -> str:
    """Return one human line for an opportunity message."""
    base, quote = event["symbol"].split("-")
    buy, sell = _px(event["buy_price"]), _px(event["sell_price"])
    return (
        f"{event['event']:>7}  {event['symbol']:<9} buy {event['buy_venue']:<8} @ {buy:<12} "
        f"sell {event['sell_venue']:<8} @ {sell:<12} qty {event['quantity']} {base}  "
        f"net {Decimal(event['net_profit']):.2f} {quote} ({event['net_spread_bps']} bps after fees)"
    )


def describe_result(result: dict[str, Any]) -> str:
    """Return one human line for an execution result message."""
    head = f" result  {result['request_id']:<16} {result['kind'] or '?':<9} {result['status']:<16}"
    if result["status"] == "rejected":
        return f"{head} {result['reject_code']}: {result['message']}"
    arbitrage = result.get("arbitrage")
    if isinstance(arbitrage, dict):
        a = arbitrage
        return (
            f"{head} bought {a['bought']} @ {_px(a['buy_avg_price'])} on {a['buy_venue']}, "
            f"sold {a['sold']} @ {_px(a['sell_avg_price'])} on {a['sell_venue']}, "
            f"net cash flow {Decimal(a['net_cash_flow']):.4f}"
        )
    venues = ",".join(sorted({f["venue"] for f in result["fills"]})) or "-"
    return (
        f"{head} {result['filled_quantity']} @ {result['avg_price']} on {venues}, fees {result['fees_total']}"
    )


@dataclass(frozen=True, slots=True)
class Reaction:
    """One arbitrage request's path, in wall-clock ns: opportunity published → order executed."""

    status: str
    published_ns: int  # the opportunity's detected_ns: the detector published it then
    read_ns: int  # the demo read it from Kafka
    sent_ns: int  # the demo began sending its request
    received_ns: int  # the router took the request (the result's received_ns)
    completed_ns: int  # the router finished executing it (the result's completed_ns)

    @property
    def total_ms(self) -> float:
        """Return the reaction time: opportunity published → order executed."""
        return (self.completed_ns - self.published_ns) / 1e6

    def describe(self) -> str:
        """Return where the time went, stage by stage."""
        read, sent = _ms(self.published_ns, self.read_ns), _ms(self.read_ns, self.sent_ns)
        taken, executed = _ms(self.sent_ns, self.received_ns), _ms(self.received_ns, self.completed_ns)
        return (
            f"reaction {self.total_ms:.0f} ms = read by the demo {read} + request built {sent} "
            f"+ taken by the router {taken} + executed {executed} ms"
        )


def _ms(start_ns: int, end_ns: int) -> str:
    return f"{(end_ns - start_ns) / 1e6:.0f}"


def reaction_summary(reactions: list[Reaction]) -> str:
    """Return the summary line of the arbitrage requests' outcomes and reaction times."""
    if not reactions:
        return "arbitrage requests answered: none"
    outcomes = Counter(r.status for r in reactions)
    counted = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
    times = sorted(r.total_ms for r in reactions)
    return (
        f"arbitrage requests answered: {counted}; reaction time, opportunity published → order executed: "
        f"median {statistics.median(times):.0f} ms (fastest {times[0]:.0f} ms, slowest {times[-1]:.0f} ms)"
    )


@dataclass(frozen=True, slots=True)
class _Sent:
    published_ns: int
    read_ns: int
    sent_ns: int


class Desk:
    """Print opportunities and results as they arrive; send a few order requests along the way.

    The market order goes first: its result says the router is serving (it joined its consumer
    group, which takes a second or two after start). Arbitrage requests then go out at once on the
    next opportunities opened, as a desk watching the topic would send them.
    """

    def __init__(self, bootstrap: str, key: Ed25519PrivateKey) -> None:
        self.key = key  # signs every request as DEMO_USER
        self.counts: Counter[str] = Counter()
        self.sent = 0
        self.market_order_sent = False
        self.router_serving = False
        self.pending: dict[str, _Sent] = {}  # arbitrage requests sent and not answered yet
        self.unanswered: set[str] = set()  # every request sent and not answered yet
        self.closing = False  # the demo's time is up: no more requests
        self.reactions: list[Reaction] = []
        self.kafka = KafkaConfig(bootstrap_servers=(bootstrap,))
        self.consumer = new_consumer(
            self.kafka,
            "smartroute.opportunities",
            "smartroute.results",
            fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
            metadata_max_age_ms=500,  # the topics appear on the daemon's first publish; notice them quickly
        )
        self.producer: Producer | None = None

    async def watch(
        self,
        stop: asyncio.Event,
        duration_s: float | None,
        started: float,
        daemon: asyncio.subprocess.Process,
    ) -> Counter[str]:
        """Print and answer until `stop`, `duration_s` after `started` or the daemon's exit; return counts."""
        await self.consumer.start()
        producer = self.producer = await start_plain_producer(self.kafka)
        try:
            while not stop.is_set():
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    await self._await_answers(daemon)
                    break
                if daemon.returncode is not None:
                    say(f"daemon exited with status {daemon.returncode}; see its log")
                    break
                if not self.market_order_sent and time.monotonic() - started >= MARKET_ORDER_AFTER_S:
                    await self._market_order()
                await self._read()
        finally:
            await producer.stop()
            await self.consumer.stop()
        return self.counts

    async def _read(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=250)
        for records in batches.values():
            for record in records:
                await self._show(record.topic, record.offset, record.value)

    async def _await_answers(self, daemon: asyncio.subprocess.Process) -> None:
        """Send nothing more; read on until every request sent was answered (at most `_ANSWER_WAIT_S`)."""
        self.closing = True
        deadline = time.monotonic() + _ANSWER_WAIT_S
        while self.unanswered and daemon.returncode is None and time.monotonic() < deadline:
            await self._read()
        if self.unanswered:
            say(f"no answer within {_ANSWER_WAIT_S:.0f} s to {', '.join(sorted(self.unanswered))}")

    async def _market_order(self) -> None:
        self.market_order_sent = True
        await self._order("demo-order-1", kind="order", side="buy", quantity="0.0005")

    async def _show(self, topic: str, offset: int, value: bytes | None) -> None:
        read_ns = time.time_ns()
        try:
            message = orjson.loads(value or b"")
            line = describe_result(message) if topic.endswith("results") else describe(message)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            say(f"unreadable message on {topic} at offset {offset}: {exc!r}")
            return
        say(line)
        if topic.endswith("results"):
            self._on_result(message)
            return
        self.counts[message["event"]] += 1
        if self.closing:
            return
        if not self.market_order_sent:
            await self._market_order()  # the feeds are live: books on two venues at least
        if message["event"] == "opened" and self.router_serving and self.sent < ORDER_DEMO_ARBITRAGES:
            self.sent += 1
            request_id = f"demo-arb-{self.sent}"
            self.pending[request_id] = _Sent(message["detected_ns"], read_ns, time.time_ns())
            await self._order(
                request_id,
                kind="arbitrage",
                symbol=message["symbol"],
                quantity=message["quantity"],
                buy_venue=message["buy_venue"],
                sell_venue=message["sell_venue"],
                opportunity_id=message["id"],
            )

    def _on_result(self, result: dict[str, Any]) -> None:
        self.counts["results"] += 1
        self.unanswered.discard(result["request_id"])
        if result["request_id"] == "demo-order-1" and not self.router_serving:
            self.router_serving = True
            say("  the router is serving: arbitrage requests go out on the next opportunities opened")
        sent = self.pending.pop(result["request_id"], None)
        if sent is None:
            return
        reaction = Reaction(
            result["status"],
            sent.published_ns,
            sent.read_ns,
            sent.sent_ns,
            result["received_ns"],
            result["completed_ns"],
        )
        self.reactions.append(reaction)
        say(f"         {reaction.describe()}")

    async def _order(self, request_id: str, **fields: str) -> None:
        request = {"v": 1, "request_id": request_id, "user_id": DEMO_USER, "symbol": "BTC-USDT", **fields}
        if self.producer is None:
            raise RuntimeError("the demo's producer is not started")
        self.unanswered.add(request_id)
        value = orjson.dumps(request)
        headers = sign("orders", value, DEMO_USER, self.key)
        await self.producer.send_and_wait(
            "smartroute.orders", value, key=request_id.encode(), headers=headers
        )
        say(
            f"  order  {request_id:<16} sent: {fields.get('kind')} {fields.get('quantity')} "
            f"{request['symbol']}"
        )
