"""A fake Bybit v5 spot REST server (aiohttp on 127.0.0.1) that enforces the documented rules.

Endpoints: `/v5/market/time`, `/v5/market/instruments-info`, `/v5/order/create`,
`/v5/order/cancel`, `/v5/order/realtime`, `/v5/order/history`,
`/v5/execution/list`, `/v5/account/wallet-balance`, `/v5/account/fee-rate`,
answering in the `{"retCode", "retMsg", "result", "retExtInfo", "time"}` envelope.

It enforces, as `docs/v5/guide.mdx` and the error and rate-limit pages say:
- the signature: `X-BAPI-SIGN` = hex HMAC-SHA256 over timestamp + key + recv
  window + the raw query string (GET) or raw body (POST) as received (10004);
  an unknown `X-BAPI-API-KEY` → 10003;
- the timestamp: `server - recv_window <= timestamp < server + 1000` → else 10002;
- `orderLinkId` "always unique": a reused one is refused (170141 by default);
- per-UID, per-endpoint limits per 1-second window, reported on every answer in
  `X-Bapi-Limit`, `X-Bapi-Limit-Status`, `X-Bapi-Limit-Reset-Timestamp`; over the
  limit → 10006; any request to that endpoint before the reset is a `violation`;
- bans: after a 403 every request within `ban_s` is a `violation` (and gets 403);
  a request within a second of a 429 is a `violation`.

IOC limit orders fill against `books` (taker fee `taker_fee_rate`, in the asset
received: base on a buy, quote on a sell) and move `balances`. `executed` counts
executions per orderLinkId: "exactly once" is `fake.executed[id] == 1`.
Faults are queued per (method, path) with `inject`. Time is `clock` (seconds;
pass a `VirtualClock` to make it pass without sleeping) shifted by `skew_ms`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from fake_venue import Book, FakeServer, FaultsAndLog, parse_book

Fault = Literal[
    "accept_then_hang",  # execute, then never answer (the client times out)
    "accept_then_5xx",  # execute, then answer 502 with an HTML body
    "accept_then_drop",  # execute, then close the connection
    "accept_then_10000",  # execute, then answer retCode 10000 "Server Timeout"
    "accept_then_10016",  # ... 10016 "Server error"
    "accept_then_170007",  # ... 170007 "Timeout waiting for response from backend server."
    "accept_then_170146",  # ... 170146 "Order creation timeout"
    "accept_then_170032",  # ... 170032 "Network error. Please try again later"
    "late_visible",  # execute and acknowledge, but stay invisible to queries for `late_s`
    "fail_5xx",  # answer 503, execute nothing
    "drop",  # close the connection, execute nothing
    "429",  # HTTP 429 "System level frequency protection"
    "403",  # HTTP 403 "access too frequent": an IP ban of `ban_s`
    "10006",  # retCode 10006, the endpoint blocked for `reset_s`
]

API_KEY = "fake-bybit-key-0123456789"
API_SECRET = "fake-bybit-secret-abcdefghijklmnop"
OPEN = ("New", "PartiallyFilled")
LIMITS = {"/v5/order/create": 20, "/v5/order/cancel": 20, "/v5/order/realtime": 50, "/v5/order/history": 50,
          "/v5/execution/list": 50, "/v5/account/wallet-balance": 50, "/v5/account/fee-rate": 5}  # fmt: skip
PUBLIC = ("/v5/market/time", "/v5/market/instruments-info")
_UNKNOWN = {
    "10000": "Server Timeout",
    "10016": "Server error.",
    "170032": "Network error. Please try again later",
    "170007": "Timeout waiting for response from backend server.",
    "170146": "Order creation timeout",
}


def signature(secret: str, payload: str) -> str:
    """Return Bybit's hex HMAC-SHA256 of `payload` (timestamp + key + recv window + query or body)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class VirtualClock:
    """Seconds that pass only when someone sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def wall_ms(self) -> float:
        return self.now * 1000

    async def sleep(self, seconds: float) -> None:
        # At least a microsecond: a wait below the float resolution of `now` would never end.
        self.now += max(1e-6, seconds)
        await asyncio.sleep(0)


def _instrument(symbol: str, base: str, tick: str, step: str, min_qty: str, max_qty: str) -> dict[str, Any]:
    return {"symbolId": 9, "symbol": symbol, "baseCoin": base, "quoteCoin": "USDT", "innovation": "0",
            "status": "Trading", "marginTrading": "utaOnly", "stTag": "0", "symbolType": "",
            "lotSizeFilter": {"basePrecision": step, "quotePrecision": "0.0000001", "minOrderQty": min_qty,
                              "maxOrderQty": max_qty, "minOrderAmt": "5", "maxOrderAmt": "8000000",
                              "maxLimitOrderQty": max_qty, "maxMarketOrderQty": "41.5",
                              "postOnlyMaxLimitOrderSize": "60000"},
            "priceFilter": {"tickSize": tick},
            "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"}}  # fmt: skip


INSTRUMENTS = [
    _instrument("BTCUSDT", "BTC", "0.1", "0.000001", "0.000011", "83"),
    _instrument("ETHUSDT", "ETH", "0.01", "0.00001", "0.00048", "1000"),
]
RULES = {item["symbol"]: item for item in INSTRUMENTS}


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    time: float
    method: str
    path: str
    params: dict[str, str]
    query: str
    body: str
    headers: dict[str, str]


@dataclass
class Order:
    """One order the fake executed."""

    order_id: str
    link_id: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    created_ms: int
    visible_at: float
    status: str = "New"
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    in_realtime: bool = True
    executions: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        avg = _s(self.cum_value / self.cum_qty) if self.cum_qty else ""
        return {"orderId": self.order_id, "orderLinkId": self.link_id, "symbol": self.symbol,
                "price": _s(self.price), "qty": _s(self.qty), "side": self.side, "isLeverage": "0",
                "positionIdx": 0, "orderStatus": self.status, "cancelType": "UNKNOWN",
                "rejectReason": "EC_NoError", "avgPrice": avg, "leavesQty": _s(self.qty - self.cum_qty),
                "leavesValue": "0", "cumExecQty": _s(self.cum_qty), "cumExecValue": _s(self.cum_value),
                "cumExecFee": "", "timeInForce": "IOC", "orderType": "Limit", "stopOrderType": "",
                "orderIv": "", "triggerPrice": "0.00", "createdTime": str(self.created_ms),
                "updatedTime": str(self.created_ms)}  # fmt: skip


class ApiError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def _s(value: Decimal) -> str:
    return format(value.normalize(), "f")


class FakeBybit(FakeServer, FaultsAndLog[Fault, Seen]):
    """The fake venue; `async with FakeBybit() as fake:` serves on `fake.rest_url`."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        clock: Callable[[], float] = time.time,
        skew_ms: int = 0,
        taker_fee_rate: Decimal = Decimal("0.001"),
        late_s: float = 1.0,
        visibility_lag_s: float = 0.0,
        ban_s: float = 600.0,
        reset_s: float = 2.0,
        duplicate_code: int = 170141,
        page_size: int = 50,
        limits: dict[str, int] | None = None,
    ) -> None:
        FakeServer.__init__(self)
        FaultsAndLog.__init__(self)
        self.api_key, self.api_secret, self.clock, self.skew_ms = api_key, api_secret, clock, skew_ms
        self.taker_fee_rate, self.late_s, self.ban_s, self.reset_s = taker_fee_rate, late_s, ban_s, reset_s
        self.visibility_lag_s = visibility_lag_s  # every new order reaches the query endpoints this late
        self.duplicate_code, self.page_size, self.limits = duplicate_code, page_size, limits or dict(LIMITS)
        self.books: dict[str, Book] = {}
        self.set_book(
            "BTCUSDT", [("64000.0", "1.5"), ("63990.0", "3")], [("64000.5", "0.8"), ("64010.0", "5")]
        )
        self.set_book("ETHUSDT", [("3000.00", "20")], [("3000.10", "20")])
        self.balances = {"BTC": Decimal(2), "ETH": Decimal(10), "USDT": Decimal(200_000)}
        self.orders: list[Order] = []
        self.executed: Counter[str] = Counter()
        self.violations: list[str] = []
        self.signatures: list[str] = []
        self._windows: dict[str, tuple[int, int]] = {}  # path -> (second, count)
        self._blocked: dict[str, float] = {}  # path -> no request before (10006)
        self._banned_until = self._ip_backoff_until = 0.0

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/v5/{path:.*}", self._handle)

    def set_book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.books[symbol] = parse_book(bids, asks)

    def server_ms(self) -> int:
        return int(self.clock() * 1000) + self.skew_ms

    def restart(self) -> None:
        """A server restart: closed orders are then only in the order history (open-order.mdx)."""
        for order in self.orders:
            order.in_realtime = order.status in OPEN

    def add_open_order(self, link_id: str, symbol: str, side: str, price: str, qty: str) -> Order:
        """Rest an order placed elsewhere (the web UI, another process) on the book, open."""
        order = Order(str(1_000_000 + len(self.orders)), link_id, symbol, side, Decimal(price), Decimal(qty),
                      self.server_ms(), self.clock())  # fmt: skip
        self.orders.append(order)
        return order

    # ----- the request pipeline ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, "/v5/" + request.match_info["path"]
        query, body = request.rel_url.raw_query_string, await request.text()
        params = (
            dict(parse_qsl(query, keep_blank_values=True)) if method == "GET" else orjson.loads(body or "{}")
        )
        now = self.clock()
        headers = {k: v for k, v in request.headers.items() if k.upper().startswith("X-BAPI")}
        self.requests.append(Seen(now, method, path, params, query, body, headers))
        queue = self.faults.get((method, path))
        fault = queue.popleft() if queue else None
        refusal = self._admit(path, now, fault)
        if refusal is not None:
            return refusal
        limit_headers = self._count(path, now)
        try:
            if fault == "10006":
                self._blocked[path] = now + self.reset_s
                reset_ms = str(int(self._blocked[path] * 1000) + self.skew_ms)
                limit_headers |= {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": reset_ms}
                raise ApiError(10006, "Too many visits!")
            if path not in PUBLIC:
                self._authenticate(request, query if method == "GET" else body)
            if fault in ("fail_5xx", "drop"):
                return await self._fail(request, fault)
            result = self._dispatch(method, path, params, fault)
        except ApiError as exc:
            return self._answer(exc.code, exc.msg, {}, limit_headers)
        if fault is not None and fault.startswith("accept_then_"):
            return await self._after_accept(request, fault, limit_headers)
        return self._answer(0, "OK", result, limit_headers)

    def _admit(self, path: str, now: float, fault: Fault | None) -> web.Response | None:
        """Refuse at the IP level: a ban (403), system protection (429); record every violation."""
        if now < self._banned_until:
            self.violations.append(f"{path} at {now:.3f} during a ban until {self._banned_until:.3f}")
            return web.Response(status=403, text="access too frequent")
        if now < self._ip_backoff_until:
            self.violations.append(f"{path} at {now:.3f} within a second of a 429")
        if now < self._blocked.get(path, 0.0):
            self.violations.append(f"{path} at {now:.3f} before its 10006 reset at {self._blocked[path]:.3f}")
        if fault == "403":
            self._banned_until = now + self.ban_s
            return web.Response(status=403, text="access too frequent")
        if fault == "429":
            self._ip_backoff_until = now + 1.0
            return web.Response(status=429, text="System level frequency protection")
        return None

    def _count(self, path: str, now: float) -> dict[str, str]:
        limit = self.limits.get(path)
        if limit is None:
            return {}
        second = math.floor(now)
        start, count = self._windows.get(path, (second, 0))
        count = count + 1 if start == second else 1
        self._windows[path] = (second, count)
        reset_ms = int((second + 1) * 1000) + self.skew_ms if count > limit else self.server_ms()
        if count > limit:
            self.violations.append(f"{path} at {now:.3f}: request {count} in a second, limit {limit}")
        return {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(max(0, limit - count)),
                "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)}  # fmt: skip

    def _authenticate(self, request: web.Request, payload: str) -> None:
        headers = request.headers
        if headers.get("X-BAPI-API-KEY") != self.api_key:
            raise ApiError(10003, "API key is invalid.")
        stamp, window, sign = (headers.get(f"X-BAPI-{n}", "") for n in ("TIMESTAMP", "RECV-WINDOW", "SIGN"))
        if not stamp.isdigit() or not window.isdigit():
            raise ApiError(10001, "Request parameter error.")
        self.signatures.append(sign)
        if not self.signature_valid(stamp + self.api_key + window + payload, sign):
            raise ApiError(10004, "Error sign, please check your signature generation algorithm.")
        server = self.server_ms()
        if not server - int(window) <= int(stamp) < server + 1000:
            raise ApiError(10002, "The request time exceeds the time window range.")

    def signature_valid(self, signed: str, sign: str) -> bool:
        """Check `sign` over the exact string to sign (timestamp + key + recv window + payload)."""
        return hmac.compare_digest(signature(self.api_secret, signed), sign)

    def _answer(self, code: int, msg: str, result: Any, headers: dict[str, str]) -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": self.server_ms()}
        return web.Response(body=orjson.dumps(body), content_type="application/json", headers=headers)

    async def _fail(self, request: web.Request, fault: str) -> web.Response:
        if fault == "fail_5xx":
            return web.Response(status=503, text="<html>503 Service Temporarily Unavailable</html>")
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError  # the connection is gone: nothing is answered

    async def _after_accept(
        self, request: web.Request, fault: Fault, headers: dict[str, str]
    ) -> web.Response:
        code = fault.removeprefix("accept_then_")
        if code in _UNKNOWN:
            return self._answer(int(code), _UNKNOWN[code], {}, headers)
        if code == "hang":
            await self._closing.wait()
            raise asyncio.CancelledError
        if code == "5xx":
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")
        return await self._fail(request, "drop")

    # ----- endpoints ---------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, params: dict[str, str], fault: Fault | None) -> Any:
        if path == "/v5/market/time":
            ms = self.server_ms()
            return {"timeSecond": str(ms // 1000), "timeNano": str(ms * 1_000_000)}
        if path == "/v5/market/instruments-info":
            return {"category": "spot", "list": INSTRUMENTS}
        if path == "/v5/order/create" and method == "POST":
            return self._create(params, fault)
        if path == "/v5/order/cancel" and method == "POST":
            return self._cancel(params)
        if path in ("/v5/order/realtime", "/v5/order/history"):
            return self._orders(path, params)
        if path == "/v5/execution/list":
            return self._executions(params)
        if path == "/v5/account/wallet-balance":
            coins = [{"coin": c, "walletBalance": _s(v), "locked": "0", "equity": _s(v), "usdValue": "0",
                      "borrowAmount": "0", "spotBorrow": "0"} for c, v in self.balances.items()]  # fmt: skip
            return {"list": [{"accountType": "UNIFIED", "totalEquity": "0", "coin": coins}]}
        if path == "/v5/account/fee-rate":
            return {"category": "spot", "list": [{"symbol": params.get("symbol", ""),
                    "takerFeeRate": _s(self.taker_fee_rate), "makerFeeRate": "0.001"}]}  # fmt: skip
        raise ApiError(10017, "Route not found.")

    def _create(self, params: dict[str, str], fault: Fault | None) -> dict[str, Any]:
        symbol, side, link_id = params.get("symbol", ""), params.get("side"), params.get("orderLinkId", "")
        if symbol not in RULES:
            raise ApiError(170121, "Invalid symbol.")
        if (
            params.get("category") != "spot"
            or side not in ("Buy", "Sell")
            or params.get("orderType") != "Limit"
        ):
            raise ApiError(10001, "Request parameter error.")
        qty, price = Decimal(params["qty"]), Decimal(params["price"])
        lot, tick = RULES[symbol]["lotSizeFilter"], Decimal(RULES[symbol]["priceFilter"]["tickSize"])
        if qty % Decimal(lot["basePrecision"]) or qty <= 0:
            raise ApiError(170137, "Order volume decimal too long")
        if price % tick or price <= 0:
            raise ApiError(170134, "Order price decimal too long.")
        if qty * price < Decimal(lot["minOrderAmt"]):
            raise ApiError(170140, "Order value exceeded lower limit")
        if any(o.link_id == link_id for o in self.orders):
            raise ApiError(self.duplicate_code, "Duplicate clientOrderId")
        base, quote = RULES[symbol]["baseCoin"], "USDT"
        if self.balances[quote if side == "Buy" else base] < (qty * price if side == "Buy" else qty):
            raise ApiError(170131, "Balance insufficient")
        now = self.clock()
        late = self.late_s if fault == "late_visible" else self.visibility_lag_s
        order = Order(
            str(1_000_000 + len(self.orders)), link_id, symbol, side, price, qty, self.server_ms(), now + late
        )
        self._match(order, base, quote)
        self.orders.append(order)
        self.executed[link_id] += 1
        return {"orderId": order.order_id, "orderLinkId": link_id}

    def _match(self, order: Order, base: str, quote: str) -> None:
        bids, asks = self.books[order.symbol]
        buy = order.side == "Buy"
        for level_price, level_qty in asks if buy else bids:
            remaining = order.qty - order.cum_qty
            if remaining <= 0 or (level_price > order.price if buy else level_price < order.price):
                break
            take = min(remaining, level_qty)
            fee = take * self.taker_fee_rate if buy else take * level_price * self.taker_fee_rate
            self.balances[base] += take - fee if buy else -take
            self.balances[quote] += -take * level_price if buy else take * level_price - fee
            order.executions.append(self._execution(order, level_price, take, fee, base if buy else quote))
            order.cum_qty += take
            order.cum_value += take * level_price
        if order.cum_qty == order.qty:
            order.status = "Filled"
        else:
            order.status = "PartiallyFilledCanceled" if order.cum_qty else "Cancelled"

    def _execution(
        self, order: Order, price: Decimal, qty: Decimal, fee: Decimal, fee_asset: str
    ) -> dict[str, Any]:
        return {"symbol": order.symbol, "orderId": order.order_id, "orderLinkId": order.link_id,
                "side": order.side, "orderPrice": _s(order.price), "orderQty": _s(order.qty),
                "leavesQty": "0", "orderType": "Limit", "stopOrderType": "", "execFee": _s(fee),
                "execId": f"e-{order.order_id}-{len(order.executions)}", "execPrice": _s(price),
                "execQty": _s(qty), "execType": "Trade", "execValue": _s(qty * price),
                "execTime": str(order.created_ms), "isMaker": False, "feeCurrency": fee_asset,
                "feeRate": _s(self.taker_fee_rate), "markPrice": "", "seq": 1}  # fmt: skip

    def _visible(self, link_id: str | None = None) -> list[Order]:
        now = self.clock()
        return [o for o in self.orders if o.visible_at <= now and link_id in (None, o.link_id)]

    def _orders(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        link_id = params.get("orderLinkId")
        orders = self._visible(link_id) if link_id else [o for o in self._visible() if o.status in OPEN]
        if path == "/v5/order/realtime" and link_id:
            orders = [o for o in orders if o.in_realtime]
        return self._page([o.as_json() for o in reversed(orders)], params)

    def _executions(self, params: dict[str, str]) -> dict[str, Any]:
        items = [e for o in self._visible(params.get("orderLinkId")) for e in reversed(o.executions)]
        return self._page(items, params)

    def _page(self, items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        size = min(int(params.get("limit", "20")), self.page_size)
        cursor = params.get("cursor", "")
        start = int(dict(parse_qsl(cursor)).get("page_args", "0")) if cursor else 0
        more = start + size < len(items)
        nxt = f"page_args={start + size}&symbol=x" if more else ""
        return {"category": "spot", "list": items[start : start + size], "nextPageCursor": nxt}

    def _cancel(self, params: dict[str, str]) -> dict[str, Any]:
        found = [o for o in self._visible(params.get("orderLinkId")) if o.status in OPEN]
        if not found:
            raise ApiError(170213, "Order does not exist.")
        found[0].status = "Cancelled"
        return {"orderId": found[0].order_id, "orderLinkId": found[0].link_id}
