"""Failure isolation: a request whose venue stays dark is held by the settler, never stops the router."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY
from test_smart_router import CountingExecutor, World, order, three_books

from router.errors import ExecutionError, ResultNotPublished
from router.execution import LegOutcome, OrderLeg
from router.ledger import Ledger
from router.legs import intent_of
from router.settler import Backoff, Settler
from router.smart import SmartRouter


class DarkExecutor(CountingExecutor):
    """Paper fills, but a venue in `dark` executes the order and loses the answer, then cannot be asked."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.dark: set[str] = set()
        self.truth: dict[str, LegOutcome] = {}  # what the venue did, by client order id

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        outcome = await super().execute(leg)
        if leg.venue in self.dark:
            self.truth[leg.client_order_id] = outcome
            raise ExecutionError(f"{leg.venue} order {leg.client_order_id}: outcome still unknown")
        return outcome

    async def recover(self, leg: OrderLeg, *, acknowledged: bool = False) -> LegOutcome:
        self.recovered.append(leg)
        if leg.venue in self.dark:
            raise ExecutionError(f"{leg.venue} order {leg.client_order_id}: outcome still unknown")
        return self.truth.get(leg.client_order_id) or await super().recover(leg, acknowledged=acknowledged)


class Monotonic:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


class Published:
    """The results topic: what the settler published, by request_id; can refuse for a while."""

    def __init__(self) -> None:
        self.results: dict[str, bytes] = {}
        self.refuse = 0

    async def __call__(self, request_id: str, result: bytes) -> None:
        if self.refuse:
            self.refuse -= 1
            raise ResultNotPublished("broker unreachable")
        assert request_id not in self.results, f"{request_id} answered twice"
        self.results[request_id] = result


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "state", executor=DarkExecutor)
    w.router.settler.monotonic = Monotonic()
    yield w
    w.ledger.close()


def dark(w: World) -> DarkExecutor:
    assert isinstance(w.executor, DarkExecutor)
    return w.executor


def advance(w: World, seconds: float) -> None:
    clock = w.router.settler.monotonic
    assert isinstance(clock, Monotonic)
    clock.now_s += seconds


def advance_router(router: SmartRouter, seconds: float) -> None:
    clock = router.settler.monotonic
    assert isinstance(clock, Monotonic)
    clock.now_s += seconds


def unsettled_gauge() -> float | None:
    return REGISTRY.get_sample_value("smartroute_requests_unsettled")


async def test_a_request_to_a_dark_venue_stays_in_flight_and_the_next_one_is_answered(world: World) -> None:
    three_books(world)
    dark(world).dark.add("binance")

    held = await world.router.handle(order("r-dark"))

    assert held.request_id == "r-dark" and held.result is None  # not answered now, no guess
    assert [rid for rid, _ in world.ledger.in_flight()] == ["r-dark"]
    assert [leg.state for leg in world.ledger.legs("r-dark")] == ["sent"]
    [unsettled] = world.router.settler.unsettled()
    assert unsettled.request_id == "r-dark" and "outcome still unknown" in unsettled.last_error
    assert unsettled_gauge() == 1
    # The next request, routed to another venue, is answered meanwhile.
    world.book("binance", [("90", "5")], [("110", "5")])
    answered = await world.router.handle(order("r-next"))
    result = orjson.loads(answered.result or b"")
    assert result["status"] == "filled" and result["fills"][0]["venue"] == "bybit"


async def test_a_redelivery_of_a_held_request_is_answered_with_nothing_and_never_sent_again(
    world: World,
) -> None:
    three_books(world)
    dark(world).dark.add("binance")
    await world.router.handle(order("r-dark"))

    again = await world.router.handle(order("r-dark"))

    assert again.result is None and not again.executed
    assert [leg.request_id for leg in dark(world).sent] == ["r-dark"]
    assert dark(world).recovered == []  # the settler owns it: the redelivery does not even ask the venue


async def test_the_settler_answers_the_request_once_the_venue_returns(world: World) -> None:
    three_books(world)
    dark(world).dark.add("binance")
    await world.router.handle(order("r-dark"))
    published = Published()

    assert await world.router.settler.step(published) == 0  # not due before the first backoff
    advance(world, 1.0)
    assert await world.router.settler.step(published) == 0  # still dark: tried, failed
    [unsettled] = world.router.settler.unsettled()
    assert unsettled.attempts == 1
    dark(world).dark.clear()
    advance(world, 1.0)
    assert await world.router.settler.step(published) == 0  # the backoff doubled: not due yet
    advance(world, 1.0)
    assert await world.router.settler.step(published) == 1

    result = orjson.loads(published.results["r-dark"])
    assert result["status"] == "filled" and result["fills"][0]["venue"] == "binance"
    assert world.ledger.result_for("r-dark") == published.results["r-dark"]
    assert world.router.settler.unsettled() == [] and world.ledger.owed() == []
    assert unsettled_gauge() == 0
    assert [leg.request_id for leg in dark(world).sent] == ["r-dark"]  # sent once, ever
    replay = await world.router.handle(order("r-dark"))
    assert replay.replayed and replay.result == published.results["r-dark"]
    assert world.risk.positions.net("BTC") == Decimal(1)  # its fill counts once it is known


