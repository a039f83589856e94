"""Balances: the book's arithmetic (reservations, fills, fees), funding a leg, and live reads with drift."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from connectors.errors import VenueUnreachable
from connectors.trading import AccountBalance
from daemon.config import build_config
from daemon.routing import RouterParts, RouterSections, build_balances, tradable_venues
from router.balance_sync import BalanceSync
from router.balances import BalanceBook, InsufficientBalance
from router.cache import PriceCache
from router.execution import Fill, LegOutcome, OrderLeg, PaperExecutor
from router.funding import LegTerms, leg_need, quantity_step
from router.kill_switch import KillSwitch
from router.ledger import Ledger
from router.legs import LegRunner
from router.live import LiveExecutor
from router.preferences import PreferenceStore
from router.request import RequestRules
from router.risk import RiskGate, RiskLimits
from router.signatures import KeyRing
from router.signed_settings import SettingsGuard
from router.smart import SmartRouter

SYMBOL = "BTC-USDT"


def fill(side: str, price: str, quantity: str, fee: str, fee_asset: str, venue: str = "binance") -> Fill:
    return Fill(venue, side, D(price), D(quantity), D(fee), fee_asset, "c", "v", 0)  # type: ignore[arg-type]


def test_a_leg_reserves_its_most_expensive_cost_and_its_fills_move_the_holdings_fees_included() -> None:
    book = BalanceBook({"binance": {"USDT": D("10000"), "BTC": D("1")}})
    # A buy of 0.5 limited at 100.2 with a 10 bps fee may cost 100.2 × 0.5 × 1.001 = 50.1501 USDT.
    asset, need = leg_need(SYMBOL, "buy", D("0.5"), D("100.2"), D(10))
    assert (asset, need) == ("USDT", D("50.1501"))
    book.reserve(("r1", 0), "binance", asset, need)
    assert book.available("binance", "USDT") == D("9949.8499")
    assert book.reserved("binance", "USDT") == D("50.1501")
    assert book.busy("binance")

    # It filled 0.5 at 100 with a 0.05 USDT fee: USDT 10000 − 50 − 0.05 = 9949.95, BTC 1 + 0.5 = 1.5.
    book.settle(("r1", 0), SYMBOL, [fill("buy", "100", "0.5", "0.05", "USDT")])
    assert not book.busy("binance") and book.reserved("binance", "USDT") == 0
    assert book.available("binance", "USDT") == D("9949.95") and book.available("binance", "BTC") == D("1.5")

    # A sell of 0.2 at 101, fee 0.0002 charged in BTC: BTC 1.5 − 0.2 − 0.0002, USDT + 20.2.
    book.apply_fill(SYMBOL, fill("sell", "101", "0.2", "0.0002", "BTC"))
    assert book.available("binance", "BTC") == D("1.2998")
    assert book.available("binance", "USDT") == D("9970.15")

    # A buy of 0.1 at 100, fee 0.01 in BNB: BTC + 0.1, USDT − 10, BNB − 0.01.
    book.apply_fill(SYMBOL, fill("buy", "100", "0.1", "0.01", "BNB"))
    snapshot = book.snapshot()["binance"]
    assert {a: h.total for a, h in snapshot.items()} == {
        "BNB": D("-0.01"),
        "BTC": D("1.3998"),
        "USDT": D("9960.15"),
    }


def test_a_reservation_beyond_what_is_available_is_refused_naming_venue_asset_need_and_available() -> None:
    book = BalanceBook({"binance": {"USDT": D("100"), "BTC": D("1")}})
    book.reserve(("r1", 1), "binance", "BTC", D("0.75"))
    with pytest.raises(InsufficientBalance) as refused:
        book.reserve(("r2", 1), "binance", "BTC", D("0.5"))  # only 1 − 0.75 = 0.25 is left
    assert refused.value.reject_code == "insufficient_balance"
    assert refused.value.message == "insufficient BTC on binance: the leg needs 0.5, 0.25 available"
    book.release(("r1", 1))
    book.reserve(("r2", 1), "binance", "BTC", D("0.5"))
    assert book.available("binance", "BTC") == D("0.5")


def test_an_untracked_venue_is_unlimited_and_its_fills_move_nothing() -> None:
    book = BalanceBook({"binance": {"USDT": D("1")}})
    assert book.available("okx", "USDT") is None and not book.tracks("okx")
    book.reserve(("r1", 0), "okx", "USDT", D("1000000"))
    book.apply_fill(SYMBOL, fill("buy", "100", "1", "0.1", "USDT", venue="okx"))
    assert "okx" not in book.snapshot() and not book.busy("okx")


def test_what_a_venue_can_fund_is_walked_level_by_level_at_each_levels_limit_and_rounded_down() -> None:
    asks = ((D("100"), D("1")), (D("101"), D("2")))
    terms = LegTerms("buy", D(10), D(0), None)
    step = quantity_step(asks, (D("0.001"),))
    assert step == D("0.001")
    # 150 USDT: the first level costs 100 × 1.001 = 100.1 a unit (1 of it fits); past it every unit
    # is limited at 101 × 1.001 = 101.101, and 150 / 101.101 = 1.4836…, rounded down to 1.483.
    assert terms.fundable(asks, D("150"), step) == D("1.483")
    assert D("1.483") * D("101.101") <= 150 < D("1.484") * D("101.101")
    assert terms.need(asks, D("1.483")) == D("1.483") * D("101.101")
    # 100 USDT cannot even take the whole first level: 100 / 100.1 = 0.999000…, rounded down.
    assert terms.fundable(asks, D("100"), step) == D("0.999")
    # A sell needs the base quantity itself.
    sell = LegTerms("sell", D(10), D(50), None)
    assert sell.fundable(asks, D("0.12345"), step) == D("0.123") and sell.need(asks, D("2")) == D("2")
    # A user's limit caps the leg's limit, and so what it may cost: 100 × 1.001 per unit.
    limited = LegTerms("buy", D(10), D(100), D("100"))
    assert limited.fundable(asks, D("50.05"), step) == D("0.5")


class Sender(PaperExecutor):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[OrderLeg] = []

    async def execute(self, leg: OrderLeg) -> LegOutcome:
        self.sent.append(leg)
        return await super().execute(leg)


async def test_when_one_leg_cannot_be_funded_no_leg_is_sent_and_nothing_stays_reserved(
    tmp_path: Path,
) -> None:
    cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500)
    sender = Sender(cache, {"binance": D(10), "bybit": D(10)})
    book = BalanceBook({"binance": {"USDT": D("1000")}, "bybit": {"BTC": D("0.1")}})
    ledger = Ledger.open(tmp_path / "state")
    try:
        risk = RiskGate(RiskLimits(D(1_000_000), 100, D(5_000_000)))
        runner = LegRunner(ledger, sender, risk, book, lambda venue: D(10))
        buy = OrderLeg("arb", 0, "binance", SYMBOL, "buy", D("1"), D("100"))  # needs 100.1 USDT: funded
        sell = OrderLeg("arb", 1, "bybit", SYMBOL, "sell", D("1"), D("99"))  # needs 1 BTC, 0.1 available
        outcomes = await runner.run([buy, sell])
        assert [o.reject_code for o in outcomes] == ["insufficient_balance", "insufficient_balance"]
        assert "insufficient BTC on bybit: the leg needs 1, 0.1 available" in (outcomes[0].error or "")
        assert sender.sent == [] and ledger.legs("arb") == []
        assert book.available("binance", "USDT") == D("1000") and not book.busy("binance")
    finally:
        ledger.close()


class FakeAccount:
    """A venue's account endpoint: the balances it reports, or an error."""

    def __init__(self, balances: dict[str, str]) -> None:
        self.report(balances)
        self.fail: Exception | None = None
        self.reads = 0
        self.read = asyncio.Event()

    def report(self, balances: dict[str, str]) -> None:
        self.free = {asset: D(amount) for asset, amount in balances.items()}

    async def balances(self) -> dict[str, AccountBalance]:
        self.reads += 1
        self.read.set()
        if self.fail is not None:
            raise self.fail
        return {asset: AccountBalance(asset, free, D("7")) for asset, free in self.free.items()}


