"""Money moved at Stripe reaches the ledger: refunds, disputes, fees, transfer reversals and the
organizer's payouts, each produced by the local Stripe, delivered ten times in parallel and out
of order, with one ledger effect each; the ledger's stripe_balance then equals Stripe's."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe
from sqlalchemy import func, select

from tests.conftest import detached, devstripe_process, serving, stripe_client, wait_until
from tests.flows.test_payouts import DAY, IBAN_FI, earn, later
from upss import ledger, payouts, questions, reconciliation
from upss.extensions import db
from upss.models import LedgerTransaction, Payout, Question, StripeDispute, StripeEvent, User
from upss.stripe_gateway import gateway


@pytest.fixture
def localstripe_url():
    """A local Stripe of this test's own: its balance is this test's money only."""
    with devstripe_process() as url:
        yield url


@pytest.fixture
def server(app):
    """The app, served; the local Stripe is NOT told about it: this test delivers events."""
    with serving(app) as base:
        yield base


def control(app, path: str, body: dict | None = None) -> dict:
    response = requests.post(f"{app.config['UPSS_LOCALSTRIPE_URL']}{path}", json=body or {},
                             timeout=10)
    response.raise_for_status()
    return response.json()


def events(app, *types: str) -> list[dict]:
    """Every event the local Stripe made, of ``types``, oldest first (as Stripe made them)."""
    found, params = [], {"limit": 100}
    while True:
        page = requests.get(
            f"{app.config['UPSS_LOCALSTRIPE_URL']}/v1/events", params=params, timeout=10,
            headers={"Authorization": f"Bearer {app.config['UPSS_STRIPE_SECRET_KEY']}"}).json()
        found.extend(page["data"])
        if not page.get("has_more") or not page["data"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    return sorted((e for e in found if e["type"] in types), key=lambda e: (e["created"], e["id"]))


def wait_for(app, *types: str, count: int = 1) -> list[dict]:
    return wait_until(lambda: (lambda found: found if len(found) >= count else None)(
        events(app, *types)), timeout=10)


def deliver(app, base: str, batch: list[dict], copies: int = 10) -> list[int]:
    """Each event of ``batch`` ``copies`` times, all at once, in a shuffled order, signed with
    the endpoint's secret as Stripe signs them; returns the HTTP statuses."""
    secret = app.config["UPSS_STRIPE_WEBHOOK_SECRET"]
    sends = [event for event in batch for _ in range(copies)]
    random.Random(12).shuffle(sends)

    def send(event: dict) -> int:
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(
            body, secret, timestamp=int(time.time()))
        return requests.post(f"{base}/stripe/webhook", data=body, timeout=30, headers={
            "Content-Type": "application/json", "Stripe-Signature": header}).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(send, sends))


def postings(app, pattern: str) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(LedgerTransaction.idempotency_key).where(
            LedgerTransaction.idempotency_key.like(pattern))))


def balance(app, account: str) -> int:
    with app.app_context():
        return ledger.balance(db.session, account)


def assert_stripe_balance_matches(app) -> None:
    """The ledger's stripe_balance is Stripe's available + pending, to the cent."""
    with app.test_request_context():
        at_stripe = gateway().balance_cents()
    assert balance(app, "stripe_balance") == at_stripe["EUR"]


def paid(app, world, price: int = 1250) -> tuple[int, str]:
    """A question paid at the local Stripe and applied (its fee comes by charge.updated)."""
    q = world.paid_question(paid_at=DAY, price_cents=price, real_stripe=True)
    return q, world.question(q).payment_intent_id


def test_a_refund_made_at_stripe_before_the_answer_refunds_the_question(app, world, server):
    """Refunded in Stripe's Dashboard while queued: the refund events and the fee, each ten
    times in parallel, post the refund and the fee once; the question shows it."""
    q, pi = paid(app, world)
    refund = stripe_client(app).v1.refunds.create(params={"payment_intent": pi})
    batch = wait_for(app, "refund.created", "charge.refunded", "refund.updated",
                     "charge.updated", count=4)
    assert set(deliver(app, server, batch)) == {200}
    assert postings(app, "refund:%") == [f"refund:{refund.id}"]
    assert len(postings(app, "fee:%")) == 1
    done = detached(app, Question, q)
    assert (done.status, done.stripe_refund_id, done.refunded_cents) == (
        "refunded", refund.id, 1250)
    assert balance(app, f"escrow:question:{q}") == 0
    assert balance(app, "stripe_fees") == 44  # 1.5 % of 12.50 (19) + 0.25
    assert_stripe_balance_matches(app)


