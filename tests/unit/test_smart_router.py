"""SmartRouter: one request → exactly one execution and one result, in paper mode, without Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest

from connectors.registry import client_order_id
from connectors.types import Quote, decimal_text
from router.access import AccessPolicy
from router.cache import PriceCache
from router.execution import LegOutcome, OrderLeg, PaperExecutor
from router.kill_switch import KillSwitch
from router.ledger import Ledger, LegIntent
from router.opportunities import OpenOpportunities
from router.preferences import PreferenceStore, preferences_from_fields
from router.request import RequestRules
from router.residuals import ResidualSettings
from router.risk import RiskGate, RiskLimits
from router.smart import SmartRouter

MS = 1_000_000
VENUES = ("binance", "bybit", "okx")
FEES = {"binance": Decimal(10), "bybit": Decimal(10), "okx": Decimal(8)}


class Clock:
    def __init__(self) -> None:
        self.now_ns = 1_800_000_000_000 * MS

    def __call__(self) -> int:
        return self.now_ns


class CountingExecutor(PaperExecutor):
    """The paper executor, counting what it is asked to send — the 'exchange' side of the tests."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[OrderLeg] = []
        self.recovered: list[OrderLeg] = []

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        self.sent.append(leg)
        return await super().execute(leg)

    async def recover(self, leg: OrderLeg, *, acknowledged: bool = False) -> LegOutcome:
        self.recovered.append(leg)
        return await super().recover(leg, acknowledged=acknowledged)


class World:
    def __init__(
        self,
        state: Path,
        *,
        residual_policy: str = "unwind",
        users: dict[str, dict[str, object]] | None = None,
        executor: type[CountingExecutor] | None = None,
        residuals: ResidualSettings | None = None,
    ) -> None:
        self.clock = Clock()
        self.cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=self.clock)
        self.ledger = Ledger.open(state)
        self.executor = (executor or CountingExecutor)(self.cache, FEES, clock_ns=self.clock)
        configured = {u: preferences_from_fields(u, f, known_venues=VENUES) for u, f in (users or {}).items()}
        self.kill_switch = KillSwitch(self.ledger, clock_ns=self.clock)
        self.risk = RiskGate(RiskLimits(Decimal(1_000_000), 100, Decimal(5_000_000)), clock_ns=self.clock)
        self.users = configured
        self.residual_policy = residual_policy
        self.residuals = residuals or ResidualSettings(residual_policy)  # type: ignore[arg-type]
        self.access: AccessPolicy | None = None  # who may trade what; None: anyone, anything
        self.router = self.make_router()

    def make_router(self, opportunities: OpenOpportunities | None = None) -> SmartRouter:
        """Return a router over this world's cache, ledger, executor and risk gate."""
        return SmartRouter(
            self.cache,
            self.executor,
            self.ledger,
            PreferenceStore(self.users, known_venues=VENUES),
            self.risk,
            self.kill_switch,
            RequestRules(frozenset(VENUES), frozenset({"BTC-USDT"})),
            FEES,
            residuals=self.residuals,
            opportunities=opportunities,
            access=self.access,
            clock_ns=self.clock,
        )

    def follow(self, opportunities: OpenOpportunities) -> None:
        """Restart the router so that it checks arbitrage requests against `opportunities`."""
        self.router = self.make_router(opportunities)

    def book(self, venue: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        b = tuple((Decimal(p), Decimal(q)) for p, q in bids)
        a = tuple((Decimal(p), Decimal(q)) for p, q in asks)
        self.cache.update(Quote(venue, "BTC-USDT", b[0][0], b[0][1], a[0][0], a[0][1], None, 0, 1, b, a))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "state")
    yield w
    w.ledger.close()


def order(request_id: str = "r-1", **fields: object) -> bytes:
    message: dict[str, object] = {"v": 1, "request_id": request_id, "user_id": "u1", "kind": "order"}
    message |= {"symbol": "BTC-USDT", "side": "buy", "quantity": "1"}
    message |= fields
    return orjson.dumps(message)


def three_books(w: World) -> None:
    w.book("binance", [("99", "5")], [("100", "0.6"), ("100.5", "2")])
    w.book("bybit", [("99", "5")], [("100.2", "3")])
    w.book("okx", [("99", "5")], [("100.15", "0.5"), ("100.3", "3")])


