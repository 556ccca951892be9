"""Blueprints, error pages, security headers and template helpers."""

from __future__ import annotations

from functools import wraps

from flask import Flask, abort, render_template, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError

from .. import money
from ..stripe_gateway import gateway

#: What each question state means to the asker, in plain words.
STATUS_LABELS = {
    "draft": _l("Not paid yet"),
    "awaiting_payment": _l("Confirming payment"),
    "queued": _l("Paid: waiting for an off-peak answerer"),
    "offered": _l("Offered to an answerer"),
    "claimed": _l("An answerer is writing the answer"),
    "answered": _l("Answered"),
    "clarifying": _l("Waiting for the answerer to clarify"),
    "closed": _l("Closed"),
    "disputed": _l("Rejected: the organizer is reviewing it"),
    "refunded": _l("Refunded"),
}

ERROR_PAGES = {
    400: (_l("Something was wrong with that request"),
          _l("Go back, check what you entered, and try again.")),
    403: (_l("You cannot see this page"),
          _l("This page belongs to someone else, or needs a different kind of account.")),
    404: (_l("Page not found"),
          _l("Check the address, or go to the home page.")),
    405: (_l("Page not found"), _l("Check the address, or go to the home page.")),
    429: (_l("Too many attempts"),
          _l("For your safety we have paused this for a moment. Wait a minute and try again.")),
    500: (_l("Sorry, something went wrong on our side"),
          _l("Nothing you entered has been lost. Try again in a few minutes.")),
}


def reader_locale() -> str:
    """The locale of the person reading the page (see ``upss.select_locale``)."""
    return str(get_locale() or "en")


def money_text(cents: int, currency: str) -> str:
    """An amount formatted for the reader's locale (also the templates' ``money`` filter)."""
    return money.format_money(cents, currency, reader_locale())


def role_required(flag: str):
    """A view decorator: signed in, and ``current_user.<flag>`` true; otherwise 403."""
    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not getattr(current_user, flag):
                abort(403)
            return view(*args, **kwargs)
        return wrapped
    return decorator


def register_blueprints(app: Flask) -> None:
    from . import answerer, asker, audit, auth, main, organizer, webhooks

    for module in (main, auth, asker, answerer, organizer, audit, webhooks):
        app.register_blueprint(module.bp)

    app.jinja_env.filters["money"] = money_text
    app.jinja_env.globals["status_label"] = lambda status: STATUS_LABELS.get(status, status)

    @app.context_processor
    def page_language():
        return {"page_lang": reader_locale()}

    def error_page(code: int, message=None):
        title, hint = ERROR_PAGES[code]
        return render_template("error.html", title=title, hint=message or hint), code

    for code in ERROR_PAGES:
        app.register_error_handler(code, lambda exc, code=code: error_page(code))

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return error_page(400, _l("This form had expired or was not sent from this site. "
                                  "Go back, reload the page and send it again."))

    @app.after_request
    def security_headers(response):
        stripe = gateway()
        stripe_origin, api_origin = stripe.js_origin, stripe.api_origin
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src 'self' {stripe_origin}; "
            f"connect-src 'self' {api_origin}; frame-src {stripe_origin} https://hooks.stripe.com; "
            # A form may lead to Stripe's Connect onboarding (a redirect after the POST).
            f"img-src 'self' data:; style-src 'self'; "
            f"form-action 'self' {stripe.onboarding_origin}; "
            "frame-ancestors 'none'; base-uri 'none'",
        )
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
