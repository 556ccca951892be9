"""A claim is one guarded ``UPDATE … RETURNING`` plus its event (and its offer's outcome): it
reads neither the question nor the answerer's profile before or after writing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.flows.test_release import NIGHT
from upss import questions, release, settings
from upss.extensions import db
from upss.models import AnswererProfile, Offer, Question, QuestionEvent, User


def offered(world) -> tuple[int, int]:
    a = world.answerer()
    q = world.paid_question(paid_at=NIGHT - timedelta(hours=1), price_cents=2000)
    world.run(release.release_due_questions, NIGHT)
    return q, a


def test_a_claim_is_one_guarded_update_returning_and_its_event(app, world):
    q, a = offered(world)
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE
            sent.append(" ".join(statement.split()))

    now = NIGHT + timedelta(minutes=1)
    with app.test_request_context():
        question, user = db.session.get(Question, q), db.session.get(User, a)
        dialect = db.engine.dialect.name
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            questions.claim(db.session, question, user, now)
            # The object shows the claim from what the UPDATE returned, with no query.
            assert (question.status, question.answerer_id, question.lock_expires_at,
                    question.offer_expires_at) == ("claimed", a, now + timedelta(hours=4), None)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        db.session.commit()
    writes = [s for s in sent if not s.startswith("SELECT")]
    if dialect == "postgresql":
        # One round trip: the guarded UPDATE … RETURNING, and from its row the event and the
        # offer's outcome (data-modifying CTEs).
        (write,) = writes
        assert write.startswith("WITH claimed AS (UPDATE question SET "), write
        assert "INSERT INTO question_event" in write and "UPDATE offer SET" in write
        assert " RETURNING " in write and "answerer_profile" in write
    else:
        assert [s.split(" (")[0].split(" SET")[0] for s in writes] == [
            "UPDATE question", "INSERT INTO question_event", "UPDATE offer"]
        assert " RETURNING " in writes[0] and "answerer_profile" in writes[0]
    reads = [s for s in sent if s.startswith("SELECT")]
    if dialect == "postgresql":
        assert reads == []  # the lock hours are read by the claim's own statement
    else:
        assert reads and all(" FROM organizer_settings" in s or " FROM offpeak_window" in s
                             for s in reads), reads  # the settings in force, nothing more
    with app.app_context():
        events = db.session.execute(sa.select(
            QuestionEvent.action, QuestionEvent.actor_id, QuestionEvent.actor_kind,
            QuestionEvent.from_status, QuestionEvent.to_status, QuestionEvent.at)
            .where(QuestionEvent.question_id == q).order_by(QuestionEvent.id)).all()
        assert events[-1] == ("claim", a, "user", "offered", "claimed", now)
        assert db.session.scalar(sa.select(Offer.outcome).where(Offer.question_id == q)) == (
            "claimed")


@pytest.mark.parametrize("case", ["someone_else", "run_out", "suspended", "no_longer_answers",
                                  "claimed_already", "back_in_the_queue"])
def test_a_refused_claim_says_why_and_changes_nothing(app, world, case):
    q, a = offered(world)
    now = NIGHT + timedelta(minutes=1)
    who = a
    if case == "someone_else":
        who = world.answerer()
    elif case == "run_out":
        now = world.question(q).offer_expires_at
    elif case == "suspended":
        with app.app_context():
            db.session.get(AnswererProfile, a).active = False
            db.session.commit()
    elif case == "no_longer_answers":
        with app.app_context():
            db.session.get(User, a).is_answerer = False
            db.session.commit()
    elif case == "claimed_already":
        world.act(questions.claim, q, a, now)
    elif case == "back_in_the_queue":
        world.act(questions.decline, q, a, now)
    expected, says = {
        "someone_else": (questions.NotYourOffer, f"question {q} is not offered to you"),
        "run_out": (questions.NotYourOffer, "the offer has run out"),
        "suspended": (questions.Suspended, f"answerer {a} is not an active answerer"),
        "no_longer_answers": (questions.Suspended, f"answerer {a} is not an active answerer"),
        "claimed_already": (questions.InvalidTransition, f"question {q} is claimed: cannot claim"),
        "back_in_the_queue": (questions.InvalidTransition,
                              f"question {q} is queued: cannot claim"),
    }[case]
    before = world.question(q)

    def written():
        with app.app_context():
            return (db.session.scalar(sa.select(sa.func.count()).select_from(QuestionEvent)
                                      .where(QuestionEvent.question_id == q)),
                    db.session.execute(sa.select(Offer.answerer_id, Offer.outcome,
                                                 Offer.resolved_at)
                                       .where(Offer.question_id == q).order_by(Offer.id)).all())

    events_and_offers = written()
    with app.test_request_context():
        question, user = db.session.get(Question, q), db.session.get(User, who)
        with pytest.raises(expected) as refused:
            questions.claim(db.session, question, user, now)
        db.session.rollback()
    assert str(refused.value) == says
    if case == "claimed_already":
        assert (refused.value.status, refused.value.action) == ("claimed", "claim")
    after = world.question(q)
    assert (after.status, after.answerer_id, after.lock_expires_at) == (
        before.status, before.answerer_id, before.lock_expires_at)
    assert written() == events_and_offers  # no event, no offer closed (nor rolled back only)


@pytest.mark.parametrize("stored", [False, True])
@pytest.mark.parametrize("price", [2000, 10000])
def test_the_lock_runs_for_the_hours_the_settings_give_the_questions_price(app, world, stored,
                                                                          price):
    """The configured hours (4, or 8 from 100 EUR), or the stored settings' (3, or 30 from
    60 EUR): the claim's lock is ``lock_hours_for`` the price, on PostgreSQL worked out by
    the claim's own statement."""
    a = world.answerer()
    with app.app_context():
        if stored:
            settings.save(db.session, dataclasses.replace(
                settings.current(db.session), lock_hours=3, lock_hours_large=30,
                large_price_cents=6000))
            db.session.commit()
        rules = settings.current(db.session)
    q = world.paid_question(paid_at=NIGHT - timedelta(hours=1), price_cents=price)
    world.run(release.release_due_questions, NIGHT)
    now = NIGHT + timedelta(minutes=1)
    world.act(questions.claim, q, a, now)
    hours = {(False, 2000): 4, (False, 10000): 8, (True, 2000): 3, (True, 10000): 30}
    assert rules.lock_hours_for(price) == hours[stored, price]
    assert world.question(q).lock_expires_at == now + timedelta(hours=hours[stored, price])
