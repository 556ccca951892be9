"""Payouts to answerers: batches, Stripe Connect transfers, holds and eligibility.

Design overview
---------------
An answerer's earnings wait on their liability account ``payable:answerer:<id>`` (settlements
and tips credit it). ``run_batch(now)`` pays what is *eligible*:

* **Eligibility rule.** Owed = the credits to the payable account that are old enough (posted
  by a transaction created at or before ``now - settled_before_days``, so the dispute window of
  the settled questions has passed) plus the credits of *reversing* transactions whatever their
  age, minus every debit ever posted to the account (earlier payouts). A reversal credit is a
  failed or returned payout giving back money that was already eligible once, so it is owed
  again at the very next batch instead of waiting another dispute window. Only amounts of at
  least ``minimum_cents`` are paid; smaller ones wait until they grow.
* **Exactly once.** Every payout debits the payable account in the same transaction as its
  Payout row, so the next run sees nothing left and returns ``None`` without creating a batch.
  Runs are serialised: on PostgreSQL by the transaction-scoped advisory lock
  ``PAYOUT_LOCK_KEY`` (taken first, before anything is read), on SQLite by its single writer.
* **Checked before paying.** The batch verifies the hash chain links and balances of every
  transaction that touches the payable accounts it pays from (``ledger.verify_accounts``, not
  the whole ledger) and refuses with ``LedgerCheckFailed`` when one fails: nothing is sent.
* **Who is paid.** Only answerers who can receive the money: a Connect account Stripe reports
  as able to take transfers (``account.updated``), or a valid IBAN; and not while paused after
  refusals (``payouts_held_until``, see ``upss.payout_failures``). The others are *held*
  (``holds()`` says why) and nothing is posted for them.
* **Connect, in two phases.** Phase 1 (``run_batch``, committed by the caller): the Payout row
  is ``sending`` with its idempotency key (installation id + ``payout:<id>``), and the ledger
  posts ``payout:<id>``: payable (debit) → ``stripe_balance`` (credit). Phase 2
  (``send_transfers``, outside any database transaction): ``transfers.create`` with that key
  and ``transfer_group`` = the key; then the outcome is committed. A clear refusal (a 4xx other
  than 409, 429 and ``idempotency_error``) → ``failed`` and reversed; no answer in time, a lost
  connection, 409, 429 or 5xx → ``unknown``, never reversed. ``resolve_unfinished`` (a job)
  looks every ``unknown`` payout (and a ``sending`` one left by a process that died between the
  call and the commit) up first (``transfers.list(transfer_group=key)``); only if Stripe has no
  transfer is it sent again, with the same key while Stripe keeps keys (24 h). After that it is
  failed and reversed, so the money is owed again and the next batch pays it under a new key.
* **SEPA.** The ledger posts ``payout:<id>``: payable (debit) → ``bank_clearing`` (credit);
  the payout is ``awaiting_bank``, and all SEPA payouts of the batch go into ONE pain.001 file
  (``upss.sepa.build_file``, checked before it is stored; ``InvalidSepaFile`` refuses the
  batch). The organizer's marks on the file (sent, settled, a payment returned) are in
  ``upss.sepa``.
* **Failures are posted and reversed** (``upss.payout_failures``): a refused payout keeps its
  ``payout:<id>`` posting and gets ``payout:<id>:reversal``. Why a payout failed (or is not
  confirmed) is stored as a code, ``failure_code`` (``models.PAYOUT_FAILURE_CODES``), which
  pages show in the reader's language; ``failure_reason`` keeps only the detail behind it for
  the organizer (Stripe's message, a transfer's id), never English sentences.

The organizer's Payouts page uses ``run_batch_audited``: ``run_batch`` plus its audit-log row
(``upss.audit``). ``GatewayError`` is re-exported for pages (an error they show).

Like every service, ``run_batch`` flushes and never commits. ``send_transfers`` and
``resolve_unfinished`` own their transactions, because the Stripe call must sit between two
commits: the row and its key are stored before the call, and its outcome after it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from . import audit, ledger, notifications, sepa, settings
from .installation import idempotency_key
from .models import (
    AnswererProfile,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutBatch,
    User,
)
from .money import to_decimal
from .payout_failures import (
    PayoutError,
    clear_pause,
    pause_after_refusal,
    record_failure,
    reverse_payout,
)
from .stripe_gateway import GatewayError as GatewayError  # an error pages show: re-exported
from .stripe_gateway import Transfer, gateway

log = logging.getLogger(__name__)

#: Key of the PostgreSQL advisory lock that serialises payout batches.
PAYOUT_LOCK_KEY = 0x0055_5053_5303
#: Stripe keeps an idempotency key at least this long; a payout is re-sent under its key only
#: within it.
KEY_LIFETIME = timedelta(hours=24)
#: A payout still ``sending`` this long after its last attempt was left by a process that died
#: between the call and the commit: it is looked up like an ``unknown`` one.
STALE_SENDING = timedelta(minutes=2)
#: Why an answerer who is owed money is not paid in a batch (shown, translated, by pages).
HOLD_REASONS = ("connect_not_set_up", "connect_details_needed", "no_valid_iban",
                "paused_after_refusals", "inactive")


class LedgerCheckFailed(PayoutError):
    """The ledger around the accounts a batch pays from does not verify: nothing is paid."""

    def __init__(self, problems: list[str]):
        super().__init__("the ledger does not verify: " + "; ".join(problems[:3]))
        self.problems = problems


def _owed(session: Session, now: datetime, settled_before_days: int,
          answerer_id: int | None = None) -> dict[int, tuple[int, str]]:
    """Answerer id -> (cents owed under the eligibility rule, currency): every payable account,
    or only ``answerer_id``'s."""
    cutoff = now - timedelta(days=settled_before_days)
    amount = LedgerEntry.amount_cents
    eligible_credit = case(
        ((amount < 0) & ((LedgerTransaction.created_at <= cutoff)
                         | LedgerTransaction.reverses_id.is_not(None)), -amount),
        else_=0,
    )
    debit = case((amount > 0, amount), else_=0)
    rows = session.execute(
        select(LedgerAccount.name, LedgerAccount.currency,
               func.coalesce(func.sum(eligible_credit), 0), func.coalesce(func.sum(debit), 0))
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerAccount.name.like(ledger.PAYABLE_ACCOUNTS_LIKE) if answerer_id is None
               else LedgerAccount.name == ledger.payable_account(answerer_id))
        .group_by(LedgerAccount.id, LedgerAccount.name, LedgerAccount.currency)
    )
    owed = {}
    for name, currency, credits, debits in rows:
        owed[ledger.answerer_of(name)] = (int(credits) - int(debits), currency)
    return owed


