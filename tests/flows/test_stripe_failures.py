"""Failures around money: a hung or silent Stripe, lost webhooks, dropped database connections,
and the deployment settings UPSS refuses to start with."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
import stripe
from sqlalchemy import event, func, select

from tests.conftest import ask, detached, stripe_client, submit, wait_until
from upss import config, create_app, payments
from upss.extensions import db
from upss.models import LedgerTransaction, Question, StripeEvent, utcnow
from upss.stripe_gateway import STRIPE_API_VERSION, StripeGateway

TIMEOUT = 1.0  # the Stripe timeout these tests run with (the default is 3 s)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "UPSS_STRIPE_TIMEOUT_SECONDS": TIMEOUT, "UPSS_STRIPE_NETWORK_RETRIES": 1}


@pytest.fixture
def no_webhooks(localstripe_url):
    """Stripe's webhooks go nowhere: every event of this test is lost."""
    requests.post(f"{localstripe_url}/_config/webhooks/upss",
                  data={"url": "http://127.0.0.1:9/lost", "secret": "whsec_lost"},
                  timeout=5).raise_for_status()


def payment_postings(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.idempotency_key.like("payment:%")))


def performed(localstripe_url, pattern: str) -> list[dict]:
    """Requests the local Stripe really carried out whose path matches ``pattern``."""
    log = requests.get(f"{localstripe_url}/_upss/requests", timeout=5).json()["requests"]
    return [r for r in log if r["performed"] and not r["replayed"]
            and re.fullmatch(pattern, r["path"])]


def run_check(app, now):
    with app.test_request_context():
        outcome = payments.check_unconfirmed_payments(db.session, now)
        db.session.commit()
        return outcome


# --- timeouts --------------------------------------------------------------------------------

def test_the_longest_wait_is_stated_and_small():
    """Every Stripe call has a timeout; with the library's retries the worst case is a few s."""
    default = StripeGateway("sk_test_x", "whsec_x")
    assert default.client._requestor._client._timeout == (1.0, 3.0)
    assert default.max_wait_seconds == pytest.approx(2 * (1.0 + 3.0) + 0.5)
    assert default.max_wait_seconds < 10


def test_upss_speaks_the_api_version_of_the_pinned_library():
    """The API version UPSS is written for is the one stripe-python sends (README names it)."""
    from stripe._api_version import _ApiVersion

    assert STRIPE_API_VERSION == _ApiVersion.CURRENT
    gateway = StripeGateway("sk_test_x", "whsec_x")
    assert gateway.client._requestor._options.stripe_version == STRIPE_API_VERSION


def test_a_hung_confirmation_answers_quickly_and_a_retry_pays_once(
        app, asker_client, stripe_faults, localstripe_url, no_webhooks):
    """Stripe holds the card confirmation past the timeout: the page answers within the stated
    time without "nothing was charged"; the payment Stripe then makes is found again when the
    asker retries, and nothing is charged twice."""
    ask(asker_client)
    assert asker_client.get("/questions/1/pay").status_code == 200
    pi = detached(app, Question, 1).payment_intent_id
    stripe_faults(method="POST", path=r"/v1/payment_intents/[^/]+/confirm", mode="stall",
                  seconds=4)

    started = time.monotonic()
    response = submit(asker_client, "/questions/1/pay/test", {"scenario": "succeeds"},
                      form_url="/questions/1/pay")
    waited = time.monotonic() - started
    assert waited < app.extensions["upss_stripe"].max_wait_seconds + 1.0, waited
    assert response.status_code == 302 and response.headers["Location"] == "/questions/1"
    page = asker_client.get("/questions/1").get_data(as_text=True)
    assert "did not answer in time" in page and "Nothing was charged" not in page
    assert detached(app, Question, 1).status == "awaiting_payment"

    # Stripe finishes the held confirmation after the page gave up.
    wait_until(lambda: stripe_client(app).v1.payment_intents.retrieve(pi).status == "succeeded",
               timeout=10)
    again = asker_client.get("/questions/1/pay")  # the asker tries again
    assert again.status_code == 302 and again.headers["Location"] == "/questions/1"
    assert detached(app, Question, 1).status == "queued"
    assert payment_postings(app) == 1
    assert len(performed(localstripe_url, rf"/v1/payment_intents/{pi}/confirm")) == 1
    charges = stripe_client(app).v1.charges.list(params={"limit": 100}).data
    assert len([c for c in charges if c["payment_intent"] == pi]) == 1


