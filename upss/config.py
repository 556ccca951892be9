"""Settings from the environment (``UPSS_*``), with defaults that run on SQLite + localstripe.

Only deployment facts live here. Business settings the organizer may change (price bounds,
commission, …) are stored in the database; the values here are their defaults.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

#: Secret key prefix Stripe uses for live mode; the test-mode panel is refused with such a key.
LIVE_KEY_PREFIX = "sk_live_"
#: The key the app uses against localstripe (localstripe accepts any ``sk_…``).
LOCALSTRIPE_SECRET_KEY = "sk_test_upss_localstripe"  # noqa: S105 - localstripe only
LOCALSTRIPE_PUBLISHABLE_KEY = "pk_test_upss_localstripe"
#: Webhook signing secrets shared by the app and the local Stripe when no real Stripe key is
#: set (the Connect endpoint has its own, as at Stripe). They are public (they are in the
#: source), so production refuses them.
LOCAL_WEBHOOK_SECRET = "whsec_upss_localstripe"  # noqa: S105 - localstripe only
LOCAL_CONNECT_WEBHOOK_SECRET = "whsec_upss_local_connect"  # noqa: S105 - local Stripe only
#: Where UPSS runs (``UPSS_ENV``). Production refuses everything marked development-only.
ENVIRONMENTS = ("development", "test", "production")

#: The cookie that remembers the language chosen on this browser (set by ``upss.web.main``,
#: read by ``upss.select_locale``; a signed-in user's own setting wins over it).
LANGUAGE_COOKIE = "upss_language"


class ConfigError(RuntimeError):
    """A deployment setting that must be fixed before UPSS may start; says what to set."""


def _int(environ, name: str, default: int) -> int:
    value = environ.get(name)
    return default if value in (None, "") else int(value)


def _float(environ, name: str, default: float) -> float:
    value = environ.get(name)
    return default if value in (None, "") else float(value)


def _bool(environ, name: str, default: bool) -> bool:
    value = environ.get(name)
    return default if value in (None, "") else value.lower() in ("1", "true", "yes", "on")


def _secret_key(environ, instance_path: Path) -> str:
    """The session signing key: from UPSS_SECRET_KEY, else one generated once per instance.

    Processes starting together must agree on one key: the key is written whole to a private
    temporary file and then linked into place, which fails if another process got there
    first; every process then reads the file that won, never a half-written one.
    """
    if environ.get("UPSS_SECRET_KEY"):
        return environ["UPSS_SECRET_KEY"]
    key_file = instance_path / "secret_key"
    if not key_file.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=instance_path, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w") as handle:  # mkstemp creates it readable by us only
                handle.write(secrets.token_hex(32))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, key_file)
        finally:
            os.unlink(temporary)
    key = key_file.read_text().strip()
    if not key:
        raise ConfigError(f"The secret key file {key_file} is empty: delete it, or set "
                          "UPSS_SECRET_KEY.")
    return key


#: Rate limits (Flask-Limiter syntax); each can be changed with ``UPSS_LIMIT_<NAME>``. Several
#: limits in one string are a growing back-off: "5 per minute; 20 per hour" lets 5 attempts
#: through at once, then makes each further one wait longer.
RATE_LIMITS = {
    # Per client address: sign-in and sign-up attempts.
    "SIGN_IN": "10 per minute; 100 per hour",
    "SIGN_UP": "5 per minute; 20 per hour",
    # Per account signed in to, from any address (a browser that has signed in to the
    # account before is exempt, so an attacker cannot lock the owner out).
    "SIGN_IN_ACCOUNT": "5 per minute; 20 per hour; 50 per day",
    # Asking for a password reset link: per client address, and per address asked for
    # (known or not, so the limit says nothing about which addresses have accounts).
    "RESET_PASSWORD": "5 per minute; 20 per hour",
    "RESET_PASSWORD_ACCOUNT": "3 per hour; 10 per day",
    # Per signed-in user (per address before signing in).
    "ASK": "10 per minute; 100 per day",
    "PAY": "20 per minute; 100 per hour",
    "CLAIM": "30 per minute; 300 per hour",
    "MESSAGE": "10 per minute; 100 per day",
}


def from_environment(instance_path: str, environ=None) -> dict:
    """Build the Flask config mapping from ``environ`` (default: ``os.environ``)."""
    environ = os.environ if environ is None else environ
    instance = Path(instance_path)
    stripe_key = environ.get("UPSS_STRIPE_SECRET_KEY", "")
    uses_localstripe = not stripe_key
    return {
        "UPSS_ENV": environ.get("UPSS_ENV", "development"),
        "SECRET_KEY": _secret_key(environ, instance),
        "SQLALCHEMY_DATABASE_URI": environ.get(
            "UPSS_DATABASE_URL", f"sqlite:///{instance / 'upss.sqlite'}"
        ),
        #: A pooled connection the database dropped while idle is replaced before use.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(environ, "UPSS_SECURE_COOKIES", False),
        "REMEMBER_COOKIE_SECURE": _bool(environ, "UPSS_SECURE_COOKIES", False),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "WTF_CSRF_ENABLED": True,
        #: No time limit on form tokens. Flask-WTF checks every POST against this one limit
        #: (default 3600 s) before any view runs, so an answer typed for longer than it - an
        #: answer lock lasts hours - came back as a bare 400. The token is bound to the
        #: session instead: it is a signature of a random value kept in the session, which
        #: signing in or out replaces, and the session has its own lifetimes (upss/sessions.py:
        #: UPSS_SESSION_IDLE_MINUTES without a request, never while the user holds an answer
        #: lock, and UPSS_SESSION_MAX_HOURS in any case).
        "WTF_CSRF_TIME_LIMIT": None,
        #: Largest request body (bytes); larger ones get 413 before they are read. The Stripe
        #: webhook keeps its own, smaller, limit.
        "MAX_CONTENT_LENGTH": _int(environ, "UPSS_MAX_REQUEST_BYTES", 1_000_000),
        "MAX_FORM_MEMORY_SIZE": _int(environ, "UPSS_MAX_REQUEST_BYTES", 1_000_000),
        #: Signed-in sessions end after this many minutes without a request (never while the
        #: user holds an answer lock) and, in any case, this many hours after signing in.
        "UPSS_SESSION_IDLE_MINUTES": _int(environ, "UPSS_SESSION_IDLE_MINUTES", 120),
        "UPSS_SESSION_MAX_HOURS": _int(environ, "UPSS_SESSION_MAX_HOURS", 14 * 24),
        #: The session cookie lives UPSS_SESSION_MAX_HOURS from signing in (its max-age, set
        #: then), as the server's session does. Flask would sign and send it again on every
        #: request to push that back, which the server's absolute limit makes pointless.
        "SESSION_REFRESH_EACH_REQUEST": False,
        #: Rate limits are counted in this store, shared by every worker and machine:
        #: ``redis://host:6379/0``. ``memory://`` counts per process: only for the
        #: single-process ``make run`` and tests; production refuses it.
        "RATELIMIT_STORAGE_URI": environ.get("UPSS_RATELIMIT_STORAGE", "memory://"),
        "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        "RATELIMIT_KEY_PREFIX": environ.get("UPSS_RATELIMIT_KEY_PREFIX", "upss"),
        #: Exact counting (a moving window), so a burst across a window's edge gets no extra.
        "RATELIMIT_STRATEGY": "moving-window",
        #: If the shared store fails while UPSS runs, each process counts on its own (logged
        #: as an error) until the store is back: limits get looser, never switched off.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_ENABLED": _bool(environ, "UPSS_RATELIMIT_ENABLED", True),
        "UPSS_RATE_LIMITS": {name: environ.get(f"UPSS_LIMIT_{name}") or default
                             for name, default in RATE_LIMITS.items()},
        #: How many reverse proxies in front of UPSS set X-Forwarded-For (0: none, so the
        #: client address is the connection's). Rate limits per address rely on it.
        "UPSS_TRUSTED_PROXIES": _int(environ, "UPSS_TRUSTED_PROXIES", 0),
        "BABEL_DEFAULT_LOCALE": "en",
        #: Times are shown in this zone until users have their own setting.
        "BABEL_DEFAULT_TIMEZONE": environ.get("UPSS_TIMEZONE", "Europe/Oslo"),
        #: The organizer's e-mail address for questions and problems, shown on the Help page.
        "UPSS_CONTACT_EMAIL": environ.get("UPSS_CONTACT_EMAIL", "organizer@example.org"),
        # Accounts: days between asking to delete an account and erasing it (signing in
        # before cancels it), and days a data export can be downloaded.
        "UPSS_DELETION_GRACE_DAYS": _int(environ, "UPSS_DELETION_GRACE_DAYS", 14),
        "UPSS_DATA_EXPORT_DAYS": _int(environ, "UPSS_DATA_EXPORT_DAYS", 7),
        # Keys the ledger's hash chain (HMAC, hash version 3): keep it outside the database.
        "UPSS_LEDGER_HMAC_KEY": environ.get("UPSS_LEDGER_HMAC_KEY") or None,
        # Stripe: no secret key means "talk to localstripe".
        "UPSS_USES_LOCALSTRIPE": uses_localstripe,
        "UPSS_STRIPE_SECRET_KEY": stripe_key or LOCALSTRIPE_SECRET_KEY,
        "UPSS_STRIPE_PUBLISHABLE_KEY": environ.get(
            "UPSS_STRIPE_PUBLISHABLE_KEY", "" if stripe_key else LOCALSTRIPE_PUBLISHABLE_KEY
        ),
        "UPSS_STRIPE_WEBHOOK_SECRET": environ.get(
            "UPSS_STRIPE_WEBHOOK_SECRET", "" if stripe_key else LOCAL_WEBHOOK_SECRET
        ),
        "UPSS_STRIPE_CONNECT_WEBHOOK_SECRET": environ.get(
            "UPSS_STRIPE_CONNECT_WEBHOOK_SECRET",
            "" if stripe_key else LOCAL_CONNECT_WEBHOOK_SECRET),
        #: Country of answerers' connected accounts (ISO code).
        "UPSS_CONNECT_COUNTRY": environ.get("UPSS_CONNECT_COUNTRY", "NO"),
        "UPSS_LOCALSTRIPE_URL": environ.get("UPSS_LOCALSTRIPE_URL", "http://127.0.0.1:8420"),
        #: Seconds a webhook signature's timestamp may be old before it is refused.
        "UPSS_WEBHOOK_TOLERANCE": _int(environ, "UPSS_WEBHOOK_TOLERANCE", 300),
        #: Seconds one Stripe request may take (connect and each read) before it is given up...
        "UPSS_STRIPE_TIMEOUT_SECONDS": _float(environ, "UPSS_STRIPE_TIMEOUT_SECONDS", 3.0),
        #: ...and how often the stripe library retries it (same idempotency key) after that.
        "UPSS_STRIPE_NETWORK_RETRIES": _int(environ, "UPSS_STRIPE_NETWORK_RETRIES", 1),
        #: Questions still awaiting payment are checked at Stripe after these minutes (a lost
        #: webhook), with growing gaps, until these hours have passed since payment started.
        "UPSS_PAYMENT_CHECK_AFTER_MINUTES": _int(environ, "UPSS_PAYMENT_CHECK_AFTER_MINUTES", 5),
        "UPSS_PAYMENT_CHECK_FOR_HOURS": _int(environ, "UPSS_PAYMENT_CHECK_FOR_HOURS", 24),
        # Defaults of the organizer's settings (stored in the database once changed).
        "UPSS_CURRENCY": environ.get("UPSS_CURRENCY", "EUR"),
        "UPSS_PRICE_MIN_CENTS": _int(environ, "UPSS_PRICE_MIN_CENTS", 300),
        "UPSS_PRICE_MAX_CENTS": _int(environ, "UPSS_PRICE_MAX_CENTS", 10000),
        "UPSS_COMMISSION_BPS": _int(environ, "UPSS_COMMISSION_BPS", 1000),
        "UPSS_OFFPEAK_WINDOW": environ.get("UPSS_OFFPEAK_WINDOW", "22:00-07:00"),
        "UPSS_OFFER_HOURS": _int(environ, "UPSS_OFFER_HOURS", 12),
        "UPSS_LOCK_HOURS": _int(environ, "UPSS_LOCK_HOURS", 4),
        "UPSS_LOCK_HOURS_LARGE": _int(environ, "UPSS_LOCK_HOURS_LARGE", 8),
        "UPSS_LARGE_PRICE_CENTS": _int(environ, "UPSS_LARGE_PRICE_CENTS", 10000),
        "UPSS_DEADLINE_HOURS": _int(environ, "UPSS_DEADLINE_HOURS", 72),
        "UPSS_AUTO_ACCEPT_DAYS": _int(environ, "UPSS_AUTO_ACCEPT_DAYS", 3),
        "UPSS_URGENT_HOURS": _int(environ, "UPSS_URGENT_HOURS", 12),
        "UPSS_RELEASE_MAX_PER_RUN": _int(environ, "UPSS_RELEASE_MAX_PER_RUN", 5),
        # Payouts: who pays (the SEPA file's debtor), and when money is old enough to pay out.
        "UPSS_ORGANIZER_NAME": environ.get("UPSS_ORGANIZER_NAME", "UPSS Organizer"),
        "UPSS_ORGANIZER_IBAN": environ.get("UPSS_ORGANIZER_IBAN", "NO9386011117947"),
        "UPSS_ORGANIZER_BIC": environ.get("UPSS_ORGANIZER_BIC", "DNBANOKKXXX"),
        "UPSS_PAYOUT_AFTER_DAYS": _int(environ, "UPSS_PAYOUT_AFTER_DAYS", 14),
        "UPSS_PAYOUT_MINIMUM_CENTS": _int(environ, "UPSS_PAYOUT_MINIMUM_CENTS", 1000),
        # E-mail (upss/mailer.py, upss/notifications.py). The default is the local development
        # SMTP server of ``make run`` (aiosmtpd, Procfile ``smtp``), whose mail /dev/mail shows.
        #: ``smtp://user:password@host:587`` (STARTTLS when the server offers it) or
        #: ``smtps://user:password@host:465`` (TLS from the start).
        "UPSS_SMTP_URL": environ.get("UPSS_SMTP_URL", "smtp://127.0.0.1:8025"),
        #: The sender of every message; its domain also ends each Message-ID.
        "UPSS_MAIL_FROM": environ.get("UPSS_MAIL_FROM", "UPSS <upss@localhost>"),
        #: Where people reach UPSS: links in messages start with it.
        "UPSS_BASE_URL": environ.get("UPSS_BASE_URL", "http://127.0.0.1:5000"),
        #: DKIM signing, when all three are set: the selector, the signing domain and the file
        #: holding the private key (PEM) whose public key is published at
        #: ``<selector>._domainkey.<domain>``.
        "UPSS_DKIM_SELECTOR": environ.get("UPSS_DKIM_SELECTOR", ""),
        "UPSS_DKIM_DOMAIN": environ.get("UPSS_DKIM_DOMAIN", ""),
        "UPSS_DKIM_KEY_FILE": environ.get("UPSS_DKIM_KEY_FILE", ""),
        #: Scheduler: seconds between runs of the frequent jobs (tests make it short).
        "UPSS_SCHEDULER_TICK_SECONDS": _int(environ, "UPSS_SCHEDULER_TICK_SECONDS", 60),
        #: Seconds a SQLite scheduler lease lasts without renewal.
        "UPSS_LEASE_SECONDS": _int(environ, "UPSS_LEASE_SECONDS", 90),
    }


def deployment_problems(config) -> list[str]:
    """What must change before UPSS may start with ``config``; each item says what to set.

    Outside production only a live key without a webhook secret is refused (it would accept the
    money and then refuse every webhook). In production, everything development-only is refused:
    the local Stripe, the public local webhook secret, and a missing webhook secret.
    """
    env = config.get("UPSS_ENV", "development")
    if env not in ENVIRONMENTS:
        return [f"UPSS_ENV is {env!r}: set it to one of {', '.join(ENVIRONMENTS)}."]
    problems = []
    key = config["UPSS_STRIPE_SECRET_KEY"]
    secret = config.get("UPSS_STRIPE_WEBHOOK_SECRET") or ""
    if key.startswith(LIVE_KEY_PREFIX) and not secret:
        problems.append("A live Stripe key (UPSS_STRIPE_SECRET_KEY) needs the signing secret of "
                        "its webhook endpoint: set UPSS_STRIPE_WEBHOOK_SECRET (whsec_...).")
    if env == "production":
        storage = config.get("RATELIMIT_STORAGE_URI") or "memory://"
        if storage.startswith("memory://"):
            problems.append("Production needs rate limits shared by all workers: set "
                            "UPSS_RATELIMIT_STORAGE=redis://host:6379/0.")
        if not config.get("RATELIMIT_ENABLED", True):
            problems.append("Production cannot run without rate limits: remove "
                            "UPSS_RATELIMIT_ENABLED=false.")
        if config.get("UPSS_USES_LOCALSTRIPE"):
            problems.append("Production needs a real Stripe key: set UPSS_STRIPE_SECRET_KEY "
                            "(without it UPSS would use the local development Stripe).")
        if config.get("UPSS_STRIPE_CONNECT_WEBHOOK_SECRET") == LOCAL_CONNECT_WEBHOOK_SECRET:
            problems.append("UPSS_STRIPE_CONNECT_WEBHOOK_SECRET is the local development "
                            "secret, which is public: set the signing secret of your Connect "
                            "webhook endpoint.")
        if not config.get("UPSS_BASE_URL", "").startswith("https://"):
            problems.append("Set UPSS_BASE_URL to the https:// address where people reach UPSS "
                            "(links in e-mails start with it).")
        if config.get("UPSS_MAIL_FROM", "").rstrip(">").endswith("@localhost"):
            problems.append("Set UPSS_MAIL_FROM to the sender of UPSS's e-mail, at your own "
                            "domain (e.g. UPSS <upss@example.no>).")
        if config.get("UPSS_CONTACT_EMAIL", "").endswith("@example.org"):
            problems.append("Set UPSS_CONTACT_EMAIL to the address where people can reach the "
                            "organizer (the Help page shows it).")
        if secret == LOCAL_WEBHOOK_SECRET:
            problems.append("UPSS_STRIPE_WEBHOOK_SECRET is the local development secret, which "
                            "is public: set the signing secret Stripe shows for your endpoint.")
        elif not secret and not key.startswith(LIVE_KEY_PREFIX):
            problems.append("Set UPSS_STRIPE_WEBHOOK_SECRET, the signing secret Stripe shows "
                            "for your webhook endpoint.")
    return problems


def check_deployment(config) -> None:
    """Refuse to start with ``config`` if :func:`deployment_problems` finds anything."""
    problems = deployment_problems(config)
    if problems:
        raise ConfigError("UPSS cannot start (UPSS_ENV="
                          f"{config.get('UPSS_ENV', 'development')}):\n- " + "\n- ".join(problems))