def eligible_amounts(session: Session, now: datetime, *, settled_before_days: int = 14,
                     minimum_cents: int = 1000, answerer_id: int | None = None
                     ) -> dict[int, int]:
    """Answerer user id -> cents to pay now, by the eligibility rule of the module docstring
    (for everyone, or only ``answerer_id``)."""
    return {
        user_id: cents
        for user_id, (cents, _) in _owed(session, now, settled_before_days,
                                         answerer_id).items()
        if cents >= minimum_cents
    }


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PAYOUT_LOCK_KEY})


def _post_payout(session: Session, payout: Payout, counter_account: str) -> LedgerTransaction:
    return ledger.post(
        session, f"payout:{payout.id}",
        f"Payout {payout.id} to answerer {payout.answerer_id} ({payout.method})",
        [(ledger.payable_account(payout.answerer_id), payout.amount_cents),
         (counter_account, -payout.amount_cents)],
        payout.currency,
    )


def _hold_reason(profile: AnswererProfile, now: datetime) -> str | None:
    """Why ``profile`` cannot be paid now (one of ``HOLD_REASONS``), or None."""
    if not profile.active:
        return "inactive"
    if profile.payouts_held_until is not None and profile.payouts_held_until > now:
        return "paused_after_refusals"
    if profile.payout_method == "connect":
        if not profile.stripe_account_id:
            return "connect_not_set_up"
        if not profile.connect_payouts_enabled:
            return "connect_details_needed"
        return None
    try:
        sepa.validate_iban(profile.iban or "")
    except sepa.InvalidIBAN:
        return "no_valid_iban"
    return None


