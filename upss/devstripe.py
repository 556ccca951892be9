"""The project's local Stripe: localstripe, bound to 127.0.0.1, made to behave like Stripe where
UPSS depends on it.

localstripe's own ``start()`` binds every interface and pickles its whole store to
``/tmp/localstripe.pickle`` after each write; this wrapper binds loopback only and keeps the
state in memory, or in ``--state FILE`` when a developer wants it to survive a restart.

What it adds over localstripe, and why:

* **Idempotent requests like Stripe** (https://docs.stripe.com/api/idempotent_requests).
  localstripe ignores ``Idempotency-Key``, so nothing tested against it could show that a retry
  pays once. Here a POST with an ``Idempotency-Key`` (scoped to the API key of its
  ``Authorization`` header) is run once and its result (status, ``Content-Type``, body; any
  status, 500 included) saved with a fingerprint of method, path and parameters (order does not
  matter). The same key again: the same parameters get the saved response unchanged, with
  ``Idempotent-Replayed: true``, without running anything; other parameters or path get 400
  ``idempotency_error``; while the first is still running, 409 ``idempotency_key_in_use``. Keys
  over 255 characters get 400; keys expire 24 hours after first use. These rejections are not
  saved. The layer is the outermost middleware, so localstripe's own errors are saved too.
* **The current API's PaymentIntent parameters.** The API version stripe-python 16 speaks removed
  ``payment_method_types`` from PaymentIntent creation: ``allowed_payment_method_types`` replaces
  it and ``automatic_payment_methods`` may come along. localstripe refuses parameters it does not
  know, so ``POST /v1/payment_intents`` is translated for it (``allowed_payment_method_types`` ->
  ``payment_method_types``; ``automatic_payment_methods`` dropped, cards are all there is here),
  and, like Stripe, a create that still sends ``payment_method_types`` gets 400
  ``payment_method_types_no_longer_supported``. The translation wraps localstripe's
  ``localstripe.server.get_post_data`` (every localstripe handler reads its parameters through
  it, by module global), so the request body itself is untouched and the idempotency fingerprint
  sees what the client sent.
* **Fault switches** for tests (``/_upss/faults``): stall a request while it is in flight, delay
  or lose its response after it was performed, answer 500/409/429 instead. And a **log** of the
  API requests received (``/_upss/requests``) so a test can count what was really performed.
* **Connect**, which localstripe lacks entirely, because UPSS pays answerers with transfers to
  Express connected accounts they onboard on Stripe's hosted pages. Routes on localstripe's app,
  so they go through the idempotency layer, the fault switches, the request log and
  localstripe's API-key check like its own; objects shaped like Stripe's (``fixtures3.json`` and
  the pinned ``stripe`` library's resource classes), parameters checked against the pinned
  library's params TypedDicts: a parameter they lack is a 400 ``parameter_unknown``
  (``Received unknown parameter: controller[foo]``), as at Stripe. ``expand`` is refused (400)
  rather than ignored. Errors are Stripe's ``invalid_request_error`` with ``param`` (and
  ``code`` where Stripe has one); an unknown id in the path is a 404 ``resource_missing``.

  - ``POST /v1/accounts`` (``type`` express|custom|standard, or ``controller[...]``; ``country``
    (default US), ``email``, ``business_type``, ``capabilities[<name>][requested]``,
    ``business_profile[...]``, ``settings[...]``, ``metadata[...]``; other real parameters are
    accepted and ignored), ``GET /v1/accounts/{id}``, ``GET /v1/accounts`` (newest first;
    ``limit``, ``starting_after``, ``ending_before``, ``created``). A new account:
    ``details_submitted``, ``charges_enabled``, ``payouts_enabled`` false; each *requested*
    capability ``"inactive"`` (an account that did not request ``transfers`` never gets it, and
    transfers to it are refused, as at Stripe); ``requirements`` with ``currently_due`` =
    ``eventually_due`` = ``past_due`` (``external_account``, ``individual.first_name``, ...,
    ``tos_acceptance.ip``) and ``disabled_reason`` ``requirements.past_due``; ``controller`` as
    Stripe reports it (``type: application``, ``is_controller: true``; from ``type=express``:
    ``fees.payer`` ``application_express``); ``type`` from the controller when not given
    (express/custom/standard presets, else ``none``). Field list: ``id`` (``acct_...``),
    ``object``, ``business_profile``, ``business_type``, ``capabilities``, ``charges_enabled``,
    ``controller``, ``country``, ``created``, ``default_currency``, ``details_submitted``,
    ``email``, ``external_accounts`` (always empty), ``future_requirements``, ``metadata``,
    ``payouts_enabled``, ``requirements``, ``settings`` (dashboard, payouts), ``tos_acceptance``,
    ``type``.
  - ``POST /v1/account_links`` (``account``, ``type`` account_onboarding|account_update,
    ``refresh_url``, ``return_url``, ``collection_options[fields|future_requirements]``) ->
    ``{"object": "account_link", "created", "expires_at": created + 300, "url":
    "http://<Host of the request>/_upss/connect/onboarding/<token>"}``. ``account_update`` is
    refused for accounts with a Stripe-hosted dashboard (Express, Standard), as at Stripe.
  - ``POST /v1/transfers`` (``amount``, ``currency``, ``destination``, ``transfer_group``,
    ``metadata``, ``description``, ``source_transaction`` (a localstripe charge),
    ``source_type``): refused with 400, ``param: destination``, when the destination is unknown
    (``resource_missing``) or its ``transfers`` capability is not active
    (``insufficient_capabilities_for_transfer``). ``GET /v1/transfers/{id}``; ``GET
    /v1/transfers`` (``transfer_group``, ``destination``, ``created`` (an int or
    ``created[gt|gte|lt|lte]``), ``limit``, ``starting_after``, ``ending_before``; newest first).
    A transfer: ``id`` (``tr_...``), ``object``, ``amount``, ``amount_reversed``,
    ``balance_transaction`` (``txn_...``), ``created``, ``currency``, ``description``,
    ``destination`` (the account id), ``destination_payment`` (``py_...``), ``livemode``,
    ``metadata``, ``reversals`` (a list: the 10 newest, ``has_more``, ``total_count``, ``url``),
    ``reversed``, ``source_transaction``, ``source_type``, ``transfer_group``. Its
    ``balance_transaction`` is a real one (type ``transfer``, see *Money* below); a transfer
    never fails for lack of funds here.
  - ``POST /v1/transfers/{id}/reversals`` (``amount``, default what is left; ``metadata``,
    ``description``, ``refund_application_fee``): more than is left is a 400 (``param:
    amount``). ``GET /v1/transfers/{id}/reversals`` (newest first),
    ``GET /v1/transfers/{transfer}/reversals/{id}``. A reversal: ``id`` (``trr_...``),
    ``object: transfer_reversal``, ``amount``, ``balance_transaction``, ``created``,
    ``currency``, ``destination_payment_refund`` (``pyr_...``), ``metadata``, ``source_refund``
    (null), ``transfer``; its ``balance_transaction`` is of type ``transfer_refund``. The
    transfer's ``amount_reversed``, ``reversed`` (once all of it is)
    and ``reversals`` follow.
  - **Events**, in the current API version's shape (``api_version`` the pinned library's,
    ``request`` the id and idempotency key of the API request that caused them):
    ``transfer.created`` and ``transfer.reversed`` (the transfer, also on partial reversals) are
    platform events: sent to localstripe's endpoints (``/_config/webhooks/{id}``) and listed by
    ``GET /v1/events``. ``account.updated`` (the account, with ``previous_attributes``), sent
    whenever an account changes, is a Connect event: it carries ``"account": "acct_..."`` and
    goes only to the Connect endpoints, registered with ``POST /_config/connect_webhooks/{id}``
    (form fields ``url``, ``secret``, optional ``events[]``, like localstripe's) or
    ``--connect-webhook-url``. Each delivery is signed with its endpoint's secret as Stripe
    does (``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``), sent
    0.2 s after the change, and retried after 0.5, 1, 2, 4 and 8 s more on a non-2xx answer or
    a connection error (localstripe's own events keep its one attempt after 1 s).
  - **The onboarding page** stands in for Stripe's hosted onboarding: ``GET
    /_upss/connect/onboarding/<token>`` (the account link's ``url``) is a small, accessible page
    (one ``<main>``, a heading "Stripe test onboarding (local)", the account id, a form with the
    buttons "Complete onboarding" and "Leave without finishing"). As at Stripe a link is single
    use: its first visit within 300 s opens the page, any later visit (and an expired link) is
    redirected (303) to ``refresh_url``. The form posts back to the same URL (``action=complete``
    or ``action=leave``, with the visit's ``session``): *complete* makes the account
    ``details_submitted``, ``charges_enabled``, ``payouts_enabled``, every requested capability
    ``active``, ``requirements`` empty with ``disabled_reason`` null, and sends
    ``account.updated``; *leave* changes nothing; both answer 303 to ``return_url``. Without a
    ``refresh_url``/``return_url`` a short page says what happened instead.

  Connect state lives in localstripe's store (plain dicts), so ``--state`` keeps it and
  ``DELETE /_config/data`` clears it; webhook endpoints are not kept, as localstripe's are not.

* **Money**, so that the app's ledger can keep its Stripe balance equal to Stripe's.
  localstripe's balance is a fixed stub, its fees are 0, it has no disputes and sends no refund
  or dispute events; here (state in localstripe's store too):

  - **Balance transactions** (``txn_...``: ``amount``, ``available_on``, ``balance_type``,
    ``created``, ``currency``, ``description``, ``exchange_rate``, ``fee``, ``fee_details``
    [``{amount, application, currency, description, type: "stripe_fee"}``], ``net`` = amount -
    fee, ``reporting_category``, ``source`` (an id), ``status`` pending|available, ``type``).
    Made for: a charge that succeeds and is captured (``charge``, fee = ``card_fee_bps`` of the
    amount rounded half up + ``card_fee_fixed``, default 1.5 % + 25; ``pending``, available
    after 2 days or ``/_upss/balance/available``); a refund (``refund``, -amount) and its
    failure (``refund_failure``, +amount); a dispute's withdrawal (``adjustment``, category
    ``dispute``, -amount, fee ``dispute_fee``, default 1500) and, when won, reinstatement
    (``adjustment``, ``dispute_reversal``, +amount, fee -``dispute_fee``); a Connect transfer
    (``transfer``, -amount) and reversal (``transfer_refund``, +amount, source the ``trr_``); a
    payout (``payout``, -amount) and its failure or cancellation (``payout_failure`` /
    ``payout_cancel``, +amount). All but charges are ``available`` at once.
    ``GET /v1/balance_transactions`` (also ``/v1/balance/history``; ``type``, ``source``,
    ``currency``, ``created``, ``limit``, ``starting_after``, ``ending_before``; newest
    first), ``GET /v1/balance_transactions/{id}``. ``GET /v1/balance``: ``available`` and
    ``pending``, each ``[{"amount", "currency", "source_types": {"card": amount}}]`` per
    currency (eur always listed), summed from ``net``.
  - **Charges** as with ``capture_method=automatic_async``: ``balance_transaction`` is null at
    first and set 0.3 s later, with a ``charge.updated`` event (``previous_attributes:
    {"balance_transaction": null}``); localstripe's ``payment_intent.succeeded`` is untouched.
    ``GET /v1/charges/{id}`` answers the current shape (``amount_refunded`` without failed
    refunds, ``disputed``; ``refunds`` is not included, as in the current API).
  - **Refunds**, however made (``POST /v1/refunds`` with ``payment_intent`` or ``charge``,
    ``amount`` (default: what is left), ``reason``, ``metadata``): the current shape (``id``,
    ``object``, ``amount``, ``balance_transaction``, ``charge``, ``created``, ``currency``,
    ``destination_details``, ``metadata``, ``payment_intent``, ``reason``, ``status``, and
    once failed ``failure_reason``, ``failure_balance_transaction``), also from ``GET
    /v1/refunds[/{id}]``. Stripe's refusals: ``amount_too_large``, ``charge_already_refunded``,
    ``charge_disputed`` (an open chargeback). Events ``refund.created``, ``charge.refunded``
    (with ``previous_attributes``) and, 0.3 s later, ``refund.updated`` (the acquirer reference
    number becomes available).
  - **Disputes** (made by the control API): ``dp_...`` with ``amount``,
    ``balance_transactions`` (full objects, as Stripe lists them), ``charge``, ``created``,
    ``currency``, ``evidence``, ``evidence_details`` (``due_by`` the end of the 7th day),
    ``is_charge_refundable``, ``metadata``, ``payment_intent``, ``payment_method_details``,
    ``reason``, ``status``. ``GET /v1/disputes/{id}``, ``GET /v1/disputes`` (``charge``,
    ``payment_intent``, ``created``, paging).
  - **Payouts** to the platform's bank (``ba_local``): ``po_...`` with ``amount``,
    ``arrival_date``, ``automatic``, ``balance_transaction``, ``created``, ``currency``,
    ``destination``, ``failure_balance_transaction``, ``failure_code``, ``failure_message``,
    ``metadata``, ``method`` standard, ``status``, ``type`` bank_account, ... Made by the
    control API (``automatic: true``) or ``POST /v1/payouts`` (``automatic: false``; 400
    ``balance_insufficient`` beyond the available balance). ``GET /v1/payouts[/{id}]``.
  - All these events are platform events (``api_version`` the pinned library's), delivered
    like Connect's above (signed per endpoint, retried with back-off), listed by ``GET
    /v1/events`` and ``/v1/events/{id}``; follow-ups (``charge.refunded``,
    ``funds_withdrawn``...) are sent 0.05 s after the event before them.

Control API (no API key; only answered to loopback clients), all JSON:

* ``POST /_upss/faults`` ``{"method": "POST", "path": "/v1/payment_intents", "mode": "stall",
  "seconds": 2.0, "times": 1}`` -> 200, the fault with its ``id``. ``path`` is a regular
  expression that must match the whole request path; ``method`` may be ``"*"`` (the default);
  ``seconds`` defaults to 2.0, ``times`` to 1. The next ``times`` requests that match and reach
  the point where the mode acts get the fault; then it is used up. Modes:

  - ``stall``: held ``seconds`` while in flight (the key is taken, localstripe has not run it
    yet), then performed;
  - ``stall_after``: performed (and saved), then the response is delayed ``seconds``;
  - ``error_500``: 500 ``api_error`` instead of performing it; saved, so replayed for the key;
  - ``error_500_after``: performed and saved, but this response is a 500 ``api_error``;
  - ``drop_after``: performed and saved, then the connection is closed without a response;
  - ``error_409`` / ``error_429``: 409 ``lock_timeout`` / 429 ``rate_limit`` before the
    idempotency layer, not performed, not saved.

  ``stall``, ``error_500`` and the ``*_after`` modes only act on requests that are performed
  (not on replays, nor on requests the idempotency layer refuses).
* ``GET /_upss/faults`` -> ``{"faults": [...]}`` (what remains); ``DELETE /_upss/faults`` ->
  ``{"deleted": n}``.
* ``GET /_upss/requests`` -> ``{"requests": [{"method", "path", "idempotency_key", "status",
  "replayed", "performed", "fault"}, ...]}`` (``/v1/`` requests, oldest first; ``performed``:
  handed to localstripe, which may still have refused it, see ``status``; a dropped response
  keeps the status it was performed with); ``DELETE /_upss/requests`` -> ``{"deleted": n}``.
* ``GET``/``POST /_upss/connect/onboarding/<token>``: the onboarding page (HTML, above).
* ``POST /_upss/connect/accounts/{id}`` ``{"state": "enabled" | "details_needed"}`` -> 200, the
  account. ``enabled``: as after onboarding; ``details_needed``: ``charges_enabled`` and
  ``payouts_enabled`` false, requested capabilities ``inactive``, requirements past due again
  (``details_submitted`` is kept, as when Stripe asks an onboarded account for more). Sends
  ``account.updated`` if anything changed.
* ``POST /_upss/connect/account_links/expire`` ``{"account": "acct_..."}`` (optional: all links)
  -> ``{"expired": n}``: the account's unused links expire now.
* ``GET /_upss/connect/events`` -> ``{"events": [...]}``: every Connect-layer event, oldest
  first, each with ``deliveries``: ``{endpoint id: {"attempts", "delivered", "last_status"}}``.
* ``GET /_upss/events[?type=...]`` -> ``{"events": [...]}``: every event made by this layer
  (Connect and money), oldest first, with ``deliveries`` as above and ``attempts``:
  ``{endpoint id: [{"at", "status" (null: no answer), "kind": "delivery"|"copy"}, ...]}``.
* ``POST /_upss/events/{id}/deliver`` ``{"copies": 10}`` (1-100; also localstripe's own
  events): that many copies at once, concurrently, each signed, to every endpoint that takes
  the event, no retries -> ``{"event", "type", "copies", "statuses": {endpoint id: [200,
  ...]}}``.
* ``POST /_upss/config`` ``{"card_fee_bps": 150, "card_fee_fixed": 25, "dispute_fee": 1500}``
  (any of them) -> the settings; ``GET`` shows them. They apply to what comes next.
* ``POST /_upss/balance/available`` -> ``{"made_available": n, "balance"}``: every pending
  balance transaction becomes available (and ``balance.available`` is sent).
* ``POST /_upss/refunds/{id}/fail`` -> the refund, ``status: failed``, ``failure_reason:
  lost_or_stolen_card``, a ``refund_failure`` balance transaction; events ``refund.failed``,
  ``refund.updated``.
* ``POST /_upss/disputes`` ``{"payment_intent": "pi_..."}`` or ``{"charge": "ch_..."}``,
  optional ``"inquiry": true``, ``"reason"`` (default fraudulent), ``"amount"`` (default what
  was not refunded), ``"metadata"`` -> the dispute, ``needs_response`` (inquiry:
  ``warning_needs_response``); ``charge.dispute.created`` and, unless an inquiry, the
  withdrawal and ``charge.dispute.funds_withdrawn``.
  ``POST /_upss/disputes/{id}/update`` ``{"status": "under_review"}`` (inquiries:
  ``warning_under_review``; evidence counted as submitted) -> ``charge.dispute.updated``.
  ``POST /_upss/disputes/{id}/close`` ``{"outcome": "won"|"lost"}`` -> ``won``/``lost``
  (inquiry: ``warning_closed``), ``charge.dispute.closed``; won (not an inquiry): the
  reinstatement and ``charge.dispute.funds_reinstated``.
* ``POST /_upss/payouts`` ``{"amount": 5000, "currency": "eur"}`` -> the payout,
  ``in_transit``, ``payout.created``. ``POST /_upss/payouts/{id}/paid|failed|canceled`` ->
  ``payout.paid``; ``payout.failed`` (``failure_code: account_closed``,
  ``failure_balance_transaction``: a ``payout_failure`` one); ``payout.canceled`` (a
  ``payout_cancel`` one).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import collections.abc
import contextvars
import copy
import functools
import hashlib
import hmac
import html
import importlib
import itertools
import json
import logging
import os
import pickle
import re
import secrets
import sys
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import typing_extensions
from aiohttp import web

from .config import LOCAL_CONNECT_WEBHOOK_SECRET, LOCAL_WEBHOOK_SECRET

log = logging.getLogger(__name__)

#: Stripe removes idempotency keys once they are at least this old (seconds).
IDEMPOTENCY_TTL = 24 * 3600
#: Stripe refuses longer idempotency keys.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
#: Fault modes acting before the idempotency layer / on a request that is performed.
FRONT_MODES = ("error_409", "error_429")
EXECUTION_MODES = ("stall", "stall_after", "error_500", "error_500_after", "drop_after")
FAULT_MODES = FRONT_MODES + EXECUTION_MODES
#: Response headers kept with an idempotent result.
_SAVED_HEADERS = ("Content-Type",)
_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
_REQUEST_LOG_SIZE = 10_000


def _use_state_file(store, path: str | None) -> None:
    """Point localstripe's store at ``path`` (or nowhere) instead of /tmp/localstripe.pickle."""

    def dump_to_disk() -> None:
        if path:
            with open(path, "wb") as f:
                pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)

    store.dump_to_disk = dump_to_disk
    if path:
        try:
            with open(path, "rb") as f:
                dict.update(store, pickle.load(f))  # noqa: S301 - our own local file
        except (FileNotFoundError, EOFError):
            pass


