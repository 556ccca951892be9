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
* **Connect.** ``transfers.create`` with the idempotency key of ``transfer_key()`` (why not
  ``payout:<payout id>``: see there); the ledger
  posts ``payout:<id>``: payable (debit) → ``stripe_balance`` (credit); the payout is ``sent``.
* **SEPA.** The answerer's IBAN is checked with schwifty; the ledger posts ``payout:<id>``:
  payable (debit) → ``bank_clearing`` (credit); the payout is ``awaiting_bank`` until the
  organizer marks the batch's file sent (``mark_sepa_sent``). All SEPA payouts of a batch form
  ONE pain.001.001.03 file (sepaxml), validated against its XSD before it is stored.
* **Failures are posted and reversed.** A payout that cannot be made (Stripe refuses the
  transfer, no Connect account, no valid IBAN, the bank returns a SEPA transfer) keeps its
  ``payout:<id>`` posting and gets the reversing transaction ``payout:<id>:reversal``. The
  payable balance ends where it was, and the account statement shows the attempt and its undo
  next to the failed Payout row, instead of a Payout row with no trace in the ledger.

Like every service, these functions flush and never commit; the caller owns the transaction.
Stripe transfers happen inside that transaction: if the caller rolls back after a transfer
was made, the rerun uses the same idempotency key and gets the same transfer back.

``reconcile()`` compares Stripe with the ledger both ways: succeeded PaymentIntents without a
``payment:<id>`` posting, ``payment:<id>`` postings without a succeeded PaymentIntent, and
refunds of a question's payment without its ``refund:question:<id>`` posting.
"""

from __future__ import annotations

import functools
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

from . import ledger, settings
from .installation import idempotency_key
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
from .stripe_gateway import CardDeclined, GatewayError, gateway

#: Key of the PostgreSQL advisory lock that serialises payout batches.
PAYOUT_LOCK_KEY = 0x0055_5053_5303
PAIN_001_NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
_PAYABLE_PREFIX = "payable:answerer:"


class PayoutError(Exception):
    """A payout action that does not fit the payout or batch it is asked of."""


class InvalidIBAN(ValueError):
    """The text is not a valid IBAN (structure, country format or check digits)."""


def validate_iban(text: str) -> str:
    """The IBAN in ``text`` in compact upper-case form, or InvalidIBAN."""
    try:
        return IBAN(text or "").compact
    except SchwiftyException as exc:
        raise InvalidIBAN(f"{text!r} is not a valid IBAN: {exc}") from exc


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
    original = session.scalar(select(LedgerTransaction).where(
        LedgerTransaction.idempotency_key == f"payout:{payout.id}"))
    if original is None:
        raise PayoutError(f"payout {payout.id} has no ledger posting to reverse")
    return ledger.reverse(session, original, f"payout:{payout.id}:reversal", description)


def _fail(session: Session, payout: Payout, counter_account: str, reason: str) -> None:
    """A payout that could not be made: post it and reverse it, so the attempt stays visible."""
    payout.status = "failed"
    payout.failure_reason = reason[:500]
    _post_payout(session, payout, counter_account)
    _reverse_payout(session, payout, f"Payout {payout.id} failed: {reason}"[:255])


def transfer_key(session: Session, answerer_id: int, amount_cents: int) -> str:
    """Stripe idempotency key of a Connect payout, fixed by the ledger state it pays.

    Not ``payout:<payout id>``: the transfer is made inside the caller's transaction, and if
    that rolls back after Stripe said yes, a rerun gets a new payout id (PostgreSQL never
    reuses sequence values) and would pay twice. The newest transaction on the answerer's
    payable account plus the amount is the same on a rerun, so Stripe returns the first
    transfer instead of making a second.
    """
    newest = session.scalar(
        select(func.max(LedgerEntry.transaction_id))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.name == f"{_PAYABLE_PREFIX}{answerer_id}"))
    return idempotency_key(session, "payout", "answerer", answerer_id, "through", newest or 0,
                           amount_cents)


def _pay_by_connect(session: Session, payout: Payout, profile: AnswererProfile) -> None:
    if not profile.stripe_account_id:
        _fail(session, payout, "stripe_balance", "no Stripe Connect account on the profile")
        return
    try:
        transfer_id = gateway().create_transfer(
            amount_cents=payout.amount_cents, currency=payout.currency,
            destination=profile.stripe_account_id,
            idempotency_key=transfer_key(session, payout.answerer_id, payout.amount_cents))
    except (GatewayError, CardDeclined) as exc:
        _fail(session, payout, "stripe_balance", f"Stripe refused the transfer: {exc}")
        return
    payout.status = "sent"
    payout.failure_reason = None
    payout.stripe_transfer_id = transfer_id
    _post_payout(session, payout, "stripe_balance")


def _pay_by_sepa(session: Session, payout: Payout, profile: AnswererProfile) -> bool:
    """Post a SEPA payout; True if it goes into the batch's file."""
    try:
        payout.iban = validate_iban(profile.iban or "")
    except InvalidIBAN:
        _fail(session, payout, "bank_clearing", "no valid IBAN on the profile")
        return False
    payout.status = "awaiting_bank"
    payout.failure_reason = None
    _post_payout(session, payout, "bank_clearing")
    return True


