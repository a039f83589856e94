"""Good and bad order requests: the validator's table, reused by the JSON Schema agreement test.

Data only, no project imports. Each case is `(name, raw, verdict)`:

- `raw` is a dict (encode it with orjson) or the exact message bytes;
- `verdict` is "ok" or the reject_code the validator must raise;
- `name` is "<field>: <scenario>", and the rejection message must name <field>
  (except for "message: ..." cases, which are about the bytes as a whole).

Verdicts hold for `RequestRules(venues=VENUES, symbols=SYMBOLS)` with default
limits (max_quantity 1e9, decimals of at most 40 characters) at `now_ns=NOW_NS`.
`unknown_symbol` and `unknown_venue` depend on VENUES and SYMBOLS, and
`deadline_exceeded` on NOW_NS, so a schema can judge them only if it is built
from those.

`CASES` is every case a JSON document (or its absence) decides. `BYTE_LEVEL_CASES`
decode to documents of a valid shape yet must be rejected for their bytes
(duplicate keys, over 64 KiB, nesting a parser cannot follow): a JSON Schema
cannot see those, so the agreement test should skip them.

One more difference a schema must bridge: JSON Schema counts 1.0 as an
integer, but the validator requires `v` and `deadline_ns` to be written as
integers ("v: 1.0" and "deadline_ns: 1.7324e+18" below are invalid_request).
"""

from __future__ import annotations

from typing import Final

NOW_NS: Final = 1_732_400_000_000_000_000
VENUES: Final = frozenset({"binance", "bybit", "okx", "coinbase", "kraken"})
SYMBOLS: Final = frozenset({"BTC-USDT", "ETH-USDT", "SOL-USDC"})

Raw = dict[str, object] | bytes
Case = tuple[str, Raw, str]

_DROP: Final = object()

MARKET_ORDER: Final[dict[str, object]] = {
    "v": 1,
    "request_id": "req-1",
    "user_id": "alice",
    "kind": "order",
    "symbol": "BTC-USDT",
    "side": "buy",
    "quantity": "0.25",
}
LIMIT_ORDER: Final[dict[str, object]] = {
    "v": 1,
    "request_id": "req-2",
    "user_id": "desk.bob@example",
    "kind": "order",
    "symbol": "ETH-USDT",
    "side": "sell",
    "quantity": "1.5",
    "order_type": "limit",
    "limit_price": "64000.5",
    "max_slippage_bps": "20",
}
ARBITRAGE: Final[dict[str, object]] = {
    "v": 1,
    "request_id": "arb:3",
    "user_id": "carol",
    "kind": "arbitrage",
    "symbol": "BTC-USDT",
    "quantity": "0.1",
    "buy_venue": "okx",
    "sell_venue": "binance",
}
ARBITRAGE_WITH_OPPORTUNITY: Final[dict[str, object]] = {
    **ARBITRAGE,
    "request_id": "arb:4",
    "opportunity_id": "opp_9f2c.1",
    "max_slippage_bps": "0",
}
VENUES_ALLOW_LIST: Final[dict[str, object]] = {
    **MARKET_ORDER,
    "request_id": "req-5",
    "order_type": "market",
    "venues": ["binance", "okx"],
}
FUTURE_DEADLINE: Final[dict[str, object]] = {**MARKET_ORDER, "request_id": "req-6", "deadline_ns": NOW_NS + 1}


def _with(base: dict[str, object], **changes: object) -> dict[str, object]:
    merged = {**base, **changes}
    return {name: value for name, value in merged.items() if value is not _DROP}


_REQUIRED_FOR_ORDER = ("v", "request_id", "user_id", "kind", "symbol", "quantity", "side")
_REQUIRED_FOR_ARBITRAGE = (
    "v",
    "request_id",
    "user_id",
    "kind",
    "symbol",
    "quantity",
    "buy_venue",
    "sell_venue",
)
_NOT_A_STRING: Final[tuple[object, ...]] = (1, 0.25, True, None, ["x"], {"x": 1})
_NOT_AN_INTEGER: Final[tuple[object, ...]] = ("1732400001000000000", 1.7324e18, True, None, [1], {})

