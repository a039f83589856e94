"""Live routing across venues: the daemon's own router, built from a live config, on three fake venues.

OKX, Kraken and Bybit each run as their fake REST server (fake_okx.py, fake_kraken.py,
fake_bybit.py: signatures, timestamps/nonces and client-id rules as the venue enforces
them). The router is assembled exactly as `smartroute run --live` assembles it
(`daemon.routing.build_router`): credentials from the environment, one signed client per
venue from `connectors.registry.TRADING`, the accounts' real taker fees read at connect.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from fake_bybit import API_KEY as BYBIT_KEY
from fake_bybit import API_SECRET as BYBIT_SECRET
from fake_bybit import FakeBybit
from fake_kraken import API_KEY as KRAKEN_KEY
from fake_kraken import API_SECRET as KRAKEN_SECRET
from fake_kraken import FakeKraken
from fake_okx import API_KEY as OKX_KEY
from fake_okx import API_SECRET as OKX_SECRET
from fake_okx import PASSPHRASE as OKX_PASSPHRASE
from fake_okx import FakeOkx
from prometheus_client import REGISTRY, generate_latest

from connectors.kraken.private import TIERS
from connectors.kraken.trading import KrakenTrading
from connectors.trading import OrderReport
from connectors.types import Quote, Side
from daemon.config import Config, load_config
from daemon.errors import ConfigError
from daemon.routing import RouterParts, RouterSections, build_router
from router.cache import PriceCache

pytestmark = pytest.mark.integration

D = Decimal
ENVIRON = {
    "OKX_API_KEY": OKX_KEY,
    "OKX_API_SECRET": OKX_SECRET,
    "OKX_API_PASSPHRASE": OKX_PASSPHRASE,
    "KRAKEN_API_KEY": KRAKEN_KEY,
    "KRAKEN_API_SECRET": KRAKEN_SECRET,
    "BYBIT_API_KEY": BYBIT_KEY,
    "BYBIT_API_SECRET": BYBIT_SECRET,
}
# A user's strategy comes from their preferences, never from the request.
USERS = (
    '[users.splitter]\nstrategy = "split"\nrisk_tolerance = "high"\n'
    '[users.speedy]\nstrategy = "fastest"\nmax_slippage_bps = 50\n'
)
Book = tuple[list[tuple[str, str]], list[tuple[str, str]]]


@dataclass
class Venues:
    okx: FakeOkx
    kraken: FakeKraken
    bybit: FakeBybit

    def urls(self) -> dict[str, str]:
        return {"okx": self.okx.rest_url, "kraken": self.kraken.rest_url, "bybit": self.bybit.rest_url}

    def set_books(self, books: Mapping[str, Book]) -> None:
        for venue, (bids, asks) in books.items():
            if venue == "okx":
                self.okx.set_book("BTC-USDT", bids, asks)
            elif venue == "kraken":
                self.kraken.set_book("XBTUSDT", bids, asks)
            else:
                self.bybit.set_book("BTCUSDT", bids, asks)


@pytest.fixture
async def venues() -> AsyncIterator[Venues]:
    async with FakeOkx() as okx, FakeKraken() as kraken, FakeBybit(clock=time.time) as bybit:
        yield Venues(okx, kraken, bybit)


# Live requires signatures by default; these tests are about the venues (test_signed_kafka covers signatures).
UNSIGNED = "[security]\nrequire_signatures = false\n"


def live_config(tmp_path: Path, urls: Mapping[str, str], extra: str = "") -> Config:
    sections = "".join(
        f'[venues.{venue}]\nsymbols = ["BTC-USDT"]\ntrade_url = "{url}"\ntaker_fee_bps = 10\n'
        for venue, url in urls.items()
    )
    path = tmp_path / "smartroute.toml"
    path.write_text(
        f'[daemon]\nmode = "live"\nhttp_port = 0\nstate_dir = "{tmp_path / "state"}"\n'
        "[risk]\nmax_order_notional = 10000000\n" + UNSIGNED + sections + USERS + extra
    )
    return load_config(path, environ={})


def quote(venue: str, book: Book) -> Quote:
    bids = tuple((D(p), D(q)) for p, q in book[0])
    asks = tuple((D(p), D(q)) for p, q in book[1])
    now = time.time_ns()
    return Quote(venue, "BTC-USDT", *bids[0], *asks[0], None, now, None, bids, asks)


@pytest.fixture
async def live(venues: Venues, tmp_path: Path) -> AsyncIterator[tuple[RouterParts, PriceCache]]:
    cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=60_000)
    parts = build_router(RouterSections.of(live_config(tmp_path, venues.urls())), cache, environ=ENVIRON)
    try:
        async with asyncio.timeout(20):
            await parts.connect()
        yield parts, cache
    finally:
        await parts.disconnect()
        parts.ledger.close()


def seed(cache: PriceCache, venues: Venues, books: Mapping[str, Book]) -> None:
    venues.set_books(books)
    for venue, book in books.items():
        cache.update(quote(venue, book))


async def handle(parts: RouterParts, message: dict[str, object]) -> dict[str, object]:
    request = {"v": 1, "user_id": "desk", "symbol": "BTC-USDT"} | message
    async with asyncio.timeout(30):
        handled = await parts.router.handle(orjson.dumps(request))
    assert handled.result is not None
    result: dict[str, object] = orjson.loads(handled.result)
    return result


def fills_by_venue(result: Mapping[str, object]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    fills = result["fills"]
    assert isinstance(fills, list)
    for fill in fills:
        totals[fill["venue"]] = totals.get(fill["venue"], D(0)) + D(fill["quantity"])
    return totals


async def test_a_live_config_trades_on_every_venue_with_its_accounts_real_taker_fee(
    live: tuple[RouterParts, PriceCache],
) -> None:
    parts, _ = live
    assert parts.live is not None and set(parts.live.venues) == {"okx", "kraken", "bybit"}
    # Read from each fake's fee-tier endpoint at connect, replacing the configured 10 bps:
    # OKX trade-fee taker -0.001, Kraken TradeVolume fee 0.26 %, Bybit fee-rate takerFeeRate 0.001.
    assert parts.router.taker_fees == {"okx": D(10), "kraken": D(26), "bybit": D(10)}


async def test_a_live_arbitrage_buys_on_one_venue_and_sells_on_another(
    live: tuple[RouterParts, PriceCache], venues: Venues
) -> None:
    parts, cache = live
    seed(
        cache,
        venues,
        {
            "okx": ([("63990", "1")], [("64000.5", "1")]),
            "kraken": ([("65000.0", "1")], [("65010.0", "1")]),  # +156 bps over OKX's ask
            "bybit": ([("63900.0", "1")], [("64100.0", "1")]),
        },
    )
    result = await handle(
        parts,
        {
            "request_id": "arb-1",
            "kind": "arbitrage",
            "quantity": "0.2",
            "buy_venue": "okx",
            "sell_venue": "kraken",
        },
    )
    assert result["status"] == "filled", result["message"]
    assert fills_by_venue(result) == {"okx": D("0.2"), "kraken": D("0.2")}
    assert sum(venues.okx.executions.values()) == 1 and sum(venues.kraken.executions.values()) == 1


async def test_a_live_split_takes_each_venues_best_level_in_all_in_price_order(
    live: tuple[RouterParts, PriceCache], venues: Venues
) -> None:
    parts, cache = live
    seed(
        cache,
        venues,
        {
            "okx": ([("64010", "0.5"), ("63000", "5")], [("64100", "1")]),
            "kraken": ([("64030.0", "0.5"), ("63000.0", "5")], [("64100.0", "1")]),
            "bybit": ([("64020.0", "0.5"), ("63000.0", "5")], [("64100.0", "1")]),
        },
    )
    result = await handle(
        parts,
        {"request_id": "split-1", "user_id": "splitter", "kind": "order", "side": "sell", "quantity": "1.2"},
    )
    assert result["status"] == "filled", result["message"]
    # All-in after the accounts' fees: kraken 64030 × (1 − 0.0026) = 63863.5 < okx 64010 × 0.999
    # = 63946.0 < bybit 64020 × 0.999 = 63956.0, so Kraken's 0.5 is taken last.
    assert fills_by_venue(result) == {"bybit": D("0.5"), "okx": D("0.5"), "kraken": D("0.2")}, result["route"]


FASTEST = {"user_id": "speedy"}


class Slowed:
    """A venue's client whose order round trips take `delay_s` longer, as a distant venue's would."""

    def __init__(self, inner: object, delay_s: float) -> None:
        self._inner = inner
        self._delay_s = delay_s

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def place_order(
        self, symbol: str, side: Side, quantity: Decimal, price: Decimal, client_order_id: str
    ) -> OrderReport:
        await asyncio.sleep(self._delay_s)
        report: OrderReport = await self._inner.place_order(  # type: ignore[attr-defined]
            symbol, side, quantity, price, client_order_id
        )
        return report


async def test_fastest_goes_to_the_venue_with_the_lowest_measured_round_trip(
    live: tuple[RouterParts, PriceCache], venues: Venues
) -> None:
    parts, cache = live
    assert parts.live is not None
    parts.live.connectors["okx"] = Slowed(parts.live.connectors["okx"], 0.3)  # type: ignore[assignment]
    parts.live.connectors["kraken"] = Slowed(parts.live.connectors["kraken"], 0.3)  # type: ignore[assignment]
    book: Book = ([("64000", "5")], [("64001", "5")])
    seed(cache, venues, {"okx": book, "kraken": ([("64000.0", "5")], [("64001.0", "5")]), "bybit": book})
    for venue, n in (("okx", 1), ("kraken", 2), ("bybit", 3)):  # one order each: a measured round trip
        warm = {
            "request_id": f"warm-{n}",
            "kind": "order",
            "side": "buy",
            "quantity": "0.01",
            "venues": [venue],
        }
        assert (await handle(parts, warm))["status"] == "filled"
    latencies = {venue: parts.live.observed_ack_latency_ms(venue) for venue in ("okx", "kraken", "bybit")}
    assert all(latency is not None for latency in latencies.values())
    result = await handle(
        parts,
        {"request_id": "fast-1", "kind": "order", "side": "buy", "quantity": "0.01"} | FASTEST,
    )
    assert result["status"] == "filled", result["message"]
    assert fills_by_venue(result) == {"bybit": D("0.01")}
    route = result["route"]
    assert isinstance(route, dict) and "bybit ack" in str(route["reason"])


def test_a_tradable_venue_without_its_credentials_refuses_the_start(tmp_path: Path) -> None:
    cfg = live_config(tmp_path, {"okx": "http://127.0.0.1:9", "kraken": "http://127.0.0.1:9"})
    environ = {k: v for k, v in ENVIRON.items() if k != "OKX_API_PASSPHRASE"}
    with pytest.raises(ConfigError, match=r"live trading on okx needs OKX_API_PASSPHRASE"):
        build_router(RouterSections.of(cfg), PriceCache(), environ=environ)


def test_trade_false_keeps_a_venue_market_data_only(tmp_path: Path) -> None:
    cfg = live_config(
        tmp_path, {"okx": "http://127.0.0.1:9"}, '[venues.kraken]\nsymbols = ["BTC-USDT"]\ntrade = false\n'
    )
    environ = {k: v for k, v in ENVIRON.items() if not k.startswith("KRAKEN")}  # no Kraken keys needed
    parts = build_router(RouterSections.of(cfg), PriceCache(), environ=environ)
    try:
        assert parts.live is not None and set(parts.live.venues) == {"okx"}
        assert set(parts.router.taker_fees) == {"okx"}  # never routed to, nor priced
    finally:
        parts.ledger.close()
    paper = load_config(
        _write(
            tmp_path,
            '[venues.okx]\nsymbols = ["BTC-USDT"]\n[venues.kraken]\nsymbols = ["BTC-USDT"]\ntrade = false\n',
        ),
        environ={},
    )
    paper_parts = build_router(RouterSections.of(paper), PriceCache())
    try:
        assert set(paper_parts.router.taker_fees) == {"okx"}  # paper mode too
    finally:
        paper_parts.ledger.close()


def test_the_kraken_client_gets_the_configured_tiers_counters(tmp_path: Path) -> None:
    kraken = '[venues.kraken]\nsymbols = ["BTC-USDT"]\ntrade_url = "http://127.0.0.1:9"\n'
    for tier in ("starter", "intermediate", "pro", None):
        cfg = live_config(tmp_path, {}, kraken + (f'tier = "{tier}"\n' if tier else ""))
        parts = build_router(RouterSections.of(cfg), PriceCache(), environ=ENVIRON)
        try:
            assert parts.live is not None
            client = parts.live.connectors["kraken"]
            assert isinstance(client, KrakenTrading)
            assert client.rest.tier == TIERS[tier or "starter"]  # absent: the starter tier
        finally:
            parts.ledger.close()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "paper.toml"
    path.write_text(f'[daemon]\nhttp_port = 0\nstate_dir = "{tmp_path / "paper-state"}"\n' + text)
    return path


async def test_no_venue_secret_reaches_a_log_line_a_result_a_metric_or_a_repr(
    venues: Venues, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    """The fakes' keys, secrets and passphrase are canaries through orders, refusals and faults, at DEBUG."""
    cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=60_000)
    parts = build_router(RouterSections.of(live_config(tmp_path, venues.urls())), cache, environ=ENVIRON)
    results: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            await parts.connect()
            book: Book = ([("64000", "5")], [("64001", "5")])
            seed(
                cache,
                venues,
                {"okx": book, "kraken": ([("64000.0", "5")], [("64001.0", "5")]), "bybit": book},
            )
            venues.okx.inject("POST", "trade/order", "drop")  # a lost answer: settled by query
            for n, venue in enumerate(("okx", "kraken", "bybit", "okx")):
                message = {"v": 1, "user_id": "desk", "symbol": "BTC-USDT", "request_id": f"canary-{n}"}
                message |= {"kind": "order", "side": "sell", "quantity": "50", "venues": [venue]}  # too much
                if n == 3:
                    message["quantity"] = "0.01"
                handled = await parts.router.handle(orjson.dumps(message))
                results.append(handled.result or b"")
    finally:
        await parts.disconnect()
        parts.ledger.close()
    visible = "\n".join(
        [captured_logs.getvalue(), generate_latest(REGISTRY).decode(), repr(parts), repr(parts.live)]
        + [r.decode() for r in results]
    )
    assert "canary-3" in visible  # what is searched is really there
    leaked = [name for name, value in ENVIRON.items() if value in visible]
    assert leaked == []
