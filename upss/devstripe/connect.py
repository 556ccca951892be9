"""Stripe Connect, which localstripe lacks entirely, because UPSS pays answerers with transfers
to Express connected accounts they onboard on Stripe's hosted pages: accounts, account links,
transfers and their reversals (``Connect``); ``connect_routes`` answers their HTTP requests and
serves the onboarding page.

Routes on localstripe's app, so they go through the idempotency layer, the fault switches, the
request log and localstripe's API-key check like its own; objects shaped like Stripe's
(``fixtures3.json`` and the pinned ``stripe`` library's resource classes), parameters checked
against the pinned library's params TypedDicts (``api.check_params``): a parameter they lack is
a 400 ``parameter_unknown`` (``Received unknown parameter: controller[foo]``), as at Stripe.
``expand`` is refused (400) rather than ignored. Errors are Stripe's ``invalid_request_error``
with ``param`` (and ``code`` where Stripe has one); an unknown id in the path is a 404
``resource_missing``.

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
  ``balance_transaction`` is a real one (type ``transfer``, see ``money``); a transfer
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
- **Events**: ``transfer.created`` and ``transfer.reversed`` (the transfer, also on partial
  reversals) are platform events; ``account.updated`` (the account, with
  ``previous_attributes``), sent whenever an account changes, is a Connect event (``events``
  says where each goes and how it is delivered).
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
"""

from __future__ import annotations

import copy
import re
import secrets
import time
from collections.abc import Callable

from .api import (
    _bool,
    _choice,
    _filtered_page,
    _int,
    _invalid,
    _list_page,
    _metadata,
    _missing,
    _new_id,
    _object,
    _state_in,
    _stored,
    _str,
    _url,
    check_params,
)
from .events import WEBHOOK_RETRY_DELAYS, EventSender

#: Seconds an account link can be opened, as at Stripe.
ACCOUNT_LINK_TTL = 300
#: Where the Connect state lives in localstripe's store, so ``--state`` keeps it and
#: ``DELETE /_config/data`` clears it. Plain dicts only, so the pickle names no class of ours.
_CONNECT_STATE_KEY = "upss:connect"
_ONBOARDING_PREFIX = "/_upss/connect/onboarding/"
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


def _merge(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _new_state() -> dict:
    return {"accounts": {}, "links": {}, "transfers": {}, "reversals": {}}


class Connect(EventSender):
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
        super().__init__(clock=clock, platform_events=platform_events,
                         platform_webhooks=platform_webhooks, retry_delays=retry_delays)
        state = _new_state()
        self.data = data or (lambda: state)
        self.link_ttl = link_ttl
        self.persist = persist
        #: Makes a balance transaction and gives its id (``Money.transaction_id``); without
        #: it, transfers and reversals get a made-up id.
        self.ledger: Callable[..., str] | None = None

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
        return _stored(self.data()["accounts"], "account", account_id, param, status)

    def get_account(self, account_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "AccountRetrieveParams")
        return copy.deepcopy(self._account(account_id))

    def list_accounts(self, params: dict) -> dict:
        check_params(params, "AccountListParams")
        return copy.deepcopy(_filtered_page(self.data()["accounts"], "/v1/accounts", params,
                                            "account"))

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
        return _stored(self.data()["transfers"], "transfer", transfer_id)

    def get_transfer(self, transfer_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "TransferRetrieveParams")
        return self._transfer_object(self._transfer(transfer_id))

    def list_transfers(self, params: dict) -> dict:
        check_params(params, "TransferListParams")
        page = _filtered_page(self.data()["transfers"], "/v1/transfers", params, "transfer",
                              ("destination", "transfer_group"))
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


def _connect_state_in(store) -> Callable[[], dict]:
    return _state_in(store, _CONNECT_STATE_KEY, _new_state)
