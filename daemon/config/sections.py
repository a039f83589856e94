"""The single-table sections: `[daemon]`, `[cache]`, `[detector]`, `[risk]`, `[router]`, and their readers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final, Literal

from connectors.types import Mode
from daemon.config.table import Table, show

LogLevel = Literal["debug", "info", "warning", "error"]
MODES: Final[tuple[Mode, ...]] = ("paper", "live")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
_ZERO: Final = Decimal(0)
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
    """`[risk]`: global limits every order passes before it executes; notionals in the quote currency."""

    max_order_notional: Decimal = Decimal(1_000_000)
    max_orders_per_second: int = 50
    max_venue_exposure: Decimal = Decimal(5_000_000)


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
    """Validate the `[risk]` table."""
    d = RiskConfig()
    cfg = RiskConfig(
        max_order_notional=t.decimal("max_order_notional", d.max_order_notional, minimum=_ZERO, strict=True),
        max_orders_per_second=t.integer("max_orders_per_second", d.max_orders_per_second, minimum=1),
        max_venue_exposure=t.decimal("max_venue_exposure", d.max_venue_exposure, minimum=_ZERO, strict=True),
    )
    t.finish()
    return cfg


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
    )
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
