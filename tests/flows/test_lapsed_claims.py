"""A claim that ends before its answer (the lock ran out, or the answerer was suspended) is
``lapsed``: the answerer's saved drafts list reads those claims only, the former answerer can
still open their draft, and migration 0017 marks the claims that lapsed before it existed."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import select

from tests.conftest import World, _base_config
from tests.flows.test_release import NIGHT
from upss import access, create_app, lists, questions, settings
from upss.extensions import db
from upss.models import Offer, Question, User


def _outcomes(app) -> list[tuple[int, int, str]]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Offer.question_id, Offer.answerer_id, Offer.outcome)
            .order_by(Offer.question_id, Offer.id))]


def _history(app, world: World) -> dict[str, int]:
    """``first`` and ``second`` are answerers. ``waiting``: first claimed it and ran out of
    time, it is back in the queue. ``moved_on``: first ran out, second claimed it. ``answered``:
    first claimed and answered it. ``suspended``: first held it when they were suspended.
    ``offered``: offered to first when they were suspended."""
    first, second = world.answerer(), world.answerer()
    ids = {name: world.paid_question(paid_at=NIGHT)
           for name in ("waiting", "moved_on", "answered", "suspended", "offered")}
    with app.test_request_context():
        rules = settings.current(db.session)
        a, b = db.session.get(User, first), db.session.get(User, second)
        q = {name: db.session.get(Question, i) for name, i in ids.items()}
        for name in ("waiting", "moved_on", "answered", "suspended"):
            questions.offer(db.session, q[name], a, NIGHT, rules)
            questions.claim(db.session, q[name], a, NIGHT)
        questions.offer(db.session, q["offered"], a, NIGHT, rules)
        questions.post_answer(db.session, q["answered"], a, "The answer", NIGHT)
        for name in ("waiting", "moved_on"):
            questions.expire_lock(db.session, q[name], q[name].lock_expires_at)
        later = NIGHT + timedelta(hours=10)
        questions.offer(db.session, q["moved_on"], b, later, rules)
        questions.claim(db.session, q["moved_on"], b, later)
        questions.withdraw_from_answerer(db.session, a, later, None)
        db.session.commit()
    return {"first": first, "second": second, **ids}


def test_a_claim_that_ends_before_its_answer_lapses_and_only_those_are_saved_drafts(
        app, world):
    h = _history(app, world)
    first, second = h["first"], h["second"]
    assert _outcomes(app) == [
        (h["waiting"], first, "lapsed"),
        (h["moved_on"], first, "lapsed"), (h["moved_on"], second, "claimed"),
        (h["answered"], first, "claimed"),
        (h["suspended"], first, "lapsed"),
        (h["offered"], first, "withdrawn"),
    ]
    with app.app_context():
        answerer = db.session.get(User, first)
        drafts = lists.lapsed_drafts(db.session, answerer, None)
        assert [q.id for q in drafts.items] == [h["suspended"], h["waiting"]]
        # They may still open the questions they once held, and not the one only offered.
        seen = {name: access.visible_to(db.session, db.session.get(Question, h[name]),
                                        answerer, as_="answerer")
                for name in ("waiting", "moved_on", "answered", "suspended", "offered")}
    assert seen == {"waiting": True, "moved_on": True, "answered": True, "suspended": True,
                    "offered": False}


def test_migration_0017_marks_the_claims_that_lapsed_before_it(empty_database):
    """What the services write today, downgraded to 0016 (every claim ``claimed``, as before)
    and upgraded again: the migration finds the same lapsed claims; an unknown outcome is
    still refused."""
    from flask_migrate import downgrade, upgrade

    app = create_app(_base_config(empty_database, "http://127.0.0.1:9"))
    with app.app_context():
        upgrade()
    _history(app, World(app))
    written = _outcomes(app)
    with app.app_context():
        downgrade(revision="0016_release_indexes")
    assert [outcome for *_, outcome in _outcomes(app)] == [
        "claimed", "claimed", "claimed", "claimed", "claimed", "withdrawn"]
    with app.app_context():
        upgrade()
        with sa.orm.Session(db.engine) as session, session.begin():
            try:
                session.execute(sa.text("UPDATE offer SET outcome = 'made_up'"))
            except sa.exc.IntegrityError:
                refused = True
            else:
                refused = False
    assert _outcomes(app) == written
    assert refused
    with app.app_context():
        db.engine.dispose()
