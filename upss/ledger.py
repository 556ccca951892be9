"""Double-entry ledger: the only way money moves in UPSS.

Design overview
---------------
* An **account** is named by what it holds: ``stripe_balance`` (asset: Stripe's available and
  pending balance), ``escrow:question:<id>`` (liability), ``payable:answerer:<id>``
  (liability), ``commission`` (revenue), ``stripe_fees`` and ``losses`` (expenses: Stripe's
  fees, and what the organizer bears of refunds and lost disputes), ``payouts_in_transit``
  (asset: Stripe payouts on their way to the bank), ``bank`` (asset: the organizer's bank
  account), ``bank_clearing`` (asset: SEPA files not yet settled by the bank) and
  ``disputed_funds`` (asset: money the card network holds while a dispute is open). Accounts
  are created on first use.
* A **transaction** has two or more entries of signed integer minor units (debit ``+``, credit
  ``-``) in one currency that sum to zero. ``post()`` refuses anything else, and the database
  refuses it too (CHECK constraints; on PostgreSQL a deferred constraint trigger).
* Each transaction carries a unique **idempotency key** naming the business event
  (``payment:<payment intent id>``). Posting the same key with the same content returns the
  existing transaction; with different content it raises ``IdempotencyConflict``.
* Rows are **append-only** (database triggers refuse UPDATE and DELETE); a mistake is corrected by
  ``reverse()``, a new transaction linked to the one it reverses.
* Transactions form a **hash chain**: ``hash = sha256(prev_hash + canonical content)``, and
  ``prev_hash`` is unique, so the chain cannot fork. ``verify()`` recomputes the chain and every
  balance and reports the first break.
* Each account's **cached balance** is updated in the same database transaction as its entries.

Like every service, ``post()`` flushes and never commits: the caller owns the transaction, so a
payment's state change and its ledger posting land in one commit. This module imports nothing of
``upss.web``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from .models import LedgerAccount, LedgerEntry, LedgerTransaction

GENESIS_HASH = "0" * 64
#: Key of the PostgreSQL advisory lock that serialises posting (one chain head at a time).
POSTING_LOCK_KEY = 0x0055_5053_5301

# Account names: every name is built and read here, nowhere else.
STRIPE_BALANCE = "stripe_balance"  #: asset: Stripe's available and pending balance
PAYOUTS_IN_TRANSIT = "payouts_in_transit"  #: asset: Stripe payouts on their way to the bank
BANK = "bank"  #: asset: the organizer's bank account
BANK_CLEARING = "bank_clearing"  #: asset: SEPA files sent, not yet settled by the bank
DISPUTED_FUNDS = "disputed_funds"  #: asset: what the card network holds during a dispute
COMMISSION = "commission"  #: revenue: the organizer's share
STRIPE_FEES = "stripe_fees"  #: expense: Stripe's fees
LOSSES = "losses"  #: expense: what the organizer bears of refunds and lost disputes
_ESCROW = "escrow:question:"
_PAYABLE = "payable:answerer:"
#: SQL ``LIKE`` pattern matching every answerer's payable account.
PAYABLE_ACCOUNTS_LIKE = _PAYABLE + "%"


def escrow_account(question_id: int) -> str:
    """The liability account holding a paid question's money until it is split or refunded."""
    return f"{_ESCROW}{int(question_id)}"


def payable_account(answerer_id: int) -> str:
    """The liability account of what UPSS owes answerer ``answerer_id``."""
    return f"{_PAYABLE}{int(answerer_id)}"


def answerer_of(account_name: str) -> int | None:
    """The answerer id of a payable account's name, or None for any other account."""
    if account_name.startswith(_PAYABLE) and account_name[len(_PAYABLE):].isdigit():
        return int(account_name[len(_PAYABLE):])
    return None


_ACCOUNT_TYPES = {
    STRIPE_BALANCE: "asset", PAYOUTS_IN_TRANSIT: "asset", BANK: "asset",
    BANK_CLEARING: "asset", DISPUTED_FUNDS: "asset", COMMISSION: "revenue",
    STRIPE_FEES: "expense", LOSSES: "expense",
}
_NUMBERED_ACCOUNTS = re.compile(f"(?:{re.escape(_ESCROW)}|{re.escape(_PAYABLE)})[0-9]+")


