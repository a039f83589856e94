"""Bybit v5 public spot stream as the simulator serves it (`/v5/public/spot`).

Control, as documented in bybit-exchange/docs `wss-authentication.mdx` (spot):

    {"req_id": "1", "op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}
        → {"success": true, "ret_msg": "subscribe", "conn_id": "…", "req_id": "1", "op": "subscribe"}
    {"req_id": "2", "op": "ping"}
        → {"success": true, "ret_msg": "pong", "conn_id": "…", "req_id": "2", "op": "ping"}

Refusals use the texts the live service sends: `args size >10`,
`error:handler not found,topic:<topic>`, `error:already subscribed,topic:<topic>`,
`error:invalid op`, `Failed to decode incoming data:<detail>`; a request with
one bad topic subscribes none of its topics.

BBO data, `orderbook.1.<SYMBOL>` (snapshot-only; re-pushed unchanged, same `u`, every 3 s):

    {"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": 1672304484978,
     "data": {"s": "BTCUSDT", "b": [["16493.50", "0.006"]], "a": [["16611.00", "0.029"]],
              "u": 18521288, "seq": 7961638724},
     "cts": 1672304484976}

Depth, `orderbook.{50|200|1000}.<SYMBOL>`: a snapshot of the top-N view on
subscribe, then a `delta` per change of that view (new or changed levels with
their size, levels that left the view with "0"); `u` is the view's own id, +1
per delta; `seq` the book's id across depths:

    {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1687940967466,
     "data": {"s": "BTCUSDT", "b": [["30247.20", "30.028"], ["30240.00", "0"]], "a": [...],
              "u": 177400507, "seq": 66544703342},
     "cts": 1687940967464}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final
from urllib.parse import urlsplit

import orjson

from connectors.sim.depth import DepthEvent, DepthSnapshot, view_changes
from connectors.sim.protocol import BookState, Reply, VenueProtocol, VenueRules
from connectors.types import Level

PATH: Final = "/v5/public/spot"
MAX_ARGS_PER_REQUEST: Final = 10
DEPTHS: Final = (1, 50, 200, 1000)


class _Refused(Exception):
    """A control message Bybit answers with `success: false` and this `ret_msg`."""


class BybitProtocol(VenueProtocol):
    """One Bybit v5 spot public connection: its `orderbook.<depth>` topics and its `conn_id`."""

    venue: ClassVar[str] = "bybit"
    url_path: ClassVar[str] = PATH
    # No server pings: clients keep the connection alive with JSON pings; 10 min of silence cuts it.
    rules: ClassVar[VenueRules] = VenueRules(idle_timeout_s=600.0, repush_interval_s=3.0)
    view_depths: ClassVar[tuple[int, ...]] = DEPTHS[1:]

    def __init__(
        self, path: str, symbols: Mapping[str, str], conn_id: str, *, checksums: bool = False
    ) -> None:
        super().__init__(path, symbols, conn_id, checksums=checksums)
        self._topics: dict[str, tuple[int, str]] = {}  # topic → (depth, canonical symbol)

    @classmethod
    def accepts_path(cls, path: str) -> bool:
        """Serve only the spot public path."""
        return urlsplit(path).path.rstrip("/") == PATH

    @property
    def topics(self) -> tuple[str, ...]:
        """Return the connection's subscribed topics, in subscription order."""
        return tuple(self._topics)

    def handle(self, text: str, now_ns: int = 0) -> Reply:
        """Answer one control message the way Bybit's spot public stream does."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return Reply(
                message=text, frames=(self._ack("", None, False, f"Failed to decode incoming data:{exc}"),)
            )
        if not isinstance(request, dict):
            return Reply(
                message=request, frames=(self._ack("", None, False, "Failed to decode incoming data"),)
            )
        op = request.get("op")
        op_text = op if isinstance(op, str) else ""
        req_id = request.get("req_id")
        if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, str | int)):
            ack = self._ack(
                op_text, None, False, "Failed to decode incoming data:req_id: not number or string"
            )
            return Reply(message=request, frames=(ack,))
        req = None if req_id is None else str(req_id)
        try:
            ret_msg, topics = self._dispatch(op, request.get("args"))
        except _Refused as exc:
            return Reply(message=request, frames=(self._ack(op_text, req, False, str(exc)),))
        return Reply(
            message=request,
            frames=(self._ack(op_text, req, True, ret_msg),),
            subscribed=tuple(self._topics[t][1] for t in topics if self._topics[t][0] == 1),
            depth_subscribed=tuple(self._topics[t][1] for t in topics if self._topics[t][0] > 1),
            snapshots=tuple((t, self._topics[t][1]) for t in topics),
        )

    def encode(self, symbol: str, state: BookState, now_ns: int) -> tuple[str, ...]:
        """Encode an `orderbook.1` snapshot; nothing if this connection is not subscribed to the symbol."""
        topic = f"orderbook.1.{self.venue_symbol(symbol)}"
        if topic not in self._topics:
            return ()
        top = state.top
        book = (((top.bid, top.bid_qty),), ((top.ask, top.ask_qty),))
        return (self._frame(topic, "snapshot", book, state.update_id, state.seq, now_ns, state.changed_ms),)

    def encode_snapshot(
        self, key: str, symbol: str, state: BookState | None, depth: DepthSnapshot, now_ns: int
    ) -> str | None:
        """Encode the snapshot a new `orderbook.<depth>` subscription (`key` = topic) starts with."""
        if key not in self._topics:
            return None
        size = self._topics[key][0]
        if size == 1:
            return self.encode(symbol, state, now_ns)[0] if state is not None else None
        book = (depth.bids[:size], depth.asks[:size])
        return self._frame(
            key, "snapshot", book, depth.view_id(size), depth.last_id, now_ns, depth.changed_ms
        )

    def encode_depth(self, event: DepthEvent, now_ns: int) -> tuple[str, ...]:
        """Encode a `delta` for each of the symbol's depth topics whose top-N view the event changed."""
        frames: list[str] = []
        for topic, (size, symbol) in self._topics.items():
            if size == 1 or symbol != event.symbol:
                continue
            before, after = event.before, event.after
            bids = view_changes(before.bids[:size], after.bids[:size], "bid")
            asks = view_changes(before.asks[:size], after.asks[:size], "ask")
            if bids or asks:
                book = (tuple((p, q) for _, p, q in bids), tuple((p, q) for _, p, q in asks))
                u = after.view_id(size)
                frames.append(self._frame(topic, "delta", book, u, after.last_id, now_ns, after.changed_ms))
        return tuple(frames)

    def _frame(
        self,
        topic: str,
        kind: str,
        book: tuple[tuple[Level, ...], tuple[Level, ...]],
        u: int,
        seq: int,
        now_ns: int,
        changed_ms: int,
    ) -> str:
        data = {
            "s": topic.rsplit(".", 1)[1],
            "b": [[format(p, "f"), format(q, "f")] for p, q in book[0]],
            "a": [[format(p, "f"), format(q, "f")] for p, q in book[1]],
            "u": u,
            "seq": seq,
        }
        frame = {"topic": topic, "type": kind, "ts": now_ns // 1_000_000, "data": data, "cts": changed_ms}
        return orjson.dumps(frame).decode()

    def _dispatch(self, op: object, args: object) -> tuple[str, tuple[str, ...]]:
        if op == "ping":
            return "pong", ()
        if op not in ("subscribe", "unsubscribe"):
            raise _Refused("error:invalid op")
        topics = _topic_list(args)
        if len(topics) > MAX_ARGS_PER_REQUEST:
            raise _Refused(f"args size >{MAX_ARGS_PER_REQUEST}")
        parsed = {t: self._parse_topic(t) for t in topics}
        if op == "unsubscribe":
            for topic in topics:
                self._topics.pop(topic, None)
            return "unsubscribe", ()
        seen = set(self._topics)
        for topic in topics:
            if topic in seen:
                raise _Refused(f"error:already subscribed,topic:{topic}")
            seen.add(topic)
        self._topics.update(parsed)
        return "subscribe", tuple(topics)

    def _parse_topic(self, topic: str) -> tuple[int, str]:
        channel, _, rest = topic.partition(".")
        size, _, venue_symbol = rest.partition(".")
        symbol = self.symbols.get(venue_symbol)
        if channel != "orderbook" or size not in {str(d) for d in DEPTHS} or symbol is None:
            raise _Refused(f"error:handler not found,topic:{topic}")
        return int(size), symbol

    def _ack(self, op: str, req_id: str | None, success: bool, ret_msg: str) -> str:
        ack: dict[str, object] = {"success": success, "ret_msg": ret_msg, "conn_id": self.conn_id}
        if req_id:
            ack["req_id"] = req_id
        ack["op"] = op
        return orjson.dumps(ack).decode()


def _topic_list(args: object) -> list[str]:
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _Refused("Failed to decode incoming data:args: expected an array of topic strings")
    return [a for a in args if isinstance(a, str)]
