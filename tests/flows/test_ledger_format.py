"""The ledger's idempotency-key bounds and its hash format, pinned to literal values so that
planted bugs (a changed bound, field order or separator) cannot slip past."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.flows.test_release_rules import posted_at
from upss import ledger
from upss.extensions import db
from upss.models import LedgerTransaction

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
    with pytest.raises(ledger.InvalidEntry, match="idempotency key"):
        ledger.post(session, key, "payment", ENTRIES, "EUR")
    assert transactions(session) == 0


def test_a_256_character_idempotency_key_is_refused(session):
    with pytest.raises(ledger.InvalidEntry, match="idempotency key"):
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


# --- The hash format -------------------------------------------------------------------------

GENESIS = "0" * 64
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


def post_pinned(session) -> LedgerTransaction:
    """The pinned transaction, posted at a fixed moment into an empty ledger."""
    with posted_at(datetime(2026, 1, 14, 12, 0, tzinfo=UTC)):
        tx = ledger.post(session, "payment:pi_pinned", "Betaling for spørsmål 1", ENTRIES, "EUR")
        session.commit()
    return tx


def test_the_documented_format_gives_the_pinned_hashes():
    """sha256 of the previous hash followed by the canonical content, as hex."""
    assert hashlib.sha256((GENESIS + FIRST_CONTENT).encode()).hexdigest() == FIRST_HASH
    assert hashlib.sha256((FIRST_HASH + SECOND_CONTENT).encode()).hexdigest() == SECOND_HASH


def test_the_first_transaction_has_the_pinned_hash(session):
    tx = post_pinned(session)
    assert (tx.id, tx.prev_hash, tx.hash) == (1, GENESIS, FIRST_HASH)


def test_a_reversal_links_to_the_pinned_hash_and_has_its_own(session):
    first = post_pinned(session)
    second = ledger.reverse(session, first, "payment:pi_pinned:reversal", "Reversed")
    session.commit()
    assert (second.reverses_id, second.prev_hash, second.hash) == (1, FIRST_HASH, SECOND_HASH)
    assert ledger.verify(session).ok
