"""``settings.current`` reads the settings in force in one statement: the stored row with its
windows, in order; a saved row without windows means no off-peak at all; before the organizer
first saves, the configured defaults and window on every day."""

from __future__ import annotations

from tests.conftest import count_statements
from upss import settings
from upss.extensions import db


def read(app) -> tuple[settings.Settings, int]:
    """The settings in force, and how many statements reading them sent."""
    with app.app_context():
        with count_statements() as seen:
            current = settings.current(db.session)
        db.session.rollback()
    return current, len([s for s in seen if not s.startswith("BEGIN")])


def save(app, **changes) -> None:
    with app.app_context():
        before = settings.current(db.session)
        settings.save(db.session, settings.Settings(**{
            **{f: getattr(before, f) for f in settings._STORED}, **changes}))
        db.session.commit()


def windows(s: settings.Settings) -> list[tuple[int, int, int]]:
    return [(w.weekday, w.start, w.end) for w in s.windows]


def test_before_the_first_save_the_defaults_and_the_configured_window_every_day(app):
    app.config["UPSS_OFFPEAK_WINDOW"] = "21:30-06:00"
    current, statements = read(app)
    assert statements == 1
    assert windows(current) == [(day, 1290, 360) for day in range(7)]
    assert current.commission_bps == app.config["UPSS_COMMISSION_BPS"]


def test_the_saved_row_and_its_windows_in_order_in_one_statement(app):
    save(app, commission_bps=1234, release_max_per_run=3, windows=(
        settings.Window(6, 1200, 1380), settings.Window(2, 60, 120),
        settings.Window(6, 540, 720), settings.Window(0, 1320, 420)))
    current, statements = read(app)
    assert statements == 1
    assert (current.commission_bps, current.release_max_per_run) == (1234, 3)
    assert windows(current) == [(0, 1320, 420), (2, 60, 120), (6, 540, 720), (6, 1200, 1380)]


def test_a_saved_row_without_windows_has_no_off_peak_time(app):
    """Not the configured window: the organizer removed every window."""
    save(app, commission_bps=900, windows=())
    current, statements = read(app)
    assert statements == 1
    assert (current.commission_bps, current.windows) == (900, ())


def test_saving_again_replaces_the_windows(app):
    save(app, windows=(settings.Window(1, 0, 60), settings.Window(3, 0, 60)))
    save(app, windows=(settings.Window(4, 600, 660),))
    current, _ = read(app)
    assert windows(current) == [(4, 600, 660)]
