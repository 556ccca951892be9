"""What each transition writes to a question's history: action, states, actor, note and time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.flows.test_release import DAY, NIGHT, answered
from upss import payments, questions, release
from upss.extensions import db
from upss.models import AuditLog, Message, Offer, Question, QuestionEvent, User

T1, T2, T3, T4, T5, T6 = (NIGHT + timedelta(minutes=m) for m in (1, 2, 60, 120, 180, 240))


def history(app, question_id: int) -> list[tuple]:
    """The question's events as the organizer's history shows them, oldest first."""
    with app.app_context():
        return [(e.action, e.from_status, e.to_status, e.actor_id, e.actor_kind, e.note, e.at)
                for e in db.session.scalars(select(QuestionEvent).where(
                    QuestionEvent.question_id == question_id).order_by(QuestionEvent.id))]


def offer_rows(app, question_id: int) -> list[tuple]:
    """(answerer, offered_at, expires_at, outcome, resolved_at) of each offer of the question."""
    with app.app_context():
        return [(o.answerer_id, o.offered_at, o.expires_at, o.outcome, o.resolved_at)
                for o in db.session.scalars(select(Offer).where(
                    Offer.question_id == question_id).order_by(Offer.id))]


def messages(app, question_id: int) -> list[tuple]:
    """(kind, author, body, at) of each message about the question, oldest first."""
    with app.app_context():
        return [(m.kind, m.author_id, m.body, m.at) for m in db.session.scalars(
            select(Message).where(Message.question_id == question_id).order_by(Message.id))]


def offered(world) -> tuple[int, int]:
    """A question offered at NIGHT to a new answerer (the offer runs 12 hours): (q, a)."""
    a = world.answerer()
    q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    return q, a


def test_the_answering_path_records_each_step_with_its_actor_and_time(app, world):
    q, a = offered(world)
    asker = world.question(q).asker_id
    world.act(questions.claim, q, a, T1)
    lock = world.question(q).lock_expires_at
    until = world.act(questions.extend_lock, q, a, T2)
    world.act(questions.post_answer, q, a, "Here is how.", T3)
    world.act(questions.ask_clarification, q, asker, "Which button?", T4)
    world.act(questions.reply_clarification, q, a, "The green one.", T5)
    world.act(questions.accept, q, asker, T6)
    events = history(app, q)
    assert events[0][:6] == ("start_payment", "draft", "awaiting_payment", asker, "user", "")
    assert events[1:] == [
        ("confirm_payment", "awaiting_payment", "queued", None, "stripe", "", DAY),
        ("offer", "queued", "offered", None, "scheduler", "", NIGHT),
        ("claim", "offered", "claimed", a, "user", "", T1),
        ("extend_lock", "claimed", "claimed", a, "user",
         f"lock extended from {lock.isoformat()} to {until.isoformat()}", T2),
        ("post_answer", "claimed", "answered", a, "user", "", T3),
        ("ask_clarification", "answered", "clarifying", asker, "user", "", T4),
        ("reply_clarification", "clarifying", "answered", a, "user", "", T5),
        ("accept", "answered", "closed", asker, "user", "", T6),
    ]
    assert offer_rows(app, q) == [(a, NIGHT, NIGHT + timedelta(hours=12), "claimed", T1)]
    assert messages(app, q) == [("clarification_request", asker, "Which button?", T4),
                                ("clarification_reply", a, "The green one.", T5)]
    question = world.question(q)
    assert (question.answerer_id, question.answered_at, question.closed_at) == (a, T5, T6)


def test_a_decline_is_the_answerers_and_frees_the_question(app, world):
    q, a = offered(world)
    world.act(questions.decline, q, a, T1)
    assert history(app, q)[-1] == ("decline_offer", "offered", "queued", a, "user", "", T1)
    question = world.question(q)
    assert (question.status, question.answerer_id, question.offer_expires_at) == (
        "queued", None, None)
    assert offer_rows(app, q) == [(a, NIGHT, NIGHT + timedelta(hours=12), "declined", T1)]


def test_a_decline_from_a_stale_page_does_not_touch_someone_elses_offer(app, world):
    """The answerer's copy still says "offered to me", but meanwhile the question was offered
    to someone else: the decline is refused and the other offer stays."""
    q, a = offered(world)
    other = world.answerer()
    with app.app_context():
        question = db.session.get(Question, q)
        answerer = db.session.get(User, a)
        db.session.execute(update(Question).where(Question.id == q).values(answerer_id=other)
                           .execution_options(synchronize_session=False))
        with pytest.raises(questions.InvalidTransition):
            questions.decline(db.session, question, answerer, T1)
        db.session.commit()
    assert (world.question(q).status, world.question(q).answerer_id) == ("offered", other)
    assert history(app, q)[-1][0] == "offer"


def test_an_expired_offer_is_recorded_as_the_schedulers_at_the_expiry(app, world):
    q, a = offered(world)
    expiry = NIGHT + timedelta(hours=12)
    assert world.run(release.expire_offers, expiry) == 1
    assert history(app, q)[-1] == ("expire_offer", "offered", "queued", None, "scheduler", "",
                                   expiry)
    question = world.question(q)
    assert (question.status, question.answerer_id, question.offer_expires_at) == (
        "queued", None, None)
    assert offer_rows(app, q) == [(a, NIGHT, expiry, "expired", expiry)]


def test_an_expired_lock_is_recorded_as_the_schedulers_at_the_expiry(app, world):
    q, a = offered(world)
    world.act(questions.claim, q, a, T1)
    expiry = world.question(q).lock_expires_at
    assert world.run(release.expire_locks, expiry) == 1
    assert history(app, q)[-1] == ("expire_lock", "claimed", "queued", None, "scheduler", "",
                                   expiry)
    question = world.question(q)
    assert (question.status, question.answerer_id, question.lock_expires_at) == (
        "queued", None, None)


def test_an_auto_accept_is_the_schedulers_and_closes_at_its_time(app, world):
    q, a, _asker = answered(world)
    due = NIGHT + timedelta(hours=1, days=3)
    assert world.run(release.auto_accept_due, due) == 1
    assert history(app, q)[-1] == ("auto_accept", "answered", "closed", None, "scheduler", "",
                                   due)
    question = world.question(q)
    assert (question.status, question.answerer_id, question.closed_at) == ("closed", a, due)


def test_a_dispute_records_the_askers_rejection_and_the_organizers_decision(app, world):
    organizer = world.user("organizer")
    upheld, _a1, asker1 = answered(world)
    refunded, _a2, asker2 = answered(world, real_stripe=True)
    for q, asker in ((upheld, asker1), (refunded, asker2)):
        world.act(questions.reject, q, asker, "Not helpful", T3)
        assert history(app, q)[-1] == ("reject", "answered", "disputed", asker, "user", "", T3)
    world.act(questions.uphold_dispute, upheld, organizer, T4)
    world.act(lambda session, question, user, now: payments.refund_question(
        session, question, "refund_dispute", user, now), refunded, organizer, T4)
    assert history(app, upheld)[-1] == (
        "uphold_dispute", "disputed", "closed", organizer, "user", "", T4)
    assert history(app, refunded)[-1] == (
        "refund_dispute", "disputed", "refunded", organizer, "user", "", T4)
    assert world.question(upheld).closed_at == world.question(refunded).closed_at == T4
    a1 = world.question(upheld).answerer_id
    price = world.question(refunded).price_cents
    with app.app_context():
        audit = [(e.actor_id, e.action, e.target, json.loads(e.before), json.loads(e.after))
                 for e in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert audit == [
        (organizer, "uphold dispute", f"question:{upheld}", {"status": "disputed"},
         {"status": "closed", "answerer_id": a1}),
        (organizer, "refund dispute", f"question:{refunded}", {"status": "disputed"},
         {"status": "refunded", "refund_cents": price}),
    ]


@pytest.mark.parametrize("state", ["queued", "offered", "claimed"])
def test_a_refund_at_the_deadline_is_the_schedulers_with_its_reason(app, world, state):
    a = world.answerer()
    q = world.paid_question(paid_at=DAY, real_stripe=True)
    if state != "queued":
        world.run(release.release_due_questions, NIGHT)
    if state == "claimed":
        world.act(questions.claim, q, a, T1)
    deadline = DAY + timedelta(hours=72)
    assert world.run(release.refund_overdue, deadline) == 1
    assert history(app, q)[-1] == ("refund_at_deadline", state, "refunded", None, "scheduler",
                                   "answer deadline passed", deadline)
    question = world.question(q)
    assert (question.closed_at, question.refund_requested_at, question.refund_status) == (
        deadline, deadline, "sent")
    assert (question.offer_expires_at, question.lock_expires_at) == (None, None)


def test_a_cancellation_is_the_askers(app, world):
    q = world.paid_question(paid_at=DAY, real_stripe=True)
    asker = world.question(q).asker_id
    assert world.act(payments.cancel, q, asker, T1) == "sent"
    assert history(app, q)[-1] == ("cancel", "queued", "refunded", asker, "user", "", T1)


def test_a_refund_made_at_stripe_is_recorded_as_stripes(app, world):
    q, a = offered(world)
    world.act(questions.claim, q, a, T1)
    world.act(questions.refund_at_stripe, q, None, T2)
    assert history(app, q)[-1] == ("refund_at_stripe", "claimed", "refunded", None, "stripe",
                                   "refunded at Stripe", T2)
    question = world.question(q)
    assert (question.refund_status, question.refund_requested_at, question.closed_at,
            question.lock_expires_at) == ("sent", T2, T2, None)


def test_suspending_an_answerer_records_the_organizer_and_the_reason_on_each_question(
        app, world):
    """Their offer, claim and clarification change (noted, by the organizer); their sent answer
    and another answerer's offer do not."""
    organizer = world.user("organizer")
    sent, a, asker = answered(world)
    clarifying = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, T1)
    world.act(questions.claim, clarifying, a, T1)
    world.act(questions.post_answer, clarifying, a, "Here is how.", T1)
    world.act(questions.ask_clarification, clarifying, world.question(clarifying).asker_id,
              "Which button?", T2)
    claimed = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, T2)
    world.act(questions.claim, claimed, a, T2)
    offered_q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, T2)
    others, other = offered(world)
    assert [world.question(q).answerer_id for q in (clarifying, claimed, offered_q, others)] == [
        a, a, a, other]
    with app.app_context():
        changed = questions.withdraw_from_answerer(
            db.session, db.session.get(User, a), T3, db.session.get(User, organizer))
        db.session.commit()
    assert changed == [clarifying, claimed, offered_q]
    note = "the answerer was suspended"
    assert [history(app, q)[-1] for q in changed] == [
        ("withdraw_clarification", "clarifying", "disputed", organizer, "user", note, T3),
        ("withdraw_claim", "claimed", "queued", organizer, "user", note, T3),
        ("withdraw_offer", "offered", "queued", organizer, "user", note, T3),
    ]
    assert [(world.question(q).answerer_id, world.question(q).lock_expires_at,
             world.question(q).offer_expires_at) for q in changed] == [
        (a, None, None), (None, None, None), (None, None, None)]
    assert world.question(clarifying).dispute_reason == (
        "The answerer was suspended before they could reply to the asker's question.")
    assert offer_rows(app, offered_q)[-1][3:] == ("withdrawn", T3)
    assert (world.question(sent).status, world.question(others).status) == ("answered", "offered")
    assert offer_rows(app, others)[-1][3:] == ("open", None)