GOOD: Final[list[Case]] = [
    ("message: market order", MARKET_ORDER, "ok"),
    ("message: limit order", LIMIT_ORDER, "ok"),
    ("message: arbitrage", ARBITRAGE, "ok"),
    ("message: arbitrage with opportunity_id", ARBITRAGE_WITH_OPPORTUNITY, "ok"),
    ("message: venues allow-list", VENUES_ALLOW_LIST, "ok"),
    ("message: deadline in the future", FUTURE_DEADLINE, "ok"),
    ("order_type: market on arbitrage", _with(ARBITRAGE, order_type="market"), "ok"),
    ("request_id: 64 characters", _with(MARKET_ORDER, request_id="r" * 64), "ok"),
    ("request_id: every allowed character", _with(MARKET_ORDER, request_id="aZ09._:-"), "ok"),
    ("user_id: 64 characters", _with(MARKET_ORDER, user_id="u" * 64), "ok"),
    ("quantity: at max_quantity", _with(MARKET_ORDER, quantity="1000000000"), "ok"),
    ("quantity: 40 characters", _with(MARKET_ORDER, quantity="0." + "0" * 37 + "1"), "ok"),
    ("quantity: leading zeros", _with(MARKET_ORDER, quantity="007.50"), "ok"),
    ("limit_price: at 1e12", _with(LIMIT_ORDER, limit_price="1000000000000"), "ok"),
    ("max_slippage_bps: 10000", _with(MARKET_ORDER, max_slippage_bps="10000"), "ok"),
    ("deadline_ns: largest int64", _with(MARKET_ORDER, deadline_ns=2**63 - 1), "ok"),
    ("venues: every enabled venue", _with(MARKET_ORDER, venues=sorted(VENUES)), "ok"),
    ("opportunity_id: 64 characters", _with(ARBITRAGE, opportunity_id="o" * 64), "ok"),
    ("message: fields in any order", dict(reversed(list(LIMIT_ORDER.items()))), "ok"),
]

_VERSION: Final[list[Case]] = [
    ("v: 0", _with(MARKET_ORDER, v=0), "unsupported_version"),
    ("v: 2", _with(MARKET_ORDER, v=2), "unsupported_version"),
    ("v: -1", _with(MARKET_ORDER, v=-1), "unsupported_version"),
    ("v: string 1", _with(MARKET_ORDER, v="1"), "invalid_request"),
    ("v: true", _with(MARKET_ORDER, v=True), "invalid_request"),
    ("v: 1.0", _with(MARKET_ORDER, v=1.0), "invalid_request"),
    ("v: null", _with(MARKET_ORDER, v=None), "invalid_request"),
    ("v: 2 wins over unknown fields", _with(MARKET_ORDER, v=2, colour="red"), "unsupported_version"),
]

_MISSING: Final[list[Case]] = [
    *((f"{name}: missing on order", _with(MARKET_ORDER, **{name: _DROP}), "invalid_request")
      for name in _REQUIRED_FOR_ORDER),
    *((f"{name}: missing on arbitrage", _with(ARBITRAGE, **{name: _DROP}), "invalid_request")
      for name in _REQUIRED_FOR_ARBITRAGE),
    ("limit_price: missing on limit order", _with(LIMIT_ORDER, limit_price=_DROP), "invalid_request"),
]  # fmt: skip

