"""Money, so that the app's ledger can keep its Stripe balance equal to Stripe's (``Money``;
``money_routes`` answers its HTTP requests). localstripe's balance is a fixed stub, its fees
are 0, it has no disputes and sends no refund or dispute events; here (state in localstripe's
store too):

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
- All these events are platform events, delivered as ``events`` describes (signed per
  endpoint, retried with back-off), listed by ``GET /v1/events`` and ``/v1/events/{id}``;
  follow-ups (``charge.refunded``, ``funds_withdrawn``...) are sent 0.05 s after the event
  before them.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import re
import secrets
from collections.abc import Callable

from .api import (
    _bool,
    _choice,
    _filtered_page,
    _int,
    _invalid,
    _metadata,
    _missing,
    _new_id,
    _object,
    _state_in,
    _stored,
    _str,
    check_params,
)
from .connect import Connect

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
    ``connect.emit`` (platform events: localstripe's endpoints and ``/v1/events``); it answers
    no HTTP itself (``money_routes.MoneyRoutes`` does)."""

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
        return copy.deepcopy(_stored(self.data()["transactions"], "balance transaction", txn_id))

    def list_transactions(self, params: dict, url: str) -> dict:
        check_params(params, "BalanceTransactionListParams")
        return copy.deepcopy(_filtered_page(self.data()["transactions"], url, params,
                                            "balance_transaction", ("type", "source", "currency")))

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
        return _stored(self.data()["refunds"], "refund", refund_id, status=status)

    def get_refund(self, refund_id: str) -> dict:
        return copy.deepcopy(self._refund(refund_id))

    def list_refunds(self, params: dict) -> dict:
        check_params(params, "RefundListParams")
        return copy.deepcopy(_filtered_page(self.data()["refunds"], "/v1/refunds", params, "refund",
                                            ("charge", "payment_intent")))

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
        return _stored(self.data()["disputes"], "dispute", dispute_id, status=status)

    def get_dispute(self, dispute_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "DisputeRetrieveParams")
        return copy.deepcopy(self._dispute(dispute_id))

    def list_disputes(self, params: dict) -> dict:
        check_params(params, "DisputeListParams")
        return copy.deepcopy(_filtered_page(self.data()["disputes"], "/v1/disputes", params,
                                            "dispute", ("charge", "payment_intent")))

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
        return _stored(self.data()["payouts"], "payout", payout_id, status=status)

    def get_payout(self, payout_id: str, params: dict | None = None) -> dict:
        check_params(params or {}, "PayoutRetrieveParams")
        return copy.deepcopy(self._payout(payout_id))

    def list_payouts(self, params: dict) -> dict:
        check_params(params, "PayoutListParams")
        return copy.deepcopy(_filtered_page(self.data()["payouts"], "/v1/payouts", params, "payout",
                                            ("status",)))

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


def _money_state_in(store) -> Callable[[], dict]:
    return _state_in(store, _MONEY_STATE_KEY, _new_money_state)
