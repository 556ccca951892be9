"""The ledger's idempotency-key bounds and its hash formats (versions 1, 2 and keyed 3), pinned
to literal values so that planted bugs (a changed bound, field order or separator) cannot slip
past; and what each version lets verification detect (backdating, a re-hashed tail)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from upss import ledger
from upss.extensions import db
from upss.models import LedgerAccount, LedgerEntry, LedgerTransaction

ENTRIES = [("stripe_balance", 1250), ("escrow:question:1", -1250)]


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session
        db.session.rollback()


def transactions(session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction))


# --- Idempotency keys: 1 to 255 characters ---------------------------------------------------

@pytest.mark.parametrize("key", ["", None], ids=["empty", "none"])
def test_a_missing_idempotency_key_is_refused(session, key):
    with pytest.raises(ledger.InvalidEntry,
                       match="^an idempotency key of 1 to 255 characters is required$"):
        ledger.post(session, key, "payment", ENTRIES, "EUR")
    assert transactions(session) == 0


def test_a_256_character_idempotency_key_is_refused(session):
    with pytest.raises(ledger.InvalidEntry,
                       match="^an idempotency key of 1 to 255 characters is required$"):
        ledger.post(session, "k" * 256, "payment", ENTRIES, "EUR")
    assert transactions(session) == 0


@pytest.mark.parametrize("length", [1, 255])
def test_idempotency_keys_of_1_and_255_characters_are_accepted(session, length):
    key = "k" * length
    tx = ledger.post(session, key, "payment", ENTRIES, "EUR")
    session.commit()
    assert ledger.posted(session, key).id == tx.id
    assert ledger.post(session, key, "payment", ENTRIES, "EUR").id == tx.id  # still idempotent
    assert transactions(session) == 1


# --- Hash version 1: the first chain (rows written before chain v2 keep verifying) ----------

GENESIS = "0" * 64
MOMENT = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
#: The canonical content of the first transaction below, written out by hand as the module
#: docstring describes it: JSON with sorted keys, no spaces, ASCII escapes, entries sorted.
FIRST_CONTENT = ('{"currency":"EUR","description":"Betaling for sp\\u00f8rsm\\u00e5l 1",'
                 '"entries":[["escrow:question:1",-1250],["stripe_balance",1250]],'
                 '"key":"payment:pi_pinned","reverses":null}')
FIRST_HASH = "baf5b9505f82d931fa59fee7c1d01ef8626d44dce7a31ba4d84a0302e40792aa"
SECOND_CONTENT = ('{"currency":"EUR","description":"Reversed",'
                  '"entries":[["escrow:question:1",1250],["stripe_balance",-1250]],'
                  '"key":"payment:pi_pinned:reversal","reverses":1}')
SECOND_HASH = "b05b6b92845c9799e336108205f10e4a74ee56b6605c37fb806e4b4f3d8c4646"


def test_the_documented_version_1_format_gives_the_pinned_hashes():
    """sha256 of the previous hash followed by the canonical content, as hex."""
    assert hashlib.sha256((GENESIS + FIRST_CONTENT).encode()).hexdigest() == FIRST_HASH
    assert hashlib.sha256((FIRST_HASH + SECOND_CONTENT).encode()).hexdigest() == SECOND_HASH
    assert ledger.hash_for(GENESIS, "payment:pi_pinned", "Betaling for spørsmål 1", "EUR", None,
                           ENTRIES, MOMENT, 1) == FIRST_HASH


def insert_version_1_chain(session) -> None:
    """Two transactions as the first chain wrote them: version 1, ``created_at`` outside."""
    bank = LedgerAccount(name="stripe_balance", type="asset", currency="EUR", balance_cents=0)
    escrow = LedgerAccount(name="escrow:question:1", type="liability", currency="EUR",
                           balance_cents=0)
    reverses = None
    for key, description, prev, hash_, sign in (
            ("payment:pi_pinned", "Betaling for spørsmål 1", GENESIS, FIRST_HASH, 1),
            ("payment:pi_pinned:reversal", "Reversed", FIRST_HASH, SECOND_HASH, -1)):
        tx = LedgerTransaction(
            idempotency_key=key, description=description, reverses_id=reverses,
            created_at=MOMENT, prev_hash=prev, hash=hash_, hash_version=1,
            entries=[LedgerEntry(account=bank, amount_cents=sign * 1250, currency="EUR"),
                     LedgerEntry(account=escrow, amount_cents=-sign * 1250, currency="EUR")])
        session.add(tx)
        session.flush()
        assert tx.id == (1 if reverses is None else 2)  # the pinned content names id 1
        reverses = tx.id
    session.commit()


def test_version_1_transactions_still_verify_and_new_ones_continue_the_chain(session):
    insert_version_1_chain(session)
    assert ledger.verify(session).ok
    third = ledger.post(session, "payment:pi_3", "payment", ENTRIES, "EUR", now=MOMENT)
    session.commit()
    assert (third.prev_hash, third.hash_version) == (SECOND_HASH, ledger.CURRENT_HASH_VERSION)
    report = ledger.verify(session)
    assert report.ok, report.problems
    assert report.transactions == 3


# --- Hash version 2: the time is inside the hash ---------------------------------------------

#: Version 2 content: version 1's fields plus ``created_at`` (UTC, microseconds) and ``version``.
V2_CONTENT = ('{"created_at":"2026-01-14T12:00:00.000000Z","currency":"EUR",'
              '"description":"Betaling for sp\\u00f8rsm\\u00e5l 1",'
              '"entries":[["escrow:question:1",-1250],["stripe_balance",1250]],'
              '"key":"payment:pi_pinned","reverses":null,"version":2}')
V2_HASH = "465ed4c24fa33dce0acef921f1b24ac4cd733389ad223e191edb5255b0f26d76"
KEY = b"a key kept outside the database"
V3_CONTENT = V2_CONTENT.replace('"version":2', '"version":3')


def test_version_2_and_3_hashes_follow_the_documented_format():
    assert hashlib.sha256((GENESIS + V2_CONTENT).encode()).hexdigest() == V2_HASH
    assert ledger.hash_for(GENESIS, "payment:pi_pinned", "Betaling for spørsmål 1", "EUR", None,
                           ENTRIES, MOMENT, 2) == V2_HASH
    assert ledger.hash_for(GENESIS, "payment:pi_pinned", "Betaling for spørsmål 1", "EUR", None,
                           ENTRIES, MOMENT, 3, KEY) == hmac.new(
        KEY, (GENESIS + V3_CONTENT).encode(), hashlib.sha256).hexdigest()
    with pytest.raises(ledger.MissingKey):
        ledger.hash_for(GENESIS, "k", "d", "EUR", None, ENTRIES, MOMENT, 3)


def test_a_new_transaction_is_version_2_with_the_callers_time_and_the_pinned_hash(session):
    tx = ledger.post(session, "payment:pi_pinned", "Betaling for spørsmål 1", ENTRIES, "EUR",
                     now=MOMENT)
    session.commit()
    session.expire_all()
    tx = session.get(LedgerTransaction, tx.id)
    assert (tx.created_at, tx.hash_version, tx.hash) == (MOMENT, 2, V2_HASH)


def without_guards(session):
    """Switch the append-only triggers off for this transaction (as someone with the
    database's owner rights could); SQLite's copy is the test's own, so they are dropped."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL session_replication_role = replica"))
    else:
        session.execute(sa.text("DROP TRIGGER IF EXISTS ledger_transaction_no_update"))


@pytest.mark.ledger_tampered
def test_backdating_a_transaction_breaks_the_chain(session):
    """Payout eligibility reads created_at: moving it 30 days back is detected."""
    for n in (1, 2):
        ledger.post(session, f"payment:pi_{n}", "payment",
                    [("stripe_balance", 100), (f"escrow:question:{n}", -100)], "EUR", now=MOMENT)
    session.commit()
    assert ledger.verify(session).ok
    without_guards(session)
    session.execute(sa.update(LedgerTransaction).where(LedgerTransaction.id == 1)
                    .values(created_at=MOMENT - timedelta(days=30)))
    session.commit()
    report = ledger.verify(session)
    assert report.problems[0] == ("chain broken at transaction 1 (payment:pi_1): "
                                  "content changed")


@pytest.mark.ledger_tampered
def test_with_the_key_a_rehashed_tail_is_detected(app, session):
    """Rewriting the last transaction and re-hashing it (sha256, the public recipe) does not
    pass: the chain is keyed, and the version may not go down."""
    app.config["UPSS_LEDGER_HMAC_KEY"] = KEY.decode()
    first = ledger.post(session, "payment:pi_1", "payment", ENTRIES, "EUR", now=MOMENT)
    last = ledger.post(session, "payment:pi_2", "payment",
                       [("stripe_balance", 300), ("escrow:question:2", -300)], "EUR", now=MOMENT)
    session.commit()
    assert (first.hash_version, last.hash_version) == (3, 3)
    assert ledger.verify(session).ok
    forged_time = MOMENT - timedelta(days=30)
    for version, forged in (
            (3, ledger.hash_for(first.hash, "payment:pi_2", "payment", "EUR", None,
                                [("stripe_balance", 300), ("escrow:question:2", -300)],
                                forged_time, 3, b"a guessed key")),
            (2, ledger.hash_for(first.hash, "payment:pi_2", "payment", "EUR", None,
                                [("stripe_balance", 300), ("escrow:question:2", -300)],
                                forged_time, 2))):
        without_guards(session)
        session.execute(sa.update(LedgerTransaction).where(LedgerTransaction.id == last.id)
                        .values(created_at=forged_time, hash=forged, hash_version=version))
        session.commit()
        problem = ledger.verify(session).problems[0]
        assert problem.startswith(f"chain broken at transaction {last.id} (payment:pi_2): ")
        assert problem.endswith("content changed" if version == 3
                                else "hash version went down from 3 to 2")
        # The check before a payout batch (only the accounts it pays from) sees it too.
        assert ledger.verify_accounts(session, ["escrow:question:2"]) == [
            f"transaction {last.id} (payment:pi_2): content changed" if version == 3
            else f"transaction {last.id} (payment:pi_2): hash version went down"]


@pytest.mark.ledger_tampered
def test_without_the_key_a_keyed_chain_is_neither_extended_nor_passed(app, session):
    app.config["UPSS_LEDGER_HMAC_KEY"] = KEY.decode()
    first = ledger.post(session, "payment:pi_1", "payment", ENTRIES, "EUR", now=MOMENT)
    second = ledger.post(session, "payment:pi_2", "payment",
                         [("stripe_balance", 300), ("escrow:question:2", -300)], "EUR",
                         now=MOMENT)
    session.commit()
    app.config["UPSS_LEDGER_HMAC_KEY"] = None
    with pytest.raises(ledger.MissingKey,
                       match="^the ledger's chain is keyed: set UPSS_LEDGER_HMAC_KEY to post$"):
        ledger.post(session, "payment:pi_3", "payment", ENTRIES[::-1], "EUR", now=MOMENT)
    session.rollback()
    assert "UPSS_LEDGER_HMAC_KEY is not set" in ledger.verify(session).problems[0]
    # Checking some accounts names every keyed transaction it cannot check, not the first.
    cannot = "this transaction is keyed: set UPSS_LEDGER_HMAC_KEY to check it"
    assert ledger.verify_accounts(session, ["stripe_balance"]) == [
        f"transaction {first.id} (payment:pi_1): {cannot}",
        f"transaction {second.id} (payment:pi_2): {cannot}"]


@pytest.mark.ledger_tampered
def test_an_account_with_a_balance_and_no_entries_is_found(session):
    """A cached balance put on an account that no transaction ever touched."""
    without_guards(session)
    session.add(LedgerAccount(name="payable:answerer:99", type="liability", currency="EUR",
                              balance_cents=-500))
    session.commit()
    assert ledger.verify_accounts(session, ["payable:answerer:99"]) == [
        "account payable:answerer:99: cached balance -500 but entries sum to 0"]


def test_a_naive_time_is_refused(session):
    with pytest.raises(ledger.InvalidEntry,
                       match="^a transaction's time must be an aware datetime$"):
        ledger.post(session, "payment:pi_1", "payment", ENTRIES, "EUR",
                    now=datetime(2026, 1, 14, 12, 0))
    assert transactions(session) == 0
