"""An answerer's earnings: what is owed, what can be paid out now, what sits in a bank file
not yet sent, what was paid, and this year's total against their yearly ceiling. Also the
weekly payout schedule.

Where an answerer's money is, by the ledger and the payout rows (``upss.payouts``,
``upss.sepa``):

* **owed**: the balance of their ``payable:answerer:<id>`` account (settlements and tips credit
  it; every payout debits it; a failed or returned payout's reversal credits it again);
* **in the bank file, not yet sent**: a SEPA payout's posting has already moved the money out of
  the payable account into the organizer's shared ``bank_clearing`` account, and the payout is
  ``awaiting_bank`` until the organizer marks its batch's file sent. It is neither owed (no
  longer on the payable account) nor paid (not sent), so it is its own line, read from the
  answerer's own ``awaiting_bank`` payouts and their files' dates;
* **paid**: their payouts with status ``sent`` (a Connect transfer made, or a SEPA file marked
  sent); a payment the bank returns becomes ``failed`` and is owed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import ledger, payouts, settings, statements
from .dbtypes import one_of
from .models import (
    AnswererProfile,
    IncomeMark,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payout,
    PayoutBatch,
    User,
)

#: The weekly payout batch runs on Mondays (weekday 0) at 09:00 in the organizer's timezone.
PAYOUT_WEEKDAY, PAYOUT_HOUR = 0, 9


@dataclass(frozen=True)
class BankFilePart:
    """The answerer's money in one SEPA bank file the organizer has not marked sent."""

    #: When the file was made (its payout batch's time).
    made_at: datetime
    amount_cents: int


@dataclass(frozen=True)
class Earnings:
    currency: str
    owed_cents: int
    payable_now_cents: int
    #: Money in SEPA files made but not yet sent: neither owed nor paid.
    in_bank_file_cents: int
    #: Each such file, oldest first (its parts add up to ``in_bank_file_cents``).
    bank_files: tuple[BankFilePart, ...]
    paid_cents: int
    this_year_cents: int
    ceiling_cents: int | None
    next_payout: date
    minimum_cents: int


def year_start(now: datetime, zone: ZoneInfo) -> datetime:
    """Local midnight of 1 January of ``now``'s year in ``zone``."""
    return now.astimezone(zone).replace(month=1, day=1, hour=0, minute=0, second=0,
                                        microsecond=0)


def income_since(session: Session, answerer_ids, since: datetime) -> dict[int, int]:
    """Answerer id -> cents credited to their payable account since ``since``: their share of
    settled questions and tips. A reversed payout gives money back; it is not income."""
    names = {ledger.payable_account(i): i for i in answerer_ids}
    rows = session.execute(
        select(LedgerAccount.name, func.sum(-LedgerEntry.amount_cents))
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerAccount.name.in_(names), LedgerEntry.amount_cents < 0,
               LedgerTransaction.reverses_id.is_(None),
               LedgerTransaction.created_at >= since)
        .group_by(LedgerAccount.name))
    return {names[name]: int(total) for name, total in rows}


def recent_and_yearly_income(session: Session, zones: dict[int, ZoneInfo], now: datetime,
                             period: timedelta) -> dict[int, tuple[int, int]]:
    """Answerer id -> ``(credited in the last period, credited since 1 January)``, as
    :func:`income_since` counts it, where each answerer's year starts at midnight of 1 January
    in their own time zone (``zones``); answerers never credited are left out.

    Read from the income marks (``IncomeMark``, kept by ``ledger.post``): income since a moment
    is the answerer's latest running total minus their last total before it. One statement,
    a few probes of the marks' primary key per answerer, whatever the length of the ledger.
    (The release run reads the same columns inside its own statement: :func:`total_before`.)"""
    if not zones:
        return {}
    by_zone = {zone: year_start(now, zone) for zone in set(zones.values())}
    year_from = {i: by_zone[zone] for i, zone in zones.items()}
    starts = sorted(set(year_from.values()))  # one per UTC offset on 1 January: a handful
    column = {start: n for n, start in enumerate(starts)}
    rows = session.connection().execute(
        select(User.id, total_before(User.id, None), total_before(User.id, now - period),
               *(total_before(User.id, start) for start in starts))
        .where(one_of(session.get_bind().dialect.name, User.id, sorted(zones))))
    income = {}
    for answerer_id, latest, before_period, *before_year in rows:
        if latest is None:
            continue
        income[answerer_id] = (
            int(latest - (before_period or 0)),
            int(latest - (before_year[column[year_from[answerer_id]]] or 0)))
    return income


