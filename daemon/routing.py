"""Build the SmartRouter and its state (ledger, preferences, risk, kill switch) from the config.

Paper mode fills against the cached books and loads no credential. Live mode
(`mode = "live"`, which the CLI accepts only with `--live`) trades through
`router.live.LiveExecutor` on the venues it has a REST connector for —
Binance — and only those venues are routable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path

from connectors.binance.rest import BinanceConnector
from connectors.binance.trading import BinanceTrading
from connectors.rest_metrics import init_rest_metrics
from connectors.types import VENUE_IDS
from daemon.config import Config
from daemon.credentials import load_binance_credentials
from daemon.errors import ConfigError
from router.cache import PriceCache
from router.execution import Executor, PaperExecutor
from router.ledger import Ledger
from router.live import LiveExecutor
from router.opportunities import OpenOpportunities
from router.preferences import InvalidPreferences, PreferenceStore, UserPreferences, preferences_from_fields
from router.request import RequestRules
from router.risk import KillSwitch, RiskGate, RiskLimits
from router.smart import SmartRouter


@dataclass(frozen=True, slots=True)
class RouterParts:
    """The router and the state it owns; `ledger` must be closed when the process stops."""

    router: SmartRouter
    ledger: Ledger
    preferences: PreferenceStore
    kill_switch: KillSwitch
    live: LiveExecutor | None = None  # the live executor, whose venue connections need start/close

    async def connect(self) -> None:
        """Connect the live venues (clock offset, exchange rules) before reconciling; paper: nothing."""
        if self.live is not None:
            await self.live.start()

    async def disconnect(self) -> None:
        """Close the live venues' connections; idempotent."""
        if self.live is not None:
            await self.live.close()


def configured_preferences(cfg: Config) -> dict[str, UserPreferences]:
    """Turn `[users.<id>]` sections into preferences; a value the router refuses is a ConfigError."""
    configured = {}
    for user_id, user in cfg.users.items():
        values = {f.name: getattr(user, f.name) for f in fields(user) if f.name != "user_id"}
        try:
            configured[user_id] = preferences_from_fields(user_id, values, known_venues=VENUE_IDS)
        except InvalidPreferences as exc:
            raise ConfigError(f"users.{user_id}.{exc.field}: {exc.message}") from exc
    return configured


def build_live_executor(cfg: Config, environ: Mapping[str, str] | None = None) -> LiveExecutor:
    """Build the live executor for Binance from `[venues.binance]` and the API credentials; no I/O."""
    binance = cfg.venues["binance"]
    if not binance.enabled:
        raise ConfigError("daemon.mode: live trading needs [venues.binance] enabled (the live venue)")
    credentials = load_binance_credentials(environ)
    connector = BinanceConnector(
        rest_url=binance.rest_url,
        credentials=credentials.for_connector(),
        recv_window_ms=binance.recv_window_ms,
    )
    init_rest_metrics("binance")
    trading = BinanceTrading(connector, tuple(binance.symbols))
    return LiveExecutor({"binance": trading}, taker_fee_bps={"binance": binance.taker_fee_bps})


def build_router(
    cfg: Config,
    cache: PriceCache,
    *,
    environ: Mapping[str, str] | None = None,
    opportunities: OpenOpportunities | None = None,
) -> RouterParts:
    """Open the ledger in `state_dir` and assemble the SmartRouter over `cache`, paper or live.

    `opportunities` is where arbitrage requests naming an `opportunity_id` are checked.
    """
    venues = cfg.enabled_venues()
    fees: dict[str, Decimal] = {venue: vc.taker_fee_bps for venue, vc in venues.items()}
    live = build_live_executor(cfg, environ) if cfg.daemon.mode == "live" else None
    executor: Executor = PaperExecutor(cache, fees) if live is None else live
    if live is not None:
        fees = {venue: fee for venue, fee in fees.items() if venue in live.venues}
    preferences = PreferenceStore(configured_preferences(cfg), known_venues=VENUE_IDS)
    ledger = Ledger.open(Path(cfg.daemon.state_dir))
    kill_switch = KillSwitch(ledger)
    router = SmartRouter(
        cache,
        executor,
        ledger,
        preferences,
        RiskGate(
            RiskLimits(
                max_order_notional=cfg.risk.max_order_notional,
                max_orders_per_second=cfg.risk.max_orders_per_second,
                max_venue_exposure=cfg.risk.max_venue_exposure,
            )
        ),
        kill_switch,
        RequestRules(
            venues=frozenset(venues),
            symbols=frozenset(symbol for vc in venues.values() for symbol in vc.symbols),
        ),
        fees,
        residual_policy="unwind" if cfg.router.residual_policy == "unwind" else "report",
        opportunities=opportunities,
    )
    return RouterParts(router, ledger, preferences, kill_switch, live)
