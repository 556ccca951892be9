"""Who may see and do what: the one rule, used by every page and by the templates.

A person stands in one or more *relations* to a question:

- ``asker``: they asked it;
- ``answerer``: it is offered to them, they hold it, or they sent its answer (the question's
  current ``answerer_id``);
- ``former_answerer``: they claimed it once, but their time ran out (or they were suspended)
  and it went back to the queue; they may still see the question and their OWN draft, never
  the answer or the clarification thread of whoever answered after them;
- ``organizer``: they run the service.

:func:`allowed_actions` turns the relations and the question's state into the actions the
person may take now; templates show only those, pages refuse the rest, and the services in
``questions``/``payments`` guard the same transitions once more in the database.

Separation of duties: nobody decides their own application (``vetting``), a dispute about a
question they asked or answered (``may_decide_dispute``), or a payout to themselves
(``payouts``, which leaves the organizer's own earnings to another organizer).

Accounts: an account whose e-mail address is not confirmed yet may sign in, ask and pay (and
is reminded on every page), but may not apply to answer (:func:`may_apply_to_answer`): the
organizer must be able to reach an answerer.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AnswererProfile, Offer, Question, User

#: Every action a page can offer, for the table test and the templates.
ACTIONS = frozenset({
    # the asker's
    "pay", "cancel", "accept", "clarify", "reject", "rate", "tip", "receipt",
    # the answerer's
    "claim", "decline", "see_lock", "extend_lock", "write_answer", "send_answer", "reply",
    "see_answer", "see_thread",
    # the organizer's
    "decide_dispute",
})

#: Question states in which a former answerer may still keep their draft up to date.
_DRAFT_STATES = frozenset({"queued", "offered", "claimed"})
#: States in which the question has an answer to show.
_ANSWERED_STATES = frozenset({"answered", "clarifying", "closed", "disputed"})


def needs_confirmation(user: User | None) -> bool:
    """Whether ``user`` is signed in with an address not confirmed yet (pages remind them)."""
    return bool(user is not None and getattr(user, "is_authenticated", False)
                and getattr(user, "email_confirmed_at", "unknown") is None)


def may_apply_to_answer(user: User) -> bool:
    """Whether ``user`` may send an application to answer: only with a confirmed address."""
    return user.email_confirmed_at is not None


def is_active_answerer(session: Session, user: User) -> bool:
    """An answerer who is not suspended."""
    if not user.is_answerer:
        return False
    return bool(session.scalar(select(AnswererProfile.active)
                               .where(AnswererProfile.user_id == user.id)))


def relations(session: Session, question: Question, user: User | None) -> frozenset[str]:
    """How ``user`` stands to ``question`` (see the module's docstring)."""
    if user is None or not user.is_authenticated:
        return frozenset()
    found = set()
    if question.asker_id == user.id:
        found.add("asker")
    if user.is_organizer:
        found.add("organizer")
    if question.answerer_id == user.id and question.status not in ("queued", "refunded"):
        found.add("answerer")
    elif user.is_answerer and session.scalar(select(Offer.id).where(
            Offer.question_id == question.id, Offer.answerer_id == user.id,
            Offer.outcome.in_(("claimed", "lapsed"))).limit(1)) is not None:
        found.add("former_answerer")
    return frozenset(found)


def visible_to(session: Session, question: Question, user: User | None, *, as_: str) -> bool:
    """Whether ``user`` may open ``question`` on the page for ``as_`` ("asker": the asker's
    pages; "answerer": the answerer's pages)."""
    mine = relations(session, question, user)
    if as_ == "asker":
        return "asker" in mine
    if as_ == "answerer":
        return bool(mine & {"answerer", "former_answerer"})
    raise ValueError(f"unknown page kind {as_!r}")


def actions_for(status: str, relations_: frozenset[str], *, active_answerer: bool,
                paid: bool, rated: bool) -> frozenset[str]:
    """The rule itself, on plain values (what :func:`allowed_actions` feeds it)."""
    allowed = set()
    if "asker" in relations_:
        if status in ("draft", "awaiting_payment"):
            allowed.add("pay")
        if status == "queued":
            allowed.add("cancel")
        if status == "answered":
            allowed |= {"accept", "clarify", "reject"}
        if status == "closed":
            allowed.add("tip")
            if not rated:
                allowed.add("rate")
        if paid:
            allowed.add("receipt")
        if status in _ANSWERED_STATES:
            allowed |= {"see_answer", "see_thread"}
    if "answerer" in relations_:
        if status == "offered" and active_answerer:
            allowed |= {"claim", "decline"}
        if status == "claimed":
            allowed |= {"see_lock", "write_answer"}
            if active_answerer:
                # Whether the lock may be extended *now* (how often, the deadline) is the
                # question service's rule: ``questions.lock_time``.
                allowed |= {"send_answer", "extend_lock"}
        if status == "clarifying" and active_answerer:
            allowed.add("reply")
        if status in _ANSWERED_STATES:
            allowed |= {"see_answer", "see_thread"}
    if "former_answerer" in relations_ and status in _DRAFT_STATES:
        allowed.add("write_answer")
    if "organizer" in relations_ and status == "disputed" and not (
            relations_ & {"asker", "answerer"}):
        allowed |= {"decide_dispute", "see_answer", "see_thread"}
    return frozenset(allowed)


def allowed_actions(session: Session, question: Question, user: User | None) -> frozenset[str]:
    """What ``user`` may do with (and see of) ``question`` now; a subset of ``ACTIONS``."""
    mine = relations(session, question, user)
    if not mine:
        return frozenset()
    return actions_for(question.status, mine,
                       active_answerer=bool(mine & {"answerer"}) and is_active_answerer(
                           session, user),
                       paid=question.paid_at is not None, rated=question.rating is not None)


def may_decide_dispute(session: Session, question: Question, user: User) -> bool:
    """The organizer may decide a dispute, unless they asked or answered the question."""
    return "decide_dispute" in allowed_actions(session, question, user)
