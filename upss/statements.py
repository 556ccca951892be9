"""Read-only ledger statements and CSV exports for the organizer's audit pages.

Design overview
---------------
* **Account statements.** ``statement()`` lists every entry of one ledger account in posting
  order with a running balance. The ledger stores signed cents (debit ``+``, credit ``-``);
  a statement shows each account in its *normal* sign (``normal_balance()``), so an asset's
  money and an answerer's payable amount both read as positive numbers. Its closing balance
  equals ``ledger.balance()`` in that sign.
  A statement is read a page at a time (``STATEMENT_PAGE`` entries) along the index
  ``(account_id, id)``; the cursor carries the running balance, so every page costs the same.
* **Open accounts.** ``open_accounts()`` pages through one numbered kind's accounts whose
  balance is not zero (the ledger page's drill-down; ``upss.ledger_check`` has its summary).
  ``cached_balance()`` is an account's cached balance in its normal sign, next to its
  statement, so pages never call the ledger.
* **CSV exports** for the accountant: every ledger entry (``ledger_entries_csv()``, columns
  ``LEDGER_CSV_COLUMNS``), and every payout (``payouts_csv()``, ``PAYOUT_CSV_COLUMNS``),
  both streamed a batch at a time.
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
from collections.abc import Iterable, Iterator, Sequence
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
    entry_id: int
    transaction_id: int
    at: datetime
    key: str
    description: str
    debit_cents: int
    credit_cents: int
    #: Running balance after this entry, in the account's normal sign.
    balance_cents: int


#: Where a statement page starts: after entry ``entry_id``, whose running balance (normal sign)
#: was ``balance_cents``.
@dataclass(frozen=True)
class Cursor:
    entry_id: int
    balance_cents: int


@dataclass(frozen=True)
class Statement:
    """One page of an account's statement, in posting order."""

    account: str
    type: str
    currency: str
    rows: list[StatementRow]
    #: The balance after the last row of this page (before its first row: ``opening``).
    closing_balance_cents: int
    opening_balance_cents: int = 0
    #: Where the next (later) page starts, or None on the last page.
    next: Cursor | None = None
    #: Whether the page starts at the account's first entry.
    first: bool = True
    #: Where the previous (earlier) page ends: before this page's first entry, whose opening
    #: balance it carries; None on the first page.
    previous: Cursor | None = None

    @property
    def last(self) -> bool:
        return self.next is None


#: Entries per statement page.
STATEMENT_PAGE = 50


def normal_balance(account_type: str, signed_cents: int) -> int:
    """A signed ledger amount in the normal sign of ``account_type`` (credit-normal: negated)."""
    if account_type in DEBIT_NORMAL:
        return signed_cents
    if account_type in CREDIT_NORMAL:
        return -signed_cents
    raise ValueError(f"unknown account type {account_type!r}")


def _entries(account: LedgerAccount):
    return (select(LedgerEntry.id.label("entry_id"), LedgerTransaction.id.label("tx_id"),
                   LedgerTransaction.created_at,
                   LedgerTransaction.idempotency_key, LedgerTransaction.description,
                   LedgerEntry.amount_cents)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.account_id == account.id))


def statement(session: Session, account_name: str, after: Cursor | None = None,
              newest: bool = False, per_page: int = STATEMENT_PAGE,
              before: Cursor | None = None) -> Statement:
    """One page of account ``account_name``'s entries in posting order, with a running balance.

    The first page starts at the first entry (balance 0); ``after`` continues after a page,
    ``before`` goes back before one (each cursor carries the running balance at its edge);
    ``newest`` is the last page, its opening balance the cached balance less its entries (read
    in one statement). Each page costs the same, whatever the account's size: the index
    ``(account_id, id)`` and a running balance carried by the cursor. ``KeyError`` for an
    unknown account.
    """
    account = session.scalar(select(LedgerAccount).where(LedgerAccount.name == account_name))
    if account is None:
        raise KeyError(account_name)
    if newest:
        return _newest_page(session, account, per_page)
    if before is not None:
        return _earlier_page(session, account, before, per_page)
    query = _entries(account)
    running = 0
    if after is not None:
        query = query.where(LedgerEntry.id > after.entry_id)
        running = after.balance_cents
    found = session.execute(query.order_by(LedgerEntry.id).limit(per_page + 1)).all()
    more = len(found) > per_page
    rows, closing = _rows(account.type, found[:per_page], running)
    return Statement(account=account.name, type=account.type, currency=account.currency,
                     rows=rows, closing_balance_cents=closing, opening_balance_cents=running,
                     next=Cursor(rows[-1].entry_id, closing) if more else None,
                     first=after is None,
                     previous=Cursor(rows[0].entry_id, running) if after and rows else None)


def _earlier_page(session: Session, account: LedgerAccount, before: Cursor,
                  per_page: int) -> Statement:
    found = session.execute(_entries(account).where(LedgerEntry.id < before.entry_id)
                            .order_by(LedgerEntry.id.desc()).limit(per_page + 1)).all()
    first = len(found) <= per_page
    page = found[:per_page][::-1]
    opening = before.balance_cents - sum(normal_balance(account.type, int(r[5])) for r in page)
    rows, closing = _rows(account.type, page, opening)
    return Statement(account=account.name, type=account.type, currency=account.currency,
                     rows=rows, closing_balance_cents=closing, opening_balance_cents=opening,
                     next=Cursor(rows[-1].entry_id, closing) if rows else None, first=first,
                     previous=None if first or not rows else Cursor(rows[0].entry_id, opening))


