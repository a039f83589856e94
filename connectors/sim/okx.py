"""OKX v5 public market data as the simulator serves it (`/ws/v5/public`, REST `/api/v5/market/books`).

Control, as documented in OKX docs-v5 (overview → WebSocket):

    ping (plain text)  →  pong (plain text)
    {"id": "1512", "op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}
        → {"id": "1512", "event": "subscribe", "arg": {"channel": "books", "instId": "BTC-USDT"},
           "connId": "a4d3ae55"}
    malformed → {"id": "1512", "event": "error", "code": "60012", "msg": "Invalid request: ...",
                 "connId": ...}
    unknown channel or instId → code "60018", "Wrong URL or channel:<channel>,instId:<id> doesn't exist. ..."

A connection with no traffic either way for 30 s is closed. `server_shutdown`
sends the `notice` event (code 64008) before the service-upgrade disconnect.

BBO, `bbo-tbt` (on subscribe and on every change; levels `[px, sz, "0", numOrders]`):

    {"arg": {"channel": "bbo-tbt", "instId": "BTC-USDT"},
     "data": [{"asks": [["111.06", "55154", "0", "2"]], "bids": [...], "ts": "1670324386802",
               "seqId": 363996337}]}

BBO, `tickers` (on subscribe and on every change; the simulated market has no
trades: `last` is taken at the bid, volumes are 0, open/high/low come from the
quotes this connection saw):

    {"arg": {"channel": "tickers", "instId": "BTC-USDT"},
     "data": [{"instType": "SPOT", "instId": "BTC-USDT", "last": "9999.99", "lastSz": "0.1",
               "askPx": "9999.99", "askSz": "11", "bidPx": "8888.88", "bidSz": "5", ...}]}

Depth, `books`: a snapshot on subscribe (`prevSeqId` -1), then one `update` per
change (`prevSeqId` = the previous message's `seqId`), sizes "0" delete. The
`checksum` field is 0, as OKX sends it since June 2026, unless the simulator
is built with `okx_checksums=True`: then it is the documented signed CRC32 of
the first 25 levels (`bidPx:bidSz:askPx:askSz:...`, strings as sent).

    {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "snapshot",
     "data": [{"asks": [...], "bids": [...], "ts": "1597026383085", "checksum": 0,
               "prevSeqId": -1, "seqId": 123456}]}

REST `GET /api/v5/market/books?instId=BTC-USDT&sz=N` (`sz` default 1, at most 400):

    {"code": "0", "msg": "",
     "data": [{"asks": [...], "bids": [...], "ts": "1629966436396", "seqId": 3235851742}]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import ClassVar, Final
from urllib.parse import parse_qs, urlsplit

import orjson

from connectors.okx.checksum import check_string, signed_crc32
from connectors.sim.depth import DepthEvent, DepthSnapshot
from connectors.sim.protocol import (
    BookState,
    MarketView,
    Reply,
    RestReply,
    TickerStats,
    VenueProtocol,
    VenueRules,
)
from connectors.types import Level, decimal_text

PATH: Final = "/ws/v5/public"
BOOKS_MAX_LEVELS: Final = 400
BBO_CHANNELS: Final = ("bbo-tbt", "tickers")
CHANNELS: Final = (*BBO_CHANNELS, "books")
_REST_BOOKS: Final = "/api/v5/market/books"
_UPGRADE_NOTICE: Final = "The connection will soon be closed for a service upgrade. Please reconnect."


class _Refused(Exception):
    """A request OKX answers with an `error` event carrying this code and message."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class OkxProtocol(VenueProtocol):
    """One OKX v5 public connection: its (channel, instId) subscriptions and its `connId`."""

    venue: ClassVar[str] = "okx"
    url_path: ClassVar[str] = PATH
    # "No subscription or no data for 30 s" cuts a connection: traffic either way keeps it open.
    rules: ClassVar[VenueRules] = VenueRules(idle_timeout_s=30.0, idle_counts_sent=True)
    announces_shutdown: ClassVar[bool] = True
    has_rest: ClassVar[bool] = True

    def __init__(
        self, path: str, symbols: Mapping[str, str], conn_id: str, *, checksums: bool = False
    ) -> None:
        super().__init__(path, symbols, conn_id, checksums=checksums)
        self._subscribed: dict[tuple[str, str], None] = {}  # (channel, canonical symbol)
        self._conn_id = conn_id.replace("-", "")[:8]
        self._stats = TickerStats()

    @classmethod
    def accepts_path(cls, path: str) -> bool:
        """Serve only the public path."""
        return urlsplit(path).path.rstrip("/") == PATH

    @staticmethod
    def venue_symbol(symbol: str) -> str:
        """Return the OKX instId of a canonical symbol (the same text: `BTC-USDT`)."""
        return symbol

    @classmethod
    def rest(cls, path: str, market: MarketView) -> RestReply | None:
        """Answer `GET /api/v5/market/books?instId=&sz=` the way OKX does."""
        parts = urlsplit(path)
        if parts.path.rstrip("/") != _REST_BOOKS:
            return None
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        inst_id = query.get("instId", "")
        if not inst_id:
            return _rest_error(HTTPStatus.BAD_REQUEST, "50014", "Parameter instId can not be empty.")
        size = query.get("sz", "1")
        if not size.isdigit() or not 1 <= int(size) <= BOOKS_MAX_LEVELS:
            return _rest_error(HTTPStatus.BAD_REQUEST, "51000", "Parameter sz error")
        symbol = market.symbols.get(inst_id)
        if symbol is None:
            return _rest_error(HTTPStatus.OK, "51001", "Instrument ID does not exist.")
        book = market.depth(symbol)
        data = {
            "asks": _levels(book.asks[: int(size)]),
            "bids": _levels(book.bids[: int(size)]),
            "ts": str(market.now_ms),
            "seqId": book.last_id,
        }
        return RestReply(HTTPStatus.OK, {"code": "0", "msg": "", "data": [data]})

    @property
    def has_subscriptions(self) -> bool:
        """Tell whether the connection subscribed to any channel."""
        return bool(self._subscribed)

    def handle(self, text: str, now_ns: int = 0) -> Reply:
        """Answer one client message the way OKX's public WebSocket does."""
        if text == "ping":
            return Reply(message=text, frames=("pong",))
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Reply(message=text, frames=(self._error(None, "60012", f"Invalid request: {text}"),))
        request_id = request.get("id") if isinstance(request, dict) else None
        op = request.get("op") if isinstance(request, dict) else None
        args = request.get("args") if isinstance(request, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            return Reply(
                message=request, frames=(self._error(request_id, "60012", f"Invalid request: {text}"),)
            )
        frames: list[str] = []
        made: list[tuple[str, str]] = []
        for arg in args:
            try:
                channel, symbol = self._parse_arg(arg)
            except _Refused as exc:
                frames.append(self._error(request_id, exc.code, exc.msg))
                continue
            if op == "subscribe":
                self._subscribed[channel, symbol] = None
                made.append((channel, symbol))
            else:
                self._subscribed.pop((channel, symbol), None)
            frames.append(self._ack(request_id, op, channel, symbol))
        return Reply(
            message=request,
            frames=tuple(frames),
            subscribed=tuple(s for c, s in made if c in BBO_CHANNELS),
            depth_subscribed=tuple(s for c, s in made if c == "books"),
            snapshots=tuple(made),
        )

    def encode(self, symbol: str, state: BookState, now_ns: int) -> tuple[str, ...]:
        """Encode the `bbo-tbt` and `tickers` pushes of a BBO change, for the channels subscribed."""
        subscribed = [c for c in BBO_CHANNELS if (c, symbol) in self._subscribed]
        return tuple(self._bbo(channel, symbol, state, now_ns) for channel in subscribed)

    def encode_snapshot(
        self, key: str, symbol: str, state: BookState | None, depth: DepthSnapshot, now_ns: int
    ) -> str | None:
        """Encode the first push of a new subscription: the current BBO or the `books` snapshot."""
        if key in BBO_CHANNELS:
            return self._bbo(key, symbol, state, now_ns) if state is not None else None
        bids, asks = depth.bids[:BOOKS_MAX_LEVELS], depth.asks[:BOOKS_MAX_LEVELS]
        return self._books("snapshot", symbol, (bids, asks), (bids, asks), (-1, depth.last_id), now_ns)

    def encode_depth(self, event: DepthEvent, now_ns: int) -> tuple[str, ...]:
        """Encode a `books` update (changed levels, "0" for removed ones) if subscribed."""
        if ("books", event.symbol) not in self._subscribed:
            return ()
        bids = tuple((p, q) for side, p, q in event.changes if side == "bid")
        asks = tuple((p, q) for side, p, q in event.changes if side == "ask")
        after = (event.after.bids, event.after.asks)
        ids = (event.before.last_id, event.after.last_id)
        return (self._books("update", event.symbol, (bids, asks), after, ids, now_ns, event.bad_checksum),)

    def _bbo(self, channel: str, symbol: str, state: BookState, now_ns: int) -> str:
        top = state.top
        ts = str(now_ns // 1_000_000)
        if channel == "bbo-tbt":
            asks, bids = _levels(((top.ask, top.ask_qty),)), _levels(((top.bid, top.bid_qty),))
            return _dumps(
                {
                    "arg": _arg(channel, symbol),
                    "data": [{"asks": asks, "bids": bids, "ts": ts, "seqId": state.seq}],
                }
            )
        last, low, high, change = self._stats.update(symbol, top)
        data = {
            "instType": "SPOT",
            "instId": symbol,
            "last": decimal_text(last),
            "lastSz": "0",
            "askPx": decimal_text(top.ask),
            "askSz": decimal_text(top.ask_qty),
            "bidPx": decimal_text(top.bid),
            "bidSz": decimal_text(top.bid_qty),
            "open24h": decimal_text(last - change),
            "high24h": decimal_text(high),
            "low24h": decimal_text(low),
            "volCcy24h": "0",
            "vol24h": "0",
            "sodUtc0": decimal_text(last - change),
            "sodUtc8": decimal_text(last - change),
            "ts": ts,
        }
        return _dumps({"arg": _arg(channel, symbol), "data": [data]})

    def shutdown_frame(self, now_ns: int) -> str | None:
        """Return the `notice` event OKX sends 60 s before a service-upgrade disconnect."""
        return _dumps({"event": "notice", "code": "64008", "msg": _UPGRADE_NOTICE, "connId": self._conn_id})

    def _books(
        self,
        action: str,
        symbol: str,
        sent: tuple[Sequence[Level], Sequence[Level]],
        book: tuple[Sequence[Level], Sequence[Level]],
        ids: tuple[int, int],
        now_ns: int,
        bad_checksum: bool = False,
    ) -> str:
        checksum = 0
        if self.checksums:
            text = check_string(_texts(book[0]), _texts(book[1]))
            checksum = signed_crc32(text) ^ (1 if bad_checksum else 0)
        data = {
            "asks": _levels(sent[1]),
            "bids": _levels(sent[0]),
            "ts": str(now_ns // 1_000_000),
            "checksum": checksum,
            "prevSeqId": ids[0],
            "seqId": ids[1],
        }
        return _dumps({"arg": _arg("books", symbol), "action": action, "data": [data]})

    def _parse_arg(self, arg: object) -> tuple[str, str]:
        if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
            raise _Refused("60012", f"Invalid request: {_dumps(arg)}")
        channel, inst_id = arg["channel"], arg.get("instId")
        symbol = self.symbols.get(inst_id) if isinstance(inst_id, str) else None
        if channel not in CHANNELS or symbol is None:
            raise _Refused(
                "60018",
                f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. "
                "Please use the correct URL, channel and parameters referring to API document.",
            )
        return channel, symbol

    def _ack(self, request_id: object, op: str, channel: str, symbol: str) -> str:
        ack: dict[str, object] = {} if request_id is None else {"id": request_id}
        ack.update(event=op, arg=_arg(channel, symbol), connId=self._conn_id)
        return _dumps(ack)

    def _error(self, request_id: object, code: str, msg: str) -> str:
        error: dict[str, object] = {} if request_id is None else {"id": request_id}
        error.update(event="error", code=code, msg=msg, connId=self._conn_id)
        return _dumps(error)


def _arg(channel: str, symbol: str) -> dict[str, str]:
    return {"channel": channel, "instId": symbol}


def _texts(levels: Sequence[Level]) -> list[tuple[str, str]]:
    return [(decimal_text(price), decimal_text(qty)) for price, qty in levels]


def _levels(levels: Sequence[Level]) -> list[list[str]]:
    # numOrders is not modelled: a stable small count derived from the size (0 for a removed level).
    return [[decimal_text(p), decimal_text(q), "0", str(1 + hash(q) % 9 if q else 0)] for p, q in levels]


def _rest_error(status: HTTPStatus, code: str, msg: str) -> RestReply:
    return RestReply(status, {"code": code, "msg": msg, "data": []})


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()
