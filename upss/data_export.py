"""Download my data (GDPR Art. 15 and 20): one JSON file of everything UPSS keeps about a person.

Design overview
---------------
* **One export at a time.** ``request_export`` returns the person's export that is still being
  prepared rather than starting a second one; a ready (or failed) one is replaced by a new
  request. A small account (fewer than ``SMALL_ACCOUNT_ROWS`` rows, counted with cheap
  ``COUNT`` queries) is built at once, in the request; a larger one stays ``pending`` and the
  ``data-exports`` job (``run``) builds it, so a page never waits for a big file.
* **What is in the file** (``build``): a ``format`` version, ``exported_at``, and the sections
  ``profile`` (the account without its password hash, the answerer profile with its IBAN and
  account holder, applications to answer, signed-in sessions), ``questions`` asked (with the
  answer, the clarification messages and the question's history), ``answers`` given (the
  questions they answered: title, their answer, the messages, the rating; their drafts and
  offers), ``messages`` (clarifications they wrote or that are on their questions),
  ``notifications``, ``consents``, ``ledger`` (their own ledger lines only), ``payouts`` and
  ``tips``. Money is integer cents with its currency; times are ISO 8601 in UTC.
* **Nothing of anyone else.** Every query is filtered by the person's id (or by the ids of their
  own questions), and read in pages of ``PAGE`` rows, never a whole table. Other people appear
  only by their role ("asker", "answerer", "organizer"), never by name, e-mail or id: the
  answer an asker received is in their file, the answerer who wrote it is not. The body of a
  question someone else asked is left out of an answerer's file (its title says which one it
  was). A payout's ``failure_reason`` (the bank's or Stripe's own words, for the organizer) is
  left out; its ``failure_code`` is in.
* **Ledger lines.** An answerer's are the entries on their own payable account
  (``ledger.payable_account``); an asker's are the entries on the escrow accounts of the
  questions they asked (``ledger.escrow_account``). The other legs of those transactions (the
  organizer's commission, Stripe's balance, another answerer's account) are not theirs and
  are not included.
* **Consents.** UPSS has no consent table: it records no consent beyond what the person
  chose. ``consents`` states what exists: when the account was created (the terms accepted at
  sign-up), when the e-mail address was confirmed, the choice per kind of message, the daily
  summary's hour, whether an answerer accepts messages outside their hours, and the display
  and language preferences.
* **When it is ready** the file is kept in ``content`` until ``expires_at``
  (``UPSS_DATA_EXPORT_DAYS`` after it was made) and the person gets a ``data_export_ready``
  message (not optional) with a link to the download page; ``expire_old`` empties it after.
  If building fails the export is ``failed`` and the person gets ``data_export_failed``.

Like every service it flushes and never commits: the page or the job runner commits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from . import ledger, notifications, settings
from .models import (
    AnswerDraft,
    AnswererApplication,
    AnswererProfile,
    DataExport,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Message,
    Notification,
    NotificationPreference,
    Offer,
    Payout,
    Question,
    QuestionEvent,
    Tip,
    User,
    UserSession,
)

log = logging.getLogger(__name__)

#: The file's format; raised when a section changes shape.
FORMAT = "upss-data-export/1"
#: An account with fewer rows than this is exported at once; a larger one by the job.
SMALL_ACCOUNT_ROWS = 200
#: Rows read per query.
PAGE = 500
#: Exports built per run of the job.
BATCH = 5


class DataExportError(Exception):
    """Base of this module's refusals."""


class ExportNotFound(DataExportError):
    """No such export for this person, or it is not ready, or it has expired."""


# --- asking for an export ---------------------------------------------------------------------

def current(session: Session, user: User) -> DataExport | None:
    """The person's newest export (pending, ready or failed), or None."""
    return session.scalar(select(DataExport).where(DataExport.user_id == user.id)
                          .order_by(DataExport.id.desc()).limit(1))


