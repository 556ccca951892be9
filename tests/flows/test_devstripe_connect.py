"""The local Stripe's Connect (upss.devstripe): accounts, onboarding links and the local
onboarding page, transfers, reversals, and their events at platform and Connect endpoints."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests
import stripe

from tests.conftest import devstripe_process
from tests.webhook_receiver import WebhookReceiver
from upss.devstripe.connect import ACCOUNT_LINK_TTL, Connect

API_KEY = "sk_test_devstripe_connect"
CONNECT_SECRET = "whsec_test_connect_endpoint"
PLATFORM_SECRET = "whsec_test_platform_endpoint"
CONNECT_ENDPOINT = "devstripe-connect-test"
RETURN_URL = "https://upss.example/answerer/stripe/return"
REFRESH_URL = "https://upss.example/answerer/stripe/refresh"
EXPRESS = {
    "controller": {"stripe_dashboard": {"type": "express"}, "fees": {"payer": "application"},
                   "losses": {"payments": "application"}, "requirement_collection": "stripe"},
    "capabilities": {"transfers": {"requested": True}},
    "country": "FI",
}


@pytest.fixture(scope="module")
def devstripe_url():
    """A devstripe process of this module's own, so its faults, log and endpoints are ours."""
    with devstripe_process() as url:
        yield url


class Receiver(WebhookReceiver):
    """Webhook deliveries to ``/connect`` and ``/platform``."""

    def events(self, path: str, type_: str | None = None, object_id: str | None = None,
               *, delivered_only: bool = True) -> list[dict]:
        return self.received(path, type_, object_id, delivered_only=delivered_only)

    def wait_for(self, path: str, type_: str, object_id: str, count: int = 1) -> list[dict]:
        return self.wait_received(path, type_, object_id, count)


@pytest.fixture(scope="module")
def receiver(devstripe_url):
    """One receiver, registered as a Connect endpoint (/connect) and as a normal one (/platform)."""
    with Receiver().running() as receiver:
        requests.post(f"{devstripe_url}/_config/connect_webhooks/{CONNECT_ENDPOINT}", timeout=5,
                      data={"url": f"{receiver.url}/connect", "secret": CONNECT_SECRET}
                      ).raise_for_status()
        requests.post(f"{devstripe_url}/_config/webhooks/devstripe-platform-test", timeout=5,
                      data={"url": f"{receiver.url}/platform", "secret": PLATFORM_SECRET}
                      ).raise_for_status()
        yield receiver


@pytest.fixture(autouse=True)
def no_faults_left(devstripe_url):
    yield
    requests.delete(f"{devstripe_url}/_upss/faults", timeout=5).raise_for_status()


def client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def express_account(url: str, **extra):
    return client(url).v1.accounts.create(params={**EXPRESS, "email": "answerer@example.com",
                                                  "metadata": {"user": "42"}, **extra})


def enabled_account(url: str):
    account = express_account(url)
    response = requests.post(f"{url}/_upss/connect/accounts/{account.id}",
                             json={"state": "enabled"}, timeout=5)
    response.raise_for_status()
    assert response.json()["capabilities"] == {"transfers": "active"}
    return account


def onboarding_link(url: str, account_id: str) -> str:
    link = client(url).v1.account_links.create(params={
        "account": account_id, "type": "account_onboarding", "refresh_url": REFRESH_URL,
        "return_url": RETURN_URL, "collection_options": {"fields": "currently_due"}})
    assert link.object == "account_link"
    assert link.expires_at == link.created + ACCOUNT_LINK_TTL
    assert link.url.startswith(f"{url}/_upss/connect/onboarding/")
    return link.url


