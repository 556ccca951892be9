"""Payouts and refunds paid exactly once against the local Stripe's real transfers and refunds,
whatever happens to Stripe's answer: lost, a 5xx after success, a 409, or the process killed
between the call and the commit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import func, select

from tests.conftest import detached, disable_ledger_guards, enable_ledger_guards, stripe_client
from tests.flows.test_payouts import DAY, balance, earn, entries, later
from upss import payments, payouts, reconciliation
from upss.extensions import db
from upss.installation import idempotency_key
from upss.models import AnswererProfile, LedgerTransaction, Payout, Question

#: Stripe calls here are not retried by the library, so each fault reaches the service.
pytestmark = pytest.mark.usefixtures("no_library_retries")


@pytest.fixture
def app_config(app_config):
    return {**app_config, "UPSS_STRIPE_NETWORK_RETRIES": 0, "UPSS_STRIPE_TIMEOUT_SECONDS": 2.0}


@pytest.fixture
def no_library_retries(app):
    assert app.extensions["upss_stripe"].network_retries == 0


def connect_answerer(app, world, localstripe_url, state: str = "enabled") -> int:
    """An answerer with a connected account at the local Stripe, onboarded (or not)."""
    answerer = world.answerer(payout_method="connect")
    with app.test_request_context():
        account = app.extensions["upss_stripe"].create_connect_account(
            email=f"answerer{answerer}@example.org", country="NO", metadata={},
            idempotency_key=idempotency_key(db.session, "test", "account", answerer))
        requests.post(f"{localstripe_url}/_upss/connect/accounts/{account.id}",
                      json={"state": state}, timeout=5).raise_for_status()
        profile = db.session.get(AnswererProfile, answerer)
        profile.stripe_account_id = account.id
        profile.connect_payouts_enabled = True  # as UPSS last heard, whatever Stripe says now
        db.session.commit()
    return answerer


def batch(app, now) -> Payout | None:
    """A payout batch as the job runs it; the one payout it made (detached), or None."""
    with app.test_request_context():
        made = payouts.run_batch(db.session, now)
        db.session.commit()
        if made is None:
            return None
        payouts.send_transfers(db.session, now, made.id)
        [payout] = db.session.scalars(select(Payout).where(Payout.batch_id == made.id)).all()
        db.session.expunge(payout)
        return payout


def resolve(app, now) -> str | None:
    with app.test_request_context():
        return payouts.resolve_unfinished(db.session, now)


def transfers_for(app, key: str) -> list:
    return stripe_client(app).v1.transfers.list(params={"transfer_group": key}).data


def payout_postings(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.idempotency_key.like("payout:%"))))


@pytest.mark.parametrize("mode", ["drop_after", "error_500_after", "error_409"])
def test_a_transfer_with_no_clear_answer_is_paid_exactly_once(app, world, localstripe_url,
                                                              stripe_faults, mode):
    """Stripe made the transfer and the answer was lost (or was a 5xx), or Stripe answered 409
    without making it: the payout is ``unknown`` (never reversed), later batches pay nothing
    more, and the look-up ends it ``sent`` with exactly one transfer at Stripe."""
    answerer = connect_answerer(app, world, localstripe_url)
    earn(app, world, answerer, 2500)
    now = later()
    stripe_faults(method="POST", path="/v1/transfers", mode=mode)

    first = batch(app, now)
    assert first.status == "unknown" and first.stripe_transfer_id is None
    assert balance(app, f"payable:answerer:{answerer}") == 0  # reserved, not reversed
    assert batch(app, now + timedelta(days=1)) is None
    assert batch(app, now + timedelta(days=8)) is None

    outcome = resolve(app, now + timedelta(minutes=5))
    assert outcome == ("1 resent: sent" if mode == "error_409" else "1 found: sent")
    done = detached(app, Payout, first.id)
    made = transfers_for(app, first.idempotency_key)
    assert len(made) == 1
    assert (done.status, done.stripe_transfer_id) == ("sent", made[0].id)
    assert (made[0].amount, made[0].destination) == (2250, _account(app, answerer))
    assert payout_postings(app) == [f"payout:{first.id}"]
    assert resolve(app, now + timedelta(minutes=10)) is None
    assert len(transfers_for(app, first.idempotency_key)) == 1


class ProcessKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, nothing catches it."""