def row_count(session: Session, user: User) -> int:
    """About how many rows the person's file would hold: one ``COUNT`` per large table."""
    counts = (
        select(func.count()).select_from(Question).where(Question.asker_id == user.id),
        select(func.count()).select_from(Question).where(Question.answerer_id == user.id),
        select(func.count()).select_from(Message).where(Message.author_id == user.id),
        select(func.count()).select_from(Notification).where(Notification.user_id == user.id),
        select(func.count()).select_from(Payout).where(Payout.answerer_id == user.id),
        select(func.count()).select_from(Tip).where(Tip.answerer_id == user.id),
        select(func.count()).select_from(Offer).where(Offer.answerer_id == user.id),
    )
    return sum(session.scalar(query) or 0 for query in counts)


def request_export(session: Session, user: User, now: datetime) -> DataExport:
    """The person asks for a copy of their data. One being prepared is returned as it is; a
    ready one is replaced by a new one (deleted with its file). A small account's file is made
    at once; a large one's waits for the ``data-exports`` job."""
    # Serialise two requests of the same person (two tabs, a double click): lock their row.
    session.scalar(select(User.id).where(User.id == user.id).with_for_update())
    existing = session.scalars(select(DataExport).where(
        DataExport.user_id == user.id, DataExport.status.in_(("pending", "ready")))
        .order_by(DataExport.id.desc())).all()
    for export in existing:
        if export.status == "pending":
            return export
    for export in existing:
        session.delete(export)  # the ready one it replaces, with its file
    export = DataExport(user_id=user.id, status="pending", requested_at=now)
    session.add(export)
    session.flush()
    if row_count(session, user) < SMALL_ACCOUNT_ROWS:
        build(session, export, now)
    return export


def _empty(export: DataExport) -> None:
    export.content = None
    export.size_bytes = None


# --- reading in pages ---------------------------------------------------------------------------

def _pages(session: Session, query, key) -> Iterator:
    """The rows of ``query`` in order of the unique column ``key``, ``PAGE`` at a time."""
    after = None
    while True:
        page_query = query.order_by(key).limit(PAGE)
        if after is not None:
            page_query = page_query.where(key > after)
        rows = session.execute(page_query).all()
        if not rows:
            return
        yield from rows
        after = rows[-1][0].id if hasattr(rows[-1][0], "id") else rows[-1][0]
        if len(rows) < PAGE:
            return


def _objects(session: Session, model, *where) -> Iterator:
    """The rows of ``model`` matching ``where``, by id, ``PAGE`` at a time."""
    for (row,) in _pages(session, select(model).where(*where), model.id):
        yield row


