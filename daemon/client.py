"""What `smartroute order`, `halt` and `resume` do: a user's first client of the Kafka contract."""

from __future__ import annotations

import asyncio
import getpass
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.config import KafkaConfig
from daemon.errors import ConfigError
from daemon.kafka import AUTHORIZATION_ERRORS, TopicPartition, denied, new_consumer, start_plain_producer
from router.signatures import ROLES, Role, load_private_key, sign


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signs what this client sends (`--signer ID --key FILE`), with their private key."""

    principal: str
    key: Ed25519PrivateKey

    @classmethod
    def from_flags(cls, principal: str | None, key_file: Path | None) -> Signer | None:
        """Return the signer named by the flags, None when neither is given; ConfigError if one is missing."""
        if principal is None and key_file is None:
            return None
        if principal is None or key_file is None:
            raise ConfigError("--signer and --key go together: the principal id and its private key file")
        try:
            return cls(principal, load_private_key(key_file))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def new_request_id() -> str:
    """Return a fresh request id that fits the contract (`[A-Za-z0-9._:-]`, ≤ 64)."""
    return f"cli-{uuid.uuid4().hex}"


def build_order(
    *,
    symbol: str,
    quantity: str,
    user_id: str,
    request_id: str,
    side: str | None = None,
    order_type: str = "market",
    limit_price: str | None = None,
    venues: list[str] | None = None,
    buy_venue: str | None = None,
    sell_venue: str | None = None,
    max_slippage_bps: str | None = None,
) -> dict[str, Any]:
    """Return an order request message; the router validates it (this only assembles the fields)."""
    message: dict[str, Any] = {"v": 1, "request_id": request_id, "user_id": user_id, "symbol": symbol}
    message["quantity"] = quantity
    if buy_venue is not None or sell_venue is not None:
        message |= {"kind": "arbitrage", "buy_venue": buy_venue, "sell_venue": sell_venue}
    else:
        message |= {"kind": "order", "side": side, "order_type": order_type}
        if limit_price is not None:
            message["limit_price"] = limit_price
        if venues:
            message["venues"] = venues
    if max_slippage_bps is not None:
        message["max_slippage_bps"] = max_slippage_bps
    return message


class ResultWaiter:
    """Watch the results topic from its current end, so a result produced after `start` is seen."""

    def __init__(self, kafka: KafkaConfig) -> None:
        self.topic = kafka.topic("results")
        self._consumer = new_consumer(kafka, metadata_max_age_ms=500)

    async def start(self) -> None:
        """Connect and position at the end of every existing partition (or follow a topic yet to exist)."""
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic)
        if partitions:
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            self._consumer.assign(assigned)
            await self._consumer.seek_to_end(*assigned)
        else:
            # No result was ever produced: the first ones will create the topic; read it from the start.
            self._consumer.subscribe([self.topic])

    async def wait(self, request_id: str, timeout_s: float) -> dict[str, Any] | None:
        """Return the first result for `request_id`, or None after `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    batches = await self._consumer.getmany(timeout_ms=200)
                    for records in batches.values():
                        for record in records:
                            if record.key == request_id.encode():
                                result: dict[str, Any] = orjson.loads(record.value)
                                return result
        except TimeoutError:
            return None

    async def close(self) -> None:
        """Disconnect."""
        await self._consumer.stop()


async def send(
    kafka: KafkaConfig, topic: str, key: bytes | None, message: dict[str, Any], signer: Signer | None = None
) -> None:
    """Produce one message (signed for its topic's role when `signer` is given); wait for the broker's ack.

    A principal without the WRITE ACL on `topic` gets KafkaAccessDenied naming the topic.
    """
    value = orjson.dumps(message)
    headers = [] if signer is None else sign(_role(kafka, topic), value, signer.principal, signer.key)
    producer = await start_plain_producer(kafka)
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    except AUTHORIZATION_ERRORS as exc:
        raise denied(exc, kafka, "WRITE", topics=[topic]) from exc
    finally:
        await producer.stop()


async def send_order(
    kafka: KafkaConfig, message: dict[str, Any], timeout_s: float, signer: Signer | None = None
) -> dict[str, Any] | None:
    """Send one order request and return its result, or None if none arrived in time."""
    waiter = ResultWaiter(kafka)
    await waiter.start()
    try:
        request_id = str(message["request_id"])
        await send(kafka, kafka.topic("orders"), request_id.encode(), message, signer)
        return await waiter.wait(request_id, timeout_s)
    finally:
        await waiter.close()


def _role(kafka: KafkaConfig, topic: str) -> Role:
    """Return the role a signature names: the topic without the prefix (orders, preferences, control)."""
    for role in ROLES:
        if topic == kafka.topic(role):
            return role
    raise ValueError(
        f"{topic} is not a signed topic; signed topics: {', '.join(kafka.topic(r) for r in ROLES)}"
    )


def control_message(
    command: str, reason: str, issued_by: str | None, *, issued_ns: int | None = None
) -> dict[str, Any]:
    """Return a Control message (`halt` or `resume`); an empty reason is left out (resume needs none).

    A signed message carries `issued_ns`, so a router can refuse it once stale or replayed.
    """
    message: dict[str, Any] = {"v": 1, "command": command, "issued_by": issued_by or getpass.getuser()}
    if reason:
        message["reason"] = reason
    if issued_ns is not None:
        message["issued_ns"] = issued_ns
    return message


def signed_control_message(
    command: str, reason: str, issued_by: str | None, signer: Signer | None
) -> dict[str, Any]:
    """Return the control message to send: stamped and issued by the signer when there is one."""
    if signer is None:
        return control_message(command, reason, issued_by)
    if issued_by is not None and issued_by != signer.principal:
        raise ConfigError(
            f"--by {issued_by} differs from --signer {signer.principal}: "
            "a signed message is issued by its signer"
        )
    return control_message(command, reason, signer.principal, issued_ns=time.time_ns())