def test_a_hung_payment_start_says_nothing_was_charged_and_the_retry_reuses_it(
        app, asker_client, stripe_faults, localstripe_url):
    """Creating the PaymentIntent hangs: the page says nothing was charged, fast; opening it
    again gets the PaymentIntent Stripe made meanwhile (same installation key), not a second."""
    ask(asker_client)
    before = len(performed(localstripe_url, r"/v1/payment_intents"))
    stripe_faults(method="POST", path=r"/v1/payment_intents", mode="stall", seconds=3)
    started = time.monotonic()
    response = asker_client.get("/questions/1/pay")
    assert time.monotonic() - started < app.extensions["upss_stripe"].max_wait_seconds + 1.0
    assert response.status_code == 503
    assert "Nothing was charged" in response.get_data(as_text=True)
    assert detached(app, Question, 1).status == "draft"

    time.sleep(2.5)  # the held request is carried out meanwhile
    page = asker_client.get("/questions/1/pay")
    assert page.status_code == 200
    created = performed(localstripe_url, r"/v1/payment_intents")[before:]
    assert len(created) == 1
    q = detached(app, Question, 1)
    assert q.status == "awaiting_payment" and q.payment_attempts == 1
    assert re.fullmatch(r"upss-[0-9a-f]{16}:question:1:pay", created[0]["idempotency_key"])


# --- lost webhooks ---------------------------------------------------------------------------

def test_a_lost_webhook_is_found_by_the_check_job_once(app, asker_client, no_webhooks):
    """The payment succeeds but its webhook never arrives: the job asks Stripe after a few
    minutes, queues the question through the webhook's code path, and only once."""
    ask(asker_client)
    asker_client.get("/questions/1/pay")
    submit(asker_client, "/questions/1/pay/test", {"scenario": "succeeds"},
           form_url="/questions/1/pay")
    q = detached(app, Question, 1)
    assert q.status == "awaiting_payment"
    start = q.payment_started_at
    assert q.payment_check_due_at == start + timedelta(minutes=5)

    assert run_check(app, start + timedelta(minutes=4)) is None  # not due yet
    assert detached(app, Question, 1).status == "awaiting_payment"
    assert run_check(app, start + timedelta(minutes=6)) == "1 asked, 1 applied"
    q = detached(app, Question, 1)
    assert q.status == "queued" and q.payment_check_due_at is None
    assert run_check(app, start + timedelta(minutes=30)) is None
    assert payment_postings(app) == 1
    with app.app_context():
        [key] = db.session.scalars(select(LedgerTransaction.idempotency_key)).all()
    assert key == f"payment:{q.payment_intent_id}"


def test_the_check_job_asks_with_growing_gaps_then_stops_and_says_so(app, asker_client,
                                                                     no_webhooks):
    """An unpaid question is asked about at 5, 10, 20 … minutes, never after 24 hours; then
    the question page says that UPSS stopped asking."""
    ask(asker_client)
    asker_client.get("/questions/1/pay")
    start = detached(app, Question, 1).payment_started_at
    due_times = []
    for _ in range(20):
        due = detached(app, Question, 1).payment_check_due_at
        if due is None:
            break
        due_times.append(round((due - start).total_seconds() / 60))
        assert run_check(app, due) == "1 asked, 0 applied"
    assert due_times == [5, 10, 20, 40, 80, 160, 320, 640, 1280]
    q = detached(app, Question, 1)
    assert q.status == "awaiting_payment" and q.payment_checks == 9
    assert q.payment_checks_ended_at == start + timedelta(minutes=1280)
    page = asker_client.get("/questions/1").get_data(as_text=True)
    assert "we stopped asking the payment service" in page


def test_opening_the_pay_page_again_applies_a_payment_whose_webhook_was_lost(
        app, asker_client, no_webhooks):
    """The asker comes back to the pay page: Stripe says paid, so the question is queued."""
    ask(asker_client)
    asker_client.get("/questions/1/pay")
    submit(asker_client, "/questions/1/pay/test", {"scenario": "succeeds"},
           form_url="/questions/1/pay")
    assert detached(app, Question, 1).status == "awaiting_payment"
    response = asker_client.get("/questions/1/pay")
    assert response.status_code == 302 and response.headers["Location"] == "/questions/1"
    assert detached(app, Question, 1).status == "queued"
    assert payment_postings(app) == 1


