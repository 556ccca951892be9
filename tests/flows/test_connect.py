"""Stripe Connect for answerers: onboarding through the pages, and ``account.updated`` at the
separate Connect webhook endpoint with its own secret."""

from __future__ import annotations

import json
import re
import time

import requests
import stripe
from sqlalchemy import select

from tests.conftest import detached, sign_in, submit, wait_until
from upss.extensions import db
from upss.models import AnswererProfile, StripeEvent
from upss.stripe_gateway import STRIPE_API_VERSION


def connect_answerer_client(client, world) -> int:
    """The test client signed in as an approved answerer who chose Stripe, not set up yet."""
    answerer = world.answerer(payout_method="connect")
    sign_in(client, f"answerer{world.count}@example.org", "correct horse 9")
    return answerer


def profile(app, answerer: int) -> AnswererProfile:
    return detached(app, AnswererProfile, answerer)


def complete_onboarding(url: str) -> requests.Response:
    """What the answerer does on Stripe's page: open it and press "Complete onboarding"."""
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and "Complete onboarding" in page.text
    session = re.search(r'name="session" value="([^"]+)"', page.text).group(1)
    return requests.post(url, data={"session": session, "action": "complete"},
                         allow_redirects=False, timeout=5)


def test_onboarding_through_the_pages_enables_payouts(app, client, world, localstripe_url):
    """"Set up payouts with Stripe" makes the account once and sends the answerer to Stripe's
    onboarding; back on UPSS the earnings page says payouts are enabled."""
    answerer = connect_answerer_client(client, world)
    page = client.get("/answer/earnings").get_data(as_text=True)
    assert "Set up payouts with Stripe" in page

    start = submit(client, "/answer/earnings/connect", {}, form_url="/answer/earnings")
    assert start.status_code == 302
    url = start.headers["Location"]
    assert url.startswith(f"{localstripe_url}/_upss/connect/onboarding/")
    account = profile(app, answerer).stripe_account_id
    assert account and account.startswith("acct_")
    assert profile(app, answerer).connect_payouts_enabled is False
    assert "Stripe still needs some details" in client.get("/answer/earnings").get_data(
        as_text=True)

    back = complete_onboarding(url)
    assert back.status_code == 303
    assert back.headers["Location"] == "http://localhost/answer/earnings/connect/return"
    returned = client.get("/answer/earnings/connect/return", follow_redirects=True)
    text = returned.get_data(as_text=True)
    assert "Payouts are enabled: your earnings will be paid to your Stripe account." in text
    assert "Payouts enabled:" in text
    done = profile(app, answerer)
    assert (done.stripe_account_id, done.connect_payouts_enabled,
            done.connect_details_submitted) == (account, True, True)

    again = submit(client, "/answer/earnings/connect", {}, form_url="/answer/earnings")
    assert again.status_code == 302 and profile(app, answerer).stripe_account_id == account


def test_a_used_onboarding_link_leads_to_a_fresh_one(app, client, world, localstripe_url):
    """Stripe's link is single use: coming back through it goes to the refresh URL, which sends
    the answerer to a new link for the same account."""
    connect_answerer_client(client, world)
    url = submit(client, "/answer/earnings/connect", {},
                 form_url="/answer/earnings").headers["Location"]
    requests.get(url, timeout=5)
    stale = requests.get(url, allow_redirects=False, timeout=5)
    assert stale.headers["Location"] == "http://localhost/answer/earnings/connect/refresh"
    fresh = client.get("/answer/earnings/connect/refresh")
    assert fresh.status_code == 302 and fresh.headers["Location"] != url
    assert fresh.headers["Location"].startswith(f"{localstripe_url}/_upss/connect/onboarding/")


def test_an_answerer_paid_by_bank_has_no_onboarding(app, client, world):
    """Only answerers who chose Stripe can start onboarding."""
    world.answerer(payout_method="sepa", iban="FI2112345600000785")
    sign_in(client, f"answerer{world.count}@example.org", "correct horse 9")
    assert "Set up payouts with Stripe" not in client.get("/answer/earnings").get_data(
        as_text=True)
    assert submit(client, "/answer/earnings/connect", {},
                  form_url="/answer/earnings").status_code == 404


def test_account_updated_arrives_at_the_connect_endpoint(app, client, world, live_server,
                                                         localstripe_url):
    """The local Stripe sends ``account.updated`` to the Connect endpoint (its own secret):
    enabling and later losing the transfers capability are both applied."""
    answerer = connect_answerer_client(client, world)
    url = submit(client, "/answer/earnings/connect", {},
                 form_url="/answer/earnings").headers["Location"]
    complete_onboarding(url)
    wait_until(lambda: profile(app, answerer).connect_payouts_enabled, timeout=10)
    account = profile(app, answerer).stripe_account_id
    requests.post(f"{localstripe_url}/_upss/connect/accounts/{account}",
                  json={"state": "details_needed"}, timeout=5).raise_for_status()
    wait_until(lambda: not profile(app, answerer).connect_payouts_enabled, timeout=10)
    with app.app_context():
        outcomes = [e.outcome for e in db.session.scalars(
            select(StripeEvent).where(StripeEvent.type == "account.updated")
            .order_by(StripeEvent.received_at))]
    assert outcomes[0] == "applied: account payouts enabled"
    assert outcomes[-1] == "applied: account details needed"


def _account_event(account_id: str) -> str:
    return json.dumps({
        "id": "evt_connect_1", "object": "event", "type": "account.updated",
        "api_version": STRIPE_API_VERSION, "created": int(time.time()), "account": account_id,
        "data": {"object": {"id": account_id, "object": "account", "details_submitted": True,
                            "capabilities": {"transfers": "active"},
                            "requirements": {"currently_due": []}}}})


def _post(client, path: str, body: str, secret: str):
    header = stripe.WebhookSignature.generate_signature_header(body, secret,
                                                               timestamp=int(time.time()))
    return client.post(path, data=body, headers={"Content-Type": "application/json",
                                                 "Stripe-Signature": header})


def test_the_connect_endpoint_has_its_own_secret(app, client, world):
    """An event signed with the account endpoint's secret is refused at the Connect endpoint,
    and the other way round; signed right, it is applied once."""
    answerer = world.answerer(payout_method="connect", stripe_account_id="acct_hand")
    body = _account_event("acct_hand")
    account_secret = app.config["UPSS_STRIPE_WEBHOOK_SECRET"]
    connect_secret = app.config["UPSS_STRIPE_CONNECT_WEBHOOK_SECRET"]
    assert _post(client, "/stripe/connect-webhook", body, account_secret).status_code == 400
    assert _post(client, "/stripe/webhook", body, connect_secret).status_code == 400
    assert profile(app, answerer).connect_payouts_enabled is False
    applied = _post(client, "/stripe/connect-webhook", body, connect_secret)
    assert applied.get_json()["outcome"] == "applied: account payouts enabled"
    assert _post(client, "/stripe/connect-webhook", body,
                 connect_secret).get_json()["outcome"] == "duplicate"
    assert profile(app, answerer).connect_payouts_enabled is True
