"""The configuration's shape: frozen dataclasses with defaults, and typed readers that validate a TOML table.

`daemon.config` assembles these from a file and the environment; everything here is pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from connectors.types import VENUE_IDS
from daemon.config_topics import TopicsConfig
from daemon.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Mode = Literal["paper", "live"]
LogLevel = Literal["debug", "info", "warning", "error"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
RiskTolerance = Literal["low", "medium", "high"]
Strategy = Literal["best_price", "preferred", "fastest", "split"]

MODES: Final[tuple[Mode, ...]] = ("paper", "live")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
SECURITY_PROTOCOLS: Final[tuple[SecurityProtocol, ...]] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final[tuple[SaslMechanism, ...]] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
RISK_TOLERANCES: Final[tuple[RiskTolerance, ...]] = ("low", "medium", "high")
STRATEGIES: Final[tuple[Strategy, ...]] = ("best_price", "preferred", "fastest", "split")

SYMBOL_RE: Final = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
USER_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TOPIC_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9._-]{0,200}")

T = TypeVar("T", bound=str)


class Secret:
    """A secret string that never appears in `repr`, `str` or formatting; `reveal()` where it is used."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret's value, to hand it to the client that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class VenueDefaults:
    """A venue's real production endpoints and tier-0 fees."""

    ws_url: str
    rest_url: str
    taker_fee_bps: Decimal
    maker_fee_bps: Decimal


VENUE_DEFAULTS: Final[Mapping[str, VenueDefaults]] = MappingProxyType(
    {
        "binance": VenueDefaults(
            "wss://stream.binance.com:9443", "https://api.binance.com", Decimal(10), Decimal(10)
        ),
        "bybit": VenueDefaults(
            "wss://stream.bybit.com/v5/public/spot", "https://api.bybit.com", Decimal(10), Decimal(10)
        ),
        "okx": VenueDefaults(
            "wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com", Decimal(10), Decimal(8)
        ),
        "coinbase": VenueDefaults(
            "wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com", Decimal(120), Decimal(60)
        ),
        "kraken": VenueDefaults("wss://ws.kraken.com/v2", "https://api.kraken.com", Decimal(40), Decimal(25)),
    }
)


@dataclass(frozen=True, slots=True)
class TestnetEndpoints:
    """Where `[venues.<id>] testnet = true` points a venue: market data and trading."""

    ws_url: str
    rest_url: str
    trade_url: str


# Venues with a testnet or demo environment smartroute can run against (EXCHANGES.md, EXCHANGES-TRADING.md).
TESTNET_ENDPOINTS: Final[Mapping[str, TestnetEndpoints]] = MappingProxyType(
    {
        "binance": TestnetEndpoints(
            "wss://stream.testnet.binance.vision",
            "https://testnet.binance.vision",
            "https://testnet.binance.vision",
        ),
        "bybit": TestnetEndpoints(
            "wss://stream-testnet.bybit.com/v5/public/spot",
            "https://api-testnet.bybit.com",
            "https://api-testnet.bybit.com",
        ),
        # OKX demo trading: demo streams, and orders carry `x-simulated-trading: 1` (its client adds it).
        "okx": TestnetEndpoints(
            "wss://wspap.okx.com:8443/ws/v5/public", "https://www.okx.com", "https://openapi.okx.com"
        ),
    }
)
# Why `testnet = true` is refused where no usable environment exists.
NO_TESTNET: Final[Mapping[str, str]] = MappingProxyType(
    {
        "kraken": "Kraken has no spot sandbox; test with validate-only orders and small live orders",
        "coinbase": (
            "Coinbase's sandbox is a static mock (canned answers, no /products or /time, no signing "
            "check): it cannot run the daemon; test with small live orders"
        ),
    }
)


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
class KafkaConfig:
    """`[kafka]`: how to reach the cluster. `sasl_password` comes only from the environment or credentials."""

    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    client_id: str = "smartroute"
    topic_prefix: str = "smartroute."
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    send_buffer: int = 10_000  # messages
    linger_ms: int = 5
    request_timeout_ms: int = 30_000


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
    session_timeout_ms: int = 10_000
    max_batch: int = 100


