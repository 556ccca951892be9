"""Payouts to answerers (Stripe Connect transfers or one SEPA file per batch) and reconciliation.

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
  refusals (``payouts_held_until``: each refusal in a row doubles the pause, from one week).
  The others are *held* (``holds()`` says why) and nothing is posted for them.
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
* **SEPA.** The answerer's IBAN is checked with schwifty; the ledger posts ``payout:<id>``:
  payable (debit) → ``bank_clearing`` (credit); the payout is ``awaiting_bank`` until the
  organizer marks the batch's file sent (``mark_sepa_sent``). All SEPA payouts of a batch form
  ONE pain.001.001.03 file (sepaxml), validated against its XSD before it is stored. Every
  name and remittance text in it is reduced to the EPC basic Latin character set first
  (``epc_text``): the XSD accepts any Unicode, but banks need only accept that set.
* **Failures are posted and reversed.** A payout that was refused (Stripe refuses the transfer,
  the bank returns a SEPA transfer) keeps its ``payout:<id>`` posting and gets the reversing
  transaction ``payout:<id>:reversal``. The payable balance ends where it was, and the account
  statement shows the attempt and its undo next to the failed Payout row.

The organizer's Payouts page uses ``run_batch_audited``, ``mark_sepa_sent_audited`` and
``mark_sepa_settled_audited``: the same, plus the audit-log row of each (``upss.audit``).
``GatewayError`` is re-exported for pages (an error they show).

Like every service, ``run_batch`` flushes and never commits. ``send_transfers`` and
``resolve_unfinished`` own their transactions, because the Stripe call must sit between two
commits: the row and its key are stored before the call, and its outcome after it.

``reconcile()`` compares Stripe with the ledger both ways: succeeded PaymentIntents without a
``payment:<id>`` posting, ``payment:<id>`` postings without a succeeded PaymentIntent, and
refunds of a question's payment without their ``refund:<refund id>`` posting, transfers that do
not match a Connect payout amount by amount, and SEPA payouts missing from their file.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
import xml.etree.ElementTree as ET  # noqa: S405 - only parses pain.001 files UPSS wrote itself
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources

from flask import current_app
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sepaxml import SepaTransfer
from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session
from text_unidecode import unidecode  # installed with sepaxml, which runs it on these fields too

from . import audit, ledger, settings
from .installation import idempotency_key, installation_id
from .models import (
    AnswererProfile,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutBatch,
    Question,
    User,
)
from .stripe_gateway import GatewayError as GatewayError  # an error pages show: re-exported
from .stripe_gateway import Transfer, gateway

log = logging.getLogger(__name__)

#: Key of the PostgreSQL advisory lock that serialises payout batches.
PAYOUT_LOCK_KEY = 0x0055_5053_5303
PAIN_001_NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
_PAYABLE_PREFIX = "payable:answerer:"
#: The transfer_group of a payout made by some installation of UPSS (see ``upss.installation``).
_OTHER_INSTALLATION = re.compile(r"upss-[0-9a-f]{16}:payout:\d+$")


#: Stripe keeps an idempotency key at least this long; a payout is re-sent under its key only
#: within it.
KEY_LIFETIME = timedelta(hours=24)
#: A payout still ``sending`` this long after its last attempt was left by a process that died
#: between the call and the commit: it is looked up like an ``unknown`` one.
STALE_SENDING = timedelta(minutes=2)
#: The first pause after a refused payout; each further refusal in a row doubles it.
FIRST_PAUSE = timedelta(days=7)
MAX_PAUSE = timedelta(days=56)
#: Why an answerer who is owed money is not paid in a batch (shown, translated, by pages).
HOLD_REASONS = ("connect_not_set_up", "connect_details_needed", "no_valid_iban",
                "paused_after_refusals", "inactive")


class PayoutError(Exception):
    """A payout action that does not fit the payout or batch it is asked of."""


class LedgerCheckFailed(PayoutError):
    """The ledger around the accounts a batch pays from does not verify: nothing is paid."""

    def __init__(self, problems: list[str]):
        super().__init__("the ledger does not verify: " + "; ".join(problems[:3]))
        self.problems = problems


class InvalidIBAN(ValueError):
    """The text is not a valid IBAN (structure, country format or check digits)."""


def validate_iban(text: str) -> str:
    """The IBAN in ``text`` in compact upper-case form, or InvalidIBAN."""
    try:
        return IBAN(text or "").compact
    except SchwiftyException as exc:
        raise InvalidIBAN(f"{text!r} is not a valid IBAN: {exc}") from exc


#: The EPC basic Latin character set (EPC217-08), the only characters every SEPA bank must
#: accept in a pain.001 file.
EPC_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                           "/-?:().,'+ ")
#: Longest creditor and debtor name (Nm) that EPC's SCT implementation guidelines allow; the
#: XSD's own limit is 140.
SEPA_NAME_LENGTH = 70
#: Longest unstructured remittance text (Ustrd), the XSD's Max140Text.
SEPA_REMITTANCE_LENGTH = 140
#: Latin letters that NFKD does not split into a base letter and a combining mark.
_LATIN_LETTERS = str.maketrans({
    "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ẞ": "SS",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ł": "l", "Ł": "L",
    "ı": "i", "ħ": "h", "Ħ": "H", "ŧ": "t", "Ŧ": "T",
})
#: Signs outside the set that keep a meaning in it; any other character becomes a space.
_SIGNS = str.maketrans({"&": "+", "@": "(at)", '"': "'", "[": "(", "]": ")", "{": "(",
                        "}": ")"})


def epc_text(value: str, max_length: int) -> str:
    """``value`` reduced to the EPC basic Latin character set of EPC217-08 ("SEPA
    Requirements for an Extended Character Set"): ``a-z A-Z 0-9 / - ? : ( ) . , ' +`` and
    space, the set every SEPA bank must accept; at most ``max_length`` characters.

    * Latin letters lose their diacritics (NFKD, combining marks dropped: é → e, č → c,
      å → a); the letters NFKD keeps whole map to base letters (ø → o, æ → ae, ß → ss,
      ł → l, đ/ð → d, œ → oe, þ → th).
    * Other scripts are transliterated with text-unidecode (Cyrillic, Greek, CJK...:
      Иван → Ivan, 北京 → Bei Jing), as sepaxml itself does to these fields.
    * ``&`` → ``+``, ``@`` → ``(at)``, ``"`` → ``'``, brackets and braces → parentheses;
      every other character outside the set (``< > = _ ! * %``, control characters,
      emoji...) becomes a space.
    * Runs of spaces collapse to one, the ends are stripped, and the text is cut at
      ``max_length`` (then stripped again).

    The result may be empty (nothing usable in ``value``): the caller chooses a fallback,
    since the XSD needs at least one character.
    """
    text = unicodedata.normalize("NFKD", value or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.translate(_LATIN_LETTERS)
    text = "".join(ch if ch.isascii() else unidecode(ch) for ch in text)
    text = text.translate(_SIGNS)
    text = "".join(ch if ch in EPC_CHARACTERS else " " for ch in text)
    return " ".join(text.split())[:max_length].rstrip()


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
        .where(LedgerAccount.name.like(_PAYABLE_PREFIX + "%") if answerer_id is None
               else LedgerAccount.name == f"{_PAYABLE_PREFIX}{answerer_id}")
        .group_by(LedgerAccount.id, LedgerAccount.name, LedgerAccount.currency)
    )
    owed = {}
    for name, currency, credits, debits in rows:
        owed[int(name.removeprefix(_PAYABLE_PREFIX))] = (int(credits) - int(debits), currency)
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
        [(f"{_PAYABLE_PREFIX}{payout.answerer_id}", payout.amount_cents),
         (counter_account, -payout.amount_cents)],
        payout.currency,
    )


def _reverse_payout(session: Session, payout: Payout, description: str) -> LedgerTransaction:
    original = ledger.posted(session, f"payout:{payout.id}")
    if original is None:
        raise PayoutError(f"payout {payout.id} has no ledger posting to reverse")
    return ledger.reverse(session, original, f"payout:{payout.id}:reversal", description)


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
        validate_iban(profile.iban or "")
    except InvalidIBAN:
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


def _pause_after_refusal(profile: AnswererProfile, now: datetime) -> None:
    profile.payout_failures += 1
    profile.payouts_held_until = now + min(FIRST_PAUSE * 2 ** (profile.payout_failures - 1),
                                           MAX_PAUSE)


def _paid(profile: AnswererProfile) -> None:
    profile.payout_failures = 0
    profile.payouts_held_until = None


def _start_connect_payout(session: Session, payout: Payout, now: datetime) -> None:
    """Phase 1 of a Connect payout: the key is fixed and the money leaves the payable account."""
    payout.status = "sending"
    payout.failure_reason = None
    payout.idempotency_key = idempotency_key(session, "payout", payout.id)
    payout.last_attempt_at = now
    _post_payout(session, payout, "stripe_balance")


def _pay_by_sepa(session: Session, payout: Payout, profile: AnswererProfile) -> None:
    """Post a SEPA payout that goes into the batch's file (the IBAN was checked by the hold
    rule)."""
    payout.iban = validate_iban(profile.iban or "")
    payout.status = "awaiting_bank"
    _post_payout(session, payout, "bank_clearing")


def _sepa_file(payments: list[tuple[Payout, str]], currency: str, now: datetime) -> str:
    """One pain.001.001.03 credit-transfer file for ``(payout, creditor name)`` pairs."""
    cfg = current_app.config
    transfer = SepaTransfer({
        "name": epc_text(cfg["UPSS_ORGANIZER_NAME"], SEPA_NAME_LENGTH) or "UPSS",
        "IBAN": cfg["UPSS_ORGANIZER_IBAN"],
        "BIC": cfg["UPSS_ORGANIZER_BIC"],
        "batch": True,
        "currency": currency,
    }, schema="pain.001.001.03")
    for payout, name in payments:
        transfer.add_payment({
            # A name with nothing left in the EPC set (only emoji, say) still needs one.
            "name": (epc_text(name, SEPA_NAME_LENGTH)
                     or f"UPSS answerer {payout.answerer_id}"),
            "IBAN": payout.iban,
            "amount": payout.amount_cents,  # sepaxml takes integer cents
            "currency": payout.currency,
            "execution_date": now.date(),
            "description": epc_text(f"UPSS payout {payout.id}", SEPA_REMITTANCE_LENGTH),
            # EPC characters already; MsgId and PmtInfId (sepaxml's) are digits, hex and "-".
            "endtoend_id": f"UPSS-PAYOUT-{payout.id}",
        })
    return transfer.export(validate=True).decode("utf-8")


def run_batch(session: Session, now: datetime, *, created_by: User | None = None,
              settled_before_days: int = 14, minimum_cents: int = 1000) -> PayoutBatch | None:
    """Phase 1: pay every eligible answerer who can be paid, once (never ``created_by``
    themselves); None (and nothing created) if nobody is due. Connect payouts are left
    ``sending`` for ``send_transfers``, after the caller's commit. Raises
    ``LedgerCheckFailed`` (nothing created) if the ledger around the payable accounts does not
    verify."""
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
    if not profiles:
        return None
    problems = ledger.verify_accounts(
        session, [f"{_PAYABLE_PREFIX}{user_id}" for user_id in sorted(profiles)])
    if problems:
        raise LedgerCheckFailed(problems)
    batch = PayoutBatch(created_at=now, currency=currency,
                        created_by_id=created_by.id if created_by is not None else None)
    session.add(batch)
    session.flush()
    sepa: list[tuple[Payout, str]] = []
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
            sepa.append((payout, profile.account_holder or profile.user.name))
    if sepa:
        batch.sepa_xml = _sepa_file(sepa, currency, now)
    session.flush()
    session.refresh(batch, ["payouts"])
    return batch


def run_batch_audited(session: Session, now: datetime, organizer: User) -> PayoutBatch | None:
    """``run_batch`` as the organizer's Payouts page runs it ("Run a payout batch now"): with
    the configured age and minimum (``UPSS_PAYOUT_AFTER_DAYS``, ``UPSS_PAYOUT_MINIMUM_CENTS``,
    as the weekly job), never paying ``organizer``, and an audit-log row for the batch made.
    None (nothing recorded) if nobody is due; ``LedgerCheckFailed`` as ``run_batch``."""
    cfg = current_app.config
    batch = run_batch(session, now, created_by=organizer,
                      settled_before_days=cfg["UPSS_PAYOUT_AFTER_DAYS"],
                      minimum_cents=cfg["UPSS_PAYOUT_MINIMUM_CENTS"])
    if batch is not None:
        audit.record(session, organizer, "run payout batch", f"payout_batch:{batch.id}",
                     {}, {"payouts": len(batch.payouts),
                          "total_cents": sum(p.amount_cents for p in batch.payouts)})
    return batch


def send_transfers(session: Session, now: datetime, batch_id: int | None = None) -> int:
    """Phase 2: send every ``sending`` Connect payout (of ``batch_id``, or all) that has not
    been tried yet, each between two commits; returns how many were sent. Owns its
    transactions: commits what the caller left first."""
    session.commit()
    query = select(Payout.id).where(Payout.status == "sending", Payout.attempts == 0)
    if batch_id is not None:
        query = query.where(Payout.batch_id == batch_id)
    ids = list(session.scalars(query.order_by(Payout.id)))
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
            payout.status = "unknown"
            payout.failure_reason = f"no clear answer from Stripe: {error}"[:500]
        else:
            _refuse(session, payout, f"Stripe refused the transfer: {error}", now)
    session.commit()
    return payout.status


def _mark_sent(session: Session, payout: Payout, transfer: Transfer) -> None:
    if transfer.amount != payout.amount_cents or transfer.currency != payout.currency:
        payout.status = "unknown"
        payout.failure_reason = (f"transfer {transfer.id} at Stripe is {transfer.amount} "
                                 f"{transfer.currency}, not {payout.amount_cents} "
                                 f"{payout.currency}: check it")[:500]
        return
    payout.status = "sent"
    payout.failure_reason = None
    payout.stripe_transfer_id = transfer.id
    _paid(session.get(AnswererProfile, payout.answerer_id))


def _refuse(session: Session, payout: Payout, reason: str, now: datetime) -> None:
    """A clear refusal: the payout is failed and reversed (the money is owed again) and the
    answerer's payouts pause before the next try."""
    payout.status = "failed"
    payout.failure_reason = reason[:500]
    _reverse_payout(session, payout, f"Payout {payout.id} failed: {reason}"[:255])
    _pause_after_refusal(session.get(AnswererProfile, payout.answerer_id), now)


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
        payout.failure_reason = ("Stripe has no transfer for this payout, and its key has "
                                 "expired: the money is owed again")
        _reverse_payout(session, payout, f"Payout {payout.id} not made at Stripe")
        outcome = "not at Stripe: failed"
    session.commit()
    return outcome