def _newest_page(session: Session, account: LedgerAccount, per_page: int) -> Statement:
    newest = _entries(account).order_by(LedgerEntry.id.desc()).limit(per_page + 1).subquery()
    # The cached balance in the same statement as the entries, so both see the same posts.
    cached = (select(LedgerAccount.balance_cents).where(LedgerAccount.id == account.id)
              .scalar_subquery())
    found = session.execute(select(newest, cached).order_by(newest.c.entry_id)).all()
    first = len(found) <= per_page
    page = found[-per_page:] if found else []
    balance = int(found[0][-1]) if found else account.balance_cents
    opening = normal_balance(account.type, balance - sum(int(r[5]) for r in page))
    rows, closing = _rows(account.type, [r[:6] for r in page], opening)
    return Statement(account=account.name, type=account.type, currency=account.currency,
                     rows=rows, closing_balance_cents=closing, opening_balance_cents=opening,
                     next=None, first=first,
                     previous=None if first else Cursor(rows[0].entry_id, opening))


def _rows(account_type: str, found, running: int) -> tuple[list[StatementRow], int]:
    rows = []
    for entry_id, tx_id, at, key, description, amount in found:
        amount = int(amount)
        running += normal_balance(account_type, amount)
        rows.append(StatementRow(
            entry_id=entry_id, transaction_id=tx_id, at=at, key=key, description=description,
            debit_cents=amount if amount > 0 else 0, credit_cents=-amount if amount < 0 else 0,
            balance_cents=running))
    return rows, running


def cached_balance(session: Session, found: Statement) -> int:
    """The account's cached balance (``ledger.balance``) in its normal sign: it equals the
    last page's closing balance unless the ledger is broken."""
    return normal_balance(found.type, ledger.balance(session, found.account))


@dataclass(frozen=True)
class OpenAccounts:
    """A page of the open accounts (balance not zero) of one numbered kind, by name."""

    kind: str
    rows: list[tuple[str, str, int]]  # (name, currency, balance in the normal sign)
    next_after: str | None


#: Open accounts per page of the drill-down.
ACCOUNTS_PAGE = 50


def open_accounts(session: Session, kind: str, after: str | None = None,
                  per_page: int = ACCOUNTS_PAGE) -> OpenAccounts:
    """The open accounts of ``kind`` (``escrow``, ``payable``) after name ``after``: the
    partial index of open accounts, so closed ones (a settled question's escrow) cost nothing.
    ``KeyError`` for another kind."""
    prefix = ledger.KIND_PREFIXES[kind]
    start = after if after is not None and after > prefix else prefix
    found = session.execute(
        select(LedgerAccount.name, LedgerAccount.currency, LedgerAccount.balance_cents)
        .where(LedgerAccount.balance_cents != 0, LedgerAccount.name > start,
               LedgerAccount.name.startswith(prefix, autoescape=True))
        .order_by(LedgerAccount.name).limit(per_page + 1)).all()
    rows = [(name, currency, normal_balance(ledger.kind_type(kind), int(cents)))
            for name, currency, cents in found[:per_page]]
    return OpenAccounts(kind=kind, rows=rows,
                        next_after=rows[-1][0] if len(found) > per_page else None)


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
    return _rows_csv([columns, *rows])


def _rows_csv(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def ledger_entries_csv(session: Session, batch: int = 1000) -> Iterator[str]:
    """CSV of every ledger entry (one line each, by entry id) with its transaction and account,
    produced a batch of entries at a time (memory: one batch, whatever the ledger's size)."""
    yield _csv(LEDGER_CSV_COLUMNS, [])
    last_id = 0
    while True:
        found = session.execute(
            select(LedgerEntry.id, LedgerEntry.transaction_id, LedgerTransaction.created_at,
                   LedgerTransaction.idempotency_key, LedgerTransaction.description,
                   LedgerAccount.name, LedgerAccount.type, LedgerEntry.currency,
                   LedgerEntry.amount_cents)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerEntry.id > last_id).order_by(LedgerEntry.id).limit(batch)).all()
        if not found:
            return
        last_id = found[-1][0]
        rows = []
        for _, tx_id, created_at, key, description, account, kind, currency, amount in found:
            amount = int(amount)
            rows.append((tx_id, _iso_utc(created_at), _cell(key), _cell(description),
                         _cell(account), kind, currency, _decimal_text(max(amount, 0), currency),
                         _decimal_text(max(-amount, 0), currency), amount))
        yield _rows_csv(rows)


def payouts_csv(session: Session, batch: int = 1000) -> Iterator[str]:
    """CSV of every payout (by id) with the answerer's name, amount in major units and cents,
    produced a batch of payouts at a time (keyset on the id: memory of one batch)."""
    yield _csv(PAYOUT_CSV_COLUMNS, [])
    last_id = 0
    while True:
        found = session.execute(
            select(Payout, User.name).join(User, User.id == Payout.answerer_id)
            .where(Payout.id > last_id).order_by(Payout.id).limit(batch)).all()
        if not found:
            return
        last_id = found[-1][0].id
        rows = []
        for payout, name in found:
            amount = int(payout.amount_cents)
            rows.append((payout.id, payout.batch_id, _iso_utc(payout.created_at),
                         payout.answerer_id, _cell(name), payout.method, payout.status,
                         payout.currency, _decimal_text(amount, payout.currency), amount,
                         _cell(payout.iban), _cell(payout.stripe_transfer_id),
                         payout.failure_code or "", _cell(payout.failure_reason)))
        yield _rows_csv(rows)
