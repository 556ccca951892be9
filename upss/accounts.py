"""Accounts: sign-up with a confirmed address, password rules and checks, password reset and
change, change of address. Nothing here tells anyone whether an address has an account.

Registering (:func:`register`) answers the same way, with the same work, for a new address and
a known one; only the e-mail differs: "confirm your account" or "you already have an account".
An account whose address is not confirmed yet may sign in, ask and pay, and is reminded on
every page; it may not apply to answer (``access.may_apply``). Signing in with a link from a
confirmation e-mail confirms it.

Password reset (:func:`request_password_reset`, :func:`reset_password`): a one-hour link that
works once (``account_tokens``); the same answer for known and unknown addresses; setting the
new password ends every session. Changing the password needs the current one and ends the
other sessions. A new address takes effect only when its link is opened at the new address;
the old address is told of the request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from . import account_tokens, notifications, sessions
from .models import LANGUAGES, User

PASSWORD_MIN = 10
PASSWORD_MAX = 128
#: Compared against when the e-mail is unknown, so both failures take the same time.
_DUMMY_HASH = generate_password_hash("upss-timing-equaliser")


class WeakPassword(ValueError):
    """The password breaks a rule of :func:`password_problem`; ``code`` says which."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _common_passwords() -> frozenset[str]:
    """The 30 000 most common passwords (from zxcvbn's lists, which are lower-case)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


_COMMON: frozenset[str] | None = None


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be used, as a code, or None if it may.

    Its length is counted without surrounding spaces (``length``); it may not be one character
    repeated (``repeated``), a straight run like ``abcdefghij`` or ``9876543210``
    (``sequence``), or one of the 30 000 most common passwords, in any case (``common``).
    """
    global _COMMON
    text = (password or "").strip()
    if not PASSWORD_MIN <= len(text) <= PASSWORD_MAX or len(password) > PASSWORD_MAX:
        return "length"
    if len(set(text)) == 1:
        return "repeated"
    steps = {ord(b) - ord(a) for a, b in zip(text, text[1:], strict=False)}
    if steps in ({1}, {-1}):
        return "sequence"
    if _COMMON is None:
        _COMMON = _common_passwords()
    if text.lower() in _COMMON:
        return "common"
    return None


class EmailTaken(Exception):
    """Another account already uses this e-mail address."""


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def sign_up(session: Session, *, email: str, name: str, password: str,
            confirmed_at: datetime | None = None) -> User:
    """Create an asker account; the password is stored only as a scrypt hash. Its address is
    unconfirmed unless ``confirmed_at`` says otherwise (accounts made by the organizer)."""
    email = normalise_email(email)
    if _by_email(session, email) is not None:
        raise EmailTaken(email)
    problem = password_problem(password)
    if problem:
        raise WeakPassword(problem)
    user = User(email=email, name=name.strip(), password_hash=generate_password_hash(password),
                email_confirmed_at=confirmed_at)
    session.add(user)
    session.flush()
    return user


def _by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == normalise_email(email)))


def register(session: Session, *, email: str, name: str, password: str, now: datetime) -> None:
    """Sign-up as the form does it: a new address gets an account and a "confirm your
    address" message; a known one gets "you already have an account" and nothing changes.
    Both hash the password and write one message, so neither the answer nor its time tells
    which it was. Raises ``WeakPassword`` (the same for both)."""
    problem = password_problem(password)
    if problem:
        raise WeakPassword(problem)
    existing = _by_email(session, email)
    if existing is not None:
        generate_password_hash(password)  # the same work as a new account
        notifications.enqueue(session, existing, "account_exists", {}, now)
        return
    user = sign_up(session, email=email, name=name, password=password)
    notifications.enqueue(session, user, "confirm_account", {}, now)


#: The link is not valid: changed, used, or for an address the account no longer has
#: (``account_tokens.ExpiredLink``, a kind of it, when it is too old).
BadLink = account_tokens.BadLink


def confirm_email(session: Session, token: str, now: datetime) -> User:
    """Open the confirmation link: the account's address is confirmed (again is fine).
    Raises ``BadLink`` (``ExpiredLink`` when too old)."""
    user_id, email = account_tokens.read("confirm", token)
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None or user.email != email:
        raise BadLink("confirm")
    if user.email_confirmed_at is None:
        user.email_confirmed_at = now
    session.flush()
    return user


