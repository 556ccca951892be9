"""The lists the pages show, one keyset page at a time (``upss.paging``): each function builds
one list's query with its filter and order and returns a :class:`~upss.paging.Page`.

Every order ends in a unique column and has an index that matches the list's filter
(``upss/models.py``, migration 0015), so a page costs the same on a small and a large
database: the asker's questions ``(asker_id, id)``, rejected answers and applications
``(status, id)``, an answerer's payouts ``(answerer_id, id)``, lapsed drafts through the
answerer's claimed offers ``(answerer_id, outcome, question_id)``, answerers by name
``(name, id)``, the payouts and the audit log by id. What a page shows of each row's
neighbours (the applicant, a payout's answerer and batch, an entry's organizer) is loaded for
the whole page in one more statement, never row by row.

Nothing here writes. Each person's messages are ``notifications.notices_page``, the
audit log ``audit.entries_page``; the ledger's own lists (statements, entries) are in
``statements``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, literal, or_, select
from sqlalchemy.orm import Session, selectinload

from . import reconciliation
from .dbtypes import UTCDateTime
from .models import (
    AnswererApplication,
    AnswererProfile,
    Offer,
    Payout,
    PayoutBatch,
    Question,
    ReconciliationRun,
    StripeDispute,
    User,
)
from .paging import PER_PAGE, Key, Page, keyset_page
from .stripe_money import CLOSED_DISPUTE

#: Payouts per page of the organizer's Payouts page (grouped by batch).
PAYOUTS_PER_PAGE = 50
#: A dispute without an evidence deadline sorts after every dated one.
_NO_DEADLINE = datetime(9999, 12, 31, tzinfo=UTC)


# --- the asker ---------------------------------------------------------------------------------

def asker_questions(session: Session, asker: User, cursor: str | None,
                    per_page: int = PER_PAGE) -> Page:
    """The asker's questions, newest first, as rows of what the list shows (id, title,
    language, price, currency, status): no question's text, no objects to build."""
    query = select(Question.id, Question.title, Question.language, Question.price_cents,
                   Question.currency, Question.status).where(Question.asker_id == asker.id)
    return keyset_page(session, query, Key(Question.id, descending=True), cursor, per_page,
                       scalars=False)


# --- the answerer ------------------------------------------------------------------------------

#: What the answerer's queue shows of each question it lists (rows, not objects: no text).
_QUEUE_COLUMNS = (Question.id, Question.title, Question.language, Question.status,
                  Question.offer_expires_at, Question.lock_expires_at, Question.price_cents,
                  Question.currency, Question.commission_bps)


def answerer_work(session: Session, answerer: User) -> list:
    """What is offered to the answerer and what they are answering, as rows of
    ``_QUEUE_COLUMNS``: the offers that run out first first, then the answer locks that run
    out first. Not paged: together they are at most the answerer's open-offer limit (the
    release and the claim keep to it)."""
    return session.execute(
        select(*_QUEUE_COLUMNS)
        .where(Question.answerer_id == answerer.id,
               Question.status.in_(("offered", "claimed")))
        .order_by(Question.offer_expires_at, Question.lock_expires_at, Question.id)).all()


def awaiting_clarification(session: Session, answerer: User, cursor: str | None,
                           per_page: int = PER_PAGE) -> Page:
    """The answerer's answered questions whose asker wants more detail, oldest first, as rows
    of ``_QUEUE_COLUMNS`` (these are not bound by any limit: a page at a time)."""
    query = select(*_QUEUE_COLUMNS).where(Question.answerer_id == answerer.id,
                                          Question.status == "clarifying")
    return keyset_page(session, query, Question.id, cursor, per_page, scalars=False)


def lapsed_drafts(session: Session, answerer: User, cursor: str | None,
                  per_page: int = PER_PAGE) -> Page:
    """Questions the answerer picked up whose time ran out before they answered (their offer
    ``lapsed``), now waiting in the queue or offered to someone else (their draft is kept),
    newest first, as rows of ``_QUEUE_COLUMNS``. Reads the answerer's lapsed claims only,
    not every claim they ever made."""
    claimed = select(Offer.question_id).where(Offer.answerer_id == answerer.id,
                                              Offer.outcome == "lapsed")
    query = select(*_QUEUE_COLUMNS).where(
        Question.id.in_(claimed), Question.status.in_(("queued", "offered")),
        or_(Question.answerer_id.is_(None), Question.answerer_id != answerer.id))
    return keyset_page(session, query, Key(Question.id, descending=True), cursor, per_page,
                       scalars=False)


