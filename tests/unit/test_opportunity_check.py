"""An arbitrage request that names an opportunity_id executes only while that opportunity is open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from test_smart_router import FEES, World

from router.detector import ArbitrageDetector, Opportunity
from router.opportunities import (
    DetectorOpportunities,
    InvalidOpportunity,
    OpenOpportunity,
    OpportunityBook,
)

S = 1_000_000_000


class Opportunities:
    """An OpenOpportunities holding whatever the test says is open."""

    def __init__(self, *open_now: OpenOpportunity) -> None:
        self.open = {o.id: o for o in open_now}

    async def find(self, opportunity_id: str) -> OpenOpportunity | None:
        return self.open.get(opportunity_id)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "state")
    w.book("binance", [("99", "5")], [("100", "2")])
    w.book("bybit", [("101", "2")], [("102", "5")])  # buy binance 100, sell bybit 101: pays 0.799
    yield w
    w.ledger.close()


def arbitrage(request_id: str, **fields: str) -> bytes:
    message = {"v": 1, "request_id": request_id, "user_id": "u1", "kind": "arbitrage", "symbol": "BTC-USDT"}
    message |= {"quantity": "1", "buy_venue": "binance", "sell_venue": "bybit"}
    return orjson.dumps(message | fields)


def opportunity(id_: str = "opp-1", *, expires_ns: int = 0, **fields: str) -> OpenOpportunity:
    values = {"symbol": "BTC-USDT", "buy_venue": "binance", "sell_venue": "bybit"} | fields
    return OpenOpportunity(id_, values["symbol"], values["buy_venue"], values["sell_venue"], expires_ns)


async def result_of(w: World, raw: bytes) -> dict[str, object]:
    result: dict[str, object] = orjson.loads((await w.router.handle(raw)).result or b"")
    return result


async def test_an_open_opportunity_is_executed_on_the_books(world: World) -> None:
    world.follow(Opportunities(opportunity(expires_ns=world.clock.now_ns + S)))
    result = await result_of(world, arbitrage("a1", opportunity_id="opp-1"))
    assert result["status"] == "filled", result
    assert len(world.executor.sent) == 2


@pytest.mark.parametrize(
    ("open_now", "says"),
    [
        ((), "opportunity opp-1 is not open: it closed, or this router never saw it open"),
        ((opportunity("opp-2"),), "opportunity opp-1 is not open"),
        ((opportunity(sell_venue="okx"),), "and sold on okx, and this request is BTC-USDT bought on binance"),
        ((opportunity(buy_venue="okx"),), "is BTC-USDT bought on okx and sold on bybit"),
        ((opportunity(symbol="ETH-USDT"),), "is ETH-USDT bought on binance"),
    ],
)
async def test_an_opportunity_not_open_as_named_is_rejected_and_nothing_is_sent(
    world: World, open_now: tuple[OpenOpportunity, ...], says: str
) -> None:
    far = world.clock.now_ns + S
    world.follow(
        Opportunities(*(OpenOpportunity(o.id, o.symbol, o.buy_venue, o.sell_venue, far) for o in open_now))
    )
    result = await result_of(world, arbitrage("a1", opportunity_id="opp-1"))
    assert (result["status"], result["reject_code"]) == ("rejected", "opportunity_closed")
    assert says in str(result["message"]) and "nothing was executed" in str(result["message"])
    assert world.executor.sent == []


async def test_an_opportunity_past_its_expiry_is_closed_for_requests(world: World) -> None:
    now = world.clock.now_ns
    world.follow(Opportunities(opportunity(expires_ns=now)))
    result = await result_of(world, arbitrage("a1", opportunity_id="opp-1"))
    assert (result["status"], result["reject_code"]) == ("rejected", "opportunity_closed")
    assert f"expired at {now} (now {now})" in str(result["message"])
    world.follow(Opportunities(opportunity(expires_ns=now + 1)))
    assert (await result_of(world, arbitrage("a2", opportunity_id="opp-1")))["status"] == "filled"


async def test_without_an_opportunity_id_only_the_books_decide(world: World) -> None:
    world.follow(Opportunities())
    assert (await result_of(world, arbitrage("a1")))["status"] == "filled"


async def test_a_router_that_follows_no_opportunities_cannot_execute_one_by_id(world: World) -> None:
    # the fixture's router was built without any opportunities to follow
    result = await result_of(world, arbitrage("a1", opportunity_id="opp-1"))
    assert (result["status"], result["reject_code"]) == ("rejected", "opportunity_closed")
    assert "follows no opportunities" in str(result["message"])


async def test_the_detector_of_the_same_process_says_what_is_open(world: World) -> None:
    events: list[Opportunity] = []
    detector = ArbitrageDetector(world.cache, FEES, events.append, wall_clock_ns=world.clock)
    world.follow(DetectorOpportunities(detector))
    detector.evaluate("BTC-USDT")
    [opened] = events
    assert (opened.event, opened.buy_venue, opened.sell_venue) == ("opened", "binance", "bybit")
    assert (await result_of(world, arbitrage("a1", quantity="0.5", opportunity_id=opened.id)))[
        "status"
    ] == "filled"

    world.book("bybit", [("100.1", "2")], [("102", "5")])  # the spread is gone: the detector closes it
    detector.evaluate("BTC-USDT")
    assert [e.event for e in events] == ["opened", "closed"]
    result = await result_of(world, arbitrage("a2", quantity="0.5", opportunity_id=opened.id))
    assert (result["status"], result["reject_code"]) == ("rejected", "opportunity_closed")


def event(kind: str, id_: str = "o1", expires_ns: int = 10 * S, **fields: object) -> dict[str, object]:
    message: dict[str, object] = {"v": 1, "event": kind, "id": id_, "symbol": "BTC-USDT"}
    message |= {"buy_venue": "binance", "sell_venue": "bybit", "expires_ns": expires_ns, "quantity": "1"}
    return message | fields


def test_the_book_holds_what_opened_or_updated_until_closed_or_expired() -> None:
    book = OpportunityBook()
    book.apply(event("opened", expires_ns=5 * S), now_ns=S)
    assert book.get("o1") == OpenOpportunity("o1", "BTC-USDT", "binance", "bybit", 5 * S)
    book.apply(event("updated", expires_ns=7 * S), now_ns=2 * S)
    assert book.get("o1") == OpenOpportunity("o1", "BTC-USDT", "binance", "bybit", 7 * S)
    book.apply(event("closed"), now_ns=3 * S)
    assert book.get("o1") is None
    book.apply(event("updated", "o2", expires_ns=4 * S), now_ns=3 * S)  # seen first as updated: open
    assert book.get("o2") is not None
    assert book.purge(now_ns=4 * S) == 1 and len(book) == 0


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ([1], "must be a JSON object"),
        (event("opened", v=2), "v must be 1"),
        (event("reopened"), "event must be"),
        (event("opened", id=""), "id must be a non-empty string"),
        (event("opened", sell_venue=3), "sell_venue must be a non-empty string"),
        (event("opened", expires_ns="9"), "expires_ns must be an integer"),
    ],
)
def test_an_unusable_event_changes_nothing_and_says_why(message: object, says: str) -> None:
    book = OpportunityBook()
    book.apply(event("opened"), now_ns=S)
    with pytest.raises(InvalidOpportunity, match=says):
        book.apply(message, now_ns=S)
    assert book.get("o1") is not None and len(book) == 1
