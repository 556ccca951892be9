"""Read-only peak-shaving numbers and their charts for the organizer's audit pages.

Design overview
---------------
* **Traffic per hour.** ``traffic_by_hour()`` counts payments, offers and answers per local
  hour of day (``HourlyTraffic``) over the last days, in the organizer's timezone: it shows
  when questions arrive and when answerers work, so off-peak windows can be set where they
  shave the peak.
* **Queue depth.** ``queue_depth()`` reconstructs how many questions waited in the queue at
  each of ``sample_times()``: from the number queued now, walking the window's question events
  backwards (newest first), so only the window's events are read.
* The database counts per UTC hour (``GROUP BY`` the hour; at most 24 rows a day of the
  window), and Python moves each hour to the organizer's local hour, so the same code runs on
  SQLite and PostgreSQL and a page reads a few hundred rows whatever the table's size. (Local
  hours are exact for zones whose offset from UTC is whole hours, as in every UPSS country.)
* **The charts.** ``peak_shaving_svg()`` draws both as accessible inline SVG: the numbers are
  stated in each picture's description, series differ by dash pattern and marker as well as
  colour, and every label comes from the (translated) caller.

Nothing here writes: functions take a session and only read from it. Ledger statements and
CSV exports are in ``upss.statements``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Offer, Question, QuestionEvent

HOURS = 24


# --------------------------------------------------------------------------- peak shaving


@dataclass(frozen=True)
class HourlyTraffic:
    """Counts per local hour of day (index 0..23) over a period."""

    paid: list[int]
    offered: list[int]
    answered: list[int]


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")


def _utc_hours(session: Session, column, start: datetime, end: datetime
               ) -> list[tuple[datetime, int]]:
    """(UTC hour, count) of ``column``'s moments in [start, end), counted by the database."""
    if session.get_bind().dialect.name == "postgresql":
        bucket = func.date_trunc("hour", func.timezone("UTC", column))
    else:  # SQLite stores UTC as "YYYY-MM-DD HH:MM:SS[.ffffff]"
        bucket = func.strftime("%Y-%m-%d %H:00:00", column)
    rows = session.execute(select(bucket, func.count()).where(column >= start, column < end)
                           .group_by(bucket)).all()
    hours = []
    for hour, count in rows:
        if isinstance(hour, str):
            hour = datetime.fromisoformat(hour)
        hours.append((hour.replace(tzinfo=UTC), int(count)))
    return hours


def _by_local_hour(hours: Iterable[tuple[datetime, int]], zone: ZoneInfo) -> list[int]:
    counts = [0] * HOURS
    for at, count in hours:
        counts[at.astimezone(zone).hour] += count
    return counts


def traffic_by_hour(session: Session, now: datetime, zone: ZoneInfo,
                    days: int = 28) -> HourlyTraffic:
    """Questions paid, offers made and answers given per local hour over [now - days, now)."""
    _require_aware(now)
    start = now - timedelta(days=days)
    return HourlyTraffic(*(
        _by_local_hour(_utc_hours(session, column, start, now), zone)
        for column in (Question.paid_at, Offer.offered_at, Question.answered_at)))


def sample_times(now: datetime, days: int, step: timedelta) -> list[datetime]:
    """``now - days``, then every ``step``, up to and including ``now``."""
    _require_aware(now)
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    start = now - timedelta(days=days)
    samples = []
    at = start
    while at <= now:
        samples.append(at)
        at += step
    if samples[-1] != now:  # a step that does not divide the period: still end at now
        samples.append(now)
    return samples


def queue_depth(session: Session, now: datetime, days: int = 28,
                step: timedelta = timedelta(hours=6)) -> list[tuple[datetime, int]]:
    """How many questions were queued at each sample time from ``now - days`` to ``now``.

    Starts from the questions queued now and undoes the window's events newest first (an
    event into ``queued`` added one, out of it took one away), so the cost is the window's
    events, not every event ever. An event at exactly a sample time counts as before it.
    """
    samples = sample_times(now, days, step)
    queued = session.scalar(select(func.count()).select_from(Question)
                            .where(Question.status == "queued"))
    events = session.execute(
        select(QuestionEvent.at, QuestionEvent.from_status, QuestionEvent.to_status)
        .where(QuestionEvent.at > samples[0])
        .order_by(QuestionEvent.at.desc(), QuestionEvent.id.desc())).all()
    depth: list[tuple[datetime, int]] = []
    i = 0
    for t in reversed(samples):
        while i < len(events) and events[i].at > t:
            _, from_status, to_status = events[i]
            queued -= (to_status == "queued") - (from_status == "queued")
            i += 1
        depth.append((t, queued))
    return depth[::-1]