DEFAULT_SYMBOLS: Final[tuple[str, ...]] = ("BTC-USDT", "ETH-USDT")


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """`[venues.<id>]`: one exchange; endpoints and fees default to the real venue's (see `default`)."""

    venue: str
    enabled: bool
    symbols: tuple[str, ...]
    ws_url: str
    rest_url: str
    taker_fee_bps: Decimal
    maker_fee_bps: Decimal
    silence_timeout_ms: int
    testnet: bool = False  # endpoints default to the venue's testnet (TESTNET_ENDPOINTS)
    recv_window_ms: int = 5_000  # how long a signed request stays valid at the venue (live trading)
    trade: bool = True  # false: market data only, the router never routes here in any mode
    trade_url: str = ""  # the REST base URL orders go to (live); "" = rest_url
    depth: int | None = None  # levels of a local order book; None streams the best bid and offer only

    @classmethod
    def default(cls, venue: str) -> VenueConfig:
        """Return the configuration of a venue whose section is absent: disabled, production defaults."""
        spec = VENUE_DEFAULTS[venue]
        return cls(
            venue=venue,
            enabled=False,
            symbols=DEFAULT_SYMBOLS,
            ws_url=spec.ws_url,
            rest_url=spec.rest_url,
            taker_fee_bps=spec.taker_fee_bps,
            maker_fee_bps=spec.maker_fee_bps,
            silence_timeout_ms=10_000,
            trade_url=spec.rest_url,
        )


@dataclass(frozen=True, slots=True)
class UserConfig:
    """`[users.<id>]`: a user's routing preferences (the fields of a `smartroute.preferences` message)."""

    user_id: str
    preferred_venues: tuple[str, ...] = ()
    excluded_venues: tuple[str, ...] = ()
    preferred_bias_bps: Decimal = Decimal(0)
    risk_tolerance: RiskTolerance = "medium"
    max_slippage_bps: Decimal | None = None  # None: derived from risk_tolerance
    max_order_notional: Decimal | None = None
    strategy: Strategy = "best_price"


def _default_venues() -> Mapping[str, VenueConfig]:
    return MappingProxyType({venue: VenueConfig.default(venue) for venue in VENUE_IDS})


def _no_users() -> Mapping[str, UserConfig]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; `venues` holds every known venue, enabled or not."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    venues: Mapping[str, VenueConfig] = field(default_factory=_default_venues)
    users: Mapping[str, UserConfig] = field(default_factory=_no_users)

    def topic(self, name: str) -> str:
        """Return the full topic name, e.g. `topic("opportunities")` → `smartroute.opportunities`."""
        return self.kafka.topic_prefix + name

    def enabled_venues(self) -> Mapping[str, VenueConfig]:
        """Return the enabled venues by id, in registry order."""
        return MappingProxyType({venue: v for venue, v in self.venues.items() if v.enabled})


@dataclass(frozen=True, slots=True)
class EnvOrigin:
    """Where a key's value came from when a SMARTROUTE_* variable set it."""

    variable: str
    text: str  # the raw value, used as-is where a string is expected


def config_error(key: str, message: str, origins: Mapping[str, EnvOrigin]) -> ConfigError:
    """Build the error for `key`, naming the environment variable that set it, if one did."""
    origin = origins.get(key)
    text = f"{key}: {message}"
    return ConfigError(f"{origin.variable} (environment) → {text}" if origin else text)


def show(value: object) -> str:
    """Render a config value the way it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "a table"
    return str(value)


def to_decimal(value: object) -> Decimal | None:
    """Convert a TOML number or numeric string to a finite Decimal; None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


