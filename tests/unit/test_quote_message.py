"""The messages of smartroute.quotes: quotes with their depth and withdrawals, round trip, refusals,
size bound, the follower's dispatch, and age carried into the cache."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord
from contract import assert_valid, is_valid

from connectors.types import QUOTE_MESSAGE_MAX_LEVELS, Level, Quote, Withdrawal, quote_message_of
from daemon.app import Daemon
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.kafka import Publisher
from daemon.kafka.batches import MAX_REQUEST_SIZE
from daemon.quotes import QuoteFollower
from router.cache import PriceCache

D = Decimal
QUOTE = Quote(
    "okx", "BTC-USDT", Decimal("64000.10"), Decimal("0.5"), Decimal("64000.2"), Decimal("1.25"), 17, 99, 7
)
BIDS: tuple[Level, ...] = ((D("64000.10"), D("0.50000")), (D("63999.9"), D("2")), (D("63990"), D("0.001")))
ASKS: tuple[Level, ...] = ((D("64000.2"), D("1.25")), (D("64001.00"), D("3.1")))
BOOK = Quote("bybit", "BTC-USDT", BIDS[0][0], BIDS[0][1], ASKS[0][0], ASKS[0][1], 17, 99, 7, BIDS, ASKS)


def same_digits(a: Quote, b: Quote) -> bool:
    """Equal, and every decimal written the same way (a detector's ids and steps read the digits)."""
    return a == b and repr(a) == repr(b)


def test_quote_message_round_trips_exactly_and_matches_the_schema() -> None:
    message = QUOTE.as_message()
    assert_valid("quote", message)
    assert message["bid"] == "64000.10" and message["exchange_ns"] == 17 and message["seq"] == 7
    assert "bids" not in message and "asks" not in message  # a top-of-book quote: the v1 shape as before
    assert same_digits(Quote.from_message(message), QUOTE)


def test_a_book_quote_carries_its_levels_digit_for_digit() -> None:
    message = orjson.loads(orjson.dumps(BOOK.as_message()))
    assert_valid("quote", message)
    assert message["bids"][0] == ["64000.10", "0.50000"] and message["asks"][1] == ["64001.00", "3.1"]
    rebuilt = Quote.from_message(message)
    assert same_digits(rebuilt, BOOK) and rebuilt.bid_levels() == BIDS and rebuilt.ask_levels() == ASKS


@pytest.mark.parametrize(
    "change",
    [
        {"asks": None},  # bids without asks
        {"bids": []},
        {"bids": [["64000.10", "0.5"], ["64000.2", "1"]]},  # not descending
        {"asks": [["64000.2", "1.25"], ["64000.2", "1"]]},  # not strictly ascending
        {"bids": [["64000.00", "0.5"]]},  # not the quote's best bid
        {"bids": [["64000.10", "0.5"], ["63000", "0"]]},  # an empty level
        {"bids": [["64000.10", "0.5"], [63000, "1"]]},  # a JSON number
        {"bids": [["64000.10", "0.5", "1"]]},
        {"asks": [[f"{64000.2 + i:.1f}", "1"] for i in range(QUOTE_MESSAGE_MAX_LEVELS + 1)]},
    ],
)
def test_a_malformed_depth_is_refused(change: dict[str, object]) -> None:
    message = {**BOOK.as_message(), **change}
    message = {key: value for key, value in message.items() if value is not None}
    with pytest.raises(ValueError):
        Quote.from_message(message)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"bid": 64000.1},  # a JSON number, not a decimal string
        {"bid": "NaN"},
        {"ask": "0"},
        {"bid_qty": "-1"},
        {"venue": None},
        {"received_ns": True},
        {"seq": "7"},
    ],
)
def test_a_malformed_quote_message_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Quote.from_message(QUOTE.as_message() | change)


def test_a_quote_that_arrives_aged_is_stale_sooner() -> None:
    now = [10_000_000_000]
    cache = PriceCache(ttl_ms=30_000, max_quote_age_ms=1_500, clock_ns=lambda: now[0])
    cache.update(QUOTE, age_ns=1_000_000_000)  # one second in transit
    assert cache.fresh("BTC-USDT")["okx"].age_ns(now[0]) == 1_000_000_000
    now[0] += 600_000_000
    assert cache.fresh("BTC-USDT") == {}  # 1.6 s old: past max_quote_age_ms


