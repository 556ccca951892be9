"""The only module that talks to Stripe (real Stripe, or localstripe in development and tests).

UPSS is built for Stripe API version ``STRIPE_API_VERSION`` (the version the pinned ``stripe``
library speaks; a test keeps the two equal). Every request has a timeout
(``UPSS_STRIPE_TIMEOUT_SECONDS``) and the library's network retries
(``UPSS_STRIPE_NETWORK_RETRIES``, same idempotency key), so the longest a page can wait for Stripe
is ``StripeGateway.max_wait_seconds``. A request whose outcome is unknown (timeout, lost
connection, 409, 429, 5xx, an idempotency conflict) raises ``GatewayError`` with
``outcome_unknown`` set: the caller must look the object up again, never assume it failed.

It returns plain dataclasses holding only fields that both API shapes share (``id``, ``object``,
``status``, ``amount``, ``currency``, ``metadata``): stripe-python 16 speaks API version
2026-10-28 while localstripe answers in 2017-era shapes, so nothing else is relied on. Tests that
need Stripe behaviour localstripe lacks replace the gateway at this boundary
(``app.extensions["upss_stripe"]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import stripe
from flask import current_app

from .config import LIVE_KEY_PREFIX

#: Test-mode payment scenarios of the pay page's panel -> how the server pays.
TEST_SCENARIOS = ("succeeds", "declined", "three_d_secure")
_TEST_PAYMENT_METHODS = {"succeeds": "pm_card_visa", "declined": "pm_card_chargeCustomerFail"}
#: localstripe accepts this raw test card number and asks for 3-D Secure on it.
_THREE_D_SECURE_CARD = {"number": "4000002500003155", "exp_month": 12, "exp_year": 2034,
                        "cvc": "123"}


#: The Stripe API version UPSS is written and contract-tested for (see the README).
STRIPE_API_VERSION = "2026-10-28.endive"
#: Seconds allowed to open a connection to Stripe (the read timeout is the setting).
CONNECT_TIMEOUT_SECONDS = 1.0


class GatewayError(Exception):
    """Stripe could not be reached or refused the request for a reason that is not the card's.

    ``outcome_unknown`` is True when Stripe may have done what was asked (no answer in time, a
    lost connection, a conflict, a rate limit or a server error); False for a clear refusal.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False,
                 http_status: int | None = None):
        super().__init__(message)
        self.outcome_unknown = outcome_unknown
        self.http_status = http_status


class CardDeclined(Exception):
    """The card was declined; ``message`` is Stripe's explanation for the card holder."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidWebhook(Exception):
    """A webhook request whose signature, timestamp or body is not acceptable."""


@dataclass(frozen=True)
class PaymentIntent:
    id: str
    status: str
    amount: int
    currency: str  # upper-case ISO code
    client_secret: str = ""
    metadata: dict = field(default_factory=dict)
    #: ``last_payment_error.message`` of a failed attempt, if any.
    failure_message: str = ""


@dataclass(frozen=True)
class Refund:
    id: str
    #: The refunded PaymentIntent's id ("" if Stripe could not tell).
    payment_intent: str
    amount: int
    currency: str  # upper-case ISO code
    status: str


@dataclass(frozen=True)
class Transfer:
    id: str
    amount: int
    currency: str  # upper-case ISO code
    destination: str
    transfer_group: str
    amount_reversed: int = 0


@dataclass(frozen=True)
class BalanceMove:
    """A balance transaction: one movement of Stripe's balance, with Stripe's fee on it."""

    id: str
    type: str
    reporting_category: str
    amount: int
    fee: int
    net: int
    currency: str  # upper-case ISO code
    #: The charge, refund, dispute, transfer or payout it belongs to.
    source: str
    created: int = 0


@dataclass(frozen=True)
class Charge:
    id: str
    payment_intent: str
    amount: int
    amount_refunded: int
    currency: str  # upper-case ISO code
    #: "" until Stripe has made it (asynchronous capture).
    balance_transaction: str


@dataclass(frozen=True)
class Dispute:
    id: str
    charge: str
    payment_intent: str
    amount: int
    currency: str  # upper-case ISO code
    status: str
    reason: str
    #: ``evidence_details.due_by`` (Unix time), 0 if none.
    due_by: int
    #: The money it moved: a withdrawal, and a reinstatement if won.
    moves: tuple[BalanceMove, ...] = ()


@dataclass(frozen=True)
class StripePayout:
    """A payout from the Stripe balance to the organizer's bank account."""

    id: str
    amount: int
    currency: str  # upper-case ISO code
    status: str
    failure_message: str = ""


