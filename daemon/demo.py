"""`smartroute demo`: the whole system on one machine, for a first look.

Starts the embedded Kafka broker (Tansu) and the exchange simulator, runs
`smartroute run` as a child process against both, and prints the arbitrage
opportunities it publishes, read back from Kafka as they arrive. It sends a
market order, then arbitrage requests on the first opportunities opened once
the router answers, and reports each one's reaction time: opportunity
published (its `detected_ns`) → order executed (the result's `completed_ns`).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from connectors.registry import ADAPTERS
from connectors.sim import ExchangeSimulator
from connectors.types import VENUE_IDS
from daemon.broker import EmbeddedBroker
from daemon.config import KafkaConfig
from daemon.kafka import Producer, new_consumer, start_plain_producer
from daemon.logs import configure_logging
from router.signatures import public_key_text, sign

DEMO_VENUES = VENUE_IDS
# Each venue keeps a local order book of this many levels, synced its own way (REST snapshot + diffs,
# snapshot + deltas, sequence numbers, checksums): the detector sizes opportunities on depth.
DEMO_DEPTH = {"binance": 20, "bybit": 50, "okx": 20, "coinbase": 20, "kraken": 10}
DEMO_SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
DEMO_USER = "demo"  # the desk the demo trades as; its requests are signed, as a live router requires
# Dislocations often enough that a first look shows opportunities within seconds (~25 a minute).
DEMO_DISLOCATION_PROBABILITY = 0.02
_STOP_GRACE_S = 15.0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def demo_config(
    bootstrap: str, sim: ExchangeSimulator, state_dir: Path, http_port: int, user_key: Ed25519PublicKey
) -> str:
    """Return the TOML config the demo's daemon runs with: orders must be signed with `user_key`."""
    lines = [
        "[daemon]",
        'mode = "paper"',
        f"http_port = {http_port}",
        f'state_dir = "{state_dir}"',
        "",
        "[kafka]",
        f'bootstrap_servers = "{bootstrap}"',
        "",
        "[cache]",
        "ttl_ms = 30000",
        "max_quote_age_ms = 1500",
        "",
        "[detector]",
        "min_net_profit_bps = 5",
        "max_notional = 10000",
        "",
        "[router]",
        "session_timeout_ms = 3000  # a lone demo router joins its consumer group in ~1.5 s",
        "",
        "[security]",
        "require_signatures = true  # as live: every request must be signed by its user",
        "",
        f"[users.{DEMO_USER}]",
        f'public_keys = ["{public_key_text(user_key)}"]',
    ]
    for venue in DEMO_VENUES:
        symbols = ", ".join(f'"{s}"' for s in DEMO_SYMBOLS)
        lines += ["", f"[venues.{venue}]", f"symbols = [{symbols}]", f'ws_url = "{sim.ws_url(venue)}"']
        lines += [f"depth = {DEMO_DEPTH[venue]}"]
        if ADAPTERS[venue].default_rest_url is not None:  # its books start from a REST snapshot
            lines += [f'rest_url = "{sim.rest_url(venue)}"']
    return "\n".join(lines) + "\n"


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


async def run_demo(stop: asyncio.Event, *, duration_s: float | None = None, seed: int | None = None) -> None:
    """Run broker, simulator and daemon; print opportunities until `stop` is set or `duration_s` passes."""
    workdir = Path(tempfile.mkdtemp(prefix="smartroute-demo-"))
    started = time.monotonic()
    with (workdir / "demo.log").open("a") as demo_log:
        configure_logging("info", demo_log)  # the terminal is for the opportunities
        await _run(workdir, started, stop, duration_s, seed)


