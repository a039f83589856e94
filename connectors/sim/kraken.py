"""Kraken WebSocket v2 market data as the simulator serves it (`/v2`).

Control, as documented on docs.kraken.com (websocket-v2 book, ticker, ping):

    {"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10}, "req_id": 1}
        → one ack per symbol: {"method": "subscribe", "req_id": 1, "result": {"channel": "book", "depth": 10,
           "snapshot": true, "symbol": "BTC/USD"}, "success": true, "time_in": "...", "time_out": "..."}
        → refused: {"error": "Currency pair not supported XBT/USD", "method": "subscribe", "success": false,
           "symbol": "XBT/USD", "time_in": "...", "time_out": "..."}
    {"method": "ping", "req_id": 101}
        → {"method": "pong", "req_id": 101, "time_in": "...", "time_out": "..."}

Once subscribed, `{"channel": "heartbeat"}` comes about once a second when
nothing else was sent; a connection with no traffic either way for a minute is
closed. Prices and quantities are JSON numbers written with the pair's
decimals (the symbol's tick and lot step), e.g. `64000.10`, `0.50000`.

    book   → `snapshot` of the top `depth` levels, then `update`s with the changed
             levels (qty 0 = removed; levels pushed below the depth are not
             reported, the client truncates), each with the CRC32 `checksum` of the
             top 10 (asks then bids, pair decimals, '.' and leading zeros removed)
    ticker → `snapshot`; with `event_trigger: "bbo"` an `update` on every BBO change
             (the default trigger, trades, never fires: the simulated market has no trades)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import ClassVar, Final
from urllib.parse import urlsplit

import orjson

from connectors.kraken.checksum import book_checksum
from connectors.sim.depth import DepthEvent, DepthSnapshot, view_changes
from connectors.sim.protocol import BookState, Reply, TickerStats, VenueProtocol, VenueRules, rfc3339
from connectors.types import Level

PATH: Final = "/v2"
BOOK_DEPTHS: Final = (10, 25, 100, 500, 1000)
TRIGGERS: Final = ("trades", "bbo")
CHECKSUM_LEVELS: Final = 10


class _Refused(Exception):
    """A request Kraken answers with `success: false` and this `error` text."""


class KrakenProtocol(VenueProtocol):
    """One Kraken v2 public connection: its book depths and ticker triggers per symbol."""

    venue: ClassVar[str] = "kraken"
    url_path: ClassVar[str] = PATH
    rules: ClassVar[VenueRules] = VenueRules(
        idle_timeout_s=60.0, idle_counts_sent=True, heartbeat_interval_s=1.0
    )
    has_checksums: ClassVar[bool] = True

    def __init__(
        self, path: str, symbols: Mapping[str, str], conn_id: str, *, checksums: bool = False
    ) -> None:
        super().__init__(path, symbols, conn_id, checksums=checksums)
        self._books: dict[str, int] = {}  # canonical symbol → subscribed depth
        self._tickers: dict[str, str] = {}  # canonical symbol → event trigger
        self._stats = TickerStats()

    @classmethod
    def accepts_path(cls, path: str) -> bool:
        """Serve only the v2 path."""
        return urlsplit(path).path.rstrip("/") == PATH

    @staticmethod
    def venue_symbol(symbol: str) -> str:
        """Map a canonical symbol to Kraken's v2 form (`BTC-USD` → `BTC/USD`)."""
        return symbol.replace("-", "/")

    @property
    def has_subscriptions(self) -> bool:
        """Tell whether the connection follows any book or ticker."""
        return bool(self._books or self._tickers)

    def handle(self, text: str, now_ns: int = 0) -> Reply:
        """Answer one client message the way Kraken's v2 WebSocket does."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Reply(message=text, frames=(self._refusal("Malformed request", None, {}, now_ns),))
        if not isinstance(request, dict):
            return Reply(message=request, frames=(self._refusal("Malformed request", None, {}, now_ns),))
        method, req = request.get("method"), _req_id(request)
        if method == "ping":
            return Reply(message=request, frames=(_dumps({"method": "pong", **req, **_times(now_ns)}),))
        if method not in ("subscribe", "unsubscribe"):
            return Reply(
                message=request,
                frames=(self._refusal(f"Method not supported: {method}", method, req, now_ns),),
            )
        try:
            channel, symbols, options = _parse_params(request.get("params"))
        except _Refused as exc:
            return Reply(message=request, frames=(self._refusal(str(exc), method, req, now_ns),))
        frames: list[str] = []
        made: list[str] = []
        for name in symbols:  # one answer per symbol, as Kraken acks
            try:
                result = self._apply(method, channel, name, options)
            except _Refused as exc:
                frames.append(self._refusal(str(exc), method, req, now_ns, symbol=name))
                continue
            ack = {"method": method, **req, "result": result, "success": True, **_times(now_ns)}
            frames.append(_dumps(ack))
            made += [self.symbols[name]] if method == "subscribe" else []
        return Reply(
            message=request,
            frames=tuple(frames),
            subscribed=tuple(made) if channel == "ticker" else (),
            depth_subscribed=tuple(made) if channel == "book" else (),
            snapshots=tuple((channel, s) for s in made) if options.get("snapshot", True) else (),
        )

    def encode(self, symbol: str, state: BookState, now_ns: int) -> tuple[str, ...]:
        """Encode a `ticker` update for a subscription triggered by BBO changes; nothing otherwise."""
        if self._tickers.get(symbol) != "bbo":
            return ()
        return (self._ticker("update", symbol, state),)

    def encode_snapshot(
        self, key: str, symbol: str, state: BookState | None, depth: DepthSnapshot, now_ns: int
    ) -> str | None:
        """Encode the `book` or `ticker` snapshot a new subscription starts with."""
        if key == "ticker":
            return self._ticker("snapshot", symbol, state) if state is not None else None
        size = self._books.get(symbol)
        if size is None:
            return None
        return self._book("snapshot", (depth.bids[:size], depth.asks[:size]), depth, now_ns)

    def encode_depth(self, event: DepthEvent, now_ns: int) -> tuple[str, ...]:
        """Encode a `book` update of the changes inside the subscribed depth, with its checksum."""
        size = self._books.get(event.symbol)
        if size is None:
            return ()
        before, after = event.before, event.after
        bids = view_changes(before.bids[:size], after.bids[:size], "bid", truncated_to=size)
        asks = view_changes(before.asks[:size], after.asks[:size], "ask", truncated_to=size)
        if not bids and not asks:
            return ()
        sent = (tuple((p, q) for _, p, q in bids), tuple((p, q) for _, p, q in asks))
        return (self._book("update", sent, after, now_ns, event.bad_checksum),)

    def heartbeat(self, now_ns: int, idle: bool) -> str | None:
        """Return `{"channel": "heartbeat"}` when subscribed and nothing else was sent for a while."""
        return _dumps({"channel": "heartbeat"}) if idle and self.has_subscriptions else None

    def _apply(
        self, method: str, channel: str, name: str, options: Mapping[str, object]
    ) -> dict[str, object]:
        symbol = self.symbols.get(name)
        if symbol is None:
            raise _Refused(f"Currency pair not supported {name}")
        table: dict[str, object] = dict(self._books) if channel == "book" else dict(self._tickers)
        if method == "subscribe" and symbol in table:
            raise _Refused("Already subscribed")
        if method == "unsubscribe" and symbol not in table:
            raise _Refused("Subscription Not Found")
        result: dict[str, object] = {"channel": channel}
        if channel == "book":
            size = int(str(options.get("depth", 10)))  # validated by _parse_params
            result["depth"] = self._books.pop(symbol, size) if method == "unsubscribe" else size
            if method == "subscribe":
                self._books[symbol] = size
        else:
            trigger = str(options.get("event_trigger", "trades"))
            result["event_trigger"] = (
                self._tickers.pop(symbol, trigger) if method == "unsubscribe" else trigger
            )
            if method == "subscribe":
                self._tickers[symbol] = trigger
        if method == "subscribe":
            result["snapshot"] = options.get("snapshot", True)
        result["symbol"] = name
        return result

    def _book(
        self,
        kind: str,
        sent: tuple[Sequence[Level], Sequence[Level]],
        book: DepthSnapshot,
        now_ns: int,
        bad_checksum: bool = False,
    ) -> str:
        """Encode `sent` levels; the checksum covers the top 10 of `book` (every depth is at least 10)."""
        prices, qtys = _decimals(book.tick), _decimals(book.step)
        top_bids, top_asks = book.bids[:CHECKSUM_LEVELS], book.asks[:CHECKSUM_LEVELS]
        checksum = book_checksum(top_bids, top_asks, price_decimals=prices, qty_decimals=qtys)
        data = {
            "symbol": self.venue_symbol(book.symbol),
            "bids": [{"price": _num(p, prices), "qty": _num(q, qtys)} for p, q in sent[0]],
            "asks": [{"price": _num(p, prices), "qty": _num(q, qtys)} for p, q in sent[1]],
            "checksum": checksum ^ 1 if bad_checksum else checksum,
            "timestamp": rfc3339(now_ns, 6),
        }
        return _dumps({"channel": "book", "type": kind, "data": [data]})

    def _ticker(self, kind: str, symbol: str, state: BookState) -> str:
        """Encode a ticker; numbers keep the precision the quote has (the model quantizes to the pair's)."""
        top = state.top
        prices, qtys = _decimals(top.bid), _decimals(top.bid_qty)
        last, low, high, change = self._stats.update(symbol, top)
        opened = last - change
        data = {
            "symbol": self.venue_symbol(symbol),
            "bid": _num(top.bid, prices),
            "bid_qty": _num(top.bid_qty, qtys),
            "ask": _num(top.ask, _decimals(top.ask)),
            "ask_qty": _num(top.ask_qty, _decimals(top.ask_qty)),
            "last": _num(last, prices),
            "volume": _num(Decimal(0), qtys),
            "vwap": _num((top.bid + top.ask) / 2, prices),
            "low": _num(low, prices),
            "high": _num(high, _decimals(high)),
            "change": _num(change, prices),
            "change_pct": _num(change / opened * 100 if opened else Decimal(0), 2),
            "timestamp": rfc3339(state.changed_ms * 1_000_000, 6),
        }
        return _dumps({"channel": "ticker", "type": kind, "data": [data]})

    def _refusal(
        self, error: str, method: object, req: Mapping[str, object], now_ns: int, symbol: str | None = None
    ) -> str:
        refusal: dict[str, object] = {"error": error}
        if isinstance(method, str):
            refusal["method"] = method
        refusal.update(req)
        refusal["success"] = False
        if symbol is not None:
            refusal["symbol"] = symbol
        return _dumps({**refusal, **_times(now_ns)})


def _parse_params(params: object) -> tuple[str, list[str], dict[str, object]]:
    if not isinstance(params, dict):
        raise _Refused("Malformed request: params must be an object")
    channel, symbols = params.get("channel"), params.get("symbol")
    if channel not in ("book", "ticker"):
        raise _Refused(f"Channel {channel} is not supported")
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
        raise _Refused("Malformed request: symbol must be a non-empty list of strings")
    options = {k: v for k, v in params.items() if k in ("depth", "snapshot", "event_trigger")}
    depth = options.get("depth", 10)
    if channel == "book" and (type(depth) is not int or depth not in BOOK_DEPTHS):
        raise _Refused(f"Invalid depth {depth}: expected one of {list(BOOK_DEPTHS)}")
    if channel == "ticker" and options.get("event_trigger", "trades") not in TRIGGERS:
        raise _Refused(f"Invalid event_trigger: expected one of {list(TRIGGERS)}")
    if not isinstance(options.get("snapshot", True), bool):
        raise _Refused("Malformed request: snapshot must be a boolean")
    return channel, list(symbols), options


def _decimals(value: Decimal) -> int:
    """Return how many decimals `value` is written with (a tick's or lot step's: the pair's precision)."""
    return max(0, -int(value.as_tuple().exponent))


def _num(value: Decimal, decimals: int) -> orjson.Fragment:
    # A JSON number written exactly as Kraken's precision has it, never through a float.
    return orjson.Fragment(format(value, f".{decimals}f"))


def _req_id(request: Mapping[str, object]) -> dict[str, object]:
    return {"req_id": request["req_id"]} if "req_id" in request else {}


def _times(now_ns: int) -> dict[str, str]:
    stamp = rfc3339(now_ns, 6)
    return {"time_in": stamp, "time_out": stamp}


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()
