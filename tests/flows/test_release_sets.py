"""The release run is set-based, and what a drill with explicit times found: the yearly ceiling
counts the question offered and the answerer's open work, the year is the answerer's own, a
question past its deadline is never offered, and an offer made in a run counts at once."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.conftest import plan_of
from tests.flows.test_release import DAY, NIGHT, offers
from tests.flows.test_release_rules import earn
from upss import earnings, questions, release, settings
from upss.extensions import db
from upss.models import AnswererProfile, Notification, Offer, Question, QuestionEvent, User

#: A weekday noon in January (outside the off-peak window; the runs below ignore it).
JANUARY = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


def release_at(world, now: datetime) -> list[tuple[int, int]]:
    """Run the release at ``now`` regardless of the window: the (question, answerer) pairs."""
    made = world.run(release.release_due_questions, now, ignore_window=True)
    return [(o.question_id, o.answerer_id) for o in made]


# --- The yearly ceiling counts the question offered and the answerer's open work -------------

@pytest.mark.parametrize("price, offered", [(10000, False), (1200, False), (1100, True)])
def test_the_ceiling_counts_the_price_of_the_question_offered(app, world, price, offered):
    """At 4000 of a 5000 ceiling: a 100 EUR question (9000 to them) or a 12 EUR one (1080)
    would pass the ceiling and is not offered; an 11 EUR one (990: 4990) is."""
    a = world.answerer(yearly_ceiling_cents=5000)
    earn(app, a, 4000, JANUARY - timedelta(days=5))
    q = world.paid_question(paid_at=JANUARY - timedelta(hours=1), price_cents=price)
    assert release_at(world, JANUARY) == ([(q, a)] if offered else [])


def test_the_ceiling_counts_open_offers_and_claims(app, world):
    """At 0 of a 5000 ceiling, three questions of 2000 (1800 each to them): two fit (3600), the
    third would make 5400, in the same run or a later one, and a claim still counts."""
    a = world.answerer(yearly_ceiling_cents=5000)
    ids = [world.paid_question(paid_at=JANUARY - timedelta(hours=1), price_cents=2000)
           for _ in range(3)]
    assert release_at(world, JANUARY) == [(ids[0], a), (ids[1], a)]
    world.act(questions.claim, ids[0], a, JANUARY + timedelta(minutes=1))
    assert release_at(world, JANUARY + timedelta(minutes=5)) == []
    assert world.question(ids[2]).status == "queued"


def test_open_offers_count_across_runs(app, world):
    """One offer per run: the second run still sees the first offer's 1800 (3600 of 5000), the
    third finds no room."""
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 1
    a = world.answerer(yearly_ceiling_cents=5000)
    ids = [world.paid_question(paid_at=JANUARY - timedelta(hours=1), price_cents=2000)
           for _ in range(3)]
    assert release_at(world, JANUARY) == [(ids[0], a)]
    assert release_at(world, JANUARY + timedelta(minutes=5)) == [(ids[1], a)]
    assert release_at(world, JANUARY + timedelta(minutes=10)) == []


# --- The year of the ceiling starts in the answerer's own time zone ---------------------------

@pytest.mark.parametrize("zone, earned_at, gets_it", [
    # 18:30 on 31 December in New York (last year there), 00:30 on 1 January in Oslo.
    ("America/New_York", datetime(2025, 12, 31, 23, 30, tzinfo=UTC), True),
    # 01:00 on 1 January in Auckland (this year there), 13:00 on 31 December in Oslo.
    ("Pacific/Auckland", datetime(2025, 12, 31, 12, 0, tzinfo=UTC), False),
])
def test_the_year_of_the_ceiling_is_the_answerers_own(app, world, zone, earned_at, gets_it):
    """1800 earned around New Year: it counts for this year when it was 2026 on the answerer's
    own clock, whatever the organizer's clock (Europe/Oslo) said."""
    a = world.answerer(yearly_ceiling_cents=1800, timezone=zone)
    earn(app, a, 1800, earned_at)
    q = world.paid_question(paid_at=JANUARY - timedelta(hours=1))
    assert release_at(world, JANUARY) == ([(q, a)] if gets_it else [])


