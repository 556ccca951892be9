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
* Transactions form a **hash chain**: ``hash = H(prev_hash + canonical content)``, and
  ``prev_hash`` is unique, so the chain cannot fork. Each transaction stores the **hash
  version** it was sealed with (``hash_version``):

  - 1 (rows written before chain v2): ``H`` is sha256; the content is the business content
    (key, description, currency, reversed transaction, sorted entries);
  - 2: sha256 over the business content plus ``created_at`` (the moment payout eligibility
    and the 30-day earnings use) and the version itself;
  - 3 (keyed): as 2, but ``H`` is HMAC-SHA256 with ``UPSS_LEDGER_HMAC_KEY``, a key kept outside
    the database, so whoever can write the tables still cannot re-hash a forged tail.

  The version is inside the hash and never goes down along the chain (``post()`` refuses to
  append an unkeyed transaction after a keyed one, and verification reports it), so old rows
  keep verifying and nobody can downgrade a new one. ``upss.ledger_check`` verifies the chain:
  a streaming full pass, and an incremental pass from the last checkpoint.
* Each account's **cached balance** is updated in the same database transaction as its entries.

Like every service, ``post()`` flushes and never commits: the caller owns the transaction, so a
payment's state change and its ledger posting land in one commit. This module imports nothing of
``upss.web``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Integer,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from .dbtypes import UTCDateTime, one_of
from .models import IncomeMark, LedgerAccount, LedgerEntry, LedgerTransaction, utcnow

GENESIS_HASH = "0" * 64
#: Hash versions (see the module docstring): the first chain, timed, timed and keyed.
HASH_V1, HASH_V2_TIMED, HASH_V3_KEYED = 1, 2, 3
#: The version ``post()`` seals with when no key is configured.
CURRENT_HASH_VERSION = HASH_V2_TIMED
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


class MissingKey(LedgerError):
    """The chain is keyed (hash version 3) but ``UPSS_LEDGER_HMAC_KEY`` is not set: posting an
    unkeyed transaction after it would downgrade the chain, and keyed rows cannot be checked."""


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
    """Canonical text of a transaction's business content (hash version 1): the same business
    content gives the same text. Idempotent re-posting compares this text."""
    return json.dumps(_business(key, description, currency, reverses_id, entries),
                      sort_keys=True, separators=(",", ":"))


def _business(key: str, description: str, currency: str, reverses_id: int | None,
              entries: Iterable[tuple[str, int]]) -> dict:
    return {
        "key": key,
        "description": description,
        "currency": currency,
        "reverses": reverses_id,
        "entries": sorted([name, amount] for name, amount in entries),
    }