def test_a_process_killed_between_the_transfer_and_its_commit(app, world, localstripe_url,
                                                              monkeypatch):
    """The transfer is made and the process dies before committing the outcome: the payout
    is left ``sending``; once stale it is looked up, found, and ends ``sent``, once."""
    answerer = connect_answerer(app, world, localstripe_url)
    earn(app, world, answerer, 2500)
    now = later()
    gateway = app.extensions["upss_stripe"]
    real_create = gateway.create_transfer

    def create_then_die(**kwargs):
        real_create(**kwargs)
        raise ProcessKilled

    monkeypatch.setattr(gateway, "create_transfer", create_then_die)
    with pytest.raises(ProcessKilled):
        batch(app, now)
    monkeypatch.setattr(gateway, "create_transfer", real_create)
    with app.app_context():
        left = db.session.scalar(select(Payout))
        assert (left.status, left.attempts) == ("sending", 1)
        key, payout_id = left.idempotency_key, left.id
    assert len(transfers_for(app, key)) == 1

    assert resolve(app, now + timedelta(minutes=1)) is None  # may still be in flight
    assert resolve(app, now + timedelta(minutes=3)) == "1 found: sent"
    assert detached(app, Payout, payout_id).status == "sent"
    assert len(transfers_for(app, key)) == 1
    assert batch(app, now + timedelta(days=8)) is None


def test_a_process_killed_before_sending_leaves_a_payout_the_job_sends_once(
        app, world, localstripe_url):
    """The batch was committed and the process died before its transfers were sent: the
    look-up job finds nothing at Stripe and sends it, under its key, once."""
    answerer = connect_answerer(app, world, localstripe_url)
    earn(app, world, answerer, 2500)
    now = later()
    with app.test_request_context():
        payouts.run_batch(db.session, now)
        db.session.commit()
        left = db.session.scalar(select(Payout))
        assert (left.status, left.attempts) == ("sending", 0)
        key, payout_id = left.idempotency_key, left.id
    assert resolve(app, now + timedelta(minutes=1)) is None
    assert resolve(app, now + timedelta(minutes=3)) == "1 resent: sent"
    assert detached(app, Payout, payout_id).status == "sent"
    assert len(transfers_for(app, key)) == 1
    assert resolve(app, now + timedelta(minutes=6)) is None


def test_a_clear_refusal_is_reversed_once_and_not_retried_every_batch(app, world,
                                                                      localstripe_url):
    """Stripe refuses: the account cannot take transfers any more. The payout fails, the
    ledger reverses it once, the look-up job leaves it alone, and the next weekly batch does
    not try again (the answerer is paused for a week)."""
    answerer = connect_answerer(app, world, localstripe_url, state="details_needed")
    earn(app, world, answerer, 2500)
    now = later()
    failed = batch(app, now)
    assert (failed.status, failed.failure_code) == ("failed", "transfer_refused")
    assert payout_postings(app) == [f"payout:{failed.id}", f"payout:{failed.id}:reversal"]
    assert entries(app, f"payout:{failed.id}:reversal") == {
        f"payable:answerer:{answerer}": -2250, "stripe_balance": 2250}
    assert resolve(app, now + timedelta(minutes=5)) is None
    assert batch(app, now + timedelta(days=6)) is None
    assert len(payout_postings(app)) == 2
    assert transfers_for(app, failed.idempotency_key) == []


@pytest.mark.ledger_tampered
def test_a_changed_payable_leg_stops_the_batch_before_anything_is_sent(app, world,
                                                                       localstripe_url):
    """Someone raised an answerer's earnings in the database: the batch checks the chain and
    balances around the accounts it pays from, refuses, and sends nothing."""
    answerer = connect_answerer(app, world, localstripe_url)
    question = earn(app, world, answerer, 2500)
    with app.app_context():
        session = db.session
        settle = session.scalar(select(LedgerTransaction).where(
            LedgerTransaction.idempotency_key == f"settle:question:{question}"))
        disable_ledger_guards(session)
        session.execute(sa.text("UPDATE ledger_entry SET amount_cents = -9000 "
                                "WHERE transaction_id = :t AND amount_cents = -2250"),
                        {"t": settle.id})
        session.execute(sa.text("UPDATE ledger_account SET balance_cents = -9000 "
                                "WHERE name = :n"), {"n": f"payable:answerer:{answerer}"})
        session.commit()
        enable_ledger_guards(session)
    with app.test_request_context(), pytest.raises(payouts.LedgerCheckFailed) as refused:
        payouts.run_batch(db.session, later())
    assert f"settle:question:{question}" in str(refused.value)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payout)) == 0
    assert stripe_client(app).v1.transfers.list(
        params={"destination": _account(app, answerer)}).data == []


def _account(app, answerer: int) -> str:
    with app.app_context():
        return db.session.get(AnswererProfile, answerer).stripe_account_id


# --- refunds ---------------------------------------------------------------------------------

