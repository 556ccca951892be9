"""Reminders before something runs out: an answerer's time to answer, an asker's time to
look at an answer before it is accepted for them.

Each is a scheduler job that finds what is about to run out with one indexed query and writes
one message (``upss.notifications``) per thing. The question remembers which deadline it was
reminded of (``lock_reminded_for``, ``accept_reminded_for``): a longer lock or a restarted
auto-accept clock is a new deadline, reminded again; the same one never twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import notifications, settings
from .models import Question

#: How long before a lock runs out the answerer is reminded (a shorter lock is not).
LOCK_WARNING = timedelta(minutes=30)
#: How long before the auto-accept the asker is reminded (at most half the wait).
ACCEPT_WARNING = timedelta(days=2)


def _not_reminded(column, deadline):
    return or_(column.is_(None), column != deadline)


def remind_lock_ending(session: Session, now: datetime) -> int:
    """Answerers whose lock runs out within ``LOCK_WARNING`` are told once per lock end.
    Returns how many."""
    due = session.scalars(select(Question).where(
        Question.status == "claimed", Question.lock_expires_at > now,
        Question.lock_expires_at <= now + LOCK_WARNING,
        _not_reminded(Question.lock_reminded_for, Question.lock_expires_at))).all()
    for question in due:
        question.lock_reminded_for = question.lock_expires_at
        notifications.enqueue(session, question.answerer, "lock_ending", {
            "question_id": question.id, "title": question.title,
            "answerer_id": question.answerer_id,
            "lock_expires_at": question.lock_expires_at.isoformat()}, now)
    return len(due)


def accept_warning(wait: timedelta) -> timedelta:
    """How long before an auto-accept after ``wait`` the asker is reminded."""
    return min(ACCEPT_WARNING, wait / 2)


def remind_auto_accept(session: Session, now: datetime) -> int:
    """Askers whose answer will be accepted for them within ``ACCEPT_WARNING`` (or half the
    auto-accept wait, if that is shorter) are told once per answer time. Returns how many."""
    wait = timedelta(days=settings.current(session).auto_accept_days)
    warning = accept_warning(wait)
    due = session.scalars(select(Question).where(
        Question.status == "answered", Question.answered_at <= now - wait + warning,
        Question.answered_at > now - wait,
        _not_reminded(Question.accept_reminded_for, Question.answered_at))).all()
    for question in due:
        question.accept_reminded_for = question.answered_at
        accept_at = question.answered_at + wait
        notifications.enqueue(session, question.asker, "auto_accept_soon", {
            "question_id": question.id, "title": question.title,
            "accept_at": accept_at.isoformat(),
            "days": max(1, -(-(accept_at - now) // timedelta(days=1)))}, now)
    return len(due)