def moment_text(moment: datetime) -> str:
    """The canonical text of a transaction's ``created_at`` inside the hash: UTC to the
    microsecond, e.g. ``2026-01-14T12:00:00.000000Z``."""
    if moment.tzinfo is None:
        raise InvalidEntry("a transaction's time must be an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_for(hmac_key: bytes | None) -> int:
    """The hash version a new transaction gets: keyed when there is a key."""
    return HASH_V3_KEYED if hmac_key else CURRENT_HASH_VERSION


def hash_for(prev_hash: str, key: str, description: str, currency: str,
             reverses_id: int | None, entries: Iterable[tuple[str, int]], created_at: datetime,
             version: int, hmac_key: bytes | None = None) -> str:
    """The hash of one transaction sealed with hash ``version`` after ``prev_hash``.

    Version 1 ignores ``created_at``; version 3 needs ``hmac_key`` (``MissingKey`` without).
    """
    if version == HASH_V1:
        return _chain_hash(prev_hash, _content(key, description, currency, reverses_id,
                                               entries))
    if version not in (HASH_V2_TIMED, HASH_V3_KEYED):
        raise InvalidEntry(f"unknown hash version {version!r}")
    content = dict(_business(key, description, currency, reverses_id, entries),
                   created_at=moment_text(created_at), version=version)
    message = (prev_hash + json.dumps(content, sort_keys=True, separators=(",", ":"))).encode()
    if version == HASH_V2_TIMED:
        return hashlib.sha256(message).hexdigest()
    if not hmac_key:
        raise MissingKey("this transaction is keyed: set UPSS_LEDGER_HMAC_KEY to check it")
    return hmac.new(hmac_key, message, hashlib.sha256).hexdigest()


def _chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def _content_of(tx: LedgerTransaction) -> str:
    return _content(
        tx.idempotency_key, tx.description, tx.entries[0].currency if tx.entries else "",
        tx.reverses_id, [(e.account.name, e.amount_cents) for e in tx.entries],
    )


def configured_key() -> bytes | None:
    """``UPSS_LEDGER_HMAC_KEY`` of the running app as bytes, or None (no app, or no key)."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    value = current_app.config.get("UPSS_LEDGER_HMAC_KEY")
    return value.encode() if isinstance(value, str) and value else None


def _lock_chain_head(session: Session) -> None:
    """Serialise posting so each transaction links to the true previous one.

    PostgreSQL: a transaction-scoped advisory lock. SQLite has a single writer, and the unique
    ``prev_hash`` column turns any race into an error instead of a fork.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(_ADVISORY_LOCK, {"k": POSTING_LOCK_KEY})


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_TRANSACTIONS = LedgerTransaction.__table__
_ACCOUNTS = LedgerAccount.__table__
#: Whether ``key`` was posted, and the chain's head: one read under the lock.
_HEAD = (select(select(_TRANSACTIONS.c.id)
                .where(_TRANSACTIONS.c.idempotency_key == bindparam("key"))
                .scalar_subquery(), _TRANSACTIONS.c.hash, _TRANSACTIONS.c.hash_version)
         .order_by(_TRANSACTIONS.c.id.desc()).limit(1))
_ACCOUNTS_NAMED = select(_ACCOUNTS.c.name, _ACCOUNTS.c.id, _ACCOUNTS.c.currency).where(
    _ACCOUNTS.c.name.in_(bindparam("names", expanding=True)))
_NEW_ACCOUNTS = insert(_ACCOUNTS).returning(_ACCOUNTS.c.name, _ACCOUNTS.c.id)
_NEW_TRANSACTION = insert(_TRANSACTIONS).returning(_TRANSACTIONS.c.id)
_NEW_ENTRIES = insert(LedgerEntry.__table__)
#: Each account's cached balance moves by its delta (executemany: one pipeline).
_MOVE_BALANCE = (update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("account"))
                 .values(balance_cents=_ACCOUNTS.c.balance_cents + bindparam("delta")))


def _account_ids(session: Session, names: set[str], currency: str) -> dict[str, int]:
    """Account name -> id, the missing accounts created (one INSERT … RETURNING, not the
    unit of work: most payments open a new escrow account). The balances of accounts loaded
    in the session are expired by :func:`post` after its UPDATE."""
    connection = session.connection()
    found = {}
    for name, account_id, account_currency in connection.execute(
            _ACCOUNTS_NAMED, {"names": sorted(names)}):
        if account_currency != currency:
            raise InvalidEntry(f"account {name} is in {account_currency}, not {currency}")
        found[name] = account_id
    missing = sorted(names - found.keys())
    if missing:
        for name, account_id in connection.execute(_NEW_ACCOUNTS, [
                dict(name=name, type=account_type(name), currency=currency, balance_cents=0)
                for name in missing]):
            found[name] = account_id
    return found