_WRONG_TYPES: Final[list[Case]] = [
    *((f"{name}: {value!r} on order", _with(MARKET_ORDER, **{name: value}), "invalid_request")
      for name in ("request_id", "user_id", "kind", "symbol", "side", "quantity", "order_type",
                   "max_slippage_bps")
      for value in _NOT_A_STRING),
    *((f"limit_price: {value!r}", _with(LIMIT_ORDER, limit_price=value), "invalid_request")
      for value in _NOT_A_STRING),
    *((f"{name}: {value!r} on arbitrage", _with(ARBITRAGE, **{name: value}), "invalid_request")
      for name in ("buy_venue", "sell_venue", "opportunity_id")
      for value in _NOT_A_STRING),
    *((f"deadline_ns: {value!r}", _with(MARKET_ORDER, deadline_ns=value), "invalid_request")
      for value in _NOT_AN_INTEGER),
    *((f"venues: {value!r}", _with(MARKET_ORDER, venues=value), "invalid_request")
      for value in ("binance", 1, True, None, {"binance": True})),
    ("venues: a number inside", _with(MARKET_ORDER, venues=["binance", 7]), "invalid_request"),
    ("venues: null inside", _with(MARKET_ORDER, venues=[None]), "invalid_request"),
    ("venues: a list inside", _with(MARKET_ORDER, venues=[["binance"]]), "invalid_request"),
]  # fmt: skip

_BAD_DECIMALS: Final[tuple[str, ...]] = (
    "NaN", "nan", "Infinity", "-Infinity", "inf", "sNaN", "-0", "0", "0.000", "-1", "-0.25", "+1",
    "1e3", "1E3", "1e-3", " 1", "1 ", "\t1", "1\n", "0x10", "1_000", "1,5", "1.", ".5", "1..5",
    "", "１", "٣", "1" * 41, "0." + "0" * 38 + "1", "1000000000.000001", "99999999999999999999",
)  # fmt: skip