# --------------------------------------------------------------------------- SVG chart

#: viewBox width. A page 320 CSS px wide leaves the chart 280 px (288 without larger text), so
#: FONT_SIZE is drawn at 14.4 px or more there; CSS caps the width (``.chart svg``) so the text
#: does not grow past about 26 px on a wide screen.
VIEW_WIDTH = 272
FONT_SIZE = 14
#: Average width of a digit or letter of FONT_SIZE in sans-serif, to keep axis labels apart.
CHAR_WIDTH = FONT_SIZE * 0.62
INK = "#0b0c0c"
GRID = "#505a5f"


@dataclass(frozen=True)
class _Series:
    label: str
    values: Sequence[int]
    colour: str
    dash: str  # stroke-dasharray, "" for solid
    marker: str  # circle, square, triangle


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    if kind == "circle":
        return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="3.5" fill="{colour}"/>'
    if kind == "square":
        return (f'<rect x="{_fmt(x - 3.5)}" y="{_fmt(y - 3.5)}" width="7" height="7" '
                f'fill="#ffffff" stroke="{colour}" stroke-width="2"/>')
    points = " ".join(f"{_fmt(px)},{_fmt(py)}"
                      for px, py in ((x, y - 4.5), (x + 4.5, y + 3.5), (x - 4.5, y + 3.5)))
    return f'<polygon points="{points}" fill="{colour}"/>'


def _dash(dash: str) -> str:
    return f' stroke-dasharray="{dash}"' if dash else ""


def _text(x: float, y: float, text: object, anchor: str = "start") -> str:
    return (f'<text x="{_fmt(x)}" y="{_fmt(y)}" font-size="{FONT_SIZE}" fill="{INK}" '
            f'text-anchor="{anchor}">{escape(text)}</text>')