@dataclass(frozen=True)
class ConnectAccount:
    """A connected account's state: what onboarding still needs, and whether it can be paid."""

    id: str
    details_submitted: bool
    #: The ``transfers`` capability is active: transfers to it succeed.
    transfers_active: bool
    #: ``requirements.currently_due``: what Stripe still needs from the answerer.
    currently_due: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    object_type: str
    object_id: str
    status: str
    amount: int | None
    currency: str
    metadata: dict
    #: ``last_payment_error.message`` of a failed PaymentIntent, if any.
    failure_message: str
    #: The connected account an event is about (Connect events only), else "".
    account: str = ""
    #: The event's object as sent, for readers of other object types (``read_account``).
    data: dict = field(default_factory=dict)

    def payment_intent(self) -> PaymentIntent:
        """The event's object read as a PaymentIntent (for payment events)."""
        return PaymentIntent(id=self.object_id, status=self.status, amount=self.amount or 0,
                             currency=self.currency, metadata=self.metadata,
                             failure_message=self.failure_message)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _payment_intent(obj) -> PaymentIntent:
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    error = obj.get("last_payment_error") or {}
    return PaymentIntent(
        id=obj["id"], status=obj["status"], amount=int(obj["amount"]),
        currency=str(obj["currency"]).upper(), client_secret=obj.get("client_secret") or "",
        metadata=dict(obj.get("metadata") or {}),
        failure_message=str(error.get("message") or "") if isinstance(error, dict) else "",
    )


def read_transfer(obj) -> Transfer:
    """A transfer (API object or webhook ``data.object``)."""
    obj = _plain(obj)
    return Transfer(id=str(obj["id"]), amount=int(obj["amount"]),
                    currency=str(obj["currency"]).upper(),
                    destination=_id_of(obj.get("destination")),
                    transfer_group=str(obj.get("transfer_group") or ""),
                    amount_reversed=int(obj.get("amount_reversed") or 0))


def read_account(obj) -> ConnectAccount:
    """A connected account (API object or webhook ``data.object``) as UPSS needs it."""
    obj = _plain(obj)
    capabilities = obj.get("capabilities") or {}
    requirements = obj.get("requirements") or {}
    return ConnectAccount(
        id=str(obj["id"]), details_submitted=bool(obj.get("details_submitted")),
        transfers_active=capabilities.get("transfers") == "active",
        currently_due=tuple(str(r) for r in requirements.get("currently_due") or ()))


def read_balance_move(obj) -> BalanceMove:
    obj = _plain(obj)
    return BalanceMove(
        id=str(obj["id"]), type=str(obj.get("type") or ""),
        reporting_category=str(obj.get("reporting_category") or ""),
        amount=int(obj["amount"]), fee=int(obj.get("fee") or 0),
        net=int(obj.get("net", int(obj["amount"]) - int(obj.get("fee") or 0))),
        currency=str(obj["currency"]).upper(), source=_id_of(obj.get("source")),
        created=int(obj.get("created") or 0))


def read_charge(obj) -> Charge:
    obj = _plain(obj)
    return Charge(id=str(obj["id"]), payment_intent=_id_of(obj.get("payment_intent")),
                  amount=int(obj["amount"]), amount_refunded=int(obj.get("amount_refunded") or 0),
                  currency=str(obj["currency"]).upper(),
                  balance_transaction=_id_of(obj.get("balance_transaction")))


