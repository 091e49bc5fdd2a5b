"""Amounts of CNY as text and as integer fen (L{callcenter.trading.money})."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.trading.money import TooManyDecimals, format_cny, parse_cny


@pytest.mark.parametrize(
    "text, fen",
    [
        ("12.34", 1234),
        ("5", 500),
        ("0", 0),
        ("0.5", 50),
        ("0.05", 5),
        ("4.35", 435),  # 4.35 * 100 is 434.99999999999994 as a float
        ("1.15", 115),
        ("1450.00", 145000),
        (" 7.21 ", 721),
        ("007.10", 710),
        ("123456789012.99", 12345678901299),
    ],
)
def test_parse(text, fen):
    assert parse_cny(text) == fen


@pytest.mark.parametrize(
    "text, message",
    [
        ("-1.00", "'-1.00' is negative: an amount of CNY is 0 or more"),
        (" -5", "' -5' is negative: an amount of CNY is 0 or more"),
        ("", "'' is not an amount in CNY such as 12.34"),
        ("abc", "'abc' is not an amount in CNY such as 12.34"),
        ("1,234.00", "'1,234.00' is not an amount in CNY such as 12.34"),
        ("+5", "'+5' is not an amount in CNY such as 12.34"),
        ("1e3", "'1e3' is not an amount in CNY such as 12.34"),
        (".5", "'.5' is not an amount in CNY such as 12.34"),
        ("5.", "'5.' is not an amount in CNY such as 12.34"),
        ("1.2.3", "'1.2.3' is not an amount in CNY such as 12.34"),
        ("１２", "'１２' is not an amount in CNY such as 12.34"),  # full-width digits
        ("12 元", "'12 元' is not an amount in CNY such as 12.34"),
        (12.34, "12.34 is not text such as 12.34"),
        (None, "None is not text such as 12.34"),
    ],
)
def test_parse_refuses(text, message):
    with pytest.raises(ValueError) as raised:
        parse_cny(text)
    assert str(raised.value) == message
    assert not isinstance(raised.value, TooManyDecimals)


@pytest.mark.parametrize("text", ["12.345", "0.001", "1.230"])
def test_parse_refuses_fractions_of_a_fen(text):
    with pytest.raises(TooManyDecimals) as raised:
        parse_cny(text)
    assert str(raised.value) == f"{text!r} has more than 2 decimals: the smallest unit is 0.01 CNY"


@pytest.mark.parametrize(
    "fen, text",
    [(1234, "12.34"), (500, "5.00"), (5, "0.05"), (0, "0.00"), (-150, "-1.50"), (-5, "-0.05"),
     (145000, "1450.00")],
)
def test_format(fen, text):
    assert format_cny(fen) == text


@pytest.mark.parametrize("value", [12.34, 1.0, True, "12", None])
def test_format_refuses_anything_but_integer_fen(value):
    with pytest.raises(TypeError):
        format_cny(value)


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_is_the_same_amount(fen):
    assert parse_cny(format_cny(fen)) == fen
