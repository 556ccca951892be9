"""Question lifecycle: the ONLY module that changes ``Question.status``.

Design overview
---------------
``TRANSITIONS`` is the whole state machine of DESIGN.md as data: action → (states it may start
from, state it ends in). ``_transition()`` applies one action with a guarded UPDATE
(``WHERE id = :id AND status = :expected``), so two requests racing for the same question can
never both win: the loser's UPDATE matches no row and raises ``InvalidTransition``. Every change
writes a ``QuestionEvent`` (who, when, from, to). :func:`claim`, the busiest action, writes the
same guard as one ``UPDATE … RETURNING`` without reading the row back first or after.
Functions here flush and never commit; the request, job or CLI command that called them owns
the transaction, which is what makes "payment confirmed + ledger posted + status changed" a
single commit.

Time to answer (WCAG 2.2.1, time adjustable): a claim is the answerer's until its lock
expires, or until the asker's deadline if that comes first (then the question is refunded).
The answerer may extend the lock (:func:`extend_lock`) at most ``MAX_LOCK_EXTENSIONS`` times
per claim, each time by half the lock hours the question got when it was claimed, never past
the deadline. An extension changes no state: it is a guarded UPDATE of ``lock_expires_at``
alone, recorded as a ``QuestionEvent`` with ``action="extend_lock"`` from and to ``claimed``
(those rows are what is counted). :func:`lock_time` tells a page the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import (
    Interval,
    Row,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from . import access, audit, ledger, money, notifications, settings
from .models import (
    LANGUAGES,
    AnswerDraft,
    AnswererProfile,
    Message,
    Offer,
    Question,
    QuestionEvent,
    User,
    utcnow,
)

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
    #: The whole payment was refunded at Stripe (in its Dashboard) before it was split.
    "refund_at_stripe": (frozenset({"queued", "offered", "claimed", "answered", "clarifying",
                                    "disputed"}), "refunded"),
    #: The answerer was suspended: offers and claims go back to the queue (drafts are kept),
    #: and a clarification they can no longer reply to goes to the organizer.
    "withdraw_offer": (frozenset({"offered"}), "queued"),
    "withdraw_claim": (frozenset({"claimed"}), "queued"),
    "withdraw_clarification": (frozenset({"clarifying"}), "disputed"),
}

#: Topics an asker can choose; stored by key, shown translated.
TOPICS = ("everyday", "health", "home", "money", "technology", "language", "law", "other")
TITLE_MAX = 150
BODY_MAX = 5000
ANSWER_MAX = 20000
MESSAGE_MAX = 2000

#: How often one claim's lock may be extended; each extension adds half the question's lock
#: hours (``settings.lock_hours_for``), and never goes past the asker's deadline.
MAX_LOCK_EXTENSIONS = 2
#: An extension the deadline would cut shorter than this is not offered at all.
MIN_LOCK_EXTENSION = timedelta(minutes=15)
#: The answer page warns this long before the answerer's time runs out...
LOCK_WARNING = timedelta(minutes=15)
#: ...and once more, urgently, this long before.
LOCK_FINAL_WARNING = timedelta(minutes=5)


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


class NotYourOffer(QuestionError):
    """The question is not offered to or claimed by this answerer (or the offer ran out)."""


class Suspended(QuestionError):
    """The answerer is suspended: they may not pick up, answer or reply any more."""


class ConflictOfInterest(QuestionError):
    """An organizer may not decide a dispute about a question they asked or answered."""


class InvalidText(QuestionError):
    """An answer, clarification or reason is empty or too long."""


class LockNotExtended(QuestionError):
    """The answerer's time cannot be extended; ``reason`` says why (see ``EXTENSION_REFUSALS``).
    """

    def __init__(self, question_id: int, reason: str):
        super().__init__(f"question {question_id}: lock not extended ({reason})")
        self.reason = reason


#: Why a lock cannot be extended: "not_yours" (not claimed by this answerer), "expired" (the
#: lock ran out), "limit" (``MAX_LOCK_EXTENSIONS`` used), "deadline" (the asker's deadline
#: leaves less than ``MIN_LOCK_EXTENSION``), "changed" (it changed while we looked).
EXTENSION_REFUSALS = ("not_yours", "expired", "limit", "deadline", "changed")


class InvalidQuestion(QuestionError):
    """A field of a new question breaks a rule; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _transition(session: Session, question: Question, action: str, *, actor: User | None,
                actor_kind: str = "user", note: str = "", guard=(), at: datetime | None = None,
                **values) -> None:
    """Apply ``action`` to ``question`` with a guarded UPDATE and record the event.

    ``guard`` adds conditions the row must still meet (e.g. "offered to this answerer").
    """
    allowed_from, to_status = TRANSITIONS[action]
    from_status = question.status
    if from_status not in allowed_from:
        raise InvalidTransition(question.id, from_status, action)
    result = session.execute(
        update(Question)
        .where(Question.id == question.id, Question.status == from_status, *guard)
        .values(status=to_status, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(question)
        raise InvalidTransition(question.id, question.status, action)
    session.add(QuestionEvent(
        question_id=question.id, actor_id=actor.id if actor else None, actor_kind=actor_kind,
        action=action, from_status=from_status, to_status=to_status, note=note,
        at=at or utcnow(),
    ))
    session.flush()
    session.refresh(question)


def lock(session: Session, question: Question) -> Question:
    """Hold ``question``'s row until the transaction ends (PostgreSQL ``FOR UPDATE``; on
    SQLite every transaction already holds the database's write lock) and read it afresh, so
    concurrent requests about one question (two tabs, a double click) run one after another.
    """
    session.execute(select(Question.id).where(Question.id == question.id).with_for_update())
    session.refresh(question)
    return question


def already_done(session: Session, question: Question, action: str, actor: User) -> bool:
    """Whether ``action`` is the question's last change of state and ``actor`` made it: a repeated
    request (a double click, a second tab) then succeeded already and can say so."""
    last = session.scalar(select(QuestionEvent).where(
        QuestionEvent.question_id == question.id,
        QuestionEvent.from_status != QuestionEvent.to_status)  # not an extension of a lock
        .order_by(QuestionEvent.id.desc()).limit(1))
    return last is not None and last.action == action and last.actor_id == actor.id


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
                  payment_intent_id: str, now: datetime | None = None,
                  first_check_after: timedelta = timedelta(minutes=5)) -> None:
    """Record the PaymentIntent that pays for ``question``: draft → awaiting_payment.

    Stripe is asked about it after ``first_check_after`` in case its webhook is lost
    (``payments.check_unconfirmed_payments``).
    """
    now = now or utcnow()
    _transition(session, question, "start_payment", actor=asker, at=now,
                payment_intent_id=payment_intent_id, payment_error=None,
                payment_started_at=now, payment_check_due_at=now + first_check_after,
                payment_checks=0, payment_checks_ended_at=None)


def confirm_payment(session: Session, question: Question, payment_intent_id: str,
                    now: datetime | None = None) -> ledger.LedgerTransaction:
    """Stripe confirmed the payment: awaiting_payment → queued, and the money goes to escrow.

    The ledger posting (stripe_balance → escrow:question) is keyed by the PaymentIntent, so a
    repeated confirmation can never post twice.
    """
    now = now or utcnow()
    rules = settings.current(session)
    _transition(session, question, "confirm_payment", at=now, actor=None, actor_kind="stripe",
                payment_intent_id=payment_intent_id, payment_error=None, paid_at=now,
                payment_check_due_at=None, commission_bps=rules.commission_bps,
                deadline_at=now + timedelta(hours=rules.deadline_hours))
    notifications.enqueue(session, question.asker, "payment_confirmed", {
        "question_id": question.id, "title": question.title,
        "amount_cents": question.price_cents, "currency": question.currency}, now)
    return ledger.post(
        session, f"payment:{payment_intent_id}", f"Payment for question {question.id}",
        [(ledger.STRIPE_BALANCE, question.price_cents),
         (ledger.escrow_account(question.id), -question.price_cents)],
        question.currency,
    )


def _text(body: str | None, limit: int, what: str) -> str:
    body = (body or "").strip()
    if not body:
        raise InvalidText(f"the {what} is empty")
    if len(body) > limit:
        raise InvalidText(f"the {what} is longer than {limit} characters")
    return body


_OFFERS = Offer.__table__
#: Close a question's open offer (Core statements built once: a claim is the busiest action).
_RESOLVE_OFFER = (update(_OFFERS)
                  .where(_OFFERS.c.question_id == bindparam("question"),
                         _OFFERS.c.outcome == "open")
                  .values(outcome=bindparam("new_outcome"), resolved_at=bindparam("at")))
_RESOLVE_OFFER_OF = _RESOLVE_OFFER.where(_OFFERS.c.answerer_id == bindparam("answerer"))


def _resolve_offer(session: Session, question: Question, answerer_id: int | None,
                   outcome: str, now: datetime) -> None:
    """Close the question's open offer (to ``answerer_id``, or to whoever has it)."""
    params = {"question": question.id, "new_outcome": outcome, "at": now}
    if answerer_id is None:
        session.connection().execute(_RESOLVE_OFFER, params)
    else:
        session.connection().execute(_RESOLVE_OFFER_OF, dict(params, answerer=answerer_id))


def offer(session: Session, question: Question, answerer: User, now: datetime,
          rules: settings.Settings) -> Offer:
    """Offer a queued question to one answerer until ``offer_hours`` from now
    (:func:`offer_many` for one)."""
    made = offer_many(session, [(question.id, answerer.id)], now, rules)
    if not made:
        session.refresh(question)
        raise InvalidTransition(question.id, question.status, "offer")
    return made[0]


def offer_many(session: Session, chosen: list[tuple[int, int]], now: datetime,
               rules: settings.Settings) -> list[Offer]:
    """Offer queued questions, each to one answerer (``(question id, answerer id)`` pairs),
    until ``offer_hours`` from now: the release run's transition, set-based. One guarded
    ``UPDATE … RETURNING`` for all of them (a question no longer queued does not match and is
    left out), then the events, the offers and the answerers' messages of those it changed,
    each in one statement, whatever their number (on PostgreSQL the UPDATE, the events and
    the offers are one statement). Returns the offers made, in the given order.
    """
    if not chosen:
        return []
    allowed_from, to_status = TRANSITIONS["offer"]
    (from_status,) = allowed_from
    expires = now + timedelta(hours=rules.offer_hours)
    session.flush()
    write = (_write_offers_together if session.get_bind().dialect.name == "postgresql"
             else _write_offers_apart)
    made = write(session, chosen, from_status, to_status, now, expires)
    for offer, _ in made:  # a loaded copy of the question would still say "queued"
        loaded = session.identity_map.get(identity_key(Question, offer.question_id))
        if loaded is not None:
            session.expire(loaded)
    notifications.enqueue_many(session, "new_offer", [
        (offer.answerer_id, {"question_id": offer.question_id, "title": title,
                             "expires_at": expires.isoformat()}) for offer, title in made], now)
    return [offer for offer, _ in made]


def _write_offers_apart(session: Session, chosen: list[tuple[int, int]], from_status: str,
                        to_status: str, now: datetime,
                        expires: datetime) -> list[tuple[Offer, str]]:
    """:func:`offer_many`'s writes one statement each: the guarded UPDATE, the events, the
    offers (read back). The offers made, with their questions' titles, in the given order."""
    answerer_of = dict(chosen)
    changed = dict(session.execute(
        update(_QUESTIONS)
        .where(_QUESTIONS.c.id.in_(sorted(answerer_of)),
               _QUESTIONS.c.status == from_status)
        .values(status=to_status, answerer_id=case(answerer_of, value=_QUESTIONS.c.id),
                offer_expires_at=expires, lock_expires_at=None)
        .returning(_QUESTIONS.c.id, _QUESTIONS.c.title)).all())
    made = [(q, a) for q, a in chosen if q in changed]
    if not made:
        return []
    session.execute(_EVENTS_INSERT, [
        {"question_id": q, "actor_id": None, "actor_kind": "scheduler", "action": "offer",
         "from_status": from_status, "to_status": to_status, "note": "", "at": now}
        for q, _ in made])
    session.execute(_OFFERS_INSERT, [
        {"question_id": q, "answerer_id": a, "offered_at": now, "expires_at": expires,
         "outcome": "open"} for q, a in made])
    # Read back, not RETURNING: SQLite would insert one row per statement to keep the order.
    written = {offer.question_id: offer for offer in session.scalars(
        select(Offer).where(Offer.question_id.in_(sorted(changed)), Offer.outcome == "open")
        .order_by(Offer.id))}
    return [(written[q], changed[q]) for q, _ in made]


#: PostgreSQL: :func:`offer_many`'s writes in one statement, built once. ``pairs`` holds the
#: (question, answerer, place) arrays; the guarded UPDATE moves the questions still queued,
#: and from the rows it returned the events and the offers are written (data-modifying CTEs,
#: so a question no longer queued gets neither), the offers in the given order so their ids
#: grow in it as on SQLite (the run ranks answerers by their last offer's id).
_OFFER_MANY_TOGETHER = text("""
WITH pairs AS (
    SELECT * FROM unnest(CAST(:questions AS integer[]), CAST(:answerers AS integer[]))
                  WITH ORDINALITY AS p(question_id, answerer_id, place)),
moved AS (
    UPDATE question SET status = :to_status, answerer_id = pairs.answerer_id,
                        offer_expires_at = :expires, lock_expires_at = NULL
    FROM pairs
    WHERE question.id = pairs.question_id AND question.status = :from_status
    RETURNING question.id, question.answerer_id, question.title, pairs.place),
events AS (
    INSERT INTO question_event (question_id, actor_id, actor_kind, action, from_status,
                                to_status, note, at)
    SELECT id, NULL, 'scheduler', 'offer', :from_status, :to_status, '', :now FROM moved),
made AS (
    INSERT INTO offer (question_id, answerer_id, offered_at, expires_at, outcome)
    SELECT id, answerer_id, :now, :expires, 'open' FROM moved ORDER BY place
    RETURNING offer.*)
SELECT made.*, moved.title AS question_title
FROM made JOIN moved ON moved.id = made.question_id ORDER BY made.id
""").bindparams(bindparam("now", type_=Offer.__table__.c.offered_at.type),
                bindparam("expires", type_=Offer.__table__.c.expires_at.type))


def _write_offers_together(session: Session, chosen: list[tuple[int, int]], from_status: str,
                           to_status: str, now: datetime,
                           expires: datetime) -> list[tuple[Offer, str]]:
    """PostgreSQL: :func:`offer_many`'s writes as :data:`_OFFER_MANY_TOGETHER`. The offers
    made, with their questions' titles, in the given order."""
    return [tuple(row) for row in session.execute(
        select(Offer, literal_column("question_title")).from_statement(_OFFER_MANY_TOGETHER),
        {"questions": [q for q, _ in chosen], "answerers": [a for _, a in chosen],
         "from_status": from_status, "to_status": to_status, "now": now, "expires": expires})]


def _check_active(session: Session, answerer: User) -> None:
    if not access.is_active_answerer(session, answerer):
        raise Suspended(f"answerer {answerer.id} is not an active answerer")


def claim(session: Session, question: Question, answerer: User, now: datetime) -> None:
    """The answerer picks up a question offered to them; it is theirs until the lock expires.

    One guarded ``UPDATE … RETURNING`` makes the claim: it matches only while the question is
    offered to this answerer, the offer has not run out and the answerer is active, so of any
    number of concurrent claims at most one succeeds. Then its event and the offer's outcome
    are written (on PostgreSQL by the same statement). Only a refused claim reads more, to
    say why.
    """
    if question.status == "offered" and question.answerer_id != answerer.id:
        raise NotYourOffer(f"question {question.id} is not offered to you")
    if not answerer.is_answerer:
        raise Suspended(f"answerer {answerer.id} is not an active answerer")
    session.flush()  # the statements below go straight to the connection
    connection = session.connection()
    params = {"question": question.id, "answerer": answerer.id, "now": now}
    together = connection.dialect.name == "postgresql"
    if together:  # the lock hours of the settings in force, in the same statement
        claimed = connection.execute(_CLAIM_WITH_EVENT,
                                     params | settings.lock_defaults()).first()
    else:
        rules = settings.current(session)
        lock = now + timedelta(hours=rules.lock_hours_for(question.price_cents))
        claimed = connection.execute(_CLAIM, params | {"lock": lock}).first()
    if claimed is None:
        _refused_claim(session, question, answerer)
    for name, value in claimed._mapping.items():
        set_committed_value(question, name, value)
    session.expire(question, ["events"])
    if together:
        return
    connection.execute(_EVENTS_INSERT, {
        "question_id": question.id, "actor_id": answerer.id, "actor_kind": "user",
        "action": "claim", "from_status": "offered", "to_status": "claimed", "note": "",
        "at": now})
    _resolve_offer(session, question, answerer.id, "claimed", now)


_QUESTIONS = Question.__table__
_PROFILES = AnswererProfile.__table__
#: The guarded claim, built once (Core, not ORM: a claim is the busiest action).
def _claim_update(lock):
    """The guarded claim, its lock running out at ``lock``."""
    return (
        update(_QUESTIONS)
        .where(_QUESTIONS.c.id == bindparam("question"), _QUESTIONS.c.status == "offered",
               _QUESTIONS.c.answerer_id == bindparam("answerer"),
               _QUESTIONS.c.offer_expires_at > bindparam("now"),
               select(_PROFILES.c.user_id).where(_PROFILES.c.user_id == bindparam("answerer"),
                                                  _PROFILES.c.active.is_(True)).exists())
        .values(status="claimed", lock_expires_at=lock, offer_expires_at=None)
        .returning(_QUESTIONS.c.status, _QUESTIONS.c.answerer_id,
                   _QUESTIONS.c.lock_expires_at, _QUESTIONS.c.offer_expires_at))


_CLAIM = _claim_update(bindparam("lock"))
_EVENTS_INSERT = insert(QuestionEvent.__table__)
_OFFERS_INSERT = insert(_OFFERS)


def _claim_with_event():
    """PostgreSQL: :data:`_CLAIM`, its event and its offer's outcome in one statement
    (data-modifying CTEs), one round trip instead of four: the lock's hours come from the
    settings in force in the same statement (``settings.lock_hours_sql``). The event and
    the offer are written only from the row the guarded UPDATE returned, so a refused claim
    writes nothing; the same snapshot and the question's row lock hold for all three."""
    events = QuestionEvent.__table__
    answerer = bindparam("answerer", type_=_QUESTIONS.c.answerer_id.type)
    now = bindparam("now", type_=events.c.at.type)
    lock = now + func.make_interval(0, 0, 0, 0, settings.lock_hours_sql(
        _QUESTIONS.c.price_cents), type_=Interval)
    claimed = _claim_update(lock).returning(_QUESTIONS.c.id).cte("claimed")
    event = insert(events).from_select(
        ["question_id", "actor_id", "actor_kind", "action", "from_status", "to_status", "note",
         "at"],
        select(claimed.c.id, answerer, literal("user"), literal("claim"), literal("offered"),
               literal("claimed"), literal(""), now)).cte("claim_event")
    outcome = (update(_OFFERS)
               .where(_OFFERS.c.question_id == claimed.c.id,
                      _OFFERS.c.answerer_id == answerer, _OFFERS.c.outcome == "open")
               .values(outcome="claimed", resolved_at=now).cte("claim_offer"))
    return (select(claimed.c.status, claimed.c.answerer_id, claimed.c.lock_expires_at,
                   claimed.c.offer_expires_at).add_cte(event, outcome))


_CLAIM_WITH_EVENT = _claim_with_event()


def _refused_claim(session: Session, question: Question, answerer: User) -> NoReturn:
    """Say why the guarded claim matched no row: offered to someone else or run out
    (``NotYourOffer``), the answerer suspended (``Suspended``), or not offered at all."""
    session.refresh(question)
    if question.status == "offered" and question.answerer_id != answerer.id:
        raise NotYourOffer(f"question {question.id} is not offered to you")
    _check_active(session, answerer)
    if question.status == "offered":
        raise NotYourOffer("the offer has run out")
    raise InvalidTransition(question.id, question.status, "claim")


def decline(session: Session, question: Question, answerer: User, now: datetime) -> None:
    """The answerer passes; the question goes back to the queue and is never offered to them
    again."""
    if question.answerer_id != answerer.id:
        raise NotYourOffer(f"question {question.id} is not offered to you")
    _transition(session, question, "decline_offer", at=now, actor=answerer, answerer_id=None,
                offer_expires_at=None, guard=(Question.answerer_id == answerer.id,))
    _resolve_offer(session, question, answerer.id, "declined", now)
    session.flush()


def expire_offer(session: Session, question: Question, now: datetime) -> None:
    """An offer nobody picked up in time: back to the queue for someone else."""
    answerer_id = question.answerer_id
    _transition(session, question, "expire_offer", at=now, actor=None, actor_kind="scheduler",
                answerer_id=None, offer_expires_at=None,
                guard=(Question.offer_expires_at <= now,))
    _resolve_offer(session, question, answerer_id, "expired", now)
    session.flush()


def expire_lock(session: Session, question: Question, now: datetime) -> None:
    """A claim whose time ran out: back to the queue. The answerer's draft stays saved."""
    answerer_id = question.answerer_id
    _transition(session, question, "expire_lock", at=now, actor=None, actor_kind="scheduler",
                answerer_id=None, lock_expires_at=None,
                guard=(Question.lock_expires_at <= now,))
    _claim_lapsed(session, question, answerer_id)


def _claim_lapsed(session: Session, question: Question, answerer_id: int | None) -> None:
    """The answerer's claim ended before they answered: its offer becomes ``lapsed``, which
    lists the question among their saved drafts (``upss.lists.lapsed_drafts``)."""
    session.execute(
        update(Offer)
        .where(Offer.question_id == question.id, Offer.answerer_id == answerer_id,
               Offer.outcome == "claimed")
        .values(outcome="lapsed")
        .execution_options(synchronize_session=False)
    )


def lock_extension(question: Question, rules: settings.Settings) -> timedelta:
    """What one extension adds: half the lock hours the question gets (``lock_hours_for``)."""
    return timedelta(hours=rules.lock_hours_for(question.price_cents)) / 2


def extended_lock_until(question: Question, extensions_used: int, rules: settings.Settings,
                        now: datetime) -> tuple[datetime | None, str | None]:
    """The rule on plain values: the lock's new expiry if it may be extended now, else None and
    the reason (one of ``EXTENSION_REFUSALS``)."""
    lock = question.lock_expires_at
    if question.status != "claimed" or lock is None:
        return None, "not_yours"
    if lock <= now:
        return None, "expired"
    if extensions_used >= MAX_LOCK_EXTENSIONS:
        return None, "limit"
    until = lock + lock_extension(question, rules)
    if question.deadline_at is not None:
        until = min(until, question.deadline_at)
    if until - lock < MIN_LOCK_EXTENSION:
        return None, "deadline"
    return until, None


def extensions_used(session: Session, question: Question) -> int:
    """How often the current claim's lock was extended (events since the latest claim)."""
    claimed = select(func.max(QuestionEvent.id)).where(
        QuestionEvent.question_id == question.id, QuestionEvent.action == "claim"
    ).scalar_subquery()
    return session.scalar(select(func.count()).select_from(QuestionEvent).where(
        QuestionEvent.question_id == question.id, QuestionEvent.action == "extend_lock",
        QuestionEvent.id > func.coalesce(claimed, 0)))


@dataclass(frozen=True)
class LockTime:
    """The answerer's time on a claimed question, as the answer page shows it."""

    #: When the time ends: the lock's expiry, or the asker's deadline if that is sooner.
    ends_at: datetime
    #: Time left (never negative).
    left: timedelta
    #: "none", "warn" (at most ``LOCK_WARNING`` left), "final" (``LOCK_FINAL_WARNING``) or
    #: "over".
    warning: str
    extensions_used: int
    extensions_left: int
    #: What an extension would add now, and until when; None if it cannot be extended...
    extension: timedelta | None
    extend_until: datetime | None
    #: ...and why not (one of ``EXTENSION_REFUSALS``).
    refusal: str | None

    @property
    def can_extend(self) -> bool:
        return self.extend_until is not None


def lock_time(question: Question, extensions_used: int, rules: settings.Settings,
              now: datetime) -> LockTime:
    """The time left on ``question``'s lock and whether it may be extended (no database)."""
    ends_at = question.lock_expires_at
    if question.deadline_at is not None and (ends_at is None or question.deadline_at < ends_at):
        ends_at = question.deadline_at
    ends_at = ends_at or now
    left = max(ends_at - now, timedelta(0))
    if left <= timedelta(0):
        warning = "over"
    elif left <= LOCK_FINAL_WARNING:
        warning = "final"
    elif left <= LOCK_WARNING:
        warning = "warn"
    else:
        warning = "none"
    until, refusal = extended_lock_until(question, extensions_used, rules, now)
    return LockTime(ends_at=ends_at, left=left, warning=warning,
                    extensions_used=extensions_used,
                    extensions_left=max(MAX_LOCK_EXTENSIONS - extensions_used, 0),
                    extension=until - question.lock_expires_at if until else None,
                    extend_until=until, refusal=refusal)


def lock_time_for(session: Session, question: Question, now: datetime) -> LockTime:
    """:func:`lock_time` with the extensions used and the settings read from the database."""
    return lock_time(question, extensions_used(session, question), settings.current(session),
                     now)


def extend_lock(session: Session, question: Question, answerer: User,
                now: datetime) -> datetime:
    """Give the answerer more time on the question they hold; returns the new lock expiry.

    Refused (``LockNotExtended``) unless the question is claimed by ``answerer``, the lock has
    not run out, fewer than ``MAX_LOCK_EXTENSIONS`` extensions were used and the deadline
    leaves room; ``Suspended`` if the answerer is suspended. The UPDATE is guarded by the lock
    expiry that was read, so of two concurrent extensions only one counts.
    """
    if question.status != "claimed" or question.answerer_id != answerer.id:
        raise LockNotExtended(question.id, "not_yours")
    _check_active(session, answerer)
    lock = question.lock_expires_at
    until, refusal = extended_lock_until(question, extensions_used(session, question),
                                         settings.current(session), now)
    if refusal:
        raise LockNotExtended(question.id, refusal)
    result = session.execute(
        update(Question)
        .where(Question.id == question.id, Question.status == "claimed",
               Question.answerer_id == answerer.id, Question.lock_expires_at == lock,
               Question.lock_expires_at > now)
        .values(lock_expires_at=until)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(question)
        raise LockNotExtended(question.id, "changed")
    session.add(QuestionEvent(
        question_id=question.id, actor_id=answerer.id, actor_kind="user", action="extend_lock",
        from_status="claimed", to_status="claimed", at=now,
        note=f"lock extended from {lock.isoformat()} to {until.isoformat()}"))
    session.flush()
    session.refresh(question)
    return until


def withdraw_from_answerer(session: Session, answerer: User, now: datetime,
                           actor: User | None) -> list[int]:
    """The answerer was suspended; returns the questions that changed. The one rule for their
    work in progress: open offers and claims go back to the queue for someone else (their
    draft stays saved, for them and the organizer); a clarification they can no longer reply
    to goes to the organizer to decide, as a rejected answer would. Sent answers stay."""
    changed = []
    held = session.scalars(select(Question).where(
        Question.answerer_id == answerer.id,
        Question.status.in_(("offered", "claimed", "clarifying"))).order_by(Question.id)).all()
    note = "the answerer was suspended"
    for question in held:
        if question.status == "offered":
            _transition(session, question, "withdraw_offer", at=now, actor=actor, note=note,
                        answerer_id=None, offer_expires_at=None)
            _resolve_offer(session, question, answerer.id, "withdrawn", now)
        elif question.status == "claimed":
            _transition(session, question, "withdraw_claim", at=now, actor=actor, note=note,
                        answerer_id=None, lock_expires_at=None)
            _claim_lapsed(session, question, answerer.id)
        else:
            _transition(session, question, "withdraw_clarification", at=now, actor=actor,
                        note=note, dispute_reason="The answerer was suspended before they could "
                        "reply to the asker's question.")
        changed.append(question.id)
    session.flush()
    return changed


def holds_or_held(session: Session, question: Question, answerer: User) -> bool:
    """Whether ``answerer`` holds, or once claimed, ``question`` (see ``access``)."""
    return bool(access.relations(session, question, answerer)
                & {"answerer", "former_answerer"})


def save_draft(session: Session, question: Question, answerer: User, body: str,
               now: datetime) -> AnswerDraft:
    """Keep what the answerer has typed so far, even after their lock has run out."""
    if not holds_or_held(session, question, answerer):
        raise NotYourOffer(f"question {question.id} is not yours to answer")
    body = (body or "")[:ANSWER_MAX]
    lock(session, question)  # two saves at once (a double click, autosave) write one draft
    draft = session.get(AnswerDraft, (question.id, answerer.id))
    if draft is None:
        draft = AnswerDraft(question_id=question.id, answerer_id=answerer.id)
        session.add(draft)
    draft.body = body
    draft.updated_at = now
    session.flush()
    return draft


def draft_for(session: Session, question: Question, answerer: User) -> str:
    draft = session.get(AnswerDraft, (question.id, answerer.id))
    return draft.body if draft else ""


def post_answer(session: Session, question: Question, answerer: User, body: str,
                now: datetime) -> None:
    """The answerer sends the answer to the asker.

    The text is saved as the answerer's draft first, so if sending is refused (the lock ran
    out, the deadline passed) the caller can commit and nothing typed is lost.
    """
    body = _text(body, ANSWER_MAX, "answer")
    save_draft(session, question, answerer, body, now)
    if question.answerer_id != answerer.id:
        raise NotYourOffer(f"question {question.id} is not claimed by you")
    _check_active(session, answerer)
    _transition(session, question, "post_answer", at=now, actor=answerer, answer_body=body,
                answered_at=now, lock_expires_at=None,
                guard=(Question.answerer_id == answerer.id,))
    notifications.enqueue(session, question.asker, "answer_ready", {
        "question_id": question.id, "title": question.title}, now)


def ask_clarification(session: Session, question: Question, asker: User, body: str,
                      now: datetime) -> None:
    """The asker asks the answerer to explain more."""
    check_owner(question, asker)
    body = _text(body, MESSAGE_MAX, "question for the answerer")
    _transition(session, question, "ask_clarification", at=now, actor=asker)
    session.add(Message(question_id=question.id, author_id=asker.id,
                        kind="clarification_request", body=body, at=now))
    notifications.enqueue(session, question.answerer, "clarification_asked", {
        "question_id": question.id, "title": question.title}, now)
    session.flush()


def reply_clarification(session: Session, question: Question, answerer: User, body: str,
                        now: datetime) -> None:
    """The answerer explains more; the auto-accept clock starts again."""
    if question.answerer_id != answerer.id:
        raise NotYourOffer(f"question {question.id} was not answered by you")
    _check_active(session, answerer)
    body = _text(body, ANSWER_MAX, "reply")
    _transition(session, question, "reply_clarification", at=now, actor=answerer, answered_at=now)
    session.add(Message(question_id=question.id, author_id=answerer.id,
                        kind="clarification_reply", body=body, at=now))
    notifications.enqueue(session, question.asker, "clarification_replied", {
        "question_id": question.id, "title": question.title}, now)
    session.flush()


def answerer_share(session: Session, question: Question | Row) -> int:
    """The answerer's share of the price in cents, as ``settle`` will split it: at the
    question's frozen commission, or (not paid yet) at the current settings' commission.
    ``question`` may be a row with its ``price_cents`` and ``commission_bps``."""
    bps = question.commission_bps if question.commission_bps is not None else (
        settings.current(session).commission_bps)
    payout, _commission = money.split(question.price_cents, bps)
    return payout


def settle(session: Session, question: Question) -> ledger.LedgerTransaction:
    """Split the escrow: the answerer's share to their payable account, the rest commission."""
    payout, commission = money.split(question.price_cents, question.commission_bps)
    entries = [(ledger.escrow_account(question.id), question.price_cents),
               (ledger.payable_account(question.answerer_id), -payout),
               (ledger.COMMISSION, -commission)]
    return ledger.post(session, f"settle:question:{question.id}",
                       f"Answer to question {question.id} accepted",
                       [(name, amount) for name, amount in entries if amount], question.currency)


def _tell_answerer(session: Session, question: Question, kind: str, now: datetime,
                   **data) -> None:
    """Write ``kind`` to the question's answerer, with their share of the price."""
    notifications.enqueue(session, question.answerer, kind, {
        "question_id": question.id, "title": question.title,
        "amount_cents": answerer_share(session, question), "currency": question.currency,
        **data}, now)


def accept(session: Session, question: Question, asker: User, now: datetime) -> None:
    """The asker accepts the answer: the question closes and the payment is split."""
    check_owner(question, asker)
    _transition(session, question, "accept", at=now, actor=asker, closed_at=now)
    settle(session, question)
    _tell_answerer(session, question, "answer_accepted", now, automatically=False)


def auto_accept(session: Session, question: Question, now: datetime,
                after: timedelta) -> None:
    """No reply from the asker in time: the answer is accepted for them."""
    _transition(session, question, "auto_accept", at=now, actor=None, actor_kind="scheduler",
                closed_at=now, guard=(Question.answered_at <= now - after,))
    settle(session, question)
    _tell_answerer(session, question, "answer_accepted", now, automatically=True)


def reject(session: Session, question: Question, asker: User, reason: str,
           now: datetime) -> None:
    """The asker rejects the answer; the organizer decides (uphold or refund)."""
    check_owner(question, asker)
    reason = _text(reason, MESSAGE_MAX, "reason")
    _transition(session, question, "reject", at=now, actor=asker, dispute_reason=reason)
    notifications.enqueue(session, question.answerer, "answer_disputed", {
        "question_id": question.id, "title": question.title}, now)


def check_may_decide(question: Question, organizer: User) -> None:
    """Separation of duties: nobody decides a dispute about a question they asked or
    answered."""
    if organizer.id in (question.asker_id, question.answerer_id):
        raise ConflictOfInterest(f"user {organizer.id} is a party to question {question.id}")


def uphold_dispute(session: Session, question: Question, organizer: User,
                   now: datetime) -> None:
    """The organizer finds the answer fair: the question closes and the payment is split."""
    check_may_decide(question, organizer)
    _transition(session, question, "uphold_dispute", at=now, actor=organizer, closed_at=now)
    settle(session, question)
    _tell_answerer(session, question, "dispute_decided", now, upheld=True)
    audit.record(session, organizer, "uphold dispute", f"question:{question.id}",
                 {"status": "disputed"}, {"status": question.status,
                                          "answerer_id": question.answerer_id})


def refund(session: Session, question: Question, action: str, actor: User | None,
           now: datetime, note: str = "") -> None:
    """Give the asker their money back, phase 1: the question is ``refunded`` and its refund
    ``requested``, in the caller's transaction.

    The money moves in phase 2, after the caller commits: ``payments.send_refund`` asks Stripe
    (idempotency key ``question:<id>:refund``) and posts the ledger transaction keyed by the
    Stripe refund's id, so a refund whose answer was lost is never posted twice.
    """
    if action not in ("refund_at_deadline", "refund_dispute", "cancel"):
        raise ValueError(f"{action} is not a refund")
    if action == "refund_dispute" and actor is not None:
        check_may_decide(question, actor)
    guard = (Question.deadline_at <= now,) if action == "refund_at_deadline" else ()
    _transition(session, question, action, at=now, actor=actor,
                actor_kind="user" if actor else "scheduler", note=note, closed_at=now,
                offer_expires_at=None, lock_expires_at=None, guard=guard,
                refund_status="requested", refund_requested_at=now, refund_failure=None)
    _resolve_offer(session, question, None, "withdrawn", now)
    if action == "refund_dispute":
        audit.record(session, actor, "refund dispute", f"question:{question.id}",
                     {"status": "disputed"}, {"status": question.status,
                                              "refund_cents": question.price_cents})
        notifications.enqueue(session, question.answerer, "dispute_decided", {
            "question_id": question.id, "title": question.title, "upheld": False}, now)
    session.flush()


def refund_at_stripe(session: Session, question: Question, now: datetime) -> None:
    """Stripe refunded the whole payment (not through UPSS) before it was split: the question
    ends ``refunded``; ``stripe_money`` posts the refund."""
    _transition(session, question, "refund_at_stripe", at=now, actor=None, actor_kind="stripe",
                note="refunded at Stripe", closed_at=now, offer_expires_at=None,
                lock_expires_at=None, refund_status="sent", refund_requested_at=now)
    _resolve_offer(session, question, None, "withdrawn", now)
    session.flush()


def rate(session: Session, question: Question, asker: User, stars: int,
         comment: str | None) -> None:
    """The asker rates a closed question's answer 1 to 5, with an optional comment."""
    check_owner(question, asker)
    if question.status != "closed":
        raise InvalidTransition(question.id, question.status, "rate")
    if type(stars) is not int or not 1 <= stars <= 5:
        raise InvalidText("a rating is 1 to 5 stars")
    comment = (comment or "").strip()
    if len(comment) > MESSAGE_MAX:
        raise InvalidText(f"the comment is longer than {MESSAGE_MAX} characters")
    if (question.rating, question.rating_comment) != (stars, comment or None):
        # A new or changed rating; the same one sent again (a double click) tells nobody.
        notifications.enqueue(session, question.answerer, "answer_rated", {
            "question_id": question.id, "title": question.title, "stars": stars,
            "comment": comment})
    question.rating = stars
    question.rating_comment = comment or None
    session.flush()
