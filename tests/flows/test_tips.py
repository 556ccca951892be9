"""Tips: paid like the question through localstripe; 100 % to the answerer's payable account."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.conftest import csrf_token, sign_in, submit, wait_until
from upss import ledger, questions, release
from upss.extensions import db
from upss.models import Tip, User


def closed_question(app, world, client) -> tuple[int, int]:
    answerer = world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    world.act(questions.claim, q, answerer, datetime.now(UTC))
    world.act(questions.post_answer, q, answerer, "Answer", datetime.now(UTC))
    asker = world.question(q).asker_id
    world.act(questions.accept, q, asker, datetime.now(UTC))
    with app.app_context():
        email = db.session.get(User, asker).email
    sign_in(client, email, "correct horse 9")
    return q, answerer


def test_tip_is_paid_through_localstripe_and_goes_wholly_to_the_answerer(app, world, client,
                                                                         live_server):
    q, answerer = closed_question(app, world, client)
    response = client.post(f"/questions/{q}/tip", data={
        "csrf_token": csrf_token(client, f"/questions/{q}"), "t-amount": "2,50"})
    assert response.status_code == 302 and response.headers["Location"] == "/tips/1/pay"
    page = client.get("/tips/1/pay").get_data(as_text=True)
    assert "Pay your tip" in page and "Pay €2.50 (test)" in page
    response = submit(client, "/tips/1/pay/test", {"scenario": "succeeds", "amount": "1"},
                      form_url="/tips/1/pay")
    assert response.status_code == 302

    def paid():
        with app.app_context():
            return db.session.scalar(select(Tip.status)) == "paid"

    wait_until(paid, timeout=20)
    with app.app_context():
        assert ledger.balance(db.session, f"payable:answerer:{answerer}") == -(900 + 250)
        assert ledger.balance(db.session, "commission") == -100
    assert "Tip, all of it to the answerer" in client.get(
        f"/questions/{q}/receipt").get_data(as_text=True)


def test_tip_form_refuses_bad_amounts_and_open_questions(app, world, client):
    q, _ = closed_question(app, world, client)
    for amount, message in (("0.50", "A tip must be between €1.00 and €100.00"),
                            ("lots", "Enter the tip as a number, like 2.50")):
        response = client.post(f"/questions/{q}/tip", data={
            "csrf_token": csrf_token(client, f"/questions/{q}"), "t-amount": amount})
        assert response.status_code == 400 and message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Tip)).all() == []


def test_declined_tip_posts_nothing(app, world, client):
    q, answerer = closed_question(app, world, client)
    client.post(f"/questions/{q}/tip", data={
        "csrf_token": csrf_token(client, f"/questions/{q}"), "t-amount": "5"})
    response = submit(client, "/tips/1/pay/test", {"scenario": "declined"},
                      form_url="/tips/1/pay", follow_redirects=True)
    assert "Your card was declined" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Tip.status)) == "failed"
        assert ledger.balance(db.session, f"payable:answerer:{answerer}") == -900