def open_page(link_url: str) -> str:
    """GET the onboarding page; the visit's session, from its form."""
    page = requests.get(link_url, allow_redirects=False, timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    return re.search(r'name="session" value="([^"]+)"', page.text).group(1)


def submit(link_url: str, session: str, action: str) -> requests.Response:
    return requests.post(link_url, data={"session": session, "action": action},
                         allow_redirects=False, timeout=5)


def transfer(url: str, destination: str, group: str, amount: int = 1500, key: str | None = None):
    return client(url).v1.transfers.create(
        params={"amount": amount, "currency": "eur", "destination": destination,
                "transfer_group": group, "metadata": {"question": group},
                "description": f"Answer to {group}"},
        options={"idempotency_key": key or new_key()})


def test_new_express_account_needs_details_and_cannot_receive_transfers(devstripe_url):
    """A new Express account: details needed, transfers inactive; a transfer to it: 400."""
    account = express_account(devstripe_url)
    assert account.id.startswith("acct_")
    assert account.object == "account"
    assert account.type == "express"
    assert (account.details_submitted, account.charges_enabled, account.payouts_enabled) == (
        False, False, False)
    assert account.capabilities.to_dict() == {"transfers": "inactive"}
    assert "external_account" in account.requirements.currently_due
    assert "individual.first_name" in account.requirements.currently_due
    assert account.requirements.disabled_reason == "requirements.past_due"
    controller = account.controller.to_dict()
    assert controller["stripe_dashboard"] == {"type": "express"}
    assert controller["fees"] == {"payer": "application"}
    assert controller["type"] == "application"
    assert (account.email, account.country, account.metadata.to_dict()) == (
        "answerer@example.com", "FI", {"user": "42"})
    assert client(devstripe_url).v1.accounts.retrieve(account.id).to_dict() == account.to_dict()
    assert account.id in [a.id for a in client(devstripe_url).v1.accounts.list().data]

    with pytest.raises(stripe.InvalidRequestError) as caught:
        transfer(devstripe_url, account.id, "q-inactive")
    assert caught.value.http_status == 400
    assert caught.value.param == "destination"
    assert caught.value.code == "insufficient_capabilities_for_transfer"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        transfer(devstripe_url, "acct_1Unknown0000000", "q-unknown")
    assert (caught.value.http_status, caught.value.param) == (400, "destination")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client(devstripe_url).v1.accounts.retrieve("acct_1Unknown0000000")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


def test_onboarding_completes_the_account_and_sends_account_updated_to_connect_only(
        devstripe_url, receiver, stripe_contract):
    """Link -> page -> Complete: 303 to return_url, the account enabled, account.updated with
    its account at the Connect endpoint, signed with the Connect secret, not at the normal one."""
    account = express_account(devstripe_url)
    link_url = onboarding_link(devstripe_url, account.id)
    page = requests.get(link_url, allow_redirects=False, timeout=5)
    assert page.status_code == 200
    assert page.text.startswith("<!doctype html>\n<html lang=\"en\">")
    for part in ("<title>", "<main>", "<h1>Stripe test onboarding (local)</h1>", account.id,
                 f'<form method="post" action="{link_url.removeprefix(devstripe_url)}">',
                 'name="action" value="complete">Complete onboarding</button>',
                 'name="action" value="leave">Leave without finishing</button>'):
        assert part in page.text
    session = re.search(r'name="session" value="([^"]+)"', page.text).group(1)

    done = submit(link_url, session, "complete")
    assert done.status_code == 303
    assert done.headers["Location"] == RETURN_URL
    enabled = client(devstripe_url).v1.accounts.retrieve(account.id)
    assert (enabled.details_submitted, enabled.charges_enabled, enabled.payouts_enabled) == (
        True, True, True)
    assert enabled.capabilities.to_dict() == {"transfers": "active"}
    assert enabled.requirements.currently_due == []
    assert enabled.requirements.disabled_reason is None

    [delivery] = receiver.wait_for("/connect", "account.updated", account.id)
    event = delivery["event"]
    assert event["account"] == account.id
    assert event["data"]["object"]["payouts_enabled"] is True
    assert event["data"]["previous_attributes"]["payouts_enabled"] is False
    assert stripe_contract.check_event_payload(event) == []
    assert stripe.WebhookSignature.verify_header(delivery["body"], delivery["signature"],
                                                 CONNECT_SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(delivery["body"], delivery["signature"],
                                              PLATFORM_SECRET, tolerance=300)
    log = requests.get(f"{devstripe_url}/_upss/connect/events", timeout=5).json()["events"]
    [made] = [e for e in log if e["id"] == event["id"]]
    assert list(made["deliveries"]) == [CONNECT_ENDPOINT]
    time.sleep(0.4)  # a platform delivery would have been made by now
    assert receiver.events("/platform", "account.updated", account.id,
                           delivered_only=False) == []


def test_a_used_or_expired_link_redirects_to_refresh_url(devstripe_url):
    """A link opens once: a second visit, a post after it was used, and an expired link all go
    to refresh_url. Leave goes to return_url and changes nothing."""
    account = express_account(devstripe_url)
    link_url = onboarding_link(devstripe_url, account.id)
    session = open_page(link_url)
    again = requests.get(link_url, allow_redirects=False, timeout=5)
    assert (again.status_code, again.headers["Location"]) == (303, REFRESH_URL)

    left = submit(link_url, session, "leave")
    assert (left.status_code, left.headers["Location"]) == (303, RETURN_URL)
    assert client(devstripe_url).v1.accounts.retrieve(account.id).payouts_enabled is False
    after = submit(link_url, session, "complete")
    assert (after.status_code, after.headers["Location"]) == (303, REFRESH_URL)
    assert client(devstripe_url).v1.accounts.retrieve(account.id).payouts_enabled is False

    expired_url = onboarding_link(devstripe_url, account.id)
    expired = requests.post(f"{devstripe_url}/_upss/connect/account_links/expire",
                            json={"account": account.id}, timeout=5)
    assert expired.json() == {"expired": 1}
    visit = requests.get(expired_url, allow_redirects=False, timeout=5)
    assert (visit.status_code, visit.headers["Location"]) == (303, REFRESH_URL)
    unknown = requests.get(f"{devstripe_url}/_upss/connect/onboarding/nope", timeout=5)
    assert unknown.status_code == 404


def test_links_expire_300_seconds_after_creation():
    """The store: a link opens until 300 s after creation, then it is expired (injected clock)."""
    now = [1_000_000.0]
    connect = Connect(clock=lambda: now[0])
    account = connect.create_account(dict(EXPRESS, capabilities={
        "transfers": {"requested": "true"}}))
    params = {"account": account["id"], "type": "account_onboarding",
              "refresh_url": REFRESH_URL, "return_url": RETURN_URL}
    late = connect.create_account_link(params, "http://127.0.0.1:1")
    in_time = connect.create_account_link(params, "http://127.0.0.1:1")
    assert late["expires_at"] == 1_000_300
    now[0] += ACCOUNT_LINK_TTL - 1
    assert connect.open_link(in_time["url"].rsplit("/", 1)[1])[0] == Connect.OPEN
    now[0] += 1
    assert connect.open_link(late["url"].rsplit("/", 1)[1])[0] == Connect.EXPIRED


def test_transfers_are_found_by_group_and_one_per_idempotency_key(devstripe_url, receiver,
                                                                   stripe_contract):
    """A transfer with a transfer_group is listed by it; the same key twice is one transfer;
    transfer.created goes to the normal endpoint, signed with its secret."""
    account = enabled_account(devstripe_url)
    group = f"question-{uuid.uuid4()}"
    key = new_key()
    first = transfer(devstripe_url, account.id, group, key=key)
    second = transfer(devstripe_url, account.id, group, key=key)
    assert second.id == first.id
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert first.id.startswith("tr_")
    assert (first.amount, first.currency, first.destination, first.transfer_group) == (
        1500, "eur", account.id, group)
    assert (first.amount_reversed, first.reversed, first.livemode) == (0, False, False)
    assert first.balance_transaction.startswith("txn_")
    assert first.destination_payment.startswith("py_")
    assert first.reversals.to_dict() == {
        "object": "list", "data": [], "has_more": False, "total_count": 0,
        "url": f"/v1/transfers/{first.id}/reversals"}
    assert (first.source_transaction, first.source_type) == (None, "card")
    assert first.metadata.to_dict() == {"question": group}

    listed = client(devstripe_url).v1.transfers.list(params={"transfer_group": group})
    assert [t.id for t in listed.data] == [first.id]
    assert client(devstripe_url).v1.transfers.retrieve(first.id).id == first.id

    [delivery] = receiver.wait_for("/platform", "transfer.created", first.id)
    assert "account" not in delivery["event"]
    assert delivery["event"]["request"]["idempotency_key"] == key
    assert stripe_contract.check_event_payload(delivery["event"]) == []
    assert stripe.WebhookSignature.verify_header(delivery["body"], delivery["signature"],
                                                 PLATFORM_SECRET, tolerance=300)
    assert receiver.events("/connect", "transfer.created", first.id) == []


def test_dropped_transfer_response_then_retry_is_one_transfer(devstripe_url):
    """drop_after on POST /v1/transfers: a connection error; the retry with the same key gets
    the transfer made, and the group holds exactly one."""
    account = enabled_account(devstripe_url)
    group = f"question-{uuid.uuid4()}"
    key = new_key()
    requests.post(f"{devstripe_url}/_upss/faults", timeout=5, json={
        "method": "POST", "path": "/v1/transfers", "mode": "drop_after"}).raise_for_status()
    with pytest.raises(stripe.APIConnectionError):
        transfer(devstripe_url, account.id, group, key=key)
    retried = transfer(devstripe_url, account.id, group, key=key)
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    listed = client(devstripe_url).v1.transfers.list(params={"transfer_group": group})
    assert [t.id for t in listed.data] == [retried.id]


def test_transfer_list_is_newest_first_and_pages(devstripe_url):
    """transfers.list by destination: newest first; limit, starting_after, ending_before."""
    account = enabled_account(devstripe_url)
    made = [transfer(devstripe_url, account.id, f"page-{n}", amount=100 + n).id
            for n in range(3)]
    transfers = client(devstripe_url).v1.transfers
    page = transfers.list(params={"destination": account.id, "limit": 2})
    assert [t.id for t in page.data] == made[::-1][:2]
    assert page.has_more is True
    rest = transfers.list(params={"destination": account.id, "starting_after": made[1]})
    assert ([t.id for t in rest.data], rest.has_more) == ([made[0]], False)
    before = transfers.list(params={"destination": account.id, "ending_before": made[0]})
    assert [t.id for t in before.data] == made[:0:-1]
    recent = transfers.list(params={"destination": account.id,
                                    "created": {"gte": int(time.time()) - 60}})
    assert len(recent.data) == 3


def test_reversals_partial_then_the_rest_and_not_more(devstripe_url, receiver, stripe_contract):
    """A partial reversal, then the rest: amount_reversed, reversed; transfer.reversed at the
    normal endpoint each time; reversing more than is left: 400."""
    account = enabled_account(devstripe_url)
    made = transfer(devstripe_url, account.id, f"question-{uuid.uuid4()}", amount=1000)
    reversals = client(devstripe_url).v1.transfers.reversals
    part = reversals.create(made.id, params={"amount": 400, "metadata": {"why": "refund"}},
                            options={"idempotency_key": new_key()})
    assert part.object == "transfer_reversal"
    assert part.id.startswith("trr_")
    assert (part.amount, part.currency, part.transfer, part.source_refund) == (
        400, "eur", made.id, None)
    assert part.metadata.to_dict() == {"why": "refund"}
    after_part = client(devstripe_url).v1.transfers.retrieve(made.id)
    assert (after_part.amount_reversed, after_part.reversed) == (400, False)
    assert [r.id for r in after_part.reversals.data] == [part.id]

    with pytest.raises(stripe.InvalidRequestError) as caught:
        reversals.create(made.id, params={"amount": 601})
    assert (caught.value.http_status, caught.value.param) == (400, "amount")

    rest = reversals.create(made.id, options={"idempotency_key": new_key()})
    assert rest.amount == 600
    done = client(devstripe_url).v1.transfers.retrieve(made.id)
    assert (done.amount_reversed, done.reversed, done.reversals.total_count) == (1000, True, 2)
    assert [r.id for r in reversals.list(made.id).data] == [rest.id, part.id]
    assert reversals.retrieve(made.id, part.id).amount == 400
    with pytest.raises(stripe.InvalidRequestError):
        reversals.create(made.id, params={"amount": 1})

    events = receiver.wait_for("/platform", "transfer.reversed", made.id, count=2)
    reversed_amounts = sorted(d["event"]["data"]["object"]["amount_reversed"] for d in events)
    assert reversed_amounts == [400, 1000]
    for delivery in events:
        assert stripe_contract.check_event_payload(delivery["event"]) == []
        assert stripe.WebhookSignature.verify_header(delivery["body"], delivery["signature"],
                                                     PLATFORM_SECRET, tolerance=300)


def test_connect_events_are_retried_after_a_failure(devstripe_url, receiver):
    """The Connect endpoint answers 500 once: account.updated comes again and is delivered."""
    account = express_account(devstripe_url)
    with receiver.lock:
        receiver.fail_next["/connect"] = 1
    requests.post(f"{devstripe_url}/_upss/connect/accounts/{account.id}",
                  json={"state": "enabled"}, timeout=5).raise_for_status()
    [delivery] = receiver.wait_for("/connect", "account.updated", account.id)
    attempts = receiver.events("/connect", "account.updated", account.id, delivered_only=False)
    assert [a["failed"] for a in attempts] == [True, False]
    assert attempts[0]["event"]["id"] == delivery["event"]["id"]
    log = requests.get(f"{devstripe_url}/_upss/connect/events", timeout=5).json()["events"]
    [made] = [e for e in log if e["id"] == delivery["event"]["id"]]
    assert made["deliveries"][CONNECT_ENDPOINT] == {
        "attempts": 2, "delivered": True, "last_status": 200}

    back = requests.post(f"{devstripe_url}/_upss/connect/accounts/{account.id}",
                         json={"state": "details_needed"}, timeout=5).json()
    assert (back["payouts_enabled"], back["capabilities"]) == (False, {"transfers": "inactive"})
    assert back["requirements"]["disabled_reason"] == "requirements.past_due"
    assert len(receiver.wait_for("/connect", "account.updated", account.id, count=2)) == 2


def test_unknown_parameters_are_refused(devstripe_url, stripe_contract):
    """A parameter the API does not have, top-level or nested: 400 parameter_unknown."""
    for params, param in (({**EXPRESS, "payout_schedule": "daily"}, "payout_schedule"),
                          ({**EXPRESS, "controller": {"dashboard": "express"}},
                           "controller[dashboard]")):
        with stripe_contract.expect_violations() as violations:
            with pytest.raises(stripe.InvalidRequestError) as caught:
                client(devstripe_url).v1.accounts.create(params=params)
        assert violations  # the contract plugin saw it too
        assert caught.value.http_status == 400
        assert caught.value.code == "parameter_unknown"
        assert caught.value.param == param
        assert caught.value.json_body["error"]["message"] == (
            f"Received unknown parameter: {param}")
