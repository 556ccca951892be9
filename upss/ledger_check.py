"""Checking the ledger in the background: checkpoints, the incremental check and its job.

Design overview
---------------
* A **check** (``LedgerCheck``) verifies the ledger with ``ledger.walk``: ``full`` walks the
  whole chain and sums every account (``ledger.verify``); ``new`` starts from the last
  **checkpoint** and walks only what was posted after it, so its cost is the number of new
  transactions, not the size of the ledger.
* A check that finds nothing wrong becomes the next checkpoint: the transaction it verified up
  to, that transaction's hash, the totals per kind of account (``ledger.account_kind``) and,
  per account, the verified balance (``LedgerVerifiedBalance``). The incremental check then
  proves, for each account the new transactions touch, that the cached balance equals the
  verified balance plus the new entries, and it re-reads the checkpoint's own hash.
* What the incremental check cannot see (a row changed *before* the checkpoint, an account
  no new transaction touches) is the full check's job: the organizer can start one, and
  ``flask upss verify-ledger`` runs one.
* A check reads the ledger through a connection of its own in one snapshot (``REPEATABLE
  READ`` on PostgreSQL), so transactions posted while it runs are left for the next check
  instead of looking like differences.
* Pages never verify: ``summary()`` reads the last check and the checkpoint's totals.
  ``request_check()`` asks for a check; the ``verify-ledger`` job runs requested checks, and
  an incremental check every few minutes when something new was posted.

Like other services, functions flush and never commit, except that a check reads through its
own read-only connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import audit, ledger
from .models import (
    LedgerAccount,
    LedgerCheck,
    LedgerTransaction,
    LedgerVerifiedBalance,
    User,
)

#: Problems kept on a check (the first break of the chain is always the first).
MAX_PROBLEMS = 50
#: Accounts read or written per statement.
CHUNK = 1000
#: Accounts per statement when PostgreSQL stores verified balances from two arrays.
BULK_CHUNK = 50_000
#: After a check that found problems, the job checks again by itself only this much later.
RECHECK_FAILED = timedelta(hours=1)
#: The summary counts unverified transactions up to this many, then says "more than".
UNVERIFIED_SHOWN = 10_000


class CheckAlreadyWaiting(Exception):
    """A check was already asked for and has not run yet."""


def checkpoint(session) -> LedgerCheck | None:
    """The newest check that found nothing wrong: where the next incremental check starts."""
    return session.scalar(select(LedgerCheck).where(
        LedgerCheck.state == "done", LedgerCheck.ok.is_(True),
        LedgerCheck.through_transaction_id.is_not(None))
        .order_by(LedgerCheck.id.desc()).limit(1))


def verify_new(conn, since: LedgerCheck | None, hmac_key: bytes | None,
               batch_size: int = 5000) -> ledger.VerifyReport:
    """Verify what was posted after the checkpoint ``since`` (everything, without one).

    Checks the chain from the checkpoint's hash, each new transaction's balance, that the
    checkpoint's transaction still has its hash, and, for every account the new transactions
    touch, cached balance = verified balance + new entries. ``report.totals`` are the
    checkpoint's totals plus the new entries. Reads only; cost O(new transactions).
    """
    if since is None:
        return ledger.verify(conn, batch_size, hmac_key)
    report = ledger.VerifyReport(through_id=since.through_transaction_id,
                                 through_hash=since.through_hash)
    row = conn.execute(select(LedgerTransaction.hash, LedgerTransaction.hash_version).where(
        LedgerTransaction.id == since.through_transaction_id)).first()
    if row is None or row.hash != since.through_hash:
        report.problems.append(f"transaction {since.through_transaction_id} changed or went "
                               f"missing since the check of {since.finished_at:%Y-%m-%d %H:%M}")
        return report
    report.through_version = row.hash_version
    ledger.walk(conn, report, ledger.head(conn), hmac_key, batch_size)
    report.totals = dict(json.loads(since.totals))
    touched = sorted(report.sums)
    for start in range(0, len(touched), CHUNK):
        ids = touched[start:start + CHUNK]
        for account_id, name, currency, cached, verified in conn.execute(
                select(LedgerAccount.id, LedgerAccount.name, LedgerAccount.currency,
                       LedgerAccount.balance_cents, LedgerVerifiedBalance.balance_cents)
                .outerjoin(LedgerVerifiedBalance,
                           LedgerVerifiedBalance.account_id == LedgerAccount.id)
                .where(LedgerAccount.id.in_(ids))):
            report.accounts += 1
            delta = report.sums[account_id]
            expected = (verified or 0) + delta
            if cached != expected:
                report.problems.append(
                    f"account {name}: cached balance {cached} but the last check's "
                    f"{verified or 0} and the new entries make {expected}")
            kind = f"{ledger.account_kind(name)} {currency}"
            report.totals[kind] = report.totals.get(kind, 0) + delta
    report.problems.extend(ledger.unbalanced_totals(report.totals))
    return report


@contextmanager
def _snapshot(session: Session) -> Iterator:
    """Something to read the ledger through that sees one snapshot for its whole life.

    PostgreSQL: a connection of its own in ``REPEATABLE READ``. SQLite: the session itself,
    whose transaction holds the database's only write lock (``BEGIN IMMEDIATE``), so nothing
    is posted while it reads.
    """
    engine = session.get_bind()
    if engine.dialect.name != "postgresql":
        yield session
        return
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, \
            conn.begin():
        yield conn


def run_check(session: Session, check: LedgerCheck, now: datetime,
              batch_size: int = 5000) -> ledger.VerifyReport:
    """Run ``check`` (full or new), record its result and, if it found nothing wrong, make it
    the checkpoint (its verified balances replace or update the stored ones). Flushes."""
    since = checkpoint(session) if check.kind == "new" else None
    with _snapshot(session) as conn:
        report = verify_new(conn, since, ledger.configured_key(), batch_size)
    check.state, check.finished_at, check.ok = "done", now, report.ok
    check.transactions_checked = report.transactions
    check.through_transaction_id = report.through_id
    check.through_hash = report.through_hash if report.through_id else None
    check.problems = json.dumps(report.problems[:MAX_PROBLEMS])
    check.totals = json.dumps(report.totals, sort_keys=True)
    if report.ok:
        _store_verified(session, report.sums, replace=since is None)
    session.flush()
    return report


def check_now(session: Session, kind: str, now: datetime,
              batch_size: int = 5000) -> tuple[LedgerCheck, ledger.VerifyReport]:
    """Run a check of ``kind`` at once (``flask upss verify-ledger``) and record it. Flushes."""
    check = LedgerCheck(kind=kind, state="running", requested_at=now)
    session.add(check)
    session.flush()
    return check, run_check(session, check, now, batch_size)


def _store_verified(session: Session, sums: dict[int, int], replace: bool) -> None:
    """Store verified balances: after a full check, exactly ``sums`` (the balance of every
    account); after an incremental one, add ``sums`` (the new entries) to what is stored."""
    if replace:
        session.execute(delete(LedgerVerifiedBalance))
        if session.get_bind().dialect.name == "postgresql":
            # Two arrays in one statement: one row per account costs no round trip.
            ids, cents = list(sums), list(sums.values())
            for start in range(0, len(ids), BULK_CHUNK):
                session.execute(text(
                    "INSERT INTO ledger_verified_balance (account_id, balance_cents)"
                    " SELECT * FROM unnest(CAST(:ids AS integer[]), CAST(:cents AS bigint[]))"),
                    {"ids": ids[start:start + BULK_CHUNK],
                     "cents": cents[start:start + BULK_CHUNK]})
            return
        rows = [{"account_id": account_id, "balance_cents": cents}
                for account_id, cents in sums.items()]
        for start in range(0, len(rows), CHUNK):
            session.execute(insert(LedgerVerifiedBalance), rows[start:start + CHUNK])
        return
    upsert = (postgresql_insert if session.get_bind().dialect.name == "postgresql"
              else sqlite_insert)
    items = sorted(sums.items())
    for start in range(0, len(items), CHUNK):
        statement = upsert(LedgerVerifiedBalance).values(
            [{"account_id": account_id, "balance_cents": cents}
             for account_id, cents in items[start:start + CHUNK]])
        session.execute(statement.on_conflict_do_update(
            index_elements=[LedgerVerifiedBalance.account_id],
            set_={"balance_cents": LedgerVerifiedBalance.balance_cents
                  + statement.excluded.balance_cents}))


def request_check(session: Session, organizer: User, kind: str, now: datetime) -> LedgerCheck:
    """Ask for a check (``full`` or ``new``) that the ``verify-ledger`` job runs soon, with its
    audit-log row. ``CheckAlreadyWaiting`` if one is already waiting. Flushes."""
    if kind not in ("full", "new"):
        raise ValueError(f"unknown kind of check {kind!r}")
    if session.scalar(select(LedgerCheck.id).where(
            LedgerCheck.state.in_(("requested", "running"))).limit(1)) is not None:
        raise CheckAlreadyWaiting()
    check = LedgerCheck(kind=kind, state="requested", requested_by_id=organizer.id,
                        requested_at=now)
    session.add(check)
    session.flush()
    audit.record(session, organizer, "ask for a ledger check", f"ledger check {check.id}",
                 after={"kind": kind})
    return check


def run(session: Session, now: datetime) -> str | int:
    """The ``verify-ledger`` job: every requested check, else an incremental check when
    something was posted after the checkpoint (a full one when there is no checkpoint), but
    not within ``RECHECK_FAILED`` of a check that found problems."""
    requested = session.scalars(select(LedgerCheck).where(LedgerCheck.state == "requested")
                                .order_by(LedgerCheck.id)).all()
    if not requested:
        last = checkpoint(session)
        newest = ledger.head(session)
        if newest == 0 or (last is not None and last.through_transaction_id == newest):
            return 0
        failed = session.scalar(select(LedgerCheck).where(LedgerCheck.state == "done")
                                .order_by(LedgerCheck.id.desc()).limit(1))
        if failed is not None and not failed.ok and now - failed.finished_at < RECHECK_FAILED:
            return 0  # the organizer has been shown the problem; do not re-read it each tick
        requested = [LedgerCheck(kind="new" if last else "full", state="requested",
                                 requested_at=now)]
        session.add(requested[0])
    results = []
    for check in requested:
        check.state = "running"
        session.flush()
        report = run_check(session, check, now)
        results.append(f"{check.kind} check: {report.transactions} transactions, "
                       + ("ok" if report.ok else f"{len(report.problems)} problems"))
    return "; ".join(results)


@dataclass(frozen=True)
class KindTotal:
    """One line of the ledger's summary: the balance of one kind of account at the checkpoint."""

    kind: str
    type: str
    currency: str
    debit_cents: int
    credit_cents: int
    #: Whether the kind has many accounts (a drill-down lists the open ones).
    numbered: bool