def test_answerers_of_different_zones_read_in_one_run_each_get_their_own_year(app, world):
    """One reading for answerers in New York and Auckland at once: 500 earned at 10:00 UTC and
    700 at 12:00 UTC on 31 December. Auckland's 2026 began at 11:00 UTC that day, so only the
    700 is this year's there; New York is still in 2025 at 04:00 UTC on 1 January, so both are
    its year's (and of each one's last 30 days)."""
    new_york = world.answerer(timezone="America/New_York")
    auckland = world.answerer(timezone="Pacific/Auckland")
    for who in (new_york, auckland):
        earn(app, who, 500, datetime(2025, 12, 31, 10, 0, tzinfo=UTC))
        earn(app, who, 700, datetime(2025, 12, 31, 12, 0, tzinfo=UTC))
    now = datetime(2026, 1, 1, 4, 0, tzinfo=UTC)
    with app.app_context():
        income = earnings.recent_and_yearly_income(
            db.session, {new_york: ZoneInfo("America/New_York"),
                         auckland: ZoneInfo("Pacific/Auckland")}, now, timedelta(days=30))
    assert income == {new_york: (1200, 1200), auckland: (1200, 700)}
    # The run reads the same numbers inside its own statement (each zone's New Year chosen
    # there by the answerer's zone).
    with app.app_context():
        read = {c.user_id: (c.earned_cents, c.earned_this_year_cents)
                for c in release.load_candidates(db.session, now, settings.current(db.session))}
    assert read == income


# --- A question past its deadline is never offered ---------------------------------------------

@pytest.mark.parametrize("window", ["inside", "outside"])
def test_a_queued_question_past_its_deadline_is_not_offered(app, world, window):
    """The release may run before the refund job: a question whose deadline passed stays for
    the refund, and the next question is offered."""
    a = world.answerer()
    overdue = world.paid_question(paid_at=DAY, real_stripe=True)
    deadline = world.question(overdue).deadline_at
    now = deadline if window == "outside" else deadline + timedelta(hours=10)  # 23:00 Oslo
    fresh = world.paid_question(paid_at=now - timedelta(hours=71))  # urgent, not overdue
    made = world.run(release.release_due_questions, now)
    assert [(o.question_id, o.answerer_id) for o in made] == [(fresh, a)]
    assert world.question(overdue).status == "queued"
    assert world.run(release.refund_overdue, now) == 1
    assert world.question(overdue).status == "refunded"


# --- An offer made in a run counts at once -----------------------------------------------------

def test_the_least_earned_answerer_does_not_take_the_whole_run(app, world):
    """``poor`` earned nothing, the two others 1000 each. Six questions of 1000 (900 to their
    answerer) in one run: each offer counts as soon as it is made, so ``poor`` gets two (1800)
    before the others get one each, then the rotation goes on — not all six to ``poor``."""
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 6
    poor, first, second = (world.answerer() for _ in range(3))
    for rich in (first, second):
        earn(app, rich, 1000, JANUARY - timedelta(days=2))
    ids = [world.paid_question(paid_at=JANUARY - timedelta(hours=1)) for _ in range(6)]
    made = release_at(world, JANUARY)
    assert [question for question, _ in made] == ids
    assert [answerer for _, answerer in made] == [poor, poor, first, second, poor, first]


# --- The cost of a run: its statements do not grow with the queue or the busy answerers -------

def queue_questions(app, count: int, paid_at: datetime, asker: int) -> None:
    """``count`` paid questions straight into the queue (one INSERT; no payments needed)."""
    with app.app_context():
        db.session.execute(sa.insert(Question), [dict(
            asker_id=asker, title="Q", body="Body", language="en", topic="other",
            price_cents=1000, currency="EUR", status="queued", paid_at=paid_at,
            commission_bps=1000, deadline_at=paid_at + timedelta(hours=72))
            for _ in range(count)])
        db.session.commit()


