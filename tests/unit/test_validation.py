"""Order-request validation: the shared table, exact parses, identities, limits, and fuzzing."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_cases import (
    ARBITRAGE,
    ARBITRAGE_WITH_OPPORTUNITY,
    BYTE_LEVEL_CASES,
    CASES,
    FUTURE_DEADLINE,
    LIMIT_ORDER,
    MARKET_ORDER,
    NOW_NS,
    SYMBOLS,
    VENUES,
    VENUES_ALLOW_LIST,
    Raw,
)

from router.errors import InvalidRequest
from router.validation import (
    ArbitrageRequest,
    OrderRequest,
    Request,
    RequestRules,
    parse_request,
    peek_identity,
)

RULES = RequestRules(venues=VENUES, symbols=SYMBOLS)
REJECT_CODES = {
    "invalid_request",
    "unsupported_version",
    "unknown_symbol",
    "unknown_venue",
    "deadline_exceeded",
}
FIELDS = (
    "v", "request_id", "user_id", "kind", "symbol", "side", "quantity", "order_type", "limit_price",
    "max_slippage_bps", "venues", "buy_venue", "sell_venue", "opportunity_id", "deadline_ns",
)  # fmt: skip
ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
USER_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
MAX_DEADLINE_NS = 2**63 - 1


def encode(raw: Raw) -> bytes:
    return raw if isinstance(raw, bytes) else orjson.dumps(raw)


def parse(raw: Raw, rules: RequestRules = RULES, now_ns: int = NOW_NS) -> Request:
    return parse_request(encode(raw), rules, now_ns=now_ns)


def rejection(raw: Raw, rules: RequestRules = RULES, now_ns: int = NOW_NS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(raw, rules, now_ns)
    return info.value


def assert_sound_rejection(exc: InvalidRequest, raw: bytes) -> None:
    """Check what every rejection owes its reader: a known code, a short clean sentence, a safe identity."""
    assert exc.reject_code in REJECT_CODES
    assert str(exc) == exc.message
    assert 0 < len(exc.message) <= 600
    orjson.dumps({"message": exc.message})  # a result can carry it: valid UTF-8, no lone surrogates
    assert (exc.request_id, exc.user_id, exc.kind) == peek_identity(raw)


def assert_invariants(request: Request) -> None:
    """Check everything an executor may rely on in a request the validator let through."""
    assert ID.fullmatch(request.request_id) and USER_ID.fullmatch(request.user_id)
    assert request.symbol in SYMBOLS
    assert type(request.quantity) is Decimal and 0 < request.quantity <= RULES.max_quantity
    slippage = request.max_slippage_bps
    assert slippage is None or (type(slippage) is Decimal and 0 <= slippage <= 10_000)
    assert request.deadline_ns is None or NOW_NS < request.deadline_ns <= MAX_DEADLINE_NS
    if isinstance(request, OrderRequest):
        assert request.kind == "order" and request.side in ("buy", "sell")
        assert (request.order_type == "limit") == (request.limit_price is not None)
        assert request.limit_price is None or 0 < request.limit_price <= Decimal("1e12")
        venues = request.venues
        assert venues is None or (venues and len(set(venues)) == len(venues) and set(venues) <= VENUES)
    else:
        assert request.kind == "arbitrage"
        assert request.buy_venue in VENUES and request.sell_venue in VENUES
        assert request.buy_venue != request.sell_venue
        assert request.opportunity_id is None or ID.fullmatch(request.opportunity_id)
    assert parse(request.as_message()) == request


@pytest.mark.parametrize(
    ("name", "raw", "verdict"), CASES + BYTE_LEVEL_CASES, ids=[c[0] for c in CASES + BYTE_LEVEL_CASES]
)
def test_table_case_gets_its_verdict_and_a_message_naming_the_field(
    name: str, raw: Raw, verdict: str
) -> None:
    if verdict == "ok":
        assert_invariants(parse(raw))
        return
    exc = rejection(raw)
    assert exc.reject_code == verdict, exc.message
    assert_sound_rejection(exc, encode(raw))
    field = name.split(":", maxsplit=1)[0]
    if field != "message":
        assert field in exc.message


def test_table_names_are_unique_and_cover_every_verdict() -> None:
    names = [case[0] for case in CASES + BYTE_LEVEL_CASES]
    assert len(names) == len(set(names))
    assert {case[2] for case in CASES} == REJECT_CODES | {"ok"}


def order(request_id: str, quantity: str, **fields: Any) -> OrderRequest:
    return OrderRequest(
        request_id=request_id, user_id="alice", symbol="BTC-USDT", quantity=Decimal(quantity), **fields
    )


def arbitrage(request_id: str, **fields: Any) -> ArbitrageRequest:
    return ArbitrageRequest(
        request_id=request_id,
        user_id="carol",
        symbol="BTC-USDT",
        quantity=Decimal("0.1"),
        buy_venue="okx",
        sell_venue="binance",
        **fields,
    )


GOOD_PARSES: list[tuple[str, Raw, Request]] = [
    ("market", MARKET_ORDER, order("req-1", "0.25", side="buy")),
    (
        "limit",
        LIMIT_ORDER,
        OrderRequest(
            request_id="req-2",
            user_id="desk.bob@example",
            symbol="ETH-USDT",
            quantity=Decimal("1.5"),
            side="sell",
            order_type="limit",
            limit_price=Decimal("64000.5"),
            max_slippage_bps=Decimal(20),
        ),
    ),
    ("arbitrage", ARBITRAGE, arbitrage("arb:3")),
    (
        "arbitrage-with-opportunity",
        ARBITRAGE_WITH_OPPORTUNITY,
        arbitrage("arb:4", max_slippage_bps=Decimal(0), opportunity_id="opp_9f2c.1"),
    ),
    ("venues-allow-list", VENUES_ALLOW_LIST, order("req-5", "0.25", side="buy", venues=("binance", "okx"))),
    ("future-deadline", FUTURE_DEADLINE, order("req-6", "0.25", side="buy", deadline_ns=NOW_NS + 1)),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [case[1:] for case in GOOD_PARSES], ids=[c[0] for c in GOOD_PARSES]
)
def test_good_request_parses_to_the_exact_order_request(raw: Raw, expected: OrderRequest) -> None:
    request = parse(raw)
    assert request == expected
    assert type(request.quantity) is Decimal


@pytest.mark.parametrize(
    "raw",
    [
        LIMIT_ORDER,
        ARBITRAGE,
        ARBITRAGE_WITH_OPPORTUNITY,
        VENUES_ALLOW_LIST,
        {**FUTURE_DEADLINE, "order_type": "market"},
    ],
)
def test_as_message_gives_back_the_contract_message(raw: dict[str, object]) -> None:
    assert parse(raw).as_message() == raw


def test_as_message_writes_plain_decimals_never_exponents() -> None:
    request = parse({**MARKET_ORDER, "quantity": "0.00000010", "max_slippage_bps": "100"})
    message = request.as_message()
    assert message["quantity"] == "0.00000010"
    assert message["max_slippage_bps"] == "100"
    tiny = OrderRequest(request_id="r", user_id="u", symbol="BTC-USDT", quantity=Decimal("1E-7"), side="buy")
    assert tiny.as_message()["quantity"] == "0.0000001"


def test_market_order_message_states_its_order_type() -> None:
    assert parse(MARKET_ORDER).as_message() == {**MARKET_ORDER, "order_type": "market"}


def test_each_kind_parses_to_its_own_type_which_has_only_its_own_fields() -> None:
    order, arb = parse(MARKET_ORDER), parse(ARBITRAGE)
    assert isinstance(order, OrderRequest) and order.kind == "order"
    assert isinstance(arb, ArbitrageRequest) and arb.kind == "arbitrage"
    assert not any(hasattr(order, name) for name in ("buy_venue", "sell_venue", "opportunity_id"))
    assert not any(hasattr(arb, name) for name in ("side", "limit_price", "venues", "order_type"))
    assert parse(arb.as_message()) == arb and "order_type" not in arb.as_message()


def test_echoed_values_are_truncated_and_escaped() -> None:
    exc = rejection({**MARKET_ORDER, "symbol": "X" * 60_000})
    assert len(exc.message) < 200
    assert "60000 characters" in exc.message
    exc = rejection({**MARKET_ORDER, "side": 'b"uy\n\u2028'})
    assert exc.message.isascii()
    assert '"b\\"uy\\n\\u2028"' in exc.message


def test_decimal_sent_as_json_number_is_rejected_with_a_hint() -> None:
    exc = rejection({**MARKET_ORDER, "quantity": 0.25})
    assert exc.message == (
        "quantity must be a positive decimal string, got the number 0.25; send decimals as JSON strings"
    )


def test_negative_quantity_message_reads_as_the_contract_example() -> None:
    exc = rejection({**MARKET_ORDER, "quantity": "-1"})
    assert exc.message.startswith("quantity must be a positive decimal string")
    assert exc.message.endswith('got "-1"')


def test_many_unknown_fields_are_listed_briefly() -> None:
    extra = {f"extra_{index:03}": index for index in range(500)}
    exc = rejection({**MARKET_ORDER, **extra})
    assert '"extra_000"' in exc.message and "(and 495 more)" in exc.message
    assert len(exc.message) < 600


def test_rejection_keeps_only_well_formed_identity() -> None:
    exc = rejection({**MARKET_ORDER, "quantity": "0"})
    assert (exc.request_id, exc.user_id, exc.kind) == ("req-1", "alice", "order")
    exc = rejection({**MARKET_ORDER, "request_id": "r" * 65, "kind": "Order"})
    assert (exc.request_id, exc.user_id, exc.kind) == (None, "alice", None)
    exc = rejection(b"{not json")
    assert (exc.request_id, exc.user_id, exc.kind) == (None, None, None)


@pytest.mark.parametrize(
    ("raw", "identity"),
    [
        (MARKET_ORDER, ("req-1", "alice", "order")),
        (ARBITRAGE, ("arb:3", "carol", "arbitrage")),
        ({"v": 9, "request_id": "r1", "colour": "red"}, ("r1", None, None)),
        ({"request_id": 5, "user_id": "bob@desk", "kind": "arbitrage"}, (None, "bob@desk", "arbitrage")),
        ({"request_id": "r" * 65, "user_id": "", "kind": "ORDER"}, (None, None, None)),
        ({"request_id": ["r1"], "user_id": {"a": 1}, "kind": ["order"]}, (None, None, None)),
        ({"request_id": "r 1", "user_id": "a@b", "kind": None}, (None, "a@b", None)),
        (b'{"request_id":"r1","request_id":"r2","user_id":"u"}', (None, None, None)),
        (b'{"request_id":"r1","user_id":"u"' + b" " * 70_000 + b"}", (None, None, None)),
        (b'{"request_id":"r1",', (None, None, None)),
        (b'["r1"]', (None, None, None)),
        (b'{"request_id":"r\xff"}', (None, None, None)),
        (b"", (None, None, None)),
    ],
    ids=[
        "order", "arbitrage", "only-request-id", "bad-request-id", "all-malformed", "unhashable",
        "null-kind", "duplicate-key", "oversized", "truncated", "array", "not-utf8", "empty",
    ],
)  # fmt: skip
def test_peek_identity_reads_only_well_formed_fields(raw: Raw, identity: tuple[str | None, ...]) -> None:
    assert peek_identity(encode(raw)) == identity


def test_record_without_a_value_is_rejected_not_crashed() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(None, RULES, now_ns=NOW_NS)
    assert info.value.reject_code == "invalid_request"
    assert "no value" in info.value.message
    assert peek_identity(None) == (None, None, None)


def test_deadline_is_compared_with_the_injected_now() -> None:
    message = {**MARKET_ORDER, "deadline_ns": 5_000}
    assert parse(message, now_ns=4_999).deadline_ns == 5_000
    assert rejection(message, now_ns=5_000).reject_code == "deadline_exceeded"
    assert rejection(message, now_ns=9_999).reject_code == "deadline_exceeded"


def test_rules_bound_quantity_and_decimal_length() -> None:
    rules = RequestRules(venues=VENUES, symbols=SYMBOLS, max_quantity=Decimal(10), max_decimal_chars=8)
    assert parse({**MARKET_ORDER, "quantity": "10"}, rules).quantity == 10
    assert "at most 10," in rejection({**MARKET_ORDER, "quantity": "10.5"}, rules).message
    assert "at most 8 characters" in rejection({**MARKET_ORDER, "quantity": "1.0000000"}, rules).message


def test_symbol_or_venue_not_enabled_by_the_rules_is_unknown() -> None:
    rules = RequestRules(venues=frozenset({"okx"}), symbols=frozenset({"ETH-USDT"}))
    assert rejection(MARKET_ORDER, rules).reject_code == "unknown_symbol"
    assert rejection(ARBITRAGE, RequestRules(venues=frozenset({"okx"}), symbols=SYMBOLS)).reject_code == (
        "unknown_venue"
    )
    assert "enabled: okx" in rejection({**VENUES_ALLOW_LIST, "symbol": "ETH-USDT"}, rules).message


# ---------------------------------------------------------------- property-based
# No per-example deadline: timing under a loaded CI box is not what these properties are about.


def decimal_strings(integer_digits: int, *, positive: bool = True) -> st.SearchStrategy[str]:
    """Draw plain decimals below 10**integer_digits (leading zeros included, as clients may send them)."""
    digits = st.text("0123456789", min_size=1, max_size=integer_digits)
    fraction = st.none() | st.text("0123456789", min_size=1, max_size=20)
    text = st.tuples(digits, fraction).map(lambda parts: ".".join(part for part in parts if part is not None))
    return text.filter(lambda value: Decimal(value) > 0) if positive else text


POSITIVE_QUANTITY = decimal_strings(9)  # below max_quantity, 1e9
ORDER_PRICE = decimal_strings(12)  # below the 1e12 price ceiling
SLIPPAGE = decimal_strings(4, positive=False)  # below 10000 bps
SORTED_VENUES = sorted(VENUES)
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-"
IDS = st.text(_ID_ALPHABET, min_size=1, max_size=64)
USER_IDS = st.text(_ID_ALPHABET + "@", min_size=1, max_size=64)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[dict[str, object], Request]:
    """Draw a valid message and the OrderRequest it must parse to."""
    kind = draw(st.sampled_from(["order", "arbitrage"]))
    message: dict[str, object] = {
        "v": 1,
        "request_id": draw(IDS),
        "user_id": draw(USER_IDS),
        "kind": kind,
        "symbol": draw(st.sampled_from(sorted(SYMBOLS))),
        "quantity": draw(POSITIVE_QUANTITY),
    }
    optional: dict[str, st.SearchStrategy[object]] = {
        "max_slippage_bps": SLIPPAGE,
        "deadline_ns": st.integers(NOW_NS + 1, MAX_DEADLINE_NS),
    }
    if kind == "order":
        message["side"] = draw(st.sampled_from(["buy", "sell"]))
        if draw(st.booleans()):
            message |= {"order_type": "limit", "limit_price": draw(ORDER_PRICE)}
        if "limit_price" not in message:
            optional["order_type"] = st.just("market")
        optional["venues"] = st.lists(st.sampled_from(SORTED_VENUES), min_size=1, unique=True)
    else:
        buy, sell = draw(st.lists(st.sampled_from(SORTED_VENUES), min_size=2, max_size=2, unique=True))
        message |= {"buy_venue": buy, "sell_venue": sell}
        optional |= {"order_type": st.just("market"), "opportunity_id": IDS}
    for name, strategy in optional.items():
        if draw(st.booleans()):
            message[name] = draw(strategy)
    return message, expected_request(message)


def expected_request(message: dict[str, Any]) -> Request:
    def decimal(name: str) -> Decimal | None:
        return Decimal(str(message[name])) if name in message else None

    common: dict[str, Any] = {
        "request_id": str(message["request_id"]),
        "user_id": str(message["user_id"]),
        "symbol": str(message["symbol"]),
        "quantity": Decimal(str(message["quantity"])),
        "max_slippage_bps": decimal("max_slippage_bps"),
        "deadline_ns": message.get("deadline_ns"),
    }
    if message["kind"] == "arbitrage":
        return ArbitrageRequest(
            **common,
            buy_venue=message["buy_venue"],
            sell_venue=message["sell_venue"],
            opportunity_id=message.get("opportunity_id"),
        )
    venues = message.get("venues")
    return OrderRequest(
        **common,
        side=message["side"],
        order_type=message.get("order_type", "market"),
        limit_price=decimal("limit_price"),
        venues=tuple(venues) if isinstance(venues, list) else None,
    )


TRICKY_STRINGS = [
    "", "0", "0.25", "-1", "-0", "1e3", "NaN", "Infinity", " 1", "1000000000.1", "1" * 41, "10000.5",
    "buy", "sell", "BUY", "market", "limit", "order", "arbitrage", "BTC-USDT", "DOGE-USDT", "btc-usdt",
    "binance", "okx", "ftx", "req-1", "r" * 65, "a b", "\x00", "\ud800", "é", "1", "v",
]  # fmt: skip
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(TRICKY_STRINGS)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
FIELD_VALUES = (
    JSON_VALUES
    | st.integers(NOW_NS - 3, NOW_NS + 3)
    | st.sampled_from([1, 2, 0, 2**63, -(2**63)])
    | st.lists(st.sampled_from([*SORTED_VENUES, "ftx", "", 1]), max_size=4)
)


_BAD_DECIMALS: list[object] = [
    "0",
    "0.0",
    "-1",
    "1e3",
    "NaN",
    " 1",
    "1000000000.5",
    "1000000000000.5",
    "10000.01",
    "1" * 41,
    0.25,
]
_BAD_IDS: list[object] = ["", "r" * 65, "a b", "é", "\ud800", "req-1\n", 5, None]
_VENUE_NAMES: list[object] = ["ftx", "binance", "okx", "", None, 1]
# Values one step from valid for each field, so that fuzzing reaches every check, not just the first.
NEAR_MISSES: dict[str, list[object]] = {
    "v": [0, 2, True, "1", 1.0, None],
    "request_id": _BAD_IDS,
    "user_id": [*_BAD_IDS, "a@b"],
    "kind": ["Order", "limit", "order", "arbitrage", 1],
    "symbol": ["DOGE-USDT", "btc-usdt", "B-USDT", "BTCUSDT", "ETH-USDT"],
    "side": ["BUY", "hold", "buy", "sell", None],
    "quantity": _BAD_DECIMALS,
    "order_type": ["limit", "stop", "market", "MARKET"],
    "limit_price": [*_BAD_DECIMALS, "64000.5"],
    "max_slippage_bps": [*_BAD_DECIMALS, "0"],
    "venues": [["ftx"], [], ["okx", "okx"], "okx", ["binance", "okx"], [None]],
    "buy_venue": _VENUE_NAMES,
    "sell_venue": _VENUE_NAMES,
    "opportunity_id": [*_BAD_IDS, "opp-1"],
    "deadline_ns": [NOW_NS, NOW_NS - 1, NOW_NS + 1, 0, -1, 2**63, 1.5, True, "1"],
}  # fmt: skip


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, object]:
    """Draw a valid message with one to three fields dropped, set to a near miss, or set to anything."""
    message = dict(draw(valid_requests())[0])
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "near_miss", "near_miss", "anything"]))
        if action == "drop" and message:
            del message[draw(st.sampled_from(sorted(message)))]
        elif action == "near_miss":
            name = draw(st.sampled_from(FIELDS))
            message[name] = draw(st.sampled_from(NEAR_MISSES[name]))
        else:
            message[draw(st.sampled_from(FIELDS) | st.text(max_size=6))] = draw(FIELD_VALUES)
    return message


def check_any_message(raw: bytes) -> None:
    """Accept only sound requests; reject everything else with InvalidRequest and nothing but it."""
    try:
        request = parse_request(raw, RULES, now_ns=NOW_NS)
    except InvalidRequest as exc:
        assert_sound_rejection(exc, raw)
    else:
        assert_invariants(request)
        # Nothing a client sent is silently dropped (arbitrage's order_type "market" is the default).
        sent = set(json.loads(raw)) - ({"order_type"} if request.kind == "arbitrage" else set())
        assert sent <= set(request.as_message())


@settings(deadline=None)
@given(valid_requests())
def test_generated_valid_request_parses_and_round_trips(
    drawn: tuple[dict[str, object], Request],
) -> None:
    message, expected = drawn
    request = parse(message)
    assert request == expected
    again = request.as_message()
    assert again["v"] == 1
    assert all(
        PLAIN_DECIMAL.fullmatch(str(again[name])) for name in ("quantity", "limit_price") if name in again
    )
    assert parse_request(orjson.dumps(again), RULES, now_ns=NOW_NS) == request


@pytest.mark.parametrize("name", FIELDS)
@settings(max_examples=40, deadline=None)
@given(drawn=valid_requests(), data=st.data())
def test_near_miss_in_any_valid_request_is_rejected_or_sound(
    name: str, drawn: tuple[dict[str, object], Request], data: st.DataObject
) -> None:
    message = {**drawn[0], name: data.draw(st.sampled_from(NEAR_MISSES[name]), label=name)}
    check_any_message(json.dumps(message).encode())


@settings(max_examples=200, deadline=None)
@given(mutated_requests())
def test_mutated_request_is_either_sound_or_rejected(message: dict[str, object]) -> None:
    # json.dumps, not orjson: it writes big integers, NaN and lone surrogates, which must all be handled.
    check_any_message(json.dumps(message).encode())


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_arbitrary_json_document_is_either_sound_or_rejected(document: object) -> None:
    check_any_message(json.dumps(document).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_cleanly(raw: bytes) -> None:
    check_any_message(raw)


@settings(max_examples=300, deadline=None)
@given(valid_requests(), st.data())
def test_corrupted_bytes_are_either_sound_or_rejected(
    drawn: tuple[dict[str, object], Request], data: st.DataObject
) -> None:
    raw = bytearray(orjson.dumps(drawn[0]))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position : position + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
    check_any_message(bytes(raw))