def answerer_payouts(session: Session, answerer: User, cursor: str | None,
                     per_page: int = PER_PAGE) -> Page[Payout]:
    """The answerer's payouts, newest first."""
    return keyset_page(session, select(Payout).where(Payout.answerer_id == answerer.id),
                       Key(Payout.id, descending=True), cursor, per_page)


# --- the organizer -----------------------------------------------------------------------------

def rejected_answers(session: Session, cursor: str | None,
                     per_page: int = PER_PAGE) -> Page[Question]:
    """Questions whose answer the asker rejected, waiting for a decision, oldest first."""
    return keyset_page(session, select(Question).where(Question.status == "disputed"),
                       Question.id, cursor, per_page)


def applications(session: Session, waiting: bool, cursor: str | None,
                 per_page: int = PER_PAGE) -> Page[AnswererApplication]:
    """Applications to answer, newest first: those ``waiting`` for a decision, or the decided
    ones (two lists, so the waiting ones always come first)."""
    status = AnswererApplication.status == "pending" if waiting \
        else AnswererApplication.status != "pending"
    query = select(AnswererApplication).where(status).options(
        selectinload(AnswererApplication.user))
    return keyset_page(session, query, Key(AnswererApplication.id, descending=True), cursor,
                       per_page)


def answerers(session: Session, cursor: str | None,
              per_page: int = PER_PAGE) -> Page[tuple[User, AnswererProfile]]:
    """Every answerer, active or suspended, with their profile, by name."""
    query = select(User, AnswererProfile).join(AnswererProfile,
                                               AnswererProfile.user_id == User.id)
    return keyset_page(session, query, (User.name, User.id), cursor, per_page, scalars=False,
                       key_of=lambda row: (row[0].name, row[0].id))


@dataclass(frozen=True)
class BatchGroup:
    """The payouts of one batch that are on this page (a batch may go on on the next)."""

    batch: PayoutBatch
    payouts: list[Payout]


@dataclass(frozen=True)
class PayoutsPage:
    groups: list[BatchGroup]
    page: Page[Payout]


def payouts(session: Session, cursor: str | None,
            per_page: int = PAYOUTS_PER_PAGE) -> PayoutsPage:
    """Every payout, newest first, grouped by batch: the organizer's Payouts page."""
    query = select(Payout).options(selectinload(Payout.batch), selectinload(Payout.answerer))
    page = keyset_page(session, query, Key(Payout.id, descending=True), cursor, per_page)
    groups: list[BatchGroup] = []
    for payout in page.items:
        if not groups or groups[-1].batch.id != payout.batch_id:
            groups.append(BatchGroup(payout.batch, []))
        groups[-1].payouts.append(payout)
    return PayoutsPage(groups=groups, page=page)


def payouts_cursor_at(payout_id: int) -> str:
    """The cursor of the Payouts page that starts with payout ``payout_id``."""
    return str(payout_id + 1)


def reconciliation_differences(run: ReconciliationRun, cursor: str | None,
                               per_page: int = PER_PAGE) -> Page[reconciliation.Difference]:
    """The differences one reconciliation run found, in the order found. They are stored in
    the run's own row (at most one per movement a run checks, ``reconciliation.MAX_MOVES``),
    so the cursor is a position in that list."""
    found = reconciliation.differences(run)
    start = int(cursor) if cursor and cursor.isascii() and cursor.isdigit() \
        and int(cursor) < len(found) else 0
    items = found[start:start + per_page]
    more = start + per_page < len(found)
    return Page(items=items, next_cursor=str(start + per_page) if more else None,
                continued=start > 0)


def open_card_disputes(session: Session, cursor: str | None,
                       per_page: int = PER_PAGE) -> Page[StripeDispute]:
    """Card disputes still open at Stripe, the nearest evidence deadline first (undated ones
    last). Closed disputes are left out by the status index; the open ones are few."""
    deadline = func.coalesce(StripeDispute.evidence_due_at,
                             literal(_NO_DEADLINE, UTCDateTime())).label("deadline")
    query = select(StripeDispute, deadline).where(StripeDispute.status.not_in(CLOSED_DISPUTE))
    page = keyset_page(session, query, (Key(deadline), Key(StripeDispute.id)), cursor,
                       per_page, scalars=False,
                       key_of=lambda row: (row.deadline, row[0].id))
    return Page(items=[row[0] for row in page.items], next_cursor=page.next_cursor,
                continued=page.continued)