class LedgerError(Exception):
    """Base class of every refusal by the ledger."""


class InvalidEntry(LedgerError):
    """An entry is not an integer, is zero, names an unknown account or mixes currencies."""


class UnbalancedTransaction(LedgerError):
    """The entries do not sum to zero, or there are fewer than two."""


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a transaction with different content."""


def account_type(name: str) -> str:
    """The type (asset, liability, revenue, expense) of account ``name``, or InvalidEntry."""
    if name in _ACCOUNT_TYPES:
        return _ACCOUNT_TYPES[name]
    if _NUMBERED_ACCOUNTS.fullmatch(name):
        return "liability"
    raise InvalidEntry(f"unknown account {name!r}")


def _checked_entries(entries: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    checked = []
    for entry in entries:
        try:
            name, amount = entry
        except (TypeError, ValueError) as exc:
            raise InvalidEntry(f"an entry is (account, amount), not {entry!r}") from exc
        if type(amount) is not int:
            raise InvalidEntry(f"amount for {name!r} must be int minor units, not {amount!r}")
        if amount == 0:
            raise InvalidEntry(f"amount for {name!r} is zero")
        account_type(name)
        checked.append((name, amount))
    if len(checked) < 2:
        raise UnbalancedTransaction("a transaction needs at least two entries")
    total = sum(amount for _, amount in checked)
    if total != 0:
        raise UnbalancedTransaction(f"entries sum to {total}, not 0")
    return checked


def _content(key: str, description: str, currency: str, reverses_id: int | None,
             entries: Iterable[tuple[str, int]]) -> str:
    """Canonical text of a transaction: the same business content gives the same text."""
    return json.dumps(
        {
            "key": key,
            "description": description,
            "currency": currency,
            "reverses": reverses_id,
            "entries": sorted([name, amount] for name, amount in entries),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def _chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def _content_of(tx: LedgerTransaction) -> str:
    return _content(
        tx.idempotency_key, tx.description, tx.entries[0].currency if tx.entries else "",
        tx.reverses_id, [(e.account.name, e.amount_cents) for e in tx.entries],
    )


def _lock_chain_head(session: Session) -> None:
    """Serialise posting so each transaction links to the true previous one.

    PostgreSQL: a transaction-scoped advisory lock. SQLite has a single writer, and the unique
    ``prev_hash`` column turns any race into an error instead of a fork.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": POSTING_LOCK_KEY})


def _accounts(session: Session, names: set[str], currency: str) -> dict[str, LedgerAccount]:
    found = {
        a.name: a
        for a in session.scalars(select(LedgerAccount).where(LedgerAccount.name.in_(names)))
    }
    for name in names - found.keys():
        found[name] = LedgerAccount(name=name, type=account_type(name), currency=currency,
                                    balance_cents=0)
        session.add(found[name])
    for account in found.values():
        if account.currency != currency:
            raise InvalidEntry(f"account {account.name} is in {account.currency}, not {currency}")
    session.flush()
    return found


