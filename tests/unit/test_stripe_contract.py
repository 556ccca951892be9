"""The Stripe contract plugin (tests/stripe_contract.py) itself: its map, its checks, its hooks.

Pure: no database, no app, no localstripe. The one network call goes to a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import threading
import time

import pytest
import stripe
from stripe._api_requestor import _APIRequestor
from stripe.params import PaymentIntentCreateParams
from typing_extensions import is_typeddict

from tests import stripe_contract as contract

CREATE_PI = ("post", "/v1/payment_intents")


def test_the_map_is_built_from_the_library_quickly():
    """The map covers every service of the installed library, read in well under two seconds."""
    contract._MAP = None  # rebuild, to time it
    started = time.perf_counter()
    endpoints = contract.endpoint_map()
    assert time.perf_counter() - started < 2.0
    assert endpoints.unparsed == []  # every service call's method and url were understood
    assert len(endpoints) > 500
    assert any(name.startswith("stripe.v2.") for name in endpoints.services)
    assert ("get", "/v2/core/account_tokens/{id}") in endpoints


def test_payment_intent_create_maps_to_its_params_typed_dict():
    assert contract.endpoint_map()[CREATE_PI].params_type is PaymentIntentCreateParams


def test_every_service_method_of_every_service_class_is_in_the_map():
    """Introspection agrees with the source reading: each public method of each service class
    reachable from StripeClient that sends a request is a source of some endpoint."""
    endpoints = contract.endpoint_map()
    sources = {source for e in endpoints.endpoints.values() for source in e.sources}
    for name in endpoints.services:
        module_name, class_name = name.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        for method, function in vars(cls).items():
            if method.startswith("_") or not inspect.isfunction(function):
                continue
            if f"{name}.{method}" not in sources:
                # only helpers that send nothing may be missing (OAuth's authorize_url)
                assert (name, method) == ("stripe._oauth_service.OAuthService",
                                          "authorize_url"), f"{name}.{method} not mapped"


def test_every_params_typed_dict_resolves():
    for endpoint in contract.endpoint_map().endpoints.values():
        for td in endpoint.params_types:
            assert td is None or is_typeddict(td), endpoint
            assert td is None or isinstance(contract.typed_dict_fields(td), dict)


def test_literal_segments_beat_placeholders():
    [search] = contract.endpoint_map().match("get", "/v1/payment_intents/search")
    assert search.template == "/v1/payment_intents/search"
    [retrieve] = contract.endpoint_map().match("get", "/v1/payment_intents/pi_123")
    assert retrieve.template == "/v1/payment_intents/{intent}"
    assert contract.check_request("get", "/v1/payment_intents/search", {"query": "x"}) == []


def test_payment_method_types_on_create_is_a_violation():
    """The call the app used to make (upss/stripe_gateway.py create_payment_intent): the
    parameter was removed in API 2026-10-28.endive, localstripe still took it."""
    problems = contract.check_request("post", "/v1/payment_intents", {
        "amount": 1250, "currency": "eur", "payment_method_types": ["card"],
        "metadata": {"question_id": "1"}})
    assert len(problems) == 1
    assert "payment_method_types" in problems[0]
    assert "PaymentIntentCreateParams" in problems[0]


def test_the_current_create_parameters_are_fine():
    assert contract.check_request("post", "/v1/payment_intents", {
        "amount": 1250, "currency": "eur", "allowed_payment_method_types": ["card"],
        "automatic_payment_methods": {"enabled": True},
        "metadata": {"question_id": "1", "anything at all": "goes"},
        "expand": ["latest_charge"]}) == []


def test_an_unknown_nested_key_is_a_violation():
    problems = contract.check_request("post", "/v1/payment_intents", {
        "amount": 1, "currency": "eur", "automatic_payment_methods": {"enabled": True,
                                                                      "bogus": 1}})
    assert len(problems) == 1 and "automatic_payment_methods.bogus" in problems[0]
    problems = contract.check_request("post", "/v1/payment_methods", {
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                 "exp_year": 2034, "cvc": "123", "foo": "x"}})
    assert len(problems) == 1 and "card.foo" in problems[0]


def test_nested_objects_and_lists_are_checked():
    assert contract.check_request("post", "/v1/payment_intents", {
        "amount": 1, "currency": "eur", "metadata": {"x": {"nested": "no"}}})[0].startswith(
        "POST /v1/payment_intents: metadata.x: an object")
    problems = contract.check_request("post", "/v1/checkout/sessions", {
        "mode": "payment", "line_items": [{"price": "price_1", "quantity": 1},
                                          {"price": "price_2", "quantiti": 1}]})
    assert len(problems) == 1 and "line_items[1].quantiti" in problems[0]


def test_an_unmapped_endpoint_is_a_violation():
    [problem] = contract.check_request("post", "/v1/nonexistent", {})
    assert problem.startswith("POST /v1/nonexistent: no service method")


def test_request_options_are_not_parameters():
    [problem] = contract.check_request("post", "/v1/refunds", {
        "payment_intent": "pi_1", "idempotency_key": "k"})
    assert "idempotency_key: a request option" in problem


def test_get_query_params_are_checked_too():
    assert contract.check_request("get", "/v1/refunds", {"limit": 100,
                                                         "starting_after": "re_1"}) == []
    [problem] = contract.check_request("get", "/v1/refunds?limit=3", {"limt": 100})
    assert problem.startswith("GET /v1/refunds: limt: not a parameter of RefundListParams")


def test_the_hooks_are_installed_for_the_whole_suite():
    """pytest_configure wrapped the requestor's and the test client's choke points."""
    assert contract.is_installed()
    assert getattr(_APIRequestor.request_raw, contract._HOOKED)
    assert getattr(_APIRequestor.request_raw_async, contract._HOOKED)


def test_a_real_client_request_is_recorded_as_a_violation(stripe_contract):
    """A StripeClient request goes through the hook, even one that never reaches a server."""
    client = stripe.StripeClient("sk_test_contract", base_addresses={"api": "http://127.0.0.1:9"},
                                 max_network_retries=0)
    with stripe_contract.expect_violations() as caught:
        with pytest.raises(stripe.APIConnectionError):
            client.v1.payment_intents.create(params={
                "amount": 1250, "currency": "eur", "payment_method_types": ["card"]})
    assert len(caught) == 1 and "payment_method_types" in caught[0]
    [seen] = stripe_contract.requests
    assert (seen.method, seen.path) == CREATE_PI
    assert set(seen.params) == {"amount", "currency", "payment_method_types"}


def test_a_fitting_client_request_is_recorded_without_violation(stripe_contract):
    client = stripe.StripeClient("sk_test_contract", base_addresses={"api": "http://127.0.0.1:9"},
                                 max_network_retries=0)
    with stripe_contract.expect_violations() as caught:
        with pytest.raises(stripe.APIConnectionError):
            client.v1.payment_intents.retrieve("pi_123", params={"expand": ["latest_charge"]})
    assert caught == []
    assert [(r.method, r.path, r.problems) for r in stripe_contract.requests] == [
        ("get", "/v1/payment_intents/pi_123", ())]


def test_async_requests_are_recorded_too(stripe_contract):
    async def create():
        http_client = stripe.AIOHTTPClient()
        client = stripe.StripeClient("sk_test_contract", http_client=http_client,
                                     base_addresses={"api": "http://127.0.0.1:9"},
                                     max_network_retries=0)
        try:
            await client.v1.refunds.create_async(params={"payment_intent": "pi_1", "bogus": 1})
        finally:
            await http_client.close_async()

    raised = []

    def run_in_own_thread():
        # A thread of its own: a browser test earlier in the session may leave an event loop
        # running in this one, and asyncio.run refuses to start inside it.
        try:
            asyncio.run(create())
        except stripe.APIConnectionError as exc:
            raised.append(exc)

    with stripe_contract.expect_violations() as caught:
        thread = threading.Thread(target=run_in_own_thread)
        thread.start()
        thread.join(30)
    assert len(raised) == 1
    assert caught == ["POST /v1/refunds: bogus: not a parameter of RefundCreateParams"]


def test_the_apps_payment_intent_creation_fits_the_contract(stripe_contract):
    """upss/stripe_gateway.py's create call, against a port nothing listens on."""
    from upss.stripe_gateway import GatewayError, StripeGateway

    gateway = StripeGateway("sk_test_contract", "whsec_x", api_base="http://127.0.0.1:9")
    gateway.client = stripe.StripeClient("sk_test_contract", max_network_retries=0,
                                         base_addresses={"api": "http://127.0.0.1:9"})
    with pytest.raises(GatewayError):
        gateway.create_payment_intent(amount_cents=1250, currency="EUR",
                                      metadata={"question_id": 1}, idempotency_key="k")
    [seen] = stripe_contract.requests
    assert (seen.method, seen.path, seen.problems) == ("post", "/v1/payment_intents", ())


