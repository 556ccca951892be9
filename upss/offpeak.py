"""Off-peak windows: is a moment inside one? Timezone-aware, windows may cross midnight.

Windows are written in the organizer's local time (default Europe/Oslo), so "22:00–07:00" means
22:00 to 07:00 on the wall clock on every day, including the two days a year the clocks change:
each moment is converted to local time first, then compared with the window.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from .settings import Settings, Window


def local_minute(now: datetime, zone: ZoneInfo) -> tuple[int, int]:
    """``(weekday, minute after midnight)`` of the aware moment ``now`` in ``zone``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(zone)
    return local.weekday(), local.hour * 60 + local.minute


def window_contains(window: Window, weekday: int, minute: int) -> bool:
    """Whether local ``(weekday, minute)`` falls inside ``window`` (start inclusive, end not)."""
    if not window.crosses_midnight:
        return window.weekday == weekday and window.start <= minute < window.end
    if window.weekday == weekday and minute >= window.start:
        return True
    return (window.weekday + 1) % 7 == weekday and minute < window.end


def is_off_peak(now: datetime, settings: Settings) -> bool:
    """Whether ``now`` is inside one of the organizer's off-peak windows."""
    weekday, minute = local_minute(now, settings.zone)
    return any(window_contains(w, weekday, minute) for w in settings.windows)


def daily_hours_contain(now: datetime, zone: ZoneInfo, start: int, end: int) -> bool:
    """Whether ``now`` falls in the same daily hours every day (``end <= start`` crosses
    midnight; 0–1440 is all day)."""
    return minute_in_daily_hours(local_minute(now, zone)[1], start, end)


def minute_in_daily_hours(minute: int, start: int, end: int) -> bool:
    """:func:`daily_hours_contain` for a local minute after midnight already known."""
    if start == 0 and end >= 1440:
        return True
    if end > start:
        return start <= minute < end
    return minute >= start or minute < end
