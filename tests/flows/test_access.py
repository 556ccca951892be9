"""Who may see and do what (``upss.access``), separation of duties, and suspension at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token, sign_in_as, submit
from tests.flows.test_payouts import IBAN_NO, batch_payouts, earn, later, run_batch
from upss import access, questions, release, vetting
from upss.extensions import db
from upss.models import AnswerDraft, AnswererApplication, Offer, Question, User

NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)

A, ANS, ORG, FORMER = (frozenset({r}) for r in ("asker", "answerer", "organizer",
                                               "former_answerer"))
NONE = frozenset()

# (state, relations, active answerer, paid, rated) -> the actions expected, written out here
# from the rules as the issue states them, not computed from the code under test.
TABLE = [
    ("draft", A, False, False, False, {"pay"}),
    ("awaiting_payment", A, False, False, False, {"pay"}),
    ("queued", A, False, True, False, {"cancel", "receipt"}),
    ("offered", A, False, True, False, {"receipt"}),
    ("claimed", A, False, True, False, {"receipt"}),
    ("answered", A, False, True, False,
     {"accept", "clarify", "reject", "receipt", "see_answer", "see_thread"}),
    ("clarifying", A, False, True, False, {"receipt", "see_answer", "see_thread"}),
    ("closed", A, False, True, False, {"rate", "tip", "receipt", "see_answer", "see_thread"}),
    ("closed", A, False, True, True, {"tip", "receipt", "see_answer", "see_thread"}),
    ("disputed", A, False, True, False, {"receipt", "see_answer", "see_thread"}),
    ("refunded", A, False, True, False, {"receipt"}),
    ("offered", ANS, True, True, False, {"claim", "decline"}),
    ("offered", ANS, False, True, False, set()),
    ("claimed", ANS, True, True, False,
     {"see_lock", "extend_lock", "write_answer", "send_answer"}),
    ("claimed", ANS, False, True, False, {"see_lock", "write_answer"}),
    ("answered", ANS, True, True, False, {"see_answer", "see_thread"}),
    ("clarifying", ANS, True, True, False, {"reply", "see_answer", "see_thread"}),
    ("clarifying", ANS, False, True, False, {"see_answer", "see_thread"}),
    ("closed", ANS, True, True, False, {"see_answer", "see_thread"}),
    ("queued", FORMER, True, True, False, {"write_answer"}),
    ("claimed", FORMER, True, True, False, {"write_answer"}),
    ("answered", FORMER, True, True, False, set()),
    ("clarifying", FORMER, True, True, False, set()),
    ("closed", FORMER, True, True, False, set()),
    ("disputed", ORG, False, True, False, {"decide_dispute", "see_answer", "see_thread"}),
    ("answered", ORG, False, True, False, set()),
    ("disputed", ORG | ANS, True, True, False, {"see_answer", "see_thread"}),
    ("disputed", ORG | A, False, True, False, {"receipt", "see_answer", "see_thread"}),
    ("answered", NONE, False, True, False, set()),
]


@pytest.mark.parametrize(("status", "relations", "active", "paid", "rated", "expected"), TABLE)
def test_allowed_actions_per_state_and_role(status, relations, active, paid, rated, expected):
    assert access.actions_for(status, relations, active_answerer=active, paid=paid,
                              rated=rated) == expected
    assert expected <= access.ACTIONS


def _claimed_then_lapsed(app, world):
    """Answerer ``first`` claims, their lock runs out, ``second`` gets it, answers, and the
    asker asks for a clarification."""
    first, second = world.answerer(), world.answerer()
    q = world.paid_question(paid_at=NIGHT)
    now = datetime.now(UTC)
    with app.test_request_context():
        question = db.session.get(Question, q)
        users = {u: db.session.get(User, u) for u in (first, second)}
        questions.offer(db.session, question, users[first], now, _rules())
        questions.claim(db.session, question, users[first], now)
        questions.save_draft(db.session, question, users[first], "My own half answer", now)
        lapse = question.lock_expires_at + timedelta(seconds=1)
        questions.expire_lock(db.session, question, lapse)
        questions.offer(db.session, question, users[second], lapse, _rules())
        questions.claim(db.session, question, users[second], lapse)
        questions.post_answer(db.session, question, users[second], "THE SECOND ANSWER", lapse)
        questions.ask_clarification(db.session, question, question.asker, "SECRET THREAD",
                                    lapse)
        db.session.commit()
    return q, first, second


def _rules():
    from upss import settings
    return settings.current(db.session)


def test_an_answerer_whose_lock_lapsed_sees_only_their_own_draft(app, world, client):
    q, first, second = _claimed_then_lapsed(app, world)
    sign_in_as(client, app, first)
    page = client.get(f"/answer/questions/{q}").get_data(as_text=True)
    assert "My own half answer" in page and "went to someone else" in page
    assert "THE SECOND ANSWER" not in page and "SECRET THREAD" not in page
    assert "Send answer" not in page and "Send reply" not in page
    token = csrf_token(client, f"/answer/questions/{q}")
    refused = client.post(f"/answer/questions/{q}", data={
        "csrf_token": token, "action": "reply", "r-reply": "Let me reply instead"})
    assert refused.status_code == 409
    sign_in_as(client, app, second)
    page = client.get(f"/answer/questions/{q}").get_data(as_text=True)
    assert "THE SECOND ANSWER" in page and "SECRET THREAD" in page and "Send reply" in page
    assert "My own half answer" not in page


def test_nobody_approves_their_own_application(app, world, client):
    from tests.flows.test_vetting import APPLICATION

    organizer = world.user("organizer")
    sign_in_as(client, app, organizer)
    assert submit(client, "/answer/apply", APPLICATION).status_code == 302
    with app.app_context():
        application_id = db.session.scalar(select(AnswererApplication.id))
    url = f"/organizer/applications/{application_id}"
    page = client.get(url).get_data(as_text=True)
    assert "This is your own application" in page and "Approve the application" not in page
    response = client.post(url, data={
        "csrf_token": csrf_token(client, url), "decision": "approve",
        "a-method": "Pension card seen", "a-verified_on": "2026-11-20"})
    assert response.status_code == 400
    assert "cannot decide your own application" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(AnswererApplication, application_id).status == "pending"
        assert not db.session.get(User, organizer).is_answerer
        application = db.session.get(AnswererApplication, application_id)
        with pytest.raises(vetting.VettingError):
            vetting.reject(db.session, application, db.session.get(User, organizer),
                           reason="no", now=datetime.now(UTC))


def test_nobody_decides_a_dispute_about_their_own_answer(app, world, client):
    organizer = world.user("organizer")
    other = world.user("organizer")
    with app.app_context():
        db.session.get(User, organizer).is_answerer = True
        db.session.commit()
    from upss.models import AnswererProfile
    with app.app_context():
        db.session.add(AnswererProfile(user_id=organizer, languages="en", daily_limit=100,
                                       open_offer_limit=100))
        db.session.commit()
    q = world.paid_question(paid_at=NIGHT)
    now = datetime.now(UTC)
    with app.test_request_context():
        question = db.session.get(Question, q)
        me = db.session.get(User, organizer)
        questions.offer(db.session, question, me, now, _rules())
        questions.claim(db.session, question, me, now)
        questions.post_answer(db.session, question, me, "My answer", now)
        questions.reject(db.session, question, question.asker, "Not good", now)
        db.session.commit()

    sign_in_as(client, app, organizer)
    page = client.get("/organizer/disputes").get_data(as_text=True)
    assert "another organizer must decide it" in page and "Uphold: pay the answerer" not in page
    for decision in ("uphold", "refund"):
        response = submit(client, f"/organizer/disputes/{q}/{decision}",
                          form_url="/organizer/disputes")
        assert response.status_code == 302
    assert world.question(q).status == "disputed"

    sign_in_as(client, app, other)
    assert "Uphold: pay the answerer" in client.get("/organizer/disputes").get_data(as_text=True)
    assert submit(client, f"/organizer/disputes/{q}/uphold",
                  form_url="/organizer/disputes").status_code == 302
    assert world.question(q).status == "closed"


def test_an_organizer_never_pays_themselves_out(app, world):
    """A batch the organizer runs leaves out their own earnings; another organizer's does not."""
    organizer = world.answerer(iban=IBAN_NO)
    colleague = world.user("organizer")
    with app.app_context():
        db.session.get(User, organizer).is_organizer = True
        db.session.commit()
    earn(app, world, organizer, 3000)
    with app.app_context():
        me = db.session.get(User, organizer)
        db.session.expunge(me)
        them = db.session.get(User, colleague)
        db.session.expunge(them)
    assert run_batch(app, later(), created_by=me) is None
    batch_id = run_batch(app, later(), created_by=them)
    assert set(batch_payouts(app, batch_id)) == {organizer}