# --- the database connection dies ------------------------------------------------------------

def _terminate(app, pid: int | None = None) -> None:
    """``pg_terminate_backend`` for one backend, or for every other backend of the database."""
    admin = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"],
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if pid is None:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = current_database() "
                                 "AND pid <> pg_backend_pid()"))
        else:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def _signed(payload: dict, secret: str) -> dict:
    body = json.dumps(payload)
    return {"data": body, "headers": {
        "Content-Type": "application/json",
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            body, secret, timestamp=int(time.time()))}}


def _succeeded_event(q: Question) -> dict:
    return {"id": "evt_dropped_1", "object": "event", "type": "payment_intent.succeeded",
            "api_version": STRIPE_API_VERSION, "created": int(time.time()),
            "data": {"object": {"id": q.payment_intent_id, "object": "payment_intent",
                                "amount": q.price_cents, "currency": "eur",
                                "status": "succeeded", "latest_charge": "ch_dropped_1",
                                "metadata": {"question_id": str(q.id)}}}}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_dropped_between_requests_costs_no_request(app, asker_client):
    """PostgreSQL drops every idle connection: the next request still answers 200."""
    assert asker_client.get("/questions").status_code == 200
    _terminate(app)
    assert asker_client.get("/questions").status_code == 200
    assert asker_client.get("/ask").status_code == 200


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_dropped_during_a_webhook_is_retried_and_applied_once(
        app, asker_client, no_webhooks):
    """The webhook's database connection dies mid-transaction: the transaction runs again from
    the start, answers 200, and the payment is applied exactly once."""
    ask(asker_client)
    asker_client.get("/questions/1/pay")
    q = detached(app, Question, 1)
    killed = []

    def kill_once(conn, cursor, statement, parameters, context, executemany):
        if not killed and statement.lstrip().upper().startswith("INSERT INTO STRIPE_EVENT"):
            killed.append(conn.connection.dbapi_connection.info.backend_pid)
            _terminate(app, killed[0])

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", kill_once)
    try:
        response = asker_client.post("/stripe/webhook", **_signed(
            _succeeded_event(q), app.config["UPSS_STRIPE_WEBHOOK_SECRET"]))
    finally:
        event.remove(engine, "before_cursor_execute", kill_once)
    assert killed, "the connection was not killed"
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outcome"] == "applied: question queued"
    assert detached(app, Question, 1).status == "queued"
    assert payment_postings(app) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 1


# --- where UPSS runs -------------------------------------------------------------------------

def _settings(**overrides) -> dict:
    environ = {"UPSS_SECRET_KEY": "x", **overrides}
    return config.from_environment("instance", environ)


@pytest.mark.parametrize(("environ", "message"), [
    ({"UPSS_ENV": "production"},
     "Production needs a real Stripe key: set UPSS_STRIPE_SECRET_KEY"),
    ({"UPSS_ENV": "production", "UPSS_STRIPE_SECRET_KEY": "sk_live_abc"},
     "A live Stripe key (UPSS_STRIPE_SECRET_KEY) needs the signing secret of its webhook "
     "endpoint: set UPSS_STRIPE_WEBHOOK_SECRET"),
    ({"UPSS_ENV": "development", "UPSS_STRIPE_SECRET_KEY": "sk_live_abc"},
     "set UPSS_STRIPE_WEBHOOK_SECRET"),
    ({"UPSS_ENV": "production", "UPSS_STRIPE_SECRET_KEY": "sk_live_abc",
      "UPSS_STRIPE_WEBHOOK_SECRET": config.LOCAL_WEBHOOK_SECRET},
     "UPSS_STRIPE_WEBHOOK_SECRET is the local development secret, which is public"),
    ({"UPSS_ENV": "production", "UPSS_STRIPE_SECRET_KEY": "sk_test_abc"},
     "Set UPSS_STRIPE_WEBHOOK_SECRET, the signing secret Stripe shows"),
    ({"UPSS_ENV": "staging"}, "UPSS_ENV is 'staging': set it to one of development, test, "
                              "production"),
    ({"UPSS_ENV": "production", "UPSS_STRIPE_SECRET_KEY": "sk_live_abc",
      "UPSS_STRIPE_WEBHOOK_SECRET": "whsec_real_endpoint"},
     "Production needs rate limits shared by all workers: set UPSS_RATELIMIT_STORAGE"),
    ({"UPSS_ENV": "production", "UPSS_RATELIMIT_ENABLED": "false"},
     "Production cannot run without rate limits"),
    ({"UPSS_ENV": "production"}, "Set UPSS_CONTACT_EMAIL"),
    ({"UPSS_ENV": "production"}, "Set UPSS_BASE_URL to the https:// address"),
    ({"UPSS_ENV": "production", "UPSS_BASE_URL": "http://upss.example.no"},
     "Set UPSS_BASE_URL to the https:// address"),
    ({"UPSS_ENV": "production"}, "Set UPSS_MAIL_FROM"),
])
def test_start_up_refuses_unsafe_settings_and_says_what_to_set(environ, message):
    """Each unsafe combination stops create_app with a message naming the setting."""
    with pytest.raises(config.ConfigError) as refused:
        create_app(_settings(**environ))
    assert message in str(refused.value)