def test_a_withdrawal_round_trips_and_is_told_from_a_quote() -> None:
    withdrawal = Withdrawal("kraken", "BTC-USD", "checksum", 1_764_000_000_000_000_000)
    message = withdrawal.as_message()
    assert_valid("quote-withdrawn", message)
    assert not is_valid("quote", message)  # a reader that predates it sees no quote in it
    assert quote_message_of(message) == withdrawal
    assert same_digits(quote_message_of(BOOK.as_message()), BOOK)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        {
            "v": 1,
            "event": "vanished",
            "venue": "okx",
            "symbol": "BTC-USDT",
            "reason": "gap",
            "received_ns": 1,
        },
        {
            "v": 2,
            "event": "withdrawn",
            "venue": "okx",
            "symbol": "BTC-USDT",
            "reason": "gap",
            "received_ns": 1,
        },
        {"v": 1, "event": "withdrawn", "venue": "okx", "symbol": "BTC-USDT", "received_ns": 1},
        {
            "v": 1,
            "event": "withdrawn",
            "venue": "okx",
            "symbol": "BTC-USDT",
            "reason": "gap",
            "received_ns": "1",
        },
    ],
)
def test_a_malformed_withdrawal_is_refused(message: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        quote_message_of(message)


def test_the_largest_quote_message_fits_in_a_kafka_record() -> None:
    wide = D("1234567890123456789.12345678901234567890")  # 40 characters, as wide as a venue writes
    bids = tuple((wide - i, wide) for i in range(QUOTE_MESSAGE_MAX_LEVELS))
    asks = tuple((wide + 1 + i, wide) for i in range(QUOTE_MESSAGE_MAX_LEVELS))
    quote = Quote("okx", "BTC-USDT", bids[0][0], wide, asks[0][0], wide, 1, 2, 3, bids, asks)
    message = orjson.dumps(quote.as_message())
    assert len(message) < MAX_REQUEST_SIZE // 4
    assert Quote.from_message(orjson.loads(message)) == quote


def write_config(tmp_path: Path, depth: int) -> Path:
    config = tmp_path / "smartroute.toml"
    config.write_text(
        f'[daemon]\nhttp_port = 0\nstate_dir = "{tmp_path}"\n[router]\nenabled = false\n'
        f'[venues.binance]\nsymbols = ["BTC-USDT"]\ndepth = {depth}\n'
    )
    return config


def test_feeds_refuse_a_depth_deeper_than_a_quote_message_carries(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, QUOTE_MESSAGE_MAX_LEVELS + 1), environ={})
    with pytest.raises(ConfigError, match=r"venues\.binance\.depth"):
        Daemon(cfg, roles=frozenset({"feeds", "publish_quotes"}))
    Daemon(cfg, roles=frozenset({"feeds", "detect"}))  # in one process, nothing crosses Kafka
    Daemon(
        load_config(write_config(tmp_path, QUOTE_MESSAGE_MAX_LEVELS), environ={}),
        roles=frozenset({"feeds", "publish_quotes"}),
    )


def record(value: bytes, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("smartroute.quotes", 0, offset, 0, 0, b"BTC-USDT", value, None, 8, len(value), ())


def test_the_follower_applies_quotes_and_withdrawals_in_order_and_sends_the_rest_to_the_dlq(
    tmp_path: Path,
) -> None:
    cfg = load_config(write_config(tmp_path, 10), environ={})
    seen: list[object] = []
    publisher = Publisher(cfg.kafka)
    follower = QuoteFollower(
        cfg.kafka,
        cfg.router.session_timeout_ms,
        lambda quote, age_ns: seen.append((quote, age_ns)),
        publisher,
        on_withdrawal=seen.append,
        wall_clock_ns=lambda: 150,
    )
    withdrawal = Withdrawal("bybit", "BTC-USDT", "gap", 120)
    for offset, value in enumerate(
        [
            orjson.dumps(BOOK.as_message()),
            orjson.dumps(withdrawal.as_message()),
            b'{"v": 1, "event": "x"}',
            b"[]",
        ]
    ):
        follower._apply(record(value, offset))
    assert seen == [(BOOK, 51), withdrawal]  # the age: received at 99, read at 150
    assert follower.invalid == 2 and publisher.buffered == 2  # both to the DLQ, nothing applied