def drift_count(venue: str, asset: str) -> float:
    labels = {"venue": venue, "asset": asset}
    return REGISTRY.get_sample_value("smartroute_balance_drift_total", labels) or 0.0


async def test_live_reads_adopt_the_venue_figures_and_report_every_drift_beyond_the_tolerance() -> None:
    account = FakeAccount({"USDT": "1000", "BTC": "0.5", "DOGE": "12"})
    book = BalanceBook({"okx": {}}, synced=False)
    sync = BalanceSync(
        book, {"okx": account}, {"okx": frozenset({"BTC", "USDT"})}, tolerance_bps=D(10), refresh_s=60
    )  # type: ignore[dict-item]
    assert book.available("okx", "USDT") == 0  # not read yet: nothing may be spent there
    before = drift_count("okx", "USDT")

    assert await sync.refresh() == []  # the first read sets the book: nothing to compare with
    assert book.synced("okx") and book.available("okx", "USDT") == D("1000")
    assert book.available("okx", "BTC") == D("0.5") and book.available("okx", "DOGE") == 0  # not watched

    # The book expects 1000 − 100 − 0.1 = 899.9 USDT and 0.5 + 1 = 1.5 BTC after a buy of 1 at 100.
    book.apply_fill("BTC-USDT", fill("buy", "100", "1", "0.1", "USDT", venue="okx"))
    account.report({"USDT": "899.5", "BTC": "1.5"})  # 0.4 off: within 10 bps of 899.9 (0.8999)
    assert await sync.refresh() == []
    assert book.available("okx", "USDT") == D("899.5")

    account.report({"USDT": "700", "BTC": "1.5"})  # 199.5 off: a drift, reported then adopted
    [drift] = await sync.refresh()
    assert (drift.venue, drift.asset, drift.expected, drift.observed) == ("okx", "USDT", D("899.5"), D("700"))
    assert drift_count("okx", "USDT") == before + 1
    assert book.available("okx", "USDT") == D("700")
    status = sync.as_status()
    assert status["drifts"] == [drift.as_status()] and status["tolerance_bps"] == "10"

    account.report({"USDT": "700"})  # BTC gone from the account: expected 1.5, the venue lists none
    assert [(d.asset, d.observed) for d in await sync.refresh()] == [("BTC", D(0))]


