"""Coinbase Advanced Trade market data as the simulator serves it (`ws://host:port`, no path).

Control, as documented in the CDP Advanced Trade WebSocket overview (public
channels need no `jwt`; one is accepted and ignored):

    {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}
    {"type": "unsubscribe", "product_ids": ["BTC-USD"], "channel": "level2"}
    {"type": "subscribe", "channel": "heartbeats"}

Each accepted request is confirmed by a `subscriptions` message listing all of
the connection's subscriptions. A connection with no subscription 5 s after
opening is closed. Refusals are `{"type": "error", "message": "..."}` (the shape
Coinbase's feeds use; the Advanced Trade pages show no example).

Every message is wrapped in `{channel, client_id, timestamp, sequence_num,
events}`; `sequence_num` counts every message sent on the connection, from 0.

    level2  → channel "l2_data": a `snapshot` event, then `update` events,
              updates [{side: "bid"|"offer", event_time, price_level, new_quantity}], "0" deletes
    ticker  → channel "ticker": a `snapshot`, then an `update` per BBO change (the simulated
              market has no trades, so this is what moves it), best_bid/best_ask with quantities
    heartbeats → channel "heartbeats" once a second: {current_time, heartbeat_counter}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import ClassVar, Final
from urllib.parse import urlsplit

import orjson

from connectors.sim.depth import Change, DepthEvent, DepthSnapshot
from connectors.sim.protocol import BookState, Reply, TickerStats, VenueProtocol, VenueRules, rfc3339
from connectors.types import decimal_text

PRODUCT_CHANNELS: Final = ("level2", "ticker")
HEARTBEATS: Final = "heartbeats"
_SNAPSHOT_EVENT_TIME: Final = "1970-01-01T00:00:00Z"  # as the documented l2_data snapshot shows
_PCT: Final = Decimal("1e-14")


class _Refused(Exception):
    """A request Coinbase answers with an `error` message."""


class CoinbaseProtocol(VenueProtocol):
    """One Advanced Trade market-data connection: its channels, products and message counter."""

    venue: ClassVar[str] = "coinbase"
    url_path: ClassVar[str] = ""
    rules: ClassVar[VenueRules] = VenueRules(subscribe_timeout_s=5.0, heartbeat_interval_s=1.0)

    def __init__(
        self, path: str, symbols: Mapping[str, str], conn_id: str, *, checksums: bool = False
    ) -> None:
        super().__init__(path, symbols, conn_id, checksums=checksums)
        self._products: dict[str, dict[str, None]] = {channel: {} for channel in PRODUCT_CHANNELS}
        self._heartbeats = False
        self._sequence = 0
        self._heartbeat_counter = 0
        self._opened_ns: int | None = None
        self._stats = TickerStats()

    @classmethod
    def accepts_path(cls, path: str) -> bool:
        """Serve the root path only."""
        return urlsplit(path).path in ("", "/")

    @staticmethod
    def venue_symbol(symbol: str) -> str:
        """Return the product id of a canonical symbol (the same text: `BTC-USD`)."""
        return symbol

    @property
    def has_subscriptions(self) -> bool:
        """Tell whether the connection subscribed to any channel."""
        return self._heartbeats or any(self._products.values())

    def handle(self, text: str, now_ns: int = 0) -> Reply:
        """Answer one client message the way the Advanced Trade feed does."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Reply(message=text, frames=(_error("malformed JSON"),))
        try:
            kind, channel, symbols = self._parse(request)
        except _Refused as exc:
            return Reply(message=request, frames=(_error(str(exc)),))
        if channel == HEARTBEATS:
            self._heartbeats = kind == "subscribe"
        elif kind == "subscribe":
            self._products[channel].update(dict.fromkeys(symbols))
        else:
            for symbol in symbols:
                self._products[channel].pop(symbol, None)
        frames = (self._envelope("subscriptions", [{"subscriptions": self._listing()}], now_ns),)
        if kind != "subscribe" or channel == HEARTBEATS:
            return Reply(message=request, frames=frames)
        return Reply(
            message=request,
            frames=frames,
            subscribed=tuple(symbols) if channel == "ticker" else (),
            depth_subscribed=tuple(symbols) if channel == "level2" else (),
            snapshots=tuple((channel, symbol) for symbol in symbols),
        )

    def encode(self, symbol: str, state: BookState, now_ns: int) -> tuple[str, ...]:
        """Encode a `ticker` update; nothing if this connection does not follow the product's ticker."""
        if symbol not in self._products["ticker"]:
            return ()
        return (self._ticker("update", symbol, state, now_ns),)

    def encode_snapshot(
        self, key: str, symbol: str, state: BookState | None, depth: DepthSnapshot, now_ns: int
    ) -> str | None:
        """Encode the `l2_data` snapshot or the `ticker` snapshot a new subscription starts with."""
        if key == "ticker":
            return self._ticker("snapshot", symbol, state, now_ns) if state is not None else None
        changes: list[Change] = [("bid", p, q) for p, q in depth.bids] + [
            ("ask", p, q) for p, q in depth.asks
        ]
        return self._l2("snapshot", symbol, changes, _SNAPSHOT_EVENT_TIME, now_ns)

    def encode_depth(self, event: DepthEvent, now_ns: int) -> tuple[str, ...]:
        """Encode an `l2_data` update event; nothing if the product's level2 is not followed."""
        if event.symbol not in self._products["level2"]:
            return ()
        event_time = rfc3339(event.after.changed_ms * 1_000_000, 6)
        return (self._l2("update", event.symbol, event.changes, event_time, now_ns),)

    def heartbeat(self, now_ns: int, idle: bool) -> str | None:
        """Return the once-a-second `heartbeats` message, if the channel is subscribed."""
        if not self._heartbeats:
            return None
        self._heartbeat_counter += 1
        if self._opened_ns is None:
            self._opened_ns = now_ns
        elapsed_s = (now_ns - self._opened_ns) / 1e9
        # Go's time.Time String(), monotonic reading included, as the documented example shows.
        current = rfc3339(now_ns).replace("T", " ").removesuffix("Z") + f" +0000 UTC m=+{elapsed_s:.9f}"
        event = {"current_time": current, "heartbeat_counter": str(self._heartbeat_counter)}
        return self._envelope(HEARTBEATS, [event], now_ns)

    def _parse(self, request: object) -> tuple[str, str, list[str]]:
        if not isinstance(request, dict):
            raise _Refused("malformed request: expected a JSON object")
        kind, channel = request.get("type"), request.get("channel")
        if kind not in ("subscribe", "unsubscribe"):
            raise _Refused(f"unknown message type {kind!r}: expected subscribe or unsubscribe")
        if channel == HEARTBEATS:
            return kind, channel, []
        if channel not in PRODUCT_CHANNELS:
            raise _Refused(f"Failed to subscribe: channel {channel!r} is not supported")
        products = request.get("product_ids")
        if not isinstance(products, list) or not products or not all(isinstance(p, str) for p in products):
            raise _Refused(f"Failed to subscribe: {channel} needs a non-empty product_ids list")
        unknown = [p for p in products if p not in self.symbols]
        if unknown:
            raise _Refused(f"Failed to subscribe: unknown product ids {unknown}")
        return kind, channel, [self.symbols[p] for p in products]

    def _listing(self) -> dict[str, list[str]]:
        listing = {c: [self.venue_symbol(s) for s in p] for c, p in self._products.items() if p}
        if self._heartbeats:
            listing[HEARTBEATS] = [HEARTBEATS]
        return listing

    def _ticker(self, kind: str, symbol: str, state: BookState, now_ns: int) -> str:
        top = state.top
        last, low, high, change = self._stats.update(symbol, top)
        opened = last - change
        ticker = {
            "type": "ticker",
            "product_id": self.venue_symbol(symbol),
            "price": decimal_text(last),
            "volume_24_h": "0",
            "low_24_h": decimal_text(low),
            "high_24_h": decimal_text(high),
            "low_52_w": decimal_text(low),
            "high_52_w": decimal_text(high),
            "price_percent_chg_24_h": decimal_text((change / opened * 100).quantize(_PCT)) if opened else "0",
            "best_bid": decimal_text(top.bid),
            "best_bid_quantity": decimal_text(top.bid_qty),
            "best_ask": decimal_text(top.ask),
            "best_ask_quantity": decimal_text(top.ask_qty),
        }
        return self._envelope("ticker", [{"type": kind, "tickers": [ticker]}], now_ns)

    def _l2(self, kind: str, symbol: str, changes: Sequence[Change], event_time: str, now_ns: int) -> str:
        updates = [
            {
                "side": "bid" if side == "bid" else "offer",
                "event_time": event_time,
                "price_level": decimal_text(price),
                "new_quantity": decimal_text(qty),
            }
            for side, price, qty in changes
        ]
        event = {"type": kind, "product_id": self.venue_symbol(symbol), "updates": updates}
        return self._envelope("l2_data", [event], now_ns)

    def _envelope(self, channel: str, events: list[object], now_ns: int) -> str:
        message = {
            "channel": channel,
            "client_id": "",
            "timestamp": rfc3339(now_ns),
            "sequence_num": self._sequence,
            "events": events,
        }
        self._sequence += 1
        return orjson.dumps(message).decode()


def _error(message: str) -> str:
    return orjson.dumps({"type": "error", "message": message}).decode()