async def test_a_result_not_acknowledged_is_published_again_without_settling_again(world: World) -> None:
    three_books(world)
    dark(world).dark.add("binance")
    await world.router.handle(order("r-dark"))
    dark(world).dark.clear()
    published = Published()
    published.refuse = 1

    advance(world, 1.0)
    assert await world.router.settler.step(published) == 0
    assert world.ledger.owed()[0].result is not None  # settled and stored, still owed
    advance(world, 2.0)
    assert await world.router.settler.step(published) == 1

    assert len(dark(world).recovered) == 1
    assert world.ledger.owed() == []


async def test_the_settler_retries_with_capped_exponential_backoff(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.claim("r-1", "u1", order("r-1"), now_ns=1)
        clock = Monotonic()
        pauses: list[float] = []
        tries: list[float] = []
        stop = asyncio.Event()

        async def settle(request_id: str, raw: bytes) -> bytes:
            tries.append(clock.now_s)
            if len(tries) < 8:
                raise ExecutionError("venue dark")
            result = b'{"request_id": "r-1"}'
            ledger.complete(request_id, result, now_ns=2)
            return result

        async def sleep(seconds: float) -> None:
            pauses.append(seconds)
            clock.now_s += seconds

        async def publish(request_id: str, result: bytes) -> None:
            stop.set()

        settler = Settler(ledger, settle, backoff=Backoff(1.0, 60.0), monotonic=clock, sleep=sleep)
        await settler.hold("r-1", order("r-1"), "venue dark")
        await asyncio.wait_for(settler.run(stop, publish), 5)

        assert pauses[:8] == [1, 2, 4, 8, 16, 32, 60, 60]
        assert [t - 1000.0 for t in tries] == [1, 3, 7, 15, 31, 63, 123, 183]
        assert settler.unsettled() == [] and ledger.owed() == []


async def test_recovery_at_start_holds_the_request_it_cannot_settle_and_answers_the_others(
    world: World,
) -> None:
    three_books(world)
    dark(world).dark.add("binance")
    await world.router.handle(order("r-dark"))
    # A crash left another request in flight, its leg sent to bybit (which answers).
    world.ledger.claim("r-crash", "u1", order("r-crash"), now_ns=world.clock())
    leg = OrderLeg("r-crash", 0, "bybit", "BTC-USDT", "buy", Decimal(1), Decimal(101))
    world.ledger.record_leg_intent(intent_of(leg))
    world.ledger.mark_leg("r-crash", 0, "sent")

    restarted = world.make_router()  # a restart over the same ledger; binance still dark
    restarted.settler.monotonic = Monotonic()
    results = await restarted.recover()

    assert [orjson.loads(r)["request_id"] for r in results] == ["r-crash"]
    assert [u.request_id for u in restarted.settler.unsettled()] == ["r-dark"]
    published = Published()
    assert await restarted.settler.step(published) == 0  # owed by the previous run: tried at once, dark
    dark(world).dark.clear()
    advance_router(restarted, 2.0)
    assert await restarted.settler.step(published) == 1
    assert orjson.loads(published.results["r-dark"])["status"] == "filled"


async def test_recovery_at_start_survives_a_request_it_cannot_settle(world: World) -> None:
    """The old behaviour let the venue's error out of recover(): the start failed, again and again."""
    world.ledger.claim("r-crash", "u1", order("r-crash"), now_ns=world.clock())
    leg = OrderLeg("r-crash", 0, "binance", "BTC-USDT", "buy", Decimal(1), Decimal(101))
    world.ledger.record_leg_intent(intent_of(leg))
    world.ledger.mark_leg("r-crash", 0, "sent")
    dark(world).dark.add("binance")

    assert await world.make_router().recover() == []

    assert [o.request_id for o in world.ledger.owed()] == ["r-crash"]


async def test_a_result_owed_by_a_previous_run_is_published_from_the_ledger_at_start(world: World) -> None:
    world.ledger.claim("r-owed", "u1", order("r-owed"), now_ns=1)
    world.ledger.owe("r-owed", since_ns=1, error="venue dark")
    world.ledger.complete("r-owed", b'{"stored": true}', now_ns=2)  # a crash came before its publication

    restarted = world.make_router()
    assert await restarted.recover() == []
    published = Published()
    assert await restarted.settler.step(published) == 1

    assert published.results == {"r-owed": b'{"stored": true}'}
    assert dark(world).recovered == []  # settled already: only published


async def test_the_python_api_says_a_held_request_is_settled_in_the_background(world: World) -> None:
    three_books(world)
    dark(world).dark.add("binance")

    with pytest.raises(ExecutionError, match="in flight: settled in the background"):
        await world.router.execute_with_preferences("BTC-USDT", "buy", "1", "u1")

    assert len(world.router.settler.unsettled()) == 1