# --- idempotency --------------------------------------------------------------------------

@dataclass(frozen=True)
class SavedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request_id: str


@dataclass
class _Entry:
    fingerprint: str
    created: float
    #: None while the first request with the key is still running.
    response: SavedResponse | None = None


class IdempotencyStore:
    """Idempotent results by (API key, idempotency key); ``clock`` is injectable for tests."""

    NEW, REPLAY, MISMATCH, IN_FLIGHT = "new", "replay", "mismatch", "in_flight"

    def __init__(self, *, ttl: float = IDEMPOTENCY_TTL, clock: Callable[[], float] = time.time):
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self) -> None:
        limit = self.clock() - self.ttl
        for k in [k for k, e in self._entries.items() if e.created <= limit]:
            del self._entries[k]

    def begin(self, scope: str, key: str, fingerprint: str
              ) -> tuple[str, SavedResponse | None]:
        """What to do with a request; ``NEW`` means it is now in flight under the key.

        No ``await`` happens in here, so on one event loop the check-and-take is atomic.
        """
        self._expire()
        entry = self._entries.get((scope, key))
        if entry is None:
            self._entries[(scope, key)] = _Entry(fingerprint, self.clock())
            return self.NEW, None
        if entry.fingerprint != fingerprint:
            return self.MISMATCH, None
        if entry.response is None:
            return self.IN_FLIGHT, None
        return self.REPLAY, entry.response

    def finish(self, scope: str, key: str, response: SavedResponse) -> None:
        entry = self._entries.get((scope, key))
        if entry is not None:
            entry.response = response

    def abandon(self, scope: str, key: str) -> None:
        """The request ended without a result (e.g. the server stopped it): free the key."""
        entry = self._entries.get((scope, key))
        if entry is not None and entry.response is None:
            del self._entries[(scope, key)]


def _api_key_scope(request: web.BaseRequest) -> str:
    """The API key of ``Authorization`` (Bearer or Basic), else the raw header."""
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    if kind == "Bearer":
        return value.strip()
    if kind == "Basic":
        try:
            return base64.b64decode(value.strip()).decode("utf-8").split(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            pass
    return header


def _canonical_params(content_type: str, body: bytes) -> object:
    """Request parameters in a form where their order does not matter."""
    if content_type == "application/json":
        try:
            return json.loads(body or b"null")
        except ValueError:
            return body.hex()
    grouped: dict[str, list[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        grouped.setdefault(name, []).append(value)
    return grouped


async def request_fingerprint(request: web.BaseRequest) -> str:
    """Method, path and parameters (body and query string), independent of parameter order.

    ``request.read()`` keeps the body, so localstripe can still read it afterwards.
    """
    body = await request.read()
    query: dict[str, list[str]] = {}
    for name, value in request.query.items():
        query.setdefault(name, []).append(value)
    return json.dumps([request.method, request.path, query,
                       _canonical_params(request.content_type, body)],
                      sort_keys=True, default=str)


# --- current-API parameters -----------------------------------------------------------------

def is_payment_intent_create(request: web.BaseRequest) -> bool:
    return request.method == "POST" and request.path.rstrip("/") == "/v1/payment_intents"


def adapt_payment_intent_params(data: dict) -> dict:
    """Today's PaymentIntent-create parameters as localstripe's (2017-era) ones."""
    data = dict(data)
    allowed = data.pop("allowed_payment_method_types", None)
    if allowed is not None:
        data["payment_method_types"] = allowed
    data.pop("automatic_payment_methods", None)
    return data


def _install_param_translation(server) -> None:
    """Wrap ``localstripe.server.get_post_data``, through which every handler reads its data.

    A handler looks the function up as a module global on each call, so replacing it is
    enough; the body itself is not touched.
    """
    original = server.get_post_data
    if getattr(original, "upss_original", None):
        return

    async def get_post_data(request, remove_auth=True):
        data = await original(request, remove_auth=remove_auth)
        if isinstance(data, dict) and is_payment_intent_create(request):
            data = adapt_payment_intent_params(data)
        return data

    get_post_data.upss_original = original
    server.get_post_data = get_post_data


def _refuse_removed_params_middleware(server):
    """Like Stripe: ``payment_method_types`` on PaymentIntent creation is a 400.

    Sits after localstripe's auth (a 401 comes first) and inside its error middleware, which
    turns the ``UserError`` into Stripe's error JSON.
    """
    from localstripe.errors import UserError

    original = getattr(server.get_post_data, "upss_original", server.get_post_data)

    @web.middleware
    async def refuse_removed_params(request, handler):
        if is_payment_intent_create(request):
            data = await original(request, remove_auth=False)
            if isinstance(data, dict) and "payment_method_types" in data:
                raise UserError(400, (
                    "The parameter payment_method_types is no longer supported when creating "
                    "a PaymentIntent: use allowed_payment_method_types (or "
                    "automatic_payment_methods) instead."), {
                        "code": "payment_method_types_no_longer_supported",
                        "param": "payment_method_types"})
        return await handler(request)

    return refuse_removed_params


# --- faults and request log -----------------------------------------------------------------

@dataclass
class Fault:
    id: str
    method: str
    path: str
    mode: str
    seconds: float
    times: int
    pattern: re.Pattern = field(repr=False, compare=False, default=None)

    def matches(self, request: web.BaseRequest) -> bool:
        return ((self.method == "*" or self.method == request.method)
                and self.pattern.fullmatch(request.path) is not None)

    def export(self) -> dict:
        return {"id": self.id, "method": self.method, "path": self.path, "mode": self.mode,
                "seconds": self.seconds, "times": self.times}


class FaultError(ValueError):
    pass


def _stripe_error(status: int, type_: str, message: str, code: str | None = None,
                  headers: dict | None = None) -> web.Response:
    error = {"type": type_, "message": message}
    if code:
        error["code"] = code
    return web.json_response({"error": error}, status=status, headers=headers)


class StripeLikeLayer:
    """Idempotency, fault switches and the request log, as one outermost aiohttp middleware."""

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self.store = IdempotencyStore(clock=clock)
        self.faults: list[Fault] = []
        self.requests: collections.deque[dict] = collections.deque(maxlen=_REQUEST_LOG_SIZE)
        self._fault_ids = itertools.count(1)
        #: Answers ``/_upss/connect/...`` (set by ``build_app``).
        self.connect: Connect | None = None
        #: Answers the money and event controls (set by ``build_app``).
        self.money: Money | None = None

    # faults
    def add_fault(self, spec: object) -> Fault:
        if not isinstance(spec, dict):
            raise FaultError("expected a JSON object")
        mode = spec.get("mode")
        if mode not in FAULT_MODES:
            raise FaultError(f"mode must be one of {', '.join(FAULT_MODES)}")
        path = spec.get("path")
        if not isinstance(path, str) or not path:
            raise FaultError("path (a regular expression) is required")
        try:
            pattern = re.compile(path)
        except re.error as exc:
            raise FaultError(f"path is not a regular expression: {exc}") from None
        method = spec.get("method", "*")
        seconds = spec.get("seconds", 2.0)
        times = spec.get("times", 1)
        if not isinstance(method, str):
            raise FaultError("method must be a string")
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                or not 0 <= seconds <= 600):
            raise FaultError("seconds must be a number from 0 to 600")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise FaultError("times must be a positive integer")
        fault = Fault(f"fault_{next(self._fault_ids)}", method.upper(), path, mode,
                      float(seconds), times, pattern)
        self.faults.append(fault)
        return fault

    def take_fault(self, request: web.BaseRequest, modes: tuple[str, ...]) -> Fault | None:
        for fault in self.faults:
            if fault.mode in modes and fault.matches(request):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # control API
    async def control(self, request: web.Request) -> web.StreamResponse:
        if request.remote not in _LOOPBACK:
            raise web.HTTPForbidden(text="loopback clients only\n")
        if request.path == "/_upss/faults":
            if request.method == "GET":
                return web.json_response({"faults": [f.export() for f in self.faults]})
            if request.method == "DELETE":
                deleted, self.faults = len(self.faults), []
                return web.json_response({"deleted": deleted})
            if request.method == "POST":
                try:
                    fault = self.add_fault(await request.json())
                except (ValueError, FaultError) as exc:
                    return _stripe_error(400, "invalid_request_error", str(exc))
                return web.json_response(fault.export())
        elif request.path.startswith("/_upss/connect/") and self.connect is not None:
            return await self.connect.control(request)
        elif self.money is not None and (
                answer := await self.money.control(request)) is not None:
            return answer
        elif request.path == "/_upss/requests":
            if request.method == "GET":
                return web.json_response({"requests": list(self.requests)})
            if request.method == "DELETE":
                deleted = len(self.requests)
                self.requests.clear()
                return web.json_response({"deleted": deleted})
        else:
            raise web.HTTPNotFound()
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "DELETE"])

    # the middleware
    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/_upss/"):
            return await self.control(request)
        if not request.path.startswith("/v1/"):
            return await handler(request)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        record = {"method": request.method, "path": request.path, "idempotency_key": key,
                  "status": None, "replayed": False, "performed": False, "fault": None}
        self.requests.append(record)
        response = await self._api_request(request, handler, key or None, record)
        if record["fault"] != "drop_after":  # a dropped one keeps the status it was performed with
            record["status"] = response.status
        return response

    async def _api_request(self, request, handler, key, record) -> web.StreamResponse:
        fault = self.take_fault(request, FRONT_MODES)
        if fault is not None:
            record["fault"] = fault.mode
            if fault.mode == "error_409":
                return _stripe_error(
                    409, "invalid_request_error",
                    "This object cannot be accessed right now because another API request or "
                    "Stripe process is currently accessing it. (fault switch)", "lock_timeout")
            return _stripe_error(429, "invalid_request_error",
                                 "Request rate limit exceeded. (fault switch)", "rate_limit")

        if key is None:
            saved, after = await self._perform(request, handler, record)
            return await self._respond(request, saved, after)
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return _stripe_error(
                400, "invalid_request_error",
                f"Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters long "
                f"(this one has {len(key)}).")
        scope = _api_key_scope(request)
        fingerprint = await request_fingerprint(request)
        verdict, saved = self.store.begin(scope, key, fingerprint)
        if verdict == IdempotencyStore.MISMATCH:
            return _stripe_error(
                400, "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.")
        if verdict == IdempotencyStore.IN_FLIGHT:
            return _stripe_error(
                409, "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still "
                f"going through): {key}. Please try again later.", "idempotency_key_in_use")
        if verdict == IdempotencyStore.REPLAY:
            record["replayed"] = True
            return self._build(saved, key, replayed=True)
        try:
            saved, after = await self._perform(request, handler, record)
        except BaseException:
            self.store.abandon(scope, key)
            raise
        self.store.finish(scope, key, saved)
        return await self._respond(request, saved, after, key)

    async def _perform(self, request, handler, record) -> tuple[SavedResponse, Fault | None]:
        """Run the request (unless a fault says otherwise); the result as it would be saved."""
        request_id = "req_" + secrets.token_hex(7)
        fault = self.take_fault(request, EXECUTION_MODES)
        if fault is not None:
            record["fault"] = fault.mode
            if fault.mode == "stall":
                await asyncio.sleep(fault.seconds)
            elif fault.mode == "error_500":
                return self._snapshot(_stripe_error(
                    500, "api_error", "An unknown error occurred (fault switch)."),
                    request_id), None
        record["performed"] = True
        request["upss_request_id"] = request_id  # for the ``request`` of the events it makes
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        except Exception:  # noqa: BLE001 - Stripe answers 500 api_error, and saves it
            log.exception("localstripe failed on %s %s", request.method, request.path)
            response = _stripe_error(500, "api_error", "An unknown error occurred.")
        record["status"] = response.status
        after = fault if fault is not None and fault.mode.endswith("_after") else None
        return self._snapshot(response, request_id), after

    @staticmethod
    def _snapshot(response: web.StreamResponse, request_id: str) -> SavedResponse:
        body = response.body if isinstance(response, web.Response) else None
        if not isinstance(body, bytes):  # localstripe only answers with bytes bodies
            body = b""
        headers = tuple((name, response.headers[name]) for name in _SAVED_HEADERS
                        if name in response.headers)
        return SavedResponse(response.status, headers, body, request_id)

    @staticmethod
    def _build(saved: SavedResponse, key: str | None, *, replayed: bool = False) -> web.Response:
        response = web.Response(status=saved.status, body=saved.body, headers=saved.headers)
        if replayed:
            response.headers["Request-Id"] = "req_" + secrets.token_hex(7)
            response.headers["Original-Request"] = saved.request_id
            response.headers["Idempotent-Replayed"] = "true"
        else:
            response.headers["Request-Id"] = saved.request_id
        if key is not None:
            response.headers["Idempotency-Key"] = key
        return response

    async def _respond(self, request, saved: SavedResponse, after: Fault | None,
                       key: str | None = None) -> web.StreamResponse:
        if after is None:
            return self._build(saved, key)
        if after.mode == "stall_after":
            await asyncio.sleep(after.seconds)
            return self._build(saved, key)
        if after.mode == "error_500_after":
            return _stripe_error(500, "api_error",
                                 "An unknown error occurred (fault switch, after performing).")
        # drop_after: close the connection without answering; aiohttp then has nowhere to
        # write the response it is handed and drops it.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)


