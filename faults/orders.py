"""Order requests into a router and every result back, as the scenarios that drive a router need them.

`Requests` sends raw request values to the orders topic (a plain acks="all" producer) and reads
the results topic from its beginning with a group-less consumer, keeping every result of every
request id, in the order they arrived (a redelivered request may be answered more than once).

    async with Requests(cfg) as requests:
        await requests.send([order_request("r-1", 0, "BTC-USDT")])
        results = await requests.wait_for({"r-1"}, timeout_s=30)     # {"r-1": [result, ...]}
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self

import orjson

from daemon.app import Daemon
from daemon.config import Config
from daemon.kafka import Consumer, Producer, new_consumer, start_plain_producer

_POLL_MS: Final = 100


class Requests:
    """Send order requests and collect every result, per request id."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.results: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.raw: defaultdict[str, list[bytes]] = defaultdict(list)
        self._consumer: Consumer = new_consumer(cfg.kafka, cfg.topic("results"), fetch_max_wait_ms=10)
        self._producer: Producer | None = None

    async def __aenter__(self) -> Self:
        self._producer = await start_plain_producer(self.cfg.kafka)
        await self._consumer.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self._consumer.stop()

    async def send(self, values: Iterable[bytes]) -> int:
        """Send each value (keyed by its request_id, as clients do) and wait until all are acknowledged."""
        assert self._producer is not None, "use `async with Requests(cfg)`"
        topic = self.cfg.topic("orders")
        futures = []
        for value in values:
            key = str(orjson.loads(value).get("request_id", "")).encode()
            futures.append(await self._producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
        return len(futures)

    async def poll(self, timeout_ms: int = _POLL_MS) -> int:
        """Read what arrived on the results topic; return how many results."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        count = 0
        for records in batches.values():
            for record in records:
                value = record.value or b"{}"
                request_id = str(orjson.loads(value).get("request_id"))
                self.results[request_id].append(orjson.loads(value))
                self.raw[request_id].append(value)
                count += 1
        return count

    async def wait_for(
        self, request_ids: Collection[str], timeout_s: float
    ) -> dict[str, list[dict[str, Any]]]:
        """Read until every id in `request_ids` has a result (TimeoutError past `timeout_s`)."""
        async with asyncio.timeout(timeout_s):
            while any(request_id not in self.results for request_id in request_ids):
                await self.poll()
        return {request_id: self.results[request_id] for request_id in request_ids}

    async def settle(self, quiet_s: float, timeout_s: float) -> None:
        """Read until nothing new arrived for `quiet_s` (at most `timeout_s`): catches late duplicates."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last = loop.time()
        while loop.time() - last < quiet_s and loop.time() < deadline:
            if await self.poll():
                last = loop.time()


@contextlib.asynccontextmanager
async def serving_router(
    cfg: Config, timeout_s: float = 60.0, *, stop_timeout_s: float | None = None
) -> AsyncIterator[Daemon]:
    """Run a daemon with the feeds and route roles (`smartroute route`) for the block, once reconciled.

    It must be reconciled within `timeout_s` (a daemon that stops before raises its error) and
    stop within `stop_timeout_s` (default: `timeout_s`).
    """
    daemon, stop = Daemon(cfg, roles=frozenset({"feeds", "route"})), asyncio.Event()
    running = asyncio.create_task(daemon.run(stop), name="faults-router")
    try:
        assert daemon.router_service is not None
        async with asyncio.timeout(timeout_s):
            ready = asyncio.ensure_future(daemon.router_service.reconciled.wait())
            await asyncio.wait({ready, running}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                await running  # it stopped before it was ready: its error goes up
                raise RuntimeError("the router stopped before it reconciled")
        yield daemon
    finally:
        stop.set()
        async with asyncio.timeout(timeout_s if stop_timeout_s is None else stop_timeout_s):
            await running


def status_of(result: Mapping[str, object]) -> str:
    """Return a result's status, with its reject code when it has one: "filled", "rejected:expired"."""
    code = result.get("reject_code")
    return str(result.get("status")) + ("" if code is None else f":{code}")
