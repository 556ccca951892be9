"""The organizer's daily digest: what waits for them, once a day at their digest hour.

It gathers applications and rejected answers waiting for a decision, card disputes open at
Stripe with their evidence deadlines, the last reconciliation's differences, messages that
could not be sent, and scheduled tasks that have not run when they should have. The numbers
are taken when the digest is written (so the message says what was true then); the text is
written when it is sent, in the organizer's language.

If the scheduler itself is down, no digest comes: the missing morning message is the alarm.
``flask upss organizer-digest`` and ``flask upss send-notifications`` can run from the
system's own timer (cron, systemd) as a second path; the digest then lists the tasks whose
last run is too old.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import notifications, overview, settings
from .models import JobRun, Notification, StripeDispute, User
from .stripe_money import CLOSED_DISPUTE

#: Card disputes named in the digest at most (the soonest deadlines first).
MAX_DISPUTES = 20


def _late_jobs(session: Session, now: datetime, expected: dict[str, timedelta]) -> list[dict]:
    """Jobs whose newest run is older than ``expected`` (job id → longest normal gap); one
    indexed lookup per job."""
    late = []
    for job_id, gap in expected.items():
        last = session.scalar(select(JobRun.started_at).where(JobRun.job_id == job_id)
                              .order_by(JobRun.started_at.desc()).limit(1))
        if last is None or last < now - gap:
            late.append({"job": job_id, "last_run": last.isoformat() if last else None})
    return late


def gather(session: Session, now: datetime, expected: dict[str, timedelta]) -> dict:
    """What the digest says, as the data of its message."""
    waiting = overview.organizer_overview(session)
    disputes = session.scalars(
        select(StripeDispute).where(StripeDispute.status.not_in(CLOSED_DISPUTE))
        .order_by(StripeDispute.evidence_due_at.is_(None), StripeDispute.evidence_due_at,
                  StripeDispute.id).limit(MAX_DISPUTES))
    run = waiting.reconciliation
    return {
        "at": now.isoformat(),
        "timezone": settings.current(session).timezone,
        "applications_waiting": waiting.applications_waiting,
        "rejected_answers": waiting.rejected_answers,
        "card_disputes": [
            {"question_id": d.question_id, "amount_cents": d.amount_cents,
             "currency": d.currency,
             "evidence_due_at": d.evidence_due_at.isoformat() if d.evidence_due_at else None}
            for d in disputes],
        "reconciliation_differences": run.differences if run else 0,
        "reconciliation_failed": bool(run and run.failed),
        "failed_messages": waiting.failed_messages,
        "late_jobs": _late_jobs(session, now, expected),
    }


def send_organizer_digests(session: Session, now: datetime,
                           expected: dict[str, timedelta]) -> int:
    """Write a digest to each organizer who has had none since their digest hour last came
    (so one a day, also after the scheduler was down). Returns how many were written."""
    zone = settings.current(session).zone
    written = 0
    data = None
    for organizer in session.scalars(select(User).where(User.is_organizer)):
        moment = notifications.last_local_time(now, zone, organizer.digest_hour * 60)
        had = session.scalar(select(Notification.id).where(
            Notification.user_id == organizer.id, Notification.kind == "organizer_digest",
            Notification.created_at >= moment).limit(1))
        if had is not None:
            continue
        data = data or gather(session, now, expected)
        notifications.enqueue(session, organizer, "organizer_digest", data, now)
        written += 1
    return written
