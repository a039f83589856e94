"""decimal_text: how every price, quantity and amount is written into a Kafka message."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest

from connectors.types import decimal_text

CASES = [
    ("0", "0"),
    ("-0", "0"),
    ("0.000", "0"),
    ("-0.000", "0"),
    ("0E-8", "0"),
    ("0E+3", "0"),
    ("100", "100"),
    ("1E+2", "100"),
    ("1.0E+1", "10"),
    ("100.15000", "100.15"),
    ("-100.10", "-100.1"),
    ("-0.00100", "-0.001"),
    ("5E-7", "0.0000005"),
    ("123.4500E-10", "0.000000012345"),
    ("0.9230769230769230769230769230769231", "0.9230769230769230769230769230769231"),
]


@pytest.mark.parametrize(("value", "text"), CASES)
def test_plain_digits_without_trailing_zeros(value: str, text: str) -> None:
    with localcontext() as ctx:
        ctx.prec = 60
        assert decimal_text(Decimal(value)) == text


def test_it_writes_what_normalize_writes_under_the_current_context() -> None:
    """A value longer than the context's precision is rounded as `normalize()` rounds it, as before."""
    long = Decimal("123456789012345678901234567890.123")  # 33 digits
    with localcontext() as ctx:
        ctx.prec = 28
        assert decimal_text(long) == format(long.normalize(), "f") == "123456789012345678901234567900"
    with localcontext() as ctx:
        ctx.prec = 40
        assert decimal_text(long) == "123456789012345678901234567890.123"


@pytest.mark.parametrize("value", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"])
def test_a_value_that_is_not_finite_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a finite decimal"):
        decimal_text(Decimal(value))
