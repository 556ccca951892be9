"""Question lifecycle: the ONLY module that changes ``Question.status``.

Design overview
---------------
``TRANSITIONS`` is the whole state machine of DESIGN.md as data: action → (states it may start
from, state it ends in). ``_transition()`` applies one action with a guarded UPDATE
(``WHERE id = :id AND status = :expected``), so two requests racing for the same question can
never both win: the loser's UPDATE matches no row and raises ``InvalidTransition``. Every change
writes a ``QuestionEvent`` (who, when, from, to). Functions here flush and never commit; the
request, job or CLI command that called them owns the transaction, which is what makes
"payment confirmed + ledger posted + status changed" a single commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from . import ledger, settings
from .models import LANGUAGES, Question, QuestionEvent, User, utcnow

#: action -> (allowed current states, new state). Later issues call the other actions.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start_payment": (frozenset({"draft"}), "awaiting_payment"),
    "confirm_payment": (frozenset({"awaiting_payment"}), "queued"),
    "offer": (frozenset({"queued"}), "offered"),
    "decline_offer": (frozenset({"offered"}), "queued"),
    "expire_offer": (frozenset({"offered"}), "queued"),
    "claim": (frozenset({"offered"}), "claimed"),
    "expire_lock": (frozenset({"claimed"}), "queued"),
    "post_answer": (frozenset({"claimed"}), "answered"),
    "ask_clarification": (frozenset({"answered"}), "clarifying"),
    "reply_clarification": (frozenset({"clarifying"}), "answered"),
    "accept": (frozenset({"answered"}), "closed"),
    "auto_accept": (frozenset({"answered"}), "closed"),
    "reject": (frozenset({"answered"}), "disputed"),
    "uphold_dispute": (frozenset({"disputed"}), "closed"),
    "refund_dispute": (frozenset({"disputed"}), "refunded"),
    "refund_at_deadline": (frozenset({"queued", "offered", "claimed"}), "refunded"),
    "cancel": (frozenset({"queued"}), "refunded"),
}

#: Topics an asker can choose; stored by key, shown translated.
TOPICS = ("everyday", "health", "home", "money", "technology", "language", "law", "other")
TITLE_MAX = 150
BODY_MAX = 5000


class QuestionError(Exception):
    """Base class of refusals by the question service."""


class InvalidTransition(QuestionError):
    """The action is not allowed in the question's current state (or it just changed)."""

    def __init__(self, question_id: int, status: str, action: str):
        super().__init__(f"question {question_id} is {status}: cannot {action}")
        self.status = status
        self.action = action


class NotYourQuestion(QuestionError):
    """The user may not act on this question."""


class InvalidQuestion(QuestionError):
    """A field of a new question breaks a rule; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _transition(session: Session, question: Question, action: str, *, actor: User | None,
                actor_kind: str = "user", note: str = "", **values) -> None:
    """Apply ``action`` to ``question`` with a guarded UPDATE and record the event."""
    allowed_from, to_status = TRANSITIONS[action]
    from_status = question.status
    if from_status not in allowed_from:
        raise InvalidTransition(question.id, from_status, action)
    result = session.execute(
        update(Question)
        .where(Question.id == question.id, Question.status == from_status)
        .values(status=to_status, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(question)
        raise InvalidTransition(question.id, question.status, action)
    session.add(QuestionEvent(
        question_id=question.id, actor_id=actor.id if actor else None, actor_kind=actor_kind,
        action=action, from_status=from_status, to_status=to_status, note=note,
    ))
    session.flush()
    session.refresh(question)


def check_owner(question: Question, user: User) -> None:
    """Raise NotYourQuestion unless ``user`` asked ``question``."""
    if question.asker_id != user.id:
        raise NotYourQuestion(f"question {question.id} belongs to another asker")


def create_question(session: Session, asker: User, *, title: str, body: str, language: str,
                    topic: str, price_cents: int) -> Question:
    """Store a new unpaid (``draft``) question after checking every rule the form checks."""
    bounds = settings.current(session)
    title, body = (title or "").strip(), (body or "").strip()
    if not title or len(title) > TITLE_MAX:
        raise InvalidQuestion("title", f"title must be 1 to {TITLE_MAX} characters")
    if not body or len(body) > BODY_MAX:
        raise InvalidQuestion("body", f"question must be 1 to {BODY_MAX} characters")
    if language not in LANGUAGES:
        raise InvalidQuestion("language", f"unknown language {language!r}")
    if topic not in TOPICS:
        raise InvalidQuestion("topic", f"unknown topic {topic!r}")
    if type(price_cents) is not int or not (
        bounds.price_min_cents <= price_cents <= bounds.price_max_cents
    ):
        raise InvalidQuestion("price", "price is outside the allowed range")
    question = Question(
        asker_id=asker.id, title=title, body=body, language=language, topic=topic,
        price_cents=price_cents, currency=bounds.currency, status="draft",
    )
    session.add(question)
    session.flush()
    return question


def start_payment(session: Session, question: Question, asker: User,
                  payment_intent_id: str) -> None:
    """Record the PaymentIntent that pays for ``question``: draft → awaiting_payment."""
    _transition(session, question, "start_payment", actor=asker,
                payment_intent_id=payment_intent_id, payment_error=None)


def confirm_payment(session: Session, question: Question, payment_intent_id: str,
                    now: datetime | None = None) -> ledger.LedgerTransaction:
    """Stripe confirmed the payment: awaiting_payment → queued, and the money goes to escrow.

    The ledger posting (stripe_balance → escrow:question) is keyed by the PaymentIntent, so a
    repeated confirmation can never post twice.
    """
    _transition(session, question, "confirm_payment", actor=None, actor_kind="stripe",
                payment_intent_id=payment_intent_id, payment_error=None,
                paid_at=now or utcnow())
    return ledger.post(
        session, f"payment:{payment_intent_id}", f"Payment for question {question.id}",
        [("stripe_balance", question.price_cents),
         (f"escrow:question:{question.id}", -question.price_cents)],
        question.currency,
    )
