"""Signed-in sessions that can be ended: one row per signed-in browser (``UserSession``).

Signing in starts a session and gives the browser a random token (kept in Flask's signed
cookie); every request checks the token here. So signing out really ends the session - a copy
of the cookie taken before is refused afterwards - and "sign out everywhere" or a password
change (:func:`end_other_sessions`) ends the others.

Lifetimes are settings: a session ends after ``UPSS_SESSION_IDLE_MINUTES`` without a request
(any request renews it, the answer page's autosave included), but never while its user holds
an answer lock - typing an answer for hours never loses the session - and in any case
``UPSS_SESSION_MAX_HOURS`` after signing in. Services flush; callers commit.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, joinedload

from . import notifications
from .models import Question, User, UserSession

#: ``last_seen_at`` is written at most this often (not on every request).
RENEW_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Lifetimes:
    idle: timedelta
    absolute: timedelta

    @classmethod
    def from_config(cls, config) -> Lifetimes:
        return cls(idle=timedelta(minutes=config["UPSS_SESSION_IDLE_MINUTES"]),
                   absolute=timedelta(hours=config["UPSS_SESSION_MAX_HOURS"]))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(session: Session, user: User, now: datetime) -> str:
    """Start a session for ``user``; returns the token for the browser's cookie."""
    token = secrets.token_urlsafe(32)
    session.add(UserSession(token_hash=_hash(token), user_id=user.id, created_at=now,
                            last_seen_at=now))
    session.flush()
    return token


def holds_answer_lock(session: Session, user_id: int, now: datetime) -> bool:
    """Whether the user is answering a question whose lock has not run out."""
    return session.scalar(
        select(Question.id).where(Question.answerer_id == user_id,
                                  Question.status.in_(("claimed", "clarifying")),
                                  Question.lock_expires_at > now).limit(1)) is not None


#: Built once: every signed-in request sends it. The user comes in the same statement (a
#: joined load), with the count of their unread messages that every page's header shows.
_BY_TOKEN = (select(UserSession).where(UserSession.token_hash == bindparam("token_hash"))
             .options(joinedload(UserSession.user).with_expression(
                 User.unread_messages, notifications.unread_of(User.id))))


def check(session: Session, token: str | None, user_id: int, now: datetime,
          lifetimes: Lifetimes) -> tuple[UserSession | None, bool]:
    """The live session of ``user_id`` with this token (renewed) or None; and whether
    anything was changed for the caller to commit.

    A session that has become idle or too old is ended here, so it stays ended.
    """
    if not token:
        return None, False
    # ``UserSession.user`` (and their unread count) comes in the same statement: one a request.
    row = session.scalar(_BY_TOKEN, {"token_hash": _hash(token)})
    if row is None or row.user_id != user_id or row.ended_at is not None:
        return None, False
    if now - row.created_at > lifetimes.absolute:
        _end(row, "expired", now)
        return None, True
    if now - row.last_seen_at > lifetimes.idle and not holds_answer_lock(session, user_id, now):
        _end(row, "idle", now)
        return None, True
    if now - row.last_seen_at >= RENEW_EVERY:
        row.last_seen_at = now
        return row, True
    return row, False


def _end(row: UserSession, reason: str, now: datetime) -> None:
    row.ended_at, row.end_reason = now, reason


def end(session: Session, token: str | None, now: datetime, reason: str = "signed_out") -> None:
    """End the session with this token (signing out); nothing happens if it has ended."""
    if token:
        session.execute(update(UserSession)
                        .where(UserSession.token_hash == _hash(token),
                               UserSession.ended_at.is_(None))
                        .values(ended_at=now, end_reason=reason))


def end_all(session: Session, user: User, now: datetime,
            reason: str = "signed_out_everywhere") -> int:
    """End every session of ``user`` ("sign out everywhere"); returns how many ended."""
    return session.execute(update(UserSession)
                           .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
                           .values(ended_at=now, end_reason=reason)).rowcount


def end_other_sessions(session: Session, user: User, keep_token: str | None,
                       now: datetime) -> int:
    """End every session of ``user`` except the one with ``keep_token`` (after a password or
    e-mail change, the person making it stays signed in); returns how many ended."""
    query = update(UserSession).where(UserSession.user_id == user.id,
                                      UserSession.ended_at.is_(None))
    if keep_token:
        query = query.where(UserSession.token_hash != _hash(keep_token))
    return session.execute(query.values(ended_at=now, end_reason="other_sessions_ended")).rowcount


def other_session_count(session: Session, user: User, token: str | None) -> int:
    """How many other sessions of ``user`` have not been ended (some may be idle by now)."""
    query = select(func.count()).select_from(UserSession).where(
        UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    if token:
        query = query.where(UserSession.token_hash != _hash(token))
    return session.scalar(query)