def mark_sepa_sent(session: Session, batch: PayoutBatch, organizer: User, now: datetime) -> int:
    """The organizer gave the batch's SEPA file to the bank; returns how many payouts changed."""
    if not batch.sepa_xml:
        raise PayoutError(f"payout batch {batch.id} has no SEPA file")
    if batch.sepa_marked_sent_at is None:
        batch.sepa_marked_sent_at = now
        batch.sepa_marked_sent_by_id = organizer.id
    changed = 0
    for payout in session.scalars(select(Payout).where(
            Payout.batch_id == batch.id, Payout.status == "awaiting_bank")):
        payout.status = "sent"
        changed += 1
    session.flush()
    session.refresh(batch, ["payouts"])
    return changed


def mark_sepa_sent_audited(session: Session, batch: PayoutBatch, organizer: User,
                           now: datetime) -> int:
    """``mark_sepa_sent`` with its audit-log row (when the file was marked sent, before and
    after), as the organizer's Payouts page does it."""
    before = {"sepa_marked_sent_at": batch.sepa_marked_sent_at}
    changed = mark_sepa_sent(session, batch, organizer, now)
    audit.record(session, organizer, "mark SEPA file sent", f"payout_batch:{batch.id}",
                 before, {"sepa_marked_sent_at": batch.sepa_marked_sent_at})
    return changed


