"""Money as integer minor units (cents): splitting by basis points, parsing and formatting.

No floats anywhere: amounts are ``int`` cents and an ISO 4217 currency code; text is parsed
with ``Decimal`` and formatted with Babel for the reader's locale.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel import Locale
from babel.numbers import format_currency, get_currency_precision
from sqlalchemy import BigInteger, cast

BPS_DENOMINATOR = 10_000


def split(amount_cents: int, commission_bps: int) -> tuple[int, int]:
    """Split a payment into ``(answerer_payout, commission)``, exact to the cent.

    ``commission = (amount * bps + 5000) // 10000`` rounds half up; the payout is the rest, so
    ``payout + commission == amount`` always holds.
    """
    _require_int(amount_cents, "amount_cents")
    _require_int(commission_bps, "commission_bps")
    if amount_cents < 0:
        raise ValueError("amount_cents must not be negative")
    if not 0 <= commission_bps <= BPS_DENOMINATOR:
        raise ValueError("commission_bps must be between 0 and 10000")
    commission = (amount_cents * commission_bps + BPS_DENOMINATOR // 2) // BPS_DENOMINATOR
    return amount_cents - commission, commission


def payout_sql(amount_cents, commission_bps):
    """``split(amount_cents, commission_bps)[0]`` as a SQL expression over integer columns or
    values, for sums made in the database: the same half-up rounding, the product in 64 bits
    (a 32-bit price times 10 000 does not fit in 32). ``tests/flows/test_money_sql.py`` holds
    it equal to :func:`split` on SQLite and PostgreSQL."""
    commission = ((cast(amount_cents, BigInteger) * commission_bps + BPS_DENOMINATOR // 2)
                  // BPS_DENOMINATOR)
    return amount_cents - commission


def minor_units(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (2 for EUR, 0 for JPY)."""
    return get_currency_precision(currency)


#: The largest amount UPSS stores (the largest 32-bit integer of cents, over 21 million euros):
#: larger prices, ceilings and settings are refused when they are typed, not by the database.
MAX_AMOUNT_CENTS = 2**31 - 1


class AmountTooLarge(ValueError):
    """The amount is above ``MAX_AMOUNT_CENTS``."""


def parse_amount(text: str, currency: str) -> int:
    """Parse what a person typed ("12", "12.50", "12,50", "€ 12.5") into minor units.

    Raises ``ValueError`` for anything that is not a plain positive amount with at most the
    currency's number of decimals, ``AmountTooLarge`` above ``MAX_AMOUNT_CENTS``.
    """
    cleaned = (text or "").strip().replace("€", "").replace("\u00a0", "").replace(" ", "")
    cleaned = cleaned.upper().removeprefix(currency.upper()).removesuffix(currency.upper())
    if cleaned.count(",") == 1 and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    if not cleaned or not all(c.isdigit() or c == "." for c in cleaned) or cleaned.count(".") > 1:
        raise ValueError("not an amount")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise ValueError("not an amount") from exc
    scaled = value.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError("too many decimals")
    if scaled > MAX_AMOUNT_CENTS:
        raise AmountTooLarge("too large")
    return int(scaled)


def to_decimal(amount_cents: int, currency: str) -> Decimal:
    """The amount in major units as an exact Decimal (for display and Stripe-less exports)."""
    _require_int(amount_cents, "amount_cents")
    return Decimal(amount_cents).scaleb(-minor_units(currency))


def format_money(amount_cents: int, currency: str, locale: str = "en") -> str:
    """Format for people, e.g. ``format_money(1250, "EUR", "fi") == "12,50 €"``."""
    _require_int(amount_cents, "amount_cents")
    return _formatted(amount_cents, currency, str(locale))


@lru_cache(maxsize=32)
def _locale(name: str) -> Locale:
    """A parsed locale, parsed once per process (parsing cost as much as the formatting)."""
    return Locale.parse(name)


@lru_cache(maxsize=8192)
def _formatted(amount_cents: int, currency: str, locale: str) -> str:
    """The text of one amount in one locale: pages repeat the same prices many times."""
    return format_currency(to_decimal(amount_cents, currency), currency, locale=_locale(locale))


def _require_int(value, name: str) -> None:
    if type(value) is not int:  # bool is an int subclass: refuse it too
        raise TypeError(f"{name} must be an int of minor units, not {type(value).__name__}")
