"""Off-peak windows with explicit moments: midnight crossings and Europe/Oslo's DST days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from upss.offpeak import is_off_peak
from upss.settings import Settings, Window, parse_window

EVERY_NIGHT = tuple(Window(day, 22 * 60, 7 * 60) for day in range(7))


def settings(windows=EVERY_NIGHT, timezone="Europe/Oslo") -> Settings:
    return Settings("EUR", 300, 10000, 1000, timezone=timezone, offer_hours=12, lock_hours=4,
                    lock_hours_large=8, large_price_cents=10000, deadline_hours=72,
                    auto_accept_days=3, urgent_hours=12, release_max_per_run=5,
                    windows=windows)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("moment, inside", [
    # An ordinary winter day (CET, UTC+1): 22:00 local is 21:00 UTC.
    (utc(2026, 1, 14, 20, 59), False), (utc(2026, 1, 14, 21, 0), True),
    (utc(2026, 1, 14, 23, 30), True),  # 00:30 local, the next day: still the same window
    (utc(2026, 1, 15, 5, 59), True), (utc(2026, 1, 15, 6, 0), False),
    (utc(2026, 1, 15, 12, 0), False),
    # Summer (CEST, UTC+2): 22:00 local is 20:00 UTC.
    (utc(2026, 7, 1, 19, 59), False), (utc(2026, 7, 1, 20, 0), True),
    (utc(2026, 7, 2, 4, 59), True), (utc(2026, 7, 2, 5, 0), False),
    # Spring forward, Sunday 29 March 2026: 02:00 CET becomes 03:00 CEST.
    (utc(2026, 3, 29, 0, 59), True),   # 01:59 CET
    (utc(2026, 3, 29, 1, 0), True),    # 03:00 CEST
    (utc(2026, 3, 29, 4, 59), True),   # 06:59 CEST
    (utc(2026, 3, 29, 5, 0), False),   # 07:00 CEST: the window ends on the wall clock
    (utc(2026, 3, 28, 5, 59), True),   # the day before, still CET: 06:59
    (utc(2026, 3, 28, 6, 0), False),   # 07:00 CET
    (utc(2026, 3, 29, 19, 59), False), (utc(2026, 3, 29, 20, 0), True),  # 22:00 CEST
    # Fall back, Sunday 25 October 2026: 03:00 CEST becomes 02:00 CET (02:xx happens twice).
    (utc(2026, 10, 25, 0, 30), True),  # 02:30 CEST
    (utc(2026, 10, 25, 1, 30), True),  # 02:30 CET, the second time
    (utc(2026, 10, 25, 5, 59), True),  # 06:59 CET
    (utc(2026, 10, 25, 6, 0), False),  # 07:00 CET
    (utc(2026, 10, 24, 4, 59), True), (utc(2026, 10, 24, 5, 0), False),  # 07:00 CEST
    (utc(2026, 10, 25, 20, 59), False), (utc(2026, 10, 25, 21, 0), True),  # 22:00 CET
])
def test_every_night_window_in_oslo(moment, inside):
    assert is_off_peak(moment, settings()) is inside


def test_a_window_belongs_to_the_weekday_it_starts_on():
    """Friday 22:00–Saturday 07:00 only: Saturday 23:00 is not off-peak, Saturday 06:00 is."""
    friday_night = settings(windows=(Window(4, 22 * 60, 7 * 60),))
    assert is_off_peak(utc(2026, 1, 16, 21, 0), friday_night)       # Fri 22:00 CET
    assert is_off_peak(utc(2026, 1, 17, 5, 0), friday_night)        # Sat 06:00
    assert not is_off_peak(utc(2026, 1, 17, 22, 0), friday_night)   # Sat 23:00
    assert not is_off_peak(utc(2026, 1, 16, 5, 0), friday_night)    # Fri 06:00


def test_sunday_night_window_crosses_into_monday():
    sunday_night = settings(windows=(Window(6, 23 * 60, 2 * 60),))
    assert is_off_peak(utc(2026, 1, 19, 0, 30), sunday_night)       # Mon 01:30 CET
    assert not is_off_peak(utc(2026, 1, 20, 0, 30), sunday_night)   # Tue 01:30


def test_daytime_window_and_other_timezones():
    helsinki_lunch = settings(windows=tuple(Window(d, 13 * 60, 14 * 60) for d in range(7)),
                              timezone="Europe/Helsinki")
    assert is_off_peak(utc(2026, 1, 14, 11, 0), helsinki_lunch)     # 13:00 EET
    assert not is_off_peak(utc(2026, 1, 14, 12, 0), helsinki_lunch)  # 14:00 EET


def test_no_windows_means_never_off_peak():
    assert not is_off_peak(utc(2026, 1, 14, 23, 0), settings(windows=()))


def test_naive_moments_are_refused():
    with pytest.raises(ValueError):
        is_off_peak(datetime(2026, 1, 1, 23, 0), settings())


@pytest.mark.parametrize("text, minutes", [("22:00-07:00", (1320, 420)),
                                           ("9.30 – 11.00", (570, 660)),
                                           ("00:00-24:00", (0, 1440))])
def test_parse_window(text, minutes):
    assert parse_window(text) == minutes


@pytest.mark.parametrize("text", ["", "22-07", "25:00-07:00", "10:00-10:00", "10:61-11:00",
                                  "24:30-01:00"])
def test_parse_window_refuses(text):
    with pytest.raises(ValueError):
        parse_window(text)
