"""Funding in planning: a venue that cannot fund its leg is skipped (split: capped), arbitrage sized down."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest

from connectors.types import Quote
from router.arbitrage import NoArbitrage, plan_arbitrage
from router.balances import BalanceBook
from router.cache import PriceCache
from router.execution import PaperExecutor
from router.kill_switch import KillSwitch
from router.ledger import Ledger
from router.preferences import PreferenceStore
from router.request import ArbitrageRequest, RequestRules
from router.risk import RiskGate, RiskLimits
from router.routing import NoRoute, RouteRequest, VenueView, plan_route
from router.smart import SmartRouter

SYMBOL = "BTC-USDT"


def book(venue: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> Quote:
    b = tuple((D(p), D(q)) for p, q in bids)
    a = tuple((D(p), D(q)) for p, q in asks)
    return Quote(venue, SYMBOL, b[0][0], b[0][1], a[0][0], a[0][1], None, 0, 1, b, a)


def view(
    venue: str, fee: str, quote: Quote, base: str | None = None, quote_funds: str | None = None
) -> VenueView:
    return VenueView(
        venue,
        quote,
        10.0,
        D(fee),
        available_base=None if base is None else D(base),
        available_quote=None if quote_funds is None else D(quote_funds),
    )


def route_request(strategy: str = "best_price", side: str = "buy", quantity: str = "0.5") -> RouteRequest:
    return RouteRequest(
        symbol=SYMBOL,
        side=side,  # type: ignore[arg-type]
        quantity=D(quantity),
        limit_price=None,
        max_slippage_bps=D(20),
        strategy=strategy,  # type: ignore[arg-type]
        max_quote_age_ms=1500.0,
        max_venues=2,
    )


# binance (10 bps) asks 100: all-in 100.1; okx (8 bps) asks 100.1: all-in 100.18008 — binance is best.
# A buy of 0.5 on binance is limited at 100 × 1.002 (20 bps slippage) and may cost
# 100.2 × 0.5 × 1.001 = 50.1501 USDT; on okx 100.1 × 1.002 × 0.5 × 1.0008 = 50.19022008.
BINANCE = book("binance", [("99", "1")], [("100", "1")])
OKX = book("okx", [("99", "1")], [("100.1", "1")])


def excluded(considered: tuple[object, ...]) -> dict[str, str | None]:
    return {c.venue: c.excluded for c in considered}  # type: ignore[attr-defined]


def test_best_price_skips_a_venue_that_cannot_fund_its_leg_and_says_so_in_considered() -> None:
    plan = plan_route(
        route_request(), [view("binance", "10", BINANCE, quote_funds="50.15"), view("okx", "8", OKX)]
    )
    assert [leg.venue for leg in plan.legs] == ["okx"]
    assert excluded(plan.considered) == {"binance": "insufficient_balance", "okx": None}
    assert "1 insufficient_balance" in plan.reason
    # Exactly enough is enough.
    funded = plan_route(
        route_request(), [view("binance", "10", BINANCE, quote_funds="50.1501"), view("okx", "8", OKX)]
    )
    assert [leg.venue for leg in funded.legs] == ["binance"]


def test_an_order_no_venue_can_fund_is_rejected_naming_each_venue_asset_need_and_available() -> None:
    views = [view("binance", "10", BINANCE, quote_funds="50"), view("okx", "8", OKX, quote_funds="10")]
    with pytest.raises(NoRoute) as refused:
        plan_route(route_request(), views)
    assert refused.value.reject_code == "insufficient_balance"
    assert refused.value.message == (
        "insufficient balance to buy 0.5 BTC-USDT: "
        "binance insufficient_balance (needs 50.1501 USDT, 50 available); "
        "okx insufficient_balance (needs 50.19022008 USDT, 10 available)"
    )
    sell = [view("binance", "10", BINANCE, base="0.4"), view("okx", "8", OKX, base="0")]
    short = "binance insufficient_balance (needs 0.5 BTC, 0.4 available)"
    with pytest.raises(NoRoute, match=re.escape(short)):
        plan_route(route_request(side="sell"), sell)


def test_split_takes_from_each_venue_only_what_it_can_fund_and_skips_one_that_can_fund_nothing() -> None:
    # binance can fund 50.1501 / (100 × 1.002 × 1.001) = 0.5 of its level; okx takes the other 1.
    views = [view("binance", "10", BINANCE, quote_funds="50.1501"), view("okx", "8", OKX, quote_funds="1000")]
    plan = plan_route(route_request("split", quantity="1.5"), views)
    assert [(leg.venue, leg.quantity) for leg in plan.legs] == [("binance", D("0.5")), ("okx", D("1"))]
    assert "binance eligible" not in plan.reason
    broke = [view("binance", "10", BINANCE, quote_funds="0"), view("okx", "8", OKX, quote_funds="1000")]
    with pytest.raises(NoRoute) as refused:
        plan_route(route_request("split", quantity="1.5"), broke)
    assert refused.value.reject_code == "insufficient_balance"
    assert excluded(refused.value.considered) == {"binance": "insufficient_balance", "okx": None}
    # All binance's book offers (1) would cost 100 × 1.002 × 1.001 = 100.3002.
    assert "binance insufficient_balance (needs 100.3002 USDT, 0 available)" in refused.value.message


def arbitrage(quantity: str = "1") -> ArbitrageRequest:
    return ArbitrageRequest(
        request_id="arb",
        user_id="u",
        symbol=SYMBOL,
        quantity=D(quantity),
        buy_venue="binance",
        sell_venue="bybit",
    )


def arbitrage_views(usdt: str | None, btc: str | None) -> dict[str, VenueView]:
    return {
        "binance": view(
            "binance", "10", book("binance", [("99", "2.5")], [("100", "2.5")]), quote_funds=usdt
        ),
        "bybit": view("bybit", "10", book("bybit", [("101", "2.5")], [("102", "2.5")]), base=btc),
    }


def test_an_arbitrage_is_sized_down_to_what_both_venues_can_fund_and_still_pays() -> None:
    # binance can buy 50.05 / (100 × 1.001) = 0.5; bybit can sell 0.8: the arbitrage is sized to 0.5.
    plan = plan_arbitrage(arbitrage(), arbitrage_views("50.05", "0.8"), D(0), 1500.0)
    assert [leg.quantity for leg in plan.legs] == [D("0.5"), D("0.5")]
    # 0.5 × (101 × 0.999 − 100 × 1.001) = 0.5 × 0.799
    assert plan.expected_net_profit == D("0.3995")
    assert "sized down from 1 to 0.5: binance needs 100.1 USDT, 50.05 available" in str(plan.route["reason"])
    # The sell venue binds when it holds less.
    plan = plan_arbitrage(arbitrage(), arbitrage_views(None, "0.3"), D(0), 1500.0)
    assert [leg.quantity for leg in plan.legs] == [D("0.3"), D("0.3")]


def test_an_arbitrage_a_venue_cannot_fund_at_all_is_rejected_before_any_leg() -> None:
    with pytest.raises(NoArbitrage) as refused:
        plan_arbitrage(arbitrage(), arbitrage_views("1000", "0"), D(0), 1500.0)
    assert refused.value.reject_code == "insufficient_balance"
    assert refused.value.message == (
        "bybit cannot fund any of selling 1 BTC-USDT: it needs 1 BTC, 0 available; nothing was executed"
    )


def test_a_sized_down_arbitrage_that_no_longer_pays_is_rejected() -> None:
    views = arbitrage_views("50.05", None)
    views["bybit"] = view("bybit", "10", book("bybit", [("100.1", "2.5")], [("102", "2.5")]))
    with pytest.raises(NoArbitrage) as refused:
        plan_arbitrage(arbitrage(), views, D(0), 1500.0)
    assert refused.value.reject_code == "no_opportunity"
    assert "buying 0.5 BTC-USDT" in refused.value.message


class World:
    def __init__(self, state: Path, balances: dict[str, dict[str, D]]) -> None:
        fees = {"binance": D(10), "bybit": D(10)}
        self.cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=30_000)
        self.ledger = Ledger.open(state)
        self.balances = BalanceBook(balances)
        self.router = SmartRouter(
            self.cache,
            PaperExecutor(self.cache, fees),
            self.ledger,
            PreferenceStore({}, known_venues=("binance", "bybit")),
            RiskGate(RiskLimits(D(1_000_000), 100, D(5_000_000))),
            KillSwitch(self.ledger),
            RequestRules(frozenset(fees), frozenset({SYMBOL})),
            fees,
            balances=self.balances,
        )

    async def send(self, request_id: str, **fields: object) -> dict[str, object]:
        message = {"v": 1, "request_id": request_id, "user_id": "u", "kind": "order", "symbol": SYMBOL}
        message |= {"max_slippage_bps": "0"} | fields
        return orjson.loads((await self.router.handle(orjson.dumps(message))).result or b"")  # type: ignore[no-any-return]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "state", {"binance": {"USDT": D("1000"), "BTC": D("1")}, "bybit": {"USDT": D("0")}})
    w.cache.update(book("binance", [("99", "5")], [("100", "5")]))
    w.cache.update(book("bybit", [("99", "5")], [("99.5", "5")]))
    yield w
    w.ledger.close()


async def test_paper_fills_move_the_balances_and_an_unfundable_order_is_rejected(world: World) -> None:
    # bybit is cheaper but holds no USDT: the buy goes to binance, 5 × 100 + fee 0.5 = 500.5 USDT.
    result = await world.send("b1", side="buy", quantity="5")
    assert result["status"] == "filled" and {f["venue"] for f in result["fills"]} == {"binance"}  # type: ignore[attr-defined]
    considered = {c["venue"]: c["excluded"] for c in result["route"]["considered"]}  # type: ignore[index]
    assert considered == {"binance": None, "bybit": "insufficient_balance"}
    assert world.balances.available("binance", "USDT") == D("499.5")
    assert world.balances.available("binance", "BTC") == D("6")
    # Another 5 would cost 500.5 > 499.5 (bybit: 5 × 99.5 × 1.001): rejected, nothing sent or moved.
    refused = await world.send("b2", side="buy", quantity="5")
    assert (refused["status"], refused["reject_code"]) == ("rejected", "insufficient_balance")
    assert "binance insufficient_balance (needs 500.5 USDT, 499.5 available)" in str(refused["message"])
    assert "bybit insufficient_balance (needs 497.9975 USDT, 0 available)" in str(refused["message"])
    assert world.balances.available("binance", "USDT") == D("499.5")
    # A sell of 2 at 99, fee 0.198: USDT 499.5 + 198 − 0.198 = 697.302, BTC 6 − 2 = 4.
    assert (await world.send("s1", side="sell", quantity="2"))["status"] == "filled"
    assert world.balances.available("binance", "USDT") == D("697.302")
    assert world.balances.available("binance", "BTC") == D("4")
    assert (await world.send("b3", side="buy", quantity="5"))["status"] == "filled"
    assert world.balances.available("binance", "USDT") == D("196.802")  # 697.302 − 500.5


async def test_paper_balances_are_rebuilt_from_the_ledger_after_a_restart(world: World) -> None:
    assert (await world.send("b1", side="buy", quantity="2"))["status"] == "filled"
    assert (await world.send("s1", side="sell", quantity="1"))["status"] == "filled"
    # Buy 2 @ 100 (fee 0.2), sell 1 @ 99 (fee 0.099): USDT 1000 − 200.2 + 98.901 = 898.701, BTC 2.
    expected = {"USDT": D("898.701"), "BTC": D("2")}
    assert {a: world.balances.available("binance", a) for a in expected} == expected
    configured = BalanceBook({"binance": {"USDT": D("1000"), "BTC": D("1")}, "bybit": {"USDT": D("0")}})
    restarted = SmartRouter(
        world.cache,
        PaperExecutor(world.cache, {"binance": D(10), "bybit": D(10)}),
        world.ledger,
        PreferenceStore({}, known_venues=("binance", "bybit")),
        RiskGate(RiskLimits(D(1_000_000), 100, D(5_000_000))),
        KillSwitch(world.ledger),
        RequestRules(frozenset({"binance", "bybit"}), frozenset({SYMBOL})),
        {"binance": D(10), "bybit": D(10)},
        balances=configured,
    )
    await restarted.recover()  # replays the ledger's fills onto the configured starting balances
    assert {a: configured.available("binance", a) for a in expected} == expected