def test_a_refund_before_its_payment_is_applied_on_redelivery(app, world, server):
    """Out of order: the refund's events come before the payment's. They are answered 409 and
    not stored, so Stripe sends them again; after the payment they apply, once."""
    asker = world.user("asker")
    with app.test_request_context():
        user = db.session.get(User, asker)
        made = questions.create_question(db.session, user, title="Q", body="Body",
                                         language="en", topic="other", price_cents=1250)
        intent = gateway().create_payment_intent(
            amount_cents=1250, currency="EUR", metadata={"question_id": made.id},
            idempotency_key=f"test-early-refund-{made.id}-{time.time()}")
        questions.start_payment(db.session, made, user, intent.id)
        db.session.commit()
        q = made.id
        gateway().confirm_with_test_card(intent.id, "succeeds", f"confirm-{intent.id}")
    refund = stripe_client(app).v1.refunds.create(params={"payment_intent": intent.id})
    refund_events = wait_for(app, "refund.created", "charge.refunded", count=2)
    assert set(deliver(app, server, refund_events, copies=3)) == {409}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0
    assert detached(app, Question, q).status == "awaiting_payment"

    assert set(deliver(app, server, wait_for(app, "payment_intent.succeeded"))) == {200}
    assert detached(app, Question, q).status == "queued"
    assert set(deliver(app, server, refund_events)) == {200}
    assert (detached(app, Question, q).status, detached(app, Question, q).stripe_refund_id) == (
        "refunded", refund.id)
    assert postings(app, "refund:%") == [f"refund:{refund.id}"]
    assert postings(app, "payment:%") == [f"payment:{intent.id}"]


def test_a_failed_refund_is_reversed_once(app, world, server):
    """A refund Stripe later could not make (the card is gone) gives the money back, once;
    one that had already failed when its events came is never posted at all."""
    q, pi = paid(app, world)
    refund = stripe_client(app).v1.refunds.create(params={"payment_intent": pi})
    batch = wait_for(app, "refund.created", "charge.refunded", "refund.updated",
                     "charge.updated", count=4)
    assert set(deliver(app, server, batch)) == {200}
    assert detached(app, Question, q).refunded_cents == 1250
    control(app, f"/_upss/refunds/{refund.id}/fail")
    assert set(deliver(app, server, wait_for(app, "refund.failed"))) == {200}
    assert postings(app, "refund:%") == [f"refund:{refund.id}", f"refund:{refund.id}:failed"]
    assert balance(app, f"escrow:question:{q}") == -1250  # back in escrow
    assert detached(app, Question, q).refunded_cents == 0
    assert_stripe_balance_matches(app)


def settled_and_paid_out(app, world, answerer: int, price: int = 1250) -> tuple[int, str]:
    """A question answered by ``answerer``, accepted, and its share paid out by SEPA."""
    q = earn(app, world, answerer, price, real_stripe=True)
    with app.test_request_context():
        batch = payouts.run_batch(db.session, later())
        db.session.commit()
        assert batch is not None
    return q, detached(app, Question, q).payment_intent_id