@pytest.mark.parametrize("action, who, text, message", [
    (questions.post_answer, "answerer", " ", "the answer is empty"),
    (questions.post_answer, "answerer", "a" * (questions.ANSWER_MAX + 1),
     f"the answer is longer than {questions.ANSWER_MAX} characters"),
    (questions.ask_clarification, "asker", "", "the question for the answerer is empty"),
    (questions.reject, "asker", "r" * (questions.MESSAGE_MAX + 1),
     f"the reason is longer than {questions.MESSAGE_MAX} characters"),
    (questions.reply_clarification, "answerer", "\n", "the reply is empty"),
    (questions.reply_clarification, "answerer", "r" * (questions.ANSWER_MAX + 1),
     f"the reply is longer than {questions.ANSWER_MAX} characters"),
], ids=["empty answer", "long answer", "empty clarification", "long reason", "empty reply",
        "long reply"])
def test_a_refused_text_records_nothing_and_says_what_was_wrong(app, world, action, who, text,
                                                                message):
    q, a, asker = answered(world)
    if action is questions.post_answer:
        q, a = offered(world)
        world.act(questions.claim, q, a, T1)
    if action is questions.reply_clarification:
        world.act(questions.ask_clarification, q, asker, "Which button?", T2)
    before = history(app, q)
    with pytest.raises(questions.InvalidText) as refused:
        world.act(action, q, {"answerer": a, "asker": asker}[who], text, T3)
    assert str(refused.value) == message
    assert history(app, q) == before


