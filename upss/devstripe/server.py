"""The project's local Stripe: localstripe, bound to 127.0.0.1, made to behave like Stripe where
UPSS depends on it.

This module puts it together (``build_app``) and runs it (``main``: ``python -m upss.devstripe
--port N``); the package's docstring says what each module adds. localstripe's own ``start()``
binds every interface and pickles its whole store to ``/tmp/localstripe.pickle`` after each
write; this one binds loopback only and keeps the state in memory, or in ``--state FILE`` when
a developer wants it to survive a restart.

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
import logging
import os
import time
from collections.abc import Callable

from aiohttp import web

from ..config import LOCAL_CONNECT_WEBHOOK_SECRET, LOCAL_WEBHOOK_SECRET
from .connect import _connect_state_in
from .connect_routes import ConnectRoutes
from .events import _platform_event_store
from .layer import StripeLikeLayer
from .money import _money_state_in
from .money_routes import MoneyRoutes
from .patches import (
    _install_money_hooks,
    _install_param_translation,
    _refuse_removed_params_middleware,
    _use_state_file,
)


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

    layer.connect = ConnectRoutes(clock=clock, data=_connect_state_in(store),
                                  persist=lambda: store.dump_to_disk(),
                                  platform_events=_platform_event_store(store),
                                  platform_webhooks=lambda: webhooks._webhooks)
    layer.connect.add_routes(app)
    layer.money = MoneyRoutes(layer.connect, data=_money_state_in(store),
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