# --- Connect: accounts, account links, transfers, reversals -----------------------------------

#: Seconds an account link can be opened, as at Stripe.
ACCOUNT_LINK_TTL = 300
#: Seconds before the first delivery of an event, then between the retries after a failure.
WEBHOOK_FIRST_DELAY = 0.2
WEBHOOK_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Seconds one delivery attempt may take.
WEBHOOK_TIMEOUT = 5.0
#: Where the Connect state lives in localstripe's store, so ``--state`` keeps it and
#: ``DELETE /_config/data`` clears it. Plain dicts only, so the pickle names no class of ours.
_CONNECT_STATE_KEY = "upss:connect"
_ONBOARDING_PREFIX = "/_upss/connect/onboarding/"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_EU_COUNTRIES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
_CURRENCY_OF_COUNTRY = {"US": "usd", "GB": "gbp", "SE": "sek", "DK": "dkk", "NO": "nok",
                        "CH": "chf", "PL": "pln", "CZ": "czk", "HU": "huf", "RO": "ron",
                        "BG": "bgn", "CA": "cad", "AU": "aud", "JP": "jpy"}
#: The controller an account gets from the legacy ``type`` parameter.
_TYPE_CONTROLLERS = {
    "express": {"fees": {"payer": "application_express"}, "losses": {"payments": "application"},
                "requirement_collection": "stripe", "stripe_dashboard": {"type": "express"}},
    "custom": {"fees": {"payer": "application_custom"}, "losses": {"payments": "application"},
               "requirement_collection": "application", "stripe_dashboard": {"type": "none"}},
    "standard": {"fees": {"payer": "account"}, "losses": {"payments": "stripe"},
                 "requirement_collection": "stripe", "stripe_dashboard": {"type": "full"}},
}
_CONTROLLER_VALUES = {
    ("fees", "payer"): ("account", "application"),
    ("losses", "payments"): ("application", "stripe"),
    ("requirement_collection",): ("application", "stripe"),
    ("stripe_dashboard", "type"): ("express", "full", "none"),
}
_BUSINESS_TYPES = ("company", "government_entity", "individual", "non_profit")
_INDIVIDUAL_DUE = ("individual.address.city", "individual.address.line1",
                   "individual.address.postal_code", "individual.dob.day",
                   "individual.dob.month", "individual.dob.year", "individual.email",
                   "individual.first_name", "individual.last_name", "individual.phone")
_COMPANY_DUE = ("company.address.city", "company.address.line1", "company.address.postal_code",
                "company.name", "company.phone", "company.tax_id",
                "representative.first_name", "representative.last_name")


def _new_id(prefix: str, length: int = 24) -> str:
    """``acct_1PgafTB7WZ01zgkW`` and the like: a 1, then random letters and digits."""
    return prefix + "1" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length - 1))


