"""A fake OKX v5 REST server (aiohttp on 127.0.0.1) that enforces the documented rules.

It serves `/api/v5/` public/time, public/instruments, trade/order (POST, GET),
trade/cancel-order, trade/orders-pending, trade/fills, trade/fills-history,
account/balance and account/trade-fee in OKX's formats, and enforces:

- authentication as https://www.okx.com/docs-v5/en/#overview-rest-authentication: the
  four OK-ACCESS-* headers (50103/50104/50106/50107 when missing, 50111 unknown key,
  50105 wrong passphrase, 50112 unreadable timestamp, 50102 more than 30 s off the
  server clock, 50113 a signature that is not Base64(HMAC-SHA256(secret, timestamp +
  METHOD + path?query + body)) over the raw request as received); demo keys (`demo=True`)
  require `x-simulated-trading: 1` and live keys refuse it (50101);
- `expTime`: an order whose deadline has passed on arrival is refused (50036) and a
  late-processed one (`accept_late`) is dropped unexecuted once its deadline passed;
- `clOrdId` (1–32 letters and digits) unique among PENDING orders only (51016): once an
  order is terminal the same id is accepted again and executes again, as on OKX;
- the documented budgets per 2 s (sliding window, on `clock`): over one → 50011 (HTTP 429);
  any request before the back-off that follows has passed is recorded in `violations`.

IOC and limit orders fill against a configurable book with a taker fee (negative `fee`
in the fee currency received, as OKX reports it) and move the balances.

Faults are injected per (method, path) and consumed in order (`inject`); `executions`
counts executed placements per clOrdId ("exactly once" is `fake.executions[id] == 1`).
`hide_new_orders(n)` makes each new order invisible to its first n queries (late
visibility). Timestamps and expTime run on the wall clock shifted by `skew_ms`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from fake_venue import Book, FakeServer, FaultsAndLog, arrived, parse_book

Fault = Literal[
    "accept_then_hang",  # execute the order, then never answer (the client times out)
    "accept_then_5xx",  # execute, then answer 502 with an HTML body
    "accept_then_drop",  # execute, then close the connection without an answer
    "accept_then_50004",  # execute, then answer 50004 "does not mean ... successful or failed"
    "accept_then_50001",  # execute, then answer 50001 (HTTP 503)
    "accept_then_50013",  # execute, then answer 50013 (HTTP 429, systems busy)
    "accept_then_50026",  # execute, then answer 50026 (HTTP 500)
    "accept_late",  # answer 50004 at once; execute `late_s` later if expTime still allows it
    "fail_50004",  # answer 50004, execute nothing
    "fail_5xx",  # answer 502, execute nothing
    "drop",  # close the connection, execute nothing
    "50011",  # rate limited (HTTP 429); a request before `backoff_s` passes is a violation
    "50061",  # sub-account order rate limit
    "50040",  # too frequent operations
    "ban",  # 50029 risk-control restriction for `ban_s`; requests meanwhile are violations
]

API_KEY = "fake-okx-key-0123456789"
API_SECRET = "fake-okx-secret-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PASSPHRASE = "fake-okx-passphrase-!@#"
PENDING = ("live", "partially_filled")
AMBIGUOUS = {
    "50004": (400, "API endpoint request timeout. (does not mean that the request was successful or failed, "
                   "please check the request result)."),
    "50001": (503, "Service temporarily unavailable. Please try again later."),
    "50013": (429, "Systems are busy. Please try again later."),
    "50026": (500, "System error. Try again later."),
}  # fmt: skip
THROTTLE_TEXT = {
    "50011": "Too Many Requests",
    "50061": "You've reached the maximum order rate limit for this account.",
    "50040": "Too frequent operations, please try again later",
}
# Documented limits, requests per 2 s (#overview-rate-limits and each endpoint's page).
LIMITS = {
    "order": 60, "cancel": 60, "query": 60, "pending": 60, "fills": 60, "fills_history": 10, "balance": 10,
    "fee": 5, "time": 10, "instruments": 20,
}  # fmt: skip
ROUTES = {
    ("GET", "public/time"): "time", ("GET", "public/instruments"): "instruments",
    ("POST", "trade/order"): "order", ("GET", "trade/order"): "query",
    ("POST", "trade/cancel-order"): "cancel",
    ("GET", "trade/orders-pending"): "pending", ("GET", "trade/fills"): "fills",
    ("GET", "trade/fills-history"): "fills_history", ("GET", "account/balance"): "balance",
    ("GET", "account/trade-fee"): "fee",
}  # fmt: skip
PER_INSTRUMENT = ("order", "cancel", "query")
INSTRUMENTS = [
    {"instType": "SPOT", "instId": "BTC-USDT", "baseCcy": "BTC", "quoteCcy": "USDT", "tickSz": "0.1",
     "lotSz": "0.00000001", "minSz": "0.00001", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
     "state": "live", "groupId": "1", "ruleType": "normal", "listTime": "1606468572000"},
    {"instType": "SPOT", "instId": "ETH-USDT", "baseCcy": "ETH", "quoteCcy": "USDT", "tickSz": "0.01",
     "lotSz": "0.000001", "minSz": "0.001", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
     "state": "live", "groupId": "1", "ruleType": "normal", "listTime": "1606468572000"},
    {"instType": "SPOT", "instId": "ETH-BTC", "baseCcy": "ETH", "quoteCcy": "BTC", "tickSz": "0.00001",
     "lotSz": "0.000001", "minSz": "0.001", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
     "state": "suspend", "groupId": "2", "ruleType": "normal", "listTime": "1606468572000"},
]  # fmt: skip
_CLIENT_ID = re.compile(r"[A-Za-z0-9]{1,32}")
D = Decimal
ZERO = Decimal(0)
TAKER_RATE = Decimal("0.001")


def okx_signature(secret: str, prehash: str) -> str:
    """Return OKX's Base64(HMAC-SHA256(secret, prehash))."""
    return base64.b64encode(hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    time: float
    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str]


