"""The signed links of account e-mails: confirm an address, reset a password, confirm a new
address. Each is signed with the app's secret and its own salt, and carries its age.

- **Confirm** (``CONFIRM_MAX_AGE``): user id and the address it was sent to; it works only
  while the account still has that address.
- **Reset** (``RESET_MAX_AGE``, one hour): user id and a fingerprint of the password hash, so
  the link stops working as soon as the password changes: it can be used once.
- **New address** (``EMAIL_CHANGE_MAX_AGE``): user id, the old and the new address; it works
  only while the account still has the old one.

The links are made when the message is written (by the dispatcher), not stored in the outbox.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .models import User

CONFIRM_MAX_AGE = timedelta(days=7)
RESET_MAX_AGE = timedelta(hours=1)
EMAIL_CHANGE_MAX_AGE = timedelta(days=1)

_SALTS = {"confirm": "upss-confirm-email", "reset": "upss-reset-password",
          "email_change": "upss-change-email"}
_AGES = {"confirm": CONFIRM_MAX_AGE, "reset": RESET_MAX_AGE,
         "email_change": EMAIL_CHANGE_MAX_AGE}


class BadLink(Exception):
    """The link is not one UPSS made, was changed, or was already used."""


class ExpiredLink(BadLink):
    """The link is too old."""


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALTS[purpose])


def password_fingerprint(user: User) -> str:
    """A short digest of the password hash: it changes whenever the password does."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:20]


def make(purpose: str, *values) -> str:
    """A signed link token for ``purpose`` ("confirm", "reset", "email_change")."""
    return _serializer(purpose).dumps(list(values))


def read(purpose: str, token: str) -> list:
    """The values of ``token``; raises ``ExpiredLink`` or ``BadLink``."""
    try:
        return _serializer(purpose).loads(token, max_age=int(_AGES[purpose].total_seconds()))
    except SignatureExpired as exc:
        raise ExpiredLink(purpose) from exc
    except (BadSignature, ValueError, TypeError) as exc:
        raise BadLink(purpose) from exc