_VALUES: Final[list[Case]] = [
    *((f"quantity: {value!r}", _with(MARKET_ORDER, quantity=value), "invalid_request")
      for value in _BAD_DECIMALS),
    ("limit_price: 0", _with(LIMIT_ORDER, limit_price="0"), "invalid_request"),
    ("limit_price: negative", _with(LIMIT_ORDER, limit_price="-5"), "invalid_request"),
    ("limit_price: above 1e12", _with(LIMIT_ORDER, limit_price="1000000000000.01"), "invalid_request"),
    ("limit_price: exponent", _with(LIMIT_ORDER, limit_price="6.4e4"), "invalid_request"),
    ("limit_price: NaN", _with(LIMIT_ORDER, limit_price="NaN"), "invalid_request"),
    ("max_slippage_bps: 0", _with(MARKET_ORDER, max_slippage_bps="0"), "ok"),
    ("max_slippage_bps: negative", _with(MARKET_ORDER, max_slippage_bps="-1"), "invalid_request"),
    ("max_slippage_bps: above 10000", _with(MARKET_ORDER, max_slippage_bps="10000.01"), "invalid_request"),
    ("max_slippage_bps: Infinity", _with(MARKET_ORDER, max_slippage_bps="Infinity"), "invalid_request"),
    ("request_id: 65 characters", _with(MARKET_ORDER, request_id="r" * 65), "invalid_request"),
    ("request_id: empty", _with(MARKET_ORDER, request_id=""), "invalid_request"),
    ("request_id: space", _with(MARKET_ORDER, request_id="req 1"), "invalid_request"),
    ("request_id: slash", _with(MARKET_ORDER, request_id="req/1"), "invalid_request"),
    ("request_id: at sign", _with(MARKET_ORDER, request_id="req@1"), "invalid_request"),
    ("request_id: accented letter", _with(MARKET_ORDER, request_id="réq-1"), "invalid_request"),
    ("request_id: trailing newline", _with(MARKET_ORDER, request_id="req-1\n"), "invalid_request"),
    ("request_id: NUL", _with(MARKET_ORDER, request_id="req\x001"), "invalid_request"),
    ("user_id: 65 characters", _with(MARKET_ORDER, user_id="u" * 65), "invalid_request"),
    ("user_id: empty", _with(MARKET_ORDER, user_id=""), "invalid_request"),
    ("user_id: space", _with(MARKET_ORDER, user_id="al ice"), "invalid_request"),
    ("user_id: emoji", _with(MARKET_ORDER, user_id="alice\U0001f600"), "invalid_request"),
    ("opportunity_id: 65 characters", _with(ARBITRAGE, opportunity_id="o" * 65), "invalid_request"),
    ("opportunity_id: empty", _with(ARBITRAGE, opportunity_id=""), "invalid_request"),
    ("opportunity_id: bad character", _with(ARBITRAGE, opportunity_id="opp#1"), "invalid_request"),
    ("kind: upper case", _with(MARKET_ORDER, kind="Order"), "invalid_request"),
    ("kind: other word", _with(MARKET_ORDER, kind="limit"), "invalid_request"),
    ("kind: empty", _with(MARKET_ORDER, kind=""), "invalid_request"),
    ("side: upper case", _with(MARKET_ORDER, side="BUY"), "invalid_request"),
    ("side: other word", _with(MARKET_ORDER, side="hold"), "invalid_request"),
    ("order_type: upper case", _with(MARKET_ORDER, order_type="MARKET"), "invalid_request"),
    ("order_type: stop", _with(MARKET_ORDER, order_type="stop"), "invalid_request"),
    ("symbol: lower case", _with(MARKET_ORDER, symbol="btc-usdt"), "invalid_request"),
    ("symbol: venue form", _with(MARKET_ORDER, symbol="BTCUSDT"), "invalid_request"),
    ("symbol: slash", _with(MARKET_ORDER, symbol="BTC/USDT"), "invalid_request"),
    ("symbol: one-character base", _with(MARKET_ORDER, symbol="B-USDT"), "invalid_request"),
    ("symbol: 21-character base", _with(MARKET_ORDER, symbol="A" * 21 + "-USDT"), "invalid_request"),
    ("symbol: trailing space", _with(MARKET_ORDER, symbol="BTC-USDT "), "invalid_request"),
    ("symbol: three parts", _with(MARKET_ORDER, symbol="BTC-USDT-PERP"), "invalid_request"),
    ("symbol: not enabled", _with(MARKET_ORDER, symbol="DOGE-USDT"), "unknown_symbol"),
    ("symbol: 20-character assets, not enabled", _with(MARKET_ORDER, symbol="A" * 20 + "-" + "B" * 20),
     "unknown_symbol"),
    ("quantity: 0, with a symbol not enabled (form before lookup)",
     _with(MARKET_ORDER, symbol="DOGE-USDT", quantity="0"), "invalid_request"),
    ("venues: empty", _with(MARKET_ORDER, venues=[]), "invalid_request"),
    ("venues: repeated", _with(MARKET_ORDER, venues=["okx", "okx"]), "invalid_request"),
    ("venues: unknown venue", _with(MARKET_ORDER, venues=["binance", "ftx"]), "unknown_venue"),
    ("venues: upper-case id", _with(MARKET_ORDER, venues=["BINANCE"]), "unknown_venue"),
    ("buy_venue: unknown", _with(ARBITRAGE, buy_venue="ftx"), "unknown_venue"),
    ("sell_venue: unknown", _with(ARBITRAGE, sell_venue="mtgox"), "unknown_venue"),
    ("buy_venue: same as sell_venue", _with(ARBITRAGE, buy_venue="binance"), "invalid_request"),
    ("deadline_ns: past", _with(MARKET_ORDER, deadline_ns=NOW_NS - 1), "deadline_exceeded"),
    ("deadline_ns: past, on arbitrage", _with(ARBITRAGE, deadline_ns=1), "deadline_exceeded"),
    ("deadline_ns: now", _with(MARKET_ORDER, deadline_ns=NOW_NS), "deadline_exceeded"),
    ("deadline_ns: 0", _with(MARKET_ORDER, deadline_ns=0), "invalid_request"),
    ("deadline_ns: negative", _with(MARKET_ORDER, deadline_ns=-1), "invalid_request"),
    ("deadline_ns: above int64", _with(MARKET_ORDER, deadline_ns=2**63), "invalid_request"),
]  # fmt: skip