async def test_a_venue_with_a_leg_in_flight_or_that_cannot_answer_is_not_reconciled() -> None:
    account = FakeAccount({"USDT": "1000"})
    book = BalanceBook({"okx": {}}, synced=False)
    sync = BalanceSync(book, {"okx": account}, {"okx": frozenset({"USDT"})}, tolerance_bps=D(0), refresh_s=60)  # type: ignore[dict-item]
    await sync.refresh()
    book.reserve(("r", 0), "okx", "USDT", D("10"))
    account.report({"USDT": "1"})
    assert await sync.refresh() == [] and account.reads == 1  # in flight: not even read
    book.release(("r", 0))
    account.fail = VenueUnreachable("okx: connection refused")
    assert await sync.refresh() == []
    assert sync.as_status()["read_errors"] == {"okx": "okx: connection refused"}
    assert book.available("okx", "USDT") == D("1000")  # nothing adopted from a failed read


class FakeVenue(FakeAccount):
    """Just enough of a live TradingVenue to connect: no fee endpoint, an account."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def taker_fee_bps(self, symbol: str) -> None:
        return None


async def test_live_balances_are_read_when_the_router_connects_and_again_after_a_fill(tmp_path: Path) -> None:
    venue = FakeVenue({"USDT": "500", "BTC": "0.25", "ETH": "3"})
    live = LiveExecutor({"okx": venue}, taker_fee_bps={"okx": D(8)})  # type: ignore[dict-item]
    cfg = build_config({"venues": {"okx": {"symbols": ["BTC-USDT"]}}}, {})
    book, sync = build_balances(RouterSections.of(cfg), tradable_venues(cfg.venues), live)
    assert sync is not None and sync.assets == {"okx": frozenset({"BTC", "USDT"})}
    cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500)
    ledger = Ledger.open(tmp_path / "state")
    try:
        preferences = PreferenceStore({}, known_venues=("okx",))
        router = SmartRouter(
            cache,
            live,
            ledger,
            preferences,
            RiskGate(RiskLimits(D(1_000_000), 100, D(5_000_000))),
            KillSwitch(ledger),
            RequestRules(frozenset({"okx"}), frozenset({SYMBOL})),
            {"okx": D(8)},
            balances=book,
        )
        router.watch_fills(sync.fill_seen)
        guard = SettingsGuard(
            ledger, required=False, users=KeyRing({}), operators=KeyRing({}), max_age_ms=60_000
        )
        parts = RouterParts(
            router,
            ledger,
            preferences,
            KillSwitch(ledger),
            guard,
            live=live,
            symbols={"okx": (SYMBOL,)},
            balance_sync=sync,
        )
        assert book.available("okx", "USDT") == 0  # nothing may be spent before the first read
        await parts.connect()
        assert venue.reads == 1 and book.synced("okx")
        assert (book.available("okx", "USDT"), book.available("okx", "BTC")) == (D("500"), D("0.25"))

        sync.after_fill_s = 0.0
        task = asyncio.create_task(sync.run())
        try:
            venue.report({"USDT": "400", "BTC": "0.25"})
            venue.read.clear()
            sync.fill_seen("okx")  # the next read comes from the fill, not the hourly refresh
            await asyncio.wait_for(venue.read.wait(), 5)
        finally:
            task.cancel()
        assert book.available("okx", "USDT") == D("400")
        assert [(d.asset, d.expected, d.observed) for d in sync.drifts] == [("USDT", D("500"), D("400"))]
    finally:
        ledger.close()