async def _run(
    workdir: Path, started: float, stop: asyncio.Event, duration_s: float | None, seed: int | None
) -> None:
    _say(f"smartroute demo — working directory {workdir}")
    async with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        _say(f"  kafka broker (Tansu) on {broker.bootstrap_servers}")
        sim = ExchangeSimulator(
            DEMO_VENUES, DEMO_SYMBOLS, seed=seed, dislocation_probability=DEMO_DISLOCATION_PROBABILITY
        )
        await sim.start()
        try:
            for venue in DEMO_VENUES:
                _say(f"  exchange simulator: {venue:<8} {sim.ws_url(venue)}")
            http_port = _free_port()
            config = workdir / "smartroute.toml"
            key = Ed25519PrivateKey.generate()  # the demo desk's signing key, never written anywhere
            state = workdir / "state"
            config.write_text(demo_config(broker.bootstrap_servers, sim, state, http_port, key.public_key()))
            daemon = await _start_daemon(config, workdir / "daemon.log")
            _say(
                f"  daemon pid {daemon.pid}: logs {workdir / 'daemon.log'}, metrics http://127.0.0.1:{http_port}/metrics"
            )
            _say(
                "  opportunities from smartroute.opportunities; the demo also sends a market order and, once"
            )
            _say("  the router answered it, arbitrage requests for the next opportunities opened to")
            _say("  smartroute.orders, each with its reaction time (Ctrl-C to stop)\n")
            watcher = _Watcher(broker.bootstrap_servers, key)
            try:
                counts = await watcher.watch(stop, duration_s, started, daemon)
            finally:
                await _stop_daemon(daemon)
        finally:
            await sim.close()
    results = counts.pop("results", 0)
    summary = ", ".join(f"{n} {event}" for event, n in sorted(counts.items())) or "none"
    elapsed = time.monotonic() - started
    _say(f"\nstopped after {elapsed:.0f} s; opportunity events read back from Kafka: {summary}")
    _say(f"order results read back from Kafka: {results}")
    _say(reaction_summary(watcher.reactions))


async def _start_daemon(config: Path, log_path: Path) -> asyncio.subprocess.Process:
    log_file = log_path.open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            "--config",
            str(config),
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    finally:
        log_file.close()  # the child holds its own descriptor


async def _stop_daemon(daemon: asyncio.subprocess.Process) -> None:
    if daemon.returncode is not None:
        return
    daemon.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(daemon.wait(), _STOP_GRACE_S)
    except TimeoutError:
        daemon.kill()
        await daemon.wait()


ORDER_DEMO_ARBITRAGES = 3  # arbitrage requests sent on the first opportunities opened once the router serves
MARKET_ORDER_AFTER_S = 4.0  # the market order goes out on the first opportunity event, or after this
# The demo's own consumer: a fetch that finds nothing waits this long at the broker. Tansu holds it
# for about half of that whatever arrives meanwhile; aiokafka's 500 ms default cost ~100 ms a read.
_FETCH_MAX_WAIT_MS = 20
_ANSWER_WAIT_S = 5.0  # when its time is up, how long the demo waits for the answers to what it sent


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


class _Watcher:
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
        await self.consumer.start()
        producer = self.producer = await start_plain_producer(self.kafka)
        try:
            while not stop.is_set():
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    await self._await_answers(daemon)
                    break
                if daemon.returncode is not None:
                    _say(f"daemon exited with status {daemon.returncode}; see its log")
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
            _say(f"no answer within {_ANSWER_WAIT_S:.0f} s to {', '.join(sorted(self.unanswered))}")

    async def _market_order(self) -> None:
        self.market_order_sent = True
        await self._order("demo-order-1", kind="order", side="buy", quantity="0.0005")

    async def _show(self, topic: str, offset: int, value: bytes | None) -> None:
        read_ns = time.time_ns()
        try:
            message = orjson.loads(value or b"")
            line = describe_result(message) if topic.endswith("results") else describe(message)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            _say(f"unreadable message on {topic} at offset {offset}: {exc!r}")
            return
        _say(line)
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
            _say("  the router is serving: arbitrage requests go out on the next opportunities opened")
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
        _say(f"         {reaction.describe()}")

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
        _say(
            f"  order  {request_id:<16} sent: {fields.get('kind')} {fields.get('quantity')} "
            f"{request['symbol']}"
        )
