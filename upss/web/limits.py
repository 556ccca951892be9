"""Rate limits: who is counted, how much each action allows, and the page a limited person sees.

The counts live in the store ``UPSS_RATELIMIT_STORAGE`` names (Redis in production), shared by
every worker and machine; the limits themselves are ``UPSS_RATE_LIMITS`` (``upss.config``).
Sign-in is limited twice: per client address, and per account tried from anywhere (an attack
spread over many addresses). The per-account limit grows (5 a minute, 20 an hour, 50 a day)
instead of locking the account, and a browser that has signed in to the account before carries
a signed "known device" cookie that exempts it, so an attacker cannot lock the owner out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from flask import current_app, request
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeSerializer

from .. import accounts
from ..config import ConfigError
from ..extensions import limiter

log = logging.getLogger(__name__)

#: The cookie naming the accounts this browser has signed in to (as keyed hashes).
DEVICE_COOKIE = "upss_known_device"
DEVICE_COOKIE_DAYS = 365
_MAX_ACCOUNTS_PER_DEVICE = 5


def configured(name: str):
    """The limit ``name`` of ``UPSS_RATE_LIMITS``, read when a request is checked."""
    return lambda: current_app.config["UPSS_RATE_LIMITS"][name]


def client_address() -> str:
    """The client's address (behind ``UPSS_TRUSTED_PROXIES`` proxies: the forwarded one)."""
    return f"ip:{request.remote_addr or 'unknown'}"


def user_or_address() -> str:
    """The signed-in user, else the client's address."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return client_address()


def _account_hash(email: str) -> str:
    """A keyed hash of an e-mail address: counts and cookies never show the address."""
    key = current_app.config["SECRET_KEY"].encode()
    email = accounts.normalise_email(email)
    return hmac.new(key, email.encode(), hashlib.sha256).hexdigest()[:32]


def account_tried() -> str:
    """The account a sign-in attempt is for (whether or not it exists)."""
    return "account:" + _account_hash(request.form.get("email", ""))


def _device_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="upss-known-device")


def _known_accounts() -> list[str]:
    try:
        value = _device_serializer().loads(request.cookies.get(DEVICE_COOKIE, ""))
    except BadSignature:
        return []
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def is_known_device() -> bool:
    """Whether this browser has signed in to the account now being tried."""
    return _account_hash(request.form.get("email", "")) in _known_accounts()


def remember_device(response, email: str):
    """After a successful sign-in: this browser is known for this account from now on."""
    accounts_known = [h for h in _known_accounts() if h != _account_hash(email)]
    accounts_known = [_account_hash(email), *accounts_known][:_MAX_ACCOUNTS_PER_DEVICE]
    response.set_cookie(DEVICE_COOKIE, _device_serializer().dumps(accounts_known),
                        max_age=DEVICE_COOKIE_DAYS * 86400, httponly=True, samesite="Lax",
                        secure=current_app.config.get("SESSION_COOKIE_SECURE", False))
    return response


def seconds_until_allowed() -> int:
    """Seconds until the limit that refused this request lets another one through."""
    limit = limiter.current_limit
    if limit is None:
        return 60
    return max(1, int(limit.reset_at - time.time()) + 1)


class _LoudStorageFailure(logging.Filter):
    """Flask-Limiter logs a failed store as a warning; for UPSS it is an error to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "storage unreachable" in record.getMessage():
            record.levelno, record.levelname = logging.ERROR, "ERROR"
            record.msg = ("RATE LIMIT STORE UNREACHABLE (%s): each process now counts on "
                          "its own, so limits are looser until it is back. Fix it now.")
            record.args = (current_app.config.get("RATELIMIT_STORAGE_URI", "?").split("@")[-1],)
        return True


def init_app(app) -> None:
    """Attach the limiter to ``app``. At start-up a shared store that cannot be reached stops
    UPSS (it would silently fall back to per-process counting); later failures are logged as
    errors."""
    # The one Limiter serves every app this process creates (tests make many), but keeps
    # some settings of the first: each app starts from its own configuration.
    limiter._key_prefix, limiter._storage_options, limiter._storage_dead = None, {}, False
    limiter.init_app(app)
    logger = logging.getLogger("flask-limiter")
    if not any(isinstance(f, _LoudStorageFailure) for f in logger.filters):
        logger.addFilter(_LoudStorageFailure())
    uri = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    if app.config.get("RATELIMIT_ENABLED", True) and not uri.startswith("memory://"):
        if not limiter.storage.check():
            raise ConfigError(f"UPSS cannot start: the rate limit store "
                              f"UPSS_RATELIMIT_STORAGE={uri.split('@')[-1]} cannot be reached.")