async def test_market_buy_fills_on_the_cheapest_venue_all_in(world: World) -> None:
    three_books(world)
    handled = await world.router.handle(order(quantity="1"))
    result = orjson.loads(handled.result or b"")
    # best_price, 1 BTC, single venue that fills it all, all-in (price × (1 + fee)):
    #   binance: 0.6 @ 100 + 0.4 @ 100.5 = 100.2 VWAP → × 1.0010  = 100.3002
    #   bybit:   1 @ 100.2                       = 100.2     → × 1.0010  = 100.3002
    #   okx:     0.5 @ 100.15 + 0.5 @ 100.3 = 100.225  → × 1.0008  = 100.30518
    # binance and bybit tie at 100.3002: the tie goes to the venue id, binance.
    assert handled.executed and not handled.replayed
    assert result["status"] == "filled" and result["reject_code"] is None
    assert result["mode"] == "paper" and result["kind"] == "order"
    [fill] = result["fills"]
    assert (fill["venue"], fill["price"], fill["quantity"]) == ("binance", "100.2", "1")
    assert fill["fee"] == "0.1002" and fill["fee_asset"] == "USDT"  # 100.2 × 10 bps
    assert fill["client_order_id"] == client_order_id("binance", "r-1", 0)
    assert (
        result["filled_quantity"] == "1"
        and result["avg_price"] == "100.2"
        and result["fees_total"] == "0.1002"
    )
    route = result["route"]
    assert route["strategy"] == "best_price" and [leg["venue"] for leg in route["legs"]] == ["binance"]
    assert [c["venue"] for c in route["considered"]] == ["binance", "bybit", "okx"]


class LedgerReadingExecutor(CountingExecutor):
    """Reads the ledger as each leg reaches the venue: what a crash at that instant would leave."""

    ledger: Ledger

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.states_at_send: list[list[str]] = []

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        self.states_at_send.append([intent.state for intent in self.ledger.legs(leg.request_id)])
        return await super().execute(leg)


async def test_every_leg_is_recorded_sent_on_disk_before_it_reaches_the_venue(tmp_path: Path) -> None:
    w = World(tmp_path / "state", executor=LedgerReadingExecutor)
    executor = w.executor
    assert isinstance(executor, LedgerReadingExecutor)
    executor.ledger = w.ledger
    try:
        w.book("binance", [("99", "5")], [("100", "2")])
        w.book("bybit", [("101", "2")], [("102", "5")])
        raw = {"v": 1, "request_id": "arb-1", "user_id": "u1", "kind": "arbitrage", "symbol": "BTC-USDT"}
        raw |= {"quantity": "1", "buy_venue": "binance", "sell_venue": "bybit"}
        handled = await w.router.handle(orjson.dumps(raw))
        assert orjson.loads(handled.result or b"")["status"] == "filled"
        assert len(executor.sent) == 2
        # A crash at either venue call finds both legs sent, so a restart settles them from the
        # venue and never sends one again.
        assert executor.states_at_send == [["sent", "sent"], ["sent", "sent"]]
    finally:
        w.ledger.close()


async def test_the_same_request_three_times_executes_once_with_identical_results(world: World) -> None:
    three_books(world)
    answers = [await world.router.handle(order()) for _ in range(3)]
    assert len(world.executor.sent) == 1
    assert [a.executed for a in answers] == [True, False, False]
    assert answers[1].replayed and answers[2].replayed
    assert answers[0].result == answers[1].result == answers[2].result


async def test_a_new_message_reusing_a_handled_request_id_is_not_executed_again(world: World) -> None:
    three_books(world)
    first = await world.router.handle(order(quantity="1"))
    again = await world.router.handle(order(quantity="2"))  # different body, same request_id
    assert again.result == first.result and len(world.executor.sent) == 1


async def test_an_invalid_request_is_rejected_stored_and_sent_to_the_dlq_never_executed(world: World) -> None:
    three_books(world)
    handled = await world.router.handle(order(quantity="-1"))
    assert handled.invalid is not None and handled.invalid.reject_code == "invalid_request"
    result = orjson.loads(handled.result or b"")
    assert result["status"] == "rejected" and result["reject_code"] == "invalid_request"
    assert "quantity" in result["message"]
    assert world.executor.sent == []
    # Fixing the body later does not make the same request_id execute.
    retry = await world.router.handle(order(quantity="1"))
    assert retry.replayed and world.executor.sent == []