def post(session: Session, key: str, description: str, entries: Iterable[tuple[str, int]],
         currency: str, reverses: LedgerTransaction | None = None,
         now: datetime | None = None) -> LedgerTransaction:
    """Post one balanced transaction of ``(account name, signed cents)`` entries at ``now``
    (the caller's clock; the real time when omitted), which becomes its ``created_at``.

    Returns the new transaction, or the existing one when ``key`` was already posted with the
    same content. Flushes; the caller commits. ``MissingKey`` when the chain is already keyed
    and this app has no ``UPSS_LEDGER_HMAC_KEY``.
    """
    checked = _checked_entries(entries)
    if not (isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)):
        raise InvalidEntry(f"currency must be an ISO 4217 code, not {currency!r}")
    if not key or len(key) > 255:
        raise InvalidEntry("an idempotency key of 1 to 255 characters is required")
    reverses_id = reverses.id if reverses is not None else None
    created_at = now if now is not None else utcnow()
    moment_text(created_at)  # refuses a naive time before anything is written

    session.flush()  # what the caller changed goes first, as an ORM query would flush it
    _lock_chain_head(session)
    connection = session.connection()  # Core from here: prebuilt statements, no ORM layer
    head = connection.execute(_HEAD, {"key": key}).first()
    if head is not None and head[0] is not None:
        existing = session.get(LedgerTransaction, head[0])
        if _content_of(existing) == _content(key, description, currency, reverses_id, checked):
            return existing
        raise IdempotencyConflict(f"key {key!r} was already posted with different content")

    hmac_key = configured_key()
    version = version_for(hmac_key)
    prev_hash, prev_version = head[1:] if head is not None else (GENESIS_HASH, HASH_V1)
    if prev_version > version:
        raise MissingKey("the ledger's chain is keyed: set UPSS_LEDGER_HMAC_KEY to post")
    accounts = _account_ids(session, {name for name, _ in checked}, currency)
    values = dict(
        idempotency_key=key, description=description, reverses_id=reverses_id,
        created_at=created_at, hash_version=version, prev_hash=prev_hash,
        hash=hash_for(prev_hash, key, description, currency, reverses_id, checked, created_at,
                      version, hmac_key))
    # One INSERT … RETURNING id; the ORM object is made from what was written (persistent,
    # no read back: ``tx.entries`` loads when used).
    tx = LedgerTransaction(id=connection.execute(_NEW_TRANSACTION, values).scalar_one(),
                           **values)
    make_transient_to_detached(tx)
    session.add(tx)
    # The entries in one statement, then each account's cached balance (an account may
    # appear more than once: its deltas are added up first).
    connection.execute(_NEW_ENTRIES, [
        {"transaction_id": tx.id, "account_id": accounts[name], "amount_cents": amount,
         "currency": currency} for name, amount in checked])
    deltas: dict[int, int] = {}
    for name, amount in checked:
        deltas[accounts[name]] = deltas.get(accounts[name], 0) + amount
    connection.execute(_MOVE_BALANCE, [{"account": account_id, "delta": delta}
                                       for account_id, delta in deltas.items()])
    for account_id in accounts.values():  # those the session holds read the new balance
        account = session.identity_map.get(identity_key(LedgerAccount, account_id))
        if account is not None:
            session.expire(account, ["balance_cents"])
    if reverses_id is None:
        _mark_income(session, tx.id, created_at, checked)
    return tx


_MARKS = IncomeMark.__table__
#: An answerer's running income just before ``(at, tx)``: the total of their last earlier mark.
_TOTAL_BEFORE = func.coalesce(
    select(_MARKS.c.total_cents)
    .where(_MARKS.c.answerer_id == bindparam("answerer", type_=Integer),
           or_(_MARKS.c.created_at < bindparam("at", type_=UTCDateTime),
               and_(_MARKS.c.created_at == bindparam("at", type_=UTCDateTime),
                    _MARKS.c.transaction_id < bindparam("tx", type_=Integer))))
    .order_by(_MARKS.c.created_at.desc(), _MARKS.c.transaction_id.desc())
    .limit(1).scalar_subquery(), 0)
_MARK_INSERT = insert(_MARKS).from_select(
    ["answerer_id", "created_at", "transaction_id", "credited_cents", "total_cents"],
    select(bindparam("answerer", type_=Integer), bindparam("at", type_=UTCDateTime),
           bindparam("tx", type_=Integer), bindparam("credited", type_=BigInteger),
           bindparam("credited", type_=BigInteger) + _TOTAL_BEFORE))
#: A mark posted with an earlier time than marks already there (a caller's clock behind)
#: raises the totals after it.
_MARKS_AFTER = (
    update(_MARKS)
    .where(_MARKS.c.answerer_id == bindparam("answerer"),
           or_(_MARKS.c.created_at > bindparam("at"),
               and_(_MARKS.c.created_at == bindparam("at"),
                    _MARKS.c.transaction_id > bindparam("tx"))))
    .values(total_cents=_MARKS.c.total_cents + bindparam("credited")))


def _mark_income(session: Session, tx_id: int, created_at: datetime,
                 checked: list[tuple[str, int]]) -> None:
    """Keep the income marks (``IncomeMark``) of the answerers this transaction credits: one
    mark each, its total the one before it plus this credit, and the totals after it raised.
    Runs under the chain's lock, so marks are written one transaction at a time."""
    credited: dict[int, int] = {}
    for name, amount in checked:
        if name.startswith(_PAYABLE) and amount < 0:
            answerer_id = int(name[len(_PAYABLE):])
            credited[answerer_id] = credited.get(answerer_id, 0) - amount
    for answerer_id, cents in credited.items():
        params = {"answerer": answerer_id, "at": created_at, "tx": tx_id, "credited": cents}
        session.connection().execute(_MARK_INSERT, params)
        session.connection().execute(_MARKS_AFTER, params)


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