def _sepa_file(payments: list[tuple[Payout, str]], currency: str, now: datetime) -> str:
    """One pain.001.001.03 credit-transfer file for ``(payout, creditor name)`` pairs."""
    cfg = current_app.config
    transfer = SepaTransfer({
        "name": cfg["UPSS_ORGANIZER_NAME"],
        "IBAN": cfg["UPSS_ORGANIZER_IBAN"],
        "BIC": cfg["UPSS_ORGANIZER_BIC"],
        "batch": True,
        "currency": currency,
    }, schema="pain.001.001.03")
    for payout, name in payments:
        transfer.add_payment({
            "name": name,
            "IBAN": payout.iban,
            "amount": payout.amount_cents,  # sepaxml takes integer cents
            "currency": payout.currency,
            "execution_date": now.date(),
            "description": f"UPSS payout {payout.id}",
            "endtoend_id": f"UPSS-PAYOUT-{payout.id}",
        })
    return transfer.export(validate=True).decode("utf-8")


def run_batch(session: Session, now: datetime, *, created_by: User | None = None,
              settled_before_days: int = 14, minimum_cents: int = 1000) -> PayoutBatch | None:
    """Pay every eligible active answerer once; None (and nothing created) if nobody is due."""
    _lock(session)
    currency = settings.current(session).currency
    owed = _owed(session, now, settled_before_days)
    due = {user_id: cents for user_id, (cents, cur) in owed.items()
           if cents >= minimum_cents and cur == currency}
    profiles = {p.user_id: p for p in session.scalars(
        select(AnswererProfile).where(AnswererProfile.user_id.in_(list(due)),
                                      AnswererProfile.active.is_(True)))} if due else {}
    if not profiles:
        return None
    batch = PayoutBatch(created_at=now, currency=currency,
                        created_by_id=created_by.id if created_by is not None else None)
    session.add(batch)
    session.flush()
    sepa: list[tuple[Payout, str]] = []
    for user_id in sorted(profiles):
        profile = profiles[user_id]
        payout = Payout(batch_id=batch.id, answerer_id=user_id, amount_cents=due[user_id],
                        currency=currency, method=profile.payout_method, created_at=now,
                        status="failed", failure_reason="not attempted yet")
        session.add(payout)
        session.flush()
        if profile.payout_method == "connect":
            _pay_by_connect(session, payout, profile)
        elif profile.payout_method == "sepa":
            if _pay_by_sepa(session, payout, profile):
                sepa.append((payout, profile.account_holder or profile.user.name))
        else:
            _fail(session, payout, "stripe_balance",
                  f"unknown payout method {profile.payout_method!r}")
    if sepa:
        batch.sepa_xml = _sepa_file(sepa, currency, now)
    session.flush()
    session.refresh(batch, ["payouts"])
    return batch


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


def fail_sepa_payout(session: Session, payout: Payout, reason: str, now: datetime) -> None:
    """The bank returned a SEPA payout: it is failed and reversed, so the money is owed again."""
    if payout.method != "sepa":
        raise PayoutError(f"payout {payout.id} is not a SEPA payout")
    if payout.status == "failed":
        return
    payout.status = "failed"
    payout.failure_reason = (reason or "returned by the bank")[:500]
    _reverse_payout(session, payout, f"SEPA payout {payout.id} returned by the bank "
                                     f"on {now.date().isoformat()}")
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

    @property
    def ok(self) -> bool:
        """Nothing to report: Stripe and the ledger agree."""
        return not (self.missing_in_ledger or self.missing_at_stripe
                    or self.refunds_missing_in_ledger)


def reconcile(session: Session) -> Reconciliation:
    """Match Stripe's PaymentIntents and refunds with the ledger, both ways."""
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
            LedgerTransaction.idempotency_key.in_(
                [f"refund:question:{q}" for q in by_intent.values()]))))
        for refund in refunds:
            question_id = by_intent.get(refund.payment_intent)
            if question_id is not None and f"refund:question:{question_id}" not in refunded:
                result.refunds_missing_in_ledger.append(
                    f"refund {refund.id} ({refund.amount} {refund.currency}) of question "
                    f"{question_id} (PaymentIntent {refund.payment_intent}) is not in the ledger")
    return result