async def test_garbage_without_a_request_id_gets_no_result_only_the_dlq(world: World) -> None:
    handled = await world.router.handle(b"\x00not json")
    assert handled.result is None and handled.request_id is None
    assert handled.invalid is not None


async def test_halt_rejects_new_executions_and_resume_lets_them_through(world: World) -> None:
    three_books(world)
    world.kill_switch.halt("exchange incident", "ops")
    halted = orjson.loads((await world.router.handle(order("r-halt"))).result or b"")
    assert (halted["status"], halted["reject_code"]) == ("rejected", "halted")
    assert "exchange incident" in halted["message"]
    world.kill_switch.resume("ops")
    resumed = orjson.loads((await world.router.handle(order("r-after"))).result or b"")
    assert resumed["status"] == "filled"
    assert [leg.request_id for leg in world.executor.sent] == ["r-after"]


async def test_no_route_is_rejected_with_its_code_and_every_venue_considered(world: World) -> None:
    three_books(world)
    world.clock.now_ns += 2_000 * MS  # every quote is now older than max_quote_age_ms
    result = orjson.loads((await world.router.handle(order())).result or b"")
    assert (result["status"], result["reject_code"]) == ("rejected", "stale_prices")
    assert {c["excluded"] for c in result["route"]["considered"]} == {"stale"}
    assert world.executor.sent == []


async def test_risk_limit_rejection_names_the_limit(tmp_path: Path) -> None:
    w = World(tmp_path / "s", users={"u1": {"max_order_notional": "50"}})
    three_books(w)
    result = orjson.loads((await w.router.handle(order())).result or b"")
    assert (result["status"], result["reject_code"]) == ("rejected", "risk_limit")
    assert "user_max_order_notional" in result["message"] or "50" in result["message"]
    assert w.executor.sent == []
    w.ledger.close()


async def test_limit_order_fills_partly_when_depth_within_the_limit_runs_out(world: World) -> None:
    three_books(world)
    result = orjson.loads(
        (await world.router.handle(order(quantity="2", order_type="limit", limit_price="100.1"))).result
        or b""
    )
    # Only binance offers anything at or below 100.1: 0.6 @ 100 (IOC).
    assert result["status"] == "partially_filled"
    assert result["filled_quantity"] == "0.6" and result["avg_price"] == "100"


async def test_preferences_change_the_route(tmp_path: Path) -> None:
    w = World(
        tmp_path / "p",
        users={"u1": {"preferred_venues": ["okx"], "preferred_bias_bps": "5", "strategy": "preferred"}},
    )
    three_books(w)
    result = orjson.loads((await w.router.handle(order())).result or b"")
    # okx all-in 100.30518 × (1 − 5 bps) = 100.25503… beats binance's 100.3002.
    assert [f["venue"] for f in result["fills"]] == ["okx"]
    assert result["avg_price"] == "100.225"
    w.ledger.close()


async def test_arbitrage_fills_both_legs_and_reports_the_cash_flow(world: World) -> None:
    world.book("binance", [("99", "5")], [("100", "2")])
    world.book("bybit", [("101", "2")], [("102", "5")])
    raw = orjson.dumps(
        {
            "v": 1,
            "request_id": "arb-1",
            "user_id": "u1",
            "kind": "arbitrage",
            "symbol": "BTC-USDT",
            "quantity": "1",
            "buy_venue": "binance",
            "sell_venue": "bybit",
        }
    )
    result = orjson.loads((await world.router.handle(raw)).result or b"")
    # buy 1 @ 100 (fee 0.1), sell 1 @ 101 (fee 0.101): cash flow 101 − 100 − 0.201 = 0.799
    assert result["status"] == "filled" and result["kind"] == "arbitrage"
    assert result["filled_quantity"] == "1" and result["avg_price"] is None
    assert result["arbitrage"]["net_cash_flow"] == "0.799"
    assert "residual" not in result
    assert {(f["venue"], f["side"]) for f in result["fills"]} == {("binance", "buy"), ("bybit", "sell")}


