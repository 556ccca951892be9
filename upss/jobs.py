"""Scheduler wiring only: which service function runs how often. Jobs are data.

Each job function takes ``(session, now)`` and lives in a service module; ``run_job`` gives it a
transaction, checks the lease first (a process without the lease idles) and records a
``JobRun``. ``flask upss scheduler`` runs them on an APScheduler BlockingScheduler, never
inside web workers.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask, current_app

from . import (
    account_deletion,
    data_export,
    earnings,
    ledger_check,
    notifications,
    organizer_digest,
    payments,
    payouts,
    reconciliation,
    release,
    reminders,
    settings,
)
from .extensions import commit_retrying_disconnect, db
from .lease import Lease
from .models import JobRun, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable
    #: Run every ``every_ticks`` scheduler ticks, that is every ``every_ticks`` ×
    #: ``UPSS_SCHEDULER_TICK_SECONDS`` seconds (60 by default: 5 is every 5 minutes)...
    every_ticks: int = 0
    #: ...or weekly at (weekday, hour) in the organizer's timezone.
    weekly: tuple[int, int] | None = None


def send_organizer_digests(session, now: datetime) -> int:
    """The ``organizer-digest`` job: ``organizer_digest.send_organizer_digests`` with the
    schedule's gaps, so the digest can name the jobs that are late."""
    return organizer_digest.send_organizer_digests(
        session, now, expected_gaps(current_app.config["UPSS_SCHEDULER_TICK_SECONDS"]))


JOBS = (
    Job("expire-offers", release.expire_offers, 1),
    Job("expire-locks", release.expire_locks, 1),
    Job("release", release.release_due_questions, 5),
    Job("refund-overdue", release.refund_overdue, 5),
    Job("auto-accept", release.auto_accept_due, 15),
    Job("check-payments", payments.check_unconfirmed_payments, 1),
    Job("resolve-payouts", payouts.resolve_unfinished, 1),
    Job("resolve-refunds", payments.resolve_unfinished_refunds, 1),
    Job("reconcile", reconciliation.reconcile_with_stripe, 15),
    Job("send-notifications", notifications.send_notifications, 1),
    Job("gather-digests", notifications.gather_digests, 1),
    Job("remind-lock-ending", reminders.remind_lock_ending, 5),
    Job("remind-auto-accept", reminders.remind_auto_accept, 15),
    Job("organizer-digest", send_organizer_digests, 15),
    Job("data-exports", data_export.run, 1),
    Job("erase-accounts", account_deletion.erase_due, 15),
    Job("verify-ledger", ledger_check.run, 5),
    Job("payouts", earnings.run_weekly_payouts,
        weekly=(earnings.PAYOUT_WEEKDAY, earnings.PAYOUT_HOUR)),
)


def expected_gaps(tick_seconds: int) -> dict[str, timedelta]:
    """For each job run every few ticks, the longest gap between runs that is still normal:
    three of its intervals (a slow run, a restart), and never under ten minutes."""
    return {job.id: max(timedelta(seconds=3 * tick_seconds * job.every_ticks),
                        timedelta(minutes=10)) for job in JOBS if job.every_ticks}


#: The outcome of a run that changed nothing.
NOTHING_DONE = "nothing to do"


def _describe(result) -> str:
    """One line for a job's result: what it did, or ``NOTHING_DONE``."""
    if result is None or result == 0 or result == []:
        return NOTHING_DONE
    if isinstance(result, list):
        return f"{len(result)} offered"
    if hasattr(result, "payouts"):
        return f"payout batch {result.id}: {len(result.payouts)} payouts"
    return str(result)


def quiet_scheduler_library() -> None:
    """APScheduler logs two lines for every run of every job ("Running job…", "…executed
    successfully"); ``run_job`` logs one line for a run that did something instead."""
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)


def run_job(app: Flask, job: Job, lease: Lease, now: datetime | None = None) -> str | None:
    """Run ``job`` once if this process holds the lease; returns its outcome, or None."""
    with app.app_context():
        if not lease.holds():
            return None
        started = utcnow()
        now = now or started
        try:
            outcome = _describe(commit_retrying_disconnect(lambda: job.func(db.session, now)))
        except Exception as exc:  # noqa: BLE001 - recorded, and retried on the next tick
            db.session.rollback()
            log.exception("job %s failed", job.id)
            outcome = f"failed: {exc}"[:500]
        else:
            if outcome != NOTHING_DONE:
                log.info("%s: %s", job.id, outcome)
        db.session.add(JobRun(job_id=job.id, holder=lease.holder, started_at=started,
                              finished_at=utcnow(), outcome=outcome))
        db.session.commit()
        db.session.remove()
        return outcome


def wait_for_local_stripe(app: Flask, seconds: float = 30.0) -> bool:
    """On the local Stripe stand-in (``make run`` starts it beside the scheduler): wait until
    it accepts a connection, at most ``seconds``, so the first runs, due at once, do not
    find it still starting (the organizer saw a reconciliation "Stripe did not answer" after
    every start). True when it answers, or with real Stripe (nothing to wait for); after
    ``seconds`` a warning, and the jobs go on to find it later themselves."""
    if not app.config["UPSS_USES_LOCALSTRIPE"]:
        return True
    address = urlsplit(app.config["UPSS_LOCALSTRIPE_URL"])
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((address.hostname, address.port or 80), timeout=1):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                log.warning("the local Stripe at %s did not answer in %s s; starting anyway",
                            app.config["UPSS_LOCALSTRIPE_URL"], seconds)
                return False
            time.sleep(0.2)


def build_scheduler(app: Flask, lease: Lease) -> BlockingScheduler:
    """A BlockingScheduler with every job of ``JOBS``, first runs due at once."""
    tick = app.config["UPSS_SCHEDULER_TICK_SECONDS"]
    with app.app_context():
        zone = settings.current(db.session).zone
        db.session.remove()
    scheduler = BlockingScheduler(timezone="UTC")
    start = utcnow()
    for n, job in enumerate(JOBS):
        common = {"id": job.id, "args": [app, job, lease], "replace_existing": True,
                  "coalesce": True, "max_instances": 1}
        if job.weekly:
            scheduler.add_job(run_job, "cron", day_of_week=job.weekly[0], hour=job.weekly[1],
                              timezone=zone, **common)
        else:
            scheduler.add_job(run_job, "interval", seconds=tick * job.every_ticks,
                              next_run_time=start + timedelta(milliseconds=50 * n), **common)
    return scheduler