def resend_confirmation(session: Session, user: User, now: datetime) -> bool:
    """Send the confirmation link again; False if the address is already confirmed."""
    if user.email_confirmed_at is not None:
        return False
    notifications.enqueue(session, user, "confirm_account", {}, now)
    return True


def request_password_reset(session: Session, email: str, now: datetime) -> None:
    """Send a reset link to ``email`` if an account has it; otherwise do nothing. The page
    says the same either way (the rate limits count unknown addresses too)."""
    user = _by_email(session, email)
    if user is not None and user.deleted_at is None:
        notifications.enqueue(session, user, "password_reset", {}, now)


def user_for_reset(session: Session, token: str) -> User:
    """The account a reset link is for, while it can still be used (not changed since, not
    older than an hour). Raises ``BadLink`` (``ExpiredLink`` when too old)."""
    user_id, fingerprint = account_tokens.read("reset", token)
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None or (
            account_tokens.password_fingerprint(user) != fingerprint):
        raise BadLink("reset")
    return user


def _set_password(session: Session, user: User, password: str, now: datetime) -> None:
    problem = password_problem(password)
    if problem:
        raise WeakPassword(problem)
    user.password_hash = generate_password_hash(password)
    notifications.enqueue(session, user, "password_changed", {}, now)


def reset_password(session: Session, token: str, password: str, now: datetime) -> User:
    """Set a new password with a reset link: the link stops working (the password it was made
    for is gone) and every session of the account ends. Opening the link proves the address,
    so an unconfirmed one becomes confirmed."""
    user = user_for_reset(session, token)
    _set_password(session, user, password, now)
    if user.email_confirmed_at is None:
        user.email_confirmed_at = now
    sessions.end_all(session, user, now, reason="password_reset")
    session.flush()
    return user


class WrongPassword(Exception):
    """The current password given is not the account's."""


def change_password(session: Session, user: User, current: str, new: str,
                    keep_token: str | None, now: datetime) -> None:
    """Change the password (the current one is needed); every other session ends."""
    if not check_password_hash(user.password_hash, current):
        raise WrongPassword()
    _set_password(session, user, new, now)
    sessions.end_other_sessions(session, user, keep_token, now)
    session.flush()


class SameEmail(Exception):
    """The new address is the one the account already has."""


def request_email_change(session: Session, user: User, new_email: str, password: str,
                         now: datetime) -> None:
    """Ask to move the account to ``new_email`` (the password is needed): a link goes to the
    new address, a notice to the old one; nothing changes until the link is opened."""
    if not check_password_hash(user.password_hash, password):
        raise WrongPassword()
    new_email = normalise_email(new_email)
    if new_email == user.email:
        raise SameEmail()
    notifications.enqueue(session, user, "email_change_confirm", {"to": new_email}, now)
    notifications.enqueue(session, user, "email_change_requested", {"new_email": new_email},
                          now)


def confirm_email_change(session: Session, token: str, now: datetime) -> User:
    """Open the link sent to the new address: the account moves to it (confirmed). Raises
    ``BadLink`` (too old, changed, used, or the account has another address by now) or
    ``EmailTaken`` (another account took the address meanwhile)."""
    user_id, old_email, new_email = account_tokens.read("email_change", token)
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None or user.email != old_email:
        raise BadLink("email_change")
    if _by_email(session, new_email) is not None:
        raise EmailTaken(new_email)
    user.email, user.email_confirmed_at = new_email, now
    notifications.enqueue(session, user, "email_changed", {"to": old_email,
                                                           "new_email": new_email}, now)
    session.flush()
    return user


def update_preferences(session: Session, user: User, *, locale: str, large_text: bool,
                       high_contrast: bool) -> None:
    """Remember the user's language and display preferences."""
    if locale not in ("", *LANGUAGES):
        raise ValueError(f"unknown locale {locale!r}")
    user.locale, user.large_text, user.high_contrast = locale, bool(large_text), bool(
        high_contrast)
    session.flush()


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user with this e-mail and password, or None (unknown e-mail and wrong password alike)."""
    user = _by_email(session, email)
    if user is None or user.deleted_at is not None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