async def test_arbitrage_that_no_longer_pays_is_rejected_before_any_leg(world: World) -> None:
    world.book("binance", [("99", "5")], [("100", "2")])
    world.book("bybit", [("100.1", "2")], [("102", "5")])  # 10 bps gross < 20 bps of fees
    raw = orjson.dumps(
        {
            "v": 1,
            "request_id": "arb-2",
            "user_id": "u1",
            "kind": "arbitrage",
            "symbol": "BTC-USDT",
            "quantity": "1",
            "buy_venue": "binance",
            "sell_venue": "bybit",
        }
    )
    result = orjson.loads((await world.router.handle(raw)).result or b"")
    assert (result["status"], result["reject_code"]) == ("rejected", "no_opportunity")
    assert world.executor.sent == []


class ThinSellExecutor(CountingExecutor):
    """The sell venue's book empties between planning and execution: the sell leg fills 0.4 only."""

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        if leg.leg == 1:
            self.cache.update(
                Quote("bybit", "BTC-USDT", Decimal(101), Decimal("0.4"), Decimal(102), Decimal(5), None, 0, 2)
            )
        return await super().execute(leg)


@pytest.mark.parametrize(("policy", "action"), [("unwind", "unwound"), ("report", "left")])
async def test_arbitrage_residual_is_unwound_or_reported(tmp_path: Path, policy: str, action: str) -> None:
    w = World(tmp_path / policy, residual_policy=policy, executor=ThinSellExecutor)
    w.book("binance", [("99.9", "5")], [("100", "2")])
    w.book("bybit", [("101", "2")], [("102", "5")])
    raw = orjson.dumps(
        {
            "v": 1,
            "request_id": "arb-3",
            "user_id": "u1",
            "kind": "arbitrage",
            "symbol": "BTC-USDT",
            "quantity": "1",
            "buy_venue": "binance",
            "sell_venue": "bybit",
        }
    )
    result = orjson.loads((await w.router.handle(raw)).result or b"")
    assert result["status"] == "partially_filled" and result["filled_quantity"] == "0.4"
    residual = result["residual"]
    assert (residual["quantity"], residual["venue"], residual["exposure"]) == ("0.6", "binance", "long")
    assert residual["action"] == action
    if policy == "unwind":
        # Sold back 0.6 on binance at its bid 99.9.
        assert residual["remaining_quantity"] == "0"
        assert ("binance", "sell", "99.9", "0.6") in {
            (f["venue"], f["side"], f["price"], f["quantity"]) for f in result["fills"]
        }
    else:
        assert residual["remaining_quantity"] == "0.6" and len(result["fills"]) == 2
    w.ledger.close()


async def test_a_request_left_in_flight_by_a_crash_is_settled_without_sending_again(tmp_path: Path) -> None:
    state = tmp_path / "crash"
    first = World(state)
    raw = order("r-crash", quantity="1")
    # The previous process claimed the request, recorded two legs, settled one, then died.
    first.ledger.claim("r-crash", "u1", raw, now_ns=1)
    fill = {
        "venue": "binance",
        "side": "buy",
        "price": "100",
        "quantity": "0.5",
        "fee": "0.05",
        "fee_asset": "USDT",
        "client_order_id": client_order_id("binance", "r-crash", 0),
        "venue_order_id": "paper-x",
        "ts_ns": 5,
    }
    for leg, venue in ((0, "binance"), (1, "bybit")):
        first.ledger.record_leg_intent(
            LegIntent(
                "r-crash",
                leg,
                venue,
                client_order_id(venue, "r-crash", leg),
                "buy",
                Decimal("0.5"),
                Decimal(101),
                "intent",
                None,
            )
        )
    first.ledger.mark_leg("r-crash", 0, "settled", orjson.dumps({"fills": [fill], "error": None}))
    first.ledger.close()

    restarted = World(state)
    three_books(restarted)
    [stored] = await restarted.router.recover()
    result = orjson.loads(stored)
    assert restarted.executor.sent == []  # nothing sent again
    assert [leg.leg for leg in restarted.executor.recovered] == [1]
    assert result["status"] == "partially_filled" and result["filled_quantity"] == "0.5"
    # A redelivery of the request afterwards gets this stored result.
    redelivered = await restarted.router.handle(raw)
    assert redelivered.replayed and redelivered.result == stored and restarted.executor.sent == []
    restarted.ledger.close()