def _axis_top(peak: int) -> tuple[int, int]:
    """A round top for a y axis showing ``peak`` and the tick step (at most 4 steps)."""
    if peak <= 0:
        return 1, 1
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if -(-peak // step) <= 4:
                return step * -(-peak // step), step
        magnitude *= 10


def _svg_open(ids: str, height: int, title: str, desc: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {VIEW_WIDTH} '
            f'{height}" width="100%" aria-labelledby="{ids}-title {ids}-desc" '
            f'font-family="sans-serif"><title id="{ids}-title">{escape(title)}</title>'
            f'<desc id="{ids}-desc">{escape(desc)}</desc>')


def _y_grid(parts: list[str], left: float, right: float, top: float, bottom: float,
            axis_top: int, step: int) -> None:
    for tick in range(0, axis_top + 1, step):
        y = bottom - (bottom - top) * tick / axis_top
        parts.append(f'<line x1="{_fmt(left)}" y1="{_fmt(y)}" x2="{_fmt(right)}" '
                     f'y2="{_fmt(y)}" stroke="{GRID}" stroke-width="0.5"'
                     f'{_dash("" if tick == 0 else "1 3")}/>')
        parts.append(_text(left - 6, y + FONT_SIZE / 3, tick, "end"))


def _peak(values: Sequence[int]) -> tuple[int, int]:
    """(hour, count) of the largest count; the earliest hour on a tie."""
    best = max(range(len(values)), key=lambda h: (values[h], -h))
    return best, values[best]


def _hours_svg(series: list[_Series], caption: str) -> str:
    legend_top = 8
    row = FONT_SIZE + 8
    top = legend_top + row * len(series) + 12
    left, right = 36.0, VIEW_WIDTH - 10.0
    plot_h = 150
    bottom = top + plot_h
    height = int(bottom + FONT_SIZE + 14)
    desc = f"{caption}. " + " ".join(
        f"{s.label}: {_peak(s.values)[0]:02d}:00 ({_peak(s.values)[1]})." for s in series)
    parts = [_svg_open("upss-peak-hours", height, caption, desc)]
    for n, s in enumerate(series):  # the legend: line sample, marker, label
        y = legend_top + row * n + row / 2
        parts.append(f'<line x1="4" y1="{_fmt(y)}" x2="34" y2="{_fmt(y)}" stroke="{s.colour}" '
                     f'stroke-width="2.5"{_dash(s.dash)}/>')
        parts.append(_marker(s.marker, 19, y, s.colour))
        parts.append(_text(42, y + FONT_SIZE / 3, s.label))
    axis_top, step = _axis_top(max(max(s.values, default=0) for s in series))
    _y_grid(parts, left, right, top, bottom, axis_top, step)
    width = (right - left) / HOURS

    def x_of(hour: int) -> float:
        return left + width * (hour + 0.5)

    for hour in (0, 6, 12, 18):
        parts.append(_text(x_of(hour), bottom + FONT_SIZE + 6, f"{hour:02d}", "middle"))
    for s in series:
        points = [(x_of(h), bottom - plot_h * v / axis_top) for h, v in enumerate(s.values)]
        parts.append(f'<polyline fill="none" stroke="{s.colour}" stroke-width="2.5" '
                     f'stroke-linejoin="round"{_dash(s.dash)} points="'
                     + " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points) + '"/>')
        parts.extend(_marker(s.marker, x, y, s.colour) for x, y in points)
    parts.append("</svg>")
    return "".join(parts)


def _when(at: datetime, with_time: bool = True) -> str:
    text = at.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")
    zone = at.strftime("%Z") if with_time else ""
    return f"{text} {zone}".strip()


def _depth_svg(depth: Sequence[tuple[datetime, int]], label: str, caption: str,
               colour: str) -> str:
    legend_y = 8 + (FONT_SIZE + 8) / 2
    top = legend_y + FONT_SIZE + 12
    left, right = 36.0, VIEW_WIDTH - 14.0
    plot_h = 150
    bottom = top + plot_h
    height = int(bottom + FONT_SIZE + 14)
    if depth:
        peak_at, peak = max(depth, key=lambda p: (p[1], -p[0].timestamp()))
        desc = (f"{caption}. {_when(depth[0][0])} – {_when(depth[-1][0])}. "
                f"{label}: {_when(peak_at)} ({peak}); {_when(depth[-1][0])} ({depth[-1][1]}).")
    else:
        peak, desc = 0, f"{caption}."
    parts = [_svg_open("upss-peak-depth", height, caption, desc)]
    parts.append(f'<line x1="4" y1="{_fmt(legend_y)}" x2="34" y2="{_fmt(legend_y)}" '
                 f'stroke="{colour}" stroke-width="2.5"/>')
    parts.append(_text(42, legend_y + FONT_SIZE / 3, label))
    axis_top, step = _axis_top(peak)
    _y_grid(parts, left, right, top, bottom, axis_top, step)
    if depth:
        first, last = depth[0][0], depth[-1][0]
        span = (last - first).total_seconds() or 1.0

        def x_of(at: datetime) -> float:
            return left + (right - left) * (at - first).total_seconds() / span

        with_time = last - first <= timedelta(days=2)

        def tick_text(at: datetime) -> str:
            return at.strftime("%H:%M") if with_time else _when(at, with_time=False)

        ticks = [(first, "start"), (last, "end")]
        middle = depth[len(depth) // 2][0]
        # The middle label only where three fit side by side with a gap (times do, dates not).
        if len(depth) > 2 and 3 * (len(tick_text(middle)) + 1) * CHAR_WIDTH <= right - left:
            ticks.insert(1, (middle, "middle"))
        for at, anchor in ticks:
            parts.append(_text(x_of(at), bottom + FONT_SIZE + 6, tick_text(at), anchor))
        points = " ".join(f"{_fmt(x_of(at))},{_fmt(bottom - plot_h * n / axis_top)}"
                          for at, n in depth)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" '
                     f'stroke-linejoin="round" points="{points}"/>')
        end_y = bottom - plot_h * depth[-1][1] / axis_top
        parts.append(_marker("circle", x_of(last), end_y, colour))
    parts.append("</svg>")
    return "".join(parts)


def peak_shaving_svg(traffic: HourlyTraffic, depth: list[tuple[datetime, int]], *,
                     title_paid: str, title_offered: str, title_answered: str,
                     title_depth: str, caption_hours: str, caption_depth: str) -> Markup:
    """Two accessible inline SVG charts: traffic per hour of day and queue depth over time.

    ``caption_*`` become each picture's title and start its description; the description then
    gives, per series, the busiest hour and its count (and for the queue the period, its
    highest point and the latest value), so the meaning does not depend on seeing the picture.
    Times in ``depth`` are shown as given: convert them to the organizer's zone first. The
    element ids are fixed, so use it once per page.
    """
    series = [
        _Series(title_paid, traffic.paid, INK, "", "circle"),
        _Series(title_offered, traffic.offered, "#1d70b8", "7 4", "square"),
        _Series(title_answered, traffic.answered, "#00703c", "2 3", "triangle"),
    ]
    for s in series:
        if len(s.values) != HOURS:
            raise ValueError(f"{len(s.values)} hourly values instead of {HOURS}")
    return Markup(_hours_svg(series, caption_hours)  # noqa: S704 - every text is escaped
                  + _depth_svg(depth, title_depth, caption_depth, "#d4351c"))
