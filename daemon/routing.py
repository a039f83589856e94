"""Build the SmartRouter and its state (ledger, preferences, risk, kill switch) from the config."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from connectors.types import VENUE_IDS
from daemon.config import Config
from daemon.errors import ConfigError
from router.cache import PriceCache
from router.execution import PaperExecutor
from router.ledger import Ledger
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


def build_router(cfg: Config, cache: PriceCache) -> RouterParts:
    """Open the ledger in `state_dir` and assemble a paper-mode SmartRouter over `cache`."""
    if cfg.daemon.mode != "paper":
        raise ConfigError("daemon.mode: live execution is not available in this build; use mode = 'paper'")
    venues = cfg.enabled_venues()
    preferences = PreferenceStore(configured_preferences(cfg), known_venues=VENUE_IDS)
    ledger = Ledger.open(Path(cfg.daemon.state_dir))
    kill_switch = KillSwitch(ledger)
    fees = {venue: vc.taker_fee_bps for venue, vc in venues.items()}
    router = SmartRouter(
        cache,
        PaperExecutor(cache, fees),
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
    )
    return RouterParts(router, ledger, preferences, kill_switch)
