"""A fake Binance Spot REST server (aiohttp on 127.0.0.1) that enforces the real rules.

python-binance talks to it through its base URL (`http://127.0.0.1:<port>/api`).
It implements `/api/v3/` ping, time, exchangeInfo (real shape with filters and
rateLimits), depth, ticker/24hr, ticker/bookTicker, klines, account,
openOrders, myTrades, order (POST/GET/DELETE) and order/test, and enforces:

- the signature: HMAC-SHA256 hex over query string + body (signature removed),
  or Ed25519 (base64) when built with a public key; `X-MBX-APIKEY` must match;
- `timestamp`/`recvWindow`: accepted iff timestamp < server time + 1000 and
  server time − timestamp ≤ recvWindow (≤ 60000), else -1021;
- newClientOrderId unique among OPEN orders only (-2010 "Duplicate order sent."),
  so a filled order's id is accepted again, as on the real venue;
- symbol filters (-1013), request weight per minute and orders per 10 s with
  `X-MBX-USED-WEIGHT-1M` / `X-MBX-ORDER-COUNT-10S` / `-1D` headers on every
  answer; over a limit → 429 + Retry-After; any request before Retry-After has
  passed → 418 + Retry-After (an IP ban), recorded in `violations`.

Faults are injected per (method, path) and consumed in order (`inject`).
`accepted` counts orders accepted per client order id: "no duplicate order"
is `max(fake.accepted.values()) == 1`. Rate windows and bans run on `clock`
(inject a `VirtualClock` to make time pass without sleeping); timestamps are
checked against the real wall clock shifted by `skew_ms`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import orjson
from aiohttp import web
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa
from fake_venue import Book, FakeServer, FaultsAndLog, VirtualClock, arrived, parse_book

from connectors.binance.ratelimit import RateLimiter

Fault = Literal[
    "accept_then_hang",  # execute the order, then never answer (the client times out)
    "accept_then_5xx",  # execute, then answer 503 with an HTML body
    "accept_then_1007",  # execute, then answer -1007 "execution status unknown"
    "accept_then_drop",  # execute, then close the connection without an answer
    "accept_late",  # answer 503 at once, execute `late_s` later (if recvWindow still allows)
    "fail_5xx",  # answer 503, execute nothing
    "drop",  # close the connection, execute nothing
    "429",  # answer 429 with Retry-After `retry_after_s`
    "418",  # ban the IP for `ban_s` and answer 418
    "garbage",  # answer 200 with an HTML body, execute nothing
]

OPEN = ("NEW", "PARTIALLY_FILLED")
API_KEY = "fake-api-key-0123456789"
API_SECRET = "fake-api-secret-abcdefghijklmnopqrstuvwxyz"


def hmac_signature(secret: str, payload: str) -> str:
    """Return Binance's HMAC-SHA256 hex signature of `payload`."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class VirtualLimiter(RateLimiter):
    """The connector's limiter on a VirtualClock, telling the clock what it lets through."""

    def __init__(self, clock: VirtualClock, venue: str) -> None:
        super().__init__(venue, clock=clock, sleep=clock.sleep)
        self.virtual = clock

    async def acquire(self, weight: int, *, orders: int = 0, max_wait_s: float) -> None:
        await super().acquire(weight, orders=orders, max_wait_s=max_wait_s)
        self.virtual.sent()


def _symbol(
    name: str, base: str, quote: str, tick: str, step: str, notional: dict[str, Any]
) -> dict[str, Any]:
    return {
        "symbol": name, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True, "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
             "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "76.27000000",
             "stepSize": "0.00000000"},
            notional,
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
    }  # fmt: skip


SYMBOLS = [
    _symbol("BTCUSDT", "BTC", "USDT", "0.01000000", "0.00001000",
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}),
    _symbol("ETHUSDT", "ETH", "USDT", "0.01000000", "0.00010000",
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}),
    _symbol("LTCBTC", "LTC", "BTC", "0.00000100", "0.00100000",
            {"filterType": "MIN_NOTIONAL", "minNotional": "0.00010000", "applyToMarket": True,
             "avgPriceMins": 5}),
]  # fmt: skip
FILTERS = {s["symbol"]: {f["filterType"]: f for f in s["filters"]} for s in SYMBOLS}


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    time: float
    method: str
    path: str
    params: dict[str, str]
    query: str
    body: str