def busy_answerers(app, count: int, asker: int) -> None:
    """``count`` answerers, each holding an offer at their open-offer limit of 1."""
    with app.app_context():
        for n in range(count):
            user = User(email=f"busy{n}@example.org", name=f"Busy {n}", password_hash="!",
                        is_answerer=True)
            db.session.add(user)
            db.session.flush()
            db.session.add(AnswererProfile(user_id=user.id, languages="en", daily_limit=100,
                                           open_offer_limit=1))
            db.session.add(Question(
                asker_id=asker, title="Q", body="Body", language="en", topic="other",
                price_cents=1000, currency="EUR", status="offered", paid_at=NIGHT,
                commission_bps=1000, deadline_at=NIGHT + timedelta(hours=72),
                answerer_id=user.id, offer_expires_at=NIGHT + timedelta(hours=12)))
        db.session.commit()


def statements_of_a_run(app, now: datetime) -> tuple[int, int, int]:
    """Run the release once at ``now``: (statements sent to the database, questions, users and
    profiles built as objects, offers made)."""
    sent, loaded = [], []

    def count(conn, cursor, statement, parameters, context, executemany):
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE is no query
            sent.append(statement)

    def built(target, context):
        loaded.append(target)

    with app.test_request_context():
        sa.event.listen(db.engine, "before_cursor_execute", count)
        for model in (Question, User, AnswererProfile):
            sa.event.listen(model, "load", built)
        try:
            made = release.release_due_questions(db.session, now)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", count)
            for model in (Question, User, AnswererProfile):
                sa.event.remove(model, "load", built)
        db.session.rollback()  # the next case starts from the same queue
    return len(sent), len(loaded), len(made)


def test_a_runs_statements_do_not_grow_with_the_queue_or_the_busy_answerers(app, world):
    """One free answerer, one offer per run: the run sends as many statements, and builds as
    many objects, with 1 queued question as with 500, and as many again with 40 answerers busy
    besides; with everybody busy it stops after finding nobody with room."""
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 1
    asker = world.user()
    free = world.answerer()
    queue_questions(app, 1, DAY, asker)
    release._ZONES_SEEN.clear()
    first = statements_of_a_run(app, NIGHT)  # reads the zones, then its statement again
    one_queued = statements_of_a_run(app, NIGHT)
    assert first[0] == one_queued[0] + 2
    queue_questions(app, 499, DAY + timedelta(minutes=1), asker)
    many_queued = statements_of_a_run(app, NIGHT)
    busy_answerers(app, 40, asker)
    many_busy = statements_of_a_run(app, NIGHT)
    assert one_queued == many_queued == many_busy
    statements, objects, made = one_queued
    assert statements <= 20 and objects <= 3 and made == 1  # the question, its answerer
    with app.app_context():
        db.session.get(AnswererProfile, free).open_offer_limit = 0
        db.session.commit()
    # The settings and the answerers with room (none): nothing more.
    assert statements_of_a_run(app, NIGHT) == (2, 0, 0)


def test_the_offers_of_a_run_are_written_together(app, world):
    """One, two or five offers in a run send as many statements: a page's offers are written
    together (``questions.offer_many``), 500 questions queued or not (the queue is read one
    page at a time, once here)."""
    asker = world.user()
    world.answerer()
    queue_questions(app, 500, DAY, asker)
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 1
    statements_of_a_run(app, NIGHT)  # a process's first run also reads the time zones
    one, _, _ = statements_of_a_run(app, NIGHT)
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 2
    two, _, _ = statements_of_a_run(app, NIGHT)
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 5
    five, _, made = statements_of_a_run(app, NIGHT)
    assert made == 5
    assert one == two == five


def test_the_queue_pages_grow_from_a_few_rows_per_offer(app, world):
    """One offer per run: the first page is ``FIRST_PAGE_PER_OFFER`` (8) rows, then 16, then
    32. Behind 30 of the answerer's own questions (never offered to them) the run finds the
    31st in the third page, and offers it."""
    assert release.FIRST_PAGE_PER_OFFER == 8
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 1
    a, asker = world.answerer(), world.user()
    queue_questions(app, 30, DAY, a)
    queue_questions(app, 1, DAY + timedelta(minutes=1), asker)
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        flat = " ".join(statement.split())
        if " FROM question WHERE" in flat and "ORDER BY question.paid_at" in flat:
            sent.append(flat)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            made = release.release_due_questions(db.session, NIGHT)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        assert [(o.answerer_id, db.session.get(Question, o.question_id).asker_id)
                for o in made] == [(a, asker)]
        db.session.rollback()
    assert len(sent) == 3  # 8 + 16 rows seen, the 31st in the page of 32


