"""Build the SmartRouter and its state (ledger, preferences, risk, kill switch) from the config.

Paper mode fills against the cached books and loads no credential. Live mode
(`mode = "live"`, which the CLI accepts only with `--live`) trades through
`router.live.LiveExecutor` on every enabled venue whose `trade` is true, each
through its own signed client (`connectors.registry.TRADING`, Binance's
`BinanceTrading`), and refuses to start if one lacks its credentials. A venue
with `trade = false` is market data only: the router never routes there, in
either mode. At connect, each live venue's actual taker fee (its fee-tier
endpoint) replaces the configured one, which stays the fallback.

Balances (`router.balances`): live, every trading venue's account is read at
connect, before the router reconciles and the daemon reports ready, then after
fills and every `[router] balance_refresh_ms` (`router.balance_sync`). Paper
accounts start from `[paper.balances.<venue>]` and move with every paper fill;
without that table paper has no funding check (`daemon.config.paper` says why).

Live, the venues' open orders are checked against the ledger (`router.open_orders`); paper mode
has none to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import structlog

from connectors.binance.rest import BinanceConnector
from connectors.binance.trading import BinanceTrading
from connectors.registry import TRADING, TradingSettings
from connectors.rest_metrics import init_rest_metrics
from connectors.trading import TradingVenue
from connectors.types import VENUE_IDS
from daemon.config import Config, DaemonConfig, RiskConfig, RouterConfig, UserConfig, VenueConfig
from daemon.config.paper import PaperConfig
from daemon.config.security import OperatorConfig, SecurityConfig
from daemon.config.users import ACCESS_FIELDS
from daemon.credentials import load_binance_credentials, load_venue_secrets
from daemon.errors import ConfigError
from router.access import AccessPolicy, Entitlements
from router.balance_sync import BalanceSync
from router.balances import BalanceBook
from router.cache import PriceCache
from router.execution import Executor, PaperExecutor
from router.funding import symbol_assets
from router.kill_switch import KillSwitch
from router.ledger import Lease, Ledger
from router.ledger.postgres import PostgresStore
from router.live import LiveExecutor
from router.loss import LossGuard
from router.open_orders import OpenOrderCheck
from router.opportunities import OpenOpportunities
from router.positions import PositionBook, fresh_mids
from router.preferences import InvalidPreferences, PreferenceStore, UserPreferences, preferences_from_fields
from router.request import RequestRules
from router.residuals import ResidualSettings
from router.retention import LedgerPruner
from router.risk import RiskGate, RiskLimits
from router.signatures import KeyRing, parse_public_key
from router.signed_settings import SettingsGuard
from router.smart import SmartRouter

log = structlog.get_logger(__name__)


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
    paper: PaperConfig
    security: SecurityConfig
    operators: Mapping[str, OperatorConfig]

    @classmethod
    def of(cls, cfg: Config) -> RouterSections:
        """Pick the router's sections out of the whole config (the composition root's job)."""
        return cls(
            cfg.daemon, cfg.router, cfg.risk, cfg.venues, cfg.users, cfg.paper, cfg.security, cfg.operators
        )

    @property
    def signatures_required(self) -> bool:
        """Return whether orders, preferences and control must be signed (`[security]`, else the mode)."""
        return self.security.signatures_required(self.daemon.mode)


@dataclass(frozen=True, slots=True)
class RouterParts:
    """The router and the state it owns; `ledger` must be closed when the process stops."""

    router: SmartRouter
    ledger: Ledger
    preferences: PreferenceStore
    kill_switch: KillSwitch
    guard: SettingsGuard  # admits signed control and preferences messages
    live: LiveExecutor | None = None  # the live executor, whose venue connections need start/close
    symbols: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # by tradable venue
    loss: LossGuard | None = None  # the daily loss limit over the router's positions
    balance_sync: BalanceSync | None = None  # live: reads the venues' balances into the router's book
    open_orders: OpenOrderCheck | None = None  # live: venues' open orders against the ledger; paper: none
    pruner: LedgerPruner | None = None  # [router] ledger_retention_ms; None: the ledger keeps everything

    async def connect(self) -> None:
        """Connect the live venues (clock, rules, the account's taker fees, balances) before reconciling."""
        if self.live is None:
            return
        await self.live.start()
        for venue, fee_bps in (await self.live.account_taker_fees(self.symbols)).items():
            self.router.set_taker_fee(venue, fee_bps)
        if self.balance_sync is not None:
            await self.balance_sync.refresh()

    async def disconnect(self) -> None:
        """Close the live venues' connections; idempotent."""
        if self.live is not None:
            await self.live.close()


def configured_preferences(users: Mapping[str, UserConfig]) -> dict[str, UserPreferences]:
    """Turn `[users.<id>]` sections into preferences; a value the router refuses is a ConfigError."""
    configured = {}
    for user_id, user in users.items():
        values = {
            f.name: getattr(user, f.name)
            for f in fields(user)
            if f.name != "user_id" and f.name not in ACCESS_FIELDS
        }
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


def key_ring(principals: Mapping[str, UserConfig] | Mapping[str, OperatorConfig]) -> KeyRing:
    """Return the public keys of every principal that has any (`[users.<id>]` or `[operators.<id>]`)."""
    keys = {
        principal: tuple(parse_public_key(key) for key in section.public_keys)
        for principal, section in principals.items()
        if section.public_keys
    }
    return KeyRing(MappingProxyType(keys))


def access_policy(sections: RouterSections, users: KeyRing) -> AccessPolicy:
    """Return who may trade what: the signature requirement, the users' keys and their entitlements."""
    entitlements = {
        user_id: Entitlements(
            venues=None if user.venues is None else frozenset(user.venues),
            symbols=None if user.symbols is None else frozenset(user.symbols),
            kinds=None if user.kinds is None else frozenset(user.kinds),
        )
        for user_id, user in sections.users.items()
    }
    return AccessPolicy(sections.signatures_required, users, MappingProxyType(entitlements))


def build_balances(
    sections: RouterSections, venues: Mapping[str, VenueConfig], live: LiveExecutor | None
) -> tuple[BalanceBook, BalanceSync | None]:
    """Return the balance book legs are funded from and, live, what keeps it in step with the venues.

    Paper: `[paper.balances]` for every tradable venue, or for none (no funding check).
    """
    if live is not None:
        book = BalanceBook({venue: {} for venue in sorted(live.venues)}, synced=False)
        watched = {
            venue: frozenset(asset for symbol in venues[venue].symbols for asset in symbol_assets(symbol))
            for venue in live.venues
        }
        sync = BalanceSync(
            book,
            live.connectors,
            watched,
            tolerance_bps=sections.router.balance_tolerance_bps,
            refresh_s=sections.router.balance_refresh_ms / 1000,
        )
        return book, sync
    configured = sections.paper.balances
    if configured and (missing := sorted(set(venues) - set(configured))):
        raise ConfigError(
            f"paper.balances.{missing[0]}: missing; once one venue has [paper.balances.<venue>], every "
            "venue the router trades on needs one (a venue left out would trade without limit)"
        )
    return BalanceBook({venue: configured[venue] for venue in venues if venue in configured}), None


def open_ledger(sections: RouterSections) -> Ledger:
    """Open the ledger: SQLite in state_dir (one process), or the PostgreSQL one every router shares."""
    url = sections.router.ledger_url
    if url is None:
        return Ledger.open(Path(sections.daemon.state_dir))
    return Ledger(PostgresStore(url), Lease.for_process(sections.router.lease_ms))


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
    ledger = open_ledger(sections)
    kill_switch = KillSwitch(ledger)
    positions = PositionBook(
        sections.risk.valuation_currency, fresh_mids(cache, sections.risk.valuation_currency)
    )
    loss = LossGuard(positions, kill_switch, ledger, sections.risk.max_daily_loss)
    limits = RiskLimits(
        max_order_notional=sections.risk.max_order_notional,
        max_orders_per_second=sections.risk.max_orders_per_second,
        max_gross_exposure=sections.risk.max_gross_exposure,
        max_position=sections.risk.max_position,
    )
    balances, balance_sync = build_balances(sections, venues, live)
    users = key_ring(sections.users)  # who signs orders and their own preferences
    router = SmartRouter(
        cache,
        executor,
        ledger,
        preferences,
        RiskGate(limits, positions=positions, loss_guard=loss),
        kill_switch,
        RequestRules(
            venues=frozenset(venues),
            symbols=frozenset(symbol for vc in venues.values() for symbol in vc.symbols),
        ),
        fees,
        residuals=ResidualSettings(
            policy="unwind" if sections.router.residual_policy == "unwind" else "report",
            max_slippage_bps=sections.router.residual_max_slippage_bps,
            step_bps=sections.router.residual_step_bps,
            timeout_ms=sections.router.residual_timeout_ms,
        ),
        opportunities=opportunities,
        access=access_policy(sections, users),
        balances=balances,
        max_request_age_ms=sections.router.max_request_age_ms,
    )
    if balance_sync is not None:
        router.watch_fills(balance_sync.fill_seen)
    symbols = {venue: vc.symbols for venue, vc in venues.items()}
    guard = SettingsGuard(
        ledger,
        required=sections.signatures_required,
        users=users,
        operators=key_ring(sections.operators),
        max_age_ms=sections.security.max_message_age_ms,
    )
    if sections.daemon.mode == "live" and not sections.signatures_required:
        log.warning(
            "signatures_not_required_in_live_mode",
            detail="[security] require_signatures = false: anyone who can write to the orders, preferences "
            "or control topic can trade, change preferences, halt or resume",
        )
    open_orders = None if live is None else OpenOrderCheck(live.connectors, ledger)
    retention_ms = sections.router.ledger_retention_ms
    pruner = (
        None
        if retention_ms == -1
        else LedgerPruner(ledger.store, retention_ms, positions.currency, lease=ledger.lease)
    )
    return RouterParts(
        router,
        ledger,
        preferences,
        kill_switch,
        guard,
        live=live,
        symbols=symbols,
        loss=loss,
        balance_sync=balance_sync,
        open_orders=open_orders,
        pruner=pruner,
    )
