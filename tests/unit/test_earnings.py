"""The weekly payout date shown to answerers (Mondays 09:00, organizer's timezone)."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from upss.earnings import next_payout_date

OSLO = ZoneInfo("Europe/Oslo")


@pytest.mark.parametrize("moment, expected", [
    (datetime(2026, 11, 22, 12, tzinfo=UTC), date(2026, 11, 23)),   # Sunday -> Monday
    (datetime(2026, 11, 23, 7, 59, tzinfo=UTC), date(2026, 11, 23)),  # Mon 08:59 Oslo: today
    (datetime(2026, 11, 23, 8, 0, tzinfo=UTC), date(2026, 11, 30)),   # Mon 09:00 Oslo: next week
    (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), date(2026, 11, 30)),  # already Monday in Oslo
])
def test_next_payout_date(moment, expected):
    assert next_payout_date(moment, OSLO) == expected