def holds(session: Session, now: datetime, answerer_ids: list[int]) -> dict[int, str]:
    """Answerer id -> why their payouts are held now (only those held)."""
    if not answerer_ids:
        return {}
    found = {}
    for profile in session.scalars(select(AnswererProfile).where(
            AnswererProfile.user_id.in_(answerer_ids))):
        reason = _hold_reason(profile, now)
        if reason:
            found[profile.user_id] = reason
    return found


def _start_connect_payout(session: Session, payout: Payout, now: datetime) -> None:
    """Phase 1 of a Connect payout: the key is fixed and the money leaves the payable account."""
    payout.status = "sending"
    payout.failure_code = payout.failure_reason = None
    payout.idempotency_key = idempotency_key(session, "payout", payout.id)
    payout.last_attempt_at = now
    _post_payout(session, payout, ledger.STRIPE_BALANCE)


def _pay_by_sepa(session: Session, payout: Payout, profile: AnswererProfile) -> None:
    """Post a SEPA payout that goes into the batch's file (the IBAN was checked by the hold
    rule)."""
    payout.iban = sepa.validate_iban(profile.iban or "")
    payout.status = "awaiting_bank"
    _post_payout(session, payout, ledger.BANK_CLEARING)


def run_batch(session: Session, now: datetime, *, created_by: User | None = None,
              settled_before_days: int = 14, minimum_cents: int = 1000) -> PayoutBatch | None:
    """Phase 1: pay every eligible answerer who can be paid, once (never ``created_by``
    themselves); None (and nothing created) if nobody is due. Connect payouts are left
    ``sending`` for ``send_transfers``, after the caller's commit. Raises
    ``LedgerCheckFailed`` if the ledger around the payable accounts does not verify, and
    ``sepa.InvalidSepaFile`` if the batch's SEPA file fails its checks: the caller rolls back,
    nothing is paid."""
    _lock(session)
    currency = settings.current(session).currency
    owed = _owed(session, now, settled_before_days)
    # Separation of duties: an organizer who also answers is never in a batch they run;
    # another organizer's batch (or the scheduler's) pays them.
    due = {user_id: cents for user_id, (cents, cur) in owed.items()
           if cents >= minimum_cents and cur == currency
           and (created_by is None or user_id != created_by.id)}
    profiles = {p.user_id: p for p in session.scalars(
        select(AnswererProfile).where(AnswererProfile.user_id.in_(list(due))))
        if _hold_reason(p, now) is None} if due else {}
    _tell_held(session, {user_id: cents for user_id, cents in due.items()
                         if user_id not in profiles}, currency, now)
    if not profiles:
        return None
    problems = ledger.verify_accounts(
        session, [ledger.payable_account(user_id) for user_id in sorted(profiles)])
    if problems:
        raise LedgerCheckFailed(problems)
    batch = PayoutBatch(created_at=now, currency=currency,
                        created_by_id=created_by.id if created_by is not None else None)
    session.add(batch)
    session.flush()
    by_bank: list[tuple[Payout, str]] = []
    for user_id in sorted(profiles):
        profile = profiles[user_id]
        payout = Payout(batch_id=batch.id, answerer_id=user_id, amount_cents=due[user_id],
                        currency=currency, method=profile.payout_method, created_at=now,
                        status="sending")
        session.add(payout)
        session.flush()
        if profile.payout_method == "connect":
            _start_connect_payout(session, payout, now)
        else:
            _pay_by_sepa(session, payout, profile)
            by_bank.append((payout, profile.account_holder or profile.user.name))
    if by_bank:
        batch.sepa_xml = sepa.build_file(by_bank, currency, now)
    session.flush()
    session.refresh(batch, ["payouts"])
    return batch