_FIELD_SET: Final[list[Case]] = [
    ("colour: unknown field", _with(MARKET_ORDER, colour="red"), "invalid_request"),
    ("Side: field name in the wrong case", _with(MARKET_ORDER, Side="buy"), "invalid_request"),
    ("side: on arbitrage", _with(ARBITRAGE, side="buy"), "invalid_request"),
    ("limit_price: on arbitrage", _with(ARBITRAGE, limit_price="1"), "invalid_request"),
    ("venues: on arbitrage", _with(ARBITRAGE, venues=["okx"]), "invalid_request"),
    ("order_type: limit on arbitrage", _with(ARBITRAGE, order_type="limit"), "invalid_request"),
    ("buy_venue: on order", _with(MARKET_ORDER, buy_venue="okx"), "invalid_request"),
    ("sell_venue: on order", _with(MARKET_ORDER, sell_venue="okx"), "invalid_request"),
    ("opportunity_id: on order", _with(MARKET_ORDER, opportunity_id="opp-1"), "invalid_request"),
    ("limit_price: on market order", _with(MARKET_ORDER, limit_price="100"), "invalid_request"),
]

_VALID_BYTES: Final = (
    b'{"v":1,"request_id":"req-1","user_id":"alice","kind":"order",'
    b'"symbol":"BTC-USDT","side":"buy","quantity":"0.25"}'
)

_MESSAGE: Final[list[Case]] = [
    ("message: valid bytes", _VALID_BYTES, "ok"),
    ("message: empty", b"", "invalid_request"),
    ("message: whitespace", b"  \n", "invalid_request"),
    ("message: not JSON", b"buy 0.25 BTC-USDT", "invalid_request"),
    ("message: truncated", _VALID_BYTES[:-1], "invalid_request"),
    ("message: trailing comma", _VALID_BYTES[:-1] + b",}", "invalid_request"),
    ("message: trailing data", _VALID_BYTES + b"{}", "invalid_request"),
    ("message: single quotes", _VALID_BYTES.replace(b'"', b"'"), "invalid_request"),
    ("message: NaN literal", _VALID_BYTES[:-1] + b',"max_slippage_bps":NaN}', "invalid_request"),
    ("message: Infinity literal", _VALID_BYTES[:-1] + b',"deadline_ns":Infinity}', "invalid_request"),
    ("message: array", b"[" + _VALID_BYTES + b"]", "invalid_request"),
    ("message: string", b'"order"', "invalid_request"),
    ("message: number", b"1", "invalid_request"),
    ("message: null", b"null", "invalid_request"),
    ("message: invalid UTF-8", b'{"v":1,"user_id":"\xff"}', "invalid_request"),
    ("message: Latin-1", _VALID_BYTES.replace(b"alice", "alïce".encode("latin-1")), "invalid_request"),
    ("message: UTF-16", _VALID_BYTES.decode().encode("utf-16"), "invalid_request"),
    ("message: UTF-8 byte order mark", b"\xef\xbb\xbf" + _VALID_BYTES, "invalid_request"),
    ("request_id: lone surrogate escape", _VALID_BYTES.replace(b"req-1", b"\\ud800"), "invalid_request"),
]

CASES: Final[list[Case]] = [*GOOD, *_VERSION, *_MISSING, *_WRONG_TYPES, *_VALUES, *_FIELD_SET, *_MESSAGE]

_MAX_BYTES: Final = 64 * 1024

BYTE_LEVEL_CASES: Final[list[Case]] = [
    ("message: exactly 64 KiB", _VALID_BYTES.ljust(_MAX_BYTES), "ok"),
    ("message: 64 KiB and one byte", _VALID_BYTES.ljust(_MAX_BYTES + 1), "invalid_request"),
    ("message: one megabyte", _VALID_BYTES + b" " * 1_000_000, "invalid_request"),
    ("request_id: duplicate key", _VALID_BYTES[:-1] + b',"request_id":"req-2"}', "invalid_request"),
    ("quantity: duplicate key", _VALID_BYTES[:-1] + b',"quantity":"-1"}', "invalid_request"),
    ("message: nested 5000 deep", b'{"v":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_request"),
]  # fmt: skip