def _at(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _money(cents: int | None, currency: str) -> dict | None:
    return None if cents is None else {"amount_cents": int(cents), "currency": currency}


def _who(user: User, actor_id: int | None, question: Question, actor_kind: str = "user") -> str:
    """Someone named by their part, never by who they are: ``you``, ``asker``, ``answerer``,
    ``organizer`` (anyone else who acted), ``stripe`` or ``scheduler``."""
    if actor_id is None:
        return actor_kind
    if actor_id == user.id:
        return "you"
    if actor_id == question.asker_id:
        return "asker"
    if actor_id == question.answerer_id:
        return "answerer"
    return "organizer"


# --- the sections -----------------------------------------------------------------------------

def _profile(session: Session, user: User) -> dict:
    profile = session.get(AnswererProfile, user.id)
    currency = settings.current(session).currency
    answerer = None
    if profile is not None:
        answerer = {
            "languages": profile.language_list,
            "topics": [t for t in profile.topics.split(",") if t],
            "available_from_minute": profile.available_from_minute,
            "available_until_minute": profile.available_until_minute,
            "timezone": profile.timezone, "daily_limit": profile.daily_limit,
            "open_offer_limit": profile.open_offer_limit, "active": profile.active,
            "yearly_ceiling": _money(profile.yearly_ceiling_cents, currency),
            "payout_method": profile.payout_method, "iban": profile.iban,
            "account_holder": profile.account_holder,
            "stripe_account_id": profile.stripe_account_id,
            "connect_details_submitted": profile.connect_details_submitted,
            "connect_payouts_enabled": profile.connect_payouts_enabled,
            "payout_failures": profile.payout_failures,
            "payouts_held_until": _at(profile.payouts_held_until),
        }
    applications = [{
        "id": a.id, "status": a.status, "basis": a.basis, "birth_year": a.birth_year,
        "languages": [c for c in a.languages.split(",") if c],
        "topics": [t for t in a.topics.split(",") if t],
        "available_from_minute": a.available_from_minute,
        "available_until_minute": a.available_until_minute, "daily_limit": a.daily_limit,
        "yearly_ceiling": _money(a.yearly_ceiling_cents, currency),
        "payout_method": a.payout_method, "iban": a.iban, "account_holder": a.account_holder,
        "submitted_at": _at(a.submitted_at), "decided_at": _at(a.decided_at),
        "rejection_reason": a.rejection_reason, "verification_method": a.verification_method,
        "verified_on": _at(a.verified_on), "verification_note": a.verification_note,
    } for a in _objects(session, AnswererApplication, AnswererApplication.user_id == user.id)]
    sessions = [{
        "started_at": _at(s.created_at), "last_seen_at": _at(s.last_seen_at),
        "ended_at": _at(s.ended_at), "end_reason": s.end_reason,
    } for s in _objects(session, UserSession, UserSession.user_id == user.id)]
    return {
        "account": {
            "id": user.id, "email": user.email, "name": user.name,
            "is_answerer": user.is_answerer, "is_organizer": user.is_organizer,
            "created_at": _at(user.created_at),
            "email_confirmed_at": _at(user.email_confirmed_at),
            "deletion_requested_at": _at(user.deletion_requested_at),
        },
        "answerer_profile": answerer,
        "applications": applications,
        "sessions": sessions,
    }


def _messages_of(session: Session, user: User, question: Question) -> list[dict]:
    return [{"id": m.id, "kind": m.kind, "from": _who(user, m.author_id, question),
             "body": m.body, "at": _at(m.at)}
            for m in _objects(session, Message, Message.question_id == question.id)]


def _questions(session: Session, user: User) -> list[dict]:
    asked = []
    for question in _objects(session, Question, Question.asker_id == user.id):
        events = [{"action": e.action, "from_status": e.from_status, "to_status": e.to_status,
                   "by": _who(user, e.actor_id, question, e.actor_kind), "at": _at(e.at),
                   "note": e.note}
                  for e in _objects(session, QuestionEvent,
                                    QuestionEvent.question_id == question.id)]
        asked.append({
            "id": question.id, "title": question.title, "body": question.body,
            "language": question.language, "topic": question.topic,
            "price": _money(question.price_cents, question.currency),
            "status": question.status, "created_at": _at(question.created_at),
            "paid_at": _at(question.paid_at), "deadline_at": _at(question.deadline_at),
            "answer": question.answer_body, "answered_at": _at(question.answered_at),
            "closed_at": _at(question.closed_at), "rejection_reason": question.dispute_reason,
            "refunded": _money(question.refunded_cents, question.currency),
            "refund_status": question.refund_status,
            "rating": question.rating, "rating_comment": question.rating_comment,
            "messages": _messages_of(session, user, question),
            "events": events,
        })
    return asked


def _answers(session: Session, user: User) -> dict:
    answered = [{
        "question_id": question.id, "title": question.title, "language": question.language,
        "topic": question.topic, "status": question.status,
        "answer": question.answer_body, "answered_at": _at(question.answered_at),
        "closed_at": _at(question.closed_at), "rating": question.rating,
        "rating_comment": question.rating_comment,
        "messages": _messages_of(session, user, question),
    } for question in _objects(session, Question, Question.answerer_id == user.id,
                               Question.answer_body.is_not(None))]
    drafts = [{"question_id": question_id, "body": body, "updated_at": _at(updated_at)}
              for question_id, body, updated_at in _pages(
                  session, select(AnswerDraft.question_id, AnswerDraft.body,
                                  AnswerDraft.updated_at)
                  .where(AnswerDraft.answerer_id == user.id), AnswerDraft.question_id)]
    offers = [{"question_id": o.question_id, "offered_at": _at(o.offered_at),
               "expires_at": _at(o.expires_at), "outcome": o.outcome,
               "resolved_at": _at(o.resolved_at)}
              for o in _objects(session, Offer, Offer.answerer_id == user.id)]
    return {"answered": answered, "drafts": drafts, "offers": offers}


def _messages(session: Session, user: User) -> list[dict]:
    """Clarification messages the person wrote, or that are on a question they asked or
    answered."""
    own_questions = select(Question.id).where(
        or_(Question.asker_id == user.id, Question.answerer_id == user.id))
    found = []
    for message, question in _pages(
            session, select(Message, Question).join(Question, Question.id == Message.question_id)
            .where(or_(Message.author_id == user.id, Message.question_id.in_(own_questions))),
            Message.id):
        found.append({"id": message.id, "question_id": question.id,
                      "question_title": question.title, "kind": message.kind,
                      "from": _who(user, message.author_id, question), "body": message.body,
                      "at": _at(message.at)})
    return found


def _notifications(session: Session, user: User) -> list[dict]:
    return [{"kind": n.kind, "created_at": _at(n.created_at), "status": n.status,
             "sent_at": _at(n.sent_at), "read_at": _at(n.read_at), "data": json.loads(n.data)}
            for n in _objects(session, Notification, Notification.user_id == user.id)]


def _consents(session: Session, user: User) -> dict:
    profile = session.get(AnswererProfile, user.id)
    choices = [{"kind": kind, "mode": mode, "updated_at": _at(updated_at)}
               for kind, mode, updated_at in session.execute(
                   select(NotificationPreference.kind, NotificationPreference.mode,
                          NotificationPreference.updated_at)
                   .where(NotificationPreference.user_id == user.id)
                   .order_by(NotificationPreference.kind))]
    return {
        "note": "UPSS keeps no separate record of consents. These are the agreements and "
                "choices it records: when the account was made (the terms accepted at sign-up), "
                "when the e-mail address was confirmed, the choice for each kind of message "
                "(a kind not listed comes at once) and the display preferences.",
        "account_created_at": _at(user.created_at),
        "email_confirmed_at": _at(user.email_confirmed_at),
        "message_choices": choices,
        "daily_summary_hour": user.digest_hour,
        "messages_outside_available_hours": (profile.messages_outside_hours
                                             if profile is not None else None),
        "display": {"language": user.locale or None, "large_text": user.large_text,
                    "high_contrast": user.high_contrast},
    }


def _ledger_lines(session: Session, account_names: list[str]) -> list[dict]:
    """The entries on the accounts ``account_names`` (only those), in posting order."""
    if not account_names:
        return []
    query = (select(LedgerEntry.id, LedgerTransaction.id, LedgerTransaction.created_at,
                    LedgerTransaction.description, LedgerAccount.name,
                    LedgerEntry.amount_cents, LedgerEntry.currency)
             .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
             .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
             .where(LedgerAccount.name.in_(account_names)))
    return [{"transaction_id": tx_id, "at": _at(at), "description": description,
             "account": account, "amount_cents": int(amount), "currency": currency}
            for _, tx_id, at, description, account, amount, currency in _pages(
                session, query, LedgerEntry.id)]


def _ledger(session: Session, user: User) -> dict:
    """The person's own ledger lines: for an answerer their payable account's (what UPSS owes
    them: shares, tips, payouts; credit negative), for an asker the escrow accounts' of the
    questions they asked (their payment held, split or refunded; debit positive)."""
    answerer = _ledger_lines(session, [ledger.payable_account(user.id)])
    asker = []
    for page in _id_pages(session, select(Question.id).where(Question.asker_id == user.id),
                          Question.id):
        asker.extend(_ledger_lines(session, [ledger.escrow_account(q) for q in page]))
    asker.sort(key=lambda line: (line["transaction_id"], line["account"]))
    return {"note": "Signed cents: a debit is positive, a credit negative. Only your own "
                    "accounts are listed, not the other side of each transaction.",
            "as_answerer": answerer, "as_asker": asker}


def _id_pages(session: Session, query, key) -> Iterator[list[int]]:
    page: list[int] = []
    for (value,) in _pages(session, query, key):
        page.append(value)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


def _payouts(session: Session, user: User) -> list[dict]:
    return [{"id": p.id, "created_at": _at(p.created_at),
             "amount": _money(p.amount_cents, p.currency), "method": p.method,
             "status": p.status, "iban": p.iban, "stripe_transfer_id": p.stripe_transfer_id,
             "failure_code": p.failure_code}
            for p in _objects(session, Payout, Payout.answerer_id == user.id)]


def _tips(session: Session, user: User) -> dict:
    def row(tip: Tip) -> dict:
        return {"id": tip.id, "question_id": tip.question_id,
                "amount": _money(tip.amount_cents, tip.currency), "status": tip.status,
                "created_at": _at(tip.created_at), "paid_at": _at(tip.paid_at)}

    given = [row(tip) for (tip,) in _pages(
        session, select(Tip).join(Question, Question.id == Tip.question_id)
        .where(Question.asker_id == user.id), Tip.id)]
    received = [row(tip) for tip in _objects(session, Tip, Tip.answerer_id == user.id,
                                             Tip.status == "paid")]
    return {"given": given, "received": received}


def contents(session: Session, user: User, now: datetime) -> dict:
    """Everything UPSS keeps about ``user``, as a dict ready for JSON (see the module's doc)."""
    return {
        "format": FORMAT,
        "exported_at": _at(now),
        "profile": _profile(session, user),
        "questions": _questions(session, user),
        "answers": _answers(session, user),
        "messages": _messages(session, user),
        "notifications": _notifications(session, user),
        "consents": _consents(session, user),
        "ledger": _ledger(session, user),
        "payouts": _payouts(session, user),
        "tips": _tips(session, user),
    }


# --- building, the job, downloading -------------------------------------------------------------

def build(session: Session, export: DataExport, now: datetime) -> DataExport:
    """Make the file of ``export``, mark it ready until ``UPSS_DATA_EXPORT_DAYS`` from now, and
    tell the person (``data_export_ready``, with the download page's link)."""
    user = session.get(User, export.user_id)
    text = json.dumps(contents(session, user, now), ensure_ascii=False, indent=1)
    export.content = text
    export.size_bytes = len(text.encode("utf-8"))
    export.status = "ready"
    export.ready_at = now
    export.expires_at = now + timedelta(days=current_app.config["UPSS_DATA_EXPORT_DAYS"])
    notifications.enqueue(session, user, "data_export_ready", {
        "export_id": export.id, "expires_at": export.expires_at.isoformat(),
        "timezone": notifications.user_zone(session, user).key,
        "size_bytes": export.size_bytes}, now)
    session.flush()
    return export


def build_pending(session: Session, now: datetime, limit: int = BATCH) -> int:
    """Build up to ``limit`` waiting exports, oldest first. Each is built in a savepoint: one
    that fails is rolled back alone, marked ``failed`` and its person told
    (``data_export_failed``); the others go on. The job runner commits. Returns how many
    were made ready."""
    waiting = session.scalars(select(DataExport).where(DataExport.status == "pending")
                              .order_by(DataExport.requested_at, DataExport.id)
                              .limit(limit)).all()
    made = 0
    for export in waiting:
        try:
            with session.begin_nested():
                build(session, export, now)
            made += 1
        except Exception:  # noqa: BLE001 - one person's failure must not stop the others
            log.exception("data export %s failed", export.id)
            session.refresh(export)
            _empty(export)
            export.status = "failed"
            notifications.enqueue(session, session.get(User, export.user_id),
                                  "data_export_failed", {"export_id": export.id}, now)
            session.flush()
    return made


def expire_old(session: Session, now: datetime) -> int:
    """Empty the files of exports whose time is up. Returns how many."""
    old = session.scalars(select(DataExport).where(
        DataExport.status == "ready", DataExport.expires_at <= now,
        DataExport.content.is_not(None))).all()
    for export in old:
        _empty(export)
    session.flush()
    return len(old)


def run(session: Session, now: datetime) -> str | int:
    """The ``data-exports`` job: build waiting exports, then empty expired ones."""
    made, emptied = build_pending(session, now), expire_old(session, now)
    if not made and not emptied:
        return 0
    return f"{made} ready, {emptied} expired"


def is_downloadable(export: DataExport | None, now: datetime) -> bool:
    """Whether ``export`` is ready, has its file, and has not expired."""
    return (export is not None and export.status == "ready" and export.content is not None
            and export.expires_at is not None and export.expires_at > now)


def download(session: Session, user: User, export_id: int, now: datetime) -> DataExport:
    """The export ``export_id`` with its file, if it is ``user``'s, ready and not expired;
    otherwise ``ExportNotFound`` (the same for someone else's, so ids tell nothing)."""
    export = session.get(DataExport, export_id)
    if export is None or export.user_id != user.id or not is_downloadable(export, now):
        raise ExportNotFound(f"no data export {export_id} to download")
    return export
