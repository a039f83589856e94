"""Read smartroute's arbitrage opportunities, act on the first one, and print its execution result.

    python examples/consume_opportunities_confluent.py --bootstrap-servers 127.0.0.1:9092 --kind arbitrage

Plain confluent-kafka (`pip install confluent-kafka`), no smartroute import. Messages are JSON
objects with "v": 1; decimals are strings and stay strings. The message schemas are in schemas/.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DEADLINE_NS = 5_000_000_000  # a request not started within 5 s is rejected, never executed late


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Act on the first smartroute opportunity.")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic-prefix", default="smartroute.")
    parser.add_argument("--user-id", default="example")
    parser.add_argument(
        "--key", default=None, help="sign requests with this Ed25519 key file (smartroute keygen)"
    )
    parser.add_argument("--kind", choices=("order", "arbitrage"), default="order")
    parser.add_argument("--from-beginning", action="store_true", help="also read opportunities already sent")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    return parser.parse_args(argv)


def signed_headers(value: bytes, user_id: str, key_file: str | None) -> list[tuple[str, bytes]]:
    """Sign an order request as its user (Ed25519, `smartroute keygen` key file), or not at all.

    The signature covers b"orders\n" + the value exactly as produced; routers that require
    signatures execute a request only if it verifies with a key configured for its user_id.
    """
    if key_file is None:
        return []
    with open(key_file, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError(f"{key_file} is not an Ed25519 private key")
    signature = base64.b64encode(key.sign(b"orders\n" + value))
    return [("smartroute-signer", user_id.encode()), ("smartroute-signature", signature)]


def order_request(opportunity: dict[str, Any], kind: str, user_id: str) -> dict[str, Any]:
    """Build a request on `opportunity`: buy on its buy venue (order), or both legs (arbitrage)."""
    request: dict[str, Any] = {
        "v": 1,
        "request_id": f"example-{uuid.uuid4().hex}",  # unique: re-sending it never executes twice
        "user_id": user_id,
        "kind": kind,
        "symbol": opportunity["symbol"],
        "quantity": opportunity["quantity"],
        "deadline_ns": time.time_ns() + DEADLINE_NS,
    }
    if kind == "order":
        request |= {"side": "buy", "venues": [opportunity["buy_venue"]]}
    else:
        request |= {
            "buy_venue": opportunity["buy_venue"],
            "sell_venue": opportunity["sell_venue"],
            "opportunity_id": opportunity["id"],
        }
    return request


def assign(consumer: Consumer, topic: str, *, from_beginning: bool) -> None:
    """Read every partition of `topic` from its start, or from its end as it is now."""
    found = consumer.list_topics(topic, timeout=10).topics[topic]
    if found.error is not None or not found.partitions:
        raise RuntimeError(f"topic {topic} is not available: {found.error}")
    partitions = []
    for partition in sorted(found.partitions):
        if from_beginning:
            offset = OFFSET_BEGINNING
        else:  # pin the end now, so a record produced from now on cannot be missed
            _, offset = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        partitions.append(TopicPartition(topic, partition, offset))
    consumer.assign(partitions)


def next_value(consumer: Consumer, deadline: float) -> tuple[bytes | None, bytes]:
    """Return (key, value) of the next record that has a value; raise TimeoutError at `deadline`."""
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            raise RuntimeError(f"consumer error: {error}")
        value = message.value()
        if value is not None:
            return message.key(), value
    raise TimeoutError


def send(
    producer: Producer,
    topic: str,
    key: bytes,
    value: bytes,
    deadline: float,
    headers: list[tuple[str, bytes]],
) -> None:
    """Produce one record (with `headers`) and wait until the broker has it."""
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(error)

    producer.produce(topic, value, key=key, headers=headers, on_delivery=delivered)
    if producer.flush(max(0.0, deadline - time.monotonic())) != 0:
        raise TimeoutError
    if failures:
        raise RuntimeError(f"could not send to {topic}: {failures[0]}")


def run(args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    servers, prefix = args.bootstrap_servers, args.topic_prefix
    # group.id is required by the client; with assign() and no commits, no group is ever joined.
    settings = {"bootstrap.servers": servers, "group.id": "smartroute-example", "enable.auto.commit": False}
    feed, results = Consumer(settings), Consumer(settings)
    producer = Producer({"bootstrap.servers": servers})
    try:
        assign(feed, prefix + "opportunities", from_beginning=args.from_beginning)
        while True:
            opportunity: dict[str, Any] = json.loads(next_value(feed, deadline)[1])
            if opportunity.get("v") == 1 and opportunity["event"] != "closed":
                break
        request = order_request(opportunity, args.kind, args.user_id)
        assign(results, prefix + "results", from_beginning=False)
        request_id = request["request_id"].encode()
        value = json.dumps(request).encode()
        headers = signed_headers(value, args.user_id, args.key)
        send(producer, prefix + "orders", request_id, value, deadline, headers)
        sys.stderr.write(f"sent {request['request_id']} on opportunity {opportunity['id']}\n")
        while True:
            key, value = next_value(results, deadline)
            if key == request_id:  # results are keyed by request_id
                result: dict[str, Any] = json.loads(value)
                return result
    finally:
        feed.close()
        results.close()


def main() -> int:
    args = parse_args()
    try:
        result = run(args, time.monotonic() + args.timeout_s)
    except TimeoutError:
        sys.stderr.write(f"no opportunity, or no result for it, within {args.timeout_s} s\n")
        return 1
    except RuntimeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
