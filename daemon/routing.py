"""Build the SmartRouter and its state (ledger, preferences, risk, kill switch) from the config.

Paper mode fills against the cached books and loads no credential. Live mode
(`mode = "live"`, which the CLI accepts only with `--live`) trades through
`router.live.LiveExecutor` on every enabled venue whose `trade` is true, each
through its own signed client (`connectors.registry.TRADING`, Binance's
`BinanceTrading`), and refuses to start if one lacks its credentials. A venue
with `trade = false` is market data only: the router never routes there, in
either mode. At connect, each live venue's actual taker fee (its fee-tier
endpoint) replaces the configured one, which stays the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path

from connectors.binance.rest import BinanceConnector
from connectors.binance.trading import BinanceTrading
from connectors.registry import TRADING, TradingSettings
from connectors.rest_metrics import init_rest_metrics
from connectors.trading import TradingVenue
from connectors.types import VENUE_IDS
from daemon.config import Config, DaemonConfig, RiskConfig, RouterConfig, UserConfig, VenueConfig
from daemon.credentials import load_binance_credentials, load_venue_secrets
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
class RouterSections:
    """The config sections the router is built from; nothing else of the config reaches it.

    `daemon` gives the mode and the ledger's `state_dir`; `venues` every known venue
    (the enabled, tradable ones are used); `users` the configured preferences.
    """

    daemon: DaemonConfig
    router: RouterConfig
    risk: RiskConfig
    venues: Mapping[str, VenueConfig]
    users: Mapping[str, UserConfig]

    @classmethod
    def of(cls, cfg: Config) -> RouterSections:
        """Pick the router's sections out of the whole config (the composition root's job)."""
        return cls(cfg.daemon, cfg.router, cfg.risk, cfg.venues, cfg.users)


@dataclass(frozen=True, slots=True)
class RouterParts:
    """The router and the state it owns; `ledger` must be closed when the process stops."""

    router: SmartRouter
    ledger: Ledger
    preferences: PreferenceStore
    kill_switch: KillSwitch
    live: LiveExecutor | None = None  # the live executor, whose venue connections need start/close
    symbols: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # by tradable venue

    async def connect(self) -> None:
        """Connect the live venues (clock, rules, the account's taker fees) before reconciling."""
        if self.live is None:
            return
        await self.live.start()
        for venue, fee_bps in (await self.live.account_taker_fees(self.symbols)).items():
            self.router.set_taker_fee(venue, fee_bps)

    async def disconnect(self) -> None:
        """Close the live venues' connections; idempotent."""
        if self.live is not None:
            await self.live.close()


def configured_preferences(users: Mapping[str, UserConfig]) -> dict[str, UserPreferences]:
    """Turn `[users.<id>]` sections into preferences; a value the router refuses is a ConfigError."""
    configured = {}
    for user_id, user in users.items():
        values = {f.name: getattr(user, f.name) for f in fields(user) if f.name != "user_id"}
        try:
            configured[user_id] = preferences_from_fields(user_id, values, known_venues=VENUE_IDS)
        except InvalidPreferences as exc:
            raise ConfigError(f"users.{user_id}.{exc.field}: {exc.message}") from exc
    return configured


def tradable_venues(venues: Mapping[str, VenueConfig]) -> dict[str, VenueConfig]:
    """Return the enabled venues the router may trade on (`trade = false` keeps one market-data only)."""
    return {venue: vc for venue, vc in venues.items() if vc.enabled and vc.trade}


def build_trading_venue(vc: VenueConfig, environ: Mapping[str, str] | None = None) -> TradingVenue:
    """Build one venue's signed trading client from its section and credentials; no I/O."""
    if vc.venue == "binance":
        credentials = load_binance_credentials(environ)
        connector = BinanceConnector(
            rest_url=vc.trade_url or vc.rest_url,
            credentials=credentials.for_connector(),
            recv_window_ms=vc.recv_window_ms,
        )
        return BinanceTrading(connector, vc.symbols)
    spec = TRADING.get(vc.venue)
    if spec is None:
        raise ConfigError(f"venues.{vc.venue}.trade: smartroute has no trading client for {vc.venue}")
    secrets = load_venue_secrets(vc.venue, spec.secrets, environ)
    settings = TradingSettings(
        vc.symbols, vc.trade_url or vc.rest_url, vc.testnet, vc.recv_window_ms, tier=vc.tier
    )
    try:
        return spec.build([secret.reveal() for secret in secrets], settings)
    except ValueError as exc:  # the client refused a credential's form; its message names no value
        raise ConfigError(f"venues.{vc.venue}: {exc}") from None


def build_live_executor(
    configured: Mapping[str, VenueConfig], environ: Mapping[str, str] | None = None
) -> LiveExecutor:
    """Build the live executor over every tradable venue of `[venues]`, each with its credentials; no I/O.

    A tradable venue without its credentials refuses the start, naming the venue and the variable.
    """
    venues = tradable_venues(configured)
    if not venues:
        raise ConfigError("daemon.mode: live trading needs at least one enabled venue with trade = true")
    clients = {}
    for venue, vc in venues.items():
        clients[venue] = build_trading_venue(vc, environ)
        init_rest_metrics(venue)
    return LiveExecutor(clients, taker_fee_bps={venue: vc.taker_fee_bps for venue, vc in venues.items()})


def build_router(
    sections: RouterSections,
    cache: PriceCache,
    *,
    environ: Mapping[str, str] | None = None,
    opportunities: OpenOpportunities | None = None,
) -> RouterParts:
    """Open the ledger in `state_dir` and assemble the SmartRouter over `cache`, paper or live.

    `opportunities` is where arbitrage requests naming an `opportunity_id` are checked.
    """
    venues = tradable_venues(sections.venues)
    fees: dict[str, Decimal] = {venue: vc.taker_fee_bps for venue, vc in venues.items()}
    live = build_live_executor(sections.venues, environ) if sections.daemon.mode == "live" else None
    executor: Executor = PaperExecutor(cache, fees) if live is None else live
    if live is not None:
        fees = {venue: fee for venue, fee in fees.items() if venue in live.venues}
    preferences = PreferenceStore(configured_preferences(sections.users), known_venues=VENUE_IDS)
    ledger = Ledger.open(Path(sections.daemon.state_dir))
    kill_switch = KillSwitch(ledger)
    router = SmartRouter(
        cache,
        executor,
        ledger,
        preferences,
        RiskGate(
            RiskLimits(
                max_order_notional=sections.risk.max_order_notional,
                max_orders_per_second=sections.risk.max_orders_per_second,
                max_venue_exposure=sections.risk.max_venue_exposure,
            )
        ),
        kill_switch,
        RequestRules(
            venues=frozenset(venues),
            symbols=frozenset(symbol for vc in venues.values() for symbol in vc.symbols),
        ),
        fees,
        residual_policy="unwind" if sections.router.residual_policy == "unwind" else "report",
        opportunities=opportunities,
    )
    symbols = {venue: vc.symbols for venue, vc in venues.items()}
    return RouterParts(router, ledger, preferences, kill_switch, live, symbols)