def mark_sepa_settled_audited(session: Session, batch: PayoutBatch, organizer: User,
                              now: datetime) -> int:
    """``mark_sepa_settled`` with its audit-log row, as the organizer's Payouts page does it;
    ``PayoutError`` (nothing recorded) if the file was not marked sent."""
    total = mark_sepa_settled(session, batch, organizer, now)
    audit.record(session, organizer, "mark SEPA file settled", f"payout_batch:{batch.id}",
                 {}, {"sepa_settled_at": batch.sepa_settled_at, "total_cents": total})
    return total


def mark_sepa_settled(session: Session, batch: PayoutBatch, organizer: User,
                      now: datetime) -> int:
    """The bank has paid the batch's file: what the file moved out of ``bank_clearing`` now
    leaves the organizer's ``bank`` account (once). Returns the cents settled."""
    if batch.sepa_marked_sent_at is None:
        raise PayoutError(f"payout batch {batch.id}'s file was not marked sent")
    key = f"sepa-settled:batch:{batch.id}"
    if batch.sepa_settled_at is not None:
        return 0
    total = sum(p.amount_cents for p in batch.payouts if p.method == "sepa"
                and p.status == "sent")
    if total:
        ledger.post(session, key, f"SEPA file of batch {batch.id} paid by the bank",
                    [("bank_clearing", total), ("bank", -total)], batch.currency)
    batch.sepa_settled_at = now
    batch.sepa_settled_by_id = organizer.id
    session.flush()
    return total


