"""On PostgreSQL with real threads: claims and accepts racing each other."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from upss import ledger, questions, release
from upss.extensions import db
from upss.models import Offer, Question, QuestionEvent, User

NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def app_config(app_config):
    """Enough pooled connections for every racing thread at once."""
    return {**app_config, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 30, "max_overflow": 0}}


def race(app, attempts, action) -> list[str]:
    """One thread per user, all started at the same instant; each runs its
    ``(question_id, user_id)`` attempts in turn. Returns every attempt's outcome."""
    by_user: dict[int, list[int]] = {}
    for question_id, user_id in attempts:
        by_user.setdefault(user_id, []).append(question_id)
    barrier = threading.Barrier(len(by_user), timeout=30)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(user_id: int, question_ids: list[int]):
        barrier.wait()
        for question_id in question_ids:
            with app.app_context():
                try:
                    action(db.session, db.session.get(Question, question_id),
                           db.session.get(User, user_id))
                    db.session.commit()
                    result = "won"
                except questions.QuestionError as exc:
                    db.session.rollback()
                    result = type(exc).__name__
                finally:
                    db.session.remove()
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=run, args=item) for item in by_user.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == len(attempts), "a racing thread did not finish"
    return outcomes


def test_sixteen_answerers_racing_every_question_ends_with_one_claimant(app, world):
    """16 answerers, 8 questions: every answerer tries to claim every question at once, and
    each offered answerer tries twice (two browser tabs)."""
    answerers = [world.answerer() for _ in range(16)]
    ids = [world.paid_question(paid_at=NIGHT - timedelta(hours=1)) for _ in range(8)]
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 8
    made = world.run(release.release_due_questions, NIGHT)
    offered_to = {o.question_id: o.answerer_id for o in made}
    assert len(offered_to) == 8
    attempts = [(q, a) for a in answerers for q in ids for _ in range(
        2 if offered_to[q] == a else 1)]
    outcomes = race(app, attempts,
                    lambda s, q, u: questions.claim(s, q, u, NIGHT + timedelta(minutes=1)))
    assert Counter(outcomes)["won"] == 8
    with app.app_context():
        for q in ids:
            question = db.session.get(Question, q)
            assert (question.status, question.answerer_id) == ("claimed", offered_to[q])
            claims = db.session.scalars(select(QuestionEvent).where(
                QuestionEvent.question_id == q, QuestionEvent.action == "claim")).all()
            assert [e.actor_id for e in claims] == [offered_to[q]]
            outcomes_of_offers = db.session.scalars(select(Offer.outcome).where(
                Offer.question_id == q)).all()
            assert outcomes_of_offers == ["claimed"]


def test_claim_racing_offer_expiry_and_reoffer_has_one_holder(app, world):
    """At the offer's last moment, the claim and the expiry job race: one of them wins."""
    world.answerer()
    world.answerer()
    ids = [world.paid_question(paid_at=NIGHT - timedelta(hours=1)) for _ in range(6)]
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 6
    made = world.run(release.release_due_questions, NIGHT)
    edge = NIGHT + timedelta(hours=12)

    def claim_or_expire(session, question, user):
        if user.id == 0:  # user 0 stands for the scheduler's expiry job
            questions.expire_offer(session, question, edge)
        else:
            questions.claim(session, question, user, edge - timedelta(microseconds=1))

    with app.app_context():
        db.session.add(User(id=0, email="scheduler@invalid", name="s", password_hash="!"))
        db.session.commit()
    attempts = [(o.question_id, o.answerer_id) for o in made] + [(q, 0) for q in ids]
    outcomes = race(app, attempts, claim_or_expire)
    assert Counter(outcomes)["won"] == 6
    with app.app_context():
        for q in ids:
            question = db.session.get(Question, q)
            assert question.status in ("claimed", "queued")
            assert (question.answerer_id is not None) == (question.status == "claimed")


def test_two_concurrent_accepts_settle_once(app, world):
    a = world.answerer()
    ids = [world.paid_question(paid_at=NIGHT - timedelta(hours=1), price_cents=2000)
           for _ in range(4)]
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 4
    world.run(release.release_due_questions, NIGHT)
    for q in ids:
        world.act(questions.claim, q, a, NIGHT)
        world.act(questions.post_answer, q, a, "Answer", NIGHT)
    askers = {q: world.question(q).asker_id for q in ids}
    attempts = [(q, askers[q]) for q in ids for _ in range(2)]
    outcomes = race(app, attempts, lambda s, q, u: questions.accept(s, q, u, NIGHT))
    assert sorted(outcomes) == ["InvalidTransition"] * 4 + ["won"] * 4
    with app.app_context():
        assert ledger.balance(db.session, f"payable:answerer:{a}") == -4 * 1800
        assert ledger.balance(db.session, "commission") == -4 * 200
        for q in ids:
            assert ledger.balance(db.session, f"escrow:question:{q}") == 0
