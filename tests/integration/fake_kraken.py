"""A fake Kraken spot REST server (aiohttp on 127.0.0.1) that enforces Kraken's documented rules.

`KrakenTrading` talks to it through its base URL. It serves `/0/public/Time`,
`/0/public/AssetPairs` and the private `AddOrder`, `CancelOrder`,
`OpenOrders`, `ClosedOrders`, `QueryOrders`, `QueryTrades`, `Balance`,
`BalanceEx` and `TradeVolume`, every answer in Kraken's envelope
(`{"error": [...], "result": ...}`, HTTP 200), and enforces:

- authentication (docs' spot-rest-auth): `API-Key` must match (`EAPI:Invalid key`),
  `API-Sign` must be base64(HMAC-SHA512(b64decode(secret), path + SHA256(nonce + body)))
  (`EAPI:Invalid signature`), and the nonce must exceed the last accepted one
  (`EAPI:Invalid nonce`) — written here independently of the client's code;
- `deadline` (RFC 3339, at most 60 s ahead, else `EGeneral:Invalid arguments:deadline`):
  an order the engine reaches after it is refused (`EService:Deadline elapsed`);
- `cl_ord_id` unique among OPEN orders only (`EOrder:Duplicate order`: Kraken
  documents no string for this, so the fake picks one), so a closed IOC order's
  id is accepted again and executes again;
- the pair's rules (`ordermin`, `costmin`, price and volume decimals), funds;
- the REST call counter (+1, +2 for history calls, decaying at the tier's rate;
  over it `EAPI:Rate limit exceeded`) and the per-pair trading counter (+1 an
  order, +8 a cancel within 5 s; over it `EOrder:Rate limit exceeded`); every
  request that arrives over a limit, while throttled or during a lockout is
  recorded in `violations`.

IOC limit orders fill against a configurable book (`set_book`) with a taker fee
of `fee_percent`, charged in the quote currency with `fciq` (base with `fcib`,
else Kraken's default: base when selling, quote when buying). `executions`
counts orders executed per client id: "never executed twice" is
`max(fake.executions.values()) == 1`.

Faults are injected per private method and consumed in order (`inject`);
`visible_after_s` delays when a new order shows on the query endpoints.
Counters, lockouts and visibility run on `clock` (inject a `VirtualClock`);
deadlines and `Time` use the wall clock shifted by `skew_ms`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from fake_venue import Book, FakeServer, arrived, parse_book

Fault = Literal[
    "accept_then_hang",  # execute the order, then never answer (the client times out)
    "accept_then_5xx",  # execute, then answer HTTP 502 with an HTML body (Cloudflare)
    "accept_then_drop",  # execute, then close the connection without an answer
    "accept_then_unavailable",  # execute, then answer EService:Unavailable
    "accept_then_busy",  # execute, then answer EService:Busy
    "accept_then_internal",  # execute, then answer EGeneral:Internal error
    "accept_late",  # answer EService:Unavailable at once, execute `late_s` later if the deadline allows
    "unavailable",  # answer EService:Unavailable, execute nothing
    "throttled",  # answer EService: Throttled: [now + throttled_s]
    "rate_limit",  # answer EAPI:Rate limit exceeded
    "order_rate_limit",  # answer EOrder:Rate limit exceeded
    "lockout",  # lock the key out for `lockout_s` and answer EGeneral:Temporary lockout
    "garbage",  # answer 200 with an HTML body, execute nothing
]

API_KEY = "fake-kraken-key-0123456789"
API_SECRET = base64.b64encode(b"fake-kraken-secret-" + bytes(range(45))).decode()
HISTORY_CALLS = frozenset({"ClosedOrders", "QueryTrades", "TradesHistory", "Ledgers", "QueryLedgers"})
_D = Decimal
_ZERO = Decimal(0)
_FEE_PERCENT = Decimal("0.26")

PAIRS: dict[str, dict[str, Any]] = {
    "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD", "aclass_base": "currency", "base": "XXBT",
                 "aclass_quote": "currency", "quote": "ZUSD", "lot": "unit", "cost_decimals": 5,
                 "pair_decimals": 1, "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [2, 3],
                 "leverage_sell": [2, 3], "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25]],
                 "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40, "ordermin": "0.0001",
                 "costmin": "0.5", "tick_size": "0.1", "status": "online"},
    "XBTUSDT": {"altname": "XBTUSDT", "wsname": "XBT/USDT", "aclass_base": "currency", "base": "XXBT",
                "aclass_quote": "currency", "quote": "USDT", "lot": "unit", "cost_decimals": 6,
                "pair_decimals": 1, "lot_decimals": 8, "lot_multiplier": 1, "fees": [[0, 0.4]],
                "fees_maker": [[0, 0.25]], "fee_volume_currency": "ZUSD", "ordermin": "0.0001",
                "costmin": "0.5", "tick_size": "0.1", "status": "online"},
    "XETHZUSD": {"altname": "ETHUSD", "wsname": "ETH/USD", "aclass_base": "currency", "base": "XETH",
                 "aclass_quote": "currency", "quote": "ZUSD", "lot": "unit", "cost_decimals": 5,
                 "pair_decimals": 2, "lot_decimals": 8, "lot_multiplier": 1, "fees": [[0, 0.4]],
                 "fees_maker": [[0, 0.25]], "fee_volume_currency": "ZUSD", "ordermin": "0.002",
                 "costmin": "0.5", "tick_size": "0.01", "status": "cancel_only"},
}  # fmt: skip
BY_ALTNAME = {info["altname"]: key for key, info in PAIRS.items()}


def kraken_signature(secret_b64: str, path: str, body: str, nonce: str) -> str:
    """Return the API-Sign Kraken expects (written apart from the client's `sign`)."""
    message = path.encode() + hashlib.sha256(nonce.encode() + body.encode()).digest()
    return base64.b64encode(hmac.digest(base64.b64decode(secret_b64), message, "sha512")).decode()


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    time: float
    method: str
    params: dict[str, str]
    body: str
    headers: dict[str, str]


@dataclass
class Order:
    """One order the fake's engine accepted."""

    txid: str
    cl_ord_id: str
    pair: str  # the AssetPairs key
    side: str
    price: Decimal
    volume: Decimal
    oflags: str
    time_in_force: str
    opened: float  # wall seconds
    created_at: float  # fake clock
    status: str = "open"
    vol_exec: Decimal = _ZERO
    cost: Decimal = _ZERO
    fee: Decimal = _ZERO
    trades: list[str] = field(default_factory=list)
    closed: float | None = None

    def info(self, *, with_trades: bool) -> dict[str, Any]:
        pair = PAIRS[self.pair]
        data: dict[str, Any] = {
            "refid": None, "userref": 0, "cl_ord_id": self.cl_ord_id, "status": self.status,
            "opentm": self.opened, "starttm": 0, "expiretm": 0,
            "descr": {"pair": pair["altname"], "type": self.side, "ordertype": "limit",
                      "price": _fmt(self.price, pair["pair_decimals"]), "price2": "0", "leverage": "none",
                      "order": f"{self.side} {self.volume} {pair['altname']} @ limit {self.price}",
                      "close": ""},
            "vol": _fmt(self.volume, 8), "vol_exec": _fmt(self.vol_exec, 8),
            "cost": _fmt(self.cost, pair["cost_decimals"]), "fee": _fmt(self.fee, pair["cost_decimals"]),
            "price": _fmt(self.cost / self.vol_exec if self.vol_exec else _D(0), pair["pair_decimals"]),
            "stopprice": "0.00000", "limitprice": "0.00000", "misc": "", "oflags": self.oflags,
        }  # fmt: skip
        if self.closed is not None:
            data |= {"closetm": self.closed, "reason": None if self.status == "closed" else "User requested"}
        if with_trades and self.trades:
            data["trades"] = list(self.trades)
        return data


def _fmt(value: Decimal, places: int) -> str:
    return format(value.quantize(_D(1).scaleb(-places)), "f")


class KrakenError(Exception):
    def __init__(self, *errors: str) -> None:
        super().__init__(errors[0])
        self.errors = list(errors)


class FakeKraken(FakeServer):
    """The fake venue; `async with FakeKraken(...) as fake:` serves on `fake.rest_url`."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        clock: Callable[[], float] = time.monotonic,
        skew_ms: int = 0,
        rest_capacity: float = 20,
        rest_decay_per_s: float = 1.0,
        order_capacity: float = 180,
        order_decay_per_s: float = 3.75,
        fee_percent: Decimal = _FEE_PERCENT,
        late_s: float = 0.3,
        throttled_s: float = 5.0,
        lockout_s: float = 900.0,
        visible_after_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.api_key, self.api_secret = api_key, api_secret
        self.clock, self.skew_ms = clock, skew_ms
        self.rest_capacity, self.rest_decay_per_s = rest_capacity, rest_decay_per_s
        self.order_capacity, self.order_decay_per_s = order_capacity, order_decay_per_s
        self.fee_percent, self.late_s, self.throttled_s = fee_percent, late_s, throttled_s
        self.lockout_s, self.visible_after_s = lockout_s, visible_after_s
        self.books: dict[str, Book] = {}
        self.set_book(
            "XXBTZUSD", [("64000.0", "1.5"), ("63990.0", "3")], [("64000.5", "0.8"), ("64010.0", "5")]
        )
        self.set_book("XBTUSDT", [("64001.0", "2")], [("64002.0", "2")])
        self.set_book("XETHZUSD", [("3000.00", "20")], [("3000.10", "20")])
        self.balances: dict[str, Decimal] = {"ZUSD": _D("100000"), "XXBT": _D("1.5"), "USDT": _D("5000"),
                                             "XETH": _D("0"), "XBT.F": _D("0.25")}  # fmt: skip
        self.faults: dict[str, deque[Fault]] = {}
        self.orders: list[Order] = []
        self.trades: dict[str, dict[str, Any]] = {}
        self.executions: Counter[str] = Counter()
        self.requests: list[Seen] = []
        self.violations: list[str] = []
        self.nonces: list[int] = []
        self.signatures: list[str] = []
        self.list_trades = True  # False: order queries list no trade ids yet (Kraken's trade lag)
        self.late_decided = asyncio.Event()
        self.order_executed = asyncio.Event()
        self._last_nonce = 0
        self._rest = (0.0, self.clock())  # (counter level, updated at)
        self._order_counters: dict[str, tuple[float, float]] = {}
        self._throttled_until = self._locked_until = 0.0
        self._ids = itertools.count(1)

    # ----- lifecycle and test controls ---------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/0/public/{method}", self._public)
        app.router.add_post("/0/private/{method}", self._private)

    def inject(self, method: str, *faults: Fault) -> None:
        """Make the next requests to private `method` (e.g. "AddOrder") fail as `faults`, in order."""
        self.faults.setdefault(method, deque()).extend(faults)

    def set_book(self, pair: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.books[pair] = parse_book(bids, asks)

    def rest_order(self, pair: str, side: str, price: str, volume: str, cl_ord_id: str) -> Order:
        """Put an open GTC order on the book as if placed earlier (a leftover the client finds)."""
        order = Order(self._txid("O"), cl_ord_id, pair, side, _D(price), _D(volume), "fciq", "GTC",
                      self.server_ms() / 1000, self.clock())  # fmt: skip
        self.orders.append(order)
        return order

    def server_ms(self) -> int:
        return int(time.time() * 1000) + self.skew_ms

    def requests_to(self, method: str) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == method]

    # ----- the request pipeline ----------------------------------------------------------------

    async def _public(self, request: web.Request) -> web.StreamResponse:
        arrived(self.clock)
        method = request.match_info["method"]
        self.requests.append(Seen(self.clock(), method, dict(request.query), "", dict(request.headers)))
        if method == "Time":
            now = self.server_ms() // 1000
            stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%a, %d %b %y %H:%M:%S +0000")
            return self._answer({"unixtime": now, "rfc1123": stamp})
        if method == "AssetPairs":
            return self._answer(PAIRS)
        return self._answer(None, ["EGeneral:Unknown method"])

    async def _private(self, request: web.Request) -> web.StreamResponse:
        arrived(self.clock)
        method, body = request.match_info["method"], await request.text()
        params = dict(parse_qsl(body, keep_blank_values=True))
        now = self.clock()
        self.requests.append(Seen(now, method, params, body, dict(request.headers)))
        fault = self.faults[method].popleft() if self.faults.get(method) else None
        try:
            self._admit(method, now, fault)
            self._authenticate(request, method, body, params)
            self._count(method, params, now)
            if fault in ("unavailable", "garbage", "accept_late"):
                return self._pre_fault(fault, params)
            result = self._dispatch(method, params)
        except KrakenError as exc:
            return self._answer(None, exc.errors)
        if fault is not None and fault.startswith("accept_then_"):
            return await self._after_accept(request, fault)
        return self._answer(result)

    @staticmethod
    def _answer(result: Any, errors: list[str] | None = None) -> web.Response:
        envelope: dict[str, Any] = {"error": errors or []}
        if not errors:
            envelope["result"] = result
        return web.Response(body=orjson.dumps(envelope), content_type="application/json")

    def _admit(self, method: str, now: float, fault: Fault | None) -> None:
        if now < self._locked_until:
            self.violations.append(f"{method} at {now:.3f} during a lockout until {self._locked_until:.3f}")
            raise KrakenError("EGeneral:Temporary lockout")
        if now < self._throttled_until:
            self.violations.append(f"{method} at {now:.3f} while throttled until {self._throttled_until:.3f}")
            raise KrakenError(f"EService: Throttled: {int(self.server_ms() / 1000 + self.throttled_s)}")
        if fault == "lockout":
            self._locked_until = now + self.lockout_s
            raise KrakenError("EGeneral:Temporary lockout")
        if fault == "throttled":
            self._throttled_until = now + self.throttled_s
            raise KrakenError(f"EService: Throttled: {int(self.server_ms() / 1000 + self.throttled_s)}")
        if fault == "rate_limit":
            self._rest = (self.rest_capacity, now)
            raise KrakenError("EAPI:Rate limit exceeded")
        if fault == "order_rate_limit":
            raise KrakenError("EOrder:Rate limit exceeded")

    def _authenticate(self, request: web.Request, method: str, body: str, params: dict[str, str]) -> None:
        if request.headers.get("API-Key") != self.api_key:
            raise KrakenError("EAPI:Invalid key")
        nonce = params.get("nonce", "")
        signature = request.headers.get("API-Sign", "")
        self.signatures.append(signature)
        expected = kraken_signature(self.api_secret, f"/0/private/{method}", body, nonce)
        if not nonce.isdigit() or not hmac.compare_digest(expected, signature):
            raise KrakenError("EAPI:Invalid signature")
        if int(nonce) <= self._last_nonce:
            raise KrakenError("EAPI:Invalid nonce")
        self._last_nonce = int(nonce)
        self.nonces.append(int(nonce))

    def _count(self, method: str, params: dict[str, str], now: float) -> None:
        if method in ("AddOrder", "CancelOrder"):
            pair = self._pair_of(params) if method == "AddOrder" else self._cancel_pair(params)
            if pair is None:
                return
            level, updated = self._order_counters.get(pair, (0.0, now))
            level = max(0.0, level - (now - updated) * self.order_decay_per_s)
            cost = 1.0 if method == "AddOrder" else 8.0
            if level + cost > self.order_capacity:
                self.violations.append(f"{method} on {pair} at {now:.3f}: trading counter {level:.2f}")
                raise KrakenError("EOrder:Rate limit exceeded")
            self._order_counters[pair] = (level + cost, now)
            return
        level, updated = self._rest
        level = max(0.0, level - (now - updated) * self.rest_decay_per_s)
        cost = 2.0 if method in HISTORY_CALLS else 1.0
        if level + cost > self.rest_capacity:
            self.violations.append(f"{method} at {now:.3f}: REST counter {level:.2f}")
            self._rest = (level, now)
            raise KrakenError("EAPI:Rate limit exceeded")
        self._rest = (level + cost, now)

    def _pre_fault(self, fault: Fault, params: dict[str, str]) -> web.Response:
        if fault == "garbage":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if fault == "accept_late":
            self._spawn_late(self._accept_late(params))
        return self._answer(None, ["EService:Unavailable"])

    async def _after_accept(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault == "accept_then_hang":
            await self._closing.wait()
            raise asyncio.CancelledError  # shutting down; the client gave up long ago
        if fault == "accept_then_5xx":
            return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
        if fault == "accept_then_drop":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        error = {"accept_then_unavailable": "EService:Unavailable", "accept_then_busy": "EService:Busy",
                 "accept_then_internal": "EGeneral:Internal error"}[fault]  # fmt: skip
        return self._answer(None, [error])

    async def _accept_late(self, params: dict[str, str]) -> None:
        await asyncio.sleep(self.late_s)
        try:
            self._add_order(params)  # the engine checks the deadline when it reaches the order
        except KrakenError:
            pass
        finally:
            self.late_decided.set()

    # ----- endpoints ---------------------------------------------------------------------------

    def _dispatch(self, method: str, params: dict[str, str]) -> Any:
        handlers: dict[str, Callable[[dict[str, str]], Any]] = {
            "AddOrder": self._add_order, "CancelOrder": self._cancel, "OpenOrders": self._open_orders,
            "ClosedOrders": self._closed_orders, "QueryOrders": self._query_orders,
            "QueryTrades": self._query_trades, "BalanceEx": self._balance_ex, "Balance": self._balance,
            "TradeVolume": self._trade_volume,
        }  # fmt: skip
        handler = handlers.get(method)
        if handler is None:
            raise KrakenError("EGeneral:Unknown method")
        return handler(params)

    @staticmethod
    def _pair_of(params: dict[str, str]) -> str | None:
        pair = params.get("pair", "")
        return pair if pair in PAIRS else BY_ALTNAME.get(pair)

    def _cancel_pair(self, params: dict[str, str]) -> str | None:
        order = self._open_by(params)
        return None if order is None else order.pair

    def _visible(self, order: Order) -> bool:
        return self.clock() >= order.created_at + self.visible_after_s

    def _add_order(self, params: dict[str, str]) -> dict[str, Any]:
        pair, side, price, volume = self._validate(params)
        cl_ord_id = params.get("cl_ord_id", "")
        if cl_ord_id and any(o.cl_ord_id == cl_ord_id and o.status == "open" for o in self.orders):
            raise KrakenError("EOrder:Duplicate order")
        order = Order(
            self._txid("O"), cl_ord_id, pair, side, price, volume, params.get("oflags", ""),
            params.get("timeinforce", "GTC"), self.server_ms() / 1000, self.clock(),
        )  # fmt: skip
        self._match(order)
        self.orders.append(order)
        self.executions[cl_ord_id] += 1
        self.order_executed.set()
        return {
            "txid": [order.txid],
            "descr": {"order": f"{side} {volume} {PAIRS[pair]['altname']} @ limit {price}"},
        }

    def _validate(self, params: dict[str, str]) -> tuple[str, str, Decimal, Decimal]:
        pair = self._pair_of(params)
        if pair is None:
            raise KrakenError("EQuery:Unknown asset pair")
        info = PAIRS[pair]
        side, ordertype = params.get("type"), params.get("ordertype")
        if side not in ("buy", "sell") or ordertype != "limit":
            raise KrakenError("EGeneral:Invalid arguments")
        if "cl_ord_id" in params and "userref" in params:
            raise KrakenError("EGeneral:Invalid arguments:cl_ord_id and userref are mutually exclusive")
        if info["status"] not in ("online", "limit_only"):
            raise KrakenError("EOrder:Trading halted")
        self._check_deadline(params.get("deadline"))
        price, volume = _D(params.get("price", "0")), _D(params.get("volume", "0"))
        if -price.as_tuple().exponent > info["pair_decimals"]:  # type: ignore[operator]
            raise KrakenError(f"EOrder:Invalid price:{info['altname']} price can only be specified up to "
                              f"{info['pair_decimals']} decimals.")  # fmt: skip
        if -volume.as_tuple().exponent > info["lot_decimals"]:  # type: ignore[operator]
            raise KrakenError("EGeneral:Invalid arguments:volume")
        if volume < _D(info["ordermin"]):
            raise KrakenError("EOrder:Order minimum not met")
        if price * volume < _D(info["costmin"]):
            raise KrakenError("EOrder:Cost minimum not met")
        return pair, side, price, volume

    def _check_deadline(self, deadline: str | None) -> None:
        if deadline is None:
            return
        try:
            at_ms = datetime.fromisoformat(deadline).timestamp() * 1000
        except ValueError:
            raise KrakenError("EGeneral:Invalid arguments:deadline") from None
        now_ms = self.server_ms()
        if at_ms > now_ms + 60_000:
            raise KrakenError("EGeneral:Invalid arguments:deadline")
        if at_ms < now_ms:
            raise KrakenError("EService:Deadline elapsed")

    def _match(self, order: Order) -> None:
        info = PAIRS[order.pair]
        base, quote = info["base"], info["quote"]
        bids, asks = self.books[order.pair]
        buy = order.side == "buy"
        in_quote = "fciq" in order.oflags or ("fcib" not in order.oflags and buy)
        for level_price, level_qty in asks if buy else bids:
            remaining = order.volume - order.vol_exec
            if remaining <= 0 or (level_price > order.price if buy else level_price < order.price):
                break
            take = min(remaining, level_qty)
            cost = take * level_price
            fee = cost * self.fee_percent / 100 if in_quote else take * self.fee_percent / 100
            fee = fee.quantize(_D(1).scaleb(-(info["cost_decimals"] if in_quote else 8)))
            self._settle_funds(order, base, quote, take, cost, fee, in_quote)
            trade_id = self._txid("T")
            self.trades[trade_id] = {
                "ordertxid": order.txid, "postxid": self._txid("P"), "pair": order.pair, "time": order.opened,
                "type": order.side, "ordertype": "limit", "price": _fmt(level_price, info["pair_decimals"]),
                "cost": _fmt(cost, info["cost_decimals"]), "fee": str(fee), "vol": _fmt(take, 8),
                "margin": "0.00000", "leverage": "0", "misc": "", "trade_id": next(self._ids), "maker": False,
            }  # fmt: skip
            order.trades.append(trade_id)
            order.vol_exec += take
            order.cost += cost
            order.fee += fee
        if order.vol_exec == order.volume:
            order.status, order.closed = "closed", order.opened
        elif order.time_in_force == "IOC":
            order.status, order.closed = "canceled", order.opened

    def _settle_funds(
        self, order: Order, base: str, quote: str, take: Decimal, cost: Decimal, fee: Decimal, in_quote: bool
    ) -> None:
        sign = 1 if order.side == "buy" else -1
        quote_change = -sign * cost - (fee if in_quote else 0)
        base_change = sign * take - (0 if in_quote else fee)
        if (
            self.balances.get(quote, _D(0)) + quote_change < 0
            or self.balances.get(base, _D(0)) + base_change < 0
        ):
            if not order.vol_exec:
                raise KrakenError("EOrder:Insufficient funds")
            order.volume = order.vol_exec  # the rest cannot be paid for: the order ends here
            return
        self.balances[quote] = self.balances.get(quote, _D(0)) + quote_change
        self.balances[base] = self.balances.get(base, _D(0)) + base_change

    def _txid(self, prefix: str) -> str:
        n = next(self._ids)
        return f"{prefix}{n:05d}-ABCDE-{n:06d}"

    def _open_by(self, params: dict[str, str]) -> Order | None:
        for order in self.orders:
            if order.status == "open" and (
                order.txid == params.get("txid")
                or (order.cl_ord_id and order.cl_ord_id == params.get("cl_ord_id"))
            ):
                return order
        return None

    def _cancel(self, params: dict[str, str]) -> dict[str, Any]:
        order = self._open_by(params)
        if order is None:
            raise KrakenError("EOrder:Unknown order")
        order.status, order.closed = "canceled", self.server_ms() / 1000
        return {"count": 1, "pending": False}

    def _listed(self, params: dict[str, str], statuses: tuple[str, ...]) -> dict[str, Any]:
        wanted = params.get("cl_ord_id")
        trades = params.get("trades") == "true" and self.list_trades
        return {
            o.txid: o.info(with_trades=trades)
            for o in reversed(self.orders)
            if o.status in statuses and self._visible(o) and (wanted is None or o.cl_ord_id == wanted)
        }

    def _open_orders(self, params: dict[str, str]) -> dict[str, Any]:
        return {"open": self._listed(params, ("pending", "open"))}

    def _closed_orders(self, params: dict[str, str]) -> dict[str, Any]:
        closed = self._listed(params, ("closed", "canceled", "expired"))
        return {"closed": dict(itertools.islice(closed.items(), 50)), "count": len(closed)}

    def _query_orders(self, params: dict[str, str]) -> dict[str, Any]:
        wanted = params.get("txid", "").split(",")
        trades = params.get("trades") == "true" and self.list_trades
        found = {
            o.txid: o.info(with_trades=trades) for o in self.orders if o.txid in wanted and self._visible(o)
        }
        if not found:
            raise KrakenError("EOrder:Invalid order")
        return found

    def _query_trades(self, params: dict[str, str]) -> dict[str, Any]:
        wanted = params.get("txid", "").split(",")
        if len(wanted) > 20:
            raise KrakenError("EGeneral:Invalid arguments:txid")
        return {tid: self.trades[tid] for tid in wanted if tid in self.trades}

    def _held(self) -> dict[str, Decimal]:
        held: dict[str, Decimal] = {}
        for order in self.orders:
            if order.status == "open":
                info = PAIRS[order.pair]
                left = order.volume - order.vol_exec
                asset = info["quote"] if order.side == "buy" else info["base"]
                held[asset] = held.get(asset, _D(0)) + (left * order.price if order.side == "buy" else left)
        return held

    def _balance_ex(self, _params: dict[str, str]) -> dict[str, Any]:
        held = self._held()
        return {asset: {"balance": _fmt(amount, 8), "hold_trade": _fmt(held.get(asset, _D(0)), 8)}
                for asset, amount in self.balances.items()}  # fmt: skip

    def _balance(self, _params: dict[str, str]) -> dict[str, Any]:
        return {asset: _fmt(amount, 8) for asset, amount in self.balances.items()}

    def _trade_volume(self, params: dict[str, str]) -> dict[str, Any]:
        fees = {}
        for name in params.get("pair", "").split(","):
            pair = self._pair_of({"pair": name})
            if pair is not None:
                fees[pair] = {"fee": _fmt(self.fee_percent, 4), "minfee": "0.1000", "maxfee": "0.2600",
                              "nextfee": None, "nextvolume": None, "tiervolume": "0.0000"}  # fmt: skip
        return {"currency": "ZUSD", "volume": "0.0000", "fees": fees, "fees_maker": {}}