def fail_sepa_payout(session: Session, payout: Payout, reason: str, now: datetime) -> None:
    """The bank returned a SEPA payout: it is failed and reversed, so the money is owed again."""
    if payout.method != "sepa":
        raise PayoutError(f"payout {payout.id} is not a SEPA payout")
    if payout.status == "failed":
        return
    payout.status = "failed"
    payout.failure_reason = (reason or "returned by the bank")[:500]
    description = f"SEPA payout {payout.id} returned by the bank on {now.date().isoformat()}"
    if payout.batch.sepa_settled_at is None:
        _reverse_payout(session, payout, description)
    else:  # the file was settled: the money comes back into the organizer's bank account
        ledger.post(session, f"payout:{payout.id}:reversal", description,
                    [("bank", payout.amount_cents),
                     (f"{_PAYABLE_PREFIX}{payout.answerer_id}", -payout.amount_cents)],
                    payout.currency)
    _pause_after_refusal(session.get(AnswererProfile, payout.answerer_id), now)
    session.flush()


def _xml_root(xml: str) -> ET.Element:
    # The files are UPSS's own (made by sepaxml); the expat under ElementTree refuses entity
    # expansion attacks, and no external entities are fetched.
    return ET.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)  # noqa: S314


def _cents(value: str) -> int:
    cents = Decimal(value.strip()) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"amount {value!r} has more than two decimals")
    return int(cents)