def total_before(answerer_id, moment):
    """A column: the running income of the answerer whose id is ``answerer_id`` (a column of
    the outer query) at their last mark before ``moment`` (a moment, or an SQL expression of
    the outer row), or at their latest mark when ``moment`` is None; NULL when there is none.
    Income since a moment is the latest total minus the total before it."""
    marks = IncomeMark.__table__.c
    query = select(marks.total_cents).where(marks.answerer_id == answerer_id)
    if moment is not None:
        query = query.where(marks.created_at < moment)
    return (query.order_by(marks.created_at.desc(), marks.transaction_id.desc()).limit(1)
            .correlate_except(IncomeMark.__table__).scalar_subquery())


def next_payout_date(now: datetime, zone: ZoneInfo) -> date:
    """The date of the next weekly payout batch."""
    local = now.astimezone(zone)
    days = (PAYOUT_WEEKDAY - local.weekday()) % 7
    if days == 0 and local.hour >= PAYOUT_HOUR:
        days = 7
    return (local + timedelta(days=days)).date()


def in_unsent_bank_files(session: Session, answerer_id: int) -> tuple[BankFilePart, ...]:
    """The answerer's money in SEPA bank files made but not yet marked sent, one part per file,
    oldest first: their ``awaiting_bank`` payouts (``upss.sepa.mark_file_sent`` makes them
    ``sent``; a batch's file holds at most one payout per answerer). Reads only this
    answerer's payouts (``payout.answerer_id`` is indexed)."""
    rows = session.execute(
        select(PayoutBatch.created_at, func.sum(Payout.amount_cents))
        .join(PayoutBatch, PayoutBatch.id == Payout.batch_id)
        .where(Payout.answerer_id == answerer_id, Payout.status == "awaiting_bank")
        .group_by(PayoutBatch.id, PayoutBatch.created_at)
        .order_by(PayoutBatch.created_at, PayoutBatch.id))
    return tuple(BankFilePart(made_at, int(cents)) for made_at, cents in rows)


def summary(session: Session, answerer: User, now: datetime) -> Earnings:
    """The numbers of the answerer's earnings page: owed (of which payable now), in a bank file
    not yet sent, paid, and this year's income (module docstring). Exact integer cents; every
    query is limited to this answerer."""
    rules = settings.current(session)
    account = ledger.payable_account(answerer.id)
    owed = -ledger.balance(session, account)
    cfg = current_app.config
    payable_now = payouts.eligible_amounts(
        session, now, settled_before_days=cfg["UPSS_PAYOUT_AFTER_DAYS"], minimum_cents=1,
        answerer_id=answerer.id).get(answerer.id, 0)
    paid = session.scalar(select(func.coalesce(func.sum(Payout.amount_cents), 0)).where(
        Payout.answerer_id == answerer.id, Payout.status == "sent"))
    profile = session.get(AnswererProfile, answerer.id)
    # The year of the ceiling is the answerer's own, as the release policy counts it.
    zone = ZoneInfo(profile.timezone) if profile else rules.zone
    this_year = income_since(session, [answerer.id], year_start(now, zone)).get(answerer.id, 0)
    bank_files = in_unsent_bank_files(session, answerer.id)
    return Earnings(
        currency=rules.currency, owed_cents=owed, payable_now_cents=payable_now,
        in_bank_file_cents=sum(part.amount_cents for part in bank_files),
        bank_files=bank_files, paid_cents=int(paid), this_year_cents=int(this_year),
        ceiling_cents=profile.yearly_ceiling_cents if profile else None,
        next_payout=next_payout_date(now, rules.zone),
        minimum_cents=cfg["UPSS_PAYOUT_MINIMUM_CENTS"])


def run_weekly_payouts(session: Session, now: datetime):
    """The scheduler's weekly payout batch, with the configured age and minimum: phase 1 is
    committed, then its Connect transfers are sent (``payouts.send_transfers``)."""
    cfg = current_app.config
    batch = payouts.run_batch(session, now, settled_before_days=cfg["UPSS_PAYOUT_AFTER_DAYS"],
                              minimum_cents=cfg["UPSS_PAYOUT_MINIMUM_CENTS"])
    if batch is not None:
        payouts.send_transfers(session, now, batch.id)
    return batch


def statement(session: Session, answerer: User, after: statements.Cursor | None = None,
              before: statements.Cursor | None = None) -> statements.Statement | None:
    """A page of the movements on the answerer's payable account, the newest first shown
    (``after``/``before`` move along it), or None before their first one."""
    try:
        return statements.statement(session, ledger.payable_account(answerer.id), after=after,
                                    before=before, newest=after is None and before is None)
    except KeyError:
        return None
