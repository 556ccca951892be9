"""Delete my account (GDPR Art. 17): asked for with the password, done after a grace period.

How it goes
-----------
1. :func:`request_deletion` (the person, with their current password) records
   ``User.deletion_requested_at``, ends every session and writes ``account_deletion_scheduled``
   (when it happens, and that signing in before then cancels it). What is in progress is
   settled at once, by the one rule below, so nobody works for a person who is leaving.
2. During the grace period (``UPSS_DELETION_GRACE_DAYS``, 14 days by default) signing in
   cancels it: the sign-in view calls :func:`cancel_on_sign_in`.
3. After it, the job ``erase-accounts`` (:func:`erase_due`) erases the account, unless money is
   still owed to the person as an answerer: then erasure waits until it is paid (see
   :func:`money_waiting`), and the person is told once why and when.

What happens to work in progress (the rule :func:`what_happens` tells the person)
--------------------------------------------------------------------------------
* **Their questions as an asker.** A paid question still ``queued`` (nobody is working on it)
  is cancelled and refunded in full at the request (``questions.refund`` with ``cancel``; the
  ``resolve-refunds`` job asks Stripe within minutes); a question that becomes ``queued`` later
  (a payment confirmed late) is refunded the same way at erasure. A question an answerer
  already has (``offered``, ``claimed``) is not taken from them: it is answered, or refunded in
  full at its deadline, as always. An answer waiting for the asker (``answered``,
  ``clarifying``) is accepted automatically after the usual days (the auto-accept job), so the
  answerer who did the work is paid; a rejected answer (``disputed``) is decided by the
  organizer. Unpaid drafts stay unpaid. Refunds already made by then are not undone when the
  deletion is cancelled.
* **Their work as an answerer.** They get no new offers from the request on (``is_answerer`` is
  off while the deletion is pending, and back on if it is cancelled); open offers and claims go
  back to the queue for someone else, and a clarification they can no longer reply to goes to
  the organizer (``questions.withdraw_from_answerer``). Answers already sent stay.
* **Money owed to them.** Erasure waits while their payable account holds at least the smallest
  payout (``UPSS_PAYOUT_MINIMUM_CENTS``: the weekly batch pays it, once the settled money is
  ``UPSS_PAYOUT_AFTER_DAYS`` old), while a payout of theirs is on its way (``sending``,
  ``unknown``, or in a bank file not marked sent), or while an answer of theirs is not settled
  yet (answered, clarifying, disputed: its share is still to come). Less than the smallest
  payout cannot be paid by a batch: the page says so before they confirm, and it stays in the
  ledger, owed to the deleted user, for the organizer.

What erasure changes, and what it keeps
---------------------------------------
Erased: the e-mail (``deleted-<id>@deleted.invalid``: unique, never deliverable), the name (a
pseudonym, ``Deleted user <id>``; pages show "Deleted user", see ``display.person_name``), the
password (an unusable hash, so the account cannot sign in), language and display choices; the
answerer profile's IBAN, account holder and Stripe account (profile made inactive); the
personal fields of their applications to answer (birth year, IBAN, account holder, the
organizer's free-text notes about them); their messages (notifications), message choices,
sessions, data exports and unsent answer drafts. Kept: questions, answers, clarifications,
ratings and the ledger, under the pseudonym, so the other party's pages still read and
``verify-ledger`` still passes; and :data:`KEPT_FOR_BOOKKEEPING`.

The organizer gets an audit-log entry (``account_deleted``, target ``user:<id>``) with no
personal data in it. Services flush; the caller (view, job runner) commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from . import audit, earnings, ledger, notifications, payouts, questions, sessions, settings
from .models import (
    AnswerDraft,
    AnswererApplication,
    AnswererProfile,
    AuditLog,
    DataExport,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Notification,
    NotificationPreference,
    Payout,
    Question,
    User,
    UserSession,
)

#: Columns that still hold a deleted person's IBAN or name after erasure, because bookkeeping
#: law requires the organizer to keep them for the statutory period (Norway's Bokføringsloven,
#: Finland's Kirjanpitolaki: 5 to 10 years): each payout's IBAN, and the SEPA bank files
#: (pain.001, with the account holder's name and IBAN) that paid them. Erasing these after the
#: statutory period is not built yet. ``tests/flows/test_account_deletion.py`` checks that a
#: deleted person's e-mail, name and IBAN are found in exactly these columns and nowhere else.
KEPT_FOR_BOOKKEEPING = ("payout.iban", "payout_batch.sepa_xml")

#: The e-mail address an erased account gets: unique, and ``.invalid`` is never delivered.
ERASED_EMAIL = "deleted-{id}@deleted.invalid"
#: The stored pseudonym of an erased account (pages show a translated "Deleted user").
PSEUDONYM = "Deleted user {id}"
#: Never the output of ``generate_password_hash``: no password matches it.
UNUSABLE_PASSWORD = "!deleted"  # noqa: S105 - not a password: a hash nothing matches

#: A payout in these states is on its way: erasure waits for it.
PAYOUT_ON_ITS_WAY = ("sending", "unknown", "awaiting_bank")
#: An answer in these states is not settled yet: the answerer's share may still come.
ANSWERS_PENDING = ("answered", "clarifying", "disputed")
#: Question states in which the asker's question is refunded at the request (and at erasure).
REFUNDED_STATES = ("queued",)
#: What happens to an asker's question, by state (the codes of ``QuestionOutcome.outcome``).
ASKER_OUTCOMES = {
    "queued": "refunded",
    "offered": "answered_or_refunded",
    "claimed": "answered_or_refunded",
    "answered": "auto_accepted",
    "clarifying": "auto_accepted",
    "disputed": "organizer_decides",
    "awaiting_payment": "refunded_if_paid",
    "draft": "stays_unpaid",
}
#: What happens to a question offered to or claimed by the answerer, by state.
ANSWERER_OUTCOMES = {
    "offered": "back_to_queue",
    "claimed": "back_to_queue",
    "clarifying": "organizer_decides",
}


class DeletionError(Exception):
    """The deletion cannot be asked for; ``code`` says why: ``wrong_password``,
    ``organizer`` (an organizer's account is closed by another organizer, so the installation
    is never left without one and the audit trail keeps its actor), ``already_deleted``."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class QuestionOutcome:
    question_id: int
    title: str
    status: str
    #: A code of ``ASKER_OUTCOMES`` or ``ANSWERER_OUTCOMES``.
    outcome: str


