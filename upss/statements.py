"""Read-only ledger statements and CSV exports for the organizer's audit pages.

Design overview
---------------
* **Account statements.** ``statement()`` lists every entry of one ledger account in posting
  order with a running balance. The ledger stores signed cents (debit ``+``, credit ``-``);
  a statement shows each account in its *normal* sign (``normal_balance()``), so an asset's
  money and an answerer's payable amount both read as positive numbers. Its closing balance
  equals ``ledger.balance()`` in that sign.
* **The ledger page.** ``ledger_overview()`` is the trial balance and the hash-chain check
  (``ledger.trial_balance``, ``ledger.verify``); ``cached_balance()`` is an account's cached
  balance in its normal sign, next to its statement, so pages never call the ledger.
* **CSV exports** for the accountant: every ledger entry (``ledger_entries_csv()``, columns
  ``LEDGER_CSV_COLUMNS``), and every payout (``payouts_csv()``, ``PAYOUT_CSV_COLUMNS``).
  Amounts are written twice, as a decimal string in major units (from ``money.to_decimal``,
  never a float) and as integer cents. Text cells that a spreadsheet would run as a formula
  (``=``, ``+``, ``-``, ``@``, tab, carriage return first) get a leading apostrophe, because an
  answerer chooses their own name.

Money is integer cents throughout. Nothing here writes: functions take a session and only
read from it. The organizer's traffic charts are in ``upss.charts``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import ledger
from .models import LedgerAccount, LedgerEntry, LedgerTransaction, Payout, User
from .money import to_decimal

#: Account types whose normal balance is on the debit side (shown as the signed sum).
DEBIT_NORMAL = frozenset({"asset", "expense"})
#: Account types whose normal balance is on the credit side (shown as minus the signed sum).
CREDIT_NORMAL = frozenset({"liability", "revenue"})


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class StatementRow:
    transaction_id: int
    at: datetime
    key: str
    description: str
    debit_cents: int
    credit_cents: int
    #: Running balance after this entry, in the account's normal sign.
    balance_cents: int


@dataclass(frozen=True)
class Statement:
    account: str
    type: str
    currency: str
    rows: list[StatementRow]
    closing_balance_cents: int


def normal_balance(account_type: str, signed_cents: int) -> int:
    """A signed ledger amount in the normal sign of ``account_type`` (credit-normal: negated)."""
    if account_type in DEBIT_NORMAL:
        return signed_cents
    if account_type in CREDIT_NORMAL:
        return -signed_cents
    raise ValueError(f"unknown account type {account_type!r}")


def statement(session: Session, account_name: str) -> Statement:
    """Every entry of account ``account_name`` in posting order, with a running balance."""
    account = session.scalar(select(LedgerAccount).where(LedgerAccount.name == account_name))
    if account is None:
        raise KeyError(account_name)
    rows: list[StatementRow] = []
    running = 0
    for tx_id, at, key, description, amount in session.execute(
        select(LedgerTransaction.id, LedgerTransaction.created_at,
               LedgerTransaction.idempotency_key, LedgerTransaction.description,
               LedgerEntry.amount_cents)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerEntry.account_id == account.id)
        .order_by(LedgerTransaction.id, LedgerEntry.id)
    ):
        amount = int(amount)
        running += normal_balance(account.type, amount)
        rows.append(StatementRow(
            transaction_id=tx_id, at=at, key=key, description=description,
            debit_cents=amount if amount > 0 else 0,
            credit_cents=-amount if amount < 0 else 0,
            balance_cents=running,
        ))
    return Statement(account=account.name, type=account.type, currency=account.currency,
                     rows=rows, closing_balance_cents=running)


def cached_balance(session: Session, found: Statement) -> int:
    """The account's cached balance (``ledger.balance``) in its normal sign: it equals the
    statement's closing balance unless the ledger is broken."""
    return normal_balance(found.type, ledger.balance(session, found.account))


@dataclass(frozen=True)
class LedgerOverview:
    """The organizer's ledger page: every account's balance, and the chain check."""

    trial_balance: list[ledger.TrialBalanceRow]
    verification: ledger.VerifyReport


def ledger_overview(session: Session) -> LedgerOverview:
    """The trial balance (``ledger.trial_balance``) and the verification of the whole hash
    chain and every cached balance (``ledger.verify``)."""
    rows = ledger.trial_balance(session)
    return LedgerOverview(trial_balance=rows, verification=ledger.verify(session))


# --------------------------------------------------------------------------- CSV exports

LEDGER_CSV_COLUMNS = ("transaction_id", "created_at", "idempotency_key", "description",
                      "account", "account_type", "currency", "debit", "credit", "amount_cents")
PAYOUT_CSV_COLUMNS = ("payout_id", "batch_id", "created_at", "answerer_id", "answerer_name",
                      "method", "status", "currency", "amount", "amount_cents", "iban",
                      "stripe_transfer_id", "failure_code", "failure_reason")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _decimal_text(amount_cents: int, currency: str) -> str:
    """``1250`` EUR → ``"12.50"``; ``0`` → ``"0.00"`` (fixed point, never exponent form)."""
    value: Decimal = to_decimal(amount_cents, currency)
    return f"{value:f}"


def _iso_utc(at: datetime | None) -> str:
    return at.astimezone(UTC).isoformat() if at is not None else ""


def _cell(text: str | None) -> str:
    """Text safe to open in a spreadsheet: a would-be formula gets a leading apostrophe."""
    text = text or ""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def ledger_entries_csv(session: Session) -> str:
    """CSV of every ledger entry (one line each, by entry id) with its transaction and account."""
    query = (
        select(LedgerEntry.transaction_id, LedgerTransaction.created_at,
               LedgerTransaction.idempotency_key, LedgerTransaction.description,
               LedgerAccount.name, LedgerAccount.type, LedgerEntry.currency,
               LedgerEntry.amount_cents)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .order_by(LedgerEntry.id)
    )
    rows = []
    for tx_id, created_at, key, description, account, kind, currency, amount in (
            session.execute(query)):
        amount = int(amount)
        rows.append((tx_id, _iso_utc(created_at), _cell(key), _cell(description), _cell(account),
                     kind, currency, _decimal_text(max(amount, 0), currency),
                     _decimal_text(max(-amount, 0), currency), amount))
    return _csv(LEDGER_CSV_COLUMNS, rows)


def payouts_csv(session: Session) -> str:
    """CSV of every payout (by id) with the answerer's name, amount in major units and cents."""
    query = (select(Payout, User.name).join(User, User.id == Payout.answerer_id)
             .order_by(Payout.id))
    rows = []
    for payout, name in session.execute(query):
        amount = int(payout.amount_cents)
        rows.append((payout.id, payout.batch_id, _iso_utc(payout.created_at), payout.answerer_id,
                     _cell(name), payout.method, payout.status, payout.currency,
                     _decimal_text(amount, payout.currency), amount, _cell(payout.iban),
                     _cell(payout.stripe_transfer_id), payout.failure_code or "",
                     _cell(payout.failure_reason)))
    return _csv(PAYOUT_CSV_COLUMNS, rows)
