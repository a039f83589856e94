"""Canonical symbols and the separator-less venue form."""

from __future__ import annotations

import re

import pytest

from connectors.symbols import (
    concatenated_map,
    join_symbol,
    split_concatenated,
    split_symbol,
    to_concatenated,
    validate_symbol,
)


@pytest.mark.parametrize("symbol", ["BTC-USDT", "1INCH-USDT", "ETH-BTC"])
def test_canonical_symbols_are_accepted(symbol: str) -> None:
    assert validate_symbol(symbol) == symbol


@pytest.mark.parametrize("symbol", ["btc-usdt", "BTCUSDT", "BTC/USD", "BTC-", "-USDT", "BTC-USD-SWAP", ""])
def test_non_canonical_symbols_are_rejected_with_an_example(symbol: str) -> None:
    with pytest.raises(
        ValueError, match=re.escape("expected canonical BASE-QUOTE in upper case, e.g. 'BTC-USDT'")
    ):
        validate_symbol(symbol)


def test_split_and_join_round_trip() -> None:
    assert split_symbol("BTC-USDT") == ("BTC", "USDT")
    assert join_symbol("BTC", "USDT") == "BTC-USDT"
    with pytest.raises(ValueError):
        join_symbol("btc", "usdt")


def test_concatenated_form_has_no_separator() -> None:
    assert to_concatenated("BNB-USDT") == "BNBUSDT"


@pytest.mark.parametrize(
    ("venue_symbol", "parts"),
    [
        ("BTCUSDT", ("BTC", "USDT")),
        ("BTCFDUSD", ("BTC", "FDUSD")),
        ("ETHBTC", ("ETH", "BTC")),
        ("btcusdc", ("BTC", "USDC")),
        ("BTCUSD", ("BTC", "USD")),
        ("BTCEUR", ("BTC", "EUR")),
    ],
)
def test_split_concatenated_uses_the_longest_known_quote(venue_symbol: str, parts: tuple[str, str]) -> None:
    assert split_concatenated(venue_symbol) == parts


@pytest.mark.parametrize("venue_symbol", ["BTCXYZ", "USDT", ""])
def test_split_concatenated_without_known_quote_is_rejected(venue_symbol: str) -> None:
    with pytest.raises(ValueError, match="no known quote asset"):
        split_concatenated(venue_symbol)


def test_concatenated_map_is_exact_and_rejects_clashes() -> None:
    assert concatenated_map(["BTC-USDT", "ETH-BTC"]) == {"BTCUSDT": "BTC-USDT", "ETHBTC": "ETH-BTC"}
    with pytest.raises(ValueError, match="both map to venue symbol 'BTCUSDT'"):
        concatenated_map(["BTC-USDT", "BTCU-SDT"])
