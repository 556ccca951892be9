"""The project's local Stripe (``python -m upss.devstripe``; ``make run`` and the tests start
it): localstripe, bound to 127.0.0.1, made to behave like Stripe where UPSS depends on it.

What it adds over localstripe, and why; each module's docstring has the details:

* ``idempotency``: idempotent requests like Stripe's. localstripe ignores ``Idempotency-Key``,
  so nothing tested against it could show that a retry pays once.
* ``layer``: the outermost middleware: idempotency, fault switches for tests (stall a request,
  delay or lose its response, answer 500/409/429 instead) and a log of the API requests.
* ``patches``: what is changed inside localstripe: the current API's PaymentIntent parameters,
  the store's file, charges and refunds that tell ``money``.
* ``connect`` (and ``connect_routes``, its HTTP side and the onboarding page): Connect, which
  localstripe lacks entirely, because UPSS pays answerers with transfers to Express connected
  accounts: accounts, account links, transfers, reversals.
* ``money`` (and ``money_routes``): balance transactions with fees, the balance, charges,
  refunds, disputes and payouts with their events, so that the app's ledger can keep its
  Stripe balance equal to Stripe's.
* ``events``: their events in the current API's shape, delivered signed and retried like
  Stripe's, to platform and Connect endpoints.
* ``api``: what their routes share: Stripe's errors, ids, parameters checked against the pinned
  library's params TypedDicts, list pages.
* ``server``: the app put together (``build_app``), the command line (``main``) and the control
  API (``/_upss/...``, loopback only) that tests use to add faults, fail refunds, open and
  close disputes and make payouts.

Imports go one way: ``server`` -> ``layer``, ``patches``, ``*_routes`` -> ``money`` -> ``connect``
-> ``events`` -> ``api``, and ``layer`` -> ``idempotency`` (``layer`` names the ``*_routes``
classes for type checking only).
"""

from .server import build_app, main

__all__ = ["build_app", "main"]
