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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final
from urllib.parse import urlsplit

import orjson

from connectors.sim.protocol import BookState, Reply, VenueProtocol, VenueRules

PATH: Final = "/v5/public/spot"
MAX_ARGS_PER_REQUEST: Final = 10
_TOPIC_PREFIX: Final = "orderbook.1."


class _Refused(Exception):
    """A control message Bybit answers with `success: false` and this `ret_msg`."""


class BybitProtocol(VenueProtocol):
    """One Bybit v5 spot public connection: its `orderbook.1` topics and its `conn_id`."""

    venue: ClassVar[str] = "bybit"
    url_path: ClassVar[str] = PATH
    # No server pings: clients keep the connection alive with JSON pings; 10 min of silence cuts it.
    rules: ClassVar[VenueRules] = VenueRules(idle_timeout_s=600.0, repush_interval_s=3.0)
    snapshot_on_subscribe: ClassVar[bool] = True

    def __init__(self, path: str, symbols: Mapping[str, str], conn_id: str) -> None:
        super().__init__(path, symbols, conn_id)
        self._topics: dict[str, None] = {}

    @classmethod
    def accepts_path(cls, path: str) -> bool:
        """Serve only the spot public path."""
        return urlsplit(path).path.rstrip("/") == PATH

    @property
    def topics(self) -> tuple[str, ...]:
        """Return the connection's subscribed topics, in subscription order."""
        return tuple(self._topics)

    def handle(self, text: str) -> Reply:
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
            ret_msg, subscribed = self._dispatch(op, request.get("args"))
        except _Refused as exc:
            return Reply(message=request, frames=(self._ack(op_text, req, False, str(exc)),))
        return Reply(message=request, frames=(self._ack(op_text, req, True, ret_msg),), subscribed=subscribed)

    def encode(self, symbol: str, state: BookState, now_ms: int) -> str | None:
        """Encode an `orderbook.1` snapshot; None if this connection is not subscribed to the symbol."""
        venue_symbol = self.venue_symbol(symbol)
        topic = _TOPIC_PREFIX + venue_symbol
        if topic not in self._topics:
            return None
        top = state.top
        data = {
            "s": venue_symbol,
            "b": [[format(top.bid, "f"), format(top.bid_qty, "f")]],
            "a": [[format(top.ask, "f"), format(top.ask_qty, "f")]],
            "u": state.update_id,
            "seq": state.seq,
        }
        frame = {"topic": topic, "type": "snapshot", "ts": now_ms, "data": data, "cts": state.changed_ms}
        return orjson.dumps(frame).decode()

    def _dispatch(self, op: object, args: object) -> tuple[str, tuple[str, ...]]:
        if op == "ping":
            return "pong", ()
        if op not in ("subscribe", "unsubscribe"):
            raise _Refused("error:invalid op")
        topics = _topic_list(args)
        if len(topics) > MAX_ARGS_PER_REQUEST:
            raise _Refused(f"args size >{MAX_ARGS_PER_REQUEST}")
        symbols = [self._topic_symbol(t) for t in topics]
        if op == "unsubscribe":
            for topic in topics:
                self._topics.pop(topic, None)
            return "unsubscribe", ()
        seen = set(self._topics)
        for topic in topics:
            if topic in seen:
                raise _Refused(f"error:already subscribed,topic:{topic}")
            seen.add(topic)
        self._topics.update(dict.fromkeys(topics))
        return "subscribe", tuple(symbols)

    def _topic_symbol(self, topic: str) -> str:
        symbol = (
            self.symbols.get(topic.removeprefix(_TOPIC_PREFIX)) if topic.startswith(_TOPIC_PREFIX) else None
        )
        if symbol is None:
            raise _Refused(f"error:handler not found,topic:{topic}")
        return symbol

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
