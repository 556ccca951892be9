"""The Stripe webhook: verified by signature, stored once by event id, applied exactly once."""

from __future__ import annotations

import json
import time

import pytest
import stripe
from sqlalchemy import func, select

from tests.conftest import ask
from upss.extensions import db
from upss.models import LedgerTransaction, Question, QuestionEvent, StripeEvent

SECRET = "whsec_test_secret"


def payment_intent(question_id: int, pi_id: str, amount: int = 1250, status: str = "succeeded",
                   shape: str = "current", error: str | None = None) -> dict:
    """A PaymentIntent as Stripe's current API (2026-10-28) or localstripe (2017) shapes it."""
    obj = {"id": pi_id, "object": "payment_intent", "amount": amount, "currency": "eur",
           "status": status, "metadata": {"question_id": str(question_id)},
           "client_secret": f"{pi_id}_secret_x"}
    if shape == "current":
        obj.update(latest_charge="ch_123", payment_method="pm_123", livemode=False,
                   amount_received=amount if status == "succeeded" else 0,
                   payment_method_types=["card"])
    else:
        obj.update(latest_charge={"id": "ch_123", "object": "charge", "amount": amount},
                   charges={"object": "list", "data": []})
    if error:
        obj["last_payment_error"] = {"code": "card_declined", "message": error}
    return obj


def event(event_id: str, event_type: str, obj: dict, shape: str = "current") -> dict:
    return {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()),
            "api_version": "2026-10-28.endive" if shape == "current" else "2017-08-15",
            "data": {"object": obj}}


def deliver(client, payload, secret: str = SECRET, timestamp: int | None = None,
            header: str | None = "auto"):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    headers = {"Content-Type": "application/json"}
    if header == "auto":
        header = stripe.WebhookSignature.generate_signature_header(
            body, secret, timestamp=timestamp or int(time.time()))
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/stripe/webhook", data=body, headers=headers)


@pytest.fixture
def awaiting_question(app, asker_client):
    """Question 1 of the signed-in asker, at awaiting_payment with PaymentIntent ``pi_test_1``."""
    ask(asker_client, price="12.50")
    with app.app_context():
        question = db.session.get(Question, 1)
        question.status = "awaiting_payment"  # as questions.start_payment would leave it
        question.payment_intent_id = "pi_test_1"
        db.session.commit()
    return 1


def counts(app) -> dict:
    with app.app_context():
        result = {model.__name__: db.session.scalar(select(func.count()).select_from(model))
                  for model in (StripeEvent, LedgerTransaction, QuestionEvent)}
        result["status"] = db.session.get(Question, 1).status if db.session.get(
            Question, 1) else None
        db.session.remove()
        return result


@pytest.mark.parametrize("shape", ["current", "localstripe"])
def test_succeeded_three_times_then_failed_changes_state_once(app, client, awaiting_question,
                                                              shape):
    """The same succeeded event thrice, then a payment_failed: one posting, one state change."""
    succeeded = event("evt_ok_1", "payment_intent.succeeded",
                      payment_intent(1, "pi_test_1", shape=shape), shape)
    outcomes = [deliver(client, succeeded).get_json()["outcome"] for _ in range(3)]
    assert outcomes == ["applied: question queued", "duplicate", "duplicate"]
    failed = event("evt_fail_1", "payment_intent.payment_failed",
                   payment_intent(1, "pi_test_1", status="requires_payment_method",
                                  shape=shape, error="Your card was declined."), shape)
    assert deliver(client, failed).get_json()["outcome"].startswith("ignored")
    assert counts(app) == {"StripeEvent": 2, "LedgerTransaction": 1, "QuestionEvent": 1,
                           "status": "queued"}
    with app.app_context():
        question = db.session.get(Question, 1)
        assert question.payment_error is None and question.paid_at is not None


def test_payment_failed_records_the_reason_and_leaves_it_payable(app, client,
                                                                 awaiting_question):
    """payment_intent.payment_failed keeps the question payable and keeps Stripe's reason."""
    failed = event("evt_fail_2", "payment_intent.payment_failed",
                   payment_intent(1, "pi_test_1", status="requires_payment_method",
                                  error="Your card has insufficient funds."))
    assert deliver(client, failed).get_json()["outcome"] == "applied: failure recorded"
    with app.app_context():
        question = db.session.get(Question, 1)
        assert question.status == "awaiting_payment"
        assert question.payment_error == "Your card has insufficient funds."


@pytest.mark.parametrize("case", ["bad signature", "missing header", "stale timestamp",
                                  "malformed json", "wrong secret", "garbage header"])
def test_invalid_webhooks_are_refused_and_nothing_is_stored(app, client, awaiting_question,
                                                            case):
    """Bad signature, missing header, stale timestamp, malformed JSON: 400, nothing stored."""
    good = json.dumps(event("evt_x", "payment_intent.succeeded",
                            payment_intent(1, "pi_test_1")))
    if case == "bad signature":
        header = stripe.WebhookSignature.generate_signature_header(good, SECRET)
        response = deliver(client, good.replace("1250", "1251"), header=header)
    elif case == "missing header":
        response = deliver(client, good, header=None)
    elif case == "stale timestamp":
        response = deliver(client, good, timestamp=int(time.time()) - 301)
    elif case == "malformed json":
        response = deliver(client, good[:-5] + "{,,")
    elif case == "wrong secret":
        response = deliver(client, good, secret="whsec_someone_else")
    else:
        response = deliver(client, good, header="t=abc,v1=")
    assert response.status_code == 400
    assert counts(app) == {"StripeEvent": 0, "LedgerTransaction": 0, "QuestionEvent": 0,
                           "status": "awaiting_payment"}


def test_succeeded_for_another_payment_intent_does_not_queue(app, client, awaiting_question):
    """An event about a PaymentIntent that is not the question's current one changes nothing."""
    other = event("evt_other", "payment_intent.succeeded", payment_intent(1, "pi_someone_else"))
    assert deliver(client, other).get_json()["outcome"].startswith("ignored")
    assert counts(app)["LedgerTransaction"] == 0 and counts(app)["status"] == "awaiting_payment"


def test_succeeded_with_a_different_amount_does_not_queue(app, client, awaiting_question):
    """Money that does not match the question's price is not silently accepted."""
    wrong = event("evt_amount", "payment_intent.succeeded",
                  payment_intent(1, "pi_test_1", amount=1))
    assert deliver(client, wrong).get_json()["outcome"] == (
        "ignored: amount does not match the question")
    assert counts(app)["status"] == "awaiting_payment"


def test_unrelated_event_types_are_stored_and_ignored(app, client, awaiting_question):
    """Events UPSS does not use are acknowledged (so Stripe stops retrying) and kept once."""
    other = event("evt_charge", "charge.succeeded", {"id": "ch_1", "object": "charge"})
    assert deliver(client, other).get_json()["outcome"] == "ignored: type not used"
    assert counts(app)["StripeEvent"] == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_deliveries_of_one_event_apply_once(app, awaiting_question):
    """Six simultaneous deliveries of the same event on PostgreSQL: one applies, five repeat."""
    import threading

    body = json.dumps(event("evt_race", "payment_intent.succeeded",
                            payment_intent(1, "pi_test_1")))
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def post():
        client = app.test_client()
        barrier.wait()
        outcomes.append(deliver(client, body).get_json()["outcome"])

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["applied: question queued"] + ["duplicate"] * 5
    assert counts(app) == {"StripeEvent": 1, "LedgerTransaction": 1, "QuestionEvent": 1,
                           "status": "queued"}