def test_offer_many_writes_in_the_given_order_and_leaves_out_what_changed(app, world):
    """Chosen newest first, one of them cancelled meanwhile: the others are offered, their
    offers' ids grow in the order given (the run ranks answerers by them), each has its event
    and its answerer's message with its title; the changed one gets none of these. On
    PostgreSQL the question, event and offer writes are one statement."""
    a, b = world.answerer(), world.answerer()
    q1, q2, q3 = (world.paid_question(paid_at=DAY - timedelta(hours=h)) for h in (3, 2, 1))
    now = NIGHT
    with app.app_context():
        db.session.execute(sa.update(Question).where(Question.id == q2)
                           .values(status="refunded"))
        db.session.commit()
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not statement.startswith("BEGIN"):
            sent.append(" ".join(statement.split()))

    with app.test_request_context():
        rules = settings.current(db.session)
        dialect = db.engine.dialect.name
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            made = questions.offer_many(db.session, [(q3, a), (q2, b), (q1, b)], now, rules)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        assert [(o.question_id, o.answerer_id, o.outcome) for o in made] == [
            (q3, a, "open"), (q1, b, "open")]
        assert made[0].id < made[1].id
        assert all(db.session.get(Offer, o.id) is o for o in made)  # the session's own objects
        db.session.commit()
    with app.app_context():
        assert {q: db.session.get(Question, q).status for q in (q1, q2, q3)} == {
            q1: "offered", q2: "refunded", q3: "offered"}
        assert (db.session.get(Question, q3).answerer_id, db.session.get(Question, q1)
                .answerer_id) == (a, b)
        events = db.session.execute(sa.select(QuestionEvent.question_id, QuestionEvent.at)
                                    .where(QuestionEvent.action == "offer")
                                    .order_by(QuestionEvent.question_id)).all()
        assert events == [(q1, now), (q3, now)]
        messages = db.session.execute(sa.select(Notification.user_id, Notification.data)
                                      .where(Notification.kind == "new_offer")
                                      .order_by(Notification.user_id)).all()
        titles = {q: db.session.get(Question, q).title for q in (q1, q3)}
        assert [(user, json.loads(data)["question_id"], json.loads(data)["title"])
                for user, data in messages] == [(a, q3, titles[q3]), (b, q1, titles[q1])]
    writes = [s for s in sent if not s.startswith("SELECT")]
    if dialect == "postgresql":
        assert len(writes) == 2, writes  # the question, events and offers; the messages
        assert "moved AS ( UPDATE question SET " in writes[0], writes[0]
    else:
        assert len(writes) == 4, writes


# --- Fairness over many runs -------------------------------------------------------------------

def gini(values: list[int]) -> float:
    """The Gini coefficient of ``values`` (0: all equal)."""
    ordered = sorted(values)
    n, total = len(ordered), sum(ordered)
    return sum((2 * i - n + 1) * v for i, v in enumerate(ordered)) / (n * total)


