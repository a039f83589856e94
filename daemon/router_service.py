"""The order-router service: `smartroute.orders` in, `smartroute.results` (and DLQ entries) out.

Exactly-once effect, built on the ledger rather than on Kafka transactions
(which the test broker does not offer and real clusters need not be trusted
with): a partition's offset is committed only up to its lowest request whose
results the broker has not acknowledged (`acks="all"`). A crash before the
commit makes Kafka redeliver those requests; the ledger answers each
redelivered request with its stored result instead of executing it again.

Up to `[router] max_in_flight` requests are answered at once; requests with
one Kafka key (else one request_id) one after another, in offset order
(`daemon.in_flight`), so a slow or dark venue delays only the requests queued
behind it with the same key.

Results go out through the process's one producer, the Publisher's
(`Publisher.send_and_wait`), acknowledged before the commit.

Control (`halt`/`resume`) and preferences are read by group-less followers
(`daemon.kafka.followers`) from the first offset, so every process sees every
message in order. No order request is consumed before both have been read up
to the end offsets they had when the service started: a halt or a preference
written while the router was down governs the first request it handles. After
that, a halt takes effect before the next request fetched after it arrives.

Each order request is aged by its record's timestamp (`request_enqueued`: CreateTime or
LogAppendTime, whichever the topic keeps); one older than `[router] max_request_age_ms` when it
is reached is answered `expired` and never executed (`router.request_age`). The group starts a
partition it has no committed offset for at the earliest offset, so a new group (or one whose
offsets the broker expired) reads the topic's whole retention: every old request there is
answered, `expired`, rather than skipped unanswered or executed.

Arbitrage residuals (unhedged quantities) are worked in the background until
flat, from the ledger, so one left by a previous run is resumed
(`SmartRouter.work_residuals`).

With the shared ledger (`[router] ledger_url`) several routers serve one
consumer group: before a rebalance takes partitions away, what is answered is
committed; a request another live router holds is answered by that router, and
the lease keeper (`router.leases`) renews this router's claims and takes over
those of a router gone (README "Running several routers").

A request whose execution or settlement fails (a venue that stays dark) is not
answered in its batch: the ledger holds it in flight with its result owed, and
the background settler (`router.settler`, which states why the batch's offsets
may be committed past it) settles it and publishes its result here, keyed by
request_id. A redelivery of it meanwhile is answered with nothing. The ledger's
retention (`router.retention`) prunes old answered requests in the background.

Order requests are fetched with a short `fetch_max_wait_ms`
(`daemon.kafka.FETCH_MAX_WAIT_MS`): a broker that holds an empty fetch for
its whole wait (Tansu does) would otherwise add ~100 ms to every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import structlog

from daemon.config import KafkaConfig, RouterConfig
from daemon.in_flight import Watermarks, dlq_entry, order_key, request_enqueued
from daemon.kafka import (
    FETCH_MAX_WAIT_MS,
    Consumer,
    ConsumerRecord,
    Group,
    KafkaError,
    Publisher,
    TopicFollower,
    TopicPartition,
    new_consumer,
    record_consumer_lag,
    start_unless_stopped,
)
from daemon.metrics import ROUTER_COMMIT_FAILURES, UNAUTHENTICATED_SETTINGS
from daemon.opportunities import LOOKBACK_MS, FollowedOpportunities
from router.errors import ResultNotPublished, RouterError
from router.kill_switch import KillSwitch
from router.metrics import HALTED
from router.open_orders import OpenOrderCheck
from router.opportunities import InvalidOpportunity
from router.per_key import PerKey
from router.preferences import PreferenceStore
from router.retention import LedgerPruner
from router.signatures import Unauthenticated
from router.signed_settings import SettingsGuard
from router.smart import SmartRouter

__all__ = ["RouterService", "dlq_entry", "request_enqueued"]

log = structlog.get_logger(__name__)

_POLL_MS = 100
# Control and preferences need no millisecond latency (a halt applies within ~50 ms at this wait, even
# on Tansu): their idle followers fetch 10 times a second rather than 50.
_SETTINGS_FETCH_MAX_WAIT_MS = 100
_RETRY_DELAY_S = 1.0


class RouterService:
    """Run the SmartRouter on Kafka: recover, then consume orders, control and preferences."""

    def __init__(
        self,
        kafka: KafkaConfig,
        settings: RouterConfig,
        router: SmartRouter,
        preferences: PreferenceStore,
        kill_switch: KillSwitch,
        publisher: Publisher,
        *,
        guard: SettingsGuard,
        opportunities: FollowedOpportunities | None = None,
        open_orders: OpenOrderCheck | None = None,
        pruner: LedgerPruner | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.open_orders = open_orders  # live: checked before readiness, then every reconcile_interval_ms
        self.opportunities = opportunities  # followed from the topic when no detector runs in this process
        self.pruner = pruner  # prunes old answered requests from the ledger (None: keeps everything)
        self.router = router
        self.preferences = preferences
        self.kill_switch = kill_switch
        self.guard = guard  # who may halt, resume and change preferences (signed, fresh, in order)
        self.orders_topic = kafka.topic("orders")
        self.results_topic = kafka.topic("results")
        self.dlq_topic = kafka.topic("dlq")
        self.reconciled = asyncio.Event()
        self._settings_followers: dict[str, TopicFollower] = {}  # control and preferences, by topic
        self._publisher = publisher  # started by the caller; closed by it once run() returned

    async def run(self, stop: asyncio.Event) -> None:
        """Recover in-flight requests, then serve until `stop`; the current batch always completes."""
        try:
            for result in await self.router.recover():
                await self._send_all([(self.results_topic, _request_key(result), result)])
            if self.open_orders is not None:  # after recovery: the legs it settled are no longer in flight
                await self.open_orders.check()
            self.reconciled.set()
            HALTED.set(1 if self.kill_switch.halted else 0)
            log.info("router_ready", halted=self.kill_switch.halted)
            followers = self._followers()
            async with asyncio.TaskGroup() as tg:
                for follower in followers:
                    tg.create_task(follower.run(stop), name=follower.topic)
                tg.create_task(self._serve_orders(stop, followers), name="orders")
                if self.open_orders is not None:
                    interval_s = self.settings.reconcile_interval_ms / 1000
                    tg.create_task(self.open_orders.run(stop, interval_s), name="open-orders")
                tg.create_task(self.router.work_residuals(stop), name="residuals")
                tg.create_task(self.router.settle_in_background(stop, self._publish_result), name="settler")
                tg.create_task(self.router.leases.run(stop), name="leases")
                if self.pruner is not None:
                    tg.create_task(self.pruner.run(stop), name="ledger-retention")
        finally:
            log.info("router_stopped")

    def _followers(self) -> list[TopicFollower]:
        """Return the followers of control, preferences (and opportunities), bounded by request_timeout_ms."""
        timeout_s = self.kafka.request_timeout_ms / 1000
        followers = [
            TopicFollower(
                self.kafka,
                self.kafka.topic(name),
                apply,
                timeout_s=timeout_s,
                fetch_max_wait_ms=_SETTINGS_FETCH_MAX_WAIT_MS,
            )
            for name, apply in (("control", self._on_control), ("preferences", self._on_preferences))
        ]
        self._settings_followers = {follower.topic: follower for follower in followers}
        if self.opportunities is not None:
            topic = self.kafka.topic("opportunities")
            follower = TopicFollower(
                self.kafka, topic, self._on_opportunity, timeout_s=timeout_s, lookback_ms=LOOKBACK_MS
            )
            self.opportunities.follower = follower
            followers.append(follower)
        return followers

    async def _serve_orders(self, stop: asyncio.Event, followers: list[TopicFollower]) -> None:
        started = time.monotonic()
        group = Group(self.settings.group_id, self.settings.session_timeout_ms)
        marks = Watermarks()

        async def revoked(partitions: frozenset[TopicPartition]) -> None:
            await self._commit_answered(consumer, marks)  # what is answered is committed before they go
            marks.forget(partitions)
            log.info("router_partitions_revoked", partitions=sorted(p.partition for p in partitions))

        consumer = new_consumer(
            self.kafka,
            self.orders_topic,
            group=group,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            on_revoked=revoked,
        )
        # The followers catch up while the group join runs; nothing fetched is handled before they did.
        if not await start_unless_stopped(consumer, stop):
            return
        try:
            if not await _until_caught_up(followers, stop):
                return
            log.info(
                "router_serving",
                waited_s=round(time.monotonic() - started, 3),
                halted=self.kill_switch.halted,
                caught_up=[f.topic for f in followers],
            )
            await self._serve_in_flight(consumer, marks, stop)
        finally:
            await consumer.stop()  # offsets were committed as requests were answered; nothing is pending

    async def _serve_in_flight(self, consumer: Consumer, marks: Watermarks, stop: asyncio.Event) -> None:
        """Answer up to max_in_flight requests at once, a key at a time; commit under the lowest open one."""
        slots = asyncio.Semaphore(self.settings.max_in_flight)
        keys = PerKey()
        try:
            async with asyncio.TaskGroup() as tg:
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=self.settings.max_batch)
                    for partition, records in batches.items():
                        for record in records:
                            await slots.acquire()  # full: no new request starts until one is answered
                            marks.started(partition, record.offset)
                            answer = self._answer(partition, record, stop, marks.answered)
                            task = tg.create_task(keys.run(order_key(record), answer), name="order")
                            task.add_done_callback(lambda _: slots.release())
                    await self._commit_answered(consumer, marks)
                    await record_consumer_lag(consumer, self.orders_topic, self.settings.group_id)
        finally:
            await self._commit_answered(consumer, marks)  # what was answered before the stop (or the error)

    async def _answer(
        self,
        partition: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        stop: asyncio.Event,
        answered: Callable[[TopicPartition, int], None],
    ) -> None:
        """Handle one request and publish its results; it is answered once the broker acknowledged them."""
        handled = await self.router.handle(
            record.value or b"",
            received_ns=time.time_ns(),
            headers=record.headers,
            enqueued=request_enqueued(record),
        )
        outgoing: list[tuple[str, bytes | None, bytes]] = []
        if handled.result is not None and handled.request_id is not None:
            outgoing.append((self.results_topic, handled.request_id.encode(), handled.result))
        if handled.invalid is not None:
            entry = dlq_entry(record, handled.invalid.message, handled.invalid.reject_code)
            outgoing.append((self.dlq_topic, record.key, entry))
        while True:
            try:
                await self._send_all(outgoing)
            except KafkaError as exc:
                # Not committed until acknowledged: sent again, or read again after a stop.
                log.error("router_results_not_acknowledged", error=repr(exc), partition=partition.partition)
                if stop.is_set():
                    return
                await asyncio.sleep(_RETRY_DELAY_S)
                continue
            answered(partition, record.offset)
            return

    async def _commit_answered(self, consumer: Consumer, marks: Watermarks) -> None:
        """Commit every partition whose watermark moved, all in one request (one round trip)."""
        if moved := marks.committable():
            await self._commit(consumer, moved)

    async def _commit(self, consumer: Consumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit answered batches; a refused commit is expected around rebalances and is never fatal.

        Whoever owns a partition next reads those requests again and answers them from the
        ledger with the stored results; a later commit on the partition covers these offsets too.
        """
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            ROUTER_COMMIT_FAILURES.inc()
            log.warning(
                "router_commit_failed",
                error=repr(exc),
                offsets={str(partition.partition): offset for partition, offset in sorted(offsets.items())},
            )

    async def _publish_result(self, request_id: str, result: bytes) -> None:
        """Publish a result the settler settled, keyed by request_id, once the broker acknowledged it."""
        try:
            await self._send_all([(self.results_topic, request_id.encode(), result)])
        except KafkaError as exc:
            raise ResultNotPublished(repr(exc)) from exc

    async def _send_all(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send every message and wait until the broker acknowledged all of them."""
        await self._publisher.send_and_wait(messages)

    async def _on_control(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            admitted = self.guard.admit_control(record.value, record.headers, history=self._history(record))
        except Unauthenticated as exc:
            await self._refuse(record, "control", exc)
            return
        if not admitted.apply:
            log.info("control_already_applied", by=admitted.principal, issued_ns=admitted.issued_ns)
            return
        try:
            halted = self.kill_switch.apply(record.value or b"")
        except RouterError as exc:
            log.warning("control_message_invalid", error=str(exc), offset=record.offset)
            await self._dead_letter(record, str(exc), "invalid_control")
            return
        self.guard.control_applied(admitted)
        HALTED.set(1 if halted else 0)
        log.warning(
            "control_applied", halted=halted, reason=self.kill_switch.reason, by=self.kill_switch.issued_by
        )

    async def _on_opportunity(self, record: ConsumerRecord[bytes, bytes]) -> None:
        assert self.opportunities is not None
        try:
            self.opportunities.book.apply(orjson.loads(record.value or b""), time.time_ns())
        except (InvalidOpportunity, orjson.JSONDecodeError) as exc:
            log.warning("opportunity_message_invalid", error=str(exc), offset=record.offset)
            await self._dead_letter(record, str(exc), "invalid_opportunity")

    async def _on_preferences(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            admitted = self.guard.admit_preferences(
                _text_key(record.key), record.value, record.headers, history=self._history(record)
            )
        except Unauthenticated as exc:
            await self._refuse(record, "preferences", exc)
            return
        if not admitted.apply:
            log.info("preferences_superseded", user_id=admitted.subject, issued_ns=admitted.issued_ns)
            return
        try:
            prefs = self.preferences.apply_message(record.key, record.value)
        except RouterError as exc:
            log.warning("preferences_message_invalid", error=str(exc), offset=record.offset)
            await self._dead_letter(record, str(exc), "invalid_preferences")
            return
        log.info(
            "preferences_applied", user_id=None if prefs is None else prefs.user_id, removed=prefs is None
        )

    def _history(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        follower = self._settings_followers.get(record.topic)
        return follower is not None and follower.historical(record)

    async def _refuse(self, record: ConsumerRecord[bytes, bytes], role: str, exc: Unauthenticated) -> None:
        """Ignore a control or preferences message that is not signed as required; count, log, DLQ it."""
        UNAUTHENTICATED_SETTINGS.labels(role).inc()
        log.warning(f"{role}_message_refused", error=exc.message, signer=exc.signer, offset=record.offset)
        await self._dead_letter(record, exc.message, exc.reject_code)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: str, code: str | None) -> None:
        """Send a followed record that could not be used to the DLQ, with its bytes and why."""
        await self._send_all([(self.dlq_topic, record.key, dlq_entry(record, error, code))])


def _text_key(key: bytes | None) -> str | None:
    try:
        return None if key is None else key.decode()
    except UnicodeDecodeError:
        return None


async def _until_caught_up(followers: list[TopicFollower], stop: asyncio.Event) -> bool:
    """Wait until every follower caught up (True) or `stop` is set (False); a follower's error ends it."""
    caught_up: asyncio.Future[object] = asyncio.ensure_future(
        asyncio.gather(*(f.caught_up.wait() for f in followers))
    )
    stopping: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({caught_up, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        caught_up.cancel()
        stopping.cancel()
    return not stop.is_set()


def _request_key(result: bytes) -> bytes | None:
    request_id = orjson.loads(result).get("request_id")
    return request_id.encode() if isinstance(request_id, str) else None
