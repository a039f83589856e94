"""Binance Spot market streams and the depth snapshot, as the simulator serves them.

WebSocket paths `/ws`, `/ws/<streams>`, `/stream[?streams=]`; plain HTTP GETs
on the same port: `/api/v3/depth?symbol=X&limit=N` (`limit` default 100,
capped at 5000 and at the simulated depth), `/api/v3/ping`, `/api/v3/time`.

Live control, as documented in binance-spot-api-docs `web-socket-streams.md`:

    {"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}   →  {"result": null, "id": 1}
    {"method": "LIST_SUBSCRIPTIONS", "id": 3}   →  {"result": ["btcusdt@bookTicker"], "id": 3}
    anything invalid  →  {"error": {"code": 2, "msg": "Invalid request: ..."}, "id": ...}

BBO data, `<symbol>@bookTicker` (no `e`/`E` fields), raw on `/ws`, wrapped on `/stream`:

    {"stream": "btcusdt@bookTicker",
     "data": {"u": 400900217, "s": "BTCUSDT", "b": "64000.01", "B": "0.5", "a": "64000.02", "A": "1.2"}}

Depth, `<symbol>@depth@100ms` (or `<symbol>@depth`): one event per book change,
`U` = first update id of the event, `u` = last (the next event's `U` is `u` + 1),
aligned with the REST snapshot's `lastUpdateId`:

    {"e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": 157, "u": 160,
     "b": [["0.0024", "10"]], "a": [["0.0026", "100"]]}
    GET /api/v3/depth?symbol=BNBBTC&limit=5
        → {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]], "asks": [...]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import ClassVar, Final
from urllib.parse import parse_qs, urlsplit

import orjson

from connectors.sim.depth import DepthEvent
from connectors.sim.protocol import BookState, MarketView, Reply, RestReply, VenueProtocol, VenueRules
from connectors.types import Level

_METHODS: Final = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_STRING: Final = re.compile(r"[A-Za-z0-9]{1,36}")
_INT64: Final = range(-(2**63), 2**63)
_BOOK_TICKER: Final = "@bookTicker"
_DEPTH_STREAMS: Final = ("@depth", "@depth@100ms")
_REST_DEFAULT_LIMIT: Final = 100
_REST_MAX_LIMIT: Final = 5000
_BAD_ID: Final = "Invalid request: request ID must be an unsigned integer"


class _InvalidRequest(Exception):
    """A control message Binance would refuse; carries Binance's error code and message."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class BinanceProtocol(VenueProtocol):
    """One Binance Spot market-stream connection: its streams and its `combined` property."""

    venue: ClassVar[str] = "binance"
    url_path: ClassVar[str] = ""
    # Server pings every 20 s, pong due within a minute; 5 incoming messages/s per connection.
    rules: ClassVar[VenueRules] = VenueRules(max_messages_per_s=5, ping_interval_s=20.0, ping_timeout_s=60.0)
    announces_shutdown: ClassVar[bool] = True
    has_rest: ClassVar[bool] = True

    def __init__(
        self, path: str, symbols: Mapping[str, str], conn_id: str, *, checksums: bool = False
    ) -> None:
        super().__init__(path, symbols, conn_id, checksums=checksums)
        parts = urlsplit(path)
        self.combined = parts.path.rstrip("/") == "/stream"
        if self.combined:
            names = "/".join(parse_qs(parts.query).get("streams", []))
        else:
            names = parts.path.removeprefix("/ws").strip("/")
        self._streams: dict[str, None] = dict.fromkeys(n for n in names.split("/") if n)

    @classmethod
    def accepts_path(cls, path: str) -> bool:
        """Serve `/ws`, `/ws/<stream>[/<stream>...]` and `/stream[?streams=a/b]`."""
        route = urlsplit(path).path.rstrip("/")
        return route in ("/ws", "/stream") or route.startswith("/ws/")

    @classmethod
    def rest(cls, path: str, market: MarketView) -> RestReply | None:
        """Answer `GET /api/v3/depth`, `/api/v3/ping` and `/api/v3/time` the way Binance does."""
        parts = urlsplit(path)
        route = parts.path.rstrip("/")
        if route == "/api/v3/ping":
            return RestReply(HTTPStatus.OK, {})
        if route == "/api/v3/time":
            return RestReply(HTTPStatus.OK, {"serverTime": market.now_ms})
        if route != "/api/v3/depth":
            return None
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        symbol = market.symbols.get(query.get("symbol", "").upper())
        if not query.get("symbol"):
            return _rest_error(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        if symbol is None:
            return _rest_error(-1121, "Invalid symbol.")
        limit_text = query.get("limit", str(_REST_DEFAULT_LIMIT))
        if not limit_text.isdigit() or len(limit_text) > 20:
            return _rest_error(
                -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            )
        limit = min(max(int(limit_text), 1), _REST_MAX_LIMIT)
        book = market.depth(symbol)
        body = {
            "lastUpdateId": book.last_id,
            "bids": _levels(book.bids[:limit]),
            "asks": _levels(book.asks[:limit]),
        }
        return RestReply(HTTPStatus.OK, body)

    def url_reply(self) -> Reply:
        """Return the bookTicker and depth subscriptions named in the connection URL."""
        bbo, depth = self._stream_symbols(tuple(self._streams))
        return Reply(message=None, subscribed=bbo, depth_subscribed=depth)

    @property
    def streams(self) -> tuple[str, ...]:
        """Return the connection's current stream names, in subscription order."""
        return tuple(self._streams)

    def handle(self, text: str, now_ns: int = 0) -> Reply:
        """Answer one live-control message the way Binance does."""
        try:
            request = json.loads(text)
        except json.JSONDecodeError as exc:
            error = {
                "code": 3,
                "msg": f"Invalid JSON: expected value at line {exc.lineno} column {exc.colno}",
            }
            return Reply(message=text, frames=(_dumps({"error": error, "id": None}),))
        request_id: object = None
        try:
            if not isinstance(request, dict):
                raise _InvalidRequest(2, "Invalid request: expected a JSON object")
            request_id = _request_id(request)
            result, subscribed = self._dispatch(request, text)
        except _InvalidRequest as exc:
            error = {"code": exc.code, "msg": exc.msg}
            return Reply(message=request, frames=(_dumps({"error": error, "id": request_id}),))
        bbo, depth = self._stream_symbols(subscribed)
        frame = _dumps({"result": result, "id": request_id})
        return Reply(message=request, frames=(frame,), subscribed=bbo, depth_subscribed=depth)

    def encode_depth(self, event: DepthEvent, now_ns: int) -> tuple[str, ...]:
        """Encode a `depthUpdate` for each depth stream of the symbol this connection has."""
        venue_symbol = self.venue_symbol(event.symbol)
        bids = [[format(p, "f"), format(q, "f")] for side, p, q in event.changes if side == "bid"]
        asks = [[format(p, "f"), format(q, "f")] for side, p, q in event.changes if side == "ask"]
        data = {
            "e": "depthUpdate",
            "E": now_ns // 1_000_000,
            "s": venue_symbol,
            "U": event.first_id,
            "u": event.after.last_id,
            "b": bids,
            "a": asks,
        }
        names = [venue_symbol.lower() + suffix for suffix in _DEPTH_STREAMS]
        return tuple(
            _dumps({"stream": name, "data": data} if self.combined else data)
            for name in names
            if name in self._streams
        )

    def encode(self, symbol: str, state: BookState, now_ns: int) -> tuple[str, ...]:
        """Encode a bookTicker event, wrapped when the connection is combined; nothing if not subscribed."""
        stream = self.venue_symbol(symbol).lower() + _BOOK_TICKER
        if stream not in self._streams:
            return ()
        top = state.top
        data = {
            "u": state.update_id,
            "s": self.venue_symbol(symbol),
            "b": format(top.bid, "f"),
            "B": format(top.bid_qty, "f"),
            "a": format(top.ask, "f"),
            "A": format(top.ask_qty, "f"),
        }
        return (_dumps({"stream": stream, "data": data} if self.combined else data),)

    def shutdown_frame(self, now_ns: int) -> str | None:
        """Return the `serverShutdown` event, wrapped as `!serverShutdown` on combined connections."""
        data = {"e": "serverShutdown", "E": now_ns // 1_000_000}
        return _dumps({"stream": "!serverShutdown", "data": data} if self.combined else data)

    def _dispatch(self, request: dict[str, object], text: str) -> tuple[object, tuple[str, ...]]:
        method = request.get("method")
        if method is None:
            raise _InvalidRequest(2, f"Invalid request: missing field `method` at line 1 column {len(text)}")
        if not isinstance(method, str):
            raise _InvalidRequest(2, "Invalid request: invalid type for `method`, expected a string")
        if method not in _METHODS:
            expected = ", ".join(f"`{m}`" for m in _METHODS)
            literal = json.dumps(method)
            column = text.find(literal) + len(literal) if literal in text else len(text)
            raise _InvalidRequest(
                2,
                f"Invalid request: unknown variant `{method}`, expected one of {expected}"
                f" at line 1 column {column}",
            )
        params = request.get("params", [])
        if not isinstance(params, list):
            raise _InvalidRequest(2, "Invalid request: params must be an array")
        if method == "SUBSCRIBE":
            names = _stream_names(params)
            self._streams.update(dict.fromkeys(names))
            return None, tuple(names)
        if method == "UNSUBSCRIBE":
            for name in _stream_names(params):
                self._streams.pop(name, None)
            return None, ()
        if method == "LIST_SUBSCRIPTIONS":
            return list(self._streams), ()
        return self._property(method, params), ()

    def _property(self, method: object, params: list[object]) -> object:
        expected_len = 2 if method == "SET_PROPERTY" else 1
        if not params:
            raise _InvalidRequest(2, "Invalid request: property name must be a string")
        if len(params) > expected_len:
            raise _InvalidRequest(2, "Invalid request: too many parameters")
        name = params[0]
        if not isinstance(name, str):
            raise _InvalidRequest(2, "Invalid request: property name must be a string")
        if name != "combined":
            raise _InvalidRequest(0, "Unknown property")
        if method == "GET_PROPERTY":
            return self.combined
        if len(params) < 2 or not isinstance(params[1], bool):
            raise _InvalidRequest(1, "Invalid value type: expected Boolean")
        self.combined = params[1]
        return None

    def _stream_symbols(self, streams: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return canonical symbols of the (bookTicker, depth) streams among `streams`."""
        bbo: list[str] = []
        depth: list[str] = []
        for stream in streams:
            name, sep, channel = stream.partition("@")
            symbol = self.symbols.get(name.upper()) if sep and name == name.lower() else None
            if symbol is not None and "@" + channel == _BOOK_TICKER:
                bbo.append(symbol)
            elif symbol is not None and "@" + channel in _DEPTH_STREAMS:
                depth.append(symbol)
        return tuple(bbo), tuple(depth)


def _request_id(request: dict[str, object]) -> object:
    if "id" not in request:
        raise _InvalidRequest(2, _BAD_ID)
    value = request["id"]
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value in _INT64):
        return value
    if isinstance(value, str) and _ID_STRING.fullmatch(value):
        return value
    raise _InvalidRequest(2, _BAD_ID)


def _stream_names(params: list[object]) -> list[str]:
    if not all(isinstance(p, str) and p for p in params):
        raise _InvalidRequest(2, "Invalid request: stream names must be non-empty strings")
    return [p for p in params if isinstance(p, str)]


def _levels(levels: tuple[Level, ...]) -> list[list[str]]:
    return [[format(price, "f"), format(qty, "f")] for price, qty in levels]


def _rest_error(code: int, msg: str) -> RestReply:
    return RestReply(HTTPStatus.BAD_REQUEST, {"code": code, "msg": msg})


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()