@dataclass
class VerifyReport:
    """What a pass over the chain found (``verify``, ``upss.ledger_check.verify_new``)."""

    transactions: int = 0
    accounts: int = 0
    #: Human-readable problems, the first break of the chain first.
    problems: list[str] = field(default_factory=list)
    #: The last transaction the pass walked, its hash and hash version.
    through_id: int | None = None
    through_hash: str = GENESIS_HASH
    through_version: int = HASH_V1
    #: Signed sum of the walked entries per account id.
    sums: dict[int, int] = field(default_factory=dict)
    #: Signed balance per ``"<account kind> <currency>"`` at ``through_id``.
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def account_kind(name: str) -> str:
    """The kind an account is summed under on the ledger page: ``escrow`` for every question's
    escrow account, ``payable`` for every answerer's, else the account's own name."""
    if name.startswith(_ESCROW):
        return "escrow"
    if name.startswith(_PAYABLE):
        return "payable"
    return name


#: The name prefix of each numbered kind of account (``account_kind``).
KIND_PREFIXES = {"escrow": _ESCROW, "payable": _PAYABLE}


def kind_type(kind: str) -> str:
    """The account type of a kind of account (``account_kind``)."""
    return "liability" if kind in KIND_PREFIXES else account_type(kind)


#: Columns of a transaction that its hash covers (with its entries).
_TX_COLUMNS = (LedgerTransaction.id, LedgerTransaction.idempotency_key,
               LedgerTransaction.description, LedgerTransaction.reverses_id,
               LedgerTransaction.created_at, LedgerTransaction.prev_hash,
               LedgerTransaction.hash, LedgerTransaction.hash_version)


def walk(conn, report: VerifyReport, head_id: int, hmac_key: bytes | None,
         batch_size: int = 5000) -> None:
    """Check every transaction after ``report.through_id`` up to ``head_id``, in id order, a
    batch at a time (memory: one batch plus one sum per account touched).

    Each must balance in one currency, link to the one before (``report.through_hash``), not
    lower the hash version, and hash to its stored hash. The first break of the chain is
    reported first and later links are not trusted past it. ``conn`` is a Session or a
    Connection; nothing is written.
    """
    chain_broken = False
    last_id = report.through_id or 0
    names: dict[int, str] = {}  # of the accounts touched lately (``NAMES_KEPT``)
    if not isinstance(conn, Connection):  # a Session
        conn = conn.connection()
    dialect = conn.dialect
    columns = _TX_COLUMNS
    raw = dialect.name == "postgresql"
    if raw:
        # PostgreSQL returns aware datetimes, which the hash turns into UTC text itself
        # (``moment_text``): no conversion is left for SQLAlchemy's rows to make.
        columns = (*_TX_COLUMNS[:4], type_coerce(LedgerTransaction.created_at, DateTime(
            timezone=True)).label("created_at"), *_TX_COLUMNS[5:])
    sums = report.sums
    while True:
        batch = _plain_rows(conn, raw, select(*columns).where(
            LedgerTransaction.id > last_id, LedgerTransaction.id <= head_id)
            .order_by(LedgerTransaction.id).limit(batch_size))
        if not batch:
            return
        legs = _plain_rows(conn, raw, select(
            LedgerEntry.transaction_id, LedgerEntry.account_id, LedgerEntry.amount_cents,
            LedgerEntry.currency)
            .where(LedgerEntry.transaction_id.between(batch[0][0], batch[-1][0]))
            .order_by(LedgerEntry.transaction_id, LedgerEntry.id))
        _learn_names(conn, dialect.name, names, {account_id for _, account_id, _, _ in legs})
        entries: dict[int, list[tuple[str, int, int, str]]] = {}
        for tx_id, account_id, amount, currency in legs:
            sums[account_id] = sums.get(account_id, 0) + amount
            entries.setdefault(tx_id, []).append((names[account_id], account_id, amount,
                                                  currency))
        for tx in batch:
            tx = _Tx(*tx)
            last_id = tx.id
            report.transactions += 1
            legs = entries.get(tx.id, [])
            total = sum(amount for _, _, amount, _ in legs)
            currencies = {currency for *_, currency in legs}
            if len(legs) < 2 or total != 0 or len(currencies) > 1:
                mixed = f" in {len(currencies)} currencies" if len(currencies) > 1 else ""
                report.problems.append(
                    f"transaction {tx.id} ({tx.idempotency_key}) is unbalanced: "
                    f"{len(legs)} entries summing to {total}{mixed}")
            if chain_broken:
                continue
            broken = _link_problem(tx, legs, report, hmac_key)
            if broken:
                report.problems.insert(0, f"chain broken at transaction {tx.id} "
                                          f"({tx.idempotency_key}): {broken}")
                chain_broken = True
            report.through_id, report.through_hash = tx.id, tx.hash
            report.through_version = max(report.through_version, tx.hash_version)


