"""Ledger retention: pruning old answered requests changes no position, paper balance or PnL."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.types import Quote
from daemon.config import Config
from daemon.config.load import build_config
from daemon.errors import ConfigError
from daemon.routing import RouterParts, RouterSections, build_router
from router.cache import PriceCache
from router.carry import CarryError
from router.ledger import FILE_NAME
from router.positions import utc_day
from router.retention import LedgerPruner, prune_ledger

VENUES = ("binance", "bybit")


def config(state: Path, **router: object) -> Config:
    raw: dict[str, Any] = {
        "daemon": {"state_dir": str(state)},
        "venues": {venue: {"symbols": ["BTC-USDT"]} for venue in VENUES},
        "paper": {"balances": {venue: {"USDT": "100000", "BTC": "5"} for venue in VENUES}},
        "router": router,
    }
    return build_config(raw, {})


def start(cfg: Config, *, books: bool) -> RouterParts:
    cache = PriceCache(ttl_ms=60_000, max_quote_age_ms=60_000)
    if books:  # the restarts below see no book: a rebuild must not need one
        for venue, (bid, ask) in (("binance", ("99", "100")), ("bybit", ("101.5", "102"))):
            levels = ((Decimal(bid), Decimal(10)),), ((Decimal(ask), Decimal(10)),)
            cache.update(Quote(venue, "BTC-USDT", levels[0][0][0], Decimal(10), levels[1][0][0], Decimal(10),
                               None, 0, 1, levels[0], levels[1]))  # fmt: skip
    return build_router(RouterSections.of(cfg), cache)


def order(request_id: str, side: str, quantity: str) -> bytes:
    message = {"v": 1, "request_id": request_id, "user_id": "u1", "kind": "order", "symbol": "BTC-USDT"}
    return orjson.dumps(message | {"side": side, "quantity": quantity})


def state(parts: RouterParts) -> dict[str, object]:
    """What a restart must give back: net positions, paper balances, today's realized PnL."""
    book = parts.router.risk.positions
    return {
        "positions": book.positions(),
        "balances": parts.router.balances.as_status(),
        "pnl_today": book.realized_on(utc_day(time.time_ns())),
    }


async def restarted(cfg: Config) -> dict[str, object]:
    parts = start(cfg, books=False)
    try:
        await parts.router.recover()
        return state(parts)
    finally:
        parts.ledger.close()


async def trade(parts: RouterParts, *orders: tuple[str, str, str]) -> None:
    for request_id, side, quantity in orders:
        result = orjson.loads((await parts.router.handle(order(request_id, side, quantity))).result or b"")
        assert result["status"] == "filled", result


async def test_positions_balances_and_pnl_are_the_same_after_prune_and_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    parts = start(cfg, books=True)
    # buys at 100 on binance, sells at 101.5 on bybit: positions on both venues, PnL realized today
    await trade(parts, ("r-1", "buy", "2"), ("r-2", "sell", "1.5"))
    # A request in flight, held by the settler (its venue dark): pruning stops at it.
    parts.ledger.claim("r-stuck", "u1", order("r-stuck", "buy", "1"), now_ns=time.time_ns())
    parts.ledger.owe("r-stuck", since_ns=time.time_ns(), error="venue dark")
    await trade(parts, ("r-3", "buy", "0.7"), ("r-4", "sell", "1.2"))
    running = state(parts)
    parts.ledger.close()
    before = await restarted(cfg)
    assert before["pnl_today"] != 0 and before["positions"] == running["positions"]
    assert before["balances"] == running["balances"]

    path = tmp_path / FILE_NAME
    assert prune_ledger(path, time.time_ns() + 1, "USDT") == 2  # up to the request in flight
    assert await restarted(cfg) == before
    parts = start(cfg, books=True)
    parts.ledger.complete("r-stuck", b'{"status": "failed"}', now_ns=time.time_ns())
    parts.ledger.answered("r-stuck")
    assert await parts.router.recover() == []
    await trade(parts, ("r-5", "buy", "0.1"))
    running = state(parts)
    parts.ledger.close()
    before = await restarted(cfg)
    assert prune_ledger(path, time.time_ns() + 1, "USDT", chunk=2) == 4  # the rest, two by two

    after = await restarted(cfg)
    assert after == before
    assert after["positions"] == running["positions"] and after["balances"] == running["balances"]
    parts = start(cfg, books=False)
    assert parts.ledger.stats()["requests_done"] == 0  # a restart replays nothing of the pruned history
    parts.ledger.close()