class Table:
    """Typed, validating reads of one TOML table; every error names the full dotted key."""

    __slots__ = ("_data", "_origins", "_path", "_seen")

    def __init__(self, data: Mapping[str, object], path: str, origins: Mapping[str, EnvOrigin]) -> None:
        self._data = data
        self._path = path
        self._origins = origins
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        """Return the dotted key of `name` in this table."""
        return f"{self._path}.{name}" if self._path else name

    def error(self, name: str, message: str) -> ConfigError:
        """Build the error for `name` in this table."""
        return config_error(self.key(name), message, self._origins)

    def names(self) -> Iterator[str]:
        """Iterate over the keys present in this table."""
        return iter(self._data)

    def has(self, name: str) -> bool:
        """Tell whether `name` is set (a None value counts as unset)."""
        return self._data.get(name) is not None

    def value(self, name: str) -> object:
        """Return the raw value of `name` (None if unset) and mark it as read."""
        self._seen.add(name)
        return self._data.get(name)

    def table(self, name: str) -> Table:
        """Return the sub-table `name` (empty if unset)."""
        raw = self.value(name)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise self.error(name, f"must be a table, got {show(raw)}")
        return Table(raw, self.key(name), self._origins)

    def finish(self) -> None:
        """Raise for the first key of this table that no reader asked for."""
        for name in sorted(set(self._data) - self._seen):
            if self._data[name] is not None:  # None means unset (JSON data such as `redacted_view` output)
                raise self.error(name, "unknown key")

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        """Read an integer within [minimum, maximum]; booleans are not integers."""
        raw = self.value(name)
        if raw is None:
            return default
        in_range = isinstance(raw, int) and raw >= minimum and (maximum is None or raw <= maximum)
        if in_range and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if minimum == 1 and maximum is None:
            expected = "a positive integer"
        elif maximum is None:
            expected = f"an integer ≥ {minimum}"
        else:
            expected = f"an integer from {minimum} to {maximum}"
        raise self.error(name, f"must be {expected}, got {show(raw)}")

    def optional_decimal(self, name: str, *, minimum: Decimal, strict: bool) -> Decimal | None:
        """Read a decimal (TOML number or string) that must be ≥ minimum, or > minimum when strict."""
        raw = self.value(name)
        if raw is None:
            return None
        number = to_decimal(raw)
        if number is None or number < minimum or (strict and number == minimum):
            bound = f"{'>' if strict else '≥'} {minimum}"
            expected = f"a finite decimal number {bound} (TOML number or string)"
            raise self.error(name, f"must be {expected}, got {show(raw)}")
        return number

    def decimal(self, name: str, default: Decimal, *, minimum: Decimal, strict: bool = False) -> Decimal:
        """Read a decimal like `optional_decimal`, with a default."""
        number = self.optional_decimal(name, minimum=minimum, strict=strict)
        return default if number is None else number

    def boolean(self, name: str, default: bool) -> bool:
        """Read true or false."""
        raw = self.value(name)
        if raw is None:
            return default
        if not isinstance(raw, bool):
            raise self.error(name, f"must be true or false, got {show(raw)}")
        return raw

    def text(self, name: str) -> object:
        """Return the raw value of `name`, or the SMARTROUTE_* text that set it to a non-string."""
        raw = self.value(name)
        origin = self._origins.get(self.key(name))
        if raw is not None and not isinstance(raw, str) and origin is not None:
            return origin.text  # `SMARTROUTE_KAFKA__CLIENT_ID=123` means the string "123"
        return raw

    def optional_string(self, name: str) -> str | None:
        """Read a non-empty string."""
        raw = self.text(name)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw.strip():
            raise self.error(name, f"must be a non-empty string, got {show(raw)}")
        return raw

    def string(self, name: str, default: str) -> str:
        """Read a non-empty string, with a default."""
        text = self.optional_string(name)
        return default if text is None else text

    def choice(self, name: str, choices: tuple[T, ...], default: T) -> T:
        """Read one of `choices`."""
        found = self.optional_choice(name, choices)
        return default if found is None else found

    def optional_choice(self, name: str, choices: tuple[T, ...]) -> T | None:
        """Read one of `choices`, or None when unset."""
        raw = self.value(name)
        if raw is None:
            return None
        for option in choices:
            if raw == option:
                return option
        raise self.error(name, f"must be one of {', '.join(show(c) for c in choices)}, got {show(raw)}")

    def string_list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Read a list of strings without duplicates."""
        raw = self.value(name)
        if raw is None:
            return default
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise self.error(name, f"must be a list of strings, got {show(raw)}")
        items: list[str] = raw
        duplicates = sorted({item for item in items if items.count(item) > 1})
        if duplicates:
            raise self.error(name, f"must not repeat an entry, got {show(duplicates)} more than once")
        return tuple(items)


def redacted_view(cfg: Config) -> dict[str, object]:
    """Return the effective config as JSON-able data; Decimals as strings, set secrets as "<redacted>".

    Built from `Config`'s own fields, so every section appears, also one added later. A table of
    tables (venues, users) drops from each entry the field that repeats its key (`venue`, `user_id`).
    """
    view: dict[str, object] = {}
    for section in fields(cfg):
        value = getattr(cfg, section.name)
        if isinstance(value, Mapping):
            view[section.name] = {
                key: _plain(entry, skip=fields(entry)[0].name) for key, entry in value.items()
            }
        else:
            view[section.name] = _plain(value)
    return view


def _plain(obj: DataclassInstance, skip: str = "") -> dict[str, object]:
    return {f.name: _plain_value(getattr(obj, f.name)) for f in fields(obj) if f.name != skip}


def _plain_value(value: object) -> object:
    if isinstance(value, Secret):
        return "<redacted>"
    if isinstance(value, Decimal | Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_value(v) for k, v in value.items()}
    return value