def sepa_total_cents(xml: str) -> int:
    """Total of a pain.001.001.03 file in cents: the sum of its InstdAmt, checked against
    the group header's CtrlSum."""
    root = _xml_root(xml)
    ns = {"p": PAIN_001_NS}
    total = sum(_cents(amount.text or "") for amount in root.iterfind(".//p:InstdAmt", ns))
    control = root.find("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", ns)
    if control is not None and _cents(control.text or "") != total:
        raise ValueError(f"control sum {control.text} differs from the amounts ({total} cents)")
    return total


@functools.cache
def _pain001_schema():
    import xmlschema  # imported late, as sepaxml does: it patches ElementTree on import

    path = resources.files("sepaxml") / "schemas" / "pain.001.001.03.xsd"
    with resources.as_file(path) as xsd:
        return xmlschema.XMLSchema(str(xsd))


def validate_pain001(xml: str) -> None:
    """Raise xmlschema's XMLSchemaValidationError unless ``xml`` is a valid pain.001.001.03."""
    _pain001_schema().validate(xml)


@dataclass
class Reconciliation:
    #: Succeeded PaymentIntents at Stripe that the ledger does not know.
    missing_in_ledger: list[str] = field(default_factory=list)
    #: Ledger payments without a succeeded PaymentIntent at Stripe.
    missing_at_stripe: list[str] = field(default_factory=list)
    #: Refunds at Stripe of a question's payment that the ledger has not posted.
    refunds_missing_in_ledger: list[str] = field(default_factory=list)
    #: Transfers at Stripe and Connect payouts that do not match one to one, amount by amount.
    transfer_differences: list[str] = field(default_factory=list)
    #: SEPA payouts that their batch's file does not carry with the same amount (or the file
    #: carries and no payout explains).
    sepa_differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing to report: Stripe and the ledger agree."""
        return not (self.missing_in_ledger or self.missing_at_stripe
                    or self.refunds_missing_in_ledger or self.transfer_differences
                    or self.sepa_differences)


def _money(cents: int, currency: str) -> str:
    return f"{Decimal(cents) / 100:.2f} {currency}"


def _reconcile_transfers(session: Session, result: Reconciliation) -> None:
    """Every transfer at Stripe is one Connect payout's (by ``transfer_group``), for the same
    amount, net of reversals; every payout Stripe made is there."""
    transfers = gateway().list_transfers()
    payouts = {p.idempotency_key: p for p in session.scalars(
        select(Payout).where(Payout.idempotency_key.is_not(None)))}
    ours = installation_id(session) + ":"
    seen = set()
    for transfer in transfers:
        payout = payouts.get(transfer.transfer_group)
        net = transfer.amount - transfer.amount_reversed
        if payout is None and _OTHER_INSTALLATION.match(transfer.transfer_group) and not (
                transfer.transfer_group.startswith(ours)):
            continue  # another installation sharing this Stripe account (a test key)
        if payout is None:
            result.transfer_differences.append(
                f"transfer {transfer.id} ({_money(net, transfer.currency)}) at Stripe belongs "
                f"to no payout")
            continue
        seen.add(payout.id)
        expected = payout.amount_cents if payout.status in ("sent", "unknown", "sending") else 0
        if net != expected or transfer.currency != payout.currency:
            result.transfer_differences.append(
                f"payout {payout.id} ({payout.status}, {_money(expected, payout.currency)}): "
                f"transfer {transfer.id} at Stripe is {_money(net, transfer.currency)}")
    for payout in payouts.values():
        if payout.status == "sent" and payout.id not in seen:
            result.transfer_differences.append(
                f"payout {payout.id} ({_money(payout.amount_cents, payout.currency)}) is marked "
                f"sent but Stripe has no transfer for it")


def _reconcile_sepa(session: Session, result: Reconciliation) -> None:
    """Every SEPA payout in a file is in that file with its amount (end-to-end id
    ``UPSS-PAYOUT-<id>``), and the file holds nothing else."""
    ns = {"p": PAIN_001_NS}
    for batch in session.scalars(select(PayoutBatch).where(PayoutBatch.sepa_xml.is_not(None))):
        in_file = {}
        for tx in _xml_root(batch.sepa_xml).iterfind(".//p:CdtTrfTxInf", ns):
            end_to_end = tx.findtext("p:PmtId/p:EndToEndId", "", ns)
            in_file[end_to_end] = _cents(tx.findtext("p:Amt/p:InstdAmt", "0", ns))
        for payout in session.scalars(select(Payout).where(Payout.batch_id == batch.id,
                                                           Payout.method == "sepa")):
            amount = in_file.pop(f"UPSS-PAYOUT-{payout.id}", None)
            expected = _money(payout.amount_cents, payout.currency)
            if amount is None:
                result.sepa_differences.append(
                    f"payout {payout.id} ({expected}) is missing from the file of batch "
                    f"{batch.id}")
            elif amount != payout.amount_cents:
                result.sepa_differences.append(
                    f"payout {payout.id} ({expected}) is {_money(amount, payout.currency)} in "
                    f"the file of batch {batch.id}")
        for end_to_end, amount in in_file.items():
            result.sepa_differences.append(
                f"the file of batch {batch.id} pays {end_to_end} "
                f"({_money(amount, batch.currency)}), which is no payout of the batch")


def reconcile(session: Session) -> Reconciliation:
    """Match Stripe's PaymentIntents, refunds and transfers with the ledger, both ways, and
    SEPA payouts with their files."""
    result = Reconciliation()
    intents = {pi.id: pi for pi in gateway().list_payment_intents()}
    refunds = [r for r in gateway().list_refunds() if r.status not in ("failed", "canceled")]

    posted = {key.removeprefix("payment:").split(":", 1)[0]: key for key in session.scalars(
        select(LedgerTransaction.idempotency_key)
        .where(LedgerTransaction.idempotency_key.like("payment:%")))}
    for pi in intents.values():
        if pi.status == "succeeded" and pi.id not in posted:
            result.missing_in_ledger.append(
                f"PaymentIntent {pi.id} ({pi.amount} {pi.currency}) succeeded at Stripe "
                f"but has no ledger payment")
    for pi_id, key in sorted(posted.items()):
        pi = intents.get(pi_id)
        if pi is None:
            result.missing_at_stripe.append(
                f"ledger payment {key} has no PaymentIntent {pi_id} at Stripe")
        elif pi.status != "succeeded":
            result.missing_at_stripe.append(
                f"ledger payment {key}: PaymentIntent {pi_id} is {pi.status} at Stripe")

    by_intent = {pi_id: question_id for question_id, pi_id in session.execute(
        select(Question.id, Question.payment_intent_id).where(
            Question.payment_intent_id.in_(sorted({r.payment_intent for r in refunds
                                                   if r.payment_intent}))))} if refunds else {}
    if by_intent:
        refunded = set(session.scalars(select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.idempotency_key.in_([f"refund:{r.id}" for r in refunds]))))
        for refund in refunds:
            question_id = by_intent.get(refund.payment_intent)
            if question_id is not None and f"refund:{refund.id}" not in refunded:
                result.refunds_missing_in_ledger.append(
                    f"refund {refund.id} ({refund.amount} {refund.currency}) of question "
                    f"{question_id} (PaymentIntent {refund.payment_intent}) is not in the ledger")
    _reconcile_transfers(session, result)
    _reconcile_sepa(session, result)
    return result
