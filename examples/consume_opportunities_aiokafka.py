"""Read smartroute's arbitrage opportunities, act on the first one, and print its execution result.

    python examples/consume_opportunities_aiokafka.py --bootstrap-servers 127.0.0.1:9092 --kind arbitrage

Plain aiokafka (`pip install aiokafka`), no smartroute import. Messages are JSON objects with
"v": 1; decimals are strings and stay strings. The message schemas are in schemas/.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
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


async def first_open_opportunity(consumer: AIOKafkaConsumer) -> dict[str, Any]:
    async for record in consumer:
        opportunity: dict[str, Any] = json.loads(record.value)
        if opportunity.get("v") == 1 and opportunity["event"] != "closed":
            return opportunity
    raise RuntimeError("the opportunities consumer stopped")


async def watch_from_end(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, topic: str) -> None:
    """Read `topic` from its current end, so a result produced from now on cannot be missed."""
    # The producer fetches the topic's metadata (consumer.partitions_for_topic() knows only topics
    # the consumer already tracks, and Apache Kafka sends none at bootstrap).
    partitions = await producer.partitions_for(topic)
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist")
    assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
    consumer.assign(assigned)
    for partition, offset in (await consumer.end_offsets(assigned)).items():
        consumer.seek(partition, offset)


async def result_for(consumer: AIOKafkaConsumer, request_id: str) -> dict[str, Any]:
    key = request_id.encode()
    while True:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                if record.key == key:  # results are keyed by request_id
                    result: dict[str, Any] = json.loads(record.value)
                    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers, prefix = args.bootstrap_servers, args.topic_prefix
    reset = "earliest" if args.from_beginning else "latest"
    # No group_id: this reader keeps no committed offsets. A long-running consumer would use one.
    async with (
        AIOKafkaConsumer(
            prefix + "opportunities", bootstrap_servers=servers, auto_offset_reset=reset
        ) as feed,
        AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False) as results,
        AIOKafkaProducer(bootstrap_servers=servers) as producer,
    ):
        opportunity = await first_open_opportunity(feed)
        request = order_request(opportunity, args.kind, args.user_id)
        await watch_from_end(results, producer, prefix + "results")
        value = json.dumps(request).encode()
        await producer.send_and_wait(
            prefix + "orders",
            value,
            key=request["request_id"].encode(),
            headers=signed_headers(value, args.user_id, args.key),
        )
        sys.stderr.write(f"sent {request['request_id']} on opportunity {opportunity['id']}\n")
        return await result_for(results, request["request_id"])


def main() -> int:
    args = parse_args()
    try:
        result = asyncio.run(asyncio.wait_for(run(args), args.timeout_s))
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
