"""The local Stripe (upss.devstripe): idempotency, current-API parameters, fault switches."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
import stripe

from tests.conftest import devstripe_process, wait_until
from upss.devstripe.idempotency import IDEMPOTENCY_TTL, IdempotencyStore, SavedResponse

API_KEY = "sk_test_devstripe"


@pytest.fixture(scope="module")
def devstripe_url():
    """A devstripe process of this module's own, so its faults and log are this module's."""
    with devstripe_process() as url:
        yield url


@pytest.fixture(autouse=True)
def no_faults_left(devstripe_url):
    yield
    requests.delete(f"{devstripe_url}/_upss/faults", timeout=5).raise_for_status()


def client(url: str, timeout: float | None = None, api_key: str = API_KEY) -> stripe.StripeClient:
    kwargs = {"http_client": stripe.RequestsClient(timeout=timeout)} if timeout else {}
    return stripe.StripeClient(api_key, base_addresses={"api": url}, max_network_retries=0,
                               **kwargs)


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def create(url: str, key: str, amount: int = 1250, marker: str = "", **kwargs):
    return client(url, **kwargs).v1.payment_intents.create(
        params={"amount": amount, "currency": "eur", "allowed_payment_method_types": ["card"],
                "metadata": {"marker": marker or key}},
        options={"idempotency_key": key})


def add_fault(url: str, **spec) -> dict:
    response = requests.post(f"{url}/_upss/faults", json=spec, timeout=5)
    response.raise_for_status()
    return response.json()


def logged(url: str, key: str) -> list[dict]:
    response = requests.get(f"{url}/_upss/requests", timeout=5)
    return [r for r in response.json()["requests"] if r["idempotency_key"] == key]


def performed(url: str, key: str) -> int:
    return sum(1 for r in logged(url, key) if r["performed"])


def intents_marked(url: str, marker: str) -> list:
    page = client(url).v1.payment_intents.list(params={"limit": 100})
    return [pi for pi in page.data if pi.to_dict()["metadata"].get("marker") == marker]


def test_same_key_same_params_creates_one_payment_intent(devstripe_url):
    """The same key with the same parameters twice: one PaymentIntent, the second replayed."""
    key = new_key()
    first = create(devstripe_url, key)
    second = create(devstripe_url, key)
    assert second.id == first.id
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert performed(devstripe_url, key) == 1
    assert [pi.id for pi in intents_marked(devstripe_url, key)] == [first.id]


def test_same_key_other_amount_is_an_idempotency_error(devstripe_url):
    """The same key with another amount: 400 idempotency_error, nothing created."""
    key = new_key()
    create(devstripe_url, key, amount=1250)
    with pytest.raises(stripe.IdempotencyError) as caught:
        create(devstripe_url, key, amount=1300)
    assert caught.value.http_status == 400
    assert caught.value.json_body["error"]["type"] == "idempotency_error"
    assert "same parameters" in caught.value.json_body["error"]["message"]
    assert performed(devstripe_url, key) == 1


def test_idempotency_keys_are_per_api_key(devstripe_url):
    """The same idempotency key under another API key is another request."""
    key = new_key()
    first = create(devstripe_url, key)
    other = client(devstripe_url, api_key="sk_test_other").v1.payment_intents.create(
        params={"amount": 1250, "currency": "eur", "allowed_payment_method_types": ["card"],
                "metadata": {"marker": key}},
        options={"idempotency_key": key})
    assert other.id != first.id


def test_concurrent_same_key_answers_409_while_the_first_completes(devstripe_url):
    """While the first request is stalled in flight, the same key gets 409 key-in-use."""
    key = new_key()
    add_fault(devstripe_url, method="POST", path="/v1/payment_intents", mode="stall",
              seconds=1.5)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("pi", create(devstripe_url, key)))
    first.start()
    # The stall fault is used up once the first request holds the key and stalls.
    wait_until(lambda: not requests.get(f"{devstripe_url}/_upss/faults", timeout=5)
               .json()["faults"], timeout=5, interval=0.02)
    with pytest.raises(stripe.APIError) as caught:  # stripe-python's class for a v1 409
        create(devstripe_url, key)
    first.join(timeout=10)
    assert caught.value.http_status == 409
    assert caught.value.json_body["error"]["type"] == "idempotency_error"
    assert caught.value.json_body["error"]["code"] == "idempotency_key_in_use"
    assert results["pi"].last_response.code == 200
    assert performed(devstripe_url, key) == 1
    assert create(devstripe_url, key).id == results["pi"].id


def test_saved_500_is_replayed_for_its_key_while_a_new_key_succeeds(devstripe_url):
    """An error_500 is saved for its key and replayed; a new key succeeds."""
    key = new_key()
    add_fault(devstripe_url, method="POST", path="/v1/payment_intents", mode="error_500")
    for attempt in range(2):
        with pytest.raises(stripe.APIError) as caught:
            create(devstripe_url, key)
        assert caught.value.http_status == 500
        assert caught.value.json_body["error"]["type"] == "api_error"
        assert (caught.value.headers.get("Idempotent-Replayed") == "true") == (attempt == 1)
    assert performed(devstripe_url, key) == 0
    assert create(devstripe_url, new_key()).status == "requires_payment_method"


def test_dropped_response_then_retry_returns_the_same_object(devstripe_url):
    """drop_after: a connection error, and the retry with the key gets the one PaymentIntent."""
    key = new_key()
    add_fault(devstripe_url, method="POST", path="/v1/payment_intents", mode="drop_after")
    with pytest.raises(stripe.APIConnectionError):
        create(devstripe_url, key)
    pi = create(devstripe_url, key)
    assert pi.last_response.headers["Idempotent-Replayed"] == "true"
    assert [p.id for p in intents_marked(devstripe_url, key)] == [pi.id]
    assert performed(devstripe_url, key) == 1


def test_client_timeout_then_retry_returns_the_object_created(devstripe_url):
    """stall_after beyond the client's timeout: APIConnectionError fast, the retry replays."""
    key = new_key()
    add_fault(devstripe_url, method="POST", path="/v1/payment_intents", mode="stall_after",
              seconds=2)
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        create(devstripe_url, key, timeout=1)
    assert time.monotonic() - started < 1.9
    pi = create(devstripe_url, key)
    assert pi.last_response.headers["Idempotent-Replayed"] == "true"
    assert [p.id for p in intents_marked(devstripe_url, key)] == [pi.id]
    assert performed(devstripe_url, key) == 1