@dataclass
class Order:
    """One order the fake accepted."""

    ord_id: str
    cl_ord_id: str
    inst_id: str
    side: str
    ord_type: str
    px: Decimal
    sz: Decimal
    c_time: int
    filled: Decimal = ZERO
    quote: Decimal = ZERO
    fee: Decimal = ZERO
    fee_ccy: str = ""
    state: str = "live"
    hidden_queries: int = 0
    fills: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        last = self.fills[-1] if self.fills else {}
        return {
            "instType": "SPOT", "instId": self.inst_id, "tgtCcy": "", "ccy": "", "ordId": self.ord_id,
            "clOrdId": self.cl_ord_id, "tag": "", "px": _s(self.px), "sz": _s(self.sz), "pnl": "0",
            "ordType": self.ord_type, "side": self.side, "posSide": "net", "tdMode": "cash",
            "accFillSz": _s(self.filled), "fillPx": last.get("fillPx", ""),
            "tradeId": last.get("tradeId", ""),
            "fillSz": last.get("fillSz", "0"), "fillTime": last.get("fillTime", ""),
            "avgPx": _s(self.quote / self.filled) if self.filled else "", "state": self.state, "lever": "",
            "feeCcy": self.fee_ccy, "fee": _s(-self.fee), "rebateCcy": "", "rebate": "0", "source": "",
            "category": "normal", "reduceOnly": "false", "cancelSource": "", "cancelSourceReason": "",
            "uTime": str(self.c_time), "cTime": str(self.c_time), "tradeQuoteCcy": self.inst_id.split("-")[1],
        }  # fmt: skip


