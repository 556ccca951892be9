"""Paying for questions with Stripe: start a payment, test-mode payments, webhook events.

A question is paid only when Stripe's signed ``payment_intent.succeeded`` webhook arrives; that
event moves the question to ``queued`` and posts the ledger transaction in one commit (the
caller's). Every event is stored once by its id (``StripeEvent``), so a repeated delivery does
nothing. The amount always comes from the stored question, never from a form.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import ledger, questions
from .models import Question, StripeEvent, Tip, User, utcnow
from .stripe_gateway import CardDeclined, PaymentIntent, WebhookEvent, gateway

log = logging.getLogger(__name__)

#: Shown when Stripe gives no reason of its own.
DEFAULT_FAILURE = "The payment did not go through."


class AlreadyPaid(questions.QuestionError):
    """The question is past payment."""


def _idempotency_key(question: Question) -> str:
    # The first attempt uses the key of DESIGN.md; a retry after a failed charge needs a new
    # PaymentIntent (localstripe cannot re-confirm one whose charge failed), hence a new key.
    n = question.payment_attempts
    return f"question:{question.id}:pay" if n <= 1 else f"question:{question.id}:pay:{n}"


def _new_payment_intent(session: Session, question: Question) -> PaymentIntent:
    question.payment_attempts += 1
    session.flush()
    return gateway().create_payment_intent(
        amount_cents=question.price_cents, currency=question.currency,
        metadata={"question_id": question.id}, idempotency_key=_idempotency_key(question),
    )


def payment_for(session: Session, question: Question, asker: User) -> PaymentIntent:
    """The PaymentIntent the asker pays ``question`` with, created on first use.

    The first call moves the question from ``draft`` to ``awaiting_payment``.
    """
    questions.check_owner(question, asker)
    if question.status == "draft":
        intent = _new_payment_intent(session, question)
        questions.start_payment(session, question, asker, intent.id)
        return intent
    if question.status != "awaiting_payment":
        raise AlreadyPaid(f"question {question.id} is {question.status}")
    return gateway().retrieve_payment_intent(question.payment_intent_id)


def pay_with_test_card(session: Session, question: Question, asker: User,
                       scenario: str) -> PaymentIntent:
    """Test mode: pay ``question`` with a Stripe test card chosen on the pay page's panel.

    After a failed charge a fresh PaymentIntent replaces the old one (which is cancelled).
    A declined card records ``payment_error`` and raises ``CardDeclined``; the question stays
    payable.
    """
    intent = payment_for(session, question, asker)
    if question.payment_error:
        gateway().cancel_payment_intent(intent.id)
        intent = _new_payment_intent(session, question)
        question.payment_intent_id = intent.id
        question.payment_error = None
        session.flush()
    try:
        return gateway().confirm_with_test_card(intent.id, scenario)
    except CardDeclined as exc:
        question.payment_error = exc.message
        session.flush()
        raise


TIP_MIN_CENTS = 100
TIP_MAX_CENTS = 10_000


class InvalidTip(questions.QuestionError):
    """A tip amount outside the allowed range, or a question that cannot be tipped."""


def start_tip(session: Session, question: Question, asker: User, amount_cents: int) -> Tip:
    """A tip for the answerer of a closed question, with its PaymentIntent (all of it goes
    to the answerer: there is no commission on tips)."""
    questions.check_owner(question, asker)
    if question.status != "closed" or question.answerer_id is None:
        raise InvalidTip("only an accepted answer can be tipped")
    if type(amount_cents) is not int or not TIP_MIN_CENTS <= amount_cents <= TIP_MAX_CENTS:
        raise InvalidTip("tip amount out of range")
    tip = Tip(question_id=question.id, answerer_id=question.answerer_id,
              amount_cents=amount_cents, currency=question.currency)
    session.add(tip)
    session.flush()
    intent = gateway().create_payment_intent(
        amount_cents=amount_cents, currency=tip.currency, metadata={"tip_id": tip.id},
        idempotency_key=f"tip:{tip.id}:pay")
    tip.payment_intent_id = intent.id
    session.flush()
    return tip


def pay_tip_with_test_card(session: Session, tip: Tip, scenario: str) -> PaymentIntent:
    """Test mode: pay a tip with a Stripe test card. A declined card ends this tip attempt."""
    if tip.status != "awaiting_payment":
        raise AlreadyPaid(f"tip {tip.id} is {tip.status}")
    try:
        return gateway().confirm_with_test_card(tip.payment_intent_id, scenario)
    except CardDeclined as exc:
        tip.status = "failed"
        tip.payment_error = exc.message
        session.flush()
        raise


def handle_webhook_event(session: Session, event: WebhookEvent) -> str:
    """Apply a verified Stripe event exactly once and return what was done.

    A repeated event id returns ``"duplicate"`` and changes nothing; the event row, the state
    change and the ledger posting are flushed together for the caller to commit.
    """
    try:
        with session.begin_nested():
            session.add(StripeEvent(id=event.id, type=event.type, object_id=event.object_id))
    except IntegrityError:
        return "duplicate"
    stored = session.get(StripeEvent, event.id)
    handler = _HANDLERS.get(event.type)
    outcome = handler(session, event) if handler else "ignored: type not used"
    stored.outcome = outcome[:255]
    session.flush()
    if not outcome.startswith("applied"):
        log.info("stripe event %s (%s): %s", event.id, event.type, outcome)
    return outcome


def _question_for(session: Session, event: WebhookEvent) -> Question | None:
    try:
        question_id = int(event.metadata.get("question_id", ""))
    except ValueError:
        return None
    return session.scalar(
        select(Question).where(Question.id == question_id).with_for_update()
    )


def _tip_succeeded(session: Session, event: WebhookEvent) -> str:
    tip = session.scalar(select(Tip).where(Tip.payment_intent_id == event.object_id)
                         .with_for_update())
    if tip is None or str(tip.id) != event.metadata.get("tip_id"):
        return "ignored: no tip for this payment"
    if tip.status == "paid":
        return "ignored: tip already paid"
    if event.amount != tip.amount_cents or event.currency != tip.currency:
        return "ignored: amount does not match the tip"
    tip.status, tip.paid_at, tip.payment_error = "paid", utcnow(), None
    ledger.post(session, f"payment:{event.object_id}", f"Tip {tip.id} for question "
                f"{tip.question_id}", [("stripe_balance", tip.amount_cents),
                                       (f"payable:answerer:{tip.answerer_id}",
                                        -tip.amount_cents)], tip.currency)
    return "applied: tip paid"


def _payment_succeeded(session: Session, event: WebhookEvent) -> str:
    if "tip_id" in event.metadata:
        return _tip_succeeded(session, event)
    question = _question_for(session, event)
    if question is None:
        return "ignored: no question for this payment"
    if question.payment_intent_id != event.object_id:
        # Not the PaymentIntent we expect for this question (an older, cancelled attempt, or
        # another environment sharing the Stripe account): reconciliation reports it.
        log.warning("payment %s is not question %s's current payment", event.object_id,
                    question.id)
        return "ignored: not the question's current payment"
    if question.status != "awaiting_payment":
        return f"ignored: question already {question.status}"
    if event.amount != question.price_cents or event.currency != question.currency:
        log.error("payment %s amount %s %s does not match question %s", event.object_id,
                  event.amount, event.currency, question.id)
        return "ignored: amount does not match the question"
    questions.confirm_payment(session, question, event.object_id)
    return "applied: question queued"


def _payment_failed(session: Session, event: WebhookEvent) -> str:
    question = _question_for(session, event)
    if question is None:
        return "ignored: no question for this payment"
    if question.status != "awaiting_payment" or question.payment_intent_id != event.object_id:
        return "ignored: not the question's current payment"
    question.payment_error = event.failure_message or DEFAULT_FAILURE
    session.flush()
    return "applied: failure recorded"


_HANDLERS = {
    "payment_intent.succeeded": _payment_succeeded,
    "payment_intent.payment_failed": _payment_failed,
}
