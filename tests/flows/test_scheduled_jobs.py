"""The release jobs touch exactly the questions that are due, at their boundaries, and log skips."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.flows.test_release import DAY, NIGHT, answered
from upss import questions, release
from upss.models import Question

DEADLINE = DAY + timedelta(hours=72)  # of a question paid at DAY


@contextlib.contextmanager
def logged(name: str):
    """The messages logged at WARNING or above by logger ``name`` while the block runs."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(f"{record.levelname} {record.getMessage()}")
    logger = logging.getLogger(name)
    level, disabled = logger.level, logger.disabled
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.disabled = False  # whatever an in-process migration's logging setup did
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled


def test_refund_overdue_refunds_only_unanswered_questions_past_their_deadline(app, world):
    """Queued, offered and claimed questions at their deadline are refunded; answered,
    clarifying, disputed and closed ones, and a queued one a second before its deadline, are
    left alone without a word in the log."""
    after_answer = {}
    for state in ("answered", "clarifying", "disputed", "closed"):
        q, _a, asker = answered(world)
        action = {"answered": None, "clarifying": (questions.ask_clarification, "Which?"),
                  "disputed": (questions.reject, "Wrong"), "closed": (questions.accept,)}[state]
        if action:
            world.act(action[0], q, asker, *action[1:], NIGHT + timedelta(hours=2))
        after_answer[q] = state
    offered_q, claimed_q = (world.paid_question(paid_at=DAY, real_stripe=True) for _ in "oc")
    world.run(release.release_due_questions, NIGHT + timedelta(hours=3))
    world.act(questions.claim, claimed_q, world.question(claimed_q).answerer_id,
              NIGHT + timedelta(hours=3))
    queued_q = world.paid_question(paid_at=DAY, real_stripe=True)
    not_yet = world.paid_question(paid_at=DAY + timedelta(seconds=1))
    with logged("upss.release") as messages:
        assert world.run(release.refund_overdue, DEADLINE) == 3
    assert messages == []
    for q in (offered_q, claimed_q, queued_q):
        question = world.question(q)
        assert (question.status, question.refund_status) == ("refunded", "sent")
    assert {q: world.question(q).status for q in after_answer} == after_answer
    assert (world.question(not_yet).status, world.question(not_yet).refund_status) == (
        "queued", None)


def test_a_question_answered_while_the_refund_job_runs_is_skipped_and_logged(
        app, world, monkeypatch):
    """Two claimed questions reach their deadline; while the job refunds the first, the other
    one's answer arrives. That one is skipped with a warning, the first is still refunded."""
    a = world.answerer()
    first, second = (world.paid_question(paid_at=DAY, real_stripe=True) for _ in "12")
    world.run(release.release_due_questions, NIGHT)
    for q in (first, second):
        world.act(questions.claim, q, a, NIGHT)
    real_refund, order = questions.refund, []

    def refund_while_the_other_is_answered(session, question, *args, **kwargs):
        if not order:
            other = second if question.id == first else first
            session.execute(update(Question).where(Question.id == other).values(
                status="answered", answer_body="Just in time", answered_at=DEADLINE)
                .execution_options(synchronize_session=False))
        order.append(question.id)
        return real_refund(session, question, *args, **kwargs)

    monkeypatch.setattr(questions, "refund", refund_while_the_other_is_answered)
    with logged("upss.release") as messages:
        assert world.run(release.refund_overdue, DEADLINE) == 1
    refunded, skipped = order
    assert messages == [f"WARNING refund of question {skipped} skipped: question {skipped} "
                        "is answered: cannot refund_at_deadline"]
    assert (world.question(refunded).status, world.question(refunded).refund_status) == (
        "refunded", "sent")
    assert (world.question(skipped).status, world.question(skipped).refund_status) == (
        "answered", None)


def _offered(world):
    world.answerer()
    q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    return q, world.question(q).offer_expires_at, lambda session, question, now: (
        questions.expire_offer(session, question, now))


def _claimed(world):
    q, _due, _expire = _offered(world)
    world.act(questions.claim, q, world.question(q).answerer_id, NIGHT)
    return q, world.question(q).lock_expires_at, lambda session, question, now: (
        questions.expire_lock(session, question, now))


def _answered(world):
    q, _a, _asker = answered(world)
    after = timedelta(days=3)
    return q, world.question(q).answered_at + after, lambda session, question, now: (
        questions.auto_accept(session, question, now, after))


def _unanswered(world):
    q = world.paid_question(paid_at=DAY)
    return q, DEADLINE, lambda session, question, now: questions.refund(
        session, question, "refund_at_deadline", None, now)


@pytest.mark.parametrize("make", [_offered, _claimed, _answered, _unanswered],
                         ids=["expire_offer", "expire_lock", "auto_accept", "refund_at_deadline"])
def test_a_scheduler_transition_refuses_a_question_not_yet_due(app, world, make):
    """A job working from an old list (or a second job) cannot end an offer, a claim, the
    asker's time or the answer's time a second early; at the second itself it can."""
    q, due, transition = make(world)
    state = world.question(q).status
    with pytest.raises(questions.InvalidTransition):
        world.act(transition, q, None, due - timedelta(seconds=1))
    assert world.question(q).status == state
    world.act(transition, q, None, due)
    assert world.question(q).status != state