@dataclass(frozen=True)
class MoneyWaiting:
    """Money owed to an answerer that erasure waits for (see :func:`money_waiting`)."""

    currency: str
    #: On the payable account: what the coming batches pay.
    owed_cents: int
    #: In payouts on their way (sending, unknown, in a bank file not sent yet).
    on_its_way_cents: int
    #: Their answers not settled yet (answered, clarifying, disputed): money may still come.
    answers_pending: int
    #: The payout date the owed money is expected on (None: only money on its way).
    expected_on: date | None
    #: Why a batch would not pay them now (a code of ``payouts.HOLD_REASONS``), or None.
    held_because: str | None

    @property
    def reason(self) -> str:
        """``owed`` (a batch will pay it), ``on_its_way`` (sent, not confirmed yet) or
        ``answer_pending`` (an answer of theirs is not accepted or decided yet)."""
        if self.owed_cents:
            return "owed"
        return "on_its_way" if self.on_its_way_cents else "answer_pending"


@dataclass(frozen=True)
class DeletionPlan:
    """What deleting the account would mean for this person now (the confirmation page)."""

    grace_days: int
    #: When it would happen if asked for now.
    erase_after: datetime
    as_asker: list[QuestionOutcome] = field(default_factory=list)
    as_answerer: list[QuestionOutcome] = field(default_factory=list)
    money: MoneyWaiting | None = None
    #: Owed, but less than the smallest payout: it cannot be paid and stays in the ledger.
    too_small_cents: int = 0
    currency: str = "EUR"
    minimum_cents: int = 0


def grace_period() -> timedelta:
    return timedelta(days=current_app.config["UPSS_DELETION_GRACE_DAYS"])


def erase_after(user: User) -> datetime | None:
    """When a pending deletion will be carried out (at the earliest), or None."""
    if user.deletion_requested_at is None or user.deleted_at is not None:
        return None
    return user.deletion_requested_at + grace_period()


def _owed_cents(session: Session, user: User) -> int:
    try:
        return -ledger.balance(session, ledger.payable_account(user.id))
    except KeyError:
        return 0


def _last_credit_at(session: Session, user: User) -> datetime | None:
    """When money was last credited to the person's payable account (not a reversal)."""
    return session.scalar(
        select(func.max(LedgerTransaction.created_at))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.name == ledger.payable_account(user.id),
               LedgerEntry.amount_cents < 0, LedgerTransaction.reverses_id.is_(None)))