def post(session: Session, key: str, description: str, entries: Iterable[tuple[str, int]],
         currency: str, reverses: LedgerTransaction | None = None) -> LedgerTransaction:
    """Post one balanced transaction of ``(account name, signed cents)`` entries.

    Returns the new transaction, or the existing one when ``key`` was already posted with the
    same content. Flushes; the caller commits.
    """
    checked = _checked_entries(entries)
    if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
        raise InvalidEntry(f"currency must be an ISO 4217 code, not {currency!r}")
    if not key or len(key) > 255:
        raise InvalidEntry("an idempotency key of 1 to 255 characters is required")
    reverses_id = reverses.id if reverses is not None else None
    content = _content(key, description, currency, reverses_id, checked)

    _lock_chain_head(session)
    existing = posted(session, key)
    if existing is not None:
        if _content_of(existing) == content:
            return existing
        raise IdempotencyConflict(f"key {key!r} was already posted with different content")

    accounts = _accounts(session, {name for name, _ in checked}, currency)
    prev_hash = session.scalar(
        select(LedgerTransaction.hash).order_by(LedgerTransaction.id.desc()).limit(1)
    ) or GENESIS_HASH
    tx = LedgerTransaction(
        idempotency_key=key, description=description, reverses_id=reverses_id,
        prev_hash=prev_hash, hash=_chain_hash(prev_hash, content),
    )
    session.add(tx)
    session.flush()
    for name, amount in checked:
        session.add(LedgerEntry(transaction_id=tx.id, account_id=accounts[name].id,
                                amount_cents=amount, currency=currency))
        session.execute(
            update(LedgerAccount)
            .where(LedgerAccount.id == accounts[name].id)
            .values(balance_cents=LedgerAccount.balance_cents + amount)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    for account in accounts.values():
        session.expire(account, ["balance_cents"])
    session.refresh(tx, ["entries"])
    return tx


def posted(session: Session, key: str) -> LedgerTransaction | None:
    """The transaction posted under idempotency key ``key``, if any."""
    return session.scalar(select(LedgerTransaction).where(
        LedgerTransaction.idempotency_key == key))


def reverse(session: Session, original: LedgerTransaction, key: str,
            description: str) -> LedgerTransaction:
    """Post the exact opposite of ``original``, linked to it: the only way to undo a posting."""
    return post(
        session, key, description,
        [(e.account.name, -e.amount_cents) for e in original.entries],
        original.entries[0].currency, reverses=original,
    )


def balance(session: Session, name: str) -> int:
    """Cached signed balance of account ``name`` (0 if it was never used)."""
    return session.scalar(
        select(LedgerAccount.balance_cents).where(LedgerAccount.name == name)
    ) or 0


@dataclass(frozen=True)
class TrialBalanceRow:
    account: str
    type: str
    currency: str
    debit_cents: int
    credit_cents: int


def trial_balance(session: Session) -> list[TrialBalanceRow]:
    """Every account with its balance on the debit or the credit side; the sides are equal."""
    rows = []
    for account in session.scalars(select(LedgerAccount).order_by(LedgerAccount.name)):
        b = account.balance_cents
        rows.append(TrialBalanceRow(account.name, account.type, account.currency,
                                    max(b, 0), max(-b, 0)))
    return rows


@dataclass
class VerifyReport:
    transactions: int = 0
    accounts: int = 0
    #: Human-readable problems, the first break of the chain first.
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_accounts(session: Session, names: Iterable[str]) -> list[str]:
    """Check only what touches the accounts ``names``: each of their transactions is balanced,
    its hash matches its content and its link to the one before, the one after links to it
    (so it was not re-hashed in place), and each cached balance equals its entries.

    Returns the problems found (empty: all good). Cost: the accounts' own transactions, not
    the whole ledger.
    """
    accounts = {a.id: a for a in session.scalars(
        select(LedgerAccount).where(LedgerAccount.name.in_(list(names))))}
    if not accounts:
        return []
    problems = []
    tx_ids = select(LedgerEntry.transaction_id).where(
        LedgerEntry.account_id.in_(list(accounts))).distinct()
    txs = session.scalars(select(LedgerTransaction).where(LedgerTransaction.id.in_(tx_ids))
                          .order_by(LedgerTransaction.id)).all()
    entries: dict[int, list[LedgerEntry]] = {}
    for e in session.scalars(select(LedgerEntry).where(
            LedgerEntry.transaction_id.in_([t.id for t in txs])).order_by(LedgerEntry.id)):
        entries.setdefault(e.transaction_id, []).append(e)
    names_by_id = dict(session.execute(select(LedgerAccount.id, LedgerAccount.name).where(
        LedgerAccount.id.in_({e.account_id for es in entries.values() for e in es}))).all())
    hashes = [t.hash for t in txs] + [t.prev_hash for t in txs]
    by_hash = dict(session.execute(select(LedgerTransaction.hash, LedgerTransaction.id).where(
        LedgerTransaction.hash.in_(hashes))).all())
    next_of = dict(session.execute(select(LedgerTransaction.prev_hash, LedgerTransaction.id)
                                   .where(LedgerTransaction.prev_hash.in_(hashes))).all())
    head = session.scalar(select(func.max(LedgerTransaction.id)))
    for tx in txs:
        tx_entries = entries.get(tx.id, [])
        total = sum(e.amount_cents for e in tx_entries)
        if len(tx_entries) < 2 or total != 0:
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}) is unbalanced")
        content = _content(tx.idempotency_key, tx.description,
                           tx_entries[0].currency if tx_entries else "", tx.reverses_id,
                           [(names_by_id[e.account_id], e.amount_cents) for e in tx_entries])
        if tx.hash != _chain_hash(tx.prev_hash, content):
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}): content changed")
        if tx.prev_hash != GENESIS_HASH and by_hash.get(tx.prev_hash, tx.id) >= tx.id:
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}): previous hash "
                            f"matches no earlier transaction")
        if tx.id != head and tx.hash not in next_of:
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}): the next "
                            f"transaction does not link to it")
    sums = dict(session.execute(
        select(LedgerEntry.account_id, func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .where(LedgerEntry.account_id.in_(list(accounts))).group_by(LedgerEntry.account_id)
    ).all())
    for account_id, account in accounts.items():
        if account.balance_cents != int(sums.get(account_id, 0)):
            problems.append(f"account {account.name}: cached balance {account.balance_cents} "
                            f"but entries sum to {int(sums.get(account_id, 0))}")
    return problems


def verify(session: Session, batch_size: int = 1000) -> VerifyReport:
    """Recompute the hash chain, each transaction's balance and every cached balance.

    Reports the first broken link of the chain (later links are not trusted past it) and every
    account whose cached balance differs from the sum of its entries.
    """
    report = VerifyReport()
    prev_hash = GENESIS_HASH
    chain_broken = False
    last_id = 0
    names = dict(session.execute(select(LedgerAccount.id, LedgerAccount.name)).all())
    while True:
        batch = session.scalars(
            select(LedgerTransaction).where(LedgerTransaction.id > last_id)
            .order_by(LedgerTransaction.id).limit(batch_size)
        ).all()
        if not batch:
            break
        entries: dict[int, list[LedgerEntry]] = {}
        for e in session.scalars(
            select(LedgerEntry).where(LedgerEntry.transaction_id.in_([t.id for t in batch]))
            .order_by(LedgerEntry.id)
        ):
            entries.setdefault(e.transaction_id, []).append(e)
        for tx in batch:
            report.transactions += 1
            last_id = tx.id
            tx_entries = entries.get(tx.id, [])
            total = sum(e.amount_cents for e in tx_entries)
            if len(tx_entries) < 2 or total != 0:
                report.problems.append(
                    f"transaction {tx.id} ({tx.idempotency_key}) is unbalanced: "
                    f"{len(tx_entries)} entries summing to {total}"
                )
            if chain_broken:
                continue
            content = _content(
                tx.idempotency_key, tx.description,
                tx_entries[0].currency if tx_entries else "", tx.reverses_id,
                [(names[e.account_id], e.amount_cents) for e in tx_entries],
            )
            if tx.prev_hash != prev_hash:
                report.problems.insert(0, f"chain broken at transaction {tx.id} "
                                          f"({tx.idempotency_key}): previous hash differs")
                chain_broken = True
            elif tx.hash != _chain_hash(prev_hash, content):
                report.problems.insert(0, f"chain broken at transaction {tx.id} "
                                          f"({tx.idempotency_key}): content changed")
                chain_broken = True
            prev_hash = tx.hash

    sums = dict(session.execute(
        select(LedgerEntry.account_id, func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .group_by(LedgerEntry.account_id)
    ).all())
    for account in session.scalars(select(LedgerAccount).order_by(LedgerAccount.id)):
        report.accounts += 1
        actual = int(sums.get(account.id, 0))
        if account.balance_cents != actual:
            report.problems.append(
                f"account {account.name}: cached balance {account.balance_cents} "
                f"but entries sum to {actual}"
            )
    for currency, total in session.execute(
        select(LedgerAccount.currency, func.sum(LedgerAccount.balance_cents))
        .group_by(LedgerAccount.currency)
    ):
        if int(total) != 0:
            report.problems.append(f"trial balance in {currency} is off by {int(total)}")
    return report