def read_dispute(obj) -> Dispute:
    obj = _plain(obj)
    evidence = obj.get("evidence_details") or {}
    return Dispute(
        id=str(obj["id"]), charge=_id_of(obj.get("charge")),
        payment_intent=_id_of(obj.get("payment_intent")), amount=int(obj["amount"]),
        currency=str(obj["currency"]).upper(), status=str(obj.get("status") or ""),
        reason=str(obj.get("reason") or ""), due_by=int(evidence.get("due_by") or 0),
        moves=tuple(read_balance_move(bt) for bt in obj.get("balance_transactions") or ()
                    if isinstance(bt, dict)))


def read_payout(obj) -> StripePayout:
    obj = _plain(obj)
    return StripePayout(id=str(obj["id"]), amount=int(obj["amount"]),
                        currency=str(obj["currency"]).upper(), status=str(obj.get("status") or ""),
                        failure_message=str(obj.get("failure_message") or ""))


def read_refund(obj) -> Refund:
    """A refund (API object or webhook ``data.object``)."""
    obj = _plain(obj)
    return Refund(id=str(obj["id"]), payment_intent=_id_of(obj.get("payment_intent")),
                  amount=int(obj["amount"]), currency=str(obj["currency"]).upper(),
                  status=str(obj.get("status") or ""))


def _plain(obj) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def _id_of(value) -> str:
    """An object reference as an id, whether it came as an id string or an expanded object."""
    if isinstance(value, str):
        return value
    if hasattr(value, "to_dict") or isinstance(value, dict):
        return str(_plain(value).get("id") or "")
    return ""