class _Tx(NamedTuple):
    id: int
    idempotency_key: str
    description: str
    reverses_id: int | None
    created_at: datetime
    prev_hash: str
    hash: str
    hash_version: int


def _plain_rows(conn: Connection, raw: bool, statement) -> list:
    """The rows of ``statement`` as tuples. ``raw`` (PostgreSQL, where none of the walk's
    columns needs converting): straight from the DBAPI cursor of the ``CursorResult``,
    without building a SQLAlchemy row for each of the ledger's million legs (that and the
    rows' conversions were about half the time of a full check)."""
    result = conn.execute(statement)
    if not raw:
        return result.all()
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


#: Account names the walk keeps at most before it starts again from the next batch's: most
#: accounts are a question's escrow or an answerer's payable, touched by a few transactions
#: close together, so memory stays bounded and few names are read twice.
NAMES_KEPT = 20_000


def _learn_names(conn, dialect_name: str, names: dict[int, str], account_ids: set[int]) -> None:
    """Add the names of ``account_ids`` not in ``names`` yet, by primary key (a join of each
    batch's entries with the accounts made PostgreSQL hash every account for every batch)."""
    if len(names) > NAMES_KEPT:
        names.clear()
    missing = sorted(account_ids - names.keys())
    for start in range(0, len(missing), 5000):
        names.update(conn.execute(select(LedgerAccount.id, LedgerAccount.name).where(
            one_of(dialect_name, LedgerAccount.id, missing[start:start + 5000]))).all())


def _link_problem(tx, legs, report: VerifyReport, hmac_key: bytes | None) -> str | None:
    """Why ``tx`` does not continue the chain at ``report``'s end, or None."""
    if tx.prev_hash != report.through_hash:
        return "previous hash differs"
    if tx.hash_version < report.through_version:
        return (f"hash version went down from {report.through_version} "
                f"to {tx.hash_version}")
    try:
        expected = hash_for(tx.prev_hash, tx.idempotency_key, tx.description,
                            legs[0][3] if legs else "", tx.reverses_id,
                            [(name, amount) for name, _, amount, _ in legs], tx.created_at,
                            tx.hash_version, hmac_key)
    except MissingKey:
        return "it is keyed and UPSS_LEDGER_HMAC_KEY is not set, so it cannot be checked"
    except InvalidEntry as exc:
        return str(exc)
    if tx.hash != expected:
        return "content changed"
    return None


def head(conn) -> int:
    """The id of the newest transaction (0 for an empty ledger)."""
    return conn.scalar(select(func.coalesce(func.max(LedgerTransaction.id), 0)))


def verify(conn, batch_size: int = 5000, hmac_key: bytes | None | bool = True) -> VerifyReport:
    """Recompute the whole hash chain, each transaction's balance and every cached balance,
    streaming (bounded memory: a batch of transactions and one integer per account).

    Reports the first broken link of the chain (later links are not trusted past it), every
    account whose cached balance differs from the sum of its entries, and a trial balance that
    does not sum to zero. ``hmac_key=True`` (the default) uses the app's configured key.
    """
    report = VerifyReport()
    walk(conn, report, head(conn), configured_key() if hmac_key is True else hmac_key,
         batch_size)
    last_id = 0
    while True:
        accounts = conn.execute(
            select(LedgerAccount.id, LedgerAccount.name, LedgerAccount.currency,
                   LedgerAccount.balance_cents)
            .where(LedgerAccount.id > last_id).order_by(LedgerAccount.id)
            .limit(batch_size)).all()
        if not accounts:
            break
        for account_id, name, currency, cached in accounts:
            last_id = account_id
            report.accounts += 1
            actual = report.sums.get(account_id, 0)
            if cached != actual:
                report.problems.append(
                    f"account {name}: cached balance {cached} but entries sum to {actual}")
            kind = f"{account_kind(name)} {currency}"
            report.totals[kind] = report.totals.get(kind, 0) + actual
    report.problems.extend(unbalanced_totals(report.totals))
    report.problems.extend(income_mark_problems(conn))
    return report