def money_waiting(session: Session, user: User, now: datetime) -> MoneyWaiting | None:
    """The money owed to ``user`` that erasure waits for, or None (nothing, or less than the
    smallest payout and nothing on its way or to come). The rule: wait while the payable
    account holds at least ``UPSS_PAYOUT_MINIMUM_CENTS`` (a batch pays it: on the first payout
    date after the newest credit is ``UPSS_PAYOUT_AFTER_DAYS`` old), while a payout is on its
    way, or while an answer of theirs is not settled (accepted, by the asker or automatically,
    or decided by the organizer), since its share is still to come."""
    cfg = current_app.config
    rules = settings.current(session)
    owed = _owed_cents(session, user)
    on_its_way = int(session.scalar(select(func.coalesce(func.sum(Payout.amount_cents), 0))
                                    .where(Payout.answerer_id == user.id,
                                           Payout.status.in_(PAYOUT_ON_ITS_WAY))))
    pending = session.scalar(select(func.count()).select_from(Question).where(
        Question.answerer_id == user.id, Question.status.in_(ANSWERS_PENDING)))
    if owed < cfg["UPSS_PAYOUT_MINIMUM_CENTS"]:
        owed = 0
    if not owed and not on_its_way and not pending:
        return None
    expected, held = None, None
    if owed:
        last = _last_credit_at(session, user)
        ready = max(now, (last or now) + timedelta(days=cfg["UPSS_PAYOUT_AFTER_DAYS"]))
        expected = earnings.next_payout_date(ready, rules.zone)
        held = payouts.holds(session, now, [user.id]).get(user.id)
    return MoneyWaiting(currency=rules.currency, owed_cents=owed, on_its_way_cents=on_its_way,
                        answers_pending=pending, expected_on=expected, held_because=held)


def _asker_questions(session: Session, user: User) -> list[Question]:
    return list(session.scalars(select(Question).where(
        Question.asker_id == user.id, Question.status.in_(tuple(ASKER_OUTCOMES)))
        .order_by(Question.id)))


def _answerer_questions(session: Session, user: User) -> list[Question]:
    return list(session.scalars(select(Question).where(
        Question.answerer_id == user.id, Question.status.in_(tuple(ANSWERER_OUTCOMES)))
        .order_by(Question.id)))


def what_happens(session: Session, user: User, now: datetime) -> DeletionPlan:
    """What deleting ``user``'s account would mean now, for the confirmation page: each of
    their questions in progress and what becomes of it (the module docstring's rule), money
    still owed to them (erasure waits for it), and money too small to be paid."""
    cfg = current_app.config
    rules = settings.current(session)
    owed = _owed_cents(session, user)
    money = money_waiting(session, user, now)
    return DeletionPlan(
        grace_days=cfg["UPSS_DELETION_GRACE_DAYS"], erase_after=now + grace_period(),
        as_asker=[QuestionOutcome(q.id, q.title, q.status, ASKER_OUTCOMES[q.status])
                  for q in _asker_questions(session, user)],
        as_answerer=[QuestionOutcome(q.id, q.title, q.status, ANSWERER_OUTCOMES[q.status])
                     for q in _answerer_questions(session, user)],
        money=money, too_small_cents=owed if 0 < owed < cfg["UPSS_PAYOUT_MINIMUM_CENTS"] else 0,
        currency=rules.currency, minimum_cents=cfg["UPSS_PAYOUT_MINIMUM_CENTS"])


def _refund_waiting_questions(session: Session, user: User, now: datetime) -> list[int]:
    """Cancel and refund (phase 1) every paid question of ``user`` nobody is working on."""
    refunded = []
    for question in session.scalars(select(Question).where(
            Question.asker_id == user.id, Question.status.in_(REFUNDED_STATES))
            .order_by(Question.id)).all():
        questions.refund(session, question, "cancel", user, now,
                         note="the asker is deleting their account")
        refunded.append(question.id)
    return refunded


def request_deletion(session: Session, user: User, password: str, now: datetime) -> DeletionPlan:
    """Ask for ``user``'s account to be deleted after the grace period; returns what happens.

    Needs the current password (``DeletionError("wrong_password")``); refused for organizers
    (``DeletionError("organizer")``). Ends every session, settles work in progress by the
    module's rule, records it for the organizer (``account_deletion_requested``, no personal
    data) and writes ``account_deletion_scheduled``. Asking again while pending changes
    nothing but the password check.
    """
    if user.deleted_at is not None:
        raise DeletionError("already_deleted")
    if not check_password_hash(user.password_hash, password or ""):
        raise DeletionError("wrong_password")
    if user.is_organizer:
        raise DeletionError("organizer")
    plan = what_happens(session, user, now)
    if user.deletion_requested_at is not None:
        return plan
    user.deletion_requested_at = now
    sessions_ended(session, user, now)
    refunded = _refund_waiting_questions(session, user, now)
    withdrawn: list[int] = []
    paused = bool(user.is_answerer)
    if paused:
        user.is_answerer = False  # no new offers or claims while the deletion is pending
        withdrawn = questions.withdraw_from_answerer(session, user, now, user)
    audit.record(session, user, "account_deletion_requested", f"user:{user.id}", {}, {
        "erase_after": erase_after(user), "answerer_paused": paused,
        "questions_refunded": refunded, "questions_withdrawn": withdrawn})
    notifications.enqueue(session, user, "account_deletion_scheduled", {
        "erase_after": erase_after(user).isoformat(), "grace_days": plan.grace_days,
        "questions_refunded": len(refunded)}, now)
    session.flush()
    return plan