@dataclass
class Order:
    """One order the fake accepted."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    status: str = "NEW"
    time_ms: int = 0
    fills: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, resp_type: str = "RESULT") -> dict[str, Any]:
        data: dict[str, Any] = {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id,
        }  # fmt: skip
        if resp_type == "ACK":
            return data | {"transactTime": self.time_ms}
        data |= {
            "price": _s(self.price), "origQty": _s(self.orig_qty), "executedQty": _s(self.executed_qty),
            "origQuoteOrderQty": "0.00000000", "cummulativeQuoteQty": _s(self.cum_quote),
            "status": self.status, "timeInForce": self.time_in_force, "type": self.type,
            "side": self.side, "workingTime": self.time_ms, "selfTradePreventionMode": "NONE",
        }  # fmt: skip
        if resp_type == "QUERY":
            return data | {"time": self.time_ms, "updateTime": self.time_ms, "isWorking": True}
        data["transactTime"] = self.time_ms
        if resp_type == "FULL":
            data["fills"] = [{k: v for k, v in f.items() if k != "time"} for f in self.fills]
        return data


def _s(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.00000001"), rounding=ROUND_DOWN), "f")


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


_WEIGHTS = {
    ("GET", "ping"): 1, ("GET", "time"): 1, ("GET", "exchangeInfo"): 20, ("GET", "ticker/24hr"): 2,
    ("GET", "ticker/bookTicker"): 2, ("GET", "klines"): 2, ("GET", "account"): 20, ("GET", "myTrades"): 20,
    ("GET", "account/commission"): 20,
    ("POST", "order"): 1, ("GET", "order"): 4, ("DELETE", "order"): 1, ("POST", "order/test"): 1,
}  # fmt: skip
_SIGNED = {"account", "account/commission", "openOrders", "myTrades", "order", "order/test"}


class FakeBinance(FakeServer, FaultsAndLog[Fault, Seen]):
    """The fake venue; `async with FakeBinance(...) as fake:` serves on `fake.rest_url`."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        api_secret: str | None = API_SECRET,
        ed25519_public_pem: str | None = None,
        clock: Callable[[], float] = time.time,
        weight_limit: int = 6000,
        orders_per_10s: int = 100,
        ban_s: int = 120,
        skew_ms: int = 0,
        late_s: float = 0.3,
        retry_after_s: int = 7,
        commission_rate: Decimal = Decimal("0.001"),
        order_latency_s: float = 0.0,
        excuse: Callable[[str, str], bool] | None = None,
    ) -> None:
        FakeServer.__init__(self)
        FaultsAndLog.__init__(self)
        self.api_key, self.api_secret = api_key, api_secret
        self.public_key = None if ed25519_public_pem is None else ECC.import_key(ed25519_public_pem)
        self.clock, self.skew_ms, self.late_s = clock, skew_ms, late_s
        self.weight_limit, self.orders_per_10s, self.ban_s = weight_limit, orders_per_10s, ban_s
        self.retry_after_s, self.commission_rate = retry_after_s, commission_rate
        self.order_latency_s = order_latency_s  # a placed order's answer comes this late (a slow venue)
        # `excuse(cause, request)`: whether the order `request` (a client order id) was sent before the
        # client read the 429 answered to `cause`. Such a request arriving during the Retry-After
        # was on its way, not a violation: it gets a 429 too (counted in `excused`), not a ban.
        self.excuse, self.excused, self._backoff_cause, self._placing = excuse, 0, "", ""
        self.books: dict[str, Book] = {}
        self.set_book(
            "BTCUSDT", [("64000.00", "1.5"), ("63990.00", "3")], [("64000.50", "0.8"), ("64010.00", "5")]
        )
        self.set_book("ETHUSDT", [("3000.00", "20")], [("3000.10", "20")])
        self.set_book("LTCBTC", [("0.001500", "100")], [("0.001510", "100")])
        self.orders: list[Order] = []
        self.accepted: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.violations: list[str] = []
        self.signatures: list[str] = []
        self.order_accepted = asyncio.Event()
        self._weight = (-1, 0)  # (minute window, weight used)
        self._order_counts: dict[int, tuple[int, int]] = {10: (-1, 0), 86400: (-1, 0)}
        self._backoff_until = self._banned_until = 0.0
        self._trade_id = 1000

    # ----- lifecycle and test controls ---------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v3/{path:.*}", self._handle)

    def set_book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.books[symbol] = parse_book(bids, asks)

    def rest_order(self, symbol: str, side: str, price: str, qty: str, client_id: str) -> Order:
        """Put an open GTC limit order on the account as if placed elsewhere (by hand, another system)."""
        order = Order(len(self.orders) + 1, client_id, symbol, side, "LIMIT", "GTC", Decimal(price),
                      Decimal(qty), time_ms=self.server_ms())  # fmt: skip
        self.orders.append(order)
        return order

    def server_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    # ----- the request pipeline ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.match_info["path"]
        raw_query, raw_body = request.rel_url.raw_query_string, await request.text()
        params = dict(parse_qsl(raw_query, keep_blank_values=True)) | dict(
            parse_qsl(raw_body, keep_blank_values=True)
        )
        arrived(self.clock)
        now = self.clock()
        self.requests.append(Seen(now, method, path, params, raw_query, raw_body))
        fault = self._next_fault(method, path)
        try:
            self._admit(method, path, params, now, fault)
            if path in _SIGNED:
                self._authenticate(request, raw_query + raw_body, params)
            if fault in ("drop", "fail_5xx"):
                return await self._fail(request, fault)
            if fault == "garbage":
                return self._reply(
                    web.Response(text="<html>maintenance</html>", content_type="text/html"), path
                )
            if fault == "accept_late":
                self._spawn_late(self._accept_late(params))
                return self._reply(
                    web.Response(status=503, text="<html>503 Service Unavailable</html>"), path
                )
            answer = self._dispatch(method, path, params)
        except ApiError as exc:
            body = orjson.dumps({"code": exc.code, "msg": exc.msg})
            response = web.Response(status=exc.status, body=body, content_type="application/json")
            response.headers.update(exc.headers)
            return self._reply(response, path)
        if fault is not None and fault.startswith("accept_then_"):
            return await self._after_accept(request, fault)
        if (method, path) == ("POST", "order") and self.order_latency_s:
            await asyncio.sleep(self.order_latency_s)  # executed already: a crash now leaves it unknown
        return self._reply(web.Response(body=orjson.dumps(answer), content_type="application/json"), path)

    def _reply(self, response: web.Response, path: str) -> web.Response:
        self.statuses[response.status] += 1
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(self._weight[1])
        if path == "order":
            for seconds, suffix in ((10, "10S"), (86400, "1D")):
                response.headers[f"X-MBX-ORDER-COUNT-{suffix}"] = str(self._order_counts[seconds][1])
        return response

    def _admit(self, method: str, path: str, params: dict[str, str], now: float, fault: Fault | None) -> None:
        """Apply bans, Retry-After, request weight and order counts — before anything else."""
        if now < self._banned_until:
            raise ApiError(
                418, -1003, "Way too many requests; IP banned.", self._retry(self._banned_until - now)
            )
        if now < self._backoff_until and self._excused(params):
            self.excused += 1
            raise ApiError(429, -1003, "Too many requests.", self._retry(self._backoff_until - now))
        if now < self._backoff_until:
            self.violations.append(
                f"{method} {path} at {now:.3f}, before Retry-After ended at {self._backoff_until:.3f}"
            )
            self._banned_until = now + self.ban_s
            raise ApiError(418, -1003, "Way too many requests; IP banned.", self._retry(self.ban_s))
        if fault == "418":
            self._banned_until = now + self.ban_s
            raise ApiError(418, -1003, "Way too many requests; IP banned.", self._retry(self.ban_s))
        if fault == "429":
            self._backoff_until = now + self.retry_after_s
            self._backoff_cause = params.get("newClientOrderId", "")
            raise ApiError(
                429, -1003, "Too many requests; please use the websocket.", self._retry(self.retry_after_s)
            )
        weight = self._weight_of(method, path, params)
        window = math.floor(now / 60)
        used = self._weight[1] if self._weight[0] == window else 0
        if used + weight > self.weight_limit:
            self._backoff_until = (window + 1) * 60.0
            self._backoff_cause = params.get("newClientOrderId", "")
            raise ApiError(
                429, -1003, "Too much request weight used.", self._retry(self._backoff_until - now)
            )
        self._weight = (window, used + weight)
        if (method, path) == ("POST", "order"):
            self._placing = params.get("newClientOrderId", "")
            self._count_order(now)

    def _count_order(self, now: float) -> None:
        for seconds, limit in ((10, self.orders_per_10s), (86400, 200_000)):
            window = math.floor(now / seconds)
            start, count = self._order_counts[seconds]
            count = count if start == window else 0
            if count + 1 > limit:
                self._backoff_until = (window + 1) * float(seconds)
                self._backoff_cause = self._placing
                message = f"Too many new orders; current limit is {limit} orders per {seconds}s."
                raise ApiError(429, -1015, message, self._retry(self._backoff_until - now))
            self._order_counts[seconds] = (window, count + 1)

    def _excused(self, params: dict[str, str]) -> bool:
        request = params.get("newClientOrderId", "")
        return bool(self.excuse and request and self.excuse(self._backoff_cause, request))

    @staticmethod
    def _retry(seconds: float) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(seconds)))}

    @staticmethod
    def _weight_of(method: str, path: str, params: dict[str, str]) -> int:
        if path == "depth":
            limit = int(params.get("limit", "100"))
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        if path == "openOrders":
            return 6 if "symbol" in params else 80
        return _WEIGHTS.get((method, path), 1)

    def _authenticate(self, request: web.Request, total: str, params: dict[str, str]) -> None:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        found = re.search(r"(?:^|&)signature=([^&]*)", total)
        if found is None:
            raise ApiError(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        signature = found.group(1)
        self.signatures.append(signature)
        if not self.signature_valid(total[: found.start()] + total[found.end() :], signature):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        self._check_timestamp(params)

    def signature_valid(self, payload: str, signature: str) -> bool:
        """Check `signature` over `payload` (the exact query string + body, signature removed)."""
        if self.public_key is not None:
            try:
                eddsa.new(self.public_key, "rfc8032").verify(
                    payload.encode(), base64.b64decode(unquote(signature))
                )
            except ValueError:
                return False
            return True
        assert self.api_secret is not None
        return hmac.compare_digest(hmac_signature(self.api_secret, payload), signature.lower())

    def _check_timestamp(self, params: dict[str, str]) -> None:
        window = int(params.get("recvWindow", "5000"))
        if window > 60_000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        if not self._timestamp_ok(params):
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _timestamp_ok(self, params: dict[str, str]) -> bool:
        server, stamp = self.server_ms(), int(params.get("timestamp", "0"))
        return stamp < server + 1000 and server - stamp <= int(params.get("recvWindow", "5000"))

    async def _fail(self, request: web.Request, fault: Fault) -> web.Response:
        if fault == "fail_5xx":
            return self._reply(web.Response(status=503, text="<html>503 Service Unavailable</html>"), "")
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError  # the connection is gone: nothing is answered

    async def _after_accept(self, request: web.Request, fault: Fault) -> web.Response:
        if fault == "accept_then_hang":
            await self._closing.wait()
            raise asyncio.CancelledError  # shutting down; the client gave up long ago
        if fault == "accept_then_1007":
            body = {"code": -1007, "msg": "Timeout waiting for response from backend server. Send status "
                    "unknown; execution status unknown."}  # fmt: skip
            return self._reply(web.json_response(body, status=408), "order")
        if fault == "accept_then_5xx":
            return self._reply(web.Response(status=503, text="<html>503 Service Unavailable</html>"), "order")
        return await self._fail(request, "drop")

    async def _accept_late(self, params: dict[str, str]) -> None:
        await asyncio.sleep(self.late_s)
        # The matching engine checks the timestamp again: a stale order is never accepted.
        if self._timestamp_ok(params):
            self._dispatch("POST", "order", params)

    # ----- endpoints ---------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, params: dict[str, str]) -> Any:
        if path == "ping":
            return {}
        if path == "time":
            return {"serverTime": self.server_ms()}
        if path == "exchangeInfo":
            return self._exchange_info()
        if path in ("depth", "ticker/bookTicker", "ticker/24hr", "klines"):
            return self._market(path, self._known_symbol(params), params)
        if path == "account":
            return self._account()
        if path == "account/commission":
            symbol = self._known_symbol(params)
            rates = {
                "maker": "0.00100000",
                "taker": format(self.commission_rate, "f"),
                "buyer": "0",
                "seller": "0",
            }
            zero = {"maker": "0", "taker": "0", "buyer": "0", "seller": "0"}
            return {"symbol": symbol, "standardCommission": rates, "taxCommission": zero,
                    "discount": {"enabledForAccount": False, "enabledForSymbol": False,
                                 "discountAsset": "BNB", "discount": "0.75000000"}}  # fmt: skip
        if path == "openOrders":
            return [o.as_json("QUERY") for o in self.orders if o.status in OPEN
                    and params.get("symbol", o.symbol) == o.symbol]  # fmt: skip
        if path == "myTrades":
            order = self._find(params, by_id=True)
            extra = {"symbol": order.symbol, "orderId": order.order_id, "orderListId": -1, "quoteQty": "0",
                     "isBuyer": order.side == "BUY", "isMaker": False, "isBestMatch": True}  # fmt: skip
            return [f | extra | {"id": f["tradeId"]} for f in order.fills]
        if path == "order/test":
            self._validate_order(params)
            return {}
        if path == "order":
            return {"POST": self._place, "GET": self._query, "DELETE": self._cancel}[method](params)
        raise ApiError(404, -1000, "Unknown endpoint.")

    def _exchange_info(self) -> dict[str, Any]:
        return {
            "timezone": "UTC", "serverTime": self.server_ms(), "exchangeFilters": [], "symbols": SYMBOLS,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                 "limit": self.orders_per_10s},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
        }  # fmt: skip

    def _known_symbol(self, params: dict[str, str]) -> str:
        symbol = params.get("symbol", "")
        if symbol not in FILTERS:
            raise ApiError(400, -1121, "Invalid symbol.")
        return symbol

    def _market(self, path: str, symbol: str, params: dict[str, str]) -> Any:
        bids, asks = self.books[symbol]
        if path == "depth":
            limit = int(params.get("limit", "100"))
            return {"lastUpdateId": 1027024, "bids": [[_s(p), _s(q)] for p, q in bids[:limit]],
                    "asks": [[_s(p), _s(q)] for p, q in asks[:limit]]}  # fmt: skip
        if path == "ticker/bookTicker":
            return {"symbol": symbol, "bidPrice": _s(bids[0][0]), "bidQty": _s(bids[0][1]),
                    "askPrice": _s(asks[0][0]), "askQty": _s(asks[0][1])}  # fmt: skip
        if path == "ticker/24hr":
            return {"symbol": symbol, "priceChange": "-94.99999800", "priceChangePercent": "-95.960",
                    "weightedAvgPrice": "0.29628482", "prevClosePrice": "0.10002000",
                    "lastPrice": _s(bids[0][0]),
                    "lastQty": "200.00000000", "bidPrice": _s(bids[0][0]), "bidQty": _s(bids[0][1]),
                    "askPrice": _s(asks[0][0]), "askQty": _s(asks[0][1]), "openPrice": "99.00000000",
                    "highPrice": "100.00000000", "lowPrice": "0.10000000", "volume": "8913.30000000",
                    "quoteVolume": "15.30000000", "openTime": 1499783499040, "closeTime": 1499869899040,
                    "firstId": 28385, "lastId": 28460, "count": 76}  # fmt: skip
        start = 1499040000000
        return [[start + i * 60000, "0.01634790", "0.80000000", "0.01575800", "0.01577100", "148976.11427815",
                 start + i * 60000 + 59999, "2434.19055334", 308, "1756.87402397", "28.46694368", "0"]
                for i in range(int(params.get("limit", "500")))]  # fmt: skip

    @staticmethod
    def _account() -> dict[str, Any]:
        return {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "accountType": "SPOT",
                "balances": [{"asset": "BTC", "free": "1.50000000", "locked": "0.00000000"},
                             {"asset": "LTC", "free": "0.00000000", "locked": "0.00000000"},
                             {"asset": "USDT", "free": "100000.00000000", "locked": "250.00000000"}],
                "permissions": ["SPOT"]}  # fmt: skip

    def _validate_order(self, params: dict[str, str]) -> tuple[str, Decimal, Decimal]:
        symbol = self._known_symbol(params)
        for name in ("side", "type", "quantity"):
            if not params.get(name):
                raise ApiError(
                    400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
                )
        quantity = Decimal(params["quantity"])
        price = Decimal(params.get("price", "0"))
        rules = FILTERS[symbol]
        lot, tick = rules["LOT_SIZE"], rules["PRICE_FILTER"]
        if quantity < Decimal(lot["minQty"]) or (quantity - Decimal(lot["minQty"])) % Decimal(
            lot["stepSize"]
        ):
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        if params["type"] == "LIMIT":
            if price < Decimal(tick["minPrice"]) or (price - Decimal(tick["minPrice"])) % Decimal(
                tick["tickSize"]
            ):
                raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
            notional = rules.get("NOTIONAL") or rules["MIN_NOTIONAL"]
            if quantity * price < Decimal(notional["minNotional"]):
                raise ApiError(400, -1013, f"Filter failure: {notional['filterType']}")
        return symbol, quantity, price

    def _place(self, params: dict[str, str]) -> dict[str, Any]:
        symbol, quantity, price = self._validate_order(params)
        client_id = params.get("newClientOrderId", "")
        if any(o.client_order_id == client_id and o.status in OPEN for o in self.orders):
            raise ApiError(400, -2010, "Duplicate order sent.")
        tif = params.get("timeInForce", "GTC")
        order = Order(len(self.orders) + 1, client_id, symbol, params["side"], params["type"], tif, price,
                      quantity, time_ms=self.server_ms())  # fmt: skip
        self._match(order)
        self.orders.append(order)
        self.accepted[client_id] += 1
        self.order_accepted.set()
        return order.as_json(params.get("newOrderRespType", "FULL"))

    def _match(self, order: Order) -> None:
        bids, asks = self.books[order.symbol]
        buy = order.side == "BUY"
        base, quote = next((s["baseAsset"], s["quoteAsset"]) for s in SYMBOLS if s["symbol"] == order.symbol)
        for level_price, level_qty in asks if buy else bids:
            remaining = order.orig_qty - order.executed_qty
            beyond_limit = level_price > order.price if buy else level_price < order.price
            if remaining <= 0 or (order.type == "LIMIT" and beyond_limit):
                break
            take = min(remaining, level_qty)
            self._trade_id += 1
            fee = take * self.commission_rate if buy else take * level_price * self.commission_rate
            order.fills.append({"price": _s(level_price), "qty": _s(take), "commission": _s(fee),
                                "commissionAsset": base if buy else quote, "tradeId": self._trade_id,
                                "time": order.time_ms})  # fmt: skip
            order.executed_qty += take
            order.cum_quote += take * level_price
        if order.executed_qty == order.orig_qty:
            order.status = "FILLED"
        elif order.time_in_force in ("IOC", "FOK") or order.type == "MARKET":
            order.status = "EXPIRED"
        else:
            order.status = "PARTIALLY_FILLED" if order.executed_qty else "NEW"

    def _find(self, params: dict[str, str], *, by_id: bool = False) -> Order:
        symbol = self._known_symbol(params)
        if by_id or "orderId" in params:
            matches = [o for o in self.orders if str(o.order_id) == params.get("orderId")]
        else:
            matches = [o for o in self.orders if o.client_order_id == params.get("origClientOrderId")]
        matches = [o for o in matches if o.symbol == symbol]
        if not matches:
            raise ApiError(400, -2013, "Order does not exist.")
        return matches[-1]

    def _query(self, params: dict[str, str]) -> dict[str, Any]:
        return self._find(params).as_json("QUERY")

    def _cancel(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            order = self._find(params)
        except ApiError:
            raise ApiError(400, -2011, "Unknown order sent.") from None
        if order.status not in OPEN:
            raise ApiError(400, -2011, "Unknown order sent.")
        order.status = "CANCELED"
        return order.as_json("RESULT") | {"origClientOrderId": order.client_order_id}
