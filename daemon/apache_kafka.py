"""Run Apache Kafka locally: one broker, or a KRaft cluster of several, for tests and for `make kafka`.

    with ApacheKafka(brokers=3, log_dir=tmp) as cluster:     # or `async with`, or start()/stop()
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap_servers)
        cluster.kill(2)                                      # SIGKILL one broker ...
        cluster.restart(2)                                   # ... and bring it back on its ports

Every node is broker and controller at once (KRaft, no ZooKeeper), on free loopback ports (or
`port` for a single broker). The jars come from `daemon.kafka_jars` (fetched once by Maven
into ~/.cache/smartroute). Storage is formatted in a temporary directory removed at stop.
`start()` returns once every broker answers a metadata request listing all of them. Each
broker logs into `log_dir/broker-N.log` (log4j2, plus the JVM's own output).

A secured listener for tests of TLS, SASL and ACLs: `listeners={"SASL_SSL": "SASL_SSL"}` adds one
more listener per broker (its address: `listener_servers("SASL_SSL")`), configured through
`properties` (`listener.name.sasl_ssl.*`), and `scram_users={"alice": "..."}` creates SCRAM-SHA-512
credentials when the storage is formatted. The PLAINTEXT listener stays: the launcher's readiness
probe and the controller use it, so `super.users` must name `User:ANONYMOUS` once an authorizer runs.

Topics are never auto-created (as on a production cluster): create them with `smartroute
topics create` or an admin client. Consumer groups start at once (no initial rebalance delay)
and accept session timeouts from 500 ms. Each JVM runs in its own process group; stop() (also
run by a finalizer at exit) kills every process it started.

    python -m daemon.apache_kafka [--port 9092] [--brokers 1] [--log-dir DIR]   # `make kafka`; Ctrl-C stops
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import structlog

from daemon.broker import LocalBroker, free_port, probe_metadata, tail
from daemon.errors import EmbeddedBrokerError
from daemon.kafka_jars import KAFKA_VERSION, ensure_jars, java_binary

log = structlog.get_logger(__name__)

_PROBE_INTERVAL_S: Final = 0.05
_JVM_OPTIONS: Final = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
_LOG4J2: Final = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


@dataclass
class _Node:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    log_path: Path
    extra_ports: dict[str, int] = field(default_factory=dict)  # listener name → port
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)


class ApacheKafka(LocalBroker):
    """A KRaft cluster of `brokers` Apache Kafka processes on loopback; see the module docstring."""

    def __init__(
        self,
        *,
        brokers: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: str | os.PathLike[str] | None = None,
        ready_timeout_s: float = 90.0,
        stop_grace_s: float = 10.0,
        heap_mb: int = 384,
        properties: Mapping[str, str] | None = None,
        listeners: Mapping[str, str] | None = None,
        scram_users: Mapping[str, str] | None = None,
    ) -> None:
        if brokers < 1 or (port and brokers != 1):
            raise ValueError("brokers must be ≥ 1, and a fixed port is for a single broker")
        self._count = brokers
        self._host = host
        self._requested_port = port
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._ready_timeout_s = ready_timeout_s
        self._stop_grace_s = stop_grace_s
        self._heap_mb = heap_mb
        self._extra = dict(properties or {})
        self._listeners = dict(listeners or {})  # extra listener name → security protocol
        if {"PLAINTEXT", "CONTROLLER"} & set(self._listeners):
            raise ValueError("the PLAINTEXT and CONTROLLER listeners always exist: name extra ones otherwise")
        self._scram_users = dict(scram_users or {})
        self._nodes: list[_Node] = []
        self._procs: list[subprocess.Popen[bytes]] = []  # every process started, for the finalizer
        self._workdir: Path | None = None
        self._command: list[str] = []
        self._finalizer: weakref.finalize[[list[subprocess.Popen[bytes]]], ApacheKafka] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Return `host:port,...` of every broker, for Kafka clients."""
        if not self._nodes:
            raise RuntimeError("ApacheKafka has not been started")
        return ",".join(f"{self._host}:{n.port}" for n in self._nodes)

    def listener_servers(self, name: str) -> str:
        """Return `host:port,...` of every broker's extra listener `name` (see `listeners`)."""
        if not self._nodes:
            raise RuntimeError("ApacheKafka has not been started")
        return ",".join(f"{self._host}:{n.extra_ports[name]}" for n in self._nodes)

    @property
    def log_paths(self) -> list[Path]:
        """Return each broker's log file, in node order."""
        return [n.log_path for n in self._nodes]

    def start(self) -> None:
        """Format storage and start every broker; return once all answer metadata, else raise."""
        if self._nodes:
            raise RuntimeError("ApacheKafka is already running")
        java = java_binary()
        if java is None:
            raise EmbeddedBrokerError(
                "Apache Kafka needs Java 17+: apt-get install -y openjdk-17-jre-headless"
            )
        jars = ensure_jars()
        self._workdir = Path(tempfile.mkdtemp(prefix="smartroute-kafka-"))
        log_dir = self._log_dir or self._workdir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._command = [java, f"-Xmx{self._heap_mb}m", *_JVM_OPTIONS, "-cp", f"{jars}/*"]
        self._nodes = [self._new_node(i, log_dir) for i in range(1, self._count + 1)]
        self._procs = []
        self._finalizer = weakref.finalize(self, _kill_all, self._procs)
        try:
            self._format(_cluster_id())
            for node in self._nodes:
                self._spawn(node)
            for node in self._nodes:
                self._wait_ready(node)
        except BaseException:
            self.stop()
            raise
        log.info("apache_kafka_started", bootstrap_servers=self.bootstrap_servers, logs=str(log_dir))

    def _new_node(self, node_id: int, log_dir: Path) -> _Node:
        assert self._workdir is not None
        port = self._requested_port or free_port(self._host)
        return _Node(
            node_id=node_id,
            port=port,
            controller_port=free_port(self._host),
            data_dir=self._workdir / f"data-{node_id}",
            log_path=log_dir / f"broker-{node_id}.log",
            extra_ports={name: free_port(self._host) for name in self._listeners},
        )

    def _format(self, cluster_id: str) -> None:
        """Write each node's config and format its storage, all nodes at once."""
        assert self._workdir is not None
        formatting = []
        for node in self._nodes:
            config = self._workdir / f"server-{node.node_id}.properties"
            config.write_text(_properties(self._server_properties(node)), encoding="utf-8")
            (self._workdir / f"log4j2-{node.node_id}.xml").write_text(
                _LOG4J2.format(log=node.log_path), encoding="utf-8"
            )
            args = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)]
            for name, password in self._scram_users.items():
                args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
            formatting.append(
                subprocess.Popen(
                    [*self._command, *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            self._procs.append(formatting[-1])
        for proc in formatting:
            output, _ = proc.communicate(timeout=self._ready_timeout_s)
            if proc.returncode != 0:
                raise EmbeddedBrokerError(
                    f"formatting Kafka storage failed (exit code {proc.returncode}):\n"
                    + output.decode("utf-8", "replace")[-2000:]
                )

    def _server_properties(self, node: _Node) -> dict[str, str]:
        replicas = str(min(self._count, 3))
        voters = ",".join(f"{n.node_id}@{self._host}:{n.controller_port}" for n in self._nodes)
        advertised = [f"PLAINTEXT://{self._host}:{node.port}"]
        advertised += [f"{name}://{self._host}:{port}" for name, port in node.extra_ports.items()]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        protocols += [f"{name}:{protocol}" for name, protocol in self._listeners.items()]
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": ",".join([*advertised, f"CONTROLLER://{self._host}:{node.controller_port}"]),
            "advertised.listeners": ",".join(advertised),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocols),
            "log.dirs": str(node.data_dir),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "offsets.topic.num.partitions": "5",
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "500",
            **self._extra,
        }

    def _spawn(self, node: _Node) -> None:
        assert self._workdir is not None
        node.log_file = node.log_path.open("ab")
        log4j = f"-Dlog4j2.configurationFile={self._workdir / f'log4j2-{node.node_id}.xml'}"
        config = str(self._workdir / f"server-{node.node_id}.properties")
        command = [self._command[0], log4j, *self._command[1:], "kafka.Kafka", config]
        node.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=node.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, never by a terminal's Ctrl-C
        )
        self._procs.append(node.proc)

    def _wait_ready(self, node: _Node) -> None:
        """Wait until `node` answers metadata listing every broker of the cluster."""
        assert node.proc is not None
        deadline = time.monotonic() + self._ready_timeout_s
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise EmbeddedBrokerError(
                    f"Kafka broker {node.node_id} exited at start (exit code {node.proc.returncode}); "
                    f"log {node.log_path}:\n{tail(node.log_path)}"
                )
            try:
                listed = probe_metadata(self._host, node.port)
            except (OSError, struct.error) as exc:
                last_error = repr(exc)
            else:
                if listed >= self._count:
                    return
                last_error = f"{listed} of {self._count} brokers registered"
            time.sleep(_PROBE_INTERVAL_S)  # waiting on another process: there is no clock to inject
        raise EmbeddedBrokerError(
            f"Kafka broker {node.node_id} did not answer metadata on {self._host}:{node.port} within "
            f"{self._ready_timeout_s} s (last: {last_error}); log {node.log_path}:\n{tail(node.log_path)}"
        )

    def kill(self, index: int) -> None:
        """SIGKILL broker `index` (0-based) and its process group, as a crash would."""
        node = self._nodes[index]
        if node.proc is not None:
            _signal_group(node.proc, signal.SIGKILL)
            node.proc.wait()
        self._close_log(node)

    def restart(self, index: int) -> None:
        """Start broker `index` again on its ports and storage; return once it answers metadata."""
        node = self._nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            raise RuntimeError(f"broker {node.node_id} is still running")
        self._spawn(node)
        self._wait_ready(node)
        log.info("apache_kafka_broker_restarted", node_id=node.node_id, port=node.port)

    def wait(self) -> int:
        """Block until any broker exits; return its exit code (for `make kafka` in the foreground)."""
        while True:
            for node in self._nodes:
                if node.proc is not None and (code := node.proc.poll()) is not None:
                    return code
            time.sleep(0.5)  # polling a child process: nothing to await

    def stop(self) -> None:
        """Stop every broker (SIGTERM, then SIGKILL after the grace period) and remove the storage."""
        running = [n.proc for n in self._nodes if n.proc is not None and n.proc.poll() is None]
        for proc in running:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_grace_s
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("apache_kafka_stop_timeout", pid=proc.pid, grace_s=self._stop_grace_s)
        _kill_all(self._procs)
        if self._finalizer is not None:
            self._finalizer.detach()
        for node in self._nodes:
            self._close_log(node)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._nodes:
            log.info("apache_kafka_stopped", bootstrap_servers=self.bootstrap_servers)
        self._nodes = []

    @staticmethod
    def _close_log(node: _Node) -> None:
        if node.log_file is not None:
            node.log_file.close()
            node.log_file = None


