"""Preferences: config, compacted-topic overrides, tombstones, defaults, risk profiles and validation."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from router.errors import RouterError
from router.preferences import (
    RISK_PROFILES,
    InvalidPreferences,
    PreferenceStore,
    UserPreferences,
    default_preferences,
    preferences_from_fields,
)

VENUES = ("binance", "bybit", "okx", "coinbase", "kraken")
ALICE_CONFIG: dict[str, object] = {
    "preferred_venues": ["binance"],
    "preferred_bias_bps": 5,
    "risk_tolerance": "low",
    "strategy": "preferred",
}


def alice() -> UserPreferences:
    return preferences_from_fields("alice", ALICE_CONFIG, known_venues=VENUES)


def store() -> PreferenceStore:
    return PreferenceStore({"alice": alice()}, known_venues=VENUES)


def message(user_id: str = "alice", **fields: object) -> bytes:
    return orjson.dumps({"v": 1, "user_id": user_id, **fields})


def test_config_only_user_gets_the_configured_preferences() -> None:
    got = store().get("alice")

    assert got.preferred_venues == ("binance",)
    assert got.preferred_bias_bps == Decimal(5)
    assert got.risk_tolerance == "low"
    assert got.strategy == "preferred"
    assert got.excluded_venues == frozenset()


def test_unknown_user_gets_the_defaults() -> None:
    got = store().get("bob")

    assert got == default_preferences("bob")
    assert (got.risk_tolerance, got.strategy, got.preferred_venues) == ("medium", "best_price", ())
    assert (got.max_slippage_bps, got.max_venues, got.max_order_notional) == (
        Decimal(25),
        2,
        Decimal(100_000),
    )


def test_topic_override_wins_over_config() -> None:
    prefs = store()

    applied = prefs.apply_message(b"alice", message(risk_tolerance="high", excluded_venues=["okx"]))

    assert applied == prefs.get("alice")
    assert prefs.get("alice").risk_tolerance == "high"
    assert prefs.get("alice").excluded_venues == frozenset({"okx"})
    # A message is the whole preference set: what it omits is the default, not the config's value.
    assert prefs.get("alice").preferred_venues == ()
    assert prefs.get("alice").strategy == "best_price"


def test_later_topic_message_wins() -> None:
    prefs = store()
    prefs.apply_message(b"alice", message(strategy="fastest"))

    prefs.apply_message(b"alice", message(strategy="split", max_slippage_bps="7.5"))

    assert prefs.get("alice").strategy == "split"
    assert prefs.get("alice").max_slippage_bps == Decimal("7.5")


def test_tombstone_reverts_to_config() -> None:
    prefs = store()
    prefs.apply_message(b"alice", message(strategy="fastest"))

    assert prefs.apply_message(b"alice", None) is None

    assert prefs.get("alice") == alice()


def test_tombstone_for_topic_only_user_reverts_to_defaults() -> None:
    prefs = store()
    prefs.apply_message(b"carol", message("carol", risk_tolerance="high"))

    prefs.apply_message(b"carol", None)

    assert prefs.get("carol") == default_preferences("carol")


def test_tombstone_without_key_is_rejected() -> None:
    with pytest.raises(InvalidPreferences) as caught:
        store().apply_message(None, None)
    assert caught.value.field == "key"


def test_message_without_key_is_accepted_by_its_user_id() -> None:
    prefs = store()
    prefs.apply_message(None, message("dave", strategy="fastest"))
    assert prefs.get("dave").strategy == "fastest"


def test_key_and_user_id_mismatch_is_rejected_and_changes_nothing() -> None:
    prefs = store()

    with pytest.raises(InvalidPreferences) as caught:
        prefs.apply_message(b"bob", message("alice", strategy="fastest"))

    assert caught.value.field == "user_id"
    assert "bob" in str(caught.value)
    assert prefs.get("alice") == alice()
    assert prefs.get("bob") == default_preferences("bob")


def test_invalid_message_keeps_the_previous_override() -> None:
    prefs = store()
    prefs.apply_message(b"alice", message(strategy="fastest"))

    with pytest.raises(InvalidPreferences):
        prefs.apply_message(b"alice", message(strategy="cheapest"))

    assert prefs.get("alice").strategy == "fastest"


@pytest.mark.parametrize(
    ("tolerance", "slippage", "venues", "notional"),
    [
        ("low", Decimal(10), 1, Decimal(10_000)),
        ("medium", Decimal(25), 2, Decimal(100_000)),
        ("high", Decimal(100), 5, Decimal(1_000_000)),
    ],
)
def test_risk_tolerance_maps_to_its_profile(
    tolerance: str, slippage: Decimal, venues: int, notional: Decimal
) -> None:
    got = preferences_from_fields("u1", {"risk_tolerance": tolerance}, known_venues=VENUES)

    assert (got.max_slippage_bps, got.max_venues, got.max_order_notional) == (slippage, venues, notional)
    profile = RISK_PROFILES[got.risk_tolerance]
    assert (profile.max_slippage_bps, profile.max_venues, profile.max_order_notional) == (
        slippage,
        venues,
        notional,
    )


def test_explicit_limits_override_the_profile() -> None:
    got = preferences_from_fields(
        "u1",
        {"risk_tolerance": "low", "max_slippage_bps": "40", "max_order_notional": 250_000, "max_venues": 3},
        known_venues=VENUES,
    )

    assert got.max_slippage_bps == Decimal(40)
    assert got.max_order_notional == Decimal(250_000)
    assert got.max_venues == 3


def test_none_limits_take_the_profile() -> None:
    got = preferences_from_fields(
        "u1",
        {"risk_tolerance": "high", "max_slippage_bps": None, "max_order_notional": None},
        known_venues=VENUES,
    )
    assert (got.max_slippage_bps, got.max_order_notional) == (Decimal(100), Decimal(1_000_000))


@pytest.mark.parametrize("value", [Decimal("2.5"), 3, "2.5", "0"])
def test_decimals_accept_decimal_int_and_string(value: object) -> None:
    got = preferences_from_fields("u1", {"preferred_bias_bps": value}, known_venues=VENUES)
    assert got.preferred_bias_bps == Decimal(str(value))


def test_as_message_round_trips_through_the_topic() -> None:
    original = preferences_from_fields(
        "alice",
        {**ALICE_CONFIG, "excluded_venues": ["okx", "kraken"], "max_order_notional": "1234.50"},
        known_venues=VENUES,
    )
    body = original.as_message()

    assert body["v"] == 1
    assert body["preferred_bias_bps"] == "5"
    assert body["max_order_notional"] == "1234.5"
    assert body["max_slippage_bps"] == "10"
    assert body["excluded_venues"] == ["kraken", "okx"]
    prefs = store()
    assert prefs.apply_message(b"alice", orjson.dumps(body)) == original


INVALID_FIELDS: list[tuple[str, dict[str, object]]] = [
    ("preferred_venues", {"preferred_venues": ["mtgox"]}),
    ("preferred_venues", {"preferred_venues": "binance"}),
    ("preferred_venues", {"preferred_venues": ["binance", "binance"]}),
    ("preferred_venues", {"preferred_venues": [7]}),
    ("excluded_venues", {"excluded_venues": ["nowhere"]}),
    ("excluded_venues", {"excluded_venues": None}),
    ("excluded_venues", {"preferred_venues": ["okx"], "excluded_venues": ["okx"]}),
    ("preferred_bias_bps", {"preferred_bias_bps": "-1"}),
    ("preferred_bias_bps", {"preferred_bias_bps": -1}),
    ("preferred_bias_bps", {"preferred_bias_bps": 1.5}),
    ("preferred_bias_bps", {"preferred_bias_bps": "1e3"}),
    ("preferred_bias_bps", {"preferred_bias_bps": True}),
    ("preferred_bias_bps", {"preferred_bias_bps": Decimal("NaN")}),
    ("preferred_bias_bps", {"preferred_bias_bps": "10001"}),
    ("preferred_bias_bps", {"preferred_bias_bps": None}),
    ("risk_tolerance", {"risk_tolerance": "reckless"}),
    ("risk_tolerance", {"risk_tolerance": None}),
    ("max_slippage_bps", {"max_slippage_bps": "0"}),
    ("max_slippage_bps", {"max_slippage_bps": "abc"}),
    ("max_order_notional", {"max_order_notional": "-5"}),
    ("max_order_notional", {"max_order_notional": "1" * 41}),
    ("max_venues", {"max_venues": 0}),
    ("max_venues", {"max_venues": "2"}),
    ("strategy", {"strategy": "cheapest"}),
    ("strategy", {"strategy": "preferred"}),
    ("colour", {"colour": "blue"}),
]


@pytest.mark.parametrize(("field", "fields"), INVALID_FIELDS)
def test_every_invalid_field_is_rejected_with_its_name(field: str, fields: dict[str, object]) -> None:
    with pytest.raises(InvalidPreferences) as caught:
        preferences_from_fields("u1", fields, known_venues=VENUES)

    assert caught.value.field == field
    assert field in str(caught.value)
    assert caught.value.user_id == "u1"
    assert isinstance(caught.value, RouterError)


def test_venue_must_be_known_to_this_process() -> None:
    with pytest.raises(InvalidPreferences) as caught:
        preferences_from_fields("u1", {"preferred_venues": ["kraken"]}, known_venues=("binance",))
    assert caught.value.field == "preferred_venues"


@pytest.mark.parametrize("user_id", ["", "x" * 65, "has space", "naïve"])
def test_bad_user_id_is_rejected(user_id: str) -> None:
    with pytest.raises(InvalidPreferences) as caught:
        preferences_from_fields(user_id, {}, known_venues=VENUES)
    assert caught.value.field == "user_id"


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        (b"alice", b"{not json", "value"),
        (b"alice", b"[1, 2]", "value"),
        (b"alice", b"x" * (64 * 1024 + 1), "value"),
        (b"alice", orjson.dumps({"user_id": "alice"}), "v"),
        (b"alice", orjson.dumps({"v": 2, "user_id": "alice"}), "v"),
        (b"alice", orjson.dumps({"v": True, "user_id": "alice"}), "v"),
        (b"alice", orjson.dumps({"v": 1}), "user_id"),
        (None, orjson.dumps({"v": 1, "user_id": 42}), "user_id"),
        (None, orjson.dumps({"v": 1, "user_id": "bad id"}), "user_id"),
        (b"\xff", message(), "key"),
        (b"bad key", message(), "key"),
        (b"alice", message(risk_tolerance="extreme"), "risk_tolerance"),
        (b"alice", message(venue_bias=3), "venue_bias"),
    ],
)
def test_invalid_topic_record_is_rejected_with_the_field(key: bytes | None, value: bytes, field: str) -> None:
    prefs = store()

    with pytest.raises(InvalidPreferences) as caught:
        prefs.apply_message(key, value)

    assert caught.value.field == field
    assert prefs.get("alice") == alice()


def test_configured_preferences_must_be_filed_under_their_user() -> None:
    with pytest.raises(ValueError, match="bob"):
        PreferenceStore({"bob": alice()}, known_venues=VENUES)
