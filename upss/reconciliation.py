"""Reconciliation with Stripe: the ledger against what Stripe and the bank files say, two ways.

**The incremental job** (``reconcile_with_stripe``, job ``reconcile``, or "Check now" on the
organizer's page): every balance transaction Stripe made since the last run is matched with
the ledger, amount by amount, and the two balances compared. Each run reads only what is new
(``created`` after the previous run's ``checked_through``, at most ``MAX_MOVES`` a run), so its
cost does not grow with Stripe's history; the organizer's page shows the last run. For each
kind of balance transaction:

* ``charge``/``payment``: the ledger has ``payment:<PaymentIntent>`` for the same amount, and
  Stripe's fee on it as ``fee:<balance transaction>`` (posted here if its ``charge.updated``
  never came: the "later look-up" of ``stripe_money``);
* ``refund`` / ``refund_failure``: ``refund:<refund>`` (and ``…:failed``);
* ``adjustment`` (disputes): ``dispute-move:<balance transaction>``;
* ``transfer``: the Connect payout with that transfer, for the same amount;
* ``payout`` / ``payout_failure`` / ``payout_cancel``: ``stripe-payout:<payout>`` (and
  ``…:returned``).

The job flushes and never commits (the scheduler's ``run_job`` does).

**The whole-history check** (``reconcile_full_history``, ``flask upss reconcile-full``): slow
on a long history, read-only, on demand. It compares Stripe with the ledger both ways:
succeeded PaymentIntents without a ``payment:<id>`` posting, ``payment:<id>`` postings without
a succeeded PaymentIntent, refunds of a question's payment without their ``refund:<refund id>``
posting, transfers and Connect payouts that do not match one to one by amount (by
``transfer_group``), and SEPA payouts missing from their batch's file or carried with another
amount (``upss.sepa.file_amounts``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, ledger, sepa, stripe_money
from .installation import installation_id
from .models import (
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutBatch,
    Question,
    ReconciliationRun,
    User,
)
from .stripe_gateway import BalanceMove, GatewayError, gateway

#: At most this many balance transactions are checked in one run; the rest wait for the next.
MAX_MOVES = 1000
#: The transfer_group of a payout made by some installation of UPSS (see ``upss.installation``).
_OTHER_INSTALLATION = re.compile(r"upss-[0-9a-f]{16}:payout:\d+$")


@dataclass(frozen=True)
class Difference:
    what: str
    stripe_cents: int
    ledger_cents: int
    currency: str

    @property
    def cents(self) -> int:
        """How much more Stripe shows than the ledger (negative: less)."""
        return self.stripe_cents - self.ledger_cents


def _stripe_leg(session: Session, key: str) -> int | None:
    """What the ledger transaction ``key`` moved on ``stripe_balance`` (None: not posted)."""
    return session.scalar(
        select(LedgerEntry.amount_cents)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.idempotency_key == key,
               LedgerEntry.account.has(name=ledger.STRIPE_BALANCE)))


def _check_posting(session: Session, move: BalanceMove, key: str,
                   what: str) -> list[Difference]:
    posted = _stripe_leg(session, key)
    if posted == move.amount:
        return []
    return [Difference(f"{what} ({move.type} {move.id})", move.amount, posted or 0,
                       move.currency)]


def _check(session: Session, move: BalanceMove) -> list[Difference]:
    if move.type in ("charge", "payment"):
        charge = gateway().retrieve_charge(move.source)
        found = _check_posting(session, move, f"payment:{charge.payment_intent}",
                               f"payment {charge.payment_intent}")
        if not found and move.fee:
            stripe_money.post_fee(session, move)
        return found
    if move.type == "refund":
        return _check_posting(session, move, f"refund:{move.source}", f"refund {move.source}")
    if move.type == "refund_failure":
        return _check_posting(session, move, f"refund:{move.source}:failed",
                              f"failed refund {move.source}")
    if move.type == "adjustment":
        # A dispute's move nets its fee into the same posting's stripe_balance leg.
        posted = _stripe_leg(session, f"dispute-move:{move.id}")
        return [] if posted == move.net else [Difference(
            f"dispute money ({move.reporting_category} {move.id})", move.net, posted or 0,
            move.currency)]
    if move.type == "transfer":
        payout = session.scalar(select(Payout).where(Payout.stripe_transfer_id == move.source))
        paid = -payout.amount_cents if payout is not None else 0
        return [] if paid == move.amount else [Difference(
            f"transfer {move.source} to an answerer", move.amount, paid, move.currency)]
    if move.type == "payout":
        return _check_posting(session, move, f"stripe-payout:{move.source}",
                              f"Stripe payout {move.source}")
    if move.type in ("payout_failure", "payout_cancel"):
        return _check_posting(session, move, f"stripe-payout:{move.source}:returned",
                              f"returned Stripe payout {move.source}")
    return [Difference(f"{move.type} {move.id}: a kind of money UPSS does not book",
                       move.amount, 0, move.currency)]


def last_run(session: Session) -> ReconciliationRun | None:
    """The newest finished run (what the organizer's page shows)."""
    return session.scalar(select(ReconciliationRun).where(
        ReconciliationRun.finished_at.is_not(None)).order_by(ReconciliationRun.id.desc()))


def differences(run: ReconciliationRun) -> list[Difference]:
    return [Difference(**item) for item in json.loads(run.differences)]


def reconcile_with_stripe(session: Session, now: datetime, max_moves: int = MAX_MOVES,
                          actor: User | None = None) -> str:
    """Job: check the balance transactions Stripe made since the last run (at most
    ``max_moves``; the next run goes on from there); store the run. The two balances are
    compared only when the run has caught up with Stripe. Run by an organizer (``actor``), it
    is in the audit log: it may post fees to the ledger."""
    previous = session.scalar(select(ReconciliationRun).where(
        ReconciliationRun.error.is_(None), ReconciliationRun.finished_at.is_not(None))
        .order_by(ReconciliationRun.id.desc()))
    since = previous.checked_through if previous else 0
    run = ReconciliationRun(started_at=now, checked_through=since)
    session.add(run)
    if actor is not None:
        session.flush()
        audit.record(session, actor, "reconcile with Stripe", f"reconciliation:{run.id}",
                     {"checked_through": since}, {"max_moves": max_moves})
    found: list[Difference] = []
    try:
        # From the last second checked again: moves made in that second after the last run.
        every = gateway().balance_moves_since(max(since - 1, 0))
        moves, caught_up = every[:max_moves], len(every) <= max_moves
        for move in moves:
            found.extend(_check(session, move))
        stripe_balance = gateway().balance_cents()
    except GatewayError as exc:
        run.error = f"Stripe did not answer: {exc}"[:500]
        run.finished_at = now
        session.flush()
        return run.error
    ledger_balance = {currency: ledger.balance(session, ledger.STRIPE_BALANCE)
                      for currency in stripe_balance}
    for currency, cents in sorted(stripe_balance.items()):
        if caught_up and cents != ledger_balance[currency]:
            found.append(Difference("Stripe's balance (available + pending) and the ledger's "
                                     "stripe_balance", cents, ledger_balance[currency],
                                     currency))
    run.checked = len(moves)
    run.checked_through = max([since] + [m.created for m in moves])
    run.differences = json.dumps([d.__dict__ for d in found])
    run.stripe_balance = json.dumps(stripe_balance)
    run.ledger_balance = json.dumps(ledger_balance)
    run.finished_at = now
    session.flush()
    return f"{len(moves)} checked, {len(found)} differences"


# --- the whole-history check -----------------------------------------------------------------

@dataclass
class FullReconciliation:
    """What ``reconcile_full_history`` found: each list holds one line per difference."""

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
        """Nothing to report: Stripe, the bank files and the ledger agree."""
        return not (self.missing_in_ledger or self.missing_at_stripe
                    or self.refunds_missing_in_ledger or self.transfer_differences
                    or self.sepa_differences)


def _money(cents: int, currency: str) -> str:
    return f"{Decimal(cents) / 100:.2f} {currency}"


def _reconcile_payments(session: Session, result: FullReconciliation) -> None:
    """Succeeded PaymentIntents and ``payment:<id>`` postings match both ways; every refund of
    a question's payment at Stripe is posted."""
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


def _reconcile_transfers(session: Session, result: FullReconciliation) -> None:
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


def _reconcile_sepa(session: Session, result: FullReconciliation) -> None:
    """Every SEPA payout in a file is in that file with its amount (end-to-end id
    ``UPSS-PAYOUT-<id>``), and the file holds nothing else."""
    for batch in session.scalars(select(PayoutBatch).where(PayoutBatch.sepa_xml.is_not(None))):
        in_file = sepa.file_amounts(batch.sepa_xml)
        for payout in session.scalars(select(Payout).where(Payout.batch_id == batch.id,
                                                           Payout.method == "sepa")):
            amount = in_file.pop(f"{sepa.END_TO_END_PREFIX}{payout.id}", None)
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


def reconcile_full_history(session: Session) -> FullReconciliation:
    """Match Stripe's whole history of PaymentIntents, refunds and transfers with the ledger,
    both ways, and every SEPA payout with its batch's file. Reads only; slow on a long
    history (the ``reconcile`` job checks only what is new)."""
    result = FullReconciliation()
    _reconcile_payments(session, result)
    _reconcile_transfers(session, result)
    _reconcile_sepa(session, result)
    return result