def _cluster_id() -> str:
    """Return a random KRaft cluster id: a UUID in URL-safe base64 without padding, as Kafka writes it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _properties(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def _signal_group(proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)  # its own session: the group id is its pid


def _kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL every process still running (the finalizer's last resort, also at interpreter exit)."""
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """`make kafka`: run Apache Kafka in the foreground until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m daemon.apache_kafka", description=main.__doc__)
    parser.add_argument("--port", type=int, default=9092, help="a single broker's client port (9092)")
    parser.add_argument("--brokers", type=int, default=1, help="brokers in the KRaft cluster (1)")
    parser.add_argument("--log-dir", type=Path, default=None, help="where broker-N.log go (a temporary dir)")
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (`&` in a script)
        signal.signal(signum, signal.default_int_handler)
    port = args.port if args.brokers == 1 else 0
    cluster = ApacheKafka(brokers=args.brokers, port=port, log_dir=args.log_dir)
    try:
        cluster.start()
        sys.stdout.write(
            f"Apache Kafka {KAFKA_VERSION} ready at {cluster.bootstrap_servers}; topics are not"
            " auto-created: run `smartroute topics create --config ...`\nlogs: "
            + ", ".join(map(str, cluster.log_paths))
            + "\nCtrl-C stops it and deletes its data\n"
        )
        sys.stdout.flush()
        code = cluster.wait()
        sys.stderr.write(f"a Kafka broker exited (code {code}); see its log\n")
        return 1
    except KeyboardInterrupt:
        return 0
    except EmbeddedBrokerError as exc:
        sys.stderr.write(f"smartroute: {exc}\n")
        return 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
