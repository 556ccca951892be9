"""The organizer's business settings: stored in the database, defaults from config."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import bindparam, case, delete, func, select, true
from sqlalchemy.orm import Session

from . import audit, money
from .models import OffPeakWindow, OrganizerSettings, User, utcnow

WEEKDAYS = 7
_WINDOW_RE = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*[-–]\s*(\d{1,2})[:.](\d{2})\s*$")


@dataclass(frozen=True)
class Window:
    """Off-peak from ``start`` to ``end`` minutes after local midnight of ``weekday``.

    ``end <= start`` means the window crosses midnight into the next day.
    """

    weekday: int
    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True)
class Settings:
    """The settings in force. Every value comes from the stored row or, until the organizer
    first saves, from the ``UPSS_*`` defaults of ``upss/config.py``: that is the one place a
    default is written (``current``)."""

    currency: str
    price_min_cents: int
    price_max_cents: int
    commission_bps: int
    timezone: str
    offer_hours: int
    lock_hours: int
    lock_hours_large: int
    large_price_cents: int
    deadline_hours: int
    auto_accept_days: int
    urgent_hours: int
    release_max_per_run: int
    windows: tuple[Window, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def lock_hours_for(self, price_cents: int) -> int:
        """Hours an answerer may hold a question: longer for large questions."""
        return self.lock_hours_large if price_cents >= self.large_price_cents else self.lock_hours


_STORED = ("currency", "price_min_cents", "price_max_cents", "commission_bps", "timezone",
           "offer_hours", "lock_hours", "lock_hours_large", "large_price_cents",
           "deadline_hours", "auto_accept_days", "urgent_hours", "release_max_per_run")


class InvalidSetting(ValueError):
    """A setting value breaks a rule; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def parse_window(text: str) -> tuple[int, int]:
    """``"22:00-07:00"`` → ``(1320, 420)`` minutes; ValueError if it is not a window."""
    match = _WINDOW_RE.match(text or "")
    if not match:
        raise ValueError(f"not a window: {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"not a time of day: {text!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError("a window must not be empty")
    return start, end


def format_window(window: Window) -> str:
    return f"{window.start // 60:02d}:{window.start % 60:02d}–{window.end // 60:02d}:" \
           f"{window.end % 60:02d}"


def _defaults() -> dict:
    cfg = current_app.config
    return {
        "currency": cfg["UPSS_CURRENCY"], "price_min_cents": cfg["UPSS_PRICE_MIN_CENTS"],
        "price_max_cents": cfg["UPSS_PRICE_MAX_CENTS"],
        "commission_bps": cfg["UPSS_COMMISSION_BPS"],
        "timezone": cfg["BABEL_DEFAULT_TIMEZONE"], "offer_hours": cfg["UPSS_OFFER_HOURS"],
        "lock_hours": cfg["UPSS_LOCK_HOURS"], "lock_hours_large": cfg["UPSS_LOCK_HOURS_LARGE"],
        "large_price_cents": cfg["UPSS_LARGE_PRICE_CENTS"],
        "deadline_hours": cfg["UPSS_DEADLINE_HOURS"],
        "auto_accept_days": cfg["UPSS_AUTO_ACCEPT_DAYS"],
        "urgent_hours": cfg["UPSS_URGENT_HOURS"],
        "release_max_per_run": cfg["UPSS_RELEASE_MAX_PER_RUN"],
    }


_ROW, _WINDOWS = OrganizerSettings.__table__, OffPeakWindow.__table__
_WINDOW_COLUMNS = (_WINDOWS.c.weekday, _WINDOWS.c.start_minute, _WINDOWS.c.end_minute)
#: The stored row with each of its windows (a row of NULLs when there are none), built once:
#: most requests and every claim read the settings, so the usual case is one statement.
_CURRENT = (select(*(_ROW.c[name] for name in _STORED), *_WINDOW_COLUMNS)
            .select_from(_ROW.outerjoin(_WINDOWS, true()))
            .where(_ROW.c.id == select(func.min(_ROW.c.id)).scalar_subquery())
            .order_by(_WINDOWS.c.weekday, _WINDOWS.c.start_minute))


def _stored_or(column: str, default: str):
    """The stored row's ``column``, else the parameter ``default`` (SQL)."""
    return func.coalesce(select(_ROW.c[column]).where(
        _ROW.c.id == select(func.min(_ROW.c.id)).scalar_subquery()).scalar_subquery(),
        bindparam(default))


def lock_hours_sql(price_cents):
    """:meth:`Settings.lock_hours_for` as a SQL expression of ``price_cents``, reading the
    settings in force where the statement runs (the stored row, else the configured values:
    pass :func:`lock_defaults` with the statement). The claim sets its lock with it, without
    reading the settings first."""
    return case((price_cents >= _stored_or("large_price_cents", "default_large_price_cents"),
                 _stored_or("lock_hours_large", "default_lock_hours_large")),
                else_=_stored_or("lock_hours", "default_lock_hours"))


def lock_defaults() -> dict[str, int]:
    """The parameters of :func:`lock_hours_sql`: the configured values."""
    cfg = current_app.config
    return {"default_large_price_cents": cfg["UPSS_LARGE_PRICE_CENTS"],
            "default_lock_hours_large": cfg["UPSS_LOCK_HOURS_LARGE"],
            "default_lock_hours": cfg["UPSS_LOCK_HOURS"]}


def current(session: Session) -> Settings:
    """The settings in force: the stored row and its windows, else the configured defaults
    (windows included: :func:`save` writes the windows only with the row). One statement,
    sent on the session's connection (no autoflush: :func:`save` flushes before it reads)."""
    rows = session.connection().execute(_CURRENT).all()
    if not rows:
        start, end = parse_window(current_app.config["UPSS_OFFPEAK_WINDOW"])
        return Settings(**_defaults(),
                        windows=tuple(Window(day, start, end) for day in range(WEEKDAYS)))
    values = dict(zip(_STORED, rows[0][:len(_STORED)], strict=True))
    return Settings(**values, windows=tuple(Window(*row[len(_STORED):]) for row in rows
                                            if row[len(_STORED)] is not None))


def save(session: Session, new: Settings, actor: User | None = None) -> Settings:
    """Store ``new`` as the settings in force (checked first); returns what is stored. The
    audit log gets the settings before and after (``actor``: who changed them)."""
    _check(new)
    before = _audit_view(current(session))
    row = session.scalar(select(OrganizerSettings).order_by(OrganizerSettings.id).limit(1))
    if row is None:
        row = OrganizerSettings()
        session.add(row)
    for name in _STORED:
        setattr(row, name, getattr(new, name))
    row.updated_at = utcnow()
    session.execute(delete(OffPeakWindow))
    for w in new.windows:
        session.add(OffPeakWindow(weekday=w.weekday, start_minute=w.start, end_minute=w.end))
    session.flush()
    stored = current(session)
    audit.record(session, actor, "change settings", "settings", before, _audit_view(stored))
    return stored


def _audit_view(s: Settings) -> dict:
    """The settings as the audit log shows them (windows as "day start-end" lines)."""
    view = {f.name: getattr(s, f.name) for f in fields(s) if f.name != "windows"}
    view["windows"] = [f"{w.weekday} {w.start}-{w.end}" for w in s.windows]
    return view


def _check(s: Settings) -> None:
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, a long name
        raise InvalidSetting("timezone", f"unknown timezone {s.timezone!r}") from None
    if not 0 <= s.commission_bps <= 10_000:
        raise InvalidSetting("commission_bps", "commission must be 0 to 10000 basis points")
    if not 0 < s.price_min_cents <= s.price_max_cents:
        raise InvalidSetting("price_max_cents", "the lowest price must be above 0 and not "
                                                "above the highest")
    for name in ("price_max_cents", "large_price_cents"):
        if getattr(s, name) > money.MAX_AMOUNT_CENTS:
            raise InvalidSetting(name, f"{name} is larger than UPSS stores")
    for f in fields(s):
        value = getattr(s, f.name)
        if f.name.endswith(("_hours", "_days", "_per_tick")) and (type(value) is not int
                                                                   or value < 1):
            raise InvalidSetting(f.name, f"{f.name} must be a whole number of at least 1")
    for w in s.windows:
        if not (0 <= w.weekday < WEEKDAYS and 0 <= w.start < 1440 and 0 <= w.end <= 1440
                and w.start != w.end):
            raise InvalidSetting("windows", f"bad window {w}")