def test_a_repeated_request_is_recognised_from_the_last_change_of_state(app, world):
    """``already_done``: the last change of state (a lock extension is none) and who made it."""
    q, a = offered(world)
    asker = world.question(q).asker_id
    world.act(questions.claim, q, a, T1)
    world.act(questions.extend_lock, q, a, T2)

    def done(action, user):
        return world.act(lambda session, question, who: questions.already_done(
            session, question, action, who), q, user)

    assert (done("claim", a), done("claim", asker), done("offer", a)) == (True, False, False)
    world.act(questions.post_answer, q, a, "Here is how.", T3)
    assert (done("post_answer", a), done("claim", a), done("accept", a)) == (True, False, False)
    assert done("post_answer", asker) is False


def test_a_refused_extension_or_rating_records_nothing_and_says_why(app, world):
    q, a = offered(world)
    world.act(questions.claim, q, a, T1)
    for minutes in (2, 3):
        world.act(questions.extend_lock, q, a, NIGHT + timedelta(minutes=minutes))
    before = history(app, q)
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, q, a, T3)
    assert (refused.value.reason, str(refused.value)) == (
        "limit", f"question {q}: lock not extended (limit)")
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, q, world.answerer(), T3)
    assert (refused.value.reason, str(refused.value)) == (
        "not_yours", f"question {q}: lock not extended (not_yours)")
    world.act(questions.post_answer, q, a, "Here is how.", T3)
    asker = world.question(q).asker_id
    with pytest.raises(questions.InvalidTransition) as refused:
        world.act(questions.rate, q, asker, 5, "")
    assert (refused.value.status, refused.value.action, str(refused.value)) == (
        "answered", "rate", f"question {q} is answered: cannot rate")
    world.act(questions.accept, q, asker, T4)
    with pytest.raises(questions.InvalidText) as refused:
        world.act(questions.rate, q, asker, 6, "")
    assert str(refused.value) == "a rating is 1 to 5 stars"
    assert history(app, q)[len(before):] == [
        ("post_answer", "claimed", "answered", a, "user", "", T3),
        ("accept", "answered", "closed", asker, "user", "", T4)]


