"""What is changed inside localstripe itself; ``server.build_app`` installs it all, once per
process, before the app starts.

* Its store is kept in memory, or in ``--state FILE`` (``_use_state_file``), instead of being
  pickled to ``/tmp/localstripe.pickle`` after each write.
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
* **Charges and refunds tell ``money.Money``** (``_install_money_hooks``): a charge's success
  (its balance transaction comes later, as with ``automatic_async``) and every refund made,
  with Stripe's refusals that localstripe lacks.
"""

from __future__ import annotations

import asyncio
import pickle

from aiohttp import web

from .money import _REFUND_REASONS, Money


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
