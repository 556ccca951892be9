"""Money: exact integer splits (property-based), parsing and formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upss.money import format_money, parse_amount, split


@given(amount=st.integers(min_value=1, max_value=10**9),
       bps=st.integers(min_value=0, max_value=10_000))
def test_split_is_exact_for_every_amount_and_rate(amount, bps):
    """payout + commission == amount, and the commission is the rate rounded half up."""
    payout, commission = split(amount, bps)
    assert type(payout) is int and type(commission) is int
    assert payout + commission == amount
    assert 0 <= commission <= amount
    # Rounded half up: |commission - amount*bps/10000| <= 1/2, ties going up (exact arithmetic).
    exact_times_10000 = amount * bps
    assert abs(commission * 10_000 - exact_times_10000) <= 5_000
    if commission * 10_000 - exact_times_10000 == -5_000:
        pytest.fail("a tie was rounded down")


@pytest.mark.parametrize("amount, bps, expected", [
    (1000, 1000, (900, 100)), (5, 1000, (4, 1)), (4, 1000, (4, 0)), (1, 5000, (0, 1)),
    (999, 0, (999, 0)), (999, 10_000, (0, 999)), (10**9, 1, (999_900_000, 100_000)),
])
def test_split_examples(amount, bps, expected):
    assert split(amount, bps) == expected


@pytest.mark.parametrize("amount, bps", [(1.5, 1000), (100, 1000.0), (True, 1000), (-1, 1000),
                                         (100, -1), (100, 10_001)])
def test_split_refuses_non_integers_and_bad_ranges(amount, bps):
    with pytest.raises((TypeError, ValueError)):
        split(amount, bps)


@pytest.mark.parametrize("text, cents", [("12", 1200), ("12.5", 1250), ("12,50", 1250),
                                         (" € 3 ", 300), ("EUR 100.00", 10000), ("0.01", 1)])
def test_parse_amount(text, cents):
    assert parse_amount(text, "EUR") == cents


@pytest.mark.parametrize("text", ["", "abc", "1.234", "1,2,3", "-4", "1e3", "12.5.0", "NaN",
                                  "Infinity", "1 000,00,0"])
def test_parse_amount_refuses(text):
    with pytest.raises(ValueError):
        parse_amount(text, "EUR")


def test_format_money_follows_the_locale():
    assert format_money(1250, "EUR", "en") == "€12.50"
    assert format_money(1250, "EUR", "fi") == "12,50\xa0€"
    assert format_money(123456, "EUR", "nb") == "1\xa0234,56\xa0€"
