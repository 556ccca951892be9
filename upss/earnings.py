"""An answerer's earnings: what is owed, what can be paid out now, what was paid, and this
year's total against their yearly ceiling. Also the weekly payout schedule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import ledger, payouts, settings, statements
from .models import AnswererProfile, LedgerAccount, LedgerEntry, LedgerTransaction, Payout, User

#: The weekly payout batch runs on Mondays (weekday 0) at 09:00 in the organizer's timezone.
PAYOUT_WEEKDAY, PAYOUT_HOUR = 0, 9


@dataclass(frozen=True)
class Earnings:
    currency: str
    owed_cents: int
    payable_now_cents: int
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


def next_payout_date(now: datetime, zone: ZoneInfo) -> date:
    """The date of the next weekly payout batch."""
    local = now.astimezone(zone)
    days = (PAYOUT_WEEKDAY - local.weekday()) % 7
    if days == 0 and local.hour >= PAYOUT_HOUR:
        days = 7
    return (local + timedelta(days=days)).date()


def summary(session: Session, answerer: User, now: datetime) -> Earnings:
    """The numbers of the answerer's earnings page."""
    rules = settings.current(session)
    account = ledger.payable_account(answerer.id)
    owed = -ledger.balance(session, account)
    cfg = current_app.config
    payable_now = payouts.eligible_amounts(
        session, now, settled_before_days=cfg["UPSS_PAYOUT_AFTER_DAYS"], minimum_cents=1,
        answerer_id=answerer.id).get(answerer.id, 0)
    paid = session.scalar(select(func.coalesce(func.sum(Payout.amount_cents), 0)).where(
        Payout.answerer_id == answerer.id, Payout.status == "sent"))
    this_year = income_since(session, [answerer.id], year_start(now, rules.zone)).get(
        answerer.id, 0)
    profile = session.get(AnswererProfile, answerer.id)
    return Earnings(rules.currency, owed, payable_now, int(paid), int(this_year),
                    profile.yearly_ceiling_cents if profile else None,
                    next_payout_date(now, rules.zone), cfg["UPSS_PAYOUT_MINIMUM_CENTS"])


def run_weekly_payouts(session: Session, now: datetime):
    """The scheduler's weekly payout batch, with the configured age and minimum: phase 1 is
    committed, then its Connect transfers are sent (``payouts.send_transfers``)."""
    cfg = current_app.config
    batch = payouts.run_batch(session, now, settled_before_days=cfg["UPSS_PAYOUT_AFTER_DAYS"],
                              minimum_cents=cfg["UPSS_PAYOUT_MINIMUM_CENTS"])
    if batch is not None:
        payouts.send_transfers(session, now, batch.id)
    return batch


def statement(session: Session, answerer: User) -> statements.Statement | None:
    """Every movement on the answerer's payable account, or None before their first one."""
    try:
        return statements.statement(session, ledger.payable_account(answerer.id))
    except KeyError:
        return None
