"""The seam between the simulator's server and one venue's wire protocol.

A venue protocol class (`binance.BinanceProtocol`, `okx.OkxProtocol`, ...) says
which URL paths it serves, which per-connection rules the venue enforces and
which REST paths it answers; per connection (one instance per socket) it parses
and answers client control messages and encodes BBO updates, depth events,
subscription snapshots and heartbeats. Instances are pure: no I/O, no clock
(times come in as arguments); the server owns sockets, time and bookkeeping.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import ClassVar

from connectors.sim.depth import DepthEvent, DepthSnapshot
from connectors.sim.market import BookTop


@dataclass(frozen=True, slots=True)
class VenueRules:
    """Per-connection rules a venue enforces; `None` turns a rule off.

    `max_messages_per_s`: incoming messages allowed in any 1 s window before the
    connection is closed. `idle_timeout_s`: close a connection that sent nothing
    for this long (`idle_counts_sent`: ... and was sent nothing either).
    `subscribe_timeout_s`: close a connection that has no subscription this long
    after opening. `repush_interval_s`: re-send an unchanged BBO snapshot after
    this long without a change. `heartbeat_interval_s`: how often the venue's
    heartbeat is offered to each connection. `ping_interval_s`/`ping_timeout_s`:
    server-side WebSocket keepalive pings.
    """

    max_messages_per_s: int | None = None
    idle_timeout_s: float | None = None
    idle_counts_sent: bool = False
    subscribe_timeout_s: float | None = None
    repush_interval_s: float | None = None
    heartbeat_interval_s: float | None = None
    ping_interval_s: float | None = None
    ping_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class BookState:
    """A venue's current BBO for one symbol as served: the top plus the venue's ids and change time."""

    top: BookTop
    update_id: int
    seq: int
    changed_ms: int


@dataclass(frozen=True, slots=True)
class Reply:
    """What one client message leads to: frames to send back, subscriptions made, snapshots due.

    `message` is the client message as parsed (a JSON value), or the raw text
    when it was not JSON. `subscribed` / `depth_subscribed` list canonical
    symbols whose BBO / depth stream this message subscribed, one entry per
    subscription (repeats count). `snapshots` lists (channel key, symbol) pairs
    the connection must be sent the current state of, right after `frames`
    (see `VenueProtocol.encode_snapshot`).
    """

    message: object
    frames: tuple[str, ...] = ()
    subscribed: tuple[str, ...] = ()
    depth_subscribed: tuple[str, ...] = ()
    snapshots: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MarketView:
    """Read-only access to a venue's current books, for snapshots and REST answers."""

    symbols: Mapping[str, str]
    """Venue symbol form → canonical symbol, for every simulated symbol."""
    depth: Callable[[str], DepthSnapshot]
    """Canonical symbol → its current depth snapshot."""
    now_ms: int


@dataclass(frozen=True, slots=True)
class RestReply:
    """An HTTP answer to a REST request: status and JSON body."""

    status: HTTPStatus
    body: object


class VenueProtocol(ABC):
    """One connection's view of a venue's public market-data WebSocket protocol."""

    venue: ClassVar[str]
    url_path: ClassVar[str]
    """Appended to `ws://host:port` to form the `ws_url` a client is configured with."""
    rules: ClassVar[VenueRules]
    announces_shutdown: ClassVar[bool] = False
    """Whether the venue sends an event before a server-side shutdown (see `shutdown_frame`)."""
    has_checksums: ClassVar[bool] = False
    """Whether the venue's depth frames always carry a checksum (OKX's are optional: `checksums`)."""
    view_depths: ClassVar[tuple[int, ...]] = ()
    """Depths whose top-d view the venue numbers on its own (see `depth.DepthSnapshot.view_id`)."""
    has_rest: ClassVar[bool] = False
    """Whether the venue answers REST requests on its port (see `rest`)."""

    def __init__(
        self, path: str, symbols: Mapping[str, str], conn_id: str, *, checksums: bool = False
    ) -> None:
        self.path = path
        self.symbols = symbols
        self.conn_id = conn_id
        self.checksums = checksums or self.has_checksums

    @classmethod
    @abstractmethod
    def accepts_path(cls, path: str) -> bool:
        """Tell whether a WebSocket request path (with its query) is served by this venue."""

    @staticmethod
    def venue_symbol(symbol: str) -> str:
        """Map a canonical `BASE-QUOTE` symbol to the venue's form (`BTC-USDT` → `BTCUSDT`)."""
        return symbol.replace("-", "")

    @classmethod
    def rest(cls, path: str, market: MarketView) -> RestReply | None:
        """Answer a plain HTTP GET of `path` (with its query); None if the venue has no such route."""
        return None

    def url_reply(self) -> Reply:
        """Return the subscriptions made by the connection URL itself (Binance `/ws/<stream>`)."""
        return Reply(message=None)

    @property
    def has_subscriptions(self) -> bool:
        """Tell whether the connection subscribed to anything (for venues that cut idle newcomers)."""
        return True

    @abstractmethod
    def handle(self, text: str, now_ns: int = 0) -> Reply:
        """Parse one client text message (received at `now_ns`) and answer it as the venue would."""

    @abstractmethod
    def encode(self, symbol: str, state: BookState, now_ns: int) -> tuple[str, ...]:
        """Encode a BBO update into the frames this connection's BBO subscriptions get (none if none)."""

    def encode_depth(self, event: DepthEvent, now_ns: int) -> tuple[str, ...]:
        """Encode a depth event into the frames this connection's depth subscriptions get."""
        return ()

    def encode_snapshot(
        self, key: str, symbol: str, state: BookState | None, depth: DepthSnapshot, now_ns: int
    ) -> str | None:
        """Encode the current state a new subscription (`key` from `Reply.snapshots`) starts with."""
        return None

    def heartbeat(self, now_ns: int, idle: bool) -> str | None:
        """Return the venue's heartbeat for this connection, if one is due (`idle`: nothing sent lately)."""
        return None

    def shutdown_frame(self, now_ns: int) -> str | None:
        """Return the venue's "server going down" event for this connection, if the venue has one."""
        return None


def rfc3339(now_ns: int, digits: int = 9) -> str:
    """Format epoch nanoseconds as RFC 3339 UTC with `digits` fractional digits (`...:50.714964855Z`)."""
    seconds, fraction = divmod(now_ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction:09d}"[: len(base) + 1 + digits] + "Z"


class TickerStats:
    """Session statistics a ticker reports next to the BBO, from the quotes one connection has seen.

    The simulated market has no trades: the last price is taken at the bid,
    volume is not modelled (zero), low/high/open come from the quotes seen.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Decimal, Decimal, Decimal]] = {}  # symbol → (open, low, high)

    def update(self, symbol: str, top: BookTop) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """Record a quote; return (last, low, high, change since the first quote seen)."""
        last = top.bid
        first, low, high = self._seen.get(symbol, (last, top.bid, top.ask))
        low, high = min(low, top.bid), max(high, top.ask)
        self._seen[symbol] = (first, low, high)
        return last, low, high, last - first


class RateWindow:
    """Sliding one-second window counting incoming messages against a per-second limit."""

    def __init__(self, limit: int, window_s: float = 1.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._times: deque[float] = deque()

    def hit(self, now: float) -> bool:
        """Record one message at monotonic time `now`; return False once the limit is exceeded."""
        self._times.append(now)
        # A microsecond of slack so that a client pacing at exactly the limit is not cut by float rounding.
        while self._times and self._times[0] <= now - self._window_s + 1e-6:
            self._times.popleft()
        return len(self._times) <= self._limit