def sessions_ended(session: Session, user: User, now: datetime) -> int:
    """End every session of ``user`` (``sessions.end_all``, reason ``account_deletion``)."""
    return sessions.end_all(session, user, now, reason="account_deletion")


def cancel_on_sign_in(session: Session, user: User, now: datetime) -> bool:
    """The person signed in during the grace period: their deletion is cancelled (and they are
    told, ``account_deletion_cancelled``). An answerer paused by the request gets offers again,
    unless the organizer suspended them meanwhile (their profile says so). Returns whether a
    deletion was cancelled."""
    if user.deletion_requested_at is None or user.deleted_at is not None:
        return False
    user.deletion_requested_at = None
    request = session.scalar(select(AuditLog).where(
        AuditLog.action == "account_deletion_requested", AuditLog.target == f"user:{user.id}")
        .order_by(AuditLog.id.desc()).limit(1))
    resumed = False
    if request is not None and json.loads(request.after).get("answerer_paused"):
        resumed = session.get(AnswererProfile, user.id) is not None
        user.is_answerer = user.is_answerer or resumed
    audit.record(session, user, "account_deletion_cancelled", f"user:{user.id}", {},
                 {"answerer_resumed": resumed})
    notifications.enqueue(session, user, "account_deletion_cancelled", {}, now)
    session.flush()
    return True


def _tell_waiting(session: Session, user: User, money: MoneyWaiting, now: datetime) -> None:
    """Tell the person once (per deletion request and reason) why their account is not erased
    yet, and when it is expected to be."""
    if notifications.told_since(session, user.id, "account_deletion_waiting",
                                user.deletion_requested_at, reason=money.reason):
        return
    notifications.enqueue(session, user, "account_deletion_waiting", {
        "reason": money.reason, "currency": money.currency,
        "amount_cents": money.owed_cents or money.on_its_way_cents,
        "expected_on": money.expected_on.isoformat() if money.expected_on else None,
        "held_because": money.held_because}, now)


def erase(session: Session, user: User, now: datetime) -> None:
    """Erase ``user``'s personal data now (the module docstring says what goes and what stays)
    and record ``account_deleted`` for the organizer. Does not check the grace period or money
    owed: :func:`erase_due` does."""
    _refund_waiting_questions(session, user, now)
    user_id = user.id
    user.email = ERASED_EMAIL.format(id=user_id)
    user.name = PSEUDONYM.format(id=user_id)
    user.password_hash = UNUSABLE_PASSWORD
    user.locale, user.large_text, user.high_contrast, user.digest_hour = "", False, False, 8
    user.is_answerer = False
    user.deleted_at = now
    profile = session.get(AnswererProfile, user_id)
    if profile is not None:
        profile.iban = profile.account_holder = profile.stripe_account_id = None
        profile.active = False
        profile.connect_requirements = ""
    for application in session.scalars(select(AnswererApplication).where(
            AnswererApplication.user_id == user_id)):
        application.birth_year = application.iban = application.account_holder = None
        application.rejection_reason = application.verification_method = None
        application.verification_note = None
    for model, column in ((Notification, Notification.user_id),
                          (NotificationPreference, NotificationPreference.user_id),
                          (UserSession, UserSession.user_id),
                          (DataExport, DataExport.user_id),
                          (AnswerDraft, AnswerDraft.answerer_id)):
        session.execute(delete(model).where(column == user_id)
                        .execution_options(synchronize_session=False))
    audit.record(session, None, "account_deleted", f"user:{user_id}")
    session.flush()


def erase_due(session: Session, now: datetime) -> int:
    """Job ``erase-accounts``: erase every account whose grace period has passed, unless money
    is still owed to it (:func:`money_waiting`: then it waits, and the person is told once why
    and when). Returns how many accounts were erased."""
    due = session.scalars(select(User).where(
        User.deletion_requested_at.is_not(None),
        User.deletion_requested_at <= now - grace_period(),
        User.deleted_at.is_(None)).order_by(User.id)).all()
    erased = 0
    for user in due:
        money = money_waiting(session, user, now)
        if money is not None:
            _tell_waiting(session, user, money, now)
            continue
        erase(session, user, now)
        erased += 1
    session.flush()
    return erased