#: Every answerer's income marks (``IncomeMark``) as the ledger makes them: a row per
#: transaction crediting their payable account, not a reversal, with the running total.
INCOME_MARKS_SQL = """
SELECT answerer_id, created_at, transaction_id, credited AS credited_cents,
       SUM(credited) OVER (PARTITION BY answerer_id ORDER BY created_at, transaction_id
                           ROWS UNBOUNDED PRECEDING) AS total_cents
FROM (SELECT CAST(substr(a.name, 18) AS INTEGER) AS answerer_id, t.created_at,
             t.id AS transaction_id, -SUM(e.amount_cents) AS credited
      FROM ledger_entry e
      JOIN ledger_account a ON a.id = e.account_id
      JOIN ledger_transaction t ON t.id = e.transaction_id
      WHERE a.name LIKE 'payable:answerer:%' AND e.amount_cents < 0
        AND t.reverses_id IS NULL
      GROUP BY a.name, t.created_at, t.id) credits
"""
_MARK_COLUMNS = "answerer_id, created_at, transaction_id, credited_cents, total_cents"
#: Fill an empty ``income_mark`` from the ledger (the bench's generator; migration 0018 has
#: its own copy).
REBUILD_INCOME_MARKS = f"INSERT INTO income_mark ({_MARK_COLUMNS}) {INCOME_MARKS_SQL}"


#: The answerers whose stored marks and the ledger's differ, both ways (built of constants).
_MARK_DIFFERENCES = text(
    f"SELECT answerer_id FROM (SELECT {_MARK_COLUMNS} FROM ({INCOME_MARKS_SQL}) expected"  # noqa: S608
    f" EXCEPT SELECT {_MARK_COLUMNS} FROM income_mark) missing"
    f" UNION SELECT answerer_id FROM (SELECT {_MARK_COLUMNS} FROM income_mark"
    f" EXCEPT SELECT {_MARK_COLUMNS} FROM ({INCOME_MARKS_SQL}) expected) extra"
    " ORDER BY answerer_id LIMIT :limit")


def income_mark_problems(conn, limit: int = 50) -> list[str]:
    """A problem for each answerer whose stored income marks differ from what the ledger makes
    of them (a mark missing, extra, or with another amount or total). One pass in SQL."""
    differ = conn.execute(_MARK_DIFFERENCES, {"limit": limit}).scalars().all()
    return [f"income marks of answerer {answerer_id} differ from the ledger's credits to "
            f"{payable_account(answerer_id)}" for answerer_id in differ]


def unbalanced_totals(totals: dict[str, int]) -> list[str]:
    """A problem for each currency whose kinds' totals do not sum to zero."""
    by_currency: dict[str, int] = {}
    for kind, cents in totals.items():
        currency = kind.rsplit(" ", 1)[1]
        by_currency[currency] = by_currency.get(currency, 0) + cents
    return [f"trial balance in {currency} is off by {total}"
            for currency, total in sorted(by_currency.items()) if total != 0]


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
    by_version = dict(session.execute(select(LedgerTransaction.hash,
                                             LedgerTransaction.hash_version).where(
        LedgerTransaction.hash.in_([t.prev_hash for t in txs]))).all())
    hmac_key = configured_key()
    for tx in txs:
        tx_entries = entries.get(tx.id, [])
        total = sum(e.amount_cents for e in tx_entries)
        if len(tx_entries) < 2 or total != 0:
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}) is unbalanced")
        try:
            expected = hash_for(tx.prev_hash, tx.idempotency_key, tx.description,
                                tx_entries[0].currency, tx.reverses_id,  # found by an entry
                                [(names_by_id[e.account_id], e.amount_cents)
                                 for e in tx_entries], tx.created_at, tx.hash_version, hmac_key)
        except MissingKey as exc:
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}): {exc}")
            continue
        if tx.hash != expected:
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}): content changed")
        if tx.hash_version < by_version.get(tx.prev_hash, HASH_V1):
            problems.append(f"transaction {tx.id} ({tx.idempotency_key}): hash version "
                            f"went down")
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
