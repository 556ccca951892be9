"""The local Stripe's money (upss.devstripe): balance transactions with fees, the balance,
refunds, disputes and payouts to the platform's bank, and their events in the current API's
shapes, delivered and redelivered like Stripe's."""

from __future__ import annotations

import pytest
import requests
import stripe

from tests.conftest import devstripe_process, wait_until
from tests.stripe_contract import check_event_payload
from tests.webhook_receiver import WebhookReceiver
from upss.devstripe.money import card_fee

API_KEY = "sk_test_devstripe_money"
SECRET = "whsec_test_money_endpoint"
SECRET_FLAKY = "whsec_test_money_flaky"


@pytest.fixture(scope="module")
def url():
    """A devstripe process of this module's own."""
    with devstripe_process() as url:
        yield url


class Receiver(WebhookReceiver):
    """Every delivery to ``/hooks`` and ``/flaky`` (whose failures ``fail_next`` sets)."""

    def events(self, type_: str | None = None, object_id: str | None = None,
               path: str = "/hooks", *, delivered_only: bool = True) -> list[dict]:
        return self.received(path, type_, object_id, delivered_only=delivered_only)

    def wait_for(self, type_: str, object_id: str, count: int = 1,
                 path: str = "/hooks") -> list[dict]:
        found = self.wait_received(path, type_, object_id, count)
        for delivery in found:
            assert stripe.WebhookSignature.verify_header(
                delivery["body"], delivery["signature"],
                SECRET if path == "/hooks" else SECRET_FLAKY, tolerance=300)
        return found

    def one(self, type_: str, object_id: str) -> dict:
        return self.wait_for(type_, object_id)[0]["event"]


@pytest.fixture(scope="module")
def receiver(url):
    with Receiver().running() as receiver:
        for name, path, secret in (("money", "/hooks", SECRET),
                                   ("money-flaky", "/flaky", SECRET_FLAKY)):
            requests.post(f"{url}/_config/webhooks/{name}", timeout=5,
                          data={"url": receiver.url + path, "secret": secret}).raise_for_status()
        yield receiver


def client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)


