"""Money moved at Stripe reaches the ledger: refunds, disputes, fees, transfer reversals and the
organizer's Stripe payouts, each exactly once and in any order.

Design overview
---------------
* **Current state, not the event's snapshot.** Events arrive late, twice, in parallel and out
  of order. A refund, dispute or payout event is used only as a prompt: its object is fetched
  from Stripe as it is *now* and that state is applied. Every posting has an idempotency key
  naming the Stripe object (``refund:<re>``, ``dispute-move:<txn>``, ``fee:<txn>``,
  ``stripe-payout:<po>``…), and the paid question (or tip) is locked first, so ten copies of
  one event in parallel post once.
* **Not yet applicable.** An event about a payment the ledger does not know yet (its own
  webhook is late) raises ``NotYetApplicable``: it is not stored as processed and is answered
  non-2xx, so Stripe sends it again.
* **Who bears money given back after settlement** is one rule, ``loss_entries``:
  1. what the question's escrow still holds pays first (nothing was split yet);
  2. of the rest, the answerer's share (the settlement's split; all of a tip) is taken back
     from what UPSS still owes them (``payable:answerer:<id>``), as far as it goes — never
     making it negative, so the answerer never owes UPSS money;
  3. the commission part reverses ``commission``, and what the answerer's unpaid balance cannot
     cover is the organizer's loss (``losses``).
  It applies to refunds made at Stripe and to lost disputes alike; a won dispute gives the
  money (and Stripe's dispute fee) back to ``stripe_balance``.
* **Disputes** move money only through their balance transactions (the withdrawal when the
  card network takes the money, the reinstatement when the dispute is won): withdrawn money
  waits in ``disputed_funds``, Stripe's dispute fee goes to ``stripe_fees``; when the dispute
  is lost, ``loss_entries`` decides who bears ``disputed_funds``. Inquiries withdraw nothing.
* **Fees** are read from each charge's balance transaction (``charge.updated`` once Stripe has
  made it; with asynchronous capture it is not there at ``payment_intent.succeeded``) and
  posted ``stripe_fees`` ← ``stripe_balance``: the organizer's cost, out of commission.
* **Transit**: a Stripe payout to the organizer's bank moves ``stripe_balance`` →
  ``payouts_in_transit`` when made and → ``bank`` when paid (back to ``stripe_balance`` if it
  fails or is canceled). So the ledger's ``stripe_balance`` equals Stripe's available plus
  pending balance.

Like every service, these functions flush and never commit.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import ledger, money, notifications, questions, settings
from .models import (
    LedgerTransaction,
    Payout,
    Question,
    QuestionEvent,
    StripeDispute,
    Tip,
    User,
    utcnow,
)
from .payout_failures import record_failure
from .stripe_gateway import (
    BalanceMove,
    Dispute,
    Refund,
    WebhookEvent,
    gateway,
    read_charge,
    read_payout,
    read_refund,
    read_transfer,
)

log = logging.getLogger(__name__)

#: Question states in which the asker's money still sits in escrow.
IN_ESCROW = frozenset({"queued", "offered", "claimed", "answered", "clarifying", "disputed"})
#: Dispute states after which nothing changes any more.
CLOSED_DISPUTE = frozenset({"won", "lost", "warning_closed"})


class NotYetApplicable(Exception):
    """An event UPSS uses but cannot apply yet (e.g. its payment is not in the ledger yet)."""


def _paid_for(session: Session, payment_intent_id: str) -> Question | Tip | None:
    """The question or tip ``payment_intent_id`` paid for, locked; None if not ours. Raises
    ``NotYetApplicable`` while its payment is not in the ledger."""
    if not payment_intent_id:
        return None
    target = session.scalar(select(Question).where(
        Question.payment_intent_id == payment_intent_id).with_for_update())
    if target is None:
        target = session.scalar(select(Tip).where(
            Tip.payment_intent_id == payment_intent_id).with_for_update())
    if target is None:
        return None
    if ledger.posted(session, f"payment:{payment_intent_id}") is None:
        raise NotYetApplicable(f"payment {payment_intent_id} is not in the ledger yet")
    return target


def _question_id(target: Question | Tip) -> int:
    return target.id if isinstance(target, Question) else target.question_id


def loss_entries(session: Session, target: Question | Tip, amount: int) -> list[tuple[str, int]]:
    """Who bears ``amount`` of a payment given back (a refund) or taken back (a lost dispute):
    the debits, by the rule of the module docstring. They sum to ``amount``."""
    debits: dict[str, int] = {}

    def debit(account: str, cents: int) -> None:
        if cents:
            debits[account] = debits.get(account, 0) + cents

    remaining = amount
    if isinstance(target, Question):
        held = -ledger.balance(session, ledger.escrow_account(target.id))
        from_escrow = min(remaining, max(held, 0))
        debit(ledger.escrow_account(target.id), from_escrow)
        remaining -= from_escrow
        settled = ledger.posted(session, f"settle:question:{target.id}") is not None
        share, commission = (money.split(remaining, target.commission_bps or 0) if settled
                             else (remaining, 0))
        answerer_id = target.answerer_id if settled else None
    else:
        share, commission, answerer_id = remaining, 0, target.answerer_id
    debit(ledger.COMMISSION, commission)
    if answerer_id is not None:
        owed = -ledger.balance(session, ledger.payable_account(answerer_id))
        back = min(share, max(owed, 0))
        debit(ledger.payable_account(answerer_id), back)
        share -= back
    debit(ledger.LOSSES, share)
    return list(debits.items())


# --- refunds ---------------------------------------------------------------------------------

def sync_refunds(session: Session, payment_intent_id: str) -> str:
    """Apply the current state of every refund Stripe holds for a payment: post the ones that
    succeeded (or are pending) once, reverse a posted one that failed."""
    target = _paid_for(session, payment_intent_id)
    if target is None:
        return "ignored: not a payment of UPSS"
    done = [_apply_refund(session, target, refund)
            for refund in gateway().find_refunds(payment_intent_id)]
    applied = [d for d in done if d]
    return f"applied: {', '.join(applied)}" if applied else "ignored: refunds already posted"


def _apply_refund(session: Session, target: Question | Tip, refund: Refund) -> str:
    key = f"refund:{refund.id}"
    posted = ledger.posted(session, key)
    if refund.status in ("failed", "canceled"):
        if posted is None or ledger.posted(session, f"{key}:failed") is not None:
            return ""
        ledger.reverse(session, posted, f"{key}:failed", f"Refund {refund.id} failed at Stripe")
        if isinstance(target, Question):
            target.refunded_cents -= refund.amount
            if target.stripe_refund_id == refund.id:
                target.refund_status = "failed"
                target.refund_failure = "the refund failed at Stripe"
        return f"refund {refund.id} failed"
    if posted is not None or refund.status not in ("succeeded", "pending", "requires_action"):
        return ""
    if isinstance(target, Question):
        if target.status == "refunded" or (target.status in IN_ESCROW
                                           and refund.amount == target.price_cents):
            if target.status != "refunded":
                questions.refund_at_stripe(session, target, utcnow())
            post_refund(session, target, refund)
            return f"refund {refund.id} of question {target.id}"
        if target.stripe_refund_id is None:
            target.stripe_refund_id = refund.id
        target.refunded_cents += refund.amount
    question = target if isinstance(target, Question) else session.get(Question,
                                                                        target.question_id)
    _tell_refund(session, question, refund, "refund_at_stripe")
    ledger.post(session, key, f"Refund {refund.id} made at Stripe (question "
                f"{_question_id(target)})",
                loss_entries(session, target, refund.amount)
                + [(ledger.STRIPE_BALANCE, -refund.amount)], refund.currency)
    return f"refund {refund.id} after settlement"


def post_refund(session: Session, question: Question, refund: Refund) -> None:
    """A refunded question's refund, held by Stripe: posted once, keyed by the refund's id
    (the same whether UPSS asked for it or it was made at Stripe)."""
    question.refund_status = "sent"
    question.refund_failure = None
    question.stripe_refund_id = refund.id
    if ledger.posted(session, f"refund:{refund.id}") is None:
        question.refunded_cents += refund.amount
        reason = session.scalar(select(QuestionEvent.action).where(
            QuestionEvent.question_id == question.id, QuestionEvent.to_status == "refunded")
            .order_by(QuestionEvent.id.desc()).limit(1))
        _tell_refund(session, question, refund, reason or "refund_at_stripe")
    ledger.post(session, f"refund:{refund.id}", f"Refund of question {question.id}",
                [(ledger.escrow_account(question.id), refund.amount),
                 (ledger.STRIPE_BALANCE, -refund.amount)], refund.currency)
    session.flush()


def _tell_refund(session: Session, question: Question, refund: Refund, reason: str) -> None:
    """Tell the asker about a refund, when it is first posted (its ``refund:<id>`` key makes
    that once per refund, however often Stripe reports it)."""
    notifications.enqueue(session, question.asker, "refund_made", {
        "question_id": question.id, "title": question.title, "reason": reason,
        "amount_cents": refund.amount, "currency": refund.currency})


def _refund_event(session: Session, event: WebhookEvent) -> str:
    if event.object_type == "charge":
        payment_intent = read_charge(event.data).payment_intent
    else:
        payment_intent = read_refund(event.data).payment_intent
    return sync_refunds(session, payment_intent)


# --- disputes --------------------------------------------------------------------------------

def _dispute_event(session: Session, event: WebhookEvent) -> str:
    return sync_dispute(session, event.object_id)


def sync_dispute(session: Session, dispute_id: str) -> str:
    """Apply a dispute as Stripe holds it now: its status and evidence deadline, the money its
    balance transactions moved, and, once lost, who bears it."""
    dispute = gateway().retrieve_dispute(dispute_id)
    payment_intent = dispute.payment_intent or gateway().retrieve_charge(
        dispute.charge).payment_intent
    target = _paid_for(session, payment_intent)
    if target is None:
        return "ignored: not a payment of UPSS"
    _record_dispute(session, dispute, _question_id(target), payment_intent)
    moved = [_post_dispute_move(session, dispute, move) for move in dispute.moves]
    withdrawn = -sum(m.amount for m in dispute.moves if m.amount < 0)
    outcome = f"dispute {dispute.status}"
    if dispute.status == "lost" and withdrawn and ledger.posted(
            session, f"dispute:{dispute.id}:lost") is None:
        ledger.post(session, f"dispute:{dispute.id}:lost",
                    f"Dispute {dispute.id} lost (question {_question_id(target)})",
                    loss_entries(session, target, withdrawn)
                    + [(ledger.DISPUTED_FUNDS, -withdrawn)], dispute.currency)
        outcome += ", loss booked"
    if any(moved):
        outcome += ", money moved"
    return "applied: " + outcome


def _record_dispute(session: Session, dispute: Dispute, question_id: int,
                    payment_intent: str) -> None:
    row = session.get(StripeDispute, dispute.id)
    opened = row is None
    if opened:
        row = StripeDispute(id=dispute.id, opened_at=utcnow())
        session.add(row)
    row.question_id, row.payment_intent_id = question_id, payment_intent
    row.amount_cents, row.currency = dispute.amount, dispute.currency
    row.status, row.reason, row.updated_at = dispute.status, dispute.reason, utcnow()
    row.evidence_due_at = (datetime.fromtimestamp(dispute.due_by, UTC) if dispute.due_by
                           else None)
    if opened:
        data = {"dispute_id": dispute.id, "question_id": question_id,
                "amount_cents": dispute.amount, "currency": dispute.currency,
                "timezone": settings.current(session).timezone,
                "evidence_due_at": (row.evidence_due_at.isoformat() if row.evidence_due_at
                                    else None)}
        for organizer in session.scalars(select(User).where(User.is_organizer)):
            notifications.enqueue(session, organizer, "card_disputed", data)
    session.flush()


def _post_dispute_move(session: Session, dispute: Dispute, move: BalanceMove) -> bool:
    """A dispute's withdrawal (or reinstatement) of money and Stripe's dispute fee."""
    key = f"dispute-move:{move.id}"
    if ledger.posted(session, key) is not None or not move.amount:
        return False
    entries = [(ledger.DISPUTED_FUNDS, -move.amount), (ledger.STRIPE_FEES, move.fee),
               (ledger.STRIPE_BALANCE, move.net)]
    ledger.post(session, key, f"Dispute {dispute.id}: "
                f"{'money withdrawn' if move.amount < 0 else 'money reinstated'}",
                [(account, cents) for account, cents in entries if cents], move.currency)
    return True


# --- fees ------------------------------------------------------------------------------------

def _charge_updated(session: Session, event: WebhookEvent) -> str:
    charge = read_charge(event.data)
    if not charge.balance_transaction:
        return "ignored: no balance transaction yet"
    if _paid_for(session, charge.payment_intent) is None:
        return "ignored: not a payment of UPSS"
    return post_fee(session, gateway().retrieve_balance_move(charge.balance_transaction))


def post_fee(session: Session, move: BalanceMove) -> str:
    """Stripe's fee on a charge, once: the organizer's cost."""
    key = f"fee:{move.id}"
    if not move.fee or ledger.posted(session, key) is not None:
        return "ignored: fee already posted" if move.fee else "ignored: no fee"
    ledger.post(session, key, f"Stripe fee on {move.source}",
                [(ledger.STRIPE_FEES, move.fee), (ledger.STRIPE_BALANCE, -move.fee)], move.currency)
    return "applied: fee posted"


# --- transfers reversed at Stripe ------------------------------------------------------------

def _transfer_reversed(session: Session, event: WebhookEvent) -> str:
    transfer = read_transfer(event.data)
    payout = session.scalar(select(Payout).where(
        Payout.idempotency_key == transfer.transfer_group).with_for_update())
    if payout is None:
        return "ignored: not a payout of UPSS"
    prefix = f"payout:{payout.id}:reversed-to:"
    before = max([int(key.removeprefix(prefix)) for key in session.scalars(
        select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.idempotency_key.like(prefix + "%")))] or [0])
    delta = transfer.amount_reversed - before
    if delta <= 0:
        return "ignored: reversal already posted"
    ledger.post(session, f"{prefix}{transfer.amount_reversed}",
                f"Payout {payout.id}: transfer {transfer.id} reversed at Stripe",
                [(ledger.STRIPE_BALANCE, delta),
                 (ledger.payable_account(payout.answerer_id), -delta)],
                transfer.currency)
    if transfer.amount_reversed >= payout.amount_cents:
        if payout.status != "failed":
            notifications.enqueue(session, payout.answerer, "payout_failed",
                                  notifications.about_payout(payout, utcnow(),
                                                             "reversed_at_stripe"))
        payout.status = "failed"
        record_failure(payout, "reversed_at_stripe", transfer.id)
    session.flush()
    return "applied: payout reversed"


# --- the organizer's Stripe payouts ----------------------------------------------------------

def _payout_event(session: Session, event: WebhookEvent) -> str:
    payout = gateway().retrieve_payout(event.object_id) if event.object_id else read_payout(
        event.data)
    key = f"stripe-payout:{payout.id}"
    amount, currency = payout.amount, payout.currency
    done = []

    def once(suffix: str, entries: list[tuple[str, int]], what: str) -> None:
        if ledger.posted(session, key + suffix) is None:
            ledger.post(session, key + suffix, f"Stripe payout {payout.id} {what}", entries,
                        currency)
            done.append(what)

    once("", [(ledger.PAYOUTS_IN_TRANSIT, amount), (ledger.STRIPE_BALANCE, -amount)], "made")
    if payout.status == "paid":
        once(":paid", [(ledger.BANK, amount), (ledger.PAYOUTS_IN_TRANSIT, -amount)], "paid")
    elif payout.status in ("failed", "canceled"):
        source = ledger.BANK if ledger.posted(session, key + ":paid") else ledger.PAYOUTS_IN_TRANSIT
        once(":returned", [(ledger.STRIPE_BALANCE, amount), (source, -amount)], payout.status)
    return "applied: payout " + ", ".join(done) if done else "ignored: payout already posted"


#: Event type -> what applies it (the payment events are in ``payments``).
HANDLERS = {
    "charge.refunded": _refund_event,
    "refund.created": _refund_event,
    "refund.updated": _refund_event,
    "refund.failed": _refund_event,
    "charge.dispute.created": _dispute_event,
    "charge.dispute.updated": _dispute_event,
    "charge.dispute.closed": _dispute_event,
    "charge.dispute.funds_withdrawn": _dispute_event,
    "charge.dispute.funds_reinstated": _dispute_event,
    "charge.updated": _charge_updated,
    "transfer.reversed": _transfer_reversed,
    "payout.created": _payout_event,
    "payout.paid": _payout_event,
    "payout.failed": _payout_event,
    "payout.canceled": _payout_event,
}
