"""With a real Stripe key the pay page uses Stripe.js's card element; the test panel never shows."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ask, submit
from upss.stripe_gateway import PaymentIntent


@pytest.fixture
def fake_stripe(app):
    """Replace the gateway's network calls at its boundary (real Stripe is not reachable here)."""
    gateway = app.extensions["upss_stripe"]
    created = []

    def create_payment_intent(*, amount_cents, currency, metadata, idempotency_key):
        created.append((amount_cents, currency, metadata["question_id"], idempotency_key))
        return PaymentIntent(id="pi_live_1", status="requires_payment_method",
                             amount=amount_cents, currency=currency,
                             client_secret="pi_live_1_secret_abc",
                             metadata={"question_id": str(metadata["question_id"])})

    gateway.create_payment_intent = create_payment_intent
    gateway.retrieve_payment_intent = lambda pi: PaymentIntent(
        id=pi, status="requires_payment_method", amount=1250, currency="EUR",
        client_secret=f"{pi}_secret_abc")
    return created


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
class TestLiveKey:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "UPSS_USES_LOCALSTRIPE": False,
                "UPSS_STRIPE_SECRET_KEY": "sk_live_not_a_real_key",
                "UPSS_STRIPE_PUBLISHABLE_KEY": "pk_live_not_a_real_key"}

    def test_pay_page_mounts_stripe_card_element_without_test_panel(self, app, asker_client,
                                                                     fake_stripe):
        ask(asker_client, price="12.50")
        text = asker_client.get("/questions/1/pay").get_data(as_text=True)
        assert '<script src="https://js.stripe.com/v3/"></script>' in text
        assert 'id="card-element"' in text
        assert 'data-client-secret="pi_live_1_secret_abc"' in text
        assert 'data-stripe-key="pk_live_not_a_real_key"' in text
        assert "Test mode" not in text and "pay/test" not in text
        [(amount, currency, question_id, key)] = fake_stripe
        assert (amount, currency, question_id) == (1250, "EUR", 1)
        assert re.fullmatch(r"upss-[0-9a-f]{16}:question:1:pay", key), key

    def test_test_payment_endpoint_is_refused(self, app, asker_client, fake_stripe):
        ask(asker_client)
        asker_client.get("/questions/1/pay")
        response = submit(asker_client, "/questions/1/pay/test", {"scenario": "succeeds"},
                          form_url="/questions/1/pay")
        assert response.status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_live_key_with_localstripe_still_refuses_the_panel(app_config, localstripe_url):
    """Even if misconfigured to talk to localstripe, a live key never gets the test panel."""
    from upss import create_app

    app = create_app({**app_config, "UPSS_STRIPE_SECRET_KEY": "sk_live_oops"})
    assert app.extensions["upss_stripe"].test_panel_allowed is False
