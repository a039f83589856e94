"""The single-table sections: `[daemon]`, `[cache]`, `[detector]`, `[risk]`, `[router]`, and their readers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from connectors.types import Mode
from daemon.config.table import Table, show
from router.ledger.postgres import ledger_url_problem

LogLevel = Literal["debug", "info", "warning", "error"]
MODES: Final[tuple[Mode, ...]] = ("paper", "live")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
_ZERO: Final = Decimal(0)
ASSET_RE: Final = re.compile(r"[A-Z0-9]{1,20}")
_MAX_RESIDUAL_SLIPPAGE_BPS: Final = Decimal(1000)  # 10 %: a wider unwind limit is a typo, not a policy


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """`[daemon]`: process mode, the HTTP endpoint (/metrics /healthz /readyz), state and logging."""

    mode: Mode = "paper"
    http_port: int = 9464  # 0 disables the HTTP endpoint
    http_host: str = "127.0.0.1"
    state_dir: Path = Path("/var/lib/smartroute")
    log_level: LogLevel = "info"
    shutdown_timeout_ms: int = 10_000


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """`[cache]`: how long a quote is kept, and how old it may be for a decision."""

    ttl_ms: int = 30_000
    max_quote_age_ms: int = 1_500


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """`[detector]`: arbitrage thresholds; notionals in the quote currency."""

    enabled: bool = True
    min_net_profit_bps: Decimal = Decimal(5)
    max_notional: Decimal = Decimal(10_000)
    update_min_change_bps: Decimal = Decimal(1)
    sweep_interval_ms: int = 100


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """`[risk]`: limits every order passes before it executes, and the daily loss limit.

    Notional, gross exposure and loss are in `valuation_currency`; `max_position` maps an asset
    to the largest |net position| (in that asset, summed across venues) an order may take it to.
    """

    max_order_notional: Decimal = Decimal(1_000_000)
    max_orders_per_second: int = 50
    valuation_currency: str = "USDT"
    max_gross_exposure: Decimal = Decimal(5_000_000)
    max_daily_loss: Decimal = Decimal(100_000)
    max_position: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """`[router]`: the order-router service (consumer of the orders topic)."""

    enabled: bool = True
    group_id: str = "smartroute-router"
    residual_policy: str = "unwind"  # "unwind" | "report": what to do with an arbitrage's unhedged quantity
    residual_max_slippage_bps: Decimal = Decimal(50)  # the widest IOC limit an unwind attempt may take
    residual_step_bps: Decimal = Decimal(10)  # how much each unwind attempt widens the limit
    residual_timeout_ms: int = 30_000  # not flat this long after it began: trading halts
    session_timeout_ms: int = 10_000
    max_batch: int = 100
    max_in_flight: int = 64  # order requests answered at once (one key at a time, in order)
    balance_refresh_ms: int = 60_000  # live: how often every venue's balances are read and compared
    # live: a venue balance differing from the expected one by more than this (bps of the larger) is a drift
    balance_tolerance_bps: Decimal = Decimal(10)
    max_request_age_ms: int = 30_000  # older requests (by their Kafka record time) are answered "expired"
    reconcile_interval_ms: int = 300_000  # live: how often venues' open orders are checked against the ledger
    # answered requests older than this leave the ledger, fills carried forward (-1: kept forever)
    ledger_retention_ms: int = 30 * 86_400_000
    # None: the SQLite ledger in state_dir (one process); "postgresql://...": one ledger for every router
    ledger_url: str | None = None
    lease_ms: int = 15_000  # shared ledger: a claim not renewed this long is taken over by another router


def read_daemon(t: Table) -> DaemonConfig:
    """Validate the `[daemon]` table."""
    d = DaemonConfig()
    cfg = DaemonConfig(
        mode=t.choice("mode", MODES, d.mode),
        http_port=t.integer("http_port", d.http_port, minimum=0, maximum=65535),
        http_host=t.string("http_host", d.http_host),
        state_dir=Path(t.string("state_dir", str(d.state_dir))),
        log_level=t.choice("log_level", LOG_LEVELS, d.log_level),
        shutdown_timeout_ms=t.integer("shutdown_timeout_ms", d.shutdown_timeout_ms, minimum=1),
    )
    t.finish()
    return cfg


def read_cache(t: Table) -> CacheConfig:
    """Validate the `[cache]` table."""
    d = CacheConfig()
    ttl_ms = t.integer("ttl_ms", d.ttl_ms, minimum=1)
    max_age_ms = t.integer("max_quote_age_ms", d.max_quote_age_ms, minimum=1)
    if max_age_ms > ttl_ms:
        raise t.error("max_quote_age_ms", f"must be ≤ {t.key('ttl_ms')} ({ttl_ms}), got {max_age_ms}")
    t.finish()
    return CacheConfig(ttl_ms=ttl_ms, max_quote_age_ms=max_age_ms)


def read_risk(t: Table) -> RiskConfig:
    """Validate the `[risk]` table; the obsolete `max_venue_exposure` is refused, naming its replacements."""
    d = RiskConfig()
    if t.has("max_venue_exposure"):
        t.value("max_venue_exposure")
        raise t.error(
            "max_venue_exposure",
            "no longer exists: positions are netted per asset across venues; limit them with "
            "risk.max_gross_exposure (in valuation_currency) and [risk.max_position] (per asset)",
        )
    currency = t.string("valuation_currency", d.valuation_currency)
    if not ASSET_RE.fullmatch(currency):
        raise t.error("valuation_currency", f'must be an asset like "USDT" (A-Z, 0-9), got {show(currency)}')
    positions = t.table("max_position")
    cfg = RiskConfig(
        max_order_notional=t.decimal("max_order_notional", d.max_order_notional, minimum=_ZERO, strict=True),
        max_orders_per_second=t.integer("max_orders_per_second", d.max_orders_per_second, minimum=1),
        valuation_currency=currency,
        max_gross_exposure=t.decimal("max_gross_exposure", d.max_gross_exposure, minimum=_ZERO, strict=True),
        max_daily_loss=t.decimal("max_daily_loss", d.max_daily_loss, minimum=_ZERO, strict=True),
        max_position=_read_positions(positions),
    )
    t.finish()
    return cfg


def _read_positions(t: Table) -> Mapping[str, Decimal]:
    """Validate `[risk.max_position]`: asset → the largest |net position| in it, > 0.

    Asset names are upper-cased (SMARTROUTE_RISK__MAX_POSITION__BTC arrives as `btc`).
    """
    limits: dict[str, Decimal] = {}
    for name in sorted(t.names()):
        asset = name.upper()
        if not ASSET_RE.fullmatch(asset):
            raise t.error(name, "must name an asset like BTC (A-Z, 0-9, up to 20 characters)")
        limit = t.optional_decimal(name, minimum=_ZERO, strict=True)
        if asset in limits:
            raise t.error(name, f"repeats the limit of {asset}")
        if limit is not None:
            limits[asset] = limit
    t.finish()
    return MappingProxyType(limits)


def read_router(t: Table) -> RouterConfig:
    """Validate the `[router]` table."""
    d = RouterConfig()
    group_id = t.string("group_id", d.group_id)
    if not group_id or len(group_id) > 200:
        raise t.error("group_id", f"must be 1..200 characters, got {show(group_id)}")
    max_slippage = t.decimal("residual_max_slippage_bps", d.residual_max_slippage_bps, minimum=_ZERO)
    if max_slippage > _MAX_RESIDUAL_SLIPPAGE_BPS:
        raise t.error(
            "residual_max_slippage_bps", f"must be ≤ {_MAX_RESIDUAL_SLIPPAGE_BPS}, got {show(max_slippage)}"
        )
    cfg = RouterConfig(
        enabled=t.boolean("enabled", d.enabled),
        group_id=group_id,
        residual_policy=t.choice("residual_policy", ("unwind", "report"), "unwind"),
        residual_max_slippage_bps=max_slippage,
        residual_step_bps=t.decimal("residual_step_bps", d.residual_step_bps, minimum=_ZERO, strict=True),
        residual_timeout_ms=t.integer(
            "residual_timeout_ms", d.residual_timeout_ms, minimum=100, maximum=3_600_000
        ),
        session_timeout_ms=t.integer(
            "session_timeout_ms", d.session_timeout_ms, minimum=1000, maximum=300_000
        ),
        max_batch=t.integer("max_batch", d.max_batch, minimum=1, maximum=10_000),
        max_in_flight=t.integer("max_in_flight", d.max_in_flight, minimum=1, maximum=10_000),
        balance_refresh_ms=t.integer("balance_refresh_ms", d.balance_refresh_ms, minimum=1000),
        balance_tolerance_bps=t.decimal(
            "balance_tolerance_bps", d.balance_tolerance_bps, minimum=_ZERO, strict=False
        ),
        max_request_age_ms=t.integer("max_request_age_ms", d.max_request_age_ms, minimum=1),
        reconcile_interval_ms=t.integer(
            "reconcile_interval_ms", d.reconcile_interval_ms, minimum=1000, maximum=86_400_000
        ),
        ledger_retention_ms=t.integer("ledger_retention_ms", d.ledger_retention_ms, minimum=-1),
        ledger_url=t.optional_string("ledger_url"),
        lease_ms=t.integer("lease_ms", d.lease_ms, minimum=1000, maximum=600_000),
    )
    if cfg.ledger_url is not None and (problem := ledger_url_problem(cfg.ledger_url)):
        raise t.error("ledger_url", problem)
    if cfg.ledger_retention_ms == 0:
        raise t.error("ledger_retention_ms", "must be -1 (kept forever) or a positive number of ms, got 0")
    if cfg.balance_tolerance_bps > 10_000:
        raise t.error("balance_tolerance_bps", f"must be ≤ 10000 bps, got {cfg.balance_tolerance_bps}")
    t.finish()
    return cfg


def read_detector(t: Table) -> DetectorConfig:
    """Validate the `[detector]` table."""
    d = DetectorConfig()
    cfg = DetectorConfig(
        enabled=t.boolean("enabled", d.enabled),
        min_net_profit_bps=t.decimal("min_net_profit_bps", d.min_net_profit_bps, minimum=_ZERO),
        max_notional=t.decimal("max_notional", d.max_notional, minimum=_ZERO, strict=True),
        update_min_change_bps=t.decimal("update_min_change_bps", d.update_min_change_bps, minimum=_ZERO),
        sweep_interval_ms=t.integer("sweep_interval_ms", d.sweep_interval_ms, minimum=1),
    )
    t.finish()
    return cfg