def test_a_lost_dispute_after_payout_is_borne_by_the_organizer_to_the_cent(app, world, server):
    """Dispute after payout, events out of order: the withdrawal (12.50 and Stripe's 15.00
    fee) waits in disputed_funds; lost, the answerer's share (11.25) cannot be taken back from
    an unpaid balance of 0, so it is the organizer's loss, and the commission (1.25) is
    reversed. The answerer's payable never goes negative."""
    answerer = world.answerer(iban=IBAN_FI)
    q, pi = settled_and_paid_out(app, world, answerer)
    assert balance(app, f"payable:answerer:{answerer}") == 0
    commission_before = balance(app, "commission")
    dispute = control(app, "/_upss/disputes", {"payment_intent": pi})
    control(app, f"/_upss/disputes/{dispute['id']}/update", {"status": "under_review"})
    control(app, f"/_upss/disputes/{dispute['id']}/close", {"outcome": "lost"})
    batch = wait_for(app, "charge.dispute.created", "charge.dispute.funds_withdrawn",
                     "charge.dispute.updated", "charge.dispute.closed", "charge.updated",
                     count=5)
    assert set(deliver(app, server, list(reversed(batch)))) == {200}
    assert len(postings(app, "dispute-move:%")) == 1
    assert postings(app, "dispute:%") == [f"dispute:{dispute['id']}:lost"]
    assert balance(app, "disputed_funds") == 0
    assert balance(app, "losses") == 1125
    assert balance(app, "commission") - commission_before == 125
    assert balance(app, f"payable:answerer:{answerer}") == 0
    assert balance(app, "stripe_fees") == 44 + 1500
    with app.app_context():
        row = db.session.get(StripeDispute, dispute["id"])
        assert (row.status, row.question_id, row.amount_cents) == ("lost", q, 1250)
        assert row.evidence_due_at is not None
    assert_stripe_balance_matches(app)


def test_a_lost_dispute_is_taken_from_the_answerers_unpaid_balance_first(app, world, server):
    """The answerer is still owed 11.25 from another answer: the disputed answer's share is
    taken back from that, and the organizer loses nothing but the commission and the fee."""
    answerer = world.answerer(iban=IBAN_FI)
    q = earn(app, world, answerer, 1250, real_stripe=True)
    earn(app, world, answerer, 1250)
    pi = detached(app, Question, q).payment_intent_id
    dispute = control(app, "/_upss/disputes", {"payment_intent": pi})
    control(app, f"/_upss/disputes/{dispute['id']}/close", {"outcome": "lost"})
    batch = wait_for(app, "charge.dispute.created", "charge.dispute.funds_withdrawn",
                     "charge.dispute.closed", count=3)
    assert set(deliver(app, server, batch)) == {200}
    assert balance(app, f"payable:answerer:{answerer}") == -1125  # 22.50 owed, 11.25 back
    assert balance(app, "losses") == 0


def test_a_won_dispute_restores_the_money_and_the_fee(app, world, server):
    """Won: the reinstatement gives back the 12.50 and the 15.00 fee; nothing is lost."""
    answerer = world.answerer(iban=IBAN_FI)
    q, pi = settled_and_paid_out(app, world, answerer)
    dispute = control(app, "/_upss/disputes", {"payment_intent": pi})
    control(app, f"/_upss/disputes/{dispute['id']}/close", {"outcome": "won"})
    batch = wait_for(app, "charge.dispute.created", "charge.dispute.funds_withdrawn",
                     "charge.dispute.closed", "charge.dispute.funds_reinstated",
                     "charge.updated", count=5)
    assert set(deliver(app, server, batch)) == {200}
    assert len(postings(app, "dispute-move:%")) == 2
    assert postings(app, "dispute:%") == []
    assert (balance(app, "disputed_funds"), balance(app, "losses")) == (0, 0)
    assert balance(app, "stripe_fees") == 44
    assert_stripe_balance_matches(app)


def test_an_inquiry_withdraws_nothing(app, world, server):
    """An inquiry is shown to the organizer with its evidence deadline; no money moves."""
    q, pi = paid(app, world)
    dispute = control(app, "/_upss/disputes", {"payment_intent": pi, "inquiry": True})
    assert set(deliver(app, server, wait_for(app, "charge.dispute.created"))) == {200}
    assert postings(app, "dispute%") == []
    with app.app_context():
        row = db.session.get(StripeDispute, dispute["id"])
        assert row.status == "warning_needs_response" and row.evidence_due_at is not None