class StripeGateway:
    """A ``stripe.StripeClient`` built from settings, with the few calls UPSS makes."""

    def __init__(self, secret_key: str, webhook_secret: str, *, connect_webhook_secret: str = "",
                 publishable_key: str = "",
                 api_base: str | None = None,
                 webhook_tolerance: int = 300, uses_localstripe: bool = False,
                 timeout_seconds: float = 3.0, network_retries: int = 1):
        base = {"api": api_base} if api_base else None
        #: Where the pay page loads Stripe.js from: localstripe's stand-in, or Stripe's own.
        self.js_url = f"{api_base}/js.stripe.com/v3/" if api_base else "https://js.stripe.com/v3/"
        self.js_origin = _origin(self.js_url)
        self.api_origin = _origin(api_base) if api_base else "https://api.stripe.com"
        self.timeout_seconds = timeout_seconds
        self.network_retries = network_retries
        self.client = stripe.StripeClient(
            secret_key, base_addresses=base, stripe_version=STRIPE_API_VERSION,
            max_network_retries=network_retries,
            http_client=stripe.RequestsClient(
                timeout=(min(CONNECT_TIMEOUT_SECONDS, timeout_seconds), timeout_seconds)))
        self.webhook_secret = webhook_secret
        self.connect_webhook_secret = connect_webhook_secret
        self.publishable_key = publishable_key
        self.webhook_tolerance = webhook_tolerance
        self.is_live = secret_key.startswith(LIVE_KEY_PREFIX)
        self.uses_localstripe = uses_localstripe

    @property
    def onboarding_origin(self) -> str:
        """Where Stripe's hosted Connect onboarding lives (the local Stripe's page locally)."""
        return self.api_origin if self.uses_localstripe else "https://connect.stripe.com"

    @property
    def test_panel_allowed(self) -> bool:
        """The test-mode pay panel exists only on localstripe and never with a live key."""
        return self.uses_localstripe and not self.is_live

    @property
    def max_wait_seconds(self) -> float:
        """The longest one gateway call can take: every attempt times out, plus the library's
        longest back-off between attempts (0.5 s doubling, at most 5 s)."""
        attempts = self.network_retries + 1
        per_attempt = min(CONNECT_TIMEOUT_SECONDS, self.timeout_seconds) + self.timeout_seconds
        backoff = sum(min(0.5 * 2 ** n, 5.0) for n in range(self.network_retries))
        return attempts * per_attempt + backoff

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except stripe.CardError as exc:
            raise CardDeclined(exc.user_message or "The card was declined.") from exc
        except stripe.APIConnectionError as exc:
            raise GatewayError(f"no answer from Stripe: {exc}", outcome_unknown=True) from exc
        except stripe.StripeError as exc:
            status = exc.http_status
            unknown = (isinstance(exc, stripe.IdempotencyError) or status is None
                       or status in (409, 429) or status >= 500)
            raise GatewayError(str(exc), outcome_unknown=unknown, http_status=status) from exc

    def create_payment_intent(self, *, amount_cents: int, currency: str, metadata: dict,
                              idempotency_key: str) -> PaymentIntent:
        """A card PaymentIntent; the amount always comes from what is stored, never a form.

        ``metadata`` names what it pays for: ``question_id`` or ``tip_id``.
        """
        pi = self._call(
            self.client.v1.payment_intents.create,
            # The current API has dynamic payment methods; the pay page's card element needs a
            # card, so the methods are limited to it (``payment_method_types`` is gone: 400).
            params={"amount": amount_cents, "currency": currency.lower(),
                    "allowed_payment_method_types": ["card"],
                    "metadata": {k: str(v) for k, v in metadata.items()}},
            options={"idempotency_key": idempotency_key},
        )
        return _payment_intent(pi)

    def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        return _payment_intent(self._call(self.client.v1.payment_intents.retrieve,
                                          payment_intent_id))

    def cancel_payment_intent(self, payment_intent_id: str) -> None:
        self._call(self.client.v1.payment_intents.cancel, payment_intent_id)

    def refund_payment_intent(self, payment_intent_id: str, idempotency_key: str,
                              metadata: dict | None = None) -> Refund:
        """Refund a PaymentIntent in full."""
        params: dict = {"payment_intent": payment_intent_id}
        if metadata:
            params["metadata"] = {k: str(v) for k, v in metadata.items()}
        return read_refund(self._call(self.client.v1.refunds.create, params=params,
                                      options={"idempotency_key": idempotency_key}))

    def retrieve_dispute(self, dispute_id: str) -> Dispute:
        """A dispute as Stripe holds it now, with its balance transactions."""
        return read_dispute(self._call(self.client.v1.disputes.retrieve, dispute_id))

    def retrieve_payout(self, payout_id: str) -> StripePayout:
        return read_payout(self._call(self.client.v1.payouts.retrieve, payout_id))

    def retrieve_charge(self, charge_id: str) -> Charge:
        return read_charge(self._call(self.client.v1.charges.retrieve, charge_id))

    def retrieve_balance_move(self, balance_transaction_id: str) -> BalanceMove:
        return read_balance_move(self._call(self.client.v1.balance_transactions.retrieve,
                                            balance_transaction_id))

    def balance_moves_since(self, created_after: int, limit: int = 100) -> list[BalanceMove]:
        """Balance transactions created after ``created_after`` (Unix time), oldest first."""
        moves: list[BalanceMove] = []
        params: dict = {"limit": limit, "created": {"gt": created_after}}
        while True:
            page = _plain(self._call(self.client.v1.balance_transactions.list, params=params))
            data = [read_balance_move(item) for item in page.get("data") or []]
            moves.extend(data)
            if not page.get("has_more") or not data:
                return sorted(moves, key=lambda m: (m.created, m.id))
            params = {**params, "starting_after": data[-1].id}

    def balance_cents(self) -> dict[str, int]:
        """Stripe's balance per currency: available plus pending (what the ledger's
        ``stripe_balance`` must equal)."""
        found: dict[str, int] = {}
        balance = _plain(self._call(self.client.v1.balance.retrieve))
        for part in ("available", "pending"):
            for item in balance.get(part) or ():
                currency = str(item["currency"]).upper()
                found[currency] = found.get(currency, 0) + int(item["amount"])
        return found

    def find_refunds(self, payment_intent_id: str) -> list[Refund]:
        """The refunds Stripe holds for a PaymentIntent (to settle a refund whose answer was
        lost)."""
        page = _plain(self._call(self.client.v1.refunds.list,
                                 params={"payment_intent": payment_intent_id, "limit": 100}))
        return [read_refund(obj) for obj in page.get("data") or []]

    def confirm_with_test_card(self, payment_intent_id: str, scenario: str,
                               idempotency_key: str) -> PaymentIntent:
        """Test mode only: confirm with one of Stripe's test payment methods.

        Raises ``CardDeclined`` for the declined card; for 3-D Secure the result is
        ``requires_action`` and the page finishes it with Stripe.js ``confirmCardPayment``.
        localstripe's confirm endpoint refuses a ``payment_method`` argument, so the method is
        set by an update first (real Stripe accepts both ways).
        """
        if not self.test_panel_allowed:
            raise GatewayError("test payments are only possible on localstripe")
        if scenario == "three_d_secure":
            pm = self._call(self.client.v1.payment_methods.create,
                            params={"type": "card", "card": dict(_THREE_D_SECURE_CARD)})
            method = pm["id"]
        else:
            method = _TEST_PAYMENT_METHODS[scenario]
        self._call(self.client.v1.payment_intents.update, payment_intent_id,
                   params={"payment_method": method})
        return _payment_intent(self._call(self.client.v1.payment_intents.confirm,
                                          payment_intent_id,
                                          options={"idempotency_key": idempotency_key}))

    def create_transfer(self, *, amount_cents: int, currency: str, destination: str,
                        transfer_group: str, metadata: dict,
                        idempotency_key: str) -> Transfer:
        """Transfer to a connected account. ``transfer_group`` names the payout, so a transfer
        whose answer was lost can be found again (``find_transfers``)."""
        return read_transfer(self._call(
            self.client.v1.transfers.create,
            params={"amount": amount_cents, "currency": currency.lower(),
                    "destination": destination, "transfer_group": transfer_group,
                    "metadata": {k: str(v) for k, v in metadata.items()}},
            options={"idempotency_key": idempotency_key},
        ))

    def find_transfers(self, transfer_group: str) -> list[Transfer]:
        """The transfers Stripe made for ``transfer_group`` (one payout's)."""
        page = _plain(self._call(self.client.v1.transfers.list,
                                 params={"transfer_group": transfer_group, "limit": 100}))
        return [read_transfer(obj) for obj in page.get("data") or []]

    def list_transfers(self) -> list[Transfer]:
        """Every transfer of the platform (for reconciliation)."""
        return [read_transfer(obj) for obj in self._list_all(self.client.v1.transfers)]

    def create_connect_account(self, *, email: str, country: str, metadata: dict,
                               idempotency_key: str) -> ConnectAccount:
        """A connected account for an answerer: Stripe collects what it needs in its hosted
        onboarding, shows the answerer the Express dashboard, and the platform pays the fees
        and bears losses (``controller``, the current API's way to say "Express")."""
        return read_account(self._call(
            self.client.v1.accounts.create,
            params={"country": country, "email": email,
                    "controller": {"stripe_dashboard": {"type": "express"},
                                   "fees": {"payer": "application"},
                                   "losses": {"payments": "application"},
                                   "requirement_collection": "stripe"},
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {k: str(v) for k, v in metadata.items()}},
            options={"idempotency_key": idempotency_key}))

    def retrieve_connect_account(self, account_id: str) -> ConnectAccount:
        return read_account(self._call(self.client.v1.accounts.retrieve, account_id))

    def create_account_link(self, account_id: str, *, refresh_url: str,
                            return_url: str) -> str:
        """A single-use link to Stripe's hosted onboarding for ``account_id``; returns its URL
        (only ever one of Stripe's own, or the local Stripe's: people are sent there)."""
        link = self._call(self.client.v1.account_links.create, params={
            "account": account_id, "refresh_url": refresh_url, "return_url": return_url,
            "type": "account_onboarding"})
        url = str(_plain(link)["url"])
        if not url.startswith(self.onboarding_origin + "/"):
            raise GatewayError(f"an onboarding link outside {self.onboarding_origin}: {url}")
        return url

    def _list_all(self, resource) -> list[dict]:
        """Every object of a list endpoint, page by page (``limit=100``, ``starting_after``)."""
        found: list[dict] = []
        params: dict = {"limit": 100}
        while True:
            page = _plain(self._call(resource.list, params=params))
            data = [_plain(item) for item in page.get("data") or []]
            found.extend(data)
            if not page.get("has_more") or not data:
                return found
            params = {"limit": 100, "starting_after": data[-1]["id"]}

    def list_payment_intents(self) -> list[PaymentIntent]:
        """Every PaymentIntent of the account (for reconciliation)."""
        return [_payment_intent(obj) for obj in self._list_all(self.client.v1.payment_intents)]

    def list_refunds(self) -> list[Refund]:
        """Every refund of the account, each with the PaymentIntent it refunds.

        Real Stripe names the PaymentIntent as an id; localstripe leaves it empty for a refund
        made by charge, so then the charge is looked up for it.
        """
        charges: dict[str, str] = {}
        refunds = []
        for obj in self._list_all(self.client.v1.refunds):
            payment_intent = _id_of(obj.get("payment_intent"))
            charge = obj.get("charge")
            if not payment_intent and charge:
                if isinstance(charge, str):
                    if charge not in charges:
                        charges[charge] = _id_of(_plain(self._call(
                            self.client.v1.charges.retrieve, charge)).get("payment_intent"))
                    payment_intent = charges[charge]
                else:
                    payment_intent = _id_of(_plain(charge).get("payment_intent"))
            refunds.append(replace(read_refund(obj), payment_intent=payment_intent))
        return refunds

    def parse_webhook(self, payload: bytes, signature_header: str | None, *,
                      connect: bool = False) -> WebhookEvent:
        """Verify the ``Stripe-Signature`` of ``payload`` and read the event from it.

        ``connect``: the event came to the Connect endpoint, which has its own signing secret.
        """
        if not signature_header:
            raise InvalidWebhook("missing Stripe-Signature header")
        secret = self.connect_webhook_secret if connect else self.webhook_secret
        if not secret:
            raise InvalidWebhook("no signing secret configured for this endpoint")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature_header, secret, self.webhook_tolerance
            )
            event = json.loads(text)
            obj = event["data"]["object"]
            error = obj.get("last_payment_error") or {}
            return WebhookEvent(
                id=str(event["id"]), type=str(event["type"]),
                account=str(event.get("account") or ""), data=dict(obj),
                object_type=str(obj.get("object", "")), object_id=str(obj.get("id", "")),
                status=str(obj.get("status", "")),
                amount=int(obj["amount"]) if obj.get("amount") is not None else None,
                currency=str(obj.get("currency", "")).upper(),
                metadata=dict(obj.get("metadata") or {}),
                failure_message=str(error.get("message") or "") if isinstance(error, dict) else "",
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(f"signature: {exc}") from exc
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidWebhook(f"malformed event: {exc}") from exc


def init_app(app) -> None:
    cfg = app.config
    app.extensions["upss_stripe"] = StripeGateway(
        cfg["UPSS_STRIPE_SECRET_KEY"], cfg["UPSS_STRIPE_WEBHOOK_SECRET"],
        connect_webhook_secret=cfg["UPSS_STRIPE_CONNECT_WEBHOOK_SECRET"],
        publishable_key=cfg["UPSS_STRIPE_PUBLISHABLE_KEY"],
        api_base=cfg["UPSS_LOCALSTRIPE_URL"] if cfg["UPSS_USES_LOCALSTRIPE"] else None,
        webhook_tolerance=cfg["UPSS_WEBHOOK_TOLERANCE"],
        uses_localstripe=cfg["UPSS_USES_LOCALSTRIPE"],
        timeout_seconds=cfg["UPSS_STRIPE_TIMEOUT_SECONDS"],
        network_retries=cfg["UPSS_STRIPE_NETWORK_RETRIES"],
    )


def gateway() -> StripeGateway:
    """The app's gateway (tests may replace it in ``app.extensions``)."""
    return current_app.extensions["upss_stripe"]