def _fixture_event(object_type: str) -> dict:
    fixtures = contract.stripe_fixtures()
    return {**copy.deepcopy(fixtures["event"]), "type": f"{object_type}.updated",
            "api_version": contract.API_VERSION,
            "data": {"object": copy.deepcopy(fixtures[object_type])}}


@pytest.mark.parametrize("object_type", ["payment_intent", "charge", "refund", "dispute",
                                         "transfer", "account", "payout"])
def test_stripes_own_examples_wrapped_in_an_event_pass(object_type):
    assert contract.check_event_payload(_fixture_event(object_type)) == []


def test_an_expanded_latest_charge_fails():
    event = _fixture_event("payment_intent")
    event["data"]["object"]["latest_charge"] = {"id": "ch_1", "object": "charge", "amount": 5}
    assert contract.check_event_payload(event) == [
        "event.data.object.latest_charge: an expanded object where Stripe sends an id"]
    event["data"]["object"]["latest_charge"] = "ch_1"
    assert contract.check_event_payload(event) == []


def test_unknown_keys_fail_at_every_level():
    event = _fixture_event("payment_intent")
    event["extra"] = 1
    event["data"]["object"]["charges"] = {"object": "list", "data": []}  # gone since 2022
    event["data"]["object"]["last_payment_error"] = {"message": "declined", "bogus": True}
    suffix = f": not a field of this object in API {contract.API_VERSION}"
    assert sorted(contract.check_event_payload(event)) == [
        "event.data.object.charges" + suffix,
        "event.data.object.last_payment_error.bogus" + suffix,
        "event.extra" + suffix]


