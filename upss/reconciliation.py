"""Reconciliation with Stripe as an incremental job: every balance transaction Stripe made
since the last run is matched with the ledger, amount by amount, and the two balances compared.

Each run reads only what is new (``created`` after the previous run's ``checked_through``,
at most ``MAX_MOVES`` a run), so its cost does not grow with Stripe's history; the organizer's
page shows the last run. For each kind of balance transaction:

* ``charge``/``payment``: the ledger has ``payment:<PaymentIntent>`` for the same amount, and
  Stripe's fee on it as ``fee:<balance transaction>`` (posted here if its ``charge.updated``
  never came: the "later look-up" of ``stripe_money``);
* ``refund`` / ``refund_failure``: ``refund:<refund>`` (and ``…:failed``);
* ``adjustment`` (disputes): ``dispute-move:<balance transaction>``;
* ``transfer``: the Connect payout with that transfer, for the same amount;
* ``payout`` / ``payout_failure`` / ``payout_cancel``: ``stripe-payout:<payout>`` (and
  ``…:returned``).

The job flushes and never commits (the scheduler's ``run_job`` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, ledger, stripe_money
from .models import LedgerEntry, LedgerTransaction, Payout, ReconciliationRun, User
from .stripe_gateway import BalanceMove, GatewayError, gateway

#: At most this many balance transactions are checked in one run; the rest wait for the next.
MAX_MOVES = 1000


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
               LedgerEntry.account.has(name="stripe_balance")))


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
    ledger_balance = {currency: ledger.balance(session, "stripe_balance")
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
