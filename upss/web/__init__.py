"""Blueprints, error pages, security headers and template helpers."""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import lru_cache

from flask import Flask, g, render_template, request
from flask_babel import format_timedelta
from flask_babel import lazy_gettext as _l
from flask_login import AnonymousUserMixin
from flask_wtf.csrf import CSRFError
from sqlalchemy import inspect as sa_inspect

from .. import payments
from ..extensions import db

log = logging.getLogger(__name__)

ERROR_PAGES = {
    400: (_l("Something was wrong with that request"),
          _l("Go back, check what you entered, and try again.")),
    403: (_l("You cannot see this page"),
          _l("This page belongs to someone else, or needs a different kind of account.")),
    404: (_l("Page not found"),
          _l("Check the address, or go to the home page.")),
    405: (_l("Page not found"), _l("Check the address, or go to the home page.")),
    413: (_l("That was too much to send at once"),
          _l("What you sent is larger than this service accepts. Go back, shorten it and try "
             "again.")),
    429: (_l("Too many attempts"),
          _l("For your safety we have paused this for a moment. Wait a minute and try again.")),
    500: (_l("Sorry, something went wrong on our side"),
          _l("Nothing you entered has been lost. Try again in a few minutes.")),
}


class PageUser:
    """Who the error page is for, taken from what was already loaded: rendering it must not
    touch the database, which may be what failed."""

    is_authenticated, is_active, is_anonymous = True, True, False

    def __init__(self, loaded: dict):
        self.id = loaded.get("id")
        self.name = loaded.get("name", "")
        self.locale = loaded.get("locale", "")
        for flag in ("is_answerer", "is_organizer", "large_text", "high_contrast"):
            setattr(self, flag, bool(loaded.get(flag, False)))
        #: The header's count as it was loaded (0 if it was not): never counted again here.
        self.unread_messages = loaded.get("unread_messages") or 0

    def get_id(self) -> str:
        return str(self.id)


@lru_cache(maxsize=16)
def _security_headers(stripe: payments.CheckoutSettings, secure: bool) -> tuple:
    """The headers every response carries unless its view set its own: built once for each
    Stripe set-up (a replaced gateway gives other origins) rather than on every response."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Content-Security-Policy",
         f"default-src 'self'; script-src 'self' {stripe.js_origin}; "
         f"connect-src 'self' {stripe.api_origin}; "
         f"frame-src {stripe.js_origin} https://hooks.stripe.com; "
         # A form may lead to Stripe's Connect onboarding (a redirect after the POST).
         f"img-src 'self' data:; style-src 'self'; "
         f"form-action 'self' {stripe.onboarding_origin}; "
         "frame-ancestors 'none'; base-uri 'none'"),
    ]
    if secure:
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return tuple(headers)


def _forget_database_state() -> None:
    """After an error: roll the database session back, and let the page's user be a copy of
    what was loaded (or nobody), so the error page itself cannot fail on the database."""
    user = g.get("_login_user")
    page_user = AnonymousUserMixin()
    if user is not None and getattr(user, "is_authenticated", False):
        try:
            page_user = PageUser(dict(sa_inspect(user).dict))
        except Exception:  # noqa: BLE001 - anything odd: show the page signed out
            log.exception("could not copy the signed-in user for the error page")
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the database may be gone; the page does not need it
        log.exception("rollback after an error failed")
    g._login_user = page_user


def register_blueprints(app: Flask) -> None:
    from . import (
        account,
        account_closing,
        account_data,
        answerer,
        asker,
        auth,
        expired_forms,
        limits,
        mail,
        main,
        money_pages,
        notices,
        organizer,
        paying,
        webhooks,
    )
    from .display import (
        cell_label,
        duration_text,
        reason_text,
        until_text,
    )

    for module in (main, auth, account, account_data, account_closing, asker, paying, answerer,
                   organizer, money_pages, notices, webhooks):
        app.register_blueprint(module.bp)
    mail.register(app)

    app.jinja_env.filters["duration"] = duration_text
    app.jinja_env.filters["until"] = until_text
    app.jinja_env.globals["reason_text"] = reason_text
    app.jinja_env.globals["cell_label"] = cell_label

    from . import page_i18n
    page_i18n.init_app(app)  # gettext and the money filter, reading the page's language once
    from . import page_urls
    page_urls.init_app(app)  # url_for, the header's and footer's addresses built once

    def error_page(code: int, message=None):
        title, hint = ERROR_PAGES[code]
        return render_template("error.html", title=title, hint=message or hint), code

    for code in ERROR_PAGES:
        if code not in (429, 500):
            app.register_error_handler(code, lambda exc, code=code: error_page(code))

    @app.errorhandler(429)
    def too_many_attempts(exc):
        seconds = limits.seconds_until_allowed()
        wait = format_timedelta(timedelta(seconds=seconds), threshold=1.5, add_direction=False)
        body, status = error_page(429, _l(
            "For your safety we have paused this for a moment. You can try again in "
            "%(wait)s.", wait=wait))
        return body, status, {"Retry-After": str(seconds)}

    @app.errorhandler(500)
    def server_error(exc):
        _forget_database_state()
        return error_page(500)

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        """Nothing is done; what was typed comes back (``expired_forms``)."""
        return expired_forms.expired_form_response(lambda: error_page(400, _l(
            "This form had expired or was not sent from this site. Go back, reload the page "
            "and send it again.")))

    @app.after_request
    def security_headers(response):
        headers = response.headers
        if request.endpoint != "static":
            # Pages show personal data and carry form tokens; downloads are statements.
            # Nothing but the static files may be kept by a browser or a proxy.
            headers["Cache-Control"] = "no-store"
        present = {name.lower() for name, _value in headers.items()}
        for name, value in _security_headers(payments.checkout_settings(), request.is_secure):
            if name.lower() not in present:  # a view's own value wins
                headers.add(name, value)
        return response
