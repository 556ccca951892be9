"""The scheduler's lease: only one scheduler process acts at a time.

PostgreSQL: a session-level advisory lock held on a dedicated connection; it is released when
the process stops, however it stops, because PostgreSQL drops the lock with the connection.
SQLite: a lease row with an expiry that the holder renews on every job run; another process
may take it only once it has expired.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from sqlalchemy import insert, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from .models import SchedulerLease, utcnow

log = logging.getLogger(__name__)
#: Key of the PostgreSQL advisory lock that marks the active scheduler.
ADVISORY_KEY = 0x0055_5053_5302
LEASE_NAME = "scheduler"


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """Base: ``holds(now)`` acquires or renews, and says whether this process may act."""

    def __init__(self, engine: Engine, holder: str):
        self.engine = engine
        self.holder = holder
        self._lock = threading.Lock()
        self.held = False

    def holds(self, now: datetime | None = None) -> bool:
        with self._lock:
            was = self.held
            try:
                self.held = self._acquire_or_renew(now or utcnow())
            except DBAPIError as exc:
                log.warning("scheduler lease check failed: %s", exc)
                self.held = False
            if self.held != was:
                log.info("scheduler %s %s the lease", self.holder,
                         "holds" if self.held else "lost")
            return self.held

    def release(self) -> None:
        with self._lock:
            self._release()
            self.held = False

    def _acquire_or_renew(self, now: datetime) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


class PostgresLease(Lease):
    def __init__(self, engine: Engine, holder: str):
        super().__init__(engine, holder)
        self._conn: Connection | None = None

    def _acquire_or_renew(self, now: datetime) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except DBAPIError:
                self._conn.invalidate()
                self._conn = None
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar():
            self._conn = conn
            return True
        conn.close()
        return False

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            self._conn.close()
            self._conn = None


class RowLease(Lease):
    def __init__(self, engine: Engine, holder: str, seconds: int):
        super().__init__(engine, holder)
        self.seconds = seconds

    def _acquire_or_renew(self, now: datetime) -> bool:
        expires = now + timedelta(seconds=self.seconds)
        table = SchedulerLease.__table__
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(table).where(table.c.name == LEASE_NAME,
                                    (table.c.holder == self.holder) | (table.c.expires_at <= now))
                .values(holder=self.holder, expires_at=expires)
            ).rowcount
            if taken:
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(name=LEASE_NAME, holder=self.holder,
                                                  expires_at=expires))
            return True
        except IntegrityError:
            return False

    def _release(self) -> None:
        table = SchedulerLease.__table__
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.name == LEASE_NAME,
                                             table.c.holder == self.holder)
                         .values(expires_at=utcnow()))


def lease_for(engine: Engine, seconds: int) -> Lease:
    """The right kind of lease for the database behind ``engine``."""
    if engine.dialect.name == "postgresql":
        return PostgresLease(engine, holder_name())
    return RowLease(engine, holder_name(), seconds)
