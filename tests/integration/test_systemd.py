"""systemd integration against a fake NOTIFY_SOCKET, and /readyz following Kafka and the venues.

The fake systemd is a datagram socket read by a thread, so arrival times are right even while a
test blocks its own event loop on purpose.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import structlog
from kafka_support import create_daemon_topics

from connectors.sim import ExchangeSimulator
from daemon.app import Daemon
from daemon.broker import EmbeddedBroker
from daemon.config import load_config
from daemon.systemd import Notifier, SystemdError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


# ── a fake systemd ─────────────────────────────────────────────────────────────


class FakeSystemd:
    """An AF_UNIX datagram socket that records (monotonic arrival time, message) from a thread."""

    def __init__(self, path: str | None = None) -> None:
        self.name = path if path is not None else f"@smartroute-test-{uuid.uuid4().hex}"
        self.address = "\0" + self.name[1:] if self.name.startswith("@") else self.name
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.address)
        self._sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._messages: list[tuple[float, str]] = []
        self._running = True
        self._thread = threading.Thread(target=self._read, name="fake-systemd", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._messages.append((time.monotonic(), data.decode()))

    def messages(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._messages)

    def times_of(self, message: str) -> list[float]:
        return [at for at, text in self.messages() if message in text.split("\n")]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - another thread or process: no event to await
                await asyncio.sleep(0.01)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self._sock.close()
        if not self.name.startswith("@"):
            Path(self.name).unlink(missing_ok=True)


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd()
    try:
        yield fake
    finally:
        fake.close()


class RecordingNotifier(Notifier):
    """A Notifier that records, by the injected clock, when each watchdog ping was sent."""

    def __init__(self, systemd: FakeSystemd, interval_s: float, clock: Callable[[], float]) -> None:
        super().__init__(systemd.address, watchdog_interval_s=interval_s)
        self.clock = clock
        self.pings: list[float] = []

    def watchdog(self) -> bool:
        self.pings.append(round(self.clock(), 6))
        return super().watchdog()


class Stop(Exception):
    pass


def scripted_sleep(now: list[float], lags: list[float]) -> Callable[[float], Any]:
    """Advance `now` by each requested delay plus the next scripted lag; stop when the script ends."""

    async def sleep(delay_s: float) -> None:
        if not lags:
            raise Stop
        now[0] += delay_s + lags.pop(0)

    return sleep


# ── Notifier ───────────────────────────────────────────────────────────────────


async def test_without_notify_socket_every_call_is_a_harmless_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    assert notifier.ready() is False and notifier.stopping() is False and notifier.watchdog() is False
    async with asyncio.timeout(1):
        await notifier.watchdog_loop()  # no watchdog requested: returns at once


async def test_ready_status_and_stopping_reach_an_abstract_socket(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": systemd.name})
    assert notifier.enabled
    assert notifier.ready("running: 2 venues")
    assert notifier.status("line one\nWATCHDOG=1")  # a newline must not forge a second assignment
    assert notifier.stopping()
    notifier.close()
    await systemd.wait_for(lambda: len(systemd.messages()) == 3)
    assert [text for _, text in systemd.messages()] == [
        "READY=1\nSTATUS=running: 2 venues",
        "STATUS=line one WATCHDOG=1",
        "STOPPING=1",
    ]


async def test_a_socket_path_in_the_file_system_works_too() -> None:
    directory = tempfile.mkdtemp(prefix="sd-", dir="/tmp")  # AF_UNIX paths are limited to 107 bytes
    fake = FakeSystemd(os.path.join(directory, "notify"))
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": fake.name})
        assert notifier.watchdog()
        await fake.wait_for(lambda: fake.times_of("WATCHDOG=1") != [])
        notifier.close()
    finally:
        fake.close()
        os.rmdir(directory)


def test_a_vanished_socket_is_logged_not_raised() -> None:
    notifier = Notifier(f"/tmp/no-such-dir-{uuid.uuid4().hex}/notify")
    with structlog.testing.capture_logs() as logs:
        assert notifier.ready() is False
    assert [entry["event"] for entry in logs] == ["sd_notify_failed"]
    notifier.close()


def test_notify_refuses_anything_but_single_assignments() -> None:
    notifier = Notifier("/run/systemd/notify")
    for bad in ("READY", "=1", "READY=1\nWATCHDOG=1"):
        with pytest.raises(ValueError, match="KEY=value"):
            notifier.notify(bad)


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"}, 15.0),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "4242"}, 0.5),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # someone else's
        ({"NOTIFY_SOCKET": "@x"}, None),
        ({"WATCHDOG_USEC": "1000000"}, None),  # nobody to ping
    ],
)
def test_the_watchdog_pings_at_half_of_watchdog_usec_and_only_for_its_own_pid(
    environ: dict[str, str], interval_s: float | None
) -> None:
    assert Notifier.from_environ(environ, pid=4242).watchdog_interval_s == interval_s


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"NOTIFY_SOCKET": "run/notify"}, "NOTIFY_SOCKET"),
        ({"NOTIFY_SOCKET": "vsock:2:1234"}, "vsock"),
        ({"NOTIFY_SOCKET": "@"}, "NOTIFY_SOCKET"),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30s"}, "WATCHDOG_USEC"),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "0"}, "WATCHDOG_USEC"),
        ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "me"}, "WATCHDOG_PID"),
    ],
)
def test_malformed_systemd_variables_are_a_clear_error(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SystemdError, match=named):
        Notifier.from_environ(environ, pid=4242)


# ── the watchdog loop, on an injected clock ───────────────────────────────────


async def test_a_healthy_loop_pings_every_half_watchdog_usec(systemd: FakeSystemd) -> None:
    now = [100.0]
    notifier = RecordingNotifier(systemd, 0.5, lambda: now[0])
    with pytest.raises(Stop):
        await notifier.watchdog_loop(clock=lambda: now[0], sleep=scripted_sleep(now, [0.001] * 40))
    # Probes every 0.05 s (a tenth of the interval), each 1 ms late: a ping falls due every 0.5 s
    # and goes out at the first probe after that, so never more than one probe late.
    gaps = [b - a for a, b in itertools.pairwise(notifier.pings)]
    assert notifier.pings == [100.0, 100.51, 101.02, 101.53, 102.04]
    assert all(0.5 <= gap <= 0.5 + 0.051 + 1e-9 for gap in gaps), gaps
    await systemd.wait_for(lambda: len(systemd.times_of("WATCHDOG=1")) == 5)


async def test_a_starved_loop_withholds_pings_until_it_is_healthy_again(systemd: FakeSystemd) -> None:
    now = [0.0]
    notifier = RecordingNotifier(systemd, 1.0, lambda: now[0])
    # Probes of 1/8 s; the bound is a quarter of the interval (0.25 s). Healthy for 1 s, then every
    # probe 0.375 s late for 4 s (starved: still running, but nothing on it is timely), then healthy.
    lags = [0.0] * 8 + [0.375] * 8 + [0.0] * 16
    with structlog.testing.capture_logs() as logs, pytest.raises(Stop):
        await notifier.watchdog_loop(
            probe_interval_s=0.125, clock=lambda: now[0], sleep=scripted_sleep(now, lags)
        )
    # Due at 2.0, 3.0, 4.0 and 5.0 while starved: withheld. The first probe that wakes on time
    # (5.125) sends the overdue ping at once, and the rhythm resumes from there.
    assert notifier.pings == [0.0, 1.0, 5.125, 6.125]
    withheld = [entry for entry in logs if entry["event"] == "watchdog_ping_withheld"]
    assert len(withheld) == 1 and withheld[0]["loop_lag_s"] == 0.375  # one line per unhealthy spell


async def test_a_lag_within_the_bound_does_not_stop_the_pings(systemd: FakeSystemd) -> None:
    now = [0.0]
    notifier = RecordingNotifier(systemd, 1.0, lambda: now[0])
    with pytest.raises(Stop):
        await notifier.watchdog_loop(
            clock=lambda: now[0], sleep=scripted_sleep(now, [0.2] * 20), max_lag_s=0.25
        )
    assert len(notifier.pings) == 6  # 0.3 s per probe for 6 s: one ping per second, none withheld


async def test_the_watchdog_loop_refuses_non_positive_settings() -> None:
    notifier = Notifier("\0unused", watchdog_interval_s=1.0)
    with pytest.raises(ValueError, match="max_lag_s"):
        await notifier.watchdog_loop(max_lag_s=0)


# ── the watchdog loop, on a real event loop ───────────────────────────────────


async def test_pings_stop_while_the_event_loop_is_blocked_and_resume_after(systemd: FakeSystemd) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "200000"})
    pinging = asyncio.create_task(notifier.watchdog_loop(), name="watchdog-under-test")
    try:
        await systemd.wait_for(lambda: len(systemd.times_of("WATCHDOG=1")) >= 3, timeout_s=5)
        blocked_at = time.monotonic()
        time.sleep(0.6)  # noqa: ASYNC251 - blocking the loop on purpose: three ping periods
        unblocked_at = time.monotonic()
        await systemd.wait_for(lambda: systemd.times_of("WATCHDOG=1")[-1] > unblocked_at, timeout_s=5)
    finally:
        pinging.cancel()
        await asyncio.gather(pinging, return_exceptions=True)
        notifier.close()
    pings = systemd.times_of("WATCHDOG=1")
    during = [t for t in pings if blocked_at + 0.05 < t < unblocked_at]
    assert during == [], "a blocked loop must not ping"
    before = max(t for t in pings if t <= blocked_at + 0.05)
    after = min(t for t in pings if t >= unblocked_at)
    assert after - before > 0.2  # longer than WATCHDOG_USEC: systemd would have acted


# ── `smartroute run` under a fake systemd ─────────────────────────────────────


class HeldGate:
    """A TCP relay to `target` that holds every connection, unanswered, until `release()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.held = 0
        self._open = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    def release(self) -> None:
        self._open.set()

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.held += 1
        try:
            await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except OSError:
            pass  # one side went away: the relay ends with it
        finally:
            writer.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def daemon_toml(tmp_path: Path, broker: str, venues: dict[str, str], extra: str = "") -> Path:
    sections = "".join(
        f'\n[venues.{venue}]\nsymbols = ["BTC-USDT", "ETH-USDT"]\nws_url = "{url}"\n'
        for venue, url in venues.items()
    )
    config = tmp_path / "smartroute.toml"
    config.write_text(
        f"""
[daemon]
http_port = {free_port()}  # 0 would turn the endpoint off
http_host = "127.0.0.1"
state_dir = "{tmp_path / "state"}"
shutdown_timeout_ms = 3000

[kafka]
bootstrap_servers = "{broker}"
topic_prefix = "t{uuid.uuid4().hex[:12]}."
request_timeout_ms = 5000

[router]
session_timeout_ms = 2000
{extra}
{sections}"""
    )
    return config


async def test_smartroute_run_notifies_ready_after_start_up_pings_and_stops_cleanly(
    embedded_broker: str, systemd: FakeSystemd, tmp_path: Path
) -> None:
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT", "ETH-USDT"), seed=3) as sim:
        real = urlsplit(sim.ws_url("binance"))
        assert real.port is not None
        gate = HeldGate(real.port)
        await gate.start()
        held_url = urlunsplit(real._replace(netloc=f"127.0.0.1:{gate.port}"))
        config = daemon_toml(tmp_path, embedded_broker, {"binance": held_url, "bybit": sim.ws_url("bybit")})
        await create_daemon_topics(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTROUTE_", "WATCHDOG_"))}
        env.update(NOTIFY_SOCKET=systemd.name, WATCHDOG_USEC="1000000")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon.cli", "run", "--config", str(config),
            cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            # Start-up is under way (pinging, binance's first connection held open): no READY yet.
            await systemd.wait_for(lambda: gate.held >= 1 and len(systemd.times_of("WATCHDOG=1")) >= 3, 20)
            assert systemd.times_of("READY=1") == []
            released_at = time.monotonic()
            gate.release()
            await systemd.wait_for(lambda: systemd.times_of("READY=1") != [], timeout_s=15)
            assert systemd.times_of("READY=1")[0] > released_at
            await sim.wait_subscribed("binance", "BTC-USDT")
            ready_at = systemd.times_of("READY=1")[0]
            await systemd.wait_for(lambda: time.monotonic() > ready_at + 2.5, timeout_s=5)

            proc.send_signal(signal.SIGTERM)
            term_at = time.monotonic()
            async with asyncio.timeout(10):
                _, stderr = await proc.communicate()
            exited_at = time.monotonic()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await gate.close()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert exited_at - term_at < 8  # shutdown_timeout_ms 3 s + margin, far below TimeoutStopSec=30s
    messages = [text for _, text in systemd.messages()]
    assert sum(text.startswith("READY=1") for text in messages) == 1
    assert any(text.startswith("READY=1\nSTATUS=running: 2 venues") for text in messages)
    stopping = systemd.times_of("STOPPING=1")
    assert len(stopping) == 1 and term_at < stopping[0] < exited_at
    pings = [t for t in systemd.times_of("WATCHDOG=1") if t < term_at]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 6
    assert max(gaps) < 1.0, gaps  # always inside WATCHDOG_USEC
    assert 0.45 <= statistics.mean(gaps) <= 0.65, gaps  # half of WATCHDOG_USEC, plus probe granularity


# ── /readyz ────────────────────────────────────────────────────────────────────


@dataclass
class Served:
    daemon: Daemon
    port: int


@asynccontextmanager
async def serving(config: Path) -> AsyncIterator[Served]:
    daemon = Daemon(load_config(config, environ={}))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon-under-test")
    try:
        async with asyncio.timeout(20):
            await daemon.started.wait()
        assert daemon.http is not None
        yield Served(daemon, daemon.http.port)
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task


async def wait_readyz(
    port: int, predicate: Callable[[int, dict[str, Any]], bool], timeout_s: float = 15.0
) -> dict[str, Any]:
    """Poll /readyz until `predicate(status, body)` holds; return the body."""
    last: tuple[int, dict[str, Any]] | None = None
    async with aiohttp.ClientSession() as session:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        last = (response.status, await response.json())
                    if predicate(*last):
                        return last[1]
                    await asyncio.sleep(0.05)  # polling a server: there is no clock to inject
        except TimeoutError:
            raise AssertionError(f"/readyz never matched; last answer: {last}") from None


def ready(status: int, body: dict[str, Any]) -> bool:
    return status == 200 and body["ready"] is True


async def test_readyz_reports_a_stale_venue_as_degraded_and_goes_unready_when_none_is_fresh(
    embedded_broker: str, tmp_path: Path
) -> None:
    async with ExchangeSimulator(("binance", "bybit"), ("BTC-USDT", "ETH-USDT"), seed=5) as sim:
        urls = {venue: sim.ws_url(venue) for venue in ("binance", "bybit")}
        config = daemon_toml(tmp_path, embedded_broker, urls, "[cache]\nmax_quote_age_ms = 1000\n")
        await create_daemon_topics(config)
        async with serving(config) as served:
            await wait_readyz(served.port, lambda s, b: ready(s, b) and len(b["fresh_venues"]) == 2)

            sim.set_silent("bybit", True)
            body = await wait_readyz(served.port, lambda s, b: "bybit" in b["degraded_venues"])
            assert body["ready"] is True, body  # one stale venue degrades, it does not block
            assert body["degraded_venues"]["bybit"]["state"] == "stale"
            assert body["degraded_venues"]["bybit"]["quote_age_ms"] > 1000

            sim.set_silent("binance", True)
            body = await wait_readyz(served.port, lambda s, b: s == 503)
            assert body["ready"] is False and body["not_ready"] == ["no_fresh_venue"], body
            status = served.daemon.status()
            assert status["ready"] is False
            assert status["venues"]["binance"]["freshness"] == "stale"

            sim.set_silent("binance", False)
            sim.set_silent("bybit", False)
            body = await wait_readyz(served.port, lambda s, b: ready(s, b) and not b["degraded_venues"])
            assert body["fresh_venues"] == ["binance", "bybit"]


async def test_readyz_goes_unready_when_the_broker_stops_and_ready_when_it_is_back(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    await asyncio.to_thread(broker.start)
    try:
        async with ExchangeSimulator(("binance",), ("BTC-USDT", "ETH-USDT"), seed=9) as sim:
            config = daemon_toml(tmp_path, broker.bootstrap_servers, {"binance": sim.ws_url("binance")})
            async with serving(config) as served:
                await wait_readyz(served.port, ready)

                await asyncio.to_thread(broker.stop)
                body = await wait_readyz(served.port, lambda s, b: s == 503)
                assert body["not_ready"] == ["kafka_unreachable"], body
                assert body["kafka"]["reachable"] is False and body["kafka"]["error"]

                await asyncio.to_thread(broker.start)  # the same port: clients find it again
                body = await wait_readyz(served.port, ready, timeout_s=20)
                assert body["kafka"]["reachable"] is True
    finally:
        await asyncio.to_thread(broker.stop)
