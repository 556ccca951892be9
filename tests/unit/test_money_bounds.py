"""Money at its edges: split rounding just below, at and above a half cent, zero, and
``MAX_AMOUNT_CENTS`` in splitting, parsing and the checks that use it. These pin rules planted
bugs slipped past."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upss import money, vetting
from upss.money import MAX_AMOUNT_CENTS, AmountTooLarge, parse_amount, split


def test_max_amount_is_the_largest_32_bit_integer():
    assert MAX_AMOUNT_CENTS == 2_147_483_647


@pytest.mark.parametrize("amount, bps, expected", [
    (4999, 1, (4999, 0)),       # 0.4999 cent: down
    (5000, 1, (4999, 1)),       # 0.5 cent exactly: up
    (5001, 1, (5000, 1)),       # 0.5001 cent: up
    (25, 1000, (22, 3)),        # 2.5 cents: half up, not to even
    (15_000, 1, (14_998, 2)),   # 1.5 cents: up
    (0, 1000, (0, 0)),          # nothing to split
    (1, 0, (1, 0)), (1, 10_000, (0, 1)),
])
def test_split_rounds_half_a_cent_up(amount, bps, expected):
    assert split(amount, bps) == expected


@pytest.mark.parametrize("bps, expected", [
    (0, (MAX_AMOUNT_CENTS, 0)),
    (1, (MAX_AMOUNT_CENTS - 214_748, 214_748)),        # 214748.3647 cents
    (1000, (MAX_AMOUNT_CENTS - 214_748_365, 214_748_365)),  # 214748364.7 cents
    (10_000, (0, MAX_AMOUNT_CENTS)),
])
def test_split_of_the_largest_amount(bps, expected):
    assert split(MAX_AMOUNT_CENTS, bps) == expected


@given(amount=st.integers(min_value=0, max_value=MAX_AMOUNT_CENTS),
       bps=st.integers(min_value=0, max_value=10_000))
def test_split_shares_sum_to_the_total_and_the_commission_is_exact_rounded(amount, bps):
    """For every storable amount: the shares sum to it, neither is negative, and the
    commission is the exact rate rounded half up (so within half a cent of exact)."""
    payout, commission = split(amount, bps)
    assert payout + commission == amount
    assert payout >= 0 and commission >= 0
    exact = Fraction(amount * bps, 10_000)
    assert abs(commission - exact) <= Fraction(1, 2)
    assert commission == int(exact + Fraction(1, 2))  # floor(exact + 1/2): half up


@given(amount=st.integers(min_value=0, max_value=MAX_AMOUNT_CENTS),
       low=st.integers(min_value=0, max_value=10_000), high=st.integers(min_value=0,
                                                                         max_value=10_000))
def test_a_higher_rate_never_gives_a_lower_commission(amount, low, high):
    low, high = sorted((low, high))
    assert split(amount, low)[1] <= split(amount, high)[1]


@pytest.mark.parametrize("text, cents", [("21474836.47", MAX_AMOUNT_CENTS),
                                         ("21474836.46", MAX_AMOUNT_CENTS - 1),
                                         ("0.01", 1)])
def test_parse_amount_accepts_up_to_the_largest_amount(text, cents):
    assert parse_amount(text, "EUR") == cents


@pytest.mark.parametrize("text", ["21474836.48", "21474837", "99999999999"])
def test_parse_amount_refuses_more_than_the_largest_amount(text):
    with pytest.raises(AmountTooLarge):
        parse_amount(text, "EUR")


def application(ceiling: int | None) -> vetting.ApplicationData:
    return vetting.ApplicationData(
        basis="age", birth_year=1950, languages=("en",), topics=(), available_from_minute=0,
        available_until_minute=1440, daily_limit=5, yearly_ceiling_cents=ceiling,
        payout_method="connect", iban=None, account_holder=None)


@pytest.mark.parametrize("ceiling", [None, 1, MAX_AMOUNT_CENTS])
def test_a_yearly_ceiling_up_to_the_largest_amount_is_accepted(ceiling):
    assert vetting.check(application(ceiling), date(2026, 1, 14)).yearly_ceiling_cents == ceiling


@pytest.mark.parametrize("ceiling", [0, -1, MAX_AMOUNT_CENTS + 1])
def test_a_yearly_ceiling_of_zero_or_above_the_largest_amount_is_refused(ceiling):
    with pytest.raises(vetting.VettingError):
        vetting.check(application(ceiling), date(2026, 1, 14))


def test_split_refuses_what_is_not_an_amount():
    for amount, bps in ((-1, 0), (1, -1), (1, 10_001)):
        with pytest.raises(ValueError):
            split(amount, bps)
    for amount, bps in ((False, 0), (1, True), (1.0, 0), (1, 0.0)):
        with pytest.raises(TypeError):
            split(amount, bps)
    assert money.BPS_DENOMINATOR == 10_000
