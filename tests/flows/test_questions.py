"""The question state machine: every (state, action) pair is allowed or refused as designed."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from upss import questions
from upss.extensions import db
from upss.models import QUESTION_STATES, Question, QuestionEvent

#: The state table of docs/ARCHITECTURE.md section 3, written out by hand: action -> (the
#: states it may start from, the state it ends in). Not derived from ``questions.TRANSITIONS``,
#: so a changed transition there fails ``test_transitions_are_exactly_the_documented_table``
#: and ``test_transition_table`` instead of moving the expectation along with it.
TABLE: dict[str, tuple[set[str], str]] = {
    "start_payment": ({"draft"}, "awaiting_payment"),
    "confirm_payment": ({"awaiting_payment"}, "queued"),
    "offer": ({"queued"}, "offered"),
    "decline_offer": ({"offered"}, "queued"),
    "expire_offer": ({"offered"}, "queued"),
    "claim": ({"offered"}, "claimed"),
    "expire_lock": ({"claimed"}, "queued"),
    "post_answer": ({"claimed"}, "answered"),
    "ask_clarification": ({"answered"}, "clarifying"),
    "reply_clarification": ({"clarifying"}, "answered"),
    "accept": ({"answered"}, "closed"),
    "auto_accept": ({"answered"}, "closed"),
    "reject": ({"answered"}, "disputed"),
    "uphold_dispute": ({"disputed"}, "closed"),
    "refund_dispute": ({"disputed"}, "refunded"),
    "refund_at_deadline": ({"queued", "offered", "claimed"}, "refunded"),
    "cancel": ({"queued"}, "refunded"),
    "refund_at_stripe": ({"queued", "offered", "claimed", "answered", "clarifying", "disputed"},
                         "refunded"),
    "withdraw_offer": ({"offered"}, "queued"),
    "withdraw_claim": ({"claimed"}, "queued"),
    "withdraw_clarification": ({"clarifying"}, "disputed"),
}
ALLOWED = {(state, action): to for action, (starts, to) in TABLE.items() for state in starts}


@pytest.fixture
def make_question(app, make_user):
    """Factory: a stored question of a new asker in ``status``."""
    def make(status: str = "draft") -> int:
        user_id, _, _ = make_user()
        with app.app_context():
            q = Question(asker_id=user_id, title="t", body="b", language="en", topic="other",
                         price_cents=500, currency="EUR", status=status)
            db.session.add(q)
            db.session.commit()
            return q.id
    return make


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("state", QUESTION_STATES)
@pytest.mark.parametrize("action", sorted(TABLE))
def test_transition_table(app, make_question, state, action):
    """Each action moves exactly the states of ``TABLE`` (written out by hand), and records one
    event; every other (state, action) is refused by the guarded transition and changes
    nothing."""
    question_id = make_question(state)
    with app.app_context():
        q = db.session.get(Question, question_id)
        if (state, action) in ALLOWED:
            questions._transition(db.session, q, action, actor=None, actor_kind="scheduler")
            db.session.commit()
            assert q.status == ALLOWED[(state, action)]
            events = db.session.scalars(select(QuestionEvent)).all()
            assert [(e.from_status, e.to_status, e.action) for e in events] == [
                (state, q.status, action)]
        else:
            with pytest.raises(questions.InvalidTransition) as refused:
                questions._transition(db.session, q, action, actor=None)
            assert (refused.value.status, refused.value.action) == (state, action)
            db.session.rollback()
            assert db.session.get(Question, question_id).status == state
            assert db.session.scalars(select(QuestionEvent)).all() == []


def test_a_stale_copy_cannot_change_the_state(app, make_question):
    """The guarded UPDATE refuses a transition from a state the row no longer has."""
    question_id = make_question("awaiting_payment")
    with app.app_context():
        stale = db.session.get(Question, question_id)
        db.session.execute(Question.__table__.update().values(status="queued"))
        with pytest.raises(questions.InvalidTransition) as refused:
            questions._transition(db.session, stale, "confirm_payment", actor=None)
        assert refused.value.status == "queued"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_confirmations_post_once(app, make_question):
    """Eight threads confirm the same payment at once on PostgreSQL: one wins, one posting."""
    question_id = make_question("awaiting_payment")
    with app.app_context():
        db.session.get(Question, question_id).payment_intent_id = "pi_race"
        db.session.commit()
    barrier = threading.Barrier(8)
    results: list[str] = []

    def confirm():
        with app.app_context():
            q = db.session.get(Question, question_id)
            barrier.wait()
            try:
                questions.confirm_payment(db.session, q, "pi_race")
                db.session.commit()
                results.append("won")
            except questions.InvalidTransition:
                db.session.rollback()
                results.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["refused"] * 7 + ["won"]
    with app.app_context():
        from upss import ledger
        assert ledger.balance(db.session, f"escrow:question:{question_id}") == -500
        assert ledger.balance(db.session, "stripe_balance") == 500


def test_transitions_are_exactly_the_documented_table():
    """``questions.TRANSITIONS`` is the hand-written table: no action, start state or end state
    more or less (e.g. "cancel" also from ``closed`` fails here)."""
    assert set(questions.TRANSITIONS) == set(TABLE)
    for action, (starts, to) in TABLE.items():
        assert (set(questions.TRANSITIONS[action][0]), questions.TRANSITIONS[action][1]) == (
            starts, to), action