def test_suspension_takes_effect_at_once(app, world, client):
    """Offers go back to the queue, a claim goes back with its draft kept, a clarification goes
    to the organizer, and the suspended answerer can neither pick up nor send."""
    answerer, organizer = world.answerer(), world.user("organizer")
    offered, claimed, clarifying, fresh = (world.paid_question(paid_at=NIGHT) for _ in range(4))
    now = datetime.now(UTC)
    with app.test_request_context():
        me = db.session.get(User, answerer)
        q = {i: db.session.get(Question, i) for i in (offered, claimed, clarifying, fresh)}
        for i in q:
            questions.offer(db.session, q[i], me, now, _rules())
        questions.claim(db.session, q[claimed], me, now)
        questions.save_draft(db.session, q[claimed], me, "Half done", now)
        questions.claim(db.session, q[clarifying], me, now)
        questions.post_answer(db.session, q[clarifying], me, "Answer", now)
        questions.ask_clarification(db.session, q[clarifying], q[clarifying].asker, "More?", now)
        db.session.commit()

    sign_in_as(client, app, organizer)
    assert submit(client, f"/organizer/answerers/{answerer}/suspend",
                  form_url="/organizer/answerers").status_code == 302

    assert world.question(offered).status == "queued"
    assert world.question(offered).answerer_id is None
    assert world.question(claimed).status == "queued"
    assert world.question(clarifying).status == "disputed"
    assert world.question(fresh).status == "queued"
    with app.app_context():
        assert db.session.get(AnswerDraft, (claimed, answerer)).body == "Half done"
        assert db.session.scalar(select(Offer.outcome).where(
            Offer.question_id == offered)) == "withdrawn"
        me = db.session.get(User, answerer)
        question = db.session.get(Question, fresh)
        questions.offer(db.session, question, me, now, _rules())  # as if offered anyway
        with pytest.raises(questions.Suspended):
            questions.claim(db.session, question, me, now)
        db.session.rollback()

    sign_in_as(client, app, answerer)
    page = client.get(f"/answer/questions/{claimed}").get_data(as_text=True)
    assert "Half done" in page and "Send answer" not in page
    assert "Pick up this question" not in client.get("/answer/queue").get_data(as_text=True)
    with app.app_context():
        made = release.release_due_questions(db.session, datetime.now(UTC), ignore_window=True)
        assert all(q.answerer_id != answerer for q in made)
        db.session.rollback()