def test_a_transfer_reversed_at_stripe_makes_the_payout_owed_again(app, world, server,
                                                                   localstripe_url):
    """The organizer reverses an answerer's transfer in the Dashboard: the money is back in
    the Stripe balance and owed to the answerer again, once."""
    from tests.flows.test_payouts_exactly_once import batch as pay_batch
    from tests.flows.test_payouts_exactly_once import connect_answerer

    answerer = connect_answerer(app, world, localstripe_url)
    earn(app, world, answerer, 2500, real_stripe=True)
    made = pay_batch(app, later())
    assert made.status == "sent"
    stripe_client(app).v1.transfers.reversals.create(made.stripe_transfer_id)
    batch = wait_for(app, "transfer.reversed", "transfer.created", "charge.updated", count=3)
    assert set(deliver(app, server, batch)) == {200}
    assert postings(app, f"payout:{made.id}:reversed-to:%") == [
        f"payout:{made.id}:reversed-to:2250"]
    assert balance(app, f"payable:answerer:{answerer}") == -2250
    with app.app_context():
        after = db.session.get(Payout, made.id)
        assert (after.status, after.failure_code, after.failure_reason) == (
            "failed", "reversed_at_stripe", made.stripe_transfer_id)
    assert_stripe_balance_matches(app)


@pytest.mark.parametrize("ending", ["paid", "failed", "canceled"])
def test_stripe_payouts_move_through_transit(app, world, server, ending):
    """A payout to the organizer's bank leaves the Stripe balance at once, waits in transit,
    and reaches the bank (or comes back)."""
    paid(app, world, price=5000)
    control(app, "/_upss/balance/available")
    payout = control(app, "/_upss/payouts", {"amount": 3000, "currency": "eur"})
    control(app, f"/_upss/payouts/{payout['id']}/{ending}")
    batch = wait_for(app, "payout.created", f"payout.{ending}", "charge.updated", count=3)
    assert set(deliver(app, server, batch)) == {200}
    assert balance(app, "payouts_in_transit") == 0
    assert balance(app, "bank") == (3000 if ending == "paid" else 0)
    assert_stripe_balance_matches(app)


def test_the_reconciliation_job_finds_differences_in_money(app, world, server):
    """The job checks what Stripe moved since its last run: all matched, then a refund the
    ledger never heard of is reported with its amount, and the balances differ by it."""
    paid(app, world)
    deliver(app, server, wait_for(app, "charge.updated"), copies=1)
    with app.test_request_context():
        assert reconciliation.reconcile_with_stripe(db.session, later()) == (
            "1 checked, 0 differences")
        db.session.commit()
    q, pi = paid(app, world, price=2000)
    refund = stripe_client(app).v1.refunds.create(params={"payment_intent": pi, "amount": 500})
    wait_for(app, "charge.updated", count=2)  # Stripe has made the charge's money movement
    with app.test_request_context():
        outcome = reconciliation.reconcile_with_stripe(db.session, later())
        db.session.commit()
        run = reconciliation.last_run(db.session)
        found = {d.what: d.cents for d in reconciliation.differences(run)}
    assert outcome.endswith("2 differences")
    assert found[f"refund {refund.id} (refund {refund.balance_transaction})"] == -500
    assert found["Stripe's balance (available + pending) and the ledger's stripe_balance"] == -500
    assert run.checked >= 2


def test_an_event_stripe_cannot_be_asked_about_is_retried_not_stored(app, world, server):
    """Stripe does not answer the look-up of the dispute: the event is answered 409 and not
    stored as processed; delivered again once Stripe answers, it is applied."""
    q, pi = paid(app, world)
    control(app, "/_upss/disputes", {"payment_intent": pi, "inquiry": True})
    created = wait_for(app, "charge.dispute.created")
    control(app, "/_upss/faults", {"method": "GET", "path": r"/v1/disputes/.+",
                                   "mode": "error_500", "times": 10})
    assert deliver(app, server, created, copies=1) == [409]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0
    requests.delete(f"{app.config['UPSS_LOCALSTRIPE_URL']}/_upss/faults", timeout=5)
    assert deliver(app, server, created, copies=1) == [200]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeDispute)) == 1