def refund_postings(app, question_id: int) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.description == f"Refund of question {question_id}")))


@pytest.mark.parametrize("mode", ["drop_after", "error_409"])
def test_a_refund_whose_answer_is_lost_is_posted_once(app, world, stripe_faults, mode):
    """The asker withdraws; Stripe refunds but the answer is lost (or answers 409 without
    refunding): nothing is posted until the look-up, which posts it once, keyed by the
    refund's id."""
    asker = world.user("asker")
    q = world.paid_question(paid_at=DAY, real_stripe=True, asker_id=asker)
    stripe_faults(method="POST", path="/v1/refunds", mode=mode)
    assert world.act(payments.cancel, q, asker, DAY) == "unknown"
    assert detached(app, Question, q).status == "refunded"
    assert refund_postings(app, q) == []
    assert balance(app, f"escrow:question:{q}") == -1000

    with app.test_request_context():
        outcome = payments.resolve_unfinished_refunds(db.session, DAY + timedelta(minutes=5))
    assert outcome == ("1 resent: sent" if mode == "error_409" else "1 found")
    done = detached(app, Question, q)
    at_stripe = stripe_client(app).v1.refunds.list(
        params={"payment_intent": done.payment_intent_id}).data
    assert [r.id for r in at_stripe] == [done.stripe_refund_id]
    assert refund_postings(app, q) == [f"refund:{done.stripe_refund_id}"]
    assert balance(app, f"escrow:question:{q}") == 0
    with app.test_request_context():
        assert payments.resolve_unfinished_refunds(db.session, DAY + timedelta(hours=1)) is None
    assert len(refund_postings(app, q)) == 1


# --- reconciliation of payouts ---------------------------------------------------------------

def test_reconciliation_matches_transfers_and_sepa_files_amount_by_amount(
        app, world, localstripe_url):
    """A transfer at Stripe that no payout explains, and a SEPA file that pays another amount
    than its payout, are reported; the matching ones are not."""
    from tests.flows.test_payouts import IBAN_FI

    connected = connect_answerer(app, world, localstripe_url)
    by_bank = world.answerer(iban=IBAN_FI)
    earn(app, world, connected, 2500)
    earn(app, world, by_bank, 3000)
    now = later()
    account = _account(app, connected)  # read first: SQLite allows one writing session
    with app.test_request_context():
        made = payouts.run_batch(db.session, now)
        db.session.commit()
        payouts.send_transfers(db.session, now, made.id)
        sent = {p.method: p for p in db.session.scalars(select(Payout))}
        before = reconciliation.reconcile_full_history(db.session)
        assert before.sepa_differences == []
        assert not [d for d in before.transfer_differences if d.startswith("payout ")]
        stranger = app.extensions["upss_stripe"].create_transfer(
            amount_cents=777, currency="EUR", destination=account,
            transfer_group="not-a-payout", metadata={},
            idempotency_key=f"test-stranger-{uuid.uuid4()}")
        made.sepa_xml = made.sepa_xml.replace(">27.00<", ">72.00<")
        db.session.commit()
        result = reconciliation.reconcile_full_history(db.session)
    assert set(result.transfer_differences) - set(before.transfer_differences) == {
        f"transfer {stranger.id} (7.77 EUR) at Stripe belongs to no payout"}
    assert not any(d.startswith(f"payout {sent['connect'].id} ")
                   for d in result.transfer_differences)
    assert result.sepa_differences == [
        f"payout {sent['sepa'].id} (27.00 EUR) is 72.00 EUR in the file of batch {made.id}"]
    assert not result.ok


def test_a_refund_committed_but_never_sent_is_sent_by_the_job_once(app, world):
    """The process died between the refund's phase 1 and its call to Stripe: the job finds no
    refund at Stripe once the request is stale, and sends it under its key, once."""
    from upss import questions as question_service

    asker = world.user("asker")
    q = world.paid_question(paid_at=DAY, real_stripe=True, asker_id=asker)
    world.act(question_service.refund, q, None, "cancel", None, DAY)
    assert detached(app, Question, q).refund_status == "requested"
    with app.test_request_context():
        assert payments.resolve_unfinished_refunds(db.session, DAY + timedelta(minutes=1)) is None
        assert payments.resolve_unfinished_refunds(
            db.session, DAY + timedelta(minutes=3)) == "1 resent: sent"
    done = detached(app, Question, q)
    assert refund_postings(app, q) == [f"refund:{done.stripe_refund_id}"]
    assert len(stripe_client(app).v1.refunds.list(
        params={"payment_intent": done.payment_intent_id}).data) == 1
