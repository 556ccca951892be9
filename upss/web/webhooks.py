"""Stripe webhook endpoint: the only CSRF-exempt POST; it verifies Stripe's signature."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from .. import payments
from ..extensions import commit_retrying_disconnect, csrf, db

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)

#: Stripe events are small; anything larger is refused before parsing.
MAX_PAYLOAD = 512 * 1024


@bp.post("/stripe/webhook")
@csrf.exempt
def stripe_webhook():
    """Verify, store once and apply a Stripe event; 400 with nothing stored if it is not valid."""
    return _receive(connect=False)


@bp.post("/stripe/connect-webhook")
@csrf.exempt
def stripe_connect_webhook():
    """The Connect endpoint: events about answerers' connected accounts, with its own secret."""
    return _receive(connect=True)


def _receive(connect: bool):
    payload = request.get_data(cache=False)
    if len(payload) > MAX_PAYLOAD:
        return jsonify(error="payload too large"), 400
    try:
        event = payments.receive_webhook(payload, request.headers.get("Stripe-Signature"),
                                         connect=connect)
    except payments.InvalidWebhook as exc:
        log.warning("refused a Stripe %swebhook: %s", "Connect " if connect else "", exc)
        return jsonify(error="invalid webhook"), 400
    outcome = commit_retrying_disconnect(
        lambda: payments.handle_webhook_event(db.session, event))
    if outcome.startswith("retry"):
        return jsonify(received=False, outcome=outcome), 409  # Stripe sends it again
    return jsonify(received=True, outcome=outcome)
