"""The seam between the simulator's server and one venue's wire protocol.

A venue protocol class (`binance.BinanceProtocol`, `bybit.BybitProtocol`) says
which URL paths it serves, which per-connection rules the venue enforces, and,
per connection (one instance per socket), how client control messages are
parsed and answered and how a BBO update is encoded. Instances are pure: no
I/O, no clock; the server owns sockets, time and bookkeeping.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from connectors.sim.market import BookTop


@dataclass(frozen=True, slots=True)
class VenueRules:
    """Per-connection rules a venue enforces; `None` turns a rule off.

    `max_messages_per_s`: incoming messages allowed in any 1 s window before the
    connection is closed. `idle_timeout_s`: close a connection that sent nothing
    for this long. `repush_interval_s`: re-send an unchanged BBO snapshot after
    this long without a change. `ping_interval_s`/`ping_timeout_s`: server-side
    WebSocket keepalive pings.
    """

    max_messages_per_s: int | None = None
    idle_timeout_s: float | None = None
    repush_interval_s: float | None = None
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
    """What one client message leads to: frames to send back and BBO subscriptions it made.

    `message` is the client message as parsed (a JSON value), or the raw text
    when it was not JSON. `subscribed` lists canonical symbols whose BBO stream
    this message subscribed, one entry per subscription (repeats count).
    """

    message: object
    frames: tuple[str, ...] = ()
    subscribed: tuple[str, ...] = ()


class VenueProtocol(ABC):
    """One connection's view of a venue's public market-data WebSocket protocol."""

    venue: ClassVar[str]
    url_path: ClassVar[str]
    """Appended to `ws://host:port` to form the `ws_url` a client is configured with."""
    rules: ClassVar[VenueRules]
    snapshot_on_subscribe: ClassVar[bool]
    """Whether a new BBO subscription is answered at once with the current book."""
    announces_shutdown: ClassVar[bool] = False
    """Whether the venue sends an event before a server-side shutdown (see `shutdown_frame`)."""

    def __init__(self, path: str, symbols: Mapping[str, str], conn_id: str) -> None:
        self.path = path
        self.symbols = symbols
        self.conn_id = conn_id

    @classmethod
    @abstractmethod
    def accepts_path(cls, path: str) -> bool:
        """Tell whether a WebSocket request path (with its query) is served by this venue."""

    @staticmethod
    def venue_symbol(symbol: str) -> str:
        """Map a canonical `BASE-QUOTE` symbol to the venue's form (`BTC-USDT` → `BTCUSDT`)."""
        return symbol.replace("-", "")

    @property
    def url_subscriptions(self) -> tuple[str, ...]:
        """Return canonical symbols whose BBO stream was subscribed in the connection URL."""
        return ()

    @abstractmethod
    def handle(self, text: str) -> Reply:
        """Parse one client text message and answer it as the venue would."""

    @abstractmethod
    def encode(self, symbol: str, state: BookState, now_ms: int) -> str | None:
        """Encode a BBO update for this connection, or return None if it is not subscribed to it."""

    def shutdown_frame(self, now_ms: int) -> str | None:
        """Return the venue's "server going down" event for this connection, if the venue has one."""
        return None


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
