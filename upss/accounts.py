"""Accounts: sign-up, password rules and checks (strong hashing, no hint whether an e-mail
exists)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

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


def sign_up(session: Session, *, email: str, name: str, password: str) -> User:
    """Create an asker account; the password is stored only as a scrypt hash."""
    email = normalise_email(email)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken(email)
    problem = password_problem(password)
    if problem:
        raise WeakPassword(problem)
    user = User(email=email, name=name.strip(), password_hash=generate_password_hash(password))
    session.add(user)
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
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