async def test_python_api_best_price_preferences_and_execution(world: World) -> None:
    three_books(world)
    best = await world.router.get_best_price("BTC-USDT", "buy")
    # Top of book all-in: binance 100 × 1.001 = 100.1, bybit 100.2 × 1.001, okx 100.15 × 1.0008 = 100.23012
    assert best is not None and (best.venue, best.all_in_price) == ("binance", Decimal("100.1000"))
    prefs = await world.router.get_user_preferences("nobody")
    assert prefs.strategy == "best_price"
    result = await world.router.execute_with_preferences("BTC-USDT", "buy", Decimal("0.5"), "u1")
    assert result.status == "filled" and result.filled_quantity == Decimal("0.5")
    assert result.request_id.startswith("api-")


class RefusingExecutor(CountingExecutor):
    """A venue that refuses every order before it reaches the book (as during a Binance 418 ban)."""

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        self.sent.append(leg)
        return LegOutcome(leg, (), f"not sent to {leg.venue}: banned until later", "venue_error")


async def test_legs_refused_before_executing_make_a_rejected_result_with_the_venue_code(
    tmp_path: Path,
) -> None:
    w = World(tmp_path / "refused", executor=RefusingExecutor)
    three_books(w)
    result = orjson.loads((await w.router.handle(order())).result or b"")
    assert (result["status"], result["reject_code"]) == ("rejected", "venue_error")
    assert "banned" in result["message"] and result["fills"] == []
    w.ledger.close()


def test_fees_are_totalled_in_the_quote_currency_whatever_asset_the_venue_charged() -> None:
    from router.execution import Fill
    from router.results import ExecutionResult

    def fill(fee: str, asset: str) -> Fill:
        return Fill("binance", "buy", Decimal(64000), Decimal("0.5"), Decimal(fee), asset, "c", "v", 1)

    result = ExecutionResult(
        "r", "u", "order", "live", "filled", None, "ok", 0, 1,
        fills=(fill("0.0005", "BTC"), fill("3.2", "USDT"), fill("0.01", "BNB")),
        symbol="BTC-USDT",
    )  # fmt: skip
    # 0.0005 BTC at 64000 = 32 USDT, plus 3.2 USDT; the BNB fee is reported on its own.
    assert result.fees_total == Decimal("35.2")
    message = result.as_message()
    assert message["fees_total"] == "35.2" and message["fees_other"] == {"BNB": "0.01"}
    assert message["symbol"] == "BTC-USDT"


async def test_net_positions_survive_a_restart(tmp_path: Path) -> None:
    first = World(tmp_path / "positions")
    three_books(first)
    assert (await first.router.handle(order("e1", quantity="1"))).executed
    # binance fills 1 BTC at 100.2, fee 0.1002 USDT: BTC +1, USDT -100.2 - 0.1002 = -100.3002
    before = first.risk.positions.positions()
    assert before == {"BTC": {"binance": D(1)}, "USDT": {"binance": D("-100.3002")}}
    first.ledger.close()

    restarted = World(tmp_path / "positions")  # a new process: the positions start empty
    assert restarted.risk.positions.positions() == {}
    await restarted.router.recover()
    assert restarted.risk.positions.positions() == before
    restarted.ledger.close()


async def test_a_preferred_venue_within_its_bias_gets_the_order_and_the_route_says_what_it_cost(
    tmp_path: Path,
) -> None:
    bob = {"preferred_venues": ["bybit"], "preferred_bias_bps": "200", "strategy": "preferred"}
    w = World(tmp_path / "bob", users={"bob": bob})  # medium risk: 25 bps of slippage allowed
    w.book("binance", [("99.9", "5")], [("100", "5")])
    w.book("bybit", [("100.8", "5")], [("100.987", "5")])  # 98.7 bps above binance's ask
    result = orjson.loads((await w.router.handle(order(user_id="bob"))).result or b"")
    # Bybit's book fills 1 at its own best ask: no slippage at all. All-in (10 bps fee each):
    #   bybit 100.987 × 1.001 = 101.087987, binance 100 × 1.001 = 100.1
    #   cost (101.087987 − 100.1) / 100.1 × 10⁴ = 0.987987 / 100.1 × 10⁴ = 98.7 bps, under the 200 bps bias
    assert result["status"] == "filled"
    assert [(f["venue"], f["price"]) for f in result["fills"]] == [("bybit", "100.987")]
    assert {c["venue"]: c["excluded"] for c in result["route"]["considered"]} == {
        "binance": None,
        "bybit": None,
        "okx": "no_quote",
    }
    assert "preferred bybit over binance: +98.7 bps (bias 200 bps)" in result["route"]["reason"]
    # max_slippage_bps still widens the worst planned level of the leg's own book into its IOC limit.
    [leg] = w.executor.sent
    assert (leg.venue, leg.limit_price) == ("bybit", D("100.987") * (1 + D(25) / 10_000))
    w.ledger.close()