async def test_a_prune_keeps_recent_requests_and_their_dedupe(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    parts = start(cfg, books=True)
    await trade(parts, ("r-1", "buy", "1"))
    pruner = LedgerPruner(tmp_path / FILE_NAME, 3_600_000, "USDT")

    assert await pruner.prune() == 0  # answered a moment ago: kept

    replay = await parts.router.handle(order("r-1", "buy", "1"))
    assert replay.replayed
    parts.ledger.close()


async def test_the_pruner_runs_at_start_and_stops_with_the_service(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    parts = start(cfg, books=True)
    await trade(parts, ("r-1", "buy", "1"))
    clock = [time.time_ns() + 10 * 3_600_000_000_000]  # ten hours later
    pruner = LedgerPruner(tmp_path / FILE_NAME, 3_600_000, "USDT", interval_s=600, clock_ns=lambda: clock[0])
    stop = asyncio.Event()

    running = asyncio.create_task(pruner.run(stop))
    for _ in range(200):
        if parts.ledger.result_for("r-1") is None:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 5)

    assert parts.ledger.result_for("r-1") is None
    parts.ledger.close()


async def test_a_changed_valuation_currency_after_a_prune_is_refused_at_start(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    parts = start(cfg, books=True)
    await trade(parts, ("r-1", "buy", "1"))
    parts.ledger.close()
    prune_ledger(tmp_path / FILE_NAME, time.time_ns() + 1, "USDT")

    raw_cfg = config(tmp_path)
    other = build_config(
        {"daemon": {"state_dir": str(tmp_path)}, "risk": {"valuation_currency": "USD"},
         "venues": {v: {"symbols": ["BTC-USDT"]} for v in VENUES},
         "paper": {"balances": {v: {"USDT": "100000", "BTC": "5"} for v in VENUES}}},
        {},
    )  # fmt: skip
    assert raw_cfg.risk.valuation_currency == "USDT"
    parts = start(other, books=False)
    with pytest.raises(CarryError, match=r"risk\.valuation_currency is USD.*valued in USDT"):
        await parts.router.recover()
    parts.ledger.close()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"router": {"ledger_retention_ms": 604_800_000}},
            "router.ledger_retention_ms = 604800000: must be at least topics.retention_ms.orders "
            "(604800000) + router.max_request_age_ms (30000) = 604830000",
        ),
        (
            {"topics": {"retention_ms": {"orders": -1}}},
            "topics.retention_ms.orders is -1 (kept forever)",
        ),
        ({"router": {"ledger_retention_ms": 0}}, "router.ledger_retention_ms: must be -1"),
    ],
)
def test_a_retention_shorter_than_dedupe_needs_is_refused_naming_both_keys(
    raw: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        build_config(raw, {})
    assert problem in str(refused.value)


def test_a_retention_covering_the_orders_topic_and_the_request_age_is_accepted() -> None:
    cfg = build_config(
        {"router": {"ledger_retention_ms": 86_400_000 + 5_000, "max_request_age_ms": 5_000},
         "topics": {"retention_ms": {"orders": 86_400_000}}},
        {},
    )  # fmt: skip
    assert cfg.router.ledger_retention_ms == 86_405_000
    forever = build_config(
        {"router": {"ledger_retention_ms": -1}, "topics": {"retention_ms": {"orders": -1}}}, {}
    )
    assert forever.router.ledger_retention_ms == -1
