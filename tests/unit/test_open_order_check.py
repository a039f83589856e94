"""OpenOrderCheck against a scripted venue: what is reported, what is not, and a venue that cannot answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from connectors.errors import OrderNotFound, VenueUnreachable
from connectors.registry import client_order_id
from connectors.trading import OrderReport
from router.ledger import Ledger, LegIntent
from router.open_orders import OpenOrderCheck


class ScriptedVenue:
    """Lists `listed` as its open orders (or raises `failure`); answers queries from `queried`."""

    def __init__(self) -> None:
        self.listed: list[OrderReport] = []
        self.queried: dict[str, OrderReport] = {}
        self.failure: Exception | None = None
        self.cancelled: list[str] = []

    async def open_orders(self) -> list[OrderReport]:
        if self.failure is not None:
            raise self.failure
        return list(self.listed)

    async def query_order(self, symbol: str, cid: str) -> OrderReport:
        if cid not in self.queried:
            raise OrderNotFound("-2013", "Order does not exist.", 400, venue="okx")
        return self.queried[cid]

    async def cancel_order(self, symbol: str, cid: str) -> OrderReport:
        self.cancelled.append(cid)
        raise AssertionError("the check must never cancel an order")


def report(cid: str, *, is_open: bool = True) -> OrderReport:
    return OrderReport(
        symbol="BTC-USDT",
        venue_order_id=f"v-{cid}",
        client_order_id=cid,
        side="sell",
        status="live" if is_open else "filled",
        is_open=is_open,
        price=Decimal("70000"),
        orig_qty=Decimal("0.2"),
        executed_qty=Decimal("0.05"),
        cumulative_quote_qty=Decimal("3500"),
        time_ms=1,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path) as opened:
        yield opened


def sent_leg(ledger: Ledger, request_id: str, venue: str = "okx", *, settled: bool = False) -> str:
    cid = client_order_id(venue, request_id, 0)
    ledger.claim(request_id, "desk", b"{}", now_ns=1)
    ledger.record_leg_intent(
        LegIntent(request_id, 0, venue, cid, "sell", Decimal("0.2"), None, "intent", None)
    )
    ledger.mark_leg(request_id, 0, "sent")
    if settled:
        ledger.mark_leg(request_id, 0, "settled", b'{"filled": "0.2"}')
    return cid


def gauge(venue: str) -> float | None:
    return REGISTRY.get_sample_value("smartroute_unknown_venue_orders", {"venue": venue})


def failures(venue: str) -> float:
    return REGISTRY.get_sample_value("smartroute_open_orders_check_failures_total", {"venue": venue}) or 0.0


async def test_only_orders_that_are_not_legs_in_flight_are_reported(ledger: Ledger) -> None:
    venue = ScriptedVenue()
    in_flight = sent_leg(ledger, "r-flight")
    done_then_gone = sent_leg(ledger, "r-gone", settled=True)  # listed open, settled before the look-up
    done_still_open = sent_leg(ledger, "r-open", settled=True)
    other_venue = sent_leg(ledger, "r-bybit", venue="bybit")  # ours, but on another venue
    venue.listed = [report(c) for c in ("by-hand", in_flight, done_then_gone, done_still_open, other_venue)]
    venue.queried = {
        done_then_gone: report(done_then_gone, is_open=False),
        done_still_open: report(done_still_open),
    }
    check = OpenOrderCheck({"okx": venue}, ledger, clock_ns=lambda: 42)  # type: ignore[dict-item]

    found = (await check.check())["okx"]

    assert [(o.client_order_id, o.finding) for o in found.unknown] == [
        ("by-hand", "unknown"),
        (done_still_open, "settled"),
        (other_venue, "unknown"),
    ]
    assert (found.checked_ns, found.open_orders, found.error) == (42, 5, None)
    assert found.unknown[0].as_message() == {
        "venue": "okx", "symbol": "BTC-USDT", "client_order_id": "by-hand", "venue_order_id": "v-by-hand",
        "side": "sell", "quantity": "0.2", "executed_quantity": "0.05", "price": "70000",
        "status": "live", "finding": "unknown",
    }  # fmt: skip
    assert gauge("okx") == 3 and venue.cancelled == []


async def test_a_venue_that_cannot_list_keeps_its_last_findings_and_is_counted(ledger: Ledger) -> None:
    venue = ScriptedVenue()
    venue.listed = [report("by-hand")]
    check = OpenOrderCheck({"kraken": venue}, ledger)  # type: ignore[dict-item]
    await check.check()
    before = failures("kraken")
    venue.failure = VenueUnreachable("kraken: connection refused")
    found = (await check.check())["kraken"]
    assert found.error == "kraken: connection refused"
    assert [o.client_order_id for o in found.unknown] == ["by-hand"] and gauge("kraken") == 1
    assert failures("kraken") == before + 1
    status = check.status()["kraken"]
    assert status["error"] == "kraken: connection refused"  # type: ignore[index]


async def test_the_periodic_pass_runs_every_interval_until_stopped(ledger: Ledger) -> None:
    venue = ScriptedVenue()
    check = OpenOrderCheck({"bybit": venue}, ledger)  # type: ignore[dict-item]
    stop = asyncio.Event()
    task = asyncio.create_task(check.run(stop, 0.01))
    async with asyncio.timeout(5):
        while "bybit" not in check.status():  # noqa: ASYNC110 - the pass is the task's own
            await asyncio.sleep(0.005)
    venue.listed = [report("later")]
    async with asyncio.timeout(5):
        while gauge("bybit") != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    stop.set()
    async with asyncio.timeout(1):
        await task