def _invalid(message: str, param: str | None = None, code: str | None = None,
             status: int = 400):
    """Stripe's ``invalid_request_error`` (localstripe's error middleware writes the JSON)."""
    from localstripe.errors import UserError

    contents = {}
    if code:
        contents["code"] = code
        contents["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        contents["param"] = param
    return UserError(status, message, contents)


def _missing(kind: str, id_: str, param: str, status: int = 400):
    return _invalid(f"No such {kind}: '{id_}'", param, "resource_missing", status)


# Parameters are checked against the pinned stripe library's params TypedDicts, the same source
# as the tests' contract plugin, so that an unknown parameter gets Stripe's 400.

def _params_type(name: str):
    return getattr(importlib.import_module("stripe.params"), name)


@functools.cache
def _param_fields(td) -> dict:
    """``{parameter: type}`` of a params TypedDict, without the request options it inherits."""
    from stripe._request_options import RequestOptions

    namespace = {**vars(typing), **vars(sys.modules[RequestOptions.__module__]),
                 **vars(sys.modules[td.__module__])}
    hints = {}
    for key, annotation in td.__annotations__.items():
        probe = type("Probe", (), {"__annotations__": {key: annotation},
                                   "__module__": td.__module__})
        try:
            hints.update(typing.get_type_hints(probe, globalns=namespace))
        except Exception:  # noqa: BLE001 - an unreadable annotation: anything below this key
            hints[key] = typing.Any
    for key in RequestOptions.__annotations__:
        hints.pop(key, None)
    return hints


def _alternatives(tp) -> list:
    origin = typing.get_origin(tp)
    if origin in (typing.NotRequired, typing.Required):
        return _alternatives(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [alt for arg in typing.get_args(tp) for alt in _alternatives(arg)]
    if tp is type(None):
        return []
    if isinstance(tp, str | typing.ForwardRef):
        return [typing.Any]
    return [tp]


def _is_mapping_type(tp) -> bool:
    from stripe._stripe_object import StripeObject

    if typing_extensions.is_typeddict(tp):  # a dict subclass, but with its own keys
        return False
    origin = typing.get_origin(tp) or tp
    return isinstance(origin, type) and issubclass(origin, dict | collections.abc.Mapping
                                                   | StripeObject)


def _unknown_param(value, tp, path: str) -> str | None:
    """The first parameter under ``value`` that type ``tp`` does not have, as Stripe names it."""
    return _unknown_in(value, _alternatives(tp), path)


def _unknown_in(value, alternatives: list, path: str) -> str | None:
    if not alternatives or typing.Any in alternatives:
        return None
    if isinstance(value, dict):
        if any(_is_mapping_type(alt) for alt in alternatives):
            return None  # metadata and the like: any key
        first = None
        for td in (alt for alt in alternatives if typing_extensions.is_typeddict(alt)):
            found = _unknown_field(value, td, path)
            if found is None:
                return None
            first = first or found
        return first or (f"{path}[{next(iter(value))}]" if value else None)
    if isinstance(value, list):
        items = [alt for a in alternatives
                 if (typing.get_origin(a) or a) in (list, collections.abc.Sequence)
                 for alt in _alternatives((typing.get_args(a) or (typing.Any,))[0])]
        for index, item in enumerate(value):
            found = _unknown_in(item, items or [typing.Any], f"{path}[{index}]")
            if found:
                return found
    return None


def _unknown_field(value: dict, td, path: str) -> str | None:
    fields = _param_fields(td)
    for key, item in value.items():
        where = f"{path}[{key}]" if path else str(key)
        if key not in fields:
            return where
        found = _unknown_param(item, fields[key], where)
        if found:
            return found
    return None


def check_params(params: dict, typed_dict: str) -> dict:
    """``params`` if the library's ``typed_dict`` has all of them, else Stripe's 400."""
    unknown = _unknown_field(params, _params_type(typed_dict), "")
    if unknown:
        raise _invalid(f"Received unknown parameter: {unknown}", unknown, "parameter_unknown")
    if params.get("expand"):
        raise _invalid("The local Stripe (upss.devstripe) does not expand Connect objects; "
                       "read the ids instead.", "expand")
    return params


def _int(value, param: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if not isinstance(value, int | str):
        raise _invalid(f"Invalid integer: {value}", param)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _invalid(f"Invalid integer: {value}", param) from None
    if isinstance(value, bool) or (isinstance(value, str) and not re.fullmatch(r"-?\d+", value)):
        raise _invalid(f"Invalid integer: {value}", param)
    if minimum is not None and number < minimum:
        raise _invalid(f"This value must be greater than or equal to {minimum}.", param)
    if maximum is not None and number > maximum:
        raise _invalid(f"This value must be less than or equal to {maximum}.", param)
    return number


def _object(value, param: str) -> dict:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"Invalid object: {param} takes an object (hash).", param)
    return value


def _bool(value, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _invalid(f"Invalid boolean: {value}", param)


def _str(value, param: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise _invalid(f"Missing required param: {param}.", param, "parameter_missing")
        return None
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {value!r}", param)
    return value


def _choice(value, param: str, choices: tuple[str, ...], *, required: bool = False):
    value = _str(value, param, required=required)
    if value is not None and value not in choices:
        raise _invalid(f"Invalid {param}: must be one of {', '.join(choices)}", param,
                       "parameter_invalid_string")
    return value


def _metadata(value, param: str = "metadata") -> dict:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid("Invalid metadata: must be an object of strings", param)
    return {k: v for k, v in value.items() if v != ""}


def _url(value, param: str) -> str | None:
    value = _str(value, param)
    if value is not None and urlsplit(value).scheme not in ("http", "https"):
        raise _invalid("Not a valid URL", param, "url_invalid")
    return value


def _merge(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _list_page(items: list[dict], url: str, params: dict, kind: str) -> dict:
    """A Stripe list: ``items`` newest first, cut by ``created``, ``limit``, ``starting_after``
    and ``ending_before``."""
    created = params.get("created")
    if created is not None:
        bounds = created if isinstance(created, dict) else {"eq": created}
        tests = {"eq": int.__eq__, "gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__,
                 "lte": int.__le__}
        for op, bound in bounds.items():
            if op not in tests:
                raise _invalid(f"Received unknown parameter: created[{op}]", f"created[{op}]",
                               "parameter_unknown")
            limit_value = _int(bound, f"created[{op}]" if op != "eq" else "created")
            items = [o for o in items if tests[op](o["created"], limit_value)]
    limit = _int(params.get("limit", 10), "limit", minimum=1, maximum=100)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after is not None and before is not None:
        raise _invalid("You may only specify one of these parameters: ending_before, "
                       "starting_after.", "ending_before")
    ids = [o["id"] for o in items]
    if after is not None:
        if after not in ids:
            raise _missing(kind, after, "starting_after")
        rest = items[ids.index(after) + 1:]
        page, has_more = rest[:limit], len(rest) > limit
    elif before is not None:
        if before not in ids:
            raise _missing(kind, before, "ending_before")
        rest = items[:ids.index(before)]
        page, has_more = rest[-limit:], len(rest) > limit
    else:
        page, has_more = items[:limit], len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def _new_state() -> dict:
    return {"accounts": {}, "links": {}, "transfers": {}, "reversals": {}}


class Connect:
    """Stripe Connect as UPSS uses it: accounts, account links with a local onboarding page,
    transfers and their reversals, and their events (see the module docstring).

    Its state is plain dicts (``data()``); ``clock`` is injectable, and without a running event
    loop events are only recorded (``self.events``), which is how the unit tests use it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 data: Callable[[], dict] | None = None, link_ttl: float = ACCOUNT_LINK_TTL,
                 persist: Callable[[], None] = lambda: None,
                 platform_events: Callable[[dict], None] | None = None,
                 platform_webhooks: Callable[[], dict] = dict,
                 retry_delays: tuple[float, ...] = WEBHOOK_RETRY_DELAYS):
        state = _new_state()
        self.clock = clock
        self.data = data or (lambda: state)
        self.link_ttl = link_ttl
        self.persist = persist
        self.platform_events = platform_events
        self.platform_webhooks = platform_webhooks
        self.retry_delays = retry_delays
        #: Connect webhook endpoints: id -> localstripe ``Webhook`` (url, secret, events).
        self.connect_webhooks: dict = {}
        #: Every event made, oldest first, with its deliveries: endpoint id -> attempts, status.
        self.events: collections.deque = collections.deque(maxlen=_REQUEST_LOG_SIZE)
        self.deliveries: dict[str, dict] = {}
        #: event id -> endpoint id -> every attempt: ``{"at", "status", "kind"}``.
        self.attempt_log: dict[str, dict] = {}
        #: Makes a balance transaction and gives its id (``Money.transaction_id``); without
        #: it, transfers and reversals get a made-up id.
        self.ledger: Callable[..., str] | None = None
        self._tasks: set[asyncio.Task] = set()

    def now(self) -> int:
        return int(self.clock())

    # accounts
    def create_account(self, params: dict) -> dict:
        check_params(params, "AccountCreateParams")
        type_ = _choice(params.get("type"), "type", ("custom", "express", "standard"))
        controller = self._controller(params.get("controller"), type_)
        if type_ is None:
            type_ = self._type_of(controller)
        country = (_str(params.get("country"), "country") or "US").upper()
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise _invalid(f"Invalid country: {country}", "country")
        currency = (_str(params.get("default_currency"), "default_currency")
                    or ("eur" if country in _EU_COUNTRIES
                        else _CURRENCY_OF_COUNTRY.get(country, "usd"))).lower()
        business_type = _choice(params.get("business_type"), "business_type", _BUSINESS_TYPES)
        capabilities = {}
        for name, capability in _object(params.get("capabilities"), "capabilities").items():
            requested = _object(capability, f"capabilities[{name}]").get("requested")
            if requested is not None and _bool(requested, f"capabilities[{name}][requested]"):
                capabilities[name] = "inactive"
        business_profile = {
            "annual_revenue": None, "estimated_worker_count": None, "mcc": None,
            "minority_owned_business_designation": None, "name": None,
            "product_description": None, "support_address": None, "support_email": None,
            "support_phone": None, "support_url": None, "url": None}
        _merge(business_profile, _object(params.get("business_profile"), "business_profile"))
        settings = {
            "dashboard": {"display_name": None, "timezone": "Etc/UTC"},
            "payouts": {"debit_negative_balances": True,
                        "schedule": {"delay_days": 2, "interval": "daily"},
                        "statement_descriptor": None}}
        _merge(settings, _object(params.get("settings"), "settings"))
        account_id = _new_id("acct_", 16)
        due = self._requirements_due(business_type, business_profile)
        account = {
            "id": account_id, "object": "account", "business_profile": business_profile,
            "business_type": business_type, "capabilities": capabilities,
            "charges_enabled": False, "controller": controller, "country": country,
            "created": self.now(), "default_currency": currency, "details_submitted": False,
            "email": _str(params.get("email"), "email"),
            "external_accounts": {"object": "list", "data": [], "has_more": False,
                                  "total_count": 0,
                                  "url": f"/v1/accounts/{account_id}/external_accounts"},
            "future_requirements": self._requirements([], None),
            "metadata": _metadata(params.get("metadata")), "payouts_enabled": False,
            "requirements": self._requirements(due, "requirements.past_due"),
            "settings": settings,
            "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
            "type": type_}
        self.data()["accounts"][account_id] = account
        return copy.deepcopy(account)

    @staticmethod
    def _controller(given, type_: str | None) -> dict:
        if given is None:
            controller = copy.deepcopy(_TYPE_CONTROLLERS[type_ or "standard"])
        else:
            if not isinstance(given, dict):
                raise _invalid("Invalid controller: must be an object", "controller")
            controller = copy.deepcopy(_TYPE_CONTROLLERS[type_ or "standard"])
            for path, choices in _CONTROLLER_VALUES.items():
                value = given
                for part in path:
                    value = value.get(part) if isinstance(value, dict) else None
                if value is not None:
                    param = "controller" + "".join(f"[{p}]" for p in path)
                    _choice(value, param, choices)
                    target = controller
                    for part in path[:-1]:
                        target = target[part]
                    target[path[-1]] = value
            dashboard = controller["stripe_dashboard"]["type"]
            if controller["requirement_collection"] == "application" and dashboard != "none":
                raise _invalid("When requirement_collection=application, stripe_dashboard[type] "
                               "must be none.", "controller[stripe_dashboard][type]")
            if (controller["requirement_collection"] == "application"
                    and controller["losses"]["payments"] != "application"):
                raise _invalid("When requirement_collection=application, the platform must be "
                               "liable for negative balances (losses[payments]=application).",
                               "controller[losses][payments]")
            if (dashboard == "none" and controller["requirement_collection"] == "stripe"
                    and controller["losses"]["payments"] != "stripe"):
                raise _invalid("When stripe_dashboard[type]=none and requirement_collection="
                               "stripe, Stripe must be liable for negative balances or refunds "
                               "and chargebacks.", "controller[losses][payments]")
        return {**controller, "is_controller": True, "type": "application"}

    @staticmethod
    def _type_of(controller: dict) -> str:
        """The legacy account type a controller amounts to, else ``none``."""
        shape = (controller["stripe_dashboard"]["type"], controller["fees"]["payer"],
                 controller["losses"]["payments"], controller["requirement_collection"])
        return {("express", "application", "application", "stripe"): "express",
                ("none", "application", "application", "application"): "custom",
                ("full", "account", "stripe", "stripe"): "standard"}.get(shape, "none")

    @staticmethod
    def _requirements_due(business_type: str | None, business_profile: dict) -> list[str]:
        due = ["external_account", "tos_acceptance.date", "tos_acceptance.ip"]
        if not business_profile.get("mcc"):
            due.append("business_profile.mcc")
        if not (business_profile.get("url") or business_profile.get("product_description")):
            due.append("business_profile.url")
        if business_type is None:
            due.append("business_type")
        due.extend(_COMPANY_DUE if business_type in ("company", "non_profit",
                                                     "government_entity") else _INDIVIDUAL_DUE)
        return sorted(due)

    @staticmethod
    def _requirements(due: list[str], disabled_reason: str | None) -> dict:
        return {"alternatives": [], "current_deadline": None, "currently_due": list(due),
                "disabled_reason": disabled_reason, "errors": [],
                "eventually_due": list(due), "past_due": list(due),
                "pending_verification": []}

    def _account(self, account_id: str, param: str = "id", status: int = 404) -> dict:
        account = self.data()["accounts"].get(account_id)
        if account is None:
            raise _missing("account", account_id, param, status)
        return account

    def get_account(self, account_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "AccountRetrieveParams")
        return copy.deepcopy(self._account(account_id))

    def list_accounts(self, params: dict) -> dict:
        check_params(params, "AccountListParams")
        accounts = list(reversed(self.data()["accounts"].values()))
        return copy.deepcopy(_list_page(accounts, "/v1/accounts", params, "account"))

    def set_account_state(self, account_id: str, state: str, *,
                          request: dict | None = None) -> dict:
        """``enabled``: onboarding done, everything requested active; ``details_needed``:
        payouts and charges off, requirements past due again (``details_submitted`` kept)."""
        account = self._account(account_id)
        before = copy.deepcopy(account)
        if state == "enabled":
            account.update(details_submitted=True, charges_enabled=True, payouts_enabled=True)
            account["capabilities"] = {name: "active" for name in account["capabilities"]}
            account["requirements"] = self._requirements([], None)
            if account["tos_acceptance"]["date"] is None:
                account["tos_acceptance"].update(date=self.now(), ip="127.0.0.1")
        elif state == "details_needed":
            account.update(charges_enabled=False, payouts_enabled=False)
            account["capabilities"] = {name: "inactive" for name in account["capabilities"]}
            due = self._requirements_due(account["business_type"],
                                         account["business_profile"])
            account["requirements"] = self._requirements(due, "requirements.past_due")
        else:
            raise ValueError("state must be enabled or details_needed")
        previous = {key: value for key, value in before.items() if account[key] != value}
        if previous:
            self.emit("account.updated", copy.deepcopy(account), account=account_id,
                      previous=previous, request=request)
            self.persist()
        return copy.deepcopy(account)

    # account links
    def create_account_link(self, params: dict, base_url: str) -> dict:
        check_params(params, "AccountLinkCreateParams")
        account_id = _str(params.get("account"), "account", required=True)
        account = self._account(account_id, "account", 400)
        type_ = _choice(params.get("type"), "type", ("account_onboarding", "account_update"),
                        required=True)
        if type_ == "account_update" and account["controller"]["stripe_dashboard"]["type"] \
                != "none":
            raise _invalid("You cannot create `account_update` type Account Links for accounts "
                           "that have access to a Stripe-hosted Dashboard.", "type")
        options = _object(params.get("collection_options"), "collection_options")
        _choice(options.get("fields"), "collection_options[fields]",
                ("currently_due", "eventually_due"))
        _choice(options.get("future_requirements"), "collection_options[future_requirements]",
                ("include", "omit"))
        _choice(params.get("collect"), "collect", ("currently_due", "eventually_due"))
        token = secrets.token_urlsafe(18)
        created = self.now()
        link = {"token": token, "account": account_id, "type": type_,
                "refresh_url": _url(params.get("refresh_url"), "refresh_url"),
                "return_url": _url(params.get("return_url"), "return_url"),
                "created": created, "expires_at": created + int(self.link_ttl),
                "session": None, "finished": False}
        self.data()["links"][token] = link
        return {"object": "account_link", "created": created, "expires_at": link["expires_at"],
                "url": f"{base_url}{_ONBOARDING_PREFIX}{token}"}

    OPEN, USED, EXPIRED, UNKNOWN = "open", "used", "expired", "unknown"

    def open_link(self, token: str) -> tuple[str, dict | None]:
        """A visit to the link: the first one before it expires opens the page (and uses the
        link up, as at Stripe), any later one is sent to ``refresh_url``."""
        link = self.data()["links"].get(token)
        if link is None:
            return self.UNKNOWN, None
        if link["session"] is not None or link["finished"]:
            return self.USED, link
        if self.now() >= link["expires_at"]:
            return self.EXPIRED, link
        link["session"] = secrets.token_urlsafe(12)
        self.persist()
        return self.OPEN, link

    def finish_link(self, token: str, session: str | None, action: str) -> tuple[str, dict | None]:
        """The page's form: ``complete`` enables the account, ``leave`` changes nothing; either
        way the link is done. Without the session of the visit that opened it: ``used``."""
        link = self.data()["links"].get(token)
        if link is None:
            return self.UNKNOWN, None
        if link["finished"] or link["session"] is None or not session \
                or not secrets.compare_digest(session, link["session"]):
            return self.USED, link
        if action not in ("complete", "leave"):
            raise ValueError("action must be complete or leave")
        link["finished"] = True
        if action == "complete":
            self.set_account_state(link["account"], "enabled")
        self.persist()
        return self.OPEN, link

    def expire_links(self, account_id: str | None = None) -> int:
        expired = 0
        for link in self.data()["links"].values():
            if (account_id in (None, link["account"]) and not link["finished"]
                    and link["expires_at"] > self.now()):
                link["expires_at"] = self.now()
                expired += 1
        self.persist()
        return expired

    # transfers
    def _transfer_object(self, transfer: dict) -> dict:
        reversals = self.data()["reversals"].get(transfer["id"], [])
        newest = list(reversed(reversals))
        return copy.deepcopy({**transfer, "reversals": {
            "object": "list", "data": newest[:10], "has_more": len(newest) > 10,
            "total_count": len(newest), "url": f"/v1/transfers/{transfer['id']}/reversals"}})

    def create_transfer(self, params: dict, *, request: dict | None = None) -> dict:
        check_params(params, "TransferCreateParams")
        amount = params.get("amount")
        if amount is None:
            raise _invalid("Missing required param: amount.", "amount", "parameter_missing")
        amount = _int(amount, "amount", minimum=1)
        currency = _str(params.get("currency"), "currency", required=True).lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise _invalid(f"Invalid currency: {currency}.", "currency")
        destination = _str(params.get("destination"), "destination", required=True)
        account = self.data()["accounts"].get(destination)
        if account is None:
            raise _missing("destination", destination, "destination")
        if account["capabilities"].get("transfers") != "active":
            raise _invalid("Your destination account needs to have at least one of the following "
                           "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                           "destination", "insufficient_capabilities_for_transfer")
        source_transaction = _str(params.get("source_transaction"), "source_transaction")
        if source_transaction is not None:
            from localstripe.resources import store

            charge = store.get(f"charge:{source_transaction}")
            if charge is None:
                raise _missing("charge", source_transaction, "source_transaction")
            if getattr(charge, "currency", currency) != currency:
                raise _invalid("The currency of source_transaction's balance transaction "
                               f"({charge.currency}) must be the same as the transfer currency "
                               f"({currency})", "currency")
        transfer_id = _new_id("tr_")
        transfer = {
            "id": transfer_id, "object": "transfer", "amount": amount, "amount_reversed": 0,
            "balance_transaction": self._balance_transaction(
                "transfer", -amount, currency, transfer_id,
                _str(params.get("description"), "description")),
            "created": self.now(),
            "currency": currency, "description": _str(params.get("description"), "description"),
            "destination": destination, "destination_payment": _new_id("py_", 14),
            "livemode": False, "metadata": _metadata(params.get("metadata")),
            "reversed": False, "source_transaction": source_transaction,
            "source_type": _choice(params.get("source_type"), "source_type",
                                   ("bank_account", "card", "fpx")) or "card",
            "transfer_group": _str(params.get("transfer_group"), "transfer_group")}
        self.data()["transfers"][transfer_id] = transfer
        exported = self._transfer_object(transfer)
        self.emit("transfer.created", exported, request=request)
        return exported

    def _balance_transaction(self, type_: str, amount: int, currency: str, source: str,
                             description: str | None) -> str:
        if self.ledger is None:
            return _new_id("txn_")
        return self.ledger(type_, amount, currency, source, description)

    def _transfer(self, transfer_id: str) -> dict:
        transfer = self.data()["transfers"].get(transfer_id)
        if transfer is None:
            raise _missing("transfer", transfer_id, "id", 404)
        return transfer

    def get_transfer(self, transfer_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "TransferRetrieveParams")
        return self._transfer_object(self._transfer(transfer_id))

    def list_transfers(self, params: dict) -> dict:
        check_params(params, "TransferListParams")
        transfers = list(reversed(self.data()["transfers"].values()))
        for key in ("destination", "transfer_group"):
            if params.get(key) is not None:
                wanted = _str(params[key], key)
                transfers = [t for t in transfers if t[key] == wanted]
        page = _list_page(transfers, "/v1/transfers", params, "transfer")
        page["data"] = [self._transfer_object(t) for t in page["data"]]
        return page

    def create_reversal(self, transfer_id: str, params: dict, *,
                        request: dict | None = None) -> dict:
        check_params(params, "TransferReversalCreateParams")
        transfer = self._transfer(transfer_id)
        remaining = transfer["amount"] - transfer["amount_reversed"]
        amount = params.get("amount")
        amount = remaining if amount is None else _int(amount, "amount", minimum=1)
        if params.get("refund_application_fee") is not None:
            _bool(params["refund_application_fee"], "refund_application_fee")
        _str(params.get("description"), "description")
        if remaining == 0:
            raise _invalid(f"Transfer {transfer_id} has already been fully reversed.", "amount")
        if amount > remaining:
            raise _invalid(f"You cannot reverse {amount} of transfer {transfer_id}: only "
                           f"{remaining} of it is left to reverse.", "amount")
        reversal_id = _new_id("trr_")
        reversal = {
            "id": reversal_id, "object": "transfer_reversal", "amount": amount,
            "balance_transaction": self._balance_transaction(
                "transfer_refund", amount, transfer["currency"], reversal_id,
                f"REVERSAL OF TRANSFER {transfer_id}"),
            "created": self.now(),
            "currency": transfer["currency"], "destination_payment_refund": _new_id("pyr_"),
            "metadata": _metadata(params.get("metadata")), "source_refund": None,
            "transfer": transfer_id}
        self.data()["reversals"].setdefault(transfer_id, []).append(reversal)
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        self.emit("transfer.reversed", self._transfer_object(transfer), request=request)
        return copy.deepcopy(reversal)

    def list_reversals(self, transfer_id: str, params: dict) -> dict:
        check_params(params, "TransferReversalListParams")
        self._transfer(transfer_id)
        reversals = list(reversed(self.data()["reversals"].get(transfer_id, [])))
        return copy.deepcopy(_list_page(reversals, f"/v1/transfers/{transfer_id}/reversals",
                                        params, "transfer_reversal"))

    def get_reversal(self, transfer_id: str, reversal_id: str, params: dict) -> dict:
        check_params(params, "TransferReversalRetrieveParams")
        self._transfer(transfer_id)
        for reversal in self.data()["reversals"].get(transfer_id, []):
            if reversal["id"] == reversal_id:
                return copy.deepcopy(reversal)
        raise _missing("transfer_reversal", reversal_id, "id", 404)

    # events
    def emit(self, type_: str, obj: dict, *, account: str | None = None,
             previous: dict | None = None, request: dict | None = None,
             delay: float = 0.0) -> dict:
        """Make an event and deliver it in the background: a Connect event (``account`` set) to
        the Connect endpoints only, a platform event to localstripe's endpoints (and its
        ``/v1/events``)."""
        data = {"object": obj}
        if previous:
            data["previous_attributes"] = copy.deepcopy(previous)
        endpoints = self._endpoints_for(type_, connect=account is not None)
        event = {"id": _new_id("evt_"), "object": "event", "api_version": _api_version(),
                 "created": self.now(), "data": data, "livemode": False,
                 "pending_webhooks": len(endpoints),
                 "request": request or {"id": None, "idempotency_key": None}, "type": type_}
        if account is not None:
            event["account"] = account
        elif self.platform_events is not None:
            self.platform_events(copy.deepcopy(event))
        if len(self.events) == self.events.maxlen:
            self.deliveries.pop(self.events[0]["id"], None)
            self.attempt_log.pop(self.events[0]["id"], None)
        self.events.append(event)
        self.deliveries[event["id"]] = {name: {"attempts": 0, "delivered": False,
                                               "last_status": None} for name, _ in endpoints}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return event  # no server running (unit tests): recorded only
        task = loop.create_task(self._deliver(event, endpoints, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return event

    def _endpoints_for(self, type_: str, *, connect: bool) -> list:
        hooks = self.connect_webhooks if connect else self.platform_webhooks()
        return [(name, hook) for name, hook in list(hooks.items())
                if hook.events is None or type_ in hook.events]

    async def _deliver(self, event: dict, endpoints: list, delay: float = 0.0) -> None:
        payload = json.dumps(event, indent=2, sort_keys=True).encode("utf-8")
        await asyncio.gather(*(self._deliver_to(event["id"], name, hook, payload, delay)
                               for name, hook in endpoints))

    def _signed_headers(self, secret: str, payload: bytes) -> dict:
        timestamp = self.now()
        signature = hmac.new(secret.encode("utf-8"), b"%d.%s" % (timestamp, payload),
                             hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json; charset=utf-8",
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Stripe-Signature": f"t={timestamp},v1={signature}"}

    def _log_attempt(self, event_id: str, name: str, status: int | None, kind: str) -> None:
        if event_id in self.deliveries:
            self.attempt_log.setdefault(event_id, {}).setdefault(name, []).append(
                {"at": round(self.clock(), 3), "status": status, "kind": kind})

    def event_log(self, type_: str | None = None) -> list[dict]:
        """Every event made here, oldest first, with its deliveries and each attempt."""
        return [{**event, "deliveries": self.deliveries.get(event["id"], {}),
                 "attempts": self.attempt_log.get(event["id"], {})}
                for event in self.events if type_ is None or event["type"] == type_]

    async def deliver_copies(self, event_id: str, copies: int) -> dict:
        """Send ``copies`` copies of an event at once, each signed, to every endpoint that
        takes it (no retries); their HTTP statuses (None: no answer) by endpoint."""
        import aiohttp

        event = next((e for e in self.events if e["id"] == event_id), None)
        if event is None:
            from localstripe.resources import store

            stored = store.get(f"event:{event_id}")
            if stored is None:
                raise _missing("event", event_id, "id", 404)
            event = stored._export()
        endpoints = self._endpoints_for(event["type"], connect="account" in event)
        payload = json.dumps(event, indent=2, sort_keys=True).encode("utf-8")

        async def one(session, name: str, hook) -> int | None:
            try:
                async with session.post(hook.url, data=payload,
                                        headers=self._signed_headers(hook.secret, payload)
                                        ) as answer:
                    status = answer.status
            except (TimeoutError, aiohttp.ClientError):
                status = None
            self._log_attempt(event_id, name, status, "copy")
            return status

        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            jobs = [(name, one(session, name, hook)) for name, hook in endpoints
                    for _ in range(copies)]
            statuses = await asyncio.gather(*(job for _, job in jobs))
        by_endpoint: dict[str, list] = {name: [] for name, _ in endpoints}
        for (name, _), status in zip(jobs, statuses, strict=True):
            by_endpoint[name].append(status)
        return {"event": event_id, "type": event["type"], "copies": copies,
                "statuses": by_endpoint}

    async def _deliver_to(self, event_id: str, name: str, hook, payload: bytes,
                          delay: float = 0.0) -> None:
        """Signed like Stripe (``t=...,v1=HMAC-SHA256(secret, "t.body")``), retried after
        a non-2xx answer or a connection error."""
        import aiohttp

        record = self.deliveries.get(event_id, {}).get(name) or {
            "attempts": 0, "delivered": False, "last_status": None}
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for wait in (WEBHOOK_FIRST_DELAY + delay, *self.retry_delays):
                await asyncio.sleep(wait)
                headers = self._signed_headers(hook.secret, payload)
                record["attempts"] += 1
                try:
                    async with session.post(hook.url, data=payload, headers=headers) as answer:
                        record["last_status"] = answer.status
                        self._log_attempt(event_id, name, answer.status, "delivery")
                        if 200 <= answer.status < 300:
                            record["delivered"] = True
                            return
                except (TimeoutError, aiohttp.ClientError) as exc:
                    record["last_status"] = None
                    self._log_attempt(event_id, name, None, "delivery")
                    log.info("event %s to %s failed: %s", event_id, hook.url, exc)

    # HTTP: the API routes
    @staticmethod
    def _request_info(request: web.BaseRequest) -> dict:
        return {"id": request.get("upss_request_id"),
                "idempotency_key": request.headers.get("Idempotency-Key")}

    @staticmethod
    async def _body(request: web.Request) -> dict:
        from localstripe import server

        data = await server.get_post_data(request)
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _query(request: web.Request) -> dict:
        from localstripe import server

        return server.unflatten_data(request.query)

    @staticmethod
    def _json(obj: dict) -> web.Response:
        from localstripe.errors import json_response

        return json_response(obj)

    async def http_create_account(self, request):
        return self._json(self.create_account(await self._body(request)))

    async def http_list_accounts(self, request):
        return self._json(self.list_accounts(self._query(request)))

    async def http_get_account(self, request):
        return self._json(self.get_account(request.match_info["id"], self._query(request)))

    async def http_create_account_link(self, request):
        base = f"{request.scheme}://{request.host}"
        link = self.create_account_link(await self._body(request), base)
        return self._json(link)

    async def http_create_transfer(self, request):
        return self._json(self.create_transfer(await self._body(request),
                                               request=self._request_info(request)))

    async def http_list_transfers(self, request):
        return self._json(self.list_transfers(self._query(request)))

    async def http_get_transfer(self, request):
        return self._json(self.get_transfer(request.match_info["id"], self._query(request)))

    async def http_create_reversal(self, request):
        return self._json(self.create_reversal(request.match_info["id"],
                                               await self._body(request),
                                               request=self._request_info(request)))

    async def http_list_reversals(self, request):
        return self._json(self.list_reversals(request.match_info["id"], self._query(request)))

    async def http_get_reversal(self, request):
        return self._json(self.get_reversal(request.match_info["transfer"],
                                            request.match_info["id"], self._query(request)))

    async def http_config_webhook(self, request):
        """``POST /_config/connect_webhooks/{id}``: like localstripe's ``/_config/webhooks``."""
        from localstripe.errors import UserError
        from localstripe.webhooks import Webhook

        data = await self._body(request)
        url, secret, events = data.get("url"), data.get("secret"), data.get("events")
        if not isinstance(url, str) or not url.startswith("http") or not secret:
            raise UserError(400, "Bad request")
        if events is not None and not isinstance(events, list):
            raise UserError(400, "Bad request")
        self.connect_webhooks[request.match_info["id"]] = Webhook(url, secret, events)
        return web.Response()

    def add_routes(self, app: web.Application) -> None:
        for method, path, handler in (
                ("POST", "/v1/accounts", self.http_create_account),
                ("GET", "/v1/accounts", self.http_list_accounts),
                ("GET", "/v1/accounts/{id}", self.http_get_account),
                ("POST", "/v1/account_links", self.http_create_account_link),
                ("POST", "/v1/transfers", self.http_create_transfer),
                ("GET", "/v1/transfers", self.http_list_transfers),
                ("GET", "/v1/transfers/{id}", self.http_get_transfer),
                ("POST", "/v1/transfers/{id}/reversals", self.http_create_reversal),
                ("GET", "/v1/transfers/{id}/reversals", self.http_list_reversals),
                ("GET", "/v1/transfers/{transfer}/reversals/{id}", self.http_get_reversal),
                ("POST", "/_config/connect_webhooks/{id}", self.http_config_webhook)):
            app.router.add_route(method, path, handler)

    # HTTP: the control API and the onboarding page (loopback only, checked by the layer)
    async def control(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(_ONBOARDING_PREFIX):
            token = path[len(_ONBOARDING_PREFIX):]
            if request.method == "GET":
                return self._onboarding_visit(token)
            if request.method == "POST":
                form = await request.post()
                return self._onboarding_submit(token, form.get("session"), form.get("action"))
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        match = re.fullmatch(r"/_upss/connect/accounts/([^/]+)", path)
        if match and request.method == "POST":
            try:
                spec = await request.json()
                state = spec.get("state") if isinstance(spec, dict) else None
                if state not in ("enabled", "details_needed"):
                    raise ValueError('state must be "enabled" or "details_needed"')
            except ValueError as exc:
                return _stripe_error(400, "invalid_request_error", str(exc))
            if match.group(1) not in self.data()["accounts"]:
                return _stripe_error(404, "invalid_request_error",
                                     f"No such account: '{match.group(1)}'", "resource_missing")
            return web.json_response(self.set_account_state(match.group(1), state))
        if path == "/_upss/connect/account_links/expire" and request.method == "POST":
            try:
                spec = await request.json() if request.can_read_body else {}
            except ValueError as exc:
                return _stripe_error(400, "invalid_request_error", str(exc))
            account = spec.get("account") if isinstance(spec, dict) else None
            return web.json_response({"expired": self.expire_links(account)})
        if path == "/_upss/connect/events" and request.method == "GET":
            return web.json_response({"events": [
                {**event, "deliveries": self.deliveries.get(event["id"], {})}
                for event in self.events]})
        raise web.HTTPNotFound()

    def _onboarding_visit(self, token: str) -> web.Response:
        verdict, link = self.open_link(token)
        if verdict == self.OPEN:
            account = self.data()["accounts"][link["account"]]
            return _onboarding_page(token, link, account)
        return self._onboarding_refresh(verdict, link)

    def _onboarding_submit(self, token: str, session, action) -> web.Response:
        if action not in ("complete", "leave"):
            return _message_page(400, "Unknown choice",
                                 "Choose “Complete onboarding” or “Leave without finishing”.")
        verdict, link = self.finish_link(token, session, action)
        if verdict != self.OPEN:
            return self._onboarding_refresh(verdict, link)
        if link["return_url"]:
            raise web.HTTPSeeOther(link["return_url"])
        done = ("Onboarding is complete" if action == "complete"
                else "You left onboarding without finishing")
        return _message_page(200, done, "You can close this page.")

    @staticmethod
    def _onboarding_refresh(verdict: str, link: dict | None) -> web.Response:
        if verdict == Connect.UNKNOWN or link is None:
            return _message_page(404, "Link not found",
                                 "This onboarding link does not exist on this local Stripe.")
        if link["refresh_url"]:
            raise web.HTTPSeeOther(link["refresh_url"])
        return _message_page(410, "Link expired",
                             "This onboarding link has expired or was already used. Ask for a "
                             "new one.")


def _api_version() -> str:
    import stripe

    return stripe.api_version


_PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       background: #ffffff; color: #1a1a1a; line-height: 1.5; }
main { max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; color: #0a2540; }
code { font-size: 1rem; background: #eef1f5; color: #1a1a1a; padding: 0 .25rem; }
.buttons { display: flex; flex-wrap: wrap; gap: .75rem; margin-top: 1.5rem; }
button { font: inherit; padding: .6rem 1.1rem; border-radius: 6px; border: 2px solid #0a2540;
         cursor: pointer; }
button.primary { background: #0a2540; color: #ffffff; }
button.secondary { background: #ffffff; color: #0a2540; }
button:focus-visible { outline: 3px solid #0a2540; outline-offset: 3px; }
"""


def _html_page(status: int, title: str, body: str) -> web.Response:
    text = ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)} – Stripe test onboarding (local)</title>\n"
            f"<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            "</body>\n</html>\n")
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _message_page(status: int, title: str, message: str) -> web.Response:
    return _html_page(status, title, f"<h1>{html.escape(title)}</h1>\n"
                                     f"<p>{html.escape(message)}</p>")


def _onboarding_page(token: str, link: dict, account: dict) -> web.Response:
    """Stands in for Stripe's hosted onboarding: one form, two buttons."""
    what = ("update the details of" if link["type"] == "account_update"
            else "finish onboarding for")
    email = (f" (<span>{html.escape(account['email'])}</span>)" if account.get("email")
             else "")
    body = (
        "<h1>Stripe test onboarding (local)</h1>\n"
        f"<p>This page stands in for Stripe's hosted onboarding. It lets you {what} the "
        f"connected account <code>{html.escape(account['id'])}</code>{email}.</p>\n"
        "<p>“Complete onboarding” marks the account as verified, with payouts enabled. "
        "“Leave without finishing” returns without changing it.</p>\n"
        f"<form method=\"post\" action=\"{_ONBOARDING_PREFIX}{html.escape(token)}\">\n"
        f"<input type=\"hidden\" name=\"session\" value=\"{html.escape(link['session'])}\">\n"
        "<div class=\"buttons\">\n"
        "<button type=\"submit\" class=\"primary\" name=\"action\" value=\"complete\">"
        "Complete onboarding</button>\n"
        "<button type=\"submit\" class=\"secondary\" name=\"action\" value=\"leave\">"
        "Leave without finishing</button>\n"
        "</div>\n</form>")
    return _html_page(200, "Account onboarding", body)


def _platform_event_store(store) -> Callable[[dict], None]:
    """Put a platform event in localstripe's store too, so ``GET /v1/events`` lists it."""
    from localstripe.resources import Event

    def put(event: dict) -> None:
        obj = Event.__new__(Event)
        obj.__dict__.update(event)
        dict.__setitem__(store, f"event:{event['id']}", obj)

    return put


def _connect_state_in(store) -> Callable[[], dict]:
    def data() -> dict:
        state = store.get(_CONNECT_STATE_KEY)
        if state is None:
            state = _new_state()
            dict.__setitem__(store, _CONNECT_STATE_KEY, state)
        return state

    return data


# --- Money: balance transactions, refunds, disputes, payouts ----------------------------------

#: Card processing fee: basis points of the amount (rounded half up to a cent) plus a fixed part.
CARD_FEE_BPS = 150
CARD_FEE_FIXED = 25
#: What a dispute's withdrawal costs (returned when the dispute is won).
DISPUTE_FEE = 1500
#: ``capture_method=automatic_async``: the charge's balance transaction comes this much later.
CHARGE_BALANCE_DELAY = 0.3
#: A refund's ``refund.updated`` (its acquirer reference number) comes this much later.
REFUND_UPDATE_DELAY = 0.3
#: A follow-up event (``charge.refunded``, ``funds_withdrawn``...) is sent this much after the
#: one before it, so that receivers usually get them in Stripe's order.
FOLLOW_UP_DELAY = 0.05
DISPUTE_RESPONSE_DAYS = 7
CHARGE_AVAILABLE_AFTER = 2 * 86400
PAYOUT_ARRIVAL_AFTER = 2 * 86400
MAX_DELIVER_COPIES = 100

_MONEY_STATE_KEY = "upss:money"
_REPORTING_CATEGORIES = {
    "charge": "charge", "refund": "refund", "refund_failure": "refund_failure",
    "transfer": "transfer", "transfer_refund": "transfer_reversal", "payout": "payout",
    "payout_failure": "payout_reversal", "payout_cancel": "payout_reversal"}
_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_DISPUTE_REASONS = (
    "bank_cannot_process", "check_returned", "credit_not_processed", "customer_initiated",
    "debit_not_authorized", "duplicate", "fraudulent", "general", "incorrect_account_details",
    "insufficient_funds", "noncompliant", "product_not_received", "product_unacceptable",
    "subscription_canceled", "unrecognized")
_NETWORK_REASON_CODES = {"fraudulent": "10.4", "duplicate": "12.6.1", "general": "13.7",
                         "product_not_received": "13.1", "credit_not_processed": "13.6"}
_EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy",
    "cancellation_policy_disclosure", "cancellation_rebuttal", "customer_communication",
    "customer_email_address", "customer_name", "customer_purchase_ip", "customer_signature",
    "duplicate_charge_documentation", "duplicate_charge_explanation", "duplicate_charge_id",
    "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address",
    "shipping_carrier", "shipping_date", "shipping_documentation", "shipping_tracking_number",
    "uncategorized_file", "uncategorized_text")
_NO_REQUEST = {"id": None, "idempotency_key": None}
#: The API request being performed (its ``request`` for the events it makes), set by
#: the money middleware so that hooks deep in localstripe can read it.
_CURRENT_REQUEST: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "upss_current_request", default=None)


def _new_money_state() -> dict:
    return {"transactions": {}, "refunds": {}, "disputes": {}, "payouts": {}}


def card_fee(amount: int, bps: int = CARD_FEE_BPS, fixed: int = CARD_FEE_FIXED) -> int:
    """``bps`` basis points of ``amount``, rounded half up to a cent, plus ``fixed``."""
    return (2 * amount * bps + 10_000) // 20_000 + fixed


class Money:
    """What moves money at Stripe and localstripe leaves out: the balance as balance
    transactions (with fees), refunds and their events, disputes, payouts to the platform's
    bank, in the current API's shapes (see the module docstring). Its events go through
    ``connect.emit`` (platform events: localstripe's endpoints and ``/v1/events``)."""

    def __init__(self, connect: Connect, *, data: Callable[[], dict] | None = None,
                 persist: Callable[[], None] = lambda: None):
        state = _new_money_state()
        self.connect = connect
        self.data = data or (lambda: state)
        self.persist = persist
        self.config = {"card_fee_bps": CARD_FEE_BPS, "card_fee_fixed": CARD_FEE_FIXED,
                       "dispute_fee": DISPUTE_FEE}

    def now(self) -> int:
        return self.connect.now()

    @staticmethod
    def _later(delay: float, callback: Callable[[], None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            callback()  # no server running (unit tests): at once
            return
        loop.call_later(delay, callback)

    def _emit(self, type_: str, obj: dict, *, previous: dict | None = None,
              request: dict | None = None, delay: float = 0.0) -> dict:
        return self.connect.emit(type_, copy.deepcopy(obj), previous=previous,
                                 request=request, delay=delay)

    def set_config(self, spec: object) -> dict:
        if not isinstance(spec, dict):
            raise _invalid("expected a JSON object")
        changes = {}
        for key, value in spec.items():
            if key not in self.config:
                raise _invalid(f"unknown setting {key}; known: {', '.join(self.config)}", key)
            changes[key] = _int(value, key, minimum=0)
        self.config.update(changes)
        return dict(self.config)

    # balance transactions and the balance
    def add_transaction(self, type_: str, amount: int, currency: str, source: str, *,
                        fee: int = 0, fee_description: str | None = None,
                        category: str | None = None, description: str | None = None,
                        status: str = "available", available_after: int = 0) -> dict:
        created = self.now()
        txn = {"id": _new_id("txn_"), "object": "balance_transaction", "amount": amount,
               "available_on": created + available_after, "balance_type": "payments",
               "created": created, "currency": currency, "description": description,
               "exchange_rate": None, "fee": fee,
               "fee_details": ([{"amount": fee, "application": None, "currency": currency,
                                 "description": fee_description, "type": "stripe_fee"}]
                               if fee else []),
               "net": amount - fee,
               "reporting_category": category or _REPORTING_CATEGORIES[type_],
               "source": source, "status": status, "type": type_}
        self.data()["transactions"][txn["id"]] = txn
        self.persist()
        return copy.deepcopy(txn)

    def transaction_id(self, type_: str, amount: int, currency: str, source: str,
                       description: str | None = None) -> str:
        """For Connect: a transfer's or reversal's balance transaction, its id."""
        return self.add_transaction(type_, amount, currency, source,
                                    description=description)["id"]

    def make_available(self) -> int:
        made = 0
        now = self.now()
        for txn in self.data()["transactions"].values():
            if txn["status"] == "pending":
                txn["status"], txn["available_on"] = "available", min(txn["available_on"], now)
                made += 1
        self.persist()
        if made:
            self._emit("balance.available", self.balance())
        return made

    def balance(self) -> dict:
        sums: dict[str, dict[str, int]] = {"available": {"eur": 0}, "pending": {"eur": 0}}
        for txn in self.data()["transactions"].values():
            for status in sums:
                sums[status].setdefault(txn["currency"], 0)
            sums[txn["status"]][txn["currency"]] += txn["net"]
        return {"object": "balance", "livemode": False, **{
            status: [{"amount": amount, "currency": currency, "source_types": {"card": amount}}
                     for currency, amount in sorted(by_currency.items())]
            for status, by_currency in sums.items()}}

    def get_transaction(self, txn_id: str) -> dict:
        txn = self.data()["transactions"].get(txn_id)
        if txn is None:
            raise _missing("balance transaction", txn_id, "id", 404)
        return copy.deepcopy(txn)

    def list_transactions(self, params: dict, url: str) -> dict:
        check_params(params, "BalanceTransactionListParams")
        items = list(reversed(self.data()["transactions"].values()))
        for key in ("type", "source", "currency"):
            if params.get(key) is not None:
                wanted = _str(params[key], key)
                items = [t for t in items if t[key] == wanted]
        return copy.deepcopy(_list_page(items, url, params, "balance_transaction"))

    # charges
    def _refunded(self, charge_id: str) -> int:
        return sum(r["amount"] for r in self.data()["refunds"].values()
                   if r["charge"] == charge_id and r["status"] != "failed")

    def _disputes_of(self, charge_id: str) -> list[dict]:
        return [d for d in self.data()["disputes"].values() if d["charge"] == charge_id]

    def charge_object(self, charge) -> dict:
        """A localstripe charge as the current API shows it (``refunds`` is not included by
        default any more, so it is left out)."""
        from localstripe.resources import store

        method = store.get(f"payment_method:{charge.payment_method}")
        card = dict(getattr(method, "card", None) or {})
        refunded = self._refunded(charge.id)
        succeeded = charge.status == "succeeded"
        captured = bool(charge.captured) and succeeded
        return {
            "id": charge.id, "object": "charge", "amount": charge.amount,
            "amount_captured": charge.amount if captured else 0, "amount_refunded": refunded,
            "application": None, "application_fee": None, "application_fee_amount": None,
            "balance_transaction": charge.balance_transaction,
            "billing_details": {"address": {"city": None, "country": None, "line1": None,
                                            "line2": None, "postal_code": None,
                                            "state": None},
                                "email": None, "name": None, "phone": None, "tax_id": None},
            "calculated_statement_descriptor": "UPSS", "captured": captured,
            "created": charge.created, "currency": charge.currency,
            "customer": charge.customer, "description": charge.description,
            "disputed": bool(self._disputes_of(charge.id)),
            "failure_balance_transaction": None, "failure_code": charge.failure_code,
            "failure_message": charge.failure_message, "fraud_details": {}, "livemode": False,
            "metadata": dict(charge.metadata or {}), "on_behalf_of": None,
            "outcome": {"advice_code": None, "network_advice_code": None,
                        "network_decline_code": None,
                        "network_status": "approved_by_network" if succeeded
                        else "declined_by_network",
                        "reason": None if succeeded else "generic_decline",
                        "seller_message": "Payment complete." if succeeded
                        else "The bank did not return any further details with this decline.",
                        "type": "authorized" if succeeded else "issuer_declined"},
            "paid": succeeded, "payment_intent": charge.payment_intent,
            "payment_method": charge.payment_method,
            "payment_method_details": {"card": {
                "brand": card.get("brand", "visa"), "country": card.get("country", "US"),
                "exp_month": card.get("exp_month"), "exp_year": card.get("exp_year"),
                "fingerprint": card.get("fingerprint"), "funding": card.get("funding", "credit"),
                "last4": card.get("last4"), "network": card.get("brand", "visa")},
                "type": "card"},
            "receipt_email": charge.receipt_email, "receipt_number": charge.receipt_number,
            "receipt_url": None,
            "refunded": charge.amount > 0 and refunded >= charge.amount, "review": None,
            "shipping": None, "source_transfer": None,
            "statement_descriptor": charge.statement_descriptor,
            "statement_descriptor_suffix": None, "status": charge.status,
            "transfer_data": None, "transfer_group": None}

    def charge_succeeded(self, charge) -> None:
        """Called when localstripe makes a charge succeed (and captured): like
        ``automatic_async``, its balance transaction comes a moment later, with
        ``charge.updated``."""
        def settle() -> None:
            if charge.balance_transaction:
                return
            fee = card_fee(charge.amount, self.config["card_fee_bps"],
                           self.config["card_fee_fixed"])
            txn = self.add_transaction(
                "charge", charge.amount, charge.currency, charge.id, fee=fee,
                fee_description="Stripe processing fees", description=charge.description,
                status="pending", available_after=CHARGE_AVAILABLE_AFTER)
            charge.balance_transaction = txn["id"]
            self.persist()
            self._emit("charge.updated", self.charge_object(charge),
                       previous={"balance_transaction": None})

        charge.balance_transaction = None
        self._later(CHARGE_BALANCE_DELAY, settle)

    @staticmethod
    def _charge(charge_id: str | None = None, payment_intent: str | None = None,
                param: str = "charge"):
        from localstripe.resources import store

        if payment_intent is not None:
            intent = store.get(f"payment_intent:{payment_intent}")
            if intent is None:
                raise _missing("payment_intent", payment_intent, "payment_intent")
            if intent.latest_charge is None:
                raise _invalid(f"PaymentIntent {payment_intent} has no charge.",
                               "payment_intent", "charge_not_found")
            return intent.latest_charge
        charge = store.get(f"charge:{charge_id}") if isinstance(charge_id, str) else None
        if charge is None:
            raise _missing("charge", str(charge_id), param)
        return charge

    # refunds
    def check_refund(self, charge_id, payment_intent, amount):
        """Stripe's refusals that localstripe lacks, before anything is made; the amount to
        refund (by default what is left)."""
        from localstripe.resources import try_convert_to_int

        if not (isinstance(charge_id, str) or isinstance(payment_intent, str)):
            return amount  # localstripe refuses it
        charge = self._charge(charge_id, payment_intent)
        if any(d["status"] not in ("won", "lost", "warning_closed")
               and not d["is_charge_refundable"] for d in self._disputes_of(charge.id)):
            raise _invalid(f"Charge {charge.id} has been charged back; cannot issue a refund.",
                           None, "charge_disputed")
        left = charge.amount - self._refunded(charge.id)
        if left <= 0:
            raise _invalid(f"Charge {charge.id} has already been refunded.", None,
                           "charge_already_refunded")
        number = try_convert_to_int(amount)
        if amount is None:
            return left
        if isinstance(number, int) and number > left:
            raise _invalid(f"Refund amount ({number}) is greater than unrefunded amount on "
                           f"charge ({left})", "amount", "amount_too_large")
        return amount

    def refund_created(self, refund, reason: str | None) -> None:
        """Called when localstripe has made a refund: its balance transaction (instead of
        localstripe's), the current-API refund and its events."""
        from localstripe.resources import store

        store.pop(f"balance_transaction:{refund.balance_transaction}", None)
        charge = self._charge(refund.charge)
        before = self._refunded(charge.id)
        txn = self.add_transaction("refund", -refund.amount, refund.currency, refund.id,
                                   description=f"REFUND FOR CHARGE ({charge.description})"
                                   if charge.description else "REFUND FOR CHARGE")
        refund.balance_transaction = txn["id"]
        obj = {"id": refund.id, "object": "refund", "amount": refund.amount,
               "balance_transaction": txn["id"], "charge": charge.id,
               "created": refund.created, "currency": refund.currency,
               "destination_details": {"card": {"reference": None,
                                                "reference_status": "pending",
                                                "reference_type": "acquirer_reference_number",
                                                "type": "refund"}, "type": "card"},
               "metadata": dict(refund.metadata or {}),
               "payment_intent": refund.payment_intent or charge.payment_intent,
               "reason": reason, "receipt_number": None, "source_transfer_reversal": None,
               "status": "succeeded", "transfer_reversal": None}
        self.data()["refunds"][refund.id] = obj
        self.persist()
        request = _CURRENT_REQUEST.get()
        self._emit("refund.created", obj, request=request)
        charged = self.charge_object(charge)
        previous = {"amount_refunded": before}
        if charged["refunded"]:
            previous["refunded"] = False
        self._emit("charge.refunded", charged, previous=previous, request=request,
                   delay=FOLLOW_UP_DELAY)

        def reference_available() -> None:
            current = self.data()["refunds"].get(refund.id)
            if current is None or current["status"] != "succeeded":
                return
            card = current["destination_details"]["card"]
            previous = {"destination_details": {"card": {
                "reference": card["reference"], "reference_status": card["reference_status"]}}}
            card["reference"] = "".join(secrets.choice("0123456789") for _ in range(23))
            card["reference_status"] = "available"
            self.persist()
            self._emit("refund.updated", current, previous=previous)

        self._later(REFUND_UPDATE_DELAY, reference_available)

    def _refund(self, refund_id: str, status: int = 404) -> dict:
        refund = self.data()["refunds"].get(refund_id)
        if refund is None:
            raise _missing("refund", refund_id, "id", status)
        return refund

    def get_refund(self, refund_id: str) -> dict:
        return copy.deepcopy(self._refund(refund_id))

    def list_refunds(self, params: dict) -> dict:
        check_params(params, "RefundListParams")
        items = list(reversed(self.data()["refunds"].values()))
        for key in ("charge", "payment_intent"):
            if params.get(key) is not None:
                wanted = _str(params[key], key)
                items = [r for r in items if r[key] == wanted]
        return copy.deepcopy(_list_page(items, "/v1/refunds", params, "refund"))

    def fail_refund(self, refund_id: str) -> dict:
        from localstripe.resources import store

        refund = self._refund(refund_id)
        if refund["status"] != "succeeded":
            raise _invalid(f"Refund {refund_id} is {refund['status']}, not succeeded.")
        txn = self.add_transaction("refund_failure", refund["amount"], refund["currency"],
                                   refund_id, description="REFUND FAILURE")
        previous = {"failure_balance_transaction": None, "failure_reason": None,
                    "status": "succeeded"}
        refund.update(status="failed", failure_reason="lost_or_stolen_card",
                      failure_balance_transaction=txn["id"])
        stored = store.get(f"refund:{refund_id}")
        if stored is not None:
            stored.status = "failed"
        self.persist()
        self._emit("refund.failed", refund)
        self._emit("refund.updated", refund, previous=previous, delay=FOLLOW_UP_DELAY)
        return copy.deepcopy(refund)

    # disputes
    def create_dispute(self, spec: object) -> dict:
        spec = _object(spec, "body")
        if (spec.get("charge") is None) == (spec.get("payment_intent") is None):
            raise _invalid("give one of charge and payment_intent", "charge")
        charge = self._charge(spec.get("charge"), spec.get("payment_intent"))
        if charge.status != "succeeded" or not charge.captured:
            raise _invalid(f"Charge {charge.id} has not been paid.", "charge")
        if any(d["status"] not in ("won", "lost", "warning_closed")
               for d in self._disputes_of(charge.id)):
            raise _invalid(f"Charge {charge.id} already has an open dispute.", "charge")
        inquiry = _bool(spec.get("inquiry", False), "inquiry")
        reason = _choice(spec.get("reason"), "reason", _DISPUTE_REASONS) or "fraudulent"
        left = charge.amount - self._refunded(charge.id)
        amount = left if spec.get("amount") is None else _int(spec["amount"], "amount",
                                                              minimum=1, maximum=left)
        if amount <= 0:
            raise _invalid(f"Charge {charge.id} has been refunded in full.", "charge")
        created = self.now()
        due = (created // 86400 + DISPUTE_RESPONSE_DAYS + 1) * 86400 - 1
        dispute = {
            "id": _new_id("dp_"), "object": "dispute", "amount": amount,
            "balance_transactions": [], "charge": charge.id, "created": created,
            "currency": charge.currency, "enhanced_eligibility_types": [],
            "evidence": {**dict.fromkeys(_EVIDENCE_FIELDS), "enhanced_evidence": {}},
            "evidence_details": {"due_by": due, "enhanced_eligibility": {},
                                 "has_evidence": False, "past_due": False,
                                 "submission_count": 0},
            "is_charge_refundable": inquiry, "livemode": False,
            "metadata": _metadata(spec.get("metadata")), "payment_intent": charge.payment_intent,
            "payment_method_details": {"card": {
                "brand": "visa", "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": _NETWORK_REASON_CODES.get(reason, "13.7")},
                "type": "card"},
            "reason": reason, "status": "warning_needs_response" if inquiry
            else "needs_response"}
        self.data()["disputes"][dispute["id"]] = dispute
        self.persist()
        self._emit("charge.dispute.created", dispute)
        if not inquiry:
            txn = self.add_transaction(
                "adjustment", -amount, charge.currency, dispute["id"],
                fee=self.config["dispute_fee"], fee_description="Dispute fee",
                category="dispute", description=f"Chargeback withdrawal for {charge.id}")
            dispute["balance_transactions"].append(txn)
            self.persist()
            self._emit("charge.dispute.funds_withdrawn", dispute, delay=FOLLOW_UP_DELAY)
        return copy.deepcopy(dispute)

    def _dispute(self, dispute_id: str, status: int = 404) -> dict:
        dispute = self.data()["disputes"].get(dispute_id)
        if dispute is None:
            raise _missing("dispute", dispute_id, "id", status)
        return dispute

    def get_dispute(self, dispute_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "DisputeRetrieveParams")
        return copy.deepcopy(self._dispute(dispute_id))

    def list_disputes(self, params: dict) -> dict:
        check_params(params, "DisputeListParams")
        items = list(reversed(self.data()["disputes"].values()))
        for key in ("charge", "payment_intent"):
            if params.get(key) is not None:
                wanted = _str(params[key], key)
                items = [d for d in items if d[key] == wanted]
        return copy.deepcopy(_list_page(items, "/v1/disputes", params, "dispute"))

    def update_dispute(self, dispute_id: str, spec: object) -> dict:
        dispute = self._dispute(dispute_id)
        spec = _object(spec, "body")
        inquiry = dispute["payment_method_details"]["card"]["case_type"] == "inquiry"
        status = _choice(spec.get("status"), "status",
                         ("needs_response", "under_review", "warning_needs_response",
                          "warning_under_review"), required=True)
        if inquiry and not status.startswith("warning_"):
            status = f"warning_{status}"
        elif not inquiry and status.startswith("warning_"):
            raise _invalid(f"{status} is for inquiries; this dispute is a chargeback.",
                           "status")
        if dispute["status"] in ("won", "lost", "warning_closed"):
            raise _invalid(f"Dispute {dispute_id} is closed.", "status")
        previous = {"status": dispute["status"]}
        dispute["status"] = status
        if status.endswith("under_review"):
            details = dispute["evidence_details"]
            previous["evidence_details"] = {"has_evidence": details["has_evidence"],
                                            "submission_count": details["submission_count"]}
            details["has_evidence"] = True
            details["submission_count"] += 1
        if spec.get("metadata") is not None:
            previous["metadata"] = dict(dispute["metadata"])
            dispute["metadata"].update(_metadata(spec["metadata"]))
        self.persist()
        self._emit("charge.dispute.updated", dispute, previous=previous)
        return copy.deepcopy(dispute)

    def close_dispute(self, dispute_id: str, spec: object) -> dict:
        dispute = self._dispute(dispute_id)
        spec = _object(spec, "body")
        outcome = _choice(spec.get("outcome"), "outcome", ("won", "lost"), required=True)
        if dispute["status"] in ("won", "lost", "warning_closed"):
            raise _invalid(f"Dispute {dispute_id} is already closed.", "outcome")
        inquiry = dispute["payment_method_details"]["card"]["case_type"] == "inquiry"
        dispute["status"] = "warning_closed" if inquiry else outcome
        dispute["is_charge_refundable"] = False
        self.persist()
        self._emit("charge.dispute.closed", dispute)
        if outcome == "won" and not inquiry:
            fee = self.config["dispute_fee"]
            withdrawn = [t for t in dispute["balance_transactions"]
                         if t["reporting_category"] == "dispute"]
            if withdrawn:
                fee = withdrawn[0]["fee"]
            txn = self.add_transaction(
                "adjustment", dispute["amount"], dispute["currency"], dispute_id, fee=-fee,
                fee_description="Dispute fee", category="dispute_reversal",
                description=f"Chargeback reversal for {dispute['charge']}")
            dispute["balance_transactions"].append(txn)
            self.persist()
            self._emit("charge.dispute.funds_reinstated", dispute, delay=FOLLOW_UP_DELAY)
        return copy.deepcopy(dispute)

    # payouts to the platform's bank account
    def create_payout(self, spec: object, *, automatic: bool = True,
                      request: dict | None = None) -> dict:
        spec = _object(spec, "body")
        amount = spec.get("amount")
        if amount is None:
            raise _invalid("Missing required param: amount.", "amount", "parameter_missing")
        amount = _int(amount, "amount", minimum=1)
        currency = (_str(spec.get("currency"), "currency") or "eur").lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise _invalid(f"Invalid currency: {currency}.", "currency")
        if not automatic:
            available = sum(t["net"] for t in self.data()["transactions"].values()
                            if t["status"] == "available" and t["currency"] == currency)
            if amount > available:
                raise _invalid("You have insufficient funds in your Stripe account for this "
                               "transfer. Your card balance is too low.", "amount",
                               "balance_insufficient")
        created = self.now()
        payout = {
            "id": _new_id("po_"), "object": "payout", "amount": amount,
            "application_fee": None, "application_fee_amount": None,
            "arrival_date": created + PAYOUT_ARRIVAL_AFTER, "automatic": automatic,
            "balance_transaction": None, "created": created, "currency": currency,
            "description": _str(spec.get("description"), "description") or "STRIPE PAYOUT",
            "destination": "ba_local", "failure_balance_transaction": None,
            "failure_code": None, "failure_message": None, "livemode": False,
            "metadata": _metadata(spec.get("metadata")), "method": "standard",
            "original_payout": None, "payout_method": None,
            "reconciliation_status": "not_applicable", "reversed_by": None,
            "source_type": "card", "statement_descriptor": None, "status": "in_transit",
            "trace_id": {"status": "pending", "value": None}, "type": "bank_account"}
        txn = self.add_transaction("payout", -amount, currency, payout["id"],
                                   description=payout["description"])
        payout["balance_transaction"] = txn["id"]
        self.data()["payouts"][payout["id"]] = payout
        self.persist()
        self._emit("payout.created", payout, request=request)
        return copy.deepcopy(payout)

    def _payout(self, payout_id: str, status: int = 404) -> dict:
        payout = self.data()["payouts"].get(payout_id)
        if payout is None:
            raise _missing("payout", payout_id, "id", status)
        return payout

    def get_payout(self, payout_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "PayoutRetrieveParams")
        return copy.deepcopy(self._payout(payout_id))

    def list_payouts(self, params: dict) -> dict:
        check_params(params, "PayoutListParams")
        items = list(reversed(self.data()["payouts"].values()))
        if params.get("status") is not None:
            wanted = _str(params["status"], "status")
            items = [p for p in items if p["status"] == wanted]
        return copy.deepcopy(_list_page(items, "/v1/payouts", params, "payout"))

    def finish_payout(self, payout_id: str, status: str) -> dict:
        payout = self._payout(payout_id)
        allowed = {"paid": ("in_transit", "pending"), "failed": ("in_transit", "pending", "paid"),
                   "canceled": ("in_transit", "pending")}[status]
        if payout["status"] not in allowed:
            raise _invalid(f"Payout {payout_id} is {payout['status']}; it cannot become "
                           f"{status}.", "status")
        payout["status"] = status
        if status == "paid":
            payout["reconciliation_status"] = "completed"
            payout["trace_id"] = {"status": "supported",
                                  "value": "".join(secrets.choice("0123456789")
                                                   for _ in range(15))}
        else:
            type_ = "payout_failure" if status == "failed" else "payout_cancel"
            txn = self.add_transaction(type_, payout["amount"], payout["currency"], payout_id,
                                       description=f"STRIPE PAYOUT {status.upper()}")
            if status == "failed":
                payout.update(failure_balance_transaction=txn["id"],
                              failure_code="account_closed",
                              failure_message="The bank account has been closed.")
            payout["trace_id"] = {"status": "unsupported", "value": None}
        self.persist()
        self._emit(f"payout.{status}", payout)
        return copy.deepcopy(payout)

    # HTTP: the API routes it answers (a middleware after localstripe's auth)
    def middleware(self):
        routes = [
            ("GET", r"/v1/balance", self._http_balance),
            ("GET", r"/v1/(?:balance_transactions|balance/history)", self._http_transactions),
            ("GET", r"/v1/(?:balance_transactions|balance/history)/([^/]+)",
             self._http_transaction),
            ("POST", r"/v1/refunds", self._http_create_refund),
            ("GET", r"/v1/refunds", self._http_refunds),
            ("GET", r"/v1/refunds/([^/]+)", self._http_refund),
            ("GET", r"/v1/charges/([^/]+)", self._http_charge),
            ("GET", r"/v1/disputes", self._http_disputes),
            ("GET", r"/v1/disputes/([^/]+)", self._http_dispute),
            ("POST", r"/v1/payouts", self._http_create_payout),
            ("GET", r"/v1/payouts", self._http_payouts),
            ("GET", r"/v1/payouts/([^/]+)", self._http_payout)]
        compiled = [(method, re.compile(path), answer) for method, path, answer in routes]

        @web.middleware
        async def money_routes(request, handler):
            token = _CURRENT_REQUEST.set(Connect._request_info(request))
            try:
                for method, pattern, answer in compiled:
                    match = pattern.fullmatch(request.path.rstrip("/"))
                    if match and request.method == method:
                        return await answer(request, handler, *match.groups())
                return await handler(request)
            finally:
                _CURRENT_REQUEST.reset(token)

        return money_routes

    async def _http_balance(self, request, handler):
        return Connect._json(self.balance())

    async def _http_transactions(self, request, handler):
        return Connect._json(self.list_transactions(Connect._query(request),
                                                    request.path.rstrip("/")))

    async def _http_transaction(self, request, handler, txn_id):
        check_params(Connect._query(request), "BalanceTransactionRetrieveParams")
        return Connect._json(self.get_transaction(txn_id))

    async def _http_create_refund(self, request, handler):
        response = await handler(request)
        if response.status != 200 or not isinstance(getattr(response, "body", None), bytes):
            return response
        return Connect._json(self.get_refund(json.loads(response.body)["id"]))

    async def _http_refunds(self, request, handler):
        return Connect._json(self.list_refunds(Connect._query(request)))

    async def _http_refund(self, request, handler, refund_id):
        if refund_id not in self.data()["refunds"]:
            return await handler(request)
        return Connect._json(self.get_refund(refund_id))

    async def _http_charge(self, request, handler, charge_id):
        from localstripe.resources import store

        charge = store.get(f"charge:{charge_id}")
        query = Connect._query(request)
        if charge is None or query.get("expand"):
            return await handler(request)
        return Connect._json(self.charge_object(charge))

    async def _http_disputes(self, request, handler):
        return Connect._json(self.list_disputes(Connect._query(request)))

    async def _http_dispute(self, request, handler, dispute_id):
        return Connect._json(self.get_dispute(dispute_id, Connect._query(request)))

    async def _http_create_payout(self, request, handler):
        params = check_params(await Connect._body(request), "PayoutCreateParams")
        return Connect._json(self.create_payout(params, automatic=False,
                                                request=Connect._request_info(request)))

    async def _http_payouts(self, request, handler):
        return Connect._json(self.list_payouts(Connect._query(request)))

    async def _http_payout(self, request, handler, payout_id):
        return Connect._json(self.get_payout(payout_id, Connect._query(request)))

    # HTTP: the control API (loopback only, checked by the layer)
    async def control(self, request: web.Request) -> web.StreamResponse | None:
        """Answers a ``/_upss/...`` money or events request, or None when it is not one."""
        from localstripe.errors import UserError

        path, method = request.path.rstrip("/"), request.method
        try:
            if path == "/_upss/config" and method == "POST":
                return web.json_response(self.set_config(await _json_body(request)))
            if path == "/_upss/config" and method == "GET":
                return web.json_response(dict(self.config))
            if path == "/_upss/balance/available" and method == "POST":
                return web.json_response({"made_available": self.make_available(),
                                          "balance": self.balance()})
            match = re.fullmatch(r"/_upss/refunds/([^/]+)/fail", path)
            if match and method == "POST":
                return web.json_response(self.fail_refund(match.group(1)))
            if path == "/_upss/disputes" and method == "POST":
                return web.json_response(self.create_dispute(await _json_body(request)))
            match = re.fullmatch(r"/_upss/disputes/([^/]+)/(update|close)", path)
            if match and method == "POST":
                act = self.update_dispute if match.group(2) == "update" else self.close_dispute
                return web.json_response(act(match.group(1), await _json_body(request)))
            if path == "/_upss/payouts" and method == "POST":
                return web.json_response(self.create_payout(await _json_body(request)))
            match = re.fullmatch(r"/_upss/payouts/([^/]+)/(paid|failed|canceled)", path)
            if match and method == "POST":
                return web.json_response(self.finish_payout(match.group(1), match.group(2)))
            if path == "/_upss/events" and method == "GET":
                return web.json_response({"events": self.connect.event_log(
                    request.query.get("type"))})
            match = re.fullmatch(r"/_upss/events/([^/]+)/deliver", path)
            if match and method == "POST":
                spec = await _json_body(request)
                copies = _int(spec.get("copies", 1), "copies", minimum=1,
                              maximum=MAX_DELIVER_COPIES)
                return web.json_response(await self.connect.deliver_copies(
                    match.group(1), copies))
        except UserError as exc:
            return exc.to_response()
        return None


async def _json_body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        spec = await request.json()
    except ValueError as exc:
        raise _invalid(f"the body is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise _invalid("expected a JSON object")
    return spec


def _install_money_hooks(money: Money) -> None:
    """Make localstripe's charges and refunds tell ``money``: a charge's success (its balance
    transaction comes later, as with ``automatic_async``, without touching localstripe's own
    ``payment_intent.succeeded``), and every refund made, however it is made (``reason``
    accepted; Stripe's refusals for disputed, refunded and over-refunded charges)."""
    from localstripe import resources

    charge_cls, refund_cls = resources.Charge, resources.Refund
    original_init = getattr(refund_cls.__init__, "upss_original", refund_cls.__init__)

    def trigger_payment(charge, on_success=None):
        def succeed():
            charge.status = "succeeded"
            if on_success:
                on_success()
            money.charge_succeeded(charge)

        if charge._is_async_payment_method():
            async def later():
                await asyncio.sleep(0.5)
                succeed()
            asyncio.ensure_future(later())
        else:
            succeed()

    def refund_init(refund, charge=None, payment_intent=None, amount=None, metadata=None,
                    reason=None, **kwargs):
        from localstripe.errors import UserError

        if reason is not None and reason not in _REFUND_REASONS:
            raise UserError(400, f"Invalid reason: must be one of "
                                 f"{', '.join(_REFUND_REASONS)}", {"param": "reason"})
        if not kwargs:
            amount = money.check_refund(charge, payment_intent, amount)
        original_init(refund, charge=charge, payment_intent=payment_intent, amount=amount,
                      metadata=metadata, **kwargs)
        money.refund_created(refund, reason)

    refund_init.upss_original = original_init
    charge_cls._trigger_payment = trigger_payment
    refund_cls.__init__ = refund_init
    charge_cls.amount_refunded = property(lambda charge: money._refunded(charge.id))


def _money_state_in(store) -> Callable[[], dict]:
    def data() -> dict:
        state = store.get(_MONEY_STATE_KEY)
        if state is None:
            state = _new_money_state()
            dict.__setitem__(store, _MONEY_STATE_KEY, state)
        return state

    return data


# --- the app --------------------------------------------------------------------------------

def build_app(*, state: str | None = None, clock: Callable[[], float] = time.time
              ) -> tuple[web.Application, StripeLikeLayer]:
    """localstripe's app with the Stripe-like layer; call once per process, before it starts.

    localstripe registers its routes on one module-level ``app``, so that app is extended.
    """
    from localstripe import server
    from localstripe.resources import store

    app = server.app
    _use_state_file(store, state)
    _install_param_translation(server)
    layer = StripeLikeLayer(clock=clock)
    names = [getattr(m, "__name__", "") for m in app.middlewares]
    app.middlewares.insert(names.index("auth_middleware") + 1,
                           _refuse_removed_params_middleware(server))
    app.middlewares.insert(0, layer.middleware)
    from localstripe import webhooks

    layer.connect = Connect(clock=clock, data=_connect_state_in(store),
                            persist=lambda: store.dump_to_disk(),
                            platform_events=_platform_event_store(store),
                            platform_webhooks=lambda: webhooks._webhooks)
    layer.connect.add_routes(app)
    layer.money = Money(layer.connect, data=_money_state_in(store),
                        persist=lambda: store.dump_to_disk())
    layer.connect.ledger = layer.money.transaction_id
    _install_money_hooks(layer.money)
    names = [getattr(m, "__name__", "") for m in app.middlewares]
    app.middlewares.insert(names.index("auth_middleware") + 1, layer.money.middleware())
    for path in ("/_upss/faults", "/_upss/requests", "/_upss/connect/{tail:.*}",
                 "/_upss/{tail:.*}"):
        # Routes for the router's sake; the layer answers them before localstripe's auth.
        app.router.add_route("*", path, layer.control)
    return app, layer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--state", default=None, help="file that keeps localstripe's data")
    parser.add_argument("--webhook-url", default=None,
                        help="the app's webhook endpoint, registered at start-up")
    parser.add_argument("--webhook-secret", default=None,
                        help="signing secret (default: UPSS_STRIPE_WEBHOOK_SECRET, "
                             "else the local one)")
    parser.add_argument("--connect-webhook-url", default=None,
                        help="the app's Connect webhook endpoint, registered at start-up")
    parser.add_argument("--connect-webhook-secret", default=None,
                        help="its signing secret (default: UPSS_STRIPE_CONNECT_WEBHOOK_SECRET, "
                             "else the local one)")
    args = parser.parse_args(argv)

    app, layer = build_app(state=args.state)
    if args.webhook_url:
        from localstripe.webhooks import register_webhook

        secret = (args.webhook_secret or os.environ.get("UPSS_STRIPE_WEBHOOK_SECRET")
                  or LOCAL_WEBHOOK_SECRET)
        register_webhook("upss", args.webhook_url, secret, None)
    if args.connect_webhook_url:
        from localstripe.webhooks import Webhook

        secret = (args.connect_webhook_secret
                  or os.environ.get("UPSS_STRIPE_CONNECT_WEBHOOK_SECRET")
                  or LOCAL_CONNECT_WEBHOOK_SECRET)
        layer.connect.connect_webhooks["upss"] = Webhook(args.connect_webhook_url, secret, None)
    logging.basicConfig(level=logging.INFO)
    banner = f"localstripe on http://{args.host}:{args.port}"
    web.run_app(app, host=args.host, port=args.port, access_log=None,
                print=lambda *a: print(banner, flush=True))


if __name__ == "__main__":
    main()