def test_extending_one_claim_leaves_the_answerers_other_claim_alone(app, world):
    """Two questions claimed at the same moment have the same lock expiry: extending one
    extends that one only."""
    a = world.answerer()
    first, second = (world.paid_question(paid_at=DAY) for _ in "12")
    world.run(release.release_due_questions, NIGHT)
    for q in (first, second):
        world.act(questions.claim, q, a, T1)
    lock = world.question(second).lock_expires_at
    until = world.act(questions.extend_lock, first, a, T2)
    assert (world.question(first).lock_expires_at, world.question(second).lock_expires_at) == (
        until, lock)
    assert until > lock
    assert [e[0] for e in history(app, second)][-1] == "claim"


def lock_time(world, q, now):
    return world.act(lambda session, question, at: questions.lock_time_for(
        session, question, at), q, None, now)


def test_extensions_are_counted_per_claim_and_per_question(app, world):
    """Two extensions use up one claim's extensions; the answerer's other question and a new
    claim of the same question start again at none."""
    a = world.answerer()
    first, second = (world.paid_question(paid_at=DAY) for _ in "12")
    world.run(release.release_due_questions, NIGHT)
    for q in (first, second):
        world.act(questions.claim, q, a, T1)
    for minutes in (2, 3):
        world.act(questions.extend_lock, first, a, NIGHT + timedelta(minutes=minutes))
    used = lock_time(world, first, T3)
    assert (used.extensions_used, used.extensions_left, used.refusal, used.can_extend) == (
        2, 0, "limit", False)
    other = lock_time(world, second, T3)
    assert (other.extensions_used, other.extensions_left, other.refusal) == (0, 2, None)
    expiry = world.question(first).lock_expires_at
    world.run(release.expire_locks, expiry)
    world.run(release.release_due_questions, expiry, ignore_window=True)
    world.act(questions.claim, first, a, expiry)
    again = lock_time(world, first, expiry)
    assert (again.extensions_used, again.extensions_left, again.refusal) == (0, 2, None)


