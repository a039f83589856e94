"""The JSON `/status` view of one process (`daemon.http` serves it, `smartroute top` reads it).

`status_view` gathers what the process's parts know: readiness (`daemon.health`),
each feed's state and quote ages, the cache's quotes and counters, open
opportunities, and with a router its halt, risk (positions, gross exposure, the
day's PnL and the limits), balances, the venues' open orders the ledger does not
know, and the arbitrage residuals still being worked.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from connectors.stream import StreamRunner
from connectors.types import decimal_text
from daemon.health import VenueHealth
from daemon.routing import RouterParts
from router.cache import PriceCache
from router.detector import ArbitrageDetector
from router.ledger import ResidualRecord
from router.positions import utc_day

__all__ = ["status_view"]


def status_view(
    *,
    mode: str,
    max_quote_age_ms: int,
    readiness: tuple[bool, dict[str, Any]],
    health: Mapping[str, VenueHealth],
    cache: PriceCache,
    runners: Mapping[str, StreamRunner],
    detector: ArbitrageDetector | None,
    router: RouterParts | None,
) -> dict[str, Any]:
    """Return the JSON status view: readiness, venues, quotes and ages, cache, halt, open residuals."""
    ready, verdict = readiness
    ages, quotes = _quotes(cache)
    stats = cache.stats()
    return {
        "mode": mode,
        "max_quote_age_ms": max_quote_age_ms,
        "ready": ready,
        "readiness": verdict,
        "venues": {
            venue: {
                "state": r.state,
                "freshness": health[venue].state,
                "connects": r.connects,
                "quote_age_ms": ages.get(venue, {}),
            }
            for venue, r in runners.items()
        },
        "quotes": quotes,
        "cache": {
            "hits": stats.hits,
            "misses": stats.misses,
            "expirations": stats.expirations,
            "entries": stats.entries,
        },
        "open_opportunities": len(detector.open_opportunities()) if detector else 0,
        "halted": router.kill_switch.halted if router else None,
        "risk": _risk_status(router),
        "balances": _balances_status(router),
        # Live: each venue's open orders the ledger does not know (None in paper mode: none to check).
        "unknown_venue_orders": _unknown_venue_orders(router),
        "halt_reason": router.kill_switch.reason if router else None,
        "open_residuals": [_residual_status(r) for r in router.ledger.open_residuals()] if router else [],
        # Requests whose execution or settlement failed, being settled in the background (router.settler).
        "unsettled_requests": [u.as_status() for u in router.router.settler.unsettled()] if router else [],
    }


def _quotes(cache: PriceCache) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, Any]]]]:
    """Return each venue's quote ages by symbol, and each symbol's quotes by venue."""
    now = cache.clock_ns()
    ages: dict[str, dict[str, float]] = {}
    quotes: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in cache.entries():
        q = entry.quote
        age_ms = round(entry.age_ns(now) / 1e6, 3)
        ages.setdefault(q.venue, {})[q.symbol] = age_ms
        quotes.setdefault(q.symbol, {})[q.venue] = {
            "bid": decimal_text(q.bid),
            "bid_qty": decimal_text(q.bid_qty),
            "ask": decimal_text(q.ask),
            "ask_qty": decimal_text(q.ask_qty),
            "age_ms": age_ms,
            "seq": q.seq,
        }
    return ages, quotes


def _risk_status(router: RouterParts | None) -> dict[str, Any] | None:
    """Return positions, gross exposure, today's realized PnL and the limits (None without a router)."""
    if router is None:
        return None
    gate = router.router.risk
    loss = router.loss
    positions = gate.positions.snapshot(loss.today() if loss else utc_day(time.time_ns()))
    limits = {
        "max_gross_exposure": decimal_text(gate.limits.max_gross_exposure),
        "max_position": {a: decimal_text(v) for a, v in sorted(gate.limits.max_position.items())},
    }
    return positions | {"limits": limits} | (loss.snapshot() if loss else {})


def _balances_status(router: RouterParts | None) -> dict[str, Any] | None:
    """Return the router's balances: per tracked venue and asset, and (live) its reads and drifts."""
    if router is None:
        return None
    status: dict[str, Any] = {"venues": router.router.balances.as_status()}
    if router.balance_sync is not None:
        status |= router.balance_sync.as_status()
    return status


def _unknown_venue_orders(router: RouterParts | None) -> dict[str, object] | None:
    if router is None or router.open_orders is None:
        return None
    return router.open_orders.status()


def _residual_status(residual: ResidualRecord) -> dict[str, object]:
    """Return an arbitrage residual still being worked, as /status shows it."""
    return {
        "request_id": residual.request_id,
        "venue": residual.venue,
        "symbol": residual.symbol,
        "side": residual.side,
        "quantity": decimal_text(residual.quantity),
        "remaining": decimal_text(residual.remaining),
        "attempts": residual.attempts,
        "started_ns": residual.started_ns,
    }