async def test_result_figures_are_published_to_a_stated_precision_never_flattering(world: World) -> None:
    world.book("binance", [("99", "5")], [("100.01", "0.1"), ("100.02", "1")])
    result = orjson.loads((await world.router.handle(order(quantity="0.123457"))).result or b"")
    # 0.1 @ 100.01 + 0.023457 @ 100.02 = 12.34716914 over 0.123457: a 28-digit VWAP inside.
    notional = D("0.1") * D("100.01") + D("0.023457") * D("100.02")
    vwap = notional / D("0.123457")
    assert str(vwap).startswith("100.0119") and len(str(vwap)) > 20
    [fill] = result["fills"]
    # binance quotes 2 decimals: the price is published to 6, rounded up for a buy; the fee
    # (10 bps of the exact notional, 0.01234716914) to 8 decimals, rounded up.
    assert fill["price"] == decimal_text(vwap.quantize(D("1e-6"), rounding=ROUND_CEILING)) == "100.011901"
    assert fill["fee"] == "0.01234717"
    assert result["avg_price"] == "100.011901" and result["fees_total"] == "0.01234717"
    assert result["filled_quantity"] == "0.123457"
    route = result["route"]
    assert route["legs"] == [{"venue": "binance", "quantity": "0.123457", "expected_price": "100.011901"}]


async def test_an_arbitrage_that_no_longer_pays_says_so_with_readable_figures(world: World) -> None:
    world.book("binance", [("99", "5")], [("100.01", "0.3"), ("100.03", "5")])
    world.book("bybit", [("100.02", "0.3"), ("99.99", "5")], [("102", "5")])
    raw = orjson.dumps(
        {
            "v": 1,
            "request_id": "arb-2",
            "user_id": "u1",
            "kind": "arbitrage",
            "symbol": "BTC-USDT",
            "quantity": "0.7",
            "buy_venue": "binance",
            "sell_venue": "bybit",
            "max_slippage_bps": "100",
        }
    )
    result = orjson.loads((await world.router.handle(raw)).result or b"")
    # buy VWAP (30.003 + 40.012) / 0.7 = 100.02142857…, up to 100.021429; sell VWAP
    # (30.006 + 39.996) / 0.7 = 100.00285714…, down to 100.002857; net 70.002 × 0.999 − 70.015 × 1.001
    # = −0.153017, computed from 28-digit VWAPs as −0.153017000…032 and so rounded down to −0.15301701.
    assert (result["status"], result["reject_code"]) == ("rejected", "no_opportunity")
    assert result["message"] == (
        "buying 0.7 BTC-USDT on binance at 100.021429 and selling on bybit at 100.002857 "
        "would net -0.15301701 after fees; nothing was executed"
    )


async def test_two_orders_executing_at_once_never_pass_a_position_limit_together(tmp_path: Path) -> None:
    world = World(tmp_path / "state")
    try:
        world.risk = RiskGate(
            RiskLimits(D(1_000_000), 100, D(5_000_000), {"BTC": D("1.5")}), clock_ns=world.clock
        )
        world.router = world.make_router()
        three_books(world)
        answers = await asyncio.gather(*(world.router.handle(order(f"r-{i}", quantity="1")) for i in (1, 2)))
        codes = sorted(str(orjson.loads(a.result or b"")["reject_code"]) for a in answers)
        assert codes == ["None", "risk_limit"] and len(world.executor.sent) == 1
        # Both settled: nothing is held any more, only the filled 1 BTC counts.
        third = await world.router.handle(order("r-3", quantity="0.5"))
        assert orjson.loads(third.result or b"")["status"] == "filled"
    finally:
        world.ledger.close()