def test_an_object_type_without_example_fails():
    event = _fixture_event("payment_intent")
    event["data"]["object"] = {"id": "x_1", "object": "no_such_thing"}
    assert contract.check_event_payload(event) == [
        "event.data.object.object: 'no_such_thing' has no example object in fixtures3.json"]


def test_localstripe_versioned_events_are_checked_for_the_envelope_only():
    event = _fixture_event("payment_intent")
    event["api_version"] = contract.LOCALSTRIPE_API_VERSION
    event["data"]["object"]["latest_charge"] = {"id": "ch_1", "object": "charge"}
    assert contract.check_event_payload(event) == []
    event["unknown_envelope_key"] = 1
    assert len(contract.check_event_payload(event)) == 1


def test_webhooks_posted_by_a_test_client_are_checked(stripe_contract):
    """A POST to /stripe/webhook through werkzeug's test client goes through the check, and the
    app still reads the whole body."""
    import json

    from flask import Flask, request

    app = Flask(__name__)
    bodies = []

    @app.post("/stripe/webhook")
    def webhook():
        bodies.append(request.get_data())
        return "", 204

    event = _fixture_event("payment_intent")
    event["data"]["object"]["latest_charge"] = {"id": "ch_1", "object": "charge"}
    body = json.dumps(event)
    with stripe_contract.expect_violations() as caught:
        response = app.test_client().post("/stripe/webhook", data=body,
                                          headers={"Content-Type": "application/json"})
    assert response.status_code == 204 and bodies == [body.encode()]
    assert len(caught) == 1 and "latest_charge" in caught[0]
    [seen] = stripe_contract.events
    assert (seen.type, seen.object_type) == ("payment_intent.updated", "payment_intent")
    app.test_client().post("/stripe/webhook", data="{not json")  # malformed: not a shape
    assert len(stripe_contract.events) == 1