@pytest.mark.parametrize("environ", [
    {},  # development on the local Stripe
    {"UPSS_ENV": "test"},
    {"UPSS_ENV": "production", "UPSS_STRIPE_SECRET_KEY": "sk_live_abc",
     "UPSS_STRIPE_WEBHOOK_SECRET": "whsec_real_endpoint", "UPSS_RATELIMIT_STORAGE": "redis",
     "UPSS_CONTACT_EMAIL": "help@upss.example.no", "UPSS_BASE_URL": "https://upss.example.no",
     "UPSS_MAIL_FROM": "UPSS <upss@upss.example.no>"},
])
def test_start_up_accepts_safe_settings(environ, request):
    """Development may use the local Stripe; production with a real key and secret, rate
    limits in Redis, a real contact address, its https address and its own sender, starts."""
    if environ.get("UPSS_RATELIMIT_STORAGE") == "redis":
        environ = {**environ, "UPSS_RATELIMIT_STORAGE": request.getfixturevalue("redis_url")}
    assert create_app(_settings(**environ)).config["UPSS_ENV"] == environ.get(
        "UPSS_ENV", "development")


# --- the demo can pay out at once -----------------------------------------------------------

@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_answerer_can_be_paid_out_at_once(app, runner, world):
    """seed-demo gives the answerer a valid IBAN; with UPSS_PAYOUT_AFTER_DAYS=0 the first batch
    pays them in a SEPA file straight away (the README's "Trying it")."""
    from tests.flows.test_payouts import earn
    from upss import earnings, sepa
    from upss.models import AnswererProfile, User

    app.config["UPSS_PAYOUT_AFTER_DAYS"] = 0
    assert runner.invoke(args=["upss", "seed-demo"]).exit_code == 0
    with app.app_context():
        answerer = db.session.scalar(select(User).where(User.email == "answerer@example.org"))
        profile = db.session.get(AnswererProfile, answerer.id)
        assert sepa.validate_iban(profile.iban) == profile.iban
        answerer_id = answerer.id
    earn(app, world, answerer_id, 1250)
    with app.test_request_context():
        batch = earnings.run_weekly_payouts(db.session, utcnow())
        db.session.commit()
        [payout] = batch.payouts
        assert (payout.answerer_id, payout.method, payout.status, payout.amount_cents) == (
            answerer_id, "sepa", "awaiting_bank", 1125)



@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_first_opens_of_the_pay_page_make_one_payment_intent(
        app, asker_client, live_server, localstripe_url):
    """Sixteen tabs open a new question's pay page at once: each gets the page, and Stripe
    made one PaymentIntent (the others were given it back for the same key). PostgreSQL only:
    on SQLite a transaction that read before another committed cannot write ("database is
    locked"), which issue 14 (double clicks everywhere) is to handle."""
    from concurrent.futures import ThreadPoolExecutor

    from upss.installation import installation_id

    ask(asker_client)
    cookie = asker_client.get_cookie("session").value
    with app.app_context():
        key = f"{installation_id(db.session)}:question:1:pay"

    def open_page(_):
        return requests.get(f"{live_server}/questions/1/pay", cookies={"session": cookie},
                            timeout=30).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(open_page, range(16)))
    assert statuses == [200] * 16
    made = [r for r in performed(localstripe_url, r"/v1/payment_intents")
            if r["idempotency_key"] == key]
    assert len(made) == 1
    q = detached(app, Question, 1)
    assert (q.status, q.payment_attempts) == ("awaiting_payment", 1)