def test_earnings_are_spread_evenly_over_300_questions(app, world):
    """300 questions of random prices, 12 answerers who answer every offer at once: the Gini
    coefficient of what they earned stays under 0.05 (first come, first served gave 0.50)."""
    rng = random.Random(19)
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 10
    asker = world.user()
    answerers = [world.answerer() for _ in range(12)]
    with app.app_context():
        for n in range(300):
            price = rng.choice((300, 500, 1000, 2000, 5000, 10000))
            db.session.execute(sa.insert(Question).values(
                asker_id=asker, title="Q", body="Body", language="en", topic="other",
                price_cents=price, currency="EUR", status="queued",
                paid_at=NIGHT - timedelta(hours=1, seconds=n), commission_bps=1000,
                deadline_at=NIGHT + timedelta(hours=70)))
        db.session.commit()
    now = NIGHT
    while True:
        with app.test_request_context():
            made = release.release_due_questions(db.session, now)
            for offer in made:
                question = db.session.get(Question, offer.question_id)
                user = db.session.get(User, offer.answerer_id)
                questions.claim(db.session, question, user, now)
                questions.post_answer(db.session, question, user, "Answer", now)
                # Accepted in the same way as settling: the share is credited now.
                questions.auto_accept(db.session, question, now, timedelta(0))
            db.session.commit()
        if not made:
            break
        now += timedelta(minutes=1)
    assert Counter(outcome for _, _, outcome in offers(app)) == {"claimed": 300}
    with app.app_context():
        earned = earnings.recent_and_yearly_income(
            db.session, {a: ZoneInfo("Europe/Oslo") for a in answerers}, now,
            release.EARNINGS_PERIOD)
    assert gini([earned.get(a, (0, 0))[0] for a in answerers]) < 0.05


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_queue_is_read_along_its_own_index(app, world):
    """The run's page of the queue reads the queued questions in order from an index of them
    alone (``ix_question_queue``): no sort, no pass over the questions paid before (PostgreSQL's
    plan, with sorting and whole-table scans made as costly as they go); the index of payment
    times cannot be chosen for it instead."""
    from sqlalchemy import event

    asker = world.user()
    queue_questions(app, 3, DAY, asker)
    with app.app_context():
        rules = settings.current(db.session)
        seen = []

        def record(conn, cursor, statement, parameters, context, executemany):
            seen.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            pages = list(release._queued_pages(db.session, NIGHT, rules, True, {"en"}))
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        (statement, parameters), = seen
        connection = db.session.connection()

        def plan() -> str:
            return "\n".join(row[0] for row in connection.exec_driver_sql(
                "EXPLAIN " + statement, parameters))

        connection.exec_driver_sql("SET LOCAL enable_sort = off")
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        along_the_queue = plan()
        # Even without it and the status indexes, the traffic page's index of payment times
        # cannot serve the page (it walked every question paid before the oldest queued one).
        for index in ("ix_question_queue", "ix_question_status_paid_at", "ix_question_status_id"):
            connection.exec_driver_sql(f"DROP INDEX {index}")
        without = plan()
        db.session.rollback()
    assert [len(page) for page in pages] == [3]
    assert ("Sort" not in along_the_queue
            and "using ix_question_queue on question" in along_the_queue), along_the_queue
    assert "ix_question_paid_at" not in without, without


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_open_work_and_held_shares_are_read_from_the_index_of_questions_in_progress(
        app, world):
    """Each answerer's open work and the shares of what they hold come from
    ``ix_question_in_progress`` alone (an index-only scan, PostgreSQL's plan with the table
    visited as the last resort), in one pass per answerer: not from every question the
    answerer ever had. The index's condition is ``release.IN_PROGRESS``."""
    from upss.models import _IN_PROGRESS_SQL

    assert sorted(_IN_PROGRESS_SQL.split("(")[1].rstrip(")").replace("'", "").split(", ")) \
        == sorted(release.IN_PROGRESS)
    assert set(release.OPEN) <= set(release.IN_PROGRESS)
    world.answerer()
    with app.app_context():
        # The planner reads the table's statistics and visibility map, which earlier tests'
        # rows left behind (an index-only scan is chosen by how much of the table is visible).
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text("VACUUM ANALYZE question"))
        rules = settings.current(db.session)
        plan = plan_of(lambda: release.load_candidates(db.session, NIGHT, rules),
                       lambda sent: next(pair for pair in sent if "open_count" in pair[0]),
                       off=("seqscan", "bitmapscan"))
    assert plan.count("Index Only Scan using ix_question_in_progress on question") == 1, plan
    assert "ix_question_answerer_id_status" not in plan, plan


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_open_work_and_held_shares_read_in_one_pass_are_those_counted_apart(
        app, world, monkeypatch):
    """PostgreSQL's one pass (``LATERAL``) gives each answerer the open work and held shares
    that SQLite's two counts give, and leaves out the same answerers (at their open-offer
    limit): the same candidates, number for number."""
    work = {  # answerer -> (status, price, frozen commission or None) of questions they hold
        "offers": [("offered", 2000, None), ("claimed", 3000, 1500)],
        "answered": [("answered", 1000, None), ("clarifying", 1250, 500),
                     ("disputed", 999, None)],
        "closed": [("closed", 5000, None), ("refunded", 7000, None)],
        "nothing": [],
        "full": [("offered", 1000, None), ("claimed", 1000, None)],
    }
    ids = {name: world.answerer(open_offer_limit=2 if name == "full" else 3) for name in work}
    for name, held in work.items():
        for status, price, commission in held:
            question_id = world.paid_question(paid_at=NIGHT - timedelta(days=1),
                                              price_cents=price)
            with app.app_context():
                db.session.execute(sa.update(Question).where(Question.id == question_id)
                                   .values(status=status, answerer_id=ids[name],
                                           commission_bps=commission))
                db.session.commit()
    with app.app_context():
        rules = settings.current(db.session)
        together = release.load_candidates(db.session, NIGHT, rules)
        apart_statement = release._room_statement
        monkeypatch.setattr(release, "_room_statement",
                            lambda zones, lateral: apart_statement(zones, False))
        apart = release.load_candidates(db.session, NIGHT, rules)
        db.session.rollback()
    assert together == apart
    found = {c.user_id: (c.open_count, c.pending_cents) for c in together}
    share = {None: 9000, 1500: 8500, 500: 9500}  # per 10 000 cents at 10 %, 15 %, 5 %
    assert found == {
        ids["offers"]: (2, 2000 * share[None] // 10000 + 3000 * share[1500] // 10000),
        ids["answered"]: (0, 900 + 1250 * share[500] // 10000 + 899),
        ids["closed"]: (0, 0), ids["nothing"]: (0, 0)}


def test_an_answerer_in_a_zone_no_run_saw_yet_is_counted_in_their_own_day(app, world):
    """A run has seen only Oslo; then an answerer in New York, one offer a day, who had one
    at 06:00 UTC (01:00 there, today). At 12:00 UTC the run meets a zone it has no branch for:
    it reads the zones and its statement again, so New York's day starts at its own midnight
    (05:00 UTC) and they get nothing more today; without the second reading their offer would
    not count (no branch: no midnight) and they would get one."""
    release._ZONES_SEEN.clear()
    oslo = world.answerer(timezone="Europe/Oslo", daily_limit=1)
    morning = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
    first = world.paid_question(paid_at=morning - timedelta(hours=1))
    assert release_at(world, morning) == [(first, oslo)]
    assert release._ZONES_SEEN == {"Europe/Oslo"}
    world.act(questions.decline, first, oslo, morning)
    new_york = world.answerer(timezone="America/New_York", daily_limit=1)
    with app.app_context():
        db.session.add(Offer(question_id=first, answerer_id=new_york, offered_at=morning,
                             expires_at=morning + timedelta(hours=12), outcome="expired",
                             resolved_at=morning))
        db.session.commit()
    world.paid_question(paid_at=morning)
    assert release_at(world, morning + timedelta(hours=6)) == []
    assert release._ZONES_SEEN >= {"Europe/Oslo", "America/New_York"}


def test_the_daily_limit_counts_from_each_answerers_own_midnight_in_one_run(app, world):
    """Oslo and New York, one offer a day each, both offered a question at 04:00 UTC on
    15 January (05:00 in Oslo, 23:00 on the 14th in New York). At 06:00 UTC it is Oslo's
    same day, so Oslo has had its offer; New York's day began at 05:00 UTC, so it gets one."""
    oslo = world.answerer(timezone="Europe/Oslo", daily_limit=1)
    new_york = world.answerer(timezone="America/New_York", daily_limit=1)
    early = datetime(2026, 1, 15, 4, 0, tzinfo=UTC)
    first = [world.paid_question(paid_at=early - timedelta(hours=1)) for _ in range(2)]
    assert sorted(a for _, a in release_at(world, early)) == sorted([oslo, new_york])
    for q in first:
        world.act(questions.decline, q, world.question(q).answerer_id, early)
    later = [world.paid_question(paid_at=early) for _ in range(2)]
    made = release_at(world, early + timedelta(hours=2))
    assert [a for _, a in made] == [new_york]
    assert {q for q, _ in made} <= set(first + later)
