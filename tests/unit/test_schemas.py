"""The Kafka contract's schemas and AsyncAPI document: well-formed, met by the code, as strict as readers."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from unittest.mock import ANY

import orjson
import pytest
import yaml
from contract import MESSAGES, SCHEMA_DIR, SUFFIX, assert_valid, errors, is_valid, registry, schema_files
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable
from validation_cases import CASES, LIMIT_ORDER, MARKET_ORDER, NOW_NS, SYMBOLS, VENUES, Raw

from connectors.types import VENUE_IDS, Quote, Withdrawal
from router.cache import PriceCache
from router.detector import ArbitrageDetector, Opportunity
from router.errors import InvalidRequest
from router.execution import Fill
from router.kill_switch import InvalidControl, KillSwitch
from router.ledger import Ledger
from router.preferences import (
    InvalidPreferences,
    PreferenceStore,
    default_preferences,
    preferences_from_fields,
)
from router.request import RequestRules
from router.results import ExecutionResult, Status
from router.routing import NoRoute, RouteRequest, VenueView, plan_route
from router.validation import parse_request

MS: Final = 1_000_000
WALL_NS: Final = 1_732_400_000_000_000_000
RULES: Final = RequestRules(venues=VENUES, symbols=SYMBOLS)
STRICT: Final = frozenset({"order-request", "preferences", "control"})


def quote(venue: str, bid: str, ask: str, qty: str = "0.5", *, received_ns: int = 0) -> Quote:
    d = Decimal
    return Quote(venue, "BTC-USDT", d(bid), d(qty), d(ask), d(qty), None, received_ns, 1)


def json_roundtrip(message: dict[str, object]) -> Any:
    """Return the message as a consumer decodes it from the bytes smartroute produces."""
    return orjson.loads(orjson.dumps(message))


# ----- messages built by smartroute's own code ------------------------------------------------


def detector_events() -> list[Opportunity]:
    """Run a real detector on two venues: the spread opens, widens, then goes stale."""
    now = [10_000 * MS]
    cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=lambda: now[0])
    events: list[Opportunity] = []
    fees = {"binance": Decimal(10), "bybit": Decimal("7.5")}
    detector = ArbitrageDetector(cache, fees, events.append, wall_clock_ns=lambda: WALL_NS + now[0])
    for venue, bid, ask, step_ns in (
        ("binance", "63990.00", "64000.00", 0),
        ("bybit", "64200.00", "64210.00", 250_125),  # a sub-millisecond step: ages carry µs
        ("bybit", "64300.00", "64310.00", 1_000 * MS),
    ):
        now[0] += step_ns
        q = quote(venue, bid, ask, received_ns=now[0])
        cache.update(q)
        detector.on_quote(q)
    now[0] += 2_000 * MS
    detector.sweep()
    return events


def route_and_fills() -> tuple[dict[str, object], tuple[Fill, ...]]:
    """Plan a real split route over two books (a third venue has none) and fill it."""
    views = [
        VenueView("binance", quote("binance", "99.9", "100", "0.5"), 0.25, Decimal(10)),
        VenueView("okx", quote("okx", "99.8", "100.1", "0.5"), 3.5, Decimal(8)),
        VenueView("bybit", None, None, Decimal(10)),
    ]
    request = RouteRequest(
        "BTC-USDT", "buy", Decimal("0.8"), None, Decimal(50), "split", 1_500.0, max_venues=2
    )
    plan = plan_route(request, views)
    fills = tuple(
        Fill(
            leg.venue,
            "buy",
            leg.expected_price,
            leg.quantity,
            leg.expected_fee,
            "USDT",
            f"c{i}",
            f"v{i}",
            WALL_NS,
        )
        for i, leg in enumerate(plan.legs)
    )
    return plan.as_message(), fills


def results() -> dict[str, ExecutionResult]:
    route, fills = route_and_fills()
    stale = [VenueView("binance", quote("binance", "99.9", "100"), 9_000.0, Decimal(10))]
    with pytest.raises(NoRoute) as stale_books:
        plan_route(
            RouteRequest("BTC-USDT", "buy", Decimal(1), None, Decimal(50), "best_price", 1_500.0), stale
        )
    no_route = stale_books.value
    sell = Fill("okx", "sell", Decimal(101), Decimal("0.3"), Decimal("0.0242"), "USDT", "c9", "v9", WALL_NS)

    def result(kind: str | None, status: Status, code: str | None, **more: Any) -> ExecutionResult:
        what = "what happened"
        return ExecutionResult(
            "req-1", "alice", kind, "paper", status, code, what, WALL_NS, WALL_NS + MS, **more
        )

    return {
        "filled order": result("order", "filled", None, fills=fills, route=route),
        "no route": result("order", "rejected", no_route.reject_code, route=no_route.as_message()),
        "invalid request": result(None, "rejected", "invalid_request"),
        "arbitrage with residual": result(
            "arbitrage", "partially_filled", None, fills=(*fills, sell), route=route,
            residual={"quantity": "0.5", "venue": "binance", "exposure": "long", "side": "sell",
                      "state": "working", "action": "partially_unwound", "attempts": 1,
                      "unwound_quantity": "0.2", "remaining_quantity": "0.3", "message": "still worked"},
            hedged_quantity=Decimal("0.3"), extra={"arbitrage": {"bought": "0.8", "sold": "0.3"}},
        ),
    }  # fmt: skip


def dlq_entry(
    value: bytes | None,
    key: bytes | None,
    error: str,
    reject_code: str | None,
    headers: list[tuple[str, bytes]] | None = None,
) -> dict[str, object]:
    """Build a DLQ entry the way DESIGN describes it (original bytes kept in base64)."""
    try:
        text = None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "v": 1, "source_topic": "smartroute.orders", "partition": 2, "offset": 41, "error": error,
        "key": None if key is None else base64.b64encode(key).decode(),
        "value_base64": None if value is None else base64.b64encode(value).decode(),
        "value_text": text, "reject_code": reject_code, "received_ns": WALL_NS,
        "headers": [{"key": k, "value_base64": base64.b64encode(v).decode()} for k, v in headers or []],
    }  # fmt: skip


QUOTE: Final = {
    "v": 1, "venue": "bybit", "symbol": "BTC-USDT", "bid": "63999.99", "bid_qty": "1.2", "ask": "64000",
    "ask_qty": "0.5", "exchange_ns": WALL_NS - 3 * MS, "received_ns": WALL_NS, "seq": 18_520_346,
}  # fmt: skip
HALT: Final = {"v": 1, "command": "halt", "reason": "exchange incident", "issued_by": "ops@desk"}


def valid_message(name: str) -> dict[str, Any]:
    """Return a fresh valid message of `name`, built by smartroute's code wherever such code exists."""
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "quote": lambda: QUOTE,
        "quote-withdrawn": lambda: Withdrawal("kraken", "BTC-USD", "checksum", WALL_NS).as_message(),
        "opportunity": lambda: detector_events()[0].as_message(),  # noqa: PLW0108 - built on demand
        "order-request": lambda: MARKET_ORDER,
        "execution-result": lambda: results()["filled order"].as_message(),  # noqa: PLW0108
        "preferences": lambda: default_preferences("alice").as_message(),
        "control": lambda: HALT,
        "dlq-entry": lambda: dlq_entry(b'{"v":1,', b"req-1", "message is not valid JSON", "invalid_request"),
    }
    message: dict[str, Any] = json_roundtrip(builders[name]())  # a deep copy, as a consumer decodes it
    return message