def _tell_held(session: Session, held: dict[int, int], currency: str, now: datetime) -> None:
    """Tell each answerer owed ``held[id]`` cents who cannot be paid now why the money waits
    (``payout_held``): once per reason until they are paid again, not at every batch."""
    for user_id, reason in holds(session, now, list(held)).items():
        last_paid = session.scalar(select(func.max(Payout.created_at)).where(
            Payout.answerer_id == user_id))
        if not notifications.told_since(session, user_id, "payout_held", last_paid,
                                        reason=reason):
            notifications.enqueue(session, session.get(User, user_id), "payout_held", {
                "amount_cents": held[user_id], "currency": currency, "reason": reason,
                "at": now.isoformat()}, now)


def run_batch_audited(session: Session, now: datetime, organizer: User) -> PayoutBatch | None:
    """``run_batch`` as the organizer's Payouts page runs it ("Run a payout batch now"): with
    the configured age and minimum (``UPSS_PAYOUT_AFTER_DAYS``, ``UPSS_PAYOUT_MINIMUM_CENTS``,
    as the weekly job), never paying ``organizer``, and an audit-log row for the batch made.
    None (nothing recorded) if nobody is due; ``LedgerCheckFailed`` and
    ``sepa.InvalidSepaFile`` as ``run_batch``."""
    cfg = current_app.config
    batch = run_batch(session, now, created_by=organizer,
                      settled_before_days=cfg["UPSS_PAYOUT_AFTER_DAYS"],
                      minimum_cents=cfg["UPSS_PAYOUT_MINIMUM_CENTS"])
    if batch is not None:
        audit.record(session, organizer, "run payout batch", f"payout_batch:{batch.id}",
                     {}, {"payouts": len(batch.payouts),
                          "total_cents": sum(p.amount_cents for p in batch.payouts)})
    return batch


def send_transfers(session: Session, now: datetime, batch_id: int) -> int:
    """Phase 2: send every ``sending`` Connect payout of ``batch_id`` that has not been tried
    yet, each between two commits; returns how many were sent. One that was tried (its
    process died during the call) is left to ``resolve_unfinished``, which looks it up first.
    Owns its transactions: commits what the caller left first."""
    session.commit()
    ids = list(session.scalars(select(Payout.id).where(
        Payout.batch_id == batch_id, Payout.status == "sending", Payout.attempts == 0)
        .order_by(Payout.id)))
    session.commit()
    return sum(_send_transfer(session, payout_id, now) == "sent" for payout_id in ids)


def _send_transfer(session: Session, payout_id: int, now: datetime) -> str:
    """Send one Connect payout's transfer with its own key, outside any database transaction,
    then commit the outcome; returns the payout's new status."""
    payout = session.get(Payout, payout_id)
    profile = session.get(AnswererProfile, payout.answerer_id)
    request = {"amount_cents": payout.amount_cents, "currency": payout.currency,
               "destination": profile.stripe_account_id or "",
               "transfer_group": payout.idempotency_key,
               "metadata": {"payout_id": payout.id, "answerer_id": payout.answerer_id},
               "idempotency_key": payout.idempotency_key}
    payout.attempts += 1
    payout.last_attempt_at = now
    session.commit()  # the attempt is on record before Stripe is asked; nothing is held
    transfer, error = None, None
    try:
        transfer = gateway().create_transfer(**request)
    except GatewayError as exc:
        error = exc
    payout = session.scalar(select(Payout).where(Payout.id == payout_id).with_for_update())
    if payout.status in ("sending", "unknown"):
        if transfer is not None:
            _mark_sent(session, payout, transfer)
        elif error.outcome_unknown:
            if payout.status != "unknown":  # told once, not at every look-up
                notifications.enqueue(session, payout.answerer, "payout_unknown",
                                      notifications.about_payout(payout, now, "no_clear_answer"),
                                      now)
            payout.status = "unknown"
            record_failure(payout, "no_clear_answer", str(error))
        else:
            _refuse(session, payout, str(error), now)
    session.commit()
    return payout.status