def test_an_extension_needs_a_claim_and_at_least_fifteen_minutes_before_the_deadline(app):
    lock = NIGHT + timedelta(hours=4)
    with app.app_context():
        rules = questions.settings.current(db.session)

    def until(status="claimed", deadline_after=timedelta(hours=10)):
        question = Question(status=status, lock_expires_at=lock, price_cents=1000,
                            deadline_at=lock + deadline_after)
        return questions.extended_lock_until(question, 0, rules, NIGHT)

    assert until(deadline_after=questions.MIN_LOCK_EXTENSION) == (
        lock + questions.MIN_LOCK_EXTENSION, None)
    assert until(deadline_after=questions.MIN_LOCK_EXTENSION - timedelta(seconds=1)) == (
        None, "deadline")
    assert until(status="answered") == (None, "not_yours")


def test_the_answerers_share_is_at_the_frozen_commission_once_paid_else_the_current_one(
        app, world):
    app.config["UPSS_COMMISSION_BPS"] = 1000
    paid = world.paid_question(paid_at=DAY, price_cents=1000)
    app.config["UPSS_COMMISSION_BPS"] = 2500
    with app.app_context():
        asker = db.session.get(User, world.question(paid).asker_id)
        unpaid = questions.create_question(db.session, asker, title="Q", body="Body",
                                           language="en", topic="other", price_cents=1000)
        assert questions.answerer_share(db.session, unpaid) == 750
        assert questions.answerer_share(db.session, db.session.get(Question, paid)) == 900


def test_starting_a_payment_is_recorded_at_the_callers_time(app, world):
    """The pay page passes its clock: the event and the payment's start are at that time."""
    asker = world.user("asker")
    with app.test_request_context():
        user = db.session.get(User, asker)
        q = questions.create_question(db.session, user, title="Q", body="Body",
                                      language="en", topic="other", price_cents=1000)
        questions.start_payment(db.session, q, user, "pi_test_started", now=T1)
        db.session.commit()
        q_id, started = q.id, q.payment_started_at
    assert started == T1
    assert history(app, q_id) == [
        ("start_payment", "draft", "awaiting_payment", asker, "user", "", T1)]