def control(url: str, path: str, body: dict | None = None) -> dict:
    response = requests.post(f"{url}/_upss/{path}", json=body or {}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def get(url: str, path: str, **params) -> dict:
    response = requests.get(f"{url}/v1/{path}", params=params, timeout=5,
                            headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200, response.text
    return response.json()


def all_transactions(url: str) -> list[dict]:
    found, params = [], {"limit": 100}
    while True:
        page = get(url, "balance_transactions", **params)
        found += page["data"]
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


def balance(url: str) -> dict:
    """``{"available": eur, "pending": eur}``, checked against the balance transactions."""
    shown = get(url, "balance")
    assert shown["object"] == "balance" and shown["livemode"] is False
    txns = [t for t in all_transactions(url) if t["currency"] == "eur"]
    amounts = {}
    for status in ("available", "pending"):
        [eur] = [b for b in shown[status] if b["currency"] == "eur"]
        assert eur["source_types"] == {"card": eur["amount"]}
        assert eur["amount"] == sum(t["net"] for t in txns if t["status"] == status)
        amounts[status] = eur["amount"]
    return amounts


def pay(url: str, receiver: Receiver, amount: int = 1250) -> tuple[str, dict]:
    """A PaymentIntent paid by card; its charge once ``charge.updated`` gave it its balance
    transaction."""
    stripe_client = client(url)
    intent = stripe_client.v1.payment_intents.create(params={
        "amount": amount, "currency": "eur", "allowed_payment_method_types": ["card"]})
    stripe_client.v1.payment_intents.update(intent.id, params={"payment_method": "pm_card_visa"})
    paid = stripe_client.v1.payment_intents.confirm(intent.id)
    assert paid.status == "succeeded"
    charge_id = paid.latest_charge if isinstance(paid.latest_charge, str) else paid.latest_charge.id
    event = receiver.one("charge.updated", charge_id)
    assert event["data"]["previous_attributes"] == {"balance_transaction": None}
    return intent.id, event["data"]["object"]


def test_a_payment_gets_a_balance_transaction_with_the_card_fee(url, receiver):
    before = balance(url)
    _, charge = pay(url, receiver, 1250)
    assert charge["payment_intent"] and charge["amount"] == 1250
    txn = get(url, f"balance_transactions/{charge['balance_transaction']}")
    assert txn["id"].startswith("txn_") and txn["object"] == "balance_transaction"
    assert (txn["type"], txn["reporting_category"], txn["source"], txn["status"]) == (
        "charge", "charge", charge["id"], "pending")
    assert (txn["amount"], txn["fee"], txn["net"]) == (1250, 44, 1206)
    assert txn["fee_details"][0]["type"] == "stripe_fee"
    assert txn["fee_details"][0]["amount"] == 44
    assert get(url, f"charges/{charge['id']}")["balance_transaction"] == txn["id"]
    after = balance(url)
    assert after["pending"] == before["pending"] + 1206
    assert after["available"] == before["available"]
    listed = get(url, "balance_transactions", type="charge", source=charge["id"])
    assert [t["id"] for t in listed["data"]] == [txn["id"]]
    assert card_fee(1000) == 40 and card_fee(1250) == 44 and card_fee(100, 150, 0) == 2


def test_refund_events_balance_and_a_failed_refund(url, receiver):
    intent_id, charge = pay(url, receiver, 2000)
    before = balance(url)
    refund = client(url).v1.refunds.create(params={
        "payment_intent": intent_id, "amount": 500, "reason": "requested_by_customer",
        "metadata": {"question": "q1"}})
    assert (refund.status, refund.amount, refund.charge, refund.payment_intent) == (
        "succeeded", 500, charge["id"], intent_id)
    created = receiver.one("refund.created", refund.id)["data"]["object"]
    assert created["balance_transaction"] == refund.balance_transaction
    assert created["reason"] == "requested_by_customer"
    refunded = receiver.one("charge.refunded", charge["id"])["data"]["object"]
    assert (refunded["amount_refunded"], refunded["refunded"]) == (500, False)
    assert "refunds" not in refunded
    receiver.one("refund.updated", refund.id)
    txn = get(url, f"balance_transactions/{refund.balance_transaction}")
    assert (txn["type"], txn["amount"], txn["fee"], txn["source"]) == (
        "refund", -500, 0, refund.id)
    after = balance(url)
    assert after["available"] + after["pending"] == (
        before["available"] + before["pending"] - 500)

    failed = control(url, f"refunds/{refund.id}/fail")
    assert (failed["status"], failed["failure_reason"]) == ("failed", "lost_or_stolen_card")
    event = receiver.one("refund.failed", refund.id)["data"]["object"]
    assert event["failure_balance_transaction"] == failed["failure_balance_transaction"]
    back = get(url, f"balance_transactions/{failed['failure_balance_transaction']}")
    assert (back["type"], back["amount"]) == ("refund_failure", 500)
    assert balance(url) == before
    updates = receiver.wait_for("refund.updated", refund.id, 2)
    assert any(u["event"]["data"].get("previous_attributes", {}).get("status") == "succeeded"
               for u in updates)
    assert get(url, f"charges/{charge['id']}")["amount_refunded"] == 0

    # the rest, by charge; then nothing is left to refund
    rest = client(url).v1.refunds.create(params={"charge": charge["id"]})
    assert rest.amount == 2000
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client(url).v1.refunds.create(params={"charge": charge["id"], "amount": 1})
    assert caught.value.code == "charge_already_refunded"
    assert get(url, "refunds", charge=charge["id"])["data"][0]["id"] == rest.id


def test_disputes_withdraw_and_reinstate_funds(url, receiver):
    intent_id, charge = pay(url, receiver, 1250)
    before = balance(url)
    lost = control(url, "disputes", {"payment_intent": intent_id})
    assert lost["id"].startswith("dp_") and lost["status"] == "needs_response"
    assert (lost["charge"], lost["payment_intent"], lost["amount"]) == (
        charge["id"], intent_id, 1250)
    assert lost["evidence_details"]["due_by"] >= lost["created"] + 7 * 86400 - 86400
    receiver.one("charge.dispute.created", lost["id"])
    withdrawn = receiver.one("charge.dispute.funds_withdrawn", lost["id"])["data"]["object"]
    [txn] = withdrawn["balance_transactions"]
    assert (txn["type"], txn["reporting_category"], txn["amount"], txn["fee"], txn["net"]) == (
        "adjustment", "dispute", -1250, 1500, -2750)
    assert balance(url)["available"] == before["available"] - 2750
    assert get(url, f"charges/{charge['id']}")["disputed"] is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client(url).v1.refunds.create(params={"charge": charge["id"]})
    assert caught.value.code == "charge_disputed"
    updated = control(url, f"disputes/{lost['id']}/update", {"status": "under_review"})
    assert updated["status"] == "under_review"
    assert receiver.one("charge.dispute.updated", lost["id"])["data"]["previous_attributes"][
        "status"] == "needs_response"
    closed = control(url, f"disputes/{lost['id']}/close", {"outcome": "lost"})
    assert closed["status"] == "lost" and len(closed["balance_transactions"]) == 1
    receiver.one("charge.dispute.closed", lost["id"])
    assert balance(url)["available"] == before["available"] - 2750

    _, other = pay(url, receiver, 3000)
    middle = balance(url)
    won = control(url, "disputes", {"charge": other["id"], "reason": "product_not_received"})
    receiver.one("charge.dispute.funds_withdrawn", won["id"])
    control(url, f"disputes/{won['id']}/close", {"outcome": "won"})
    reinstated = receiver.one("charge.dispute.funds_reinstated", won["id"])["data"]["object"]
    assert reinstated["status"] == "won"
    back = reinstated["balance_transactions"][1]
    assert (back["reporting_category"], back["amount"], back["fee"], back["net"]) == (
        "dispute_reversal", 3000, -1500, 4500)
    assert balance(url) == middle
    assert get(url, f"disputes/{won['id']}")["status"] == "won"
    assert won["id"] in [d["id"] for d in get(url, "disputes")["data"]]

    _, third = pay(url, receiver, 900)
    middle = balance(url)
    inquiry = control(url, "disputes", {"charge": third["id"], "inquiry": True})
    assert inquiry["status"] == "warning_needs_response"
    assert inquiry["balance_transactions"] == [] and inquiry["is_charge_refundable"] is True
    receiver.one("charge.dispute.created", inquiry["id"])
    closed = control(url, f"disputes/{inquiry['id']}/close", {"outcome": "won"})
    assert closed["status"] == "warning_closed" and closed["balance_transactions"] == []
    receiver.one("charge.dispute.closed", inquiry["id"])
    assert receiver.events("charge.dispute.funds_withdrawn", inquiry["id"]) == []
    assert balance(url) == middle


def test_payouts_to_the_bank(url, receiver):
    pay(url, receiver, 10_000)
    made = control(url, "balance/available")
    assert made["made_available"] >= 1 and made["balance"]["pending"][0]["amount"] == 0
    before = balance(url)
    payout = control(url, "payouts", {"amount": 5000, "currency": "eur"})
    assert (payout["status"], payout["destination"], payout["automatic"]) == (
        "in_transit", "ba_local", True)
    receiver.one("payout.created", payout["id"])
    assert balance(url)["available"] == before["available"] - 5000
    paid = control(url, f"payouts/{payout['id']}/paid")
    assert paid["status"] == "paid"
    assert receiver.one("payout.paid", payout["id"])["data"]["object"]["status"] == "paid"
    assert get(url, f"payouts/{payout['id']}")["status"] == "paid"

    failing = control(url, "payouts", {"amount": 1000})
    failed = control(url, f"payouts/{failing['id']}/failed")
    assert failed["status"] == "failed" and failed["failure_code"]
    event = receiver.one("payout.failed", failing["id"])["data"]["object"]
    txn = get(url, f"balance_transactions/{event['failure_balance_transaction']}")
    assert (txn["type"], txn["amount"]) == ("payout_failure", 1000)
    canceled = control(url, "payouts", {"amount": 700})
    control(url, f"payouts/{canceled['id']}/canceled")
    receiver.one("payout.canceled", canceled["id"])
    assert [t["type"] for t in get(url, "balance_transactions", source=canceled["id"])[
        "data"]] == ["payout_cancel", "payout"]
    assert balance(url)["available"] == before["available"] - 5000
    assert {p["id"] for p in get(url, "payouts")["data"]} >= {
        payout["id"], failing["id"], canceled["id"]}


def test_transfers_have_real_balance_transactions(url, receiver):
    account = client(url).v1.accounts.create(params={
        "type": "express", "country": "FI", "capabilities": {"transfers": {"requested": True}}})
    control(url, f"connect/accounts/{account.id}", {"state": "enabled"})
    before = balance(url)
    transfer = client(url).v1.transfers.create(params={
        "amount": 800, "currency": "eur", "destination": account.id})
    txn = get(url, f"balance_transactions/{transfer.balance_transaction}")
    assert (txn["type"], txn["amount"], txn["source"]) == ("transfer", -800, transfer.id)
    reversal = client(url).v1.transfers.reversals.create(transfer.id, params={"amount": 300})
    back = get(url, f"balance_transactions/{reversal.balance_transaction}")
    assert (back["type"], back["amount"], back["source"]) == ("transfer_refund", 300, reversal.id)
    assert balance(url)["available"] == before["available"] - 500


def test_every_event_has_the_current_shape_and_copies_reach_the_endpoint(url, receiver):
    _, charge = pay(url, receiver, 1500)
    log = requests.get(f"{url}/_upss/events", timeout=5).json()["events"]
    types = {e["type"] for e in log}
    assert {"charge.updated", "refund.created", "charge.refunded", "refund.updated",
            "refund.failed", "charge.dispute.created", "charge.dispute.funds_withdrawn",
            "charge.dispute.updated", "charge.dispute.closed",
            "charge.dispute.funds_reinstated", "payout.created", "payout.paid",
            "payout.failed", "payout.canceled", "balance.available"} <= types
    for event in log:
        payload = {k: v for k, v in event.items() if k not in ("deliveries", "attempts")}
        assert check_event_payload(payload) == [], event["type"]
    delivered = [d["event"] for d in receiver.events()]
    assert delivered
    for event in delivered:
        if event["api_version"] != "2017-08-15":  # localstripe's own, older events
            assert check_event_payload(event) == [], event["type"]
    listed = get(url, "events", type="charge.updated", limit=100)
    assert charge["id"] in [e["data"]["object"]["id"] for e in listed["data"]]
    only = requests.get(f"{url}/_upss/events", params={"type": "charge.updated"},
                        timeout=5).json()["events"]
    [event] = [e for e in only if e["data"]["object"]["id"] == charge["id"]]
    assert event["attempts"]["money"][0]["status"] == 200
    assert get(url, f"events/{event['id']}")["type"] == "charge.updated"

    answer = control(url, f"events/{event['id']}/deliver", {"copies": 10})
    assert answer["statuses"]["money"] == [200] * 10
    copies = wait_until(lambda: (lambda got: got if len(got) >= 11 else None)(
        receiver.events("charge.updated", charge["id"])), timeout=5, interval=0.05)
    assert len(copies) == 11  # the delivery and ten copies
    for copy_ in copies:
        assert stripe.WebhookSignature.verify_header(copy_["body"], copy_["signature"], SECRET,
                                                     tolerance=300)


def test_an_endpoint_answering_500_gets_the_event_again(url, receiver):
    payout = control(url, "payouts", {"amount": 100})
    receiver.one("payout.created", payout["id"])
    with receiver.lock:
        receiver.fail_next[("/flaky", "payout.paid", payout["id"])] = 1
    control(url, f"payouts/{payout['id']}/paid")
    [delivery] = receiver.wait_for("payout.paid", payout["id"], path="/flaky")
    attempts = receiver.events("payout.paid", payout["id"], "/flaky", delivered_only=False)
    assert [a["failed"] for a in attempts] == [True, False]
    assert attempts[0]["event"]["id"] == delivery["event"]["id"]
    assert len(receiver.events("payout.paid", payout["id"])) == 1  # the other endpoint: once
    [logged] = [e for e in requests.get(f"{url}/_upss/events", params={"type": "payout.paid"},
                                        timeout=5).json()["events"]
                if e["id"] == delivery["event"]["id"]]
    assert [a["status"] for a in logged["attempts"]["money-flaky"]] == [500, 200]
    assert logged["deliveries"]["money-flaky"] == {
        "attempts": 2, "delivered": True, "last_status": 200}