class ApiError(Exception):
    """A top-level OKX error answer."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class OrderError(Exception):
    """A per-order refusal: HTTP 200, code "1", the reason in data[0].sCode."""

    def __init__(self, s_code: str, s_msg: str, cl_ord_id: str = "") -> None:
        super().__init__(s_msg)
        self.s_code, self.s_msg, self.cl_ord_id = s_code, s_msg, cl_ord_id


def _s(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


class FakeOkx(FakeServer, FaultsAndLog[Fault, Seen]):
    """The fake venue; `async with FakeOkx(...) as fake:` serves on `fake.rest_url`."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        passphrase: str = PASSPHRASE,
        demo: bool = False,
        clock: Callable[[], float] = time.monotonic,
        skew_ms: int = 0,
        late_s: float = 0.3,
        taker_rate: Decimal = TAKER_RATE,
        backoff_s: float = 2.0,
        ban_s: float = 300.0,
        limits: dict[str, int] | None = None,
    ) -> None:
        FakeServer.__init__(self)
        FaultsAndLog.__init__(self)
        self.api_key, self.api_secret, self.passphrase, self.demo = api_key, api_secret, passphrase, demo
        self.clock, self.skew_ms, self.late_s, self.taker_rate = clock, skew_ms, late_s, taker_rate
        self.backoff_s, self.ban_s, self.limits = backoff_s, ban_s, LIMITS | (limits or {})
        self.books: dict[str, Book] = {}
        self.set_book("BTC-USDT", [("64000", "1.5"), ("63990", "3")], [("64000.5", "0.8"), ("64010", "5")])
        self.set_book("ETH-USDT", [("3000", "20")], [("3000.1", "20")])
        self.balances: dict[str, list[Decimal]] = {"USDT": [D(100000), D(0)], "BTC": [D(2), D(0)],
                                                   "ETH": [D(50), D(0)]}  # fmt: skip
        self.fee_groups = [{"groupId": "1", "maker": "-0.0008", "taker": _s(-taker_rate)},
                           {"groupId": "2", "maker": "-0.0008", "taker": "-0.0015"}]  # fmt: skip
        self.orders: list[Order] = []
        self.executions: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.violations: list[str] = []
        self.signatures: list[str] = []
        self.archived: set[str] = set()  # ordIds whose fills are only in fills-history
        self.order_accepted = asyncio.Event()
        self.late_done = asyncio.Event()
        self.expired_late = 0
        self._hide_new = 0
        self._windows: dict[str, deque[float]] = {}
        self._backoff_until = self._banned_until = -float("inf")
        self._next_id, self._next_trade, self._next_bill = 600_000_000_000_000_000, 744_876_980, 12_000

    # ----- lifecycle and test controls ---------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v5/{path:.*}", self._handle)

    def forget(self, cl_ord_id: str) -> None:
        """Make the orders with this clOrdId unknown to the query endpoint (past OKX's retention)."""
        for order in self.orders:
            if order.cl_ord_id == cl_ord_id:
                order.hidden_queries = 2**31

    def hide_new_orders(self, queries: int) -> None:
        """Make each order placed from now on invisible to its first `queries` queries."""
        self._hide_new = queries

    def set_book(self, inst_id: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.books[inst_id] = parse_book(bids, asks)

    def rest_order(self, inst_id: str, side: str, px: str, sz: str, cl_ord_id: str) -> Order:
        """Put a live limit order on the account as if placed elsewhere (by hand, another system)."""
        self._next_id += 1
        order = Order(str(self._next_id), cl_ord_id, inst_id, side, "limit", D(px), D(sz), self.server_ms())
        self.orders.append(order)
        return order

    def server_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    # ----- the request pipeline ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.match_info["path"]
        query, body = request.rel_url.raw_query_string, await request.text()
        arrived(self.clock)
        now = self.clock()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Seen(now, method, path, query, body, headers))
        fault = self._next_fault(method, path)
        try:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if method == "POST":
                params |= _json_object(body)
            route = ROUTES.get((method, path))
            if route is None:
                raise ApiError(404, "50005", "API endpoint is inactive or unavailable.")
            self._admit(route, params, now, fault)
            if not path.startswith("public/"):
                self._authenticate(method, request.raw_path, body, headers)
            if fault in ("drop", "fail_5xx", "fail_50004"):
                return await self._fail(request, fault)
            if fault == "accept_late":
                self._spawn_late(self._accept_late(params, headers))
                return self._code("50004")
            answer = self._dispatch(route, params, headers)
        except ApiError as exc:
            return self._reply({"code": exc.code, "msg": exc.msg, "data": []}, exc.status)
        except OrderError as exc:
            data = [{"clOrdId": exc.cl_ord_id, "ordId": "", "tag": "", "ts": str(self.server_ms()),
                     "sCode": exc.s_code, "sMsg": exc.s_msg, "subCode": ""}]  # fmt: skip
            return self._reply({"code": "1", "msg": "All operations failed", "data": data}, 200)
        if fault is not None and fault.startswith("accept_then_"):
            return await self._after_accept(request, fault)
        return self._reply({"code": "0", "msg": "", "data": answer}, 200)

    def _reply(self, payload: dict[str, Any], status: int) -> web.Response:
        self.statuses[status] += 1
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")

    def _code(self, code: str) -> web.Response:
        status, msg = AMBIGUOUS[code]
        return self._reply({"code": code, "msg": msg, "data": []}, status)

    def _admit(self, route: str, params: dict[str, str], now: float, fault: Fault | None) -> None:
        """Apply bans, back-offs and the per-2-s budgets before anything else."""
        if now < self._banned_until:
            self.violations.append(f"{route} at {now:.3f} during a ban ending {self._banned_until:.3f}")
            raise ApiError(200, "50029", "Your account has triggered OKX risk control and is temporarily "
                           "restricted from conducting transactions.")  # fmt: skip
        if now < self._backoff_until:
            self.violations.append(
                f"{route} at {now:.3f}, before the back-off ended at {self._backoff_until:.3f}"
            )
            raise ApiError(429, "50011", "Too Many Requests")
        if fault == "ban":
            self._banned_until = now + self.ban_s
            raise ApiError(200, "50029", "Your account has triggered OKX risk control and is temporarily "
                           "restricted from conducting transactions.")  # fmt: skip
        if fault in ("50011", "50061", "50040"):
            self._backoff_until = now + self.backoff_s
            text = THROTTLE_TEXT[fault]
            raise ApiError(429 if fault == "50011" else 200, fault, text)
        key = f"{route}:{params.get('instId', '')}" if route in PER_INSTRUMENT else route
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - 2.0:
            window.popleft()
        if len(window) >= self.limits[route]:
            self._backoff_until = now + self.backoff_s
            raise ApiError(429, "50011", "Too Many Requests")
        window.append(now)

    def _authenticate(self, method: str, raw_path: str, body: str, headers: dict[str, str]) -> None:
        for name, code in (("ok-access-key", "50103"), ("ok-access-passphrase", "50104"),
                           ("ok-access-sign", "50106"), ("ok-access-timestamp", "50107")):  # fmt: skip
            if not headers.get(name):
                raise ApiError(401, code, f'Request header "{name.upper()}" cannot be empty.')
        if headers["ok-access-key"] != self.api_key:
            raise ApiError(401, "50111", "Invalid OK-ACCESS-KEY.")
        stamp = headers["ok-access-timestamp"]
        try:
            if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp) is None:
                raise ValueError(stamp)
            stamp_ms = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            raise ApiError(401, "50112", "Invalid OK-ACCESS-TIMESTAMP.") from None
        if abs(self.server_ms() - stamp_ms) > 30_000:
            raise ApiError(401, "50102", "Timestamp request expired.")
        if headers["ok-access-passphrase"] != self.passphrase:
            raise ApiError(401, "50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
        self.signatures.append(headers["ok-access-sign"])
        expected = okx_signature(self.api_secret, f"{stamp}{method}{raw_path}{body}")
        if not hmac.compare_digest(expected, headers["ok-access-sign"]):
            raise ApiError(401, "50113", "Invalid signature.")
        if (headers.get("x-simulated-trading") == "1") != self.demo:
            raise ApiError(401, "50101", "APIKey does not match current environment.")

    async def _fail(self, request: web.Request, fault: Fault) -> web.Response:
        if fault == "fail_5xx":
            self.statuses[502] += 1
            return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
        if fault == "fail_50004":
            return self._code("50004")
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError  # the connection is gone: nothing is answered

    async def _after_accept(self, request: web.Request, fault: Fault) -> web.Response:
        if fault == "accept_then_hang":
            await self._closing.wait()
            raise asyncio.CancelledError  # shutting down; the client gave up long ago
        if fault == "accept_then_5xx":
            return await self._fail(request, "fail_5xx")
        if fault == "accept_then_drop":
            return await self._fail(request, "drop")
        return self._code(fault.removeprefix("accept_then_"))

    async def _accept_late(self, params: dict[str, str], headers: dict[str, str]) -> None:
        try:
            await asyncio.sleep(self.late_s)
            # The engine drops a request it reaches after its expTime: it is never executed.
            if self.server_ms() <= int(headers.get("exptime", str(2**62))):
                self._place(params, headers)
            else:
                self.expired_late += 1
        except (ApiError, OrderError):
            pass
        finally:
            self.late_done.set()

    # ----- endpoints ---------------------------------------------------------------------------

    def _dispatch(self, route: str, params: dict[str, str], headers: dict[str, str]) -> Any:
        if route == "time":
            return [{"ts": str(self.server_ms())}]
        if route == "instruments":
            if params.get("instType") != "SPOT":
                raise ApiError(400, "51000", "Parameter instType error")
            return INSTRUMENTS
        handlers: dict[str, Callable[[dict[str, str]], Any]] = {
            "query": self._query, "cancel": self._cancel, "pending": self._pending,
            "fills": lambda p: self._fills(p, recent=True),
            "fills_history": lambda p: self._fills(p, recent=False),
            "balance": self._balance, "fee": self._fee,
        }  # fmt: skip
        if route == "order":
            return self._place(params, headers)
        return handlers[route](params)

    def _instrument(self, params: dict[str, str]) -> dict[str, Any]:
        found = next((i for i in INSTRUMENTS if i["instId"] == params.get("instId")), None)
        if found is None:
            raise ApiError(200, "51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist.")
        return found

    def _place(self, params: dict[str, str], headers: dict[str, str]) -> list[dict[str, Any]]:
        expires = headers.get("exptime")
        if expires is not None and self.server_ms() > int(expires):
            raise ApiError(200, "50036", "The expTime can't be earlier than the current system time. "
                           "Please adjust the expTime and try again.")  # fmt: skip
        cl_ord_id = params.get("clOrdId", "")
        order = self._new_order(params, cl_ord_id)
        self._match(order)
        self.orders.append(order)
        self.executions[cl_ord_id] += 1
        self.order_accepted.set()
        return [{"clOrdId": cl_ord_id, "ordId": order.ord_id, "tag": "", "ts": str(order.c_time),
                 "sCode": "0", "sMsg": "Order placed", "subCode": ""}]  # fmt: skip

    def _new_order(self, params: dict[str, str], cl_ord_id: str) -> Order:
        instrument = self._instrument(params)
        if cl_ord_id and _CLIENT_ID.fullmatch(cl_ord_id) is None:
            raise OrderError("51000", "Parameter clOrdId error", cl_ord_id)
        if params.get("tdMode") != "cash" or params.get("ordType") not in ("ioc", "limit"):
            raise OrderError("51000", "Parameter tdMode or ordType error", cl_ord_id)
        if instrument["state"] != "live":
            raise OrderError("51001", "Instrument ID doesn't exist.", cl_ord_id)
        if any(o.cl_ord_id == cl_ord_id and o.state in PENDING for o in self.orders if cl_ord_id):
            raise OrderError("51016", "Client order ID already exists.", cl_ord_id)
        px, sz = D(params.get("px", "0")), D(params.get("sz", "0"))
        if px <= 0 or px % D(instrument["tickSz"]):
            raise OrderError("51000", "Parameter px error", cl_ord_id)
        if sz % D(instrument["lotSz"]):
            raise OrderError("51121", "Order quantity must be a multiple of the lot size.", cl_ord_id)
        if sz < D(instrument["minSz"]):
            raise OrderError("51020", "Your order should meet or exceed the minimum order amount.", cl_ord_id)
        base, quote = instrument["baseCcy"], instrument["quoteCcy"]
        spend, need = (quote, px * sz) if params["side"] == "buy" else (base, sz)
        if self.balances.setdefault(spend, [D(0), D(0)])[0] < need:
            raise OrderError("51008", f"Order failed. Insufficient {spend} balance in account", cl_ord_id)
        self._next_id += 1
        return Order(str(self._next_id), cl_ord_id, instrument["instId"], params["side"], params["ordType"],
                     px, sz, self.server_ms(), hidden_queries=self._hide_new)  # fmt: skip

    def _match(self, order: Order) -> None:
        bids, asks = self.books[order.inst_id]
        base, quote = order.inst_id.split("-")
        buy = order.side == "buy"
        for level_px, level_sz in asks if buy else bids:
            take = min(order.sz - order.filled, level_sz)
            if take <= 0 or (level_px > order.px if buy else level_px < order.px):
                break
            fee = take * self.taker_rate if buy else take * level_px * self.taker_rate
            self._next_trade += 1
            self._next_bill += 1
            order.fills.append({
                "instType": "SPOT", "instId": order.inst_id, "tradeId": str(self._next_trade),
                "ordId": order.ord_id, "clOrdId": order.cl_ord_id, "billId": str(self._next_bill),
                "subType": "1" if buy else "2", "tag": "", "fillPx": _s(level_px), "fillSz": _s(take),
                "side": order.side, "posSide": "net", "execType": "T", "feeCcy": base if buy else quote,
                "fee": _s(-fee), "ts": str(order.c_time), "fillTime": str(order.c_time),
                "feeRate": _s(-self.taker_rate), "tradeQuoteCcy": quote,
            })  # fmt: skip
            order.filled, order.quote, order.fee = (
                order.filled + take,
                order.quote + take * level_px,
                order.fee + fee,
            )
            order.fee_ccy = base if buy else quote
            if buy:
                self._add(base, take - fee)
                self._add(quote, -take * level_px)
            else:
                self._add(base, -take)
                self._add(quote, take * level_px - fee)
        remaining = order.sz - order.filled
        if remaining == 0:
            order.state = "filled"
        elif order.ord_type == "ioc":
            order.state = "canceled"
        else:
            order.state = "partially_filled" if order.filled else "live"
            self._freeze(order, remaining)

    def _add(self, asset: str, amount: Decimal) -> None:
        self.balances.setdefault(asset, [D(0), D(0)])[0] += amount

    def _freeze(self, order: Order, remaining: Decimal, sign: int = 1) -> None:
        base, quote = order.inst_id.split("-")
        asset, amount = (quote, order.px * remaining) if order.side == "buy" else (base, remaining)
        balance = self.balances[asset]
        balance[0] -= sign * amount
        balance[1] += sign * amount

    def _find(self, params: dict[str, str]) -> Order | None:
        inst_id = self._instrument(params)["instId"]
        if "ordId" in params:
            matches = [o for o in self.orders if o.ord_id == params["ordId"] and o.inst_id == inst_id]
        elif "clOrdId" in params:
            matches = [o for o in self.orders if o.cl_ord_id == params["clOrdId"] and o.inst_id == inst_id]
        else:
            raise ApiError(200, "51003", "Either client order ID or order ID is required.")
        return matches[-1] if matches else None  # "only the latest one will be returned"

    def _query(self, params: dict[str, str]) -> list[dict[str, Any]]:
        order = self._find(params)
        if order is not None and order.hidden_queries > 0:
            order.hidden_queries -= 1
            order = None
        if order is None:
            raise ApiError(200, "51603", "Order does not exist.")
        return [order.as_json()]

    def _cancel(self, params: dict[str, str]) -> list[dict[str, Any]]:
        order = self._find(params)
        if order is None or order.state not in PENDING:
            message = "Order cancellation failed as the order has been filled, canceled or does not exist."
            raise OrderError("51400", message, params.get("clOrdId", ""))
        self._freeze(order, order.sz - order.filled, sign=-1)
        order.state = "canceled"
        return [{"clOrdId": order.cl_ord_id, "ordId": order.ord_id, "ts": str(self.server_ms()),
                 "sCode": "0", "sMsg": ""}]  # fmt: skip

    def _pending(self, params: dict[str, str]) -> list[dict[str, Any]]:
        pending = [o for o in reversed(self.orders) if o.state in PENDING]
        if "after" in params:
            pending = [o for o in pending if int(o.ord_id) < int(params["after"])]
        return [o.as_json() for o in pending[: int(params.get("limit", "100"))]]

    def _fills(self, params: dict[str, str], *, recent: bool) -> list[dict[str, Any]]:
        if not recent and params.get("instType") != "SPOT":  # required on fills-history only
            raise ApiError(400, "50014", "Parameter instType can not be empty.")
        fills = [f for o in self.orders for f in o.fills if o.ord_id == params.get("ordId", o.ord_id)
                 and o.inst_id == params.get("instId", o.inst_id)
                 and int(f["ts"]) >= int(params.get("begin", "0"))
                 and not (recent and o.ord_id in self.archived)]  # fmt: skip
        fills.sort(key=lambda f: -int(f["billId"]))
        if "after" in params:
            fills = [f for f in fills if int(f["billId"]) < int(params["after"])]
        return fills[: int(params.get("limit", "100"))]

    def _balance(self, _: dict[str, str]) -> list[dict[str, Any]]:
        details = [{"ccy": ccy, "availBal": _s(free), "frozenBal": _s(frozen), "cashBal": _s(free + frozen),
                    "eq": _s(free + frozen), "uTime": str(self.server_ms())}
                   for ccy, (free, frozen) in sorted(self.balances.items()) if free or frozen]  # fmt: skip
        return [{"uTime": str(self.server_ms()), "totalEq": "0", "details": details}]

    def _fee(self, params: dict[str, str]) -> list[dict[str, Any]]:
        if params.get("instType") != "SPOT":
            raise ApiError(400, "50014", "Parameter instType can not be empty.")
        self._instrument(params)
        return [{"category": "1", "delivery": "", "exercise": "", "feeGroup": self.fee_groups, "fiat": [],
                 "instType": "SPOT", "level": "Lv1", "maker": "-0.0008", "taker": "-0.001", "makerU": "",
                 "takerU": "", "makerUSDC": "-0.0008", "takerUSDC": "-0.001", "ruleType": "normal",
                 "ts": str(self.server_ms())}]  # fmt: skip


def _json_object(body: str) -> dict[str, str]:
    try:
        value = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise ApiError(400, "50002", "JSON syntax error") from None
    if not isinstance(value, dict):
        raise ApiError(400, "50002", "JSON syntax error")
    return {str(k): str(v) for k, v in value.items()}
