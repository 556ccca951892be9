"""Asking and paying end to end against a real localstripe server and its signed webhooks."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.conftest import ask, sign_in, stripe_client, submit, wait_until
from upss.extensions import db
from upss.models import LedgerEntry, LedgerTransaction, Question, QuestionEvent, StripeEvent


def load_question(app, question_id: int = 1) -> Question:
    with app.app_context():
        question = db.session.get(Question, question_id)
        db.session.expunge_all()
        return question


def ledger_rows(app):
    """The ledger's transactions and entries, without Stripe's fees (whose ``charge.updated``
    may come at any time; test_money_at_stripe.py checks them)."""
    with app.app_context():
        not_fee = ~LedgerTransaction.idempotency_key.like("fee:%")
        txs = db.session.scalars(select(LedgerTransaction).where(not_fee)).all()
        entries = db.session.execute(
            select(LedgerEntry.transaction_id, LedgerEntry.amount_cents)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(not_fee)).all()
        db.session.remove()
        return txs, entries


def test_sign_up_ask_pay_and_webhook_queue_the_question(app, client, live_server):
    """A new asker signs up, asks, pays with pm_card_visa; the signed webhook queues it."""
    response = submit(client, "/sign-up", {"name": "Ada", "email": "Ada@Example.org",
                                           "password": "a long password", "confirm":
                                           "a long password"})
    assert response.status_code == 200  # "check your e-mail"; an unconfirmed asker may ask
    sign_in(client, "ada@example.org", "a long password")

    response = ask(client, price="12.50")
    assert response.status_code == 302 and response.headers["Location"] == "/questions/1/pay"

    page = client.get("/questions/1/pay")
    assert page.status_code == 200
    assert "Test mode" in page.get_data(as_text=True)
    question = load_question(app)
    assert question.status == "awaiting_payment"
    intent = stripe_client(app).v1.payment_intents.retrieve(question.payment_intent_id)
    assert intent.amount == 1250 and intent.currency == "eur"
    assert intent.metadata["question_id"] == "1"

    response = submit(client, "/questions/1/pay/test", {"scenario": "succeeds"},
                      form_url="/questions/1/pay")
    assert response.status_code == 302 and response.headers["Location"] == "/questions/1"
    assert stripe_client(app).v1.payment_intents.retrieve(intent.id).status == "succeeded"

    wait_until(lambda: load_question(app).status == "queued", timeout=20)
    txs, entries = ledger_rows(app)
    assert len(txs) == 1
    assert txs[0].idempotency_key == f"payment:{intent.id}"
    assert sorted(amount for _, amount in entries) == [-1250, 1250]
    assert client.get("/questions/1").get_data(as_text=True).count(
        "waiting for an off-peak answerer") >= 1
    with app.app_context():
        events = db.session.scalars(select(StripeEvent)).all()
        assert [(e.type, e.outcome) for e in events if e.type.endswith("succeeded")] == [
            ("payment_intent.succeeded", "applied: question queued")]
        transitions = db.session.execute(
            select(QuestionEvent.from_status, QuestionEvent.to_status)
            .order_by(QuestionEvent.id)).all()
        assert transitions == [("draft", "awaiting_payment"), ("awaiting_payment", "queued")]


def test_declined_card_keeps_the_question_payable_and_a_retry_pays(app, asker_client,
                                                                    live_server):
    """A declined card: the asker sees why, nothing is posted, and a second try succeeds."""
    ask(asker_client)
    asker_client.get("/questions/1/pay")
    first_intent = load_question(app).payment_intent_id

    response = submit(asker_client, "/questions/1/pay/test", {"scenario": "declined"},
                      form_url="/questions/1/pay", follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "Your card was declined" in text and "No money was taken" in text
    question = load_question(app)
    assert question.status == "awaiting_payment"
    assert question.payment_error == "Your card was declined."
    assert ledger_rows(app)[0] == []
    assert "Your card was declined" in asker_client.get("/questions/1").get_data(as_text=True)

    response = submit(asker_client, "/questions/1/pay/test", {"scenario": "succeeds"},
                      form_url="/questions/1/pay")
    assert response.status_code == 302
    question = wait_until(lambda: (q := load_question(app)).status == "queued" and q, timeout=20)
    assert question.payment_intent_id != first_intent
    assert question.payment_error is None
    assert stripe_client(app).v1.payment_intents.retrieve(first_intent).status == "canceled"
    txs, _ = ledger_rows(app)
    assert [t.idempotency_key for t in txs] == [f"payment:{question.payment_intent_id}"]


def test_three_d_secure_payment_needs_the_authentication_step(app, asker_client):
    """A 3-D Secure card stops at requires_action and the page offers the bank's check."""
    ask(asker_client)
    response = submit(asker_client, "/questions/1/pay/test", {"scenario": "three_d_secure"},
                      form_url="/questions/1/pay")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Confirm the payment with your bank" in text
    intent_id = load_question(app).payment_intent_id
    intent = stripe_client(app).v1.payment_intents.retrieve(intent_id)
    assert intent.status == "requires_action"
    assert f'data-client-secret="{intent.client_secret}"' in text
    assert load_question(app).status == "awaiting_payment"


def test_tampered_amount_field_is_ignored(app, asker_client):
    """An ``amount`` smuggled into the pay form does not change what Stripe is asked for."""
    ask(asker_client, price="40")
    submit(asker_client, "/questions/1/pay/test",
           {"scenario": "three_d_secure", "amount": "1", "amount_cents": "1", "price": "0.01"},
           form_url="/questions/1/pay")
    question = load_question(app)
    assert question.price_cents == 4000
    assert stripe_client(app).v1.payment_intents.retrieve(
        question.payment_intent_id).amount == 4000


def test_pay_page_of_another_askers_question_is_not_found(app, client, make_user):
    """An asker cannot open, pay or follow someone else's question."""
    from tests.conftest import sign_in

    _, owner_email, owner_password = make_user()
    _, other_email, other_password = make_user()
    sign_in(client, owner_email, owner_password)
    ask(client)
    client.post("/sign-out", data={"csrf_token": ""})
    client.delete_cookie("session")
    sign_in(client, other_email, other_password)
    for url in ("/questions/1", "/questions/1/pay", "/questions/1/status.json"):
        assert client.get(url).status_code == 404
    assert load_question(app).status == "draft"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0
