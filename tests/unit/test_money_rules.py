"""Money rules planted bugs slipped past: what a page shows can be typed back, currencies
without cents, the default locale, and why an amount or a split is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from upss.money import (
    AmountTooLarge,
    format_money,
    minor_units,
    parse_amount,
    split,
    to_decimal,
)


@pytest.mark.parametrize("cents", [1, 1250, 123456, 99_999_999])
@pytest.mark.parametrize("locale", ["fi", "nb"])
def test_an_amount_as_a_page_shows_it_parses_back(cents, locale):
    """Finnish and Norwegian pages write "1 234,56 €" with no-break spaces: typed (or pasted)
    back, it is the same amount."""
    shown = format_money(cents, "EUR", locale)
    assert "\u00a0" in shown
    assert parse_amount(shown, "EUR") == cents


@pytest.mark.parametrize("text", ["100 EUR", "100eur", "EUR100", "eur 100,00", "100,00 EUR"])
def test_the_currency_code_may_come_before_or_after_the_amount(text):
    assert parse_amount(text, "EUR") == 10000


def test_a_currency_without_cents_is_parsed_counted_and_shown_in_whole_units():
    """JPY has no minor unit: 500 yen are 500, not 50000, and are shown as ¥500."""
    assert minor_units("JPY") == 0
    assert minor_units("EUR") == 2
    assert parse_amount("500", "JPY") == 500
    with pytest.raises(ValueError, match="too many decimals"):
        parse_amount("500.5", "JPY")
    assert to_decimal(500, "JPY") == Decimal(500)
    assert format_money(500, "JPY", "en") == "¥500"


def test_amounts_are_shown_in_english_unless_a_locale_is_given():
    assert format_money(1250, "EUR") == "€12.50"


@pytest.mark.parametrize("text, error, message", [
    ("", ValueError, "not an amount"), (None, ValueError, "not an amount"),
    ("abc", ValueError, "not an amount"), (".", ValueError, "not an amount"),
    ("€ .", ValueError, "not an amount"), ("1..2", ValueError, "not an amount"),
    ("1.2.3", ValueError, "not an amount"), ("1,2,3", ValueError, "not an amount"),
    ("1,000.50", ValueError, "not an amount"),
    ("12.345", ValueError, "too many decimals"), ("0.001", ValueError, "too many decimals"),
    ("21474836.48", AmountTooLarge, "too large"),
])
def test_parse_amount_says_why_it_refuses(text, error, message):
    with pytest.raises(error) as refused:
        parse_amount(text, "EUR")
    assert str(refused.value) == message
    assert type(refused.value) is error


@pytest.mark.parametrize("amount, bps, error, message", [
    (1.5, 1000, TypeError, "amount_cents must be an int of minor units, not float"),
    (True, 1000, TypeError, "amount_cents must be an int of minor units, not bool"),
    (100, 1000.0, TypeError, "commission_bps must be an int of minor units, not float"),
    (100, None, TypeError, "commission_bps must be an int of minor units, not NoneType"),
    (-1, 1000, ValueError, "amount_cents must not be negative"),
    (100, -1, ValueError, "commission_bps must be between 0 and 10000"),
    (100, 10_001, ValueError, "commission_bps must be between 0 and 10000"),
])
def test_split_names_the_argument_it_refuses(amount, bps, error, message):
    with pytest.raises(error) as refused:
        split(amount, bps)
    assert (type(refused.value), str(refused.value)) == (error, message)


@pytest.mark.parametrize("amount, name", [(12.5, "float"), ("1250", "str"), (None, "NoneType")])
def test_to_decimal_refuses_anything_but_int_cents(amount, name):
    with pytest.raises(TypeError) as refused:
        to_decimal(amount, "EUR")
    assert str(refused.value) == f"amount_cents must be an int of minor units, not {name}"
