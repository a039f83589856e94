"""A fake Coinbase Advanced Trade REST server (aiohttp on 127.0.0.1) that enforces the documented rules.

It serves `/api/v3/brokerage/` time, products/{id}, orders (POST), orders/batch_cancel,
orders/historical/batch, orders/historical/fills, orders/historical/{order_id},
accounts and transaction_summary in the documented shapes, and enforces:

- the CDP JWT of every private request (`Authorization: Bearer`), verified here
  independently of the client: alg ES256 (EC P-256, JWS r||s) or EdDSA matching the
  key, `kid` = `sub` = the key name, `iss` = "cdp", `uri` = "METHOD host/path"
  (no query), `nbf` ≤ now + 1 s, now < `exp`, `exp` − `nbf` ≤ 120, signature by the
  key's public half; a nonce is accepted once (replay protection: an assumption,
  Coinbase documents the nonce only as random). Anything else → 401 "Unauthorized";
- `client_order_id` required; a repeated one creates nothing and returns the order
  that carries it ("the order corresponding with that ID will be returned instead");
- product rules (size/price increments, minimum size and notional) and funds, with
  business failures as HTTP 200 `success: false` + `error_response`;
- a per-second request budget on `clock` with `x-ratelimit-limit/-remaining/-reset`
  (seconds until the window resets) on every answer; over it → 429 + Retry-After;
  a request before a Retry-After passed is recorded in `violations`.

IOC orders fill against a configurable book at once, with the taker fee in the
quote currency, and move balances. Faults are injected per (method, route) and
consumed in order (`inject`). `executions` counts executions per client order id
("exactly once" is `executions[cid] == 1`); `replays` counts answered repeats.
`visibility_lag` hides each new order from that many queries (late visibility).
JWT times are checked against the wall clock shifted by `skew_s`.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fake_venue import Book, FakeServer, FaultsAndLog, arrived, parse_book

Fault = Literal[
    "accept_then_hang",  # execute, then never answer (the client times out)
    "accept_then_5xx",  # execute, then answer 503 with an HTML body
    "accept_then_drop",  # execute, then close the connection without an answer
    "accept_then_unknown",  # execute, then answer success:false UNKNOWN_FAILURE_REASON
    "accept_late",  # answer 503 now; `process_late()` executes it if its JWT has not expired
    "rest_open",  # accept and leave the order OPEN, unfilled (a lagging IOC), to be cancelled
    "unknown_failure",  # answer success:false UNKNOWN_FAILURE_REASON, execute nothing
    "fail_5xx",  # answer 503, execute nothing
    "drop",  # close the connection, execute nothing
    "429",  # answer 429 with Retry-After `retry_after_s`
    "garbage",  # answer 200 with an HTML body, execute nothing
]

KEY_NAME = "organizations/fake-org/apiKeys/fake-key-0001"
_EC = ec.generate_private_key(ec.SECP256R1())
EC_PRIVATE_PEM = _EC.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
).decode()
D = Decimal
ZERO = D(0)
TAKER_FEE_RATE = D("0.006")

PRODUCTS: dict[str, dict[str, Any]] = {
    pid: {
        "product_id": pid, "price": "0", "base_increment": step, "quote_increment": tick,
        "price_increment": tick, "base_min_size": step, "base_max_size": "3400", "quote_min_size": "1",
        "quote_max_size": "150000000", "base_name": base, "quote_name": quote, "status": "online",
        "cancel_only": False, "limit_only": False, "post_only": False, "trading_disabled": False,
        "auction_mode": False, "is_disabled": False, "view_only": False, "product_type": "SPOT",
        "quote_currency_id": quote, "base_currency_id": base, "alias": "", "alias_to": [],
        "product_venue": "CBE",
    }
    for pid, base, quote, step, tick in (
        ("BTC-USD", "BTC", "USD", "0.00000001", "0.01"),
        ("ETH-USD", "ETH", "USD", "0.00000001", "0.01"),
    )
}  # fmt: skip


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def parse_iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _s(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    time: float
    method: str
    route: str
    query: list[tuple[str, str]]
    body: bytes
    headers: dict[str, str]

    @property
    def path(self) -> str:
        """The route, under the name the shared request log filters on."""
        return self.route


@dataclass
class Order:
    order_id: str
    client_order_id: str
    product_id: str
    side: str
    base_size: Decimal
    limit_price: Decimal
    created_ms: int
    status: str = "PENDING"
    filled_size: Decimal = ZERO
    filled_value: Decimal = ZERO
    total_fees: Decimal = ZERO
    fills: list[dict[str, Any]] = field(default_factory=list)
    hidden_for: int = 0

    def as_json(self) -> dict[str, Any]:
        average = self.filled_value / self.filled_size if self.filled_size else ZERO
        return {
            "order_id": self.order_id, "product_id": self.product_id, "user_id": "fake-user",
            "order_configuration": {"sor_limit_ioc": {"base_size": _s(self.base_size),
                                                      "limit_price": _s(self.limit_price)}},
            "side": self.side, "client_order_id": self.client_order_id, "status": self.status,
            "time_in_force": "IMMEDIATE_OR_CANCEL", "created_time": iso(self.created_ms),
            "completion_percentage": _s(self.filled_size / self.base_size * 100),
            "filled_size": _s(self.filled_size), "average_filled_price": _s(average),
            "number_of_fills": str(len(self.fills)), "filled_value": _s(self.filled_value),
            "pending_cancel": False, "size_in_quote": False, "total_fees": _s(self.total_fees),
            "size_inclusive_of_fees": False, "order_type": "LIMIT", "product_type": "SPOT",
            "reject_reason": "", "settled": True, "order_placement_source": "RETAIL_ADVANCED",
        }  # fmt: skip


class ApiError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status, self.body, self.headers = status, body, headers or {}


def _not_found(what: str) -> ApiError:
    return ApiError(404, {"error": "NOT_FOUND", "error_details": what, "message": what})


class FakeCoinbase(FakeServer, FaultsAndLog[Fault, Seen]):
    """The fake venue; `async with FakeCoinbase(...) as fake:` serves on `fake.rest_url`."""

    def __init__(
        self,
        *,
        key_name: str = KEY_NAME,
        public_key: Any = None,
        clock: Callable[[], float] = time.time,
        requests_per_s: int = 30,
        retry_after_s: int = 7,
        taker_fee_rate: Decimal = TAKER_FEE_RATE,
        page_size: int = 2,
    ) -> None:
        FakeServer.__init__(self)
        FaultsAndLog.__init__(self)
        self.key_name = key_name
        self.public_key = public_key if public_key is not None else _EC.public_key()
        self.clock, self.skew_s = clock, 0.0
        self.requests_per_s, self.retry_after_s = requests_per_s, retry_after_s
        self.taker_fee_rate, self.page_size = taker_fee_rate, page_size
        self.visibility_lag = 0
        self.ignore_filters = False  # answer list-orders and list-fills as if their filters were unknown
        self.books: dict[str, Book] = {}
        self.set_book("BTC-USD", [("64000", "1.5"), ("63990", "3")], [("64000.5", "0.8"), ("64010", "5")])
        self.set_book("ETH-USD", [("3000", "20")], [("3000.1", "20")])
        self.balances: dict[str, list[Decimal]] = {  # asset: [available, hold]
            "USD": [D("100000"), D("250")], "BTC": [D("2"), ZERO], "ETH": [D("10"), ZERO],
            "USDC": [D("5"), ZERO], "SOL": [ZERO, ZERO],
        }  # fmt: skip
        self.orders: list[Order] = []
        self.executions: Counter[str] = Counter()
        self.replays: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.auth_failures: list[str] = []
        self.violations: list[str] = []
        self.tokens: list[str] = []
        self.pending: list[tuple[dict[str, Any], int]] = []  # (order body, JWT exp) of accept_late
        self.expired_late: list[str] = []
        self._nonces: set[str] = set()
        self._last_claims: dict[str, Any] = {}
        self._window = (-1, 0)
        self._backoff_until = 0.0
        self._trade_id = 5000

    # ----- lifecycle and test controls ---------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v3/brokerage/{path:.*}", self._handle)

    def set_book(self, product: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.books[product] = parse_book(bids, asks)

    def rest_order(self, product: str, side: str, price: str, size: str, client_id: str) -> Order:
        """Put an open limit order on the account as if placed elsewhere (by hand, another system)."""
        order = Order(str(uuid.uuid4()), client_id, product, side, D(size), D(price),
                      int(self.server_s() * 1000), status="OPEN")  # fmt: skip
        self.orders.append(order)
        return order

    def server_s(self) -> float:
        return time.time() + self.skew_s

    def process_late(self) -> None:
        """Execute every `accept_late` order whose JWT is still valid now; drop the others."""
        pending, self.pending = self.pending, []
        for body, exp in pending:
            if self.server_s() < exp:
                self._create(body)
            else:
                self.expired_late.append(str(body.get("client_order_id")))

    # ----- the request pipeline ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.match_info["path"]
        route = _route(path)
        body = await request.read()
        arrived(self.clock)
        now = self.clock()
        self.requests.append(
            Seen(now, method, route, list(request.rel_url.query.items()), body, dict(request.headers))
        )
        fault = self._next_fault(method, route)
        try:
            self._admit(method, route, now, fault)
            claims = None if route == "time" else self._authenticate(request)
            if fault in ("drop", "fail_5xx", "garbage", "unknown_failure", "accept_late"):
                return await self._fail_before(request, fault, body, claims)
            answer = self._dispatch(method, route, path, request, body, fault)
        except ApiError as exc:
            response = (
                web.json_response(exc.body, status=exc.status)
                if not isinstance(exc.body, str)
                else web.Response(status=exc.status, text=exc.body)
            )
            response.headers.update(exc.headers)
            return self._reply(response, now)
        if fault is not None and fault.startswith("accept_then_"):
            return await self._after_accept(request, fault, answer, now)
        return self._reply(web.json_response(answer), now)

    def _reply(self, response: web.Response, now: float) -> web.Response:
        window, used = self._window
        response.headers["x-ratelimit-limit"] = str(self.requests_per_s)
        response.headers["x-ratelimit-remaining"] = str(max(0, self.requests_per_s - used))
        response.headers["x-ratelimit-reset"] = f"{max(0.0, window + 1 - now):.3f}"
        self.statuses[response.status] += 1
        return response

    def _admit(self, method: str, route: str, now: float, fault: Fault | None) -> None:
        if now < self._backoff_until:
            self.violations.append(f"{method} {route} at {now:.3f}, before Retry-After ended at "
                                   f"{self._backoff_until:.3f}")  # fmt: skip
        if fault == "429":
            self._backoff_until = now + self.retry_after_s
            raise ApiError(429, {"error": "rate_limit_exceeded", "message": "Too many requests"},
                           {"Retry-After": str(self.retry_after_s)})  # fmt: skip
        second = math.floor(now)
        used = self._window[1] if self._window[0] == second else 0
        if used + 1 > self.requests_per_s:
            self._backoff_until = second + 1.0
            raise ApiError(429, {"error": "rate_limit_exceeded", "message": "Too many requests"},
                           {"Retry-After": "1"})  # fmt: skip
        self._window = (second, used + 1)

    def _authenticate(self, request: web.Request) -> dict[str, Any]:
        reason = self._jwt_problem(request)
        if reason is not None:
            self.auth_failures.append(reason)
            raise ApiError(401, "Unauthorized\n")
        return self._last_claims

    def _jwt_problem(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token.count(".") != 2:
            return "no bearer JWT"
        self.tokens.append(token)
        head, body, signature = token.split(".")
        try:
            header, claims = orjson.loads(_unb64(head)), orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return "undecodable JWT"
        expected_alg = "EdDSA" if isinstance(self.public_key, ed25519.Ed25519PublicKey) else "ES256"
        if header.get("alg") != expected_alg or header.get("typ") != "JWT":
            return f"alg/typ {header.get('alg')}/{header.get('typ')}"
        if header.get("kid") != self.key_name or claims.get("sub") != self.key_name:
            return "kid/sub is not the key name"
        nonce = header.get("nonce")
        if not isinstance(nonce, str) or not nonce or nonce in self._nonces:
            return "missing or reused nonce"
        if claims.get("iss") != "cdp":
            return "iss is not cdp"
        if claims.get("uri") != f"{request.method} {request.host}{request.path}":
            return f"uri {claims.get('uri')!r} is not {request.method} {request.host}{request.path}"
        nbf, exp, now = claims.get("nbf"), claims.get("exp"), self.server_s()
        if not isinstance(nbf, int) or not isinstance(exp, int) or exp - nbf > 120:
            return "nbf/exp missing or a life over 120 s"
        if nbf > now + 1 or now >= exp:
            return f"outside nbf..exp at {now:.0f}"
        if not self._signature_ok(f"{head}.{body}".encode(), _unb64(signature)):
            return "bad signature"
        self._nonces.add(nonce)
        self._last_claims = claims
        return None

    def _signature_ok(self, message: bytes, raw: bytes) -> bool:
        try:
            if isinstance(self.public_key, ed25519.Ed25519PublicKey):
                self.public_key.verify(raw, message)
            else:
                if len(raw) != 64:
                    return False
                r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
                self.public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    async def _fail_before(
        self, request: web.Request, fault: Fault, body: bytes, claims: dict[str, Any] | None
    ) -> web.StreamResponse:
        now = self.clock()
        if fault == "garbage":
            return self._reply(web.Response(text="<html>maintenance</html>", content_type="text/html"), now)
        if fault == "unknown_failure":
            return self._reply(web.json_response(_failure("UNKNOWN_FAILURE_REASON")), now)
        if fault == "accept_late":
            assert claims is not None
            self.pending.append((orjson.loads(body), int(claims["exp"])))
        if fault in ("fail_5xx", "accept_late"):
            return self._reply(web.Response(status=503, text="<html>503 Service Unavailable</html>"), now)
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError  # the connection is gone: nothing is answered

    async def _after_accept(
        self, request: web.Request, fault: Fault, answer: Any, now: float
    ) -> web.StreamResponse:
        if fault == "accept_then_hang":
            await self._closing.wait()
            raise asyncio.CancelledError
        if fault == "accept_then_5xx":
            return self._reply(web.Response(status=503, text="<html>503 Service Unavailable</html>"), now)
        if fault == "accept_then_unknown":
            return self._reply(web.json_response(_failure("UNKNOWN_FAILURE_REASON")), now)
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError

    # ----- endpoints ---------------------------------------------------------------------------

    def _dispatch(
        self, method: str, route: str, path: str, request: web.Request, body: bytes, fault: Fault | None
    ) -> Any:
        query = request.rel_url.query
        if route == "time":
            ms = int(self.server_s() * 1000)
            return {"iso": iso(ms), "epochSeconds": str(ms // 1000), "epochMillis": str(ms)}
        if route == "products":
            product = PRODUCTS.get(path.removeprefix("products/"))
            if product is None:
                raise _not_found("product not found")
            return product
        if (method, route) == ("POST", "orders"):
            return self._place(orjson.loads(body), fault)
        if (method, route) == ("POST", "orders/batch_cancel"):
            return self._cancel(orjson.loads(body))
        if route == "orders/historical/batch":
            return self._list_orders(query.getall("product_ids", []), query.getall("order_status", []),
                                     query.get("start_date"), query.get("cursor"))  # fmt: skip
        if route == "orders/historical/fills":
            wanted = set(query.getall("order_ids", []))
            fills = [f for o in self.orders if o.order_id in wanted or self.ignore_filters for f in o.fills]
            return self._page(fills, "fills", query.get("cursor"))
        if route == "orders/historical/order":
            order = self._visible(path.removeprefix("orders/historical/"))
            if order is None:
                raise _not_found("order with this orderID was not found")
            return {"order": order.as_json()}
        if route == "accounts":
            accounts = [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, a)), "name": f"{a} Wallet", "currency": a,
                         "available_balance": {"value": _s(v[0]), "currency": a}, "default": True,
                         "active": True, "type": "ACCOUNT_TYPE_CRYPTO", "ready": True,
                         "hold": {"value": _s(v[1]), "currency": a}}
                        for a, v in self.balances.items()]  # fmt: skip
            return self._page(accounts, "accounts", query.get("cursor"))
        if route == "transaction_summary":
            return {"total_volume": 1000, "total_fees": 25, "fee_tier": {
                "pricing_tier": "Advanced 1", "usd_from": "0", "usd_to": "10000",
                "taker_fee_rate": _s(self.taker_fee_rate), "maker_fee_rate": "0.004"}}  # fmt: skip
        raise _not_found("unknown route")

    def _page(self, items: list[Any], key: str, cursor: str | None) -> dict[str, Any]:
        start = int(cursor or 0)
        chunk, end = items[start : start + self.page_size], start + self.page_size
        more = end < len(items)
        return {key: chunk, "has_next": more, "cursor": str(end) if more else "", "size": len(chunk)}

    def _visible(self, order_id: str) -> Order | None:
        order = next((o for o in self.orders if o.order_id == order_id), None)
        if order is not None and order.hidden_for > 0:
            order.hidden_for -= 1
            return None
        return order

    def _list_orders(
        self, products: list[str], statuses: list[str], start: str | None, cursor: str | None
    ) -> dict[str, Any]:
        since = parse_iso_ms(start) if start else 0
        found = []
        for order in sorted(self.orders, key=lambda o: o.created_ms, reverse=True):
            if self.ignore_filters:
                pass
            elif (products and order.product_id not in products) or (
                statuses and order.status not in statuses
            ):
                continue
            if order.created_ms < since or self._visible(order.order_id) is None:
                continue
            found.append(order.as_json())
        return self._page(found, "orders", cursor)

    def _place(self, body: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        client_id = body.get("client_order_id")
        if not isinstance(client_id, str) or not client_id:
            raise ApiError(400, {"error": "INVALID_ARGUMENT", "error_details": "client_order_id is required",
                                 "message": "client_order_id is required"})  # fmt: skip
        existing = next((o for o in self.orders if o.client_order_id == client_id), None)
        if existing is not None:  # documented: nothing is created, the order with that id is returned
            self.replays[client_id] += 1
            return _success(existing)
        return self._create(body, resting=fault == "rest_open")

    def _create(self, body: dict[str, Any], *, resting: bool = False) -> dict[str, Any]:
        product = PRODUCTS.get(str(body.get("product_id")))
        if product is None:
            return _failure("INVALID_PRODUCT_ID")
        config = (body.get("order_configuration") or {}).get("sor_limit_ioc")
        if not isinstance(config, dict) or body.get("side") not in ("BUY", "SELL"):
            return _failure("UNSUPPORTED_ORDER_CONFIGURATION")
        size, price = D(config["base_size"]), D(config["limit_price"])
        if size < D(product["base_min_size"]) or size % D(product["base_increment"]):
            return _failure("INVALID_SIZE_PRECISION")
        if price <= 0 or price % D(product["price_increment"]):
            return _failure("INVALID_PRICE_PRECISION")
        if size * price < D(product["quote_min_size"]):
            return _failure("PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL")
        base, quote = product["base_currency_id"], product["quote_currency_id"]
        needed = size * price * (1 + self.taker_fee_rate) if body["side"] == "BUY" else size
        if self.balances[quote if body["side"] == "BUY" else base][0] < needed:
            return _failure("INSUFFICIENT_FUND")
        order = Order(str(uuid.uuid4()), str(body["client_order_id"]), product["product_id"], body["side"],
                      size, price, int(self.server_s() * 1000), hidden_for=self.visibility_lag)  # fmt: skip
        if resting:
            order.status = "OPEN"
        else:
            self._match(order, base, quote)
        self.orders.append(order)
        self.executions[order.client_order_id] += 1
        return _success(order)

    def _match(self, order: Order, base: str, quote: str) -> None:
        bids, asks = self.books[order.product_id]
        buy = order.side == "BUY"
        for level_price, level_qty in asks if buy else bids:
            remaining = order.base_size - order.filled_size
            if remaining <= 0 or (
                level_price > order.limit_price if buy else level_price < order.limit_price
            ):
                break
            take = min(remaining, level_qty)
            value = take * level_price
            fee = value * self.taker_fee_rate
            self._trade_id += 1
            order.fills.append({
                "entry_id": f"e-{self._trade_id}", "trade_id": f"t-{self._trade_id}",
                "order_id": order.order_id,
                "trade_time": iso(order.created_ms), "trade_type": "FILL", "price": _s(level_price),
                "size": _s(take), "commission": _s(fee), "product_id": order.product_id,
                "sequence_timestamp": iso(order.created_ms), "liquidity_indicator": "TAKER",
                "size_in_quote": False, "user_id": "fake-user", "side": order.side,
            })  # fmt: skip
            order.filled_size += take
            order.filled_value += value
            order.total_fees += fee
            sign = 1 if buy else -1
            self.balances[base][0] += sign * take
            self.balances[quote][0] -= sign * value + fee
        order.status = "FILLED" if order.filled_size == order.base_size else "EXPIRED"

    def _cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        results = []
        for order_id in body.get("order_ids") or []:
            order = next((o for o in self.orders if o.order_id == order_id), None)
            if order is None or order.status != "OPEN":
                results.append(
                    {"success": False, "failure_reason": "UNKNOWN_CANCEL_ORDER", "order_id": order_id}
                )
                continue
            order.status = "CANCELLED"
            results.append({"success": True, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON",
                            "order_id": order_id})  # fmt: skip
        return {"results": results}


def _route(path: str) -> str:
    if path.startswith("products/"):
        return "products"
    if path.startswith("orders/historical/") and path not in (
        "orders/historical/batch",
        "orders/historical/fills",
    ):
        return "orders/historical/order"
    return path


def _success(order: Order) -> dict[str, Any]:
    return {
        "success": True,
        "success_response": {"order_id": order.order_id, "product_id": order.product_id, "side": order.side,
                             "client_order_id": order.client_order_id},
        "order_configuration": {"sor_limit_ioc": {"base_size": _s(order.base_size),
                                                  "limit_price": _s(order.limit_price)}},
    }  # fmt: skip


def _failure(reason: str) -> dict[str, Any]:
    return {
        "success": False,
        "failure_reason": "UNKNOWN_FAILURE_REASON",
        "error_response": {"error": reason, "message": reason.replace("_", " ").lower(),
                           "error_details": "", "new_order_failure_reason": reason},
    }  # fmt: skip