# ----- the schema files themselves -------------------------------------------------------------


@pytest.mark.parametrize("path", schema_files(), ids=lambda path: path.name)
def test_every_schema_file_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["title"] and schema["description"]


def test_there_is_one_schema_per_message_of_the_contract_plus_the_shared_definitions() -> None:
    assert [path.name for path in schema_files()] == sorted(
        [n + SUFFIX for n in MESSAGES] + ["common.schema.json"]
    )


def refs(node: object) -> Iterator[str]:
    """Yield every `$ref` value in a JSON or YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


@pytest.mark.parametrize("path", schema_files(), ids=lambda path: path.name)
def test_every_reference_in_a_schema_resolves(path: Path) -> None:
    resolver = registry().resolver(base_uri=path.name)
    found = list(refs(json.loads(path.read_text(encoding="utf-8"))))
    for ref in found:
        resolver.lookup(ref)
    assert found or path.name == "common.schema.json"


def test_a_reference_to_a_missing_file_or_definition_is_caught() -> None:
    resolver = registry().resolver(base_uri="quote.schema.json")
    for ref in ("missing.schema.json#/$defs/decimal", "common.schema.json#/$defs/no_such_definition"):
        with pytest.raises(Unresolvable):
            resolver.lookup(ref)


@pytest.mark.parametrize("name", MESSAGES)
def test_the_examples_written_in_each_schema_are_valid(name: str) -> None:
    examples = json.loads((SCHEMA_DIR / f"{name}{SUFFIX}").read_text(encoding="utf-8"))["examples"]
    assert examples
    for example in examples:
        assert_valid(name, example)


@pytest.mark.parametrize("name", MESSAGES)
def test_requests_reject_unknown_fields_and_events_accept_them(name: str) -> None:
    message = valid_message(name)
    assert_valid(name, message)
    assert is_valid(name, {**message, "added_later": [1, {"x": None}]}) is (name not in STRICT)


# ----- messages built by the real code validate -----------------------------------------------


def test_every_event_of_a_real_detector_run_is_a_valid_opportunity() -> None:
    events = detector_events()
    assert [event.event for event in events] == ["opened", "updated", "closed"]
    for event in events:
        assert_valid("opportunity", json_roundtrip(event.as_message()))
    assert events[0].buy_quote_age_ms == 0.25  # a fractional JSON number, as the schema says


@pytest.mark.parametrize("case", ["filled order", "no route", "invalid request", "arbitrage with residual"])
def test_results_built_by_the_router_are_valid_execution_results(case: str) -> None:
    assert_valid("execution-result", json_roundtrip(results()[case].as_message()))


def test_preferences_written_by_the_router_validate_and_read_back_unchanged() -> None:
    configured = preferences_from_fields(
        "desk.bob@example",
        {
            "preferred_venues": ["okx", "binance"], "excluded_venues": ["kraken"],
            "preferred_bias_bps": "2.5", "risk_tolerance": "high", "max_slippage_bps": "15",
            "max_order_notional": Decimal(250_000), "strategy": "preferred",
        },
        known_venues=VENUE_IDS,
    )  # fmt: skip
    for preferences in (default_preferences("alice"), configured):
        message = json_roundtrip(preferences.as_message())
        assert_valid("preferences", message)
        store = PreferenceStore({}, known_venues=VENUE_IDS)
        assert store.apply_message(preferences.user_id.encode(), orjson.dumps(message)) == preferences


SIGNED: Final = [("smartroute-signer", b"alice"), ("smartroute-signature", b"\x00\xff not base64 yet")]


@pytest.mark.parametrize(
    ("value", "key", "headers"),
    [
        (b'{"v":1,', b"req-1", []),
        (b"\xff\xfe not UTF-8", None, []),
        (None, b"user-7", []),
        (b"", b"", []),
        (b'{"v":1}', b"req-2", SIGNED),
    ],
    ids=["not JSON", "not UTF-8, no key", "no value", "empty", "with headers"],
)
def test_dlq_entries_written_by_the_router_service_keep_any_bytes_and_validate(
    value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    from aiokafka.structs import ConsumerRecord  # the router service's own input type

    from daemon.router_service import dlq_entry as router_dlq_entry

    record = ConsumerRecord("smartroute.orders", 2, 41, 0, 0, key, value, None, 0, 0, headers)
    entry = orjson.loads(router_dlq_entry(record, "message could not be used", "invalid_request"))
    assert_valid("dlq-entry", entry)
    assert entry == {
        **dlq_entry(value, key, "message could not be used", "invalid_request", headers),
        "received_ns": ANY,
    }
    if value is not None:
        assert base64.b64decode(entry["value_base64"], validate=True) == value


# ----- broken copies fail ------------------------------------------------------------------------


def drop(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda message: message.pop(field)


def put(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda message: message.__setitem__(field, value)


def put_in_first_fill(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda message: message["fills"][0].__setitem__(field, value)


BROKEN: Final[list[tuple[str, str, Callable[[dict[str, Any]], None]]]] = [
    *((name, "v 2", put("v", 2)) for name in MESSAGES),
    *((name, "v missing", drop("v")) for name in MESSAGES),
    ("quote", "bid missing", drop("bid")),
    ("quote", "bid as a JSON number", put("bid", 63999.99)),
    ("quote", "venue in upper case", put("venue", "BYBIT")),
    ("quote", "received_ns as a string", put("received_ns", str(WALL_NS))),
    ("opportunity", "net_profit missing", drop("net_profit")),
    ("opportunity", "buy_price as a JSON number", put("buy_price", 64000.0)),
    ("opportunity", "quantity in exponent notation", put("quantity", "1.5E-1")),
    ("opportunity", "event not in the enum", put("event", "expired")),
    ("opportunity", "quantity with a trailing newline", put("quantity", "0.5\n")),
    ("order-request", "quantity missing", drop("quantity")),
    ("order-request", "quantity as a JSON number", put("quantity", 0.25)),
    ("order-request", "side not in the enum", put("side", "long")),
    ("execution-result", "fills missing", drop("fills")),
    ("execution-result", "filled_quantity as a JSON number", put("filled_quantity", 0.8)),
    ("execution-result", "status not in the enum", put("status", "done")),
    ("execution-result", "a fill's price as a JSON number", put_in_first_fill("price", 100.0)),
    ("execution-result", "a fill without ts_ns", lambda m: m["fills"][0].pop("ts_ns")),
    ("execution-result", "reject_code on a filled result", put("reject_code", "risk_limit")),
    ("preferences", "user_id missing", drop("user_id")),
    ("preferences", "max_slippage_bps as a JSON number", put("max_slippage_bps", 10)),
    ("preferences", "strategy not in the enum", put("strategy", "cheapest")),
    ("control", "issued_by missing", drop("issued_by")),
    ("control", "reason as a JSON number", put("reason", 7)),
    ("control", "command not in the enum", put("command", "stop")),
    ("dlq-entry", "value_base64 missing", drop("value_base64")),
    ("dlq-entry", "offset as a string", put("offset", "41")),
    ("dlq-entry", "key not base64", put("key", "req-1!")),
]


@pytest.mark.parametrize(("name", "breakage", "mutate"), BROKEN, ids=[f"{n}: {b}" for n, b, _ in BROKEN])
def test_a_deliberately_broken_message_fails_validation(
    name: str, breakage: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    message = valid_message(name)
    assert_valid(name, message)
    broken = copy.deepcopy(message)
    mutate(broken)
    assert not is_valid(name, broken), breakage
    with pytest.raises(AssertionError, match=f"breaks schemas/{name}"):
        assert_valid(name, broken)


# ----- the order-request schema and the router's validator agree --------------------------------

RUNTIME_CODES: Final = frozenset({"unknown_symbol", "unknown_venue", "deadline_exceeded"})
# Schema-valid, runtime-rejected: the verdict depends on what the router knows when the request arrives.
RUNTIME_REJECTED: Final = {
    "symbol: not enabled": "the symbols traded are the deployment's config",
    "symbol: 20-character assets, not enabled": "the symbols traded are the deployment's config",
    "deadline_ns: past": "a deadline is judged against the router's clock on arrival",
    "deadline_ns: past, on arbitrage": "a deadline is judged against the router's clock on arrival",
    "deadline_ns: now": "a deadline is judged against the router's clock on arrival",
}
# Verdicts no JSON Schema can give: it compares numbers by value, so 1.0 is the integer 1.
NOT_EXPRESSIBLE: Final = {
    "v: 1.0": "the router wants the integer literal 1; JSON Schema sees 1.0 as that integer",
    "deadline_ns: 1.7324e+18": "the router wants an integer literal; JSON Schema sees 1.7324e18 as one",
}
NOT_JSON: Final = object()


def router_verdict(raw: Raw) -> str:
    try:
        parse_request(raw if isinstance(raw, bytes) else orjson.dumps(raw), RULES, now_ns=NOW_NS)
    except InvalidRequest as exc:
        return exc.reject_code
    return "ok"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def document_of(raw: Raw) -> object:
    """Return the JSON document a schema would be applied to, or NOT_JSON when there is none."""
    if isinstance(raw, dict):
        return json_roundtrip(raw)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except ValueError:  # also UnicodeDecodeError and JSONDecodeError
        return NOT_JSON


@pytest.mark.parametrize(("name", "raw", "verdict"), CASES, ids=[case[0] for case in CASES])
def test_schema_and_validator_give_the_same_verdict_on_the_shared_table(
    name: str, raw: Raw, verdict: str
) -> None:
    assert router_verdict(raw) == verdict  # the table still describes the router
    document = document_of(raw)
    schema_ok = document is not NOT_JSON and is_valid("order-request", document)
    if name in RUNTIME_REJECTED:
        assert schema_ok, "schema-valid, runtime-rejected: " + RUNTIME_REJECTED[name]
        assert verdict in RUNTIME_CODES
    elif name in NOT_EXPRESSIBLE:
        assert schema_ok and verdict == "invalid_request", NOT_EXPRESSIBLE[name]
    else:
        assert schema_ok is (verdict == "ok"), errors("order-request", document) or "schema accepts it"


def test_every_exception_to_the_agreement_names_a_case_of_the_table() -> None:
    names = {case[0] for case in CASES}
    assert set(RUNTIME_REJECTED) <= names and set(NOT_EXPRESSIBLE) <= names


DECIMAL_FIELDS: Final = {
    "quantity": MARKET_ORDER,
    "limit_price": LIMIT_ORDER,
    "max_slippage_bps": MARKET_ORDER,
}
decimal_strings = st.one_of(
    st.text(alphabet="0123456789.-+eE \n", max_size=45),
    st.from_regex(r"\A0{0,3}[0-9]{1,16}(\.[0-9]{1,30})?\Z"),
    st.sampled_from(
        ["1000000000", "1000000000.000", "1000000000.0000001", "0999999999.9", "1000000000000", "10000.00",
         "10000.001", "09999.99", "0", "0.0", "00.000", "0" * 39 + "1", "0" * 40 + "1"]
    ),
)  # fmt: skip


@given(field=st.sampled_from(sorted(DECIMAL_FIELDS)), value=decimal_strings)
@settings(max_examples=300, deadline=None)
def test_schema_and_validator_agree_on_any_decimal_string(field: str, value: str) -> None:
    request = {**DECIMAL_FIELDS[field], field: value}
    assert is_valid("order-request", request) is (router_verdict(request) == "ok")


@pytest.mark.parametrize("venue", VENUE_IDS)
def test_arbitrage_venues_must_differ_for_every_venue_id(venue: str) -> None:
    other = next(v for v in VENUE_IDS if v != venue)
    arbitrage = {**json_roundtrip(dict(MARKET_ORDER)), "kind": "arbitrage", "buy_venue": venue}
    del arbitrage["side"]
    assert is_valid("order-request", {**arbitrage, "sell_venue": other})
    assert not is_valid("order-request", {**arbitrage, "sell_venue": venue})
    assert is_valid("order-request", {**MARKET_ORDER, "venues": [venue]})


# ----- the preferences and control schemas agree with their readers -----------------------------

PREFERENCES: Final = {"v": 1, "user_id": "alice"}
PREFERENCE_CASES: Final[list[tuple[str, dict[str, object], bool]]] = [
    ("only user_id", {}, True),
    ("every field", {"preferred_venues": ["okx"], "excluded_venues": ["kraken", "bybit"], "max_venues": 2,
                     "preferred_bias_bps": "10000", "risk_tolerance": "low", "strategy": "preferred",
                     "max_slippage_bps": "0.5", "max_order_notional": "1000000000000000"}, True),
    ("profile limits null", {"max_slippage_bps": None, "max_order_notional": None, "max_venues": None}, True),
    ("preferred without preferred venues", {"strategy": "preferred"}, False),
    ("preferred with an empty list", {"strategy": "preferred", "preferred_venues": []}, False),
    ("a venue preferred and excluded", {"preferred_venues": ["okx"], "excluded_venues": ["okx"]}, False),
    ("unknown venue", {"excluded_venues": ["ftx"]}, False),
    ("repeated venue", {"preferred_venues": ["okx", "okx"]}, False),
    ("unknown field", {"colour": "red"}, False),
    ("risk_tolerance not in the enum", {"risk_tolerance": "extreme"}, False),
    ("strategy not in the enum", {"strategy": "cheapest"}, False),
    ("preferred_bias_bps above 10000", {"preferred_bias_bps": "10000.5"}, False),
    ("preferred_bias_bps negative", {"preferred_bias_bps": "-1"}, False),
    ("max_slippage_bps 0", {"max_slippage_bps": "0"}, False),
    ("max_order_notional above 1e15", {"max_order_notional": "1000000000000000.1"}, False),
    ("max_order_notional exponent", {"max_order_notional": "1e3"}, False),
    ("max_venues 6", {"max_venues": 6}, False),
    ("max_venues true", {"max_venues": True}, False),
    ("v 2", {"v": 2}, False),
    ("user_id with a space", {"user_id": "al ice"}, False),
]  # fmt: skip


@pytest.mark.parametrize(("case", "fields", "ok"), PREFERENCE_CASES, ids=[c[0] for c in PREFERENCE_CASES])
def test_preferences_schema_and_store_give_the_same_verdict(
    case: str, fields: dict[str, object], ok: bool
) -> None:
    message = {**PREFERENCES, **fields}
    store = PreferenceStore({}, known_venues=VENUE_IDS)
    try:
        store.apply_message(None, orjson.dumps(message))
        store_ok = True
    except InvalidPreferences:
        store_ok = False
    assert (store_ok, is_valid("preferences", message)) == (ok, ok)


def test_preferences_decimals_as_json_numbers_are_schema_invalid_though_the_store_reads_them() -> None:
    # The contract sends decimals as strings; the store also reads numbers because [users.<id>] in TOML may.
    message = {**PREFERENCES, "max_order_notional": 250_000}
    assert PreferenceStore({}, known_venues=VENUE_IDS).apply_message(None, orjson.dumps(message)) is not None
    assert not is_valid("preferences", message)


DROP: Final = object()
CONTROL_CASES: Final[list[tuple[str, dict[str, object], bool]]] = [
    ("halt", {}, True),
    ("resume without reason", {"command": "resume", "reason": DROP}, True),
    ("resume with a null reason", {"command": "resume", "reason": None}, True),
    ("resume with a reason", {"command": "resume", "reason": "fixed"}, True),
    ("reason of 256 characters", {"reason": "r" * 256}, True),
    ("halt without reason", {"reason": DROP}, False),
    ("halt with a null reason", {"reason": None}, False),
    ("halt with an empty reason", {"reason": ""}, False),
    ("reason of 257 characters", {"reason": "r" * 257}, False),
    ("reason with a newline", {"reason": "line\nbreak"}, False),
    ("issued_by missing", {"issued_by": DROP}, False),
    ("issued_by empty", {"issued_by": ""}, False),
    ("issued_by of 65 characters", {"issued_by": "o" * 65}, False),
    ("issued_by a number", {"issued_by": 7}, False),
    ("command in upper case", {"command": "HALT"}, False),
    ("v as a string", {"v": "1"}, False),
    ("unknown field", {"until_ns": 1}, False),
]


@pytest.fixture
def kill_switch(tmp_path: Path) -> Iterator[KillSwitch]:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        yield KillSwitch(ledger, clock_ns=lambda: WALL_NS)


@pytest.mark.parametrize(("case", "fields", "ok"), CONTROL_CASES, ids=[c[0] for c in CONTROL_CASES])
def test_control_schema_and_kill_switch_give_the_same_verdict(
    kill_switch: KillSwitch, case: str, fields: dict[str, object], ok: bool
) -> None:
    message = {key: value for key, value in {**HALT, **fields}.items() if value is not DROP}
    try:
        kill_switch.apply(orjson.dumps(message))
        switch_ok = True
    except InvalidControl:
        switch_ok = False
    assert (switch_ok, is_valid("control", message)) == (ok, ok)


# ----- the AsyncAPI document ---------------------------------------------------------------------

ASYNCAPI: Final = SCHEMA_DIR / "asyncapi.yaml"
TOPICS: Final = ("quotes", "opportunities", "orders", "results", "preferences", "control", "dlq")


def load_asyncapi() -> dict[str, Any]:
    document = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def pointer(document: object, fragment: str) -> object:
    """Return what a JSON pointer ("/a/b") designates; raise LookupError when nothing is there."""
    node = document
    for token in filter(None, fragment.split("/")):
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            raise LookupError(f"#{fragment}: nothing at {key!r}")
        node = node[key]
    return node


def unresolved(document: dict[str, Any]) -> list[str]:
    """Return the `$ref`s of an AsyncAPI document that resolve to nothing (schema files are beside it)."""
    missing = []
    for ref in refs(document):
        target, _, fragment = ref.partition("#")
        try:
            if target:
                path = (SCHEMA_DIR / target).resolve()
                if path.parent != SCHEMA_DIR or not path.is_file():
                    raise LookupError(target)
                pointer(json.loads(path.read_text(encoding="utf-8")), fragment)
            else:
                pointer(document, fragment)
        except LookupError:
            missing.append(ref)
    return missing


def test_the_asyncapi_document_parses_as_version_3() -> None:
    document = load_asyncapi()
    assert str(document["asyncapi"]).startswith("3.")
    assert document["info"]["title"] and document["info"]["version"]


def test_every_asyncapi_reference_resolves_and_a_broken_one_is_caught() -> None:
    document = load_asyncapi()
    assert unresolved(document) == []
    document["components"]["messages"]["quote"]["payload"]["schema"]["$ref"] = "./quotes.schema.json"
    document["operations"]["feedsSendQuotes"]["channel"]["$ref"] = "#/channels/quote"
    assert unresolved(document) == ["#/channels/quote", "./quotes.schema.json"]


def test_asyncapi_lists_every_topic_with_its_key_schema_writers_and_readers() -> None:
    document = load_asyncapi()
    channels, operations = document["channels"], document["operations"].values()
    assert sorted(channel["address"] for channel in channels.values()) == sorted(
        f"smartroute.{t}" for t in TOPICS
    )
    schema_files_used = []
    for channel_id, channel in channels.items():
        actions = {op["action"] for op in operations if op["channel"]["$ref"] == f"#/channels/{channel_id}"}
        assert actions == {"send", "receive"}, channel_id
        for reference in channel["messages"].values():
            message = pointer(document, reference["$ref"].removeprefix("#"))
            assert isinstance(message, dict)
            assert "key" in message["bindings"]["kafka"], channel_id
            payload = message["payload"]
            assert payload["schemaFormat"] == "application/schema+json;version=draft-2020-12"
            schema_files_used.append(payload["schema"]["$ref"])
    assert sorted(schema_files_used) == sorted(f"./{name}{SUFFIX}" for name in MESSAGES)


def test_the_asyncapi_topic_bindings_are_what_smartroute_topics_create_makes_by_default() -> None:
    from daemon.config import build_config
    from daemon.kafka.topics import topic_specs

    channels = load_asyncapi()["channels"]
    cfg = build_config({}, {})
    for spec in topic_specs(cfg.kafka, cfg.topics, brokers=3):
        (binding,) = [c["bindings"]["kafka"] for c in channels.values() if c["address"] == spec.name]
        documented = binding["topicConfiguration"]
        assert documented["cleanup.policy"] == [spec.configs["cleanup.policy"]], spec.name
        assert str(documented.get("retention.ms")) == spec.configs.get("retention.ms", "None"), spec.name
        if spec.partitions == 1:
            assert binding["partitions"] == 1, spec.name
