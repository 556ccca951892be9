"""The scheduler process: jobs as data, and the lease that lets only one process act."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from tests.conftest import wait_until
from upss import jobs, release
from upss.extensions import db
from upss.lease import RowLease, lease_for
from upss.models import JobRun

ROOT = Path(__file__).resolve().parents[2]


def test_jobs_are_declared_as_data():
    assert [j.id for j in jobs.JOBS] == ["expire-offers", "expire-locks", "release",
                                         "refund-overdue", "auto-accept", "check-payments",
                                         "resolve-payouts", "resolve-refunds", "reconcile",
                                         "send-notifications", "gather-digests",
                                         "remind-lock-ending", "remind-auto-accept",
                                         "organizer-digest", "data-exports",
                                         "erase-accounts", "verify-ledger", "payouts"]
    assert jobs.JOBS[2].func is release.release_due_questions


def test_build_scheduler_registers_every_job_once(app):
    with app.app_context():
        scheduler = jobs.build_scheduler(app, lease_for(db.engine, 90))
    registered = {j.id: j for j in scheduler.get_jobs()}
    assert set(registered) == {j.id for j in jobs.JOBS}
    assert registered["release"].trigger.interval == timedelta(minutes=5)
    assert registered["release"].max_instances == 1 and registered["release"].coalesce


def test_run_job_records_the_run_and_idles_without_the_lease(app, world):
    world.answerer()
    world.paid_question(paid_at=datetime(2026, 1, 14, 12, tzinfo=UTC))
    with app.app_context():
        lease = lease_for(db.engine, 90)
        other = lease_for(db.engine, 90)  # another process's lease: a second connection or row
        other.holder = "someone-else"
    night = datetime(2026, 1, 14, 22, tzinfo=UTC)
    release_job = jobs.JOBS[2]
    assert jobs.run_job(app, release_job, lease, now=night) == "1 offered"
    assert jobs.run_job(app, release_job, other, now=night) is None
    lease.release()
    with app.app_context():
        runs = db.session.scalars(select(JobRun)).all()
        assert [(r.job_id, r.holder, r.outcome) for r in runs] == [
            ("release", lease.holder, "1 offered")]


def test_row_lease_expires_and_can_be_taken_over(app):
    with app.app_context():
        a = RowLease(db.engine, "a", 30)
        b = RowLease(db.engine, "b", 30)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        assert a.holds(t0) and not b.holds(t0)
        assert a.holds(t0 + timedelta(seconds=20))           # renewed
        assert not b.holds(t0 + timedelta(seconds=45))       # renewal counted from 20 s
        assert b.holds(t0 + timedelta(seconds=51))           # a went quiet: b takes over
        assert not a.holds(t0 + timedelta(seconds=52))


def start_scheduler(database_url: str, localstripe_url: str, log_path: Path):
    env = {**os.environ, "UPSS_DATABASE_URL": database_url, "UPSS_SECRET_KEY": "test",
           "UPSS_LOCALSTRIPE_URL": localstripe_url, "UPSS_SCHEDULER_TICK_SECONDS": "1",
           "UPSS_LEASE_SECONDS": "3"}
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the process
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "upss",
                             "scheduler"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def holders(app) -> set[str]:
    with app.app_context():
        found = set(db.session.scalars(select(JobRun.holder)).all())
        db.session.remove()
        return found


def test_two_scheduler_processes_only_the_lease_holder_runs_jobs(app, database_url,
                                                                 localstripe_url, tmp_path):
    """Two `flask upss scheduler` processes: one runs jobs, the other idles; when the first
    stops, the second takes over. (PostgreSQL: advisory lock; SQLite: lease row.)"""
    first = start_scheduler(database_url, localstripe_url, tmp_path / "first.log")
    second = None
    try:
        wait_until(lambda: holders(app), timeout=30)
        second = start_scheduler(database_url, localstripe_url, tmp_path / "second.log")
        wait_until(lambda: b"starting" in (tmp_path / "second.log").read_bytes(), timeout=30)
        time.sleep(3)  # three ticks in which the second process must stay idle
        assert all(h.endswith(f":{first.pid}") for h in holders(app)), holders(app)
        first.send_signal(signal.SIGKILL if database_url.startswith("postgresql")
                          else signal.SIGTERM)
        first.wait(timeout=20)
        wait_until(lambda: any(h.endswith(f":{second.pid}") for h in holders(app)),
                   timeout=30)
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
    assert second.returncode == 0, (tmp_path / "second.log").read_text()[-2000:]
    assert "stopped" in (tmp_path / "second.log").read_text()
    # One line per run that did something, none per run that did not (issue 16 item 11).
    first_log = (tmp_path / "first.log").read_text()
    assert "Running job" not in first_log and "executed successfully" not in first_log


def test_a_run_that_did_something_logs_one_line_and_an_idle_run_none(app, world):
    world.answerer()
    world.paid_question(paid_at=datetime(2026, 1, 14, 12, tzinfo=UTC))
    with app.app_context():
        lease = lease_for(db.engine, 90)
    night = datetime(2026, 1, 14, 22, tzinfo=UTC)
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("upss.jobs")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level: it clears the logger's level cache
    disabled, logger.disabled = logger.disabled, False  # whatever configured logging before
    try:
        assert jobs.run_job(app, jobs.JOBS[2], lease, now=night) == "1 offered"
        assert jobs.run_job(app, jobs.JOBS[2], lease, now=night) == jobs.NOTHING_DONE
        assert jobs.run_job(app, jobs.JOBS[0], lease, now=night) == jobs.NOTHING_DONE
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled
        lease.release()
    assert lines == ["release: 1 offered"]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_scheduler_waits_for_the_local_stripe_that_is_starting(app, caplog):
    """``make run`` starts the scheduler and the local Stripe together: the first runs (due at
    once) wait until it listens, so reconciliation does not record "Stripe did not answer"
    at every start."""
    import socket
    import threading

    port = _free_port()
    app.config.update(UPSS_USES_LOCALSTRIPE=True, UPSS_LOCALSTRIPE_URL=f"http://127.0.0.1:{port}")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening = threading.Timer(0.6, lambda: (server.bind(("127.0.0.1", port)),
                                              server.listen()))
    started = time.monotonic()
    listening.start()
    try:
        assert jobs.wait_for_local_stripe(app, seconds=10) is True
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        listening.join()
        server.close()
    assert "did not answer" not in caplog.text


def test_the_scheduler_starts_anyway_when_the_local_stripe_never_answers(app, caplog):
    port = _free_port()
    app.config.update(UPSS_USES_LOCALSTRIPE=True, UPSS_LOCALSTRIPE_URL=f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="upss.jobs"):
        assert jobs.wait_for_local_stripe(app, seconds=0.5) is False
    assert f"the local Stripe at http://127.0.0.1:{port} did not answer" in caplog.text


def test_with_real_stripe_the_scheduler_does_not_wait(app):
    app.config.update(UPSS_USES_LOCALSTRIPE=False, UPSS_LOCALSTRIPE_URL="http://127.0.0.1:9")
    started = time.monotonic()
    assert jobs.wait_for_local_stripe(app, seconds=5) is True
    assert time.monotonic() - started < 0.5