def test_error_500_after_performing_then_retry_gets_the_saved_success(devstripe_url):
    """error_500_after: this response is a 500, but the retry gets the saved PaymentIntent."""
    key = new_key()
    add_fault(devstripe_url, method="POST", path="/v1/payment_intents", mode="error_500_after")
    with pytest.raises(stripe.APIError):
        create(devstripe_url, key)
    pi = create(devstripe_url, key)
    assert pi.last_response.headers["Idempotent-Replayed"] == "true"
    assert [p.id for p in intents_marked(devstripe_url, key)] == [pi.id]


def test_429_and_409_faults_are_not_performed_nor_saved(devstripe_url):
    """error_429 / error_409 answer before the idempotency layer: the retry is performed."""
    key = new_key()
    add_fault(devstripe_url, method="POST", path="/v1/payment_intents", mode="error_429")
    add_fault(devstripe_url, method="POST", path="/v1/payment_intents", mode="error_409")
    with pytest.raises(stripe.RateLimitError):
        create(devstripe_url, key)
    with pytest.raises(stripe.APIError) as caught:
        create(devstripe_url, key)
    assert caught.value.http_status == 409
    assert caught.value.json_body["error"]["code"] == "lock_timeout"
    assert performed(devstripe_url, key) == 0
    pi = create(devstripe_url, key)
    assert "Idempotent-Replayed" not in pi.last_response.headers
    assert requests.get(f"{devstripe_url}/_upss/faults", timeout=5).json() == {"faults": []}


def test_payment_method_types_on_create_is_refused(devstripe_url):
    """payment_method_types on create: 400 payment_method_types_no_longer_supported."""
    response = requests.post(
        f"{devstripe_url}/v1/payment_intents", auth=(API_KEY, ""), timeout=5,
        data={"amount": "1250", "currency": "eur", "payment_method_types[0]": "card"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "payment_method_types_no_longer_supported"
    assert error["message"]


def test_allowed_payment_method_types_can_be_paid_with_pm_card_visa(devstripe_url):
    """allowed_payment_method_types=["card"]: created, then confirmed with pm_card_visa."""
    stripe_client = client(devstripe_url)
    pi = create(devstripe_url, new_key())
    assert pi.status == "requires_payment_method"
    stripe_client.v1.payment_intents.update(pi.id, params={"payment_method": "pm_card_visa"})
    assert stripe_client.v1.payment_intents.confirm(pi.id).status == "succeeded"


def test_automatic_payment_methods_is_accepted(devstripe_url):
    """automatic_payment_methods[enabled]=true on create is accepted (cards only here)."""
    pi = client(devstripe_url).v1.payment_intents.create(params={
        "amount": 500, "currency": "eur", "automatic_payment_methods": {"enabled": True}})
    assert pi.status == "requires_payment_method"


def test_key_over_255_characters_is_refused(devstripe_url):
    """An idempotency key of 256 characters: 400 invalid_request_error, nothing performed."""
    key = "k" * 256
    with pytest.raises(stripe.InvalidRequestError) as caught:
        create(devstripe_url, key)
    assert caught.value.http_status == 400
    assert performed(devstripe_url, key) == 0
    assert create(devstripe_url, "k" * 255).status == "requires_payment_method"


def test_keys_expire_after_24_hours():
    """The store forgets a key 24 hours after its first use (injected clock)."""
    now = [1_000_000.0]
    store = IdempotencyStore(clock=lambda: now[0])
    saved = SavedResponse(200, (), b"{}", "req_1")
    assert store.begin("sk", "key", "fp") == (IdempotencyStore.NEW, None)
    assert store.begin("sk", "key", "fp") == (IdempotencyStore.IN_FLIGHT, None)
    store.finish("sk", "key", saved)
    now[0] += IDEMPOTENCY_TTL - 1
    assert store.begin("sk", "key", "fp") == (IdempotencyStore.REPLAY, saved)
    assert store.begin("sk", "key", "other")[0] == IdempotencyStore.MISMATCH
    now[0] += 1
    assert store.begin("sk", "key", "other") == (IdempotencyStore.NEW, None)