def total_rows(totals: dict[str, int]) -> list[KindTotal]:
    """A check's totals (``"<kind> <currency>"``: signed cents) as rows, by kind."""
    rows = []
    for key, cents in sorted(totals.items()):
        kind, currency = key.rsplit(" ", 1)
        rows.append(KindTotal(kind, ledger.kind_type(kind), currency, max(cents, 0),
                              max(-cents, 0), kind in ledger.KIND_PREFIXES))
    return rows


@dataclass(frozen=True)
class LedgerSummary:
    """What the organizer's ledger page shows, without reading the ledger itself."""

    #: The newest finished check, and the one waiting or running, if any.
    last: LedgerCheck | None
    waiting: LedgerCheck | None
    #: The checkpoint and its totals (empty before the first good check).
    checkpoint: LedgerCheck | None
    totals: list[KindTotal]
    #: Transactions posted after the checkpoint (not yet verified), counted up to
    #: ``UNVERIFIED_SHOWN + 1``.
    unverified: int

    @property
    def unverified_more_than(self) -> bool:
        return self.unverified > UNVERIFIED_SHOWN

    @property
    def problems(self) -> list[str]:
        return json.loads(self.last.problems) if self.last is not None else []


def summary(session: Session) -> LedgerSummary:
    """The last check, the checkpoint's totals per kind of account, and how much was posted
    since: a few indexed reads, whatever the ledger's size."""
    last = session.scalar(select(LedgerCheck).where(LedgerCheck.state == "done")
                          .order_by(LedgerCheck.id.desc()).limit(1))
    waiting = session.scalar(select(LedgerCheck).where(
        LedgerCheck.state.in_(("requested", "running"))).order_by(LedgerCheck.id).limit(1))
    point = checkpoint(session)
    totals = total_rows(json.loads(point.totals)) if point is not None else []
    through = point.through_transaction_id if point is not None else 0
    unverified = session.scalar(select(func.count()).select_from(
        select(LedgerTransaction.id).where(LedgerTransaction.id > through)
        .limit(UNVERIFIED_SHOWN + 1).subquery()))
    return LedgerSummary(last=last, waiting=waiting, checkpoint=point, totals=totals,
                         unverified=unverified)
