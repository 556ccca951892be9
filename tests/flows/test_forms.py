"""Bad forms: a clear error, nothing stored, nothing charged. Sign-in and sign-up rules."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import QUESTION, ask, csrf_token, submit
from upss.extensions import db
from upss.models import Question, User


def question_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Question))


@pytest.mark.parametrize("overrides, message", [
    ({"price": "2.99"}, "The price must be between €3.00 and €100.00"),
    ({"price": "100.01"}, "The price must be between €3.00 and €100.00"),
    ({"price": "-5"}, "Enter the price as a number, like 12.50"),
    ({"price": "12.505"}, "Enter the price as a number, like 12.50"),
    ({"price": "ten"}, "Enter the price as a number, like 12.50"),
    ({"price": "1e3"}, "Enter the price as a number, like 12.50"),
    ({"price": ""}, "Enter the price you will pay"),
    ({"title": ""}, "Enter a title for your question"),
    ({"title": "   "}, "Enter a title for your question"),
    ({"title": "x" * 151}, "The title must be 150 characters or fewer"),
    ({"body": ""}, "Enter your question"),
    ({"body": "x" * 5001}, "Your question must be 5000 characters or fewer"),
    ({"language": "de"}, "Choose one of the languages in the list"),
    ({"language": ""}, "Choose the language you want the answer in"),
    ({"topic": "astrology"}, "Choose one of the topics in the list"),
])
def test_bad_question_form_shows_the_error_and_stores_nothing(app, asker_client, overrides,
                                                              message):
    """Each bad field: 400, the message in the error summary and at the field, nothing stored."""
    response = ask(asker_client, **overrides)
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "There is a problem" in text
    assert text.count(message) == 2, "the message appears in the summary and at the field"
    assert question_count(app) == 0


def test_comma_decimal_price_is_accepted(app, asker_client):
    """Nordic people type 12,50: it means 1250 cents."""
    assert ask(asker_client, price="12,50").status_code == 302
    with app.app_context():
        assert db.session.get(Question, 1).price_cents == 1250


def test_question_form_without_csrf_token_is_refused(app, asker_client):
    """A POST without the CSRF token is refused with a clear page and stores nothing."""
    response = asker_client.post("/ask", data=QUESTION)
    assert response.status_code == 400
    assert "This form had expired" in response.get_data(as_text=True)
    assert question_count(app) == 0


def test_test_payment_without_csrf_is_refused_and_charges_nothing(app, asker_client):
    """The pay POST needs its CSRF token too; without it no PaymentIntent is confirmed."""
    ask(asker_client)
    response = asker_client.post("/questions/1/pay/test", data={"scenario": "succeeds"})
    assert response.status_code == 400
    with app.app_context():
        question = db.session.get(Question, 1)
        assert question.status == "draft" and question.payment_intent_id is None


def test_unknown_test_scenario_is_an_error_and_charges_nothing(app, asker_client):
    """A made-up scenario is a form error; the PaymentIntent stays unconfirmed."""
    ask(asker_client)
    response = submit(asker_client, "/questions/1/pay/test", {"scenario": "free"},
                      form_url="/questions/1/pay")
    assert response.status_code == 400
    assert "There is a problem" in response.get_data(as_text=True)
    import stripe
    with app.app_context():
        pi_id = db.session.get(Question, 1).payment_intent_id
    client = stripe.StripeClient(app.config["UPSS_STRIPE_SECRET_KEY"],
                                 base_addresses={"api": app.config["UPSS_LOCALSTRIPE_URL"]})
    assert client.v1.payment_intents.retrieve(pi_id).status == "requires_payment_method"


def test_asking_requires_sign_in(client):
    response = client.get("/ask")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


def test_same_message_for_unknown_email_and_wrong_password(app, client, make_user):
    """Sign-in does not reveal whether an e-mail address has an account."""
    _, email, _ = make_user()
    wrong_password = submit(client, "/sign-in", {"email": email, "password": "not the one!"})
    unknown_email = submit(client, "/sign-in", {"email": "nobody@example.org",
                                                "password": "not the one!"})
    assert wrong_password.status_code == unknown_email.status_code == 400
    message = "The e-mail address or the password is not right"
    assert message in wrong_password.get_data(as_text=True)
    assert message in unknown_email.get_data(as_text=True)


def test_sign_up_rules_and_password_hashing(app, client, make_user):
    """Short password and mismatch are errors; passwords are stored hashed. (A known address
    is not an error: it is answered like a new one, see test_accounts_recovery.py.)"""
    make_user()
    cases = [
        ({"password": "short", "confirm": "short"}, "between 10 and 128 characters"),
        ({"confirm": "something else"}, "The two passwords are not the same"),
        ({"email": "not-an-email"}, "Enter an e-mail address like name@example.com"),
    ]
    for overrides, message in cases:
        data = {"name": "Bo", "email": "bo@example.org", "password": "long enough pass",
                "confirm": "long enough pass", **overrides}
        response = submit(client, "/sign-up", data)
        assert response.status_code == 400 and message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
        stored = db.session.scalar(select(User.password_hash))
        assert stored.startswith("scrypt:") and "correct horse" not in stored


def test_open_redirect_is_refused_after_sign_in(app, client, make_user):
    _, email, password = make_user()
    token = csrf_token(client, "/sign-in")
    response = client.post("/sign-in?next=https://evil.example/", data={
        "csrf_token": token, "email": email, "password": password})
    assert response.headers["Location"] == "/questions"


def test_sign_out_needs_post_with_csrf(app, asker_client):
    assert asker_client.get("/sign-out").status_code == 405
    assert asker_client.post("/sign-out").status_code == 400
    token = csrf_token(asker_client, "/questions")
    assert asker_client.post("/sign-out", data={"csrf_token": token}).status_code == 302
    assert asker_client.get("/questions").status_code == 302


def test_security_headers(client):
    response = client.get("/")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers
    secure = client.get("/", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_view_s_own_security_header_wins(app, client):
    @app.get("/framed")
    def framed():
        return "framed", {"X-Frame-Options": "SAMEORIGIN", "referrer-policy": "no-referrer"}

    response = client.get("/framed")
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers.getlist("Referrer-Policy") == ["no-referrer"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_asked_question_is_draft_until_paid(app, asker_client):
    assert ask(asker_client).status_code == 302
    with app.app_context():
        question = db.session.get(Question, 1)
        assert (question.status, question.price_cents, question.currency) == ("draft", 1250,
                                                                               "EUR")