def _mark_sent(session: Session, payout: Payout, transfer: Transfer) -> None:
    if transfer.amount != payout.amount_cents or transfer.currency != payout.currency:
        if payout.status != "unknown":
            notifications.enqueue(session, payout.answerer, "payout_unknown",
                                  notifications.about_payout(payout, payout.last_attempt_at,
                                                             "amount_differs"))
        payout.status = "unknown"
        record_failure(payout, "amount_differs",
                   f"{transfer.id}: {to_decimal(transfer.amount, transfer.currency)} "
                   f"{transfer.currency}")
        return
    payout.status = "sent"
    payout.failure_code = payout.failure_reason = None
    payout.stripe_transfer_id = transfer.id
    notifications.enqueue(session, payout.answerer, "payout_sent",
                          notifications.about_payout(payout, payout.last_attempt_at))
    clear_pause(session.get(AnswererProfile, payout.answerer_id))


def _refuse(session: Session, payout: Payout, stripe_message: str, now: datetime) -> None:
    """Stripe clearly refused the transfer: the payout is failed (``transfer_refused``, with
    Stripe's message as the detail) and reversed (the money is owed again), and the
    answerer's payouts pause before the next try."""
    payout.status = "failed"
    record_failure(payout, "transfer_refused", stripe_message)
    notifications.enqueue(session, payout.answerer, "payout_failed",
                          notifications.about_payout(payout, now, "transfer_refused"), now)
    reverse_payout(session, payout,
                   f"Payout {payout.id} failed: Stripe refused the transfer: {stripe_message}"
                   [:255])
    pause_after_refusal(session.get(AnswererProfile, payout.answerer_id), now)


def resolve_unfinished(session: Session, now: datetime) -> str | None:
    """Job: settle Connect payouts whose outcome is not known (``unknown``, or ``sending`` left
    by a process that died before or after the call). Each is looked up at Stripe by its
    ``transfer_group`` first;
    only if Stripe has no transfer is it sent again with the same key, while Stripe keeps
    keys; after that it is failed and reversed (owed again, paid under a new key). Owns its
    transactions."""
    session.commit()
    ids = list(session.scalars(select(Payout.id).where(
        (Payout.status == "unknown")
        | ((Payout.status == "sending")
           & (Payout.last_attempt_at <= now - STALE_SENDING))).order_by(Payout.id)))
    session.commit()
    outcomes: dict[str, int] = {}
    for payout_id in ids:
        outcome = _resolve(session, payout_id, now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())) or None


def _resolve(session: Session, payout_id: int, now: datetime) -> str:
    payout = session.get(Payout, payout_id)
    key, created = payout.idempotency_key, payout.created_at
    session.commit()
    try:
        found = gateway().find_transfers(key)
    except GatewayError as exc:
        log.warning("could not look up payout %s at Stripe: %s", payout_id, exc)
        return "still unknown"
    if not found and now - created < KEY_LIFETIME:
        return "resent: " + _send_transfer(session, payout_id, now)
    payout = session.scalar(select(Payout).where(Payout.id == payout_id).with_for_update())
    if payout.status not in ("sending", "unknown"):
        session.commit()
        return "already settled"
    if found:
        _mark_sent(session, payout, found[0])
        outcome = "found: " + payout.status
    else:
        payout.status = "failed"
        record_failure(payout, "not_at_stripe")
        notifications.enqueue(session, payout.answerer, "payout_failed",
                              notifications.about_payout(payout, now, "not_at_stripe"), now)
        reverse_payout(session, payout, f"Payout {payout.id} not made at Stripe")
        outcome = "not at Stripe: failed"
    session.commit()
    return outcome
