"""The double-entry ledger, on SQLite and PostgreSQL: refusals, idempotency, chain, balances."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import disable_ledger_guards, enable_ledger_guards
from upss import ledger, money
from upss.extensions import db
from upss.models import LedgerAccount, LedgerEntry, LedgerTransaction


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session
        db.session.rollback()


def pay(session, question_id=1, amount=1250, key=None):
    return ledger.post(session, key or f"payment:pi_{question_id}", "payment",
                       [("stripe_balance", amount), (f"escrow:question:{question_id}", -amount)],
                       "EUR")


@pytest.mark.parametrize("entries, error", [
    ([("stripe_balance", 100), ("escrow:question:1", -99)], ledger.UnbalancedTransaction),
    ([("stripe_balance", 100)], ledger.UnbalancedTransaction),
    ([], ledger.UnbalancedTransaction),
    ([("stripe_balance", 0), ("escrow:question:1", 0)], ledger.InvalidEntry),
    ([("stripe_balance", 1.0), ("escrow:question:1", -1.0)], ledger.InvalidEntry),
    ([("stripe_balance", Decimal(1)), ("escrow:question:1", Decimal(-1))], ledger.InvalidEntry),
    ([("stripe_balance", True), ("escrow:question:1", -1)], ledger.InvalidEntry),
    ([("stripe_balance", "100"), ("escrow:question:1", "-100")], ledger.InvalidEntry),
    ([("stripe_balance", 100), ("somewhere", -100)], ledger.InvalidEntry),
    ([("stripe_balance", 100, "x"), ("escrow:question:1", -100)], ledger.InvalidEntry),
])
def test_post_refuses_bad_transactions(session, entries, error):
    """Unbalanced, single, zero and non-integer entries and unknown accounts are refused."""
    with pytest.raises(error) as refused:
        ledger.post(session, "bad", "bad", entries, "EUR")
    if entries and len(entries[0]) == 3:  # the refusal shows what it was given
        assert str(refused.value) == (
            "an entry is (account, amount), not ('stripe_balance', 100, 'x')")
    assert session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)) == 0


def test_post_refuses_a_bad_currency_and_mixing_currencies(session):
    with pytest.raises(ledger.InvalidEntry,
                       match="^currency must be an ISO 4217 code, not 'euro'$"):
        ledger.post(session, "k", "d", [("stripe_balance", 1), ("commission", -1)], "euro")
    pay(session)
    with pytest.raises(ledger.InvalidEntry):
        ledger.post(session, "k2", "d", [("stripe_balance", 1), ("commission", -1)], "SEK")


def test_same_key_same_content_is_a_no_op(session):
    first = pay(session)
    again = pay(session)
    assert again.id == first.id
    assert session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry)) == 2
    assert ledger.balance(session, "stripe_balance") == 1250
    assert ledger.balance(session, "escrow:question:1") == -1250


def test_same_key_different_content_is_an_error(session):
    pay(session)
    with pytest.raises(ledger.IdempotencyConflict):
        pay(session, amount=1300)
    with pytest.raises(ledger.IdempotencyConflict):
        pay(session, question_id=2, key="payment:pi_1")


def test_entries_in_any_order_are_the_same_content(session):
    ledger.post(session, "k", "d", [("stripe_balance", 5), ("commission", -5)], "EUR")
    assert ledger.post(session, "k", "d", [("commission", -5), ("stripe_balance", 5)], "EUR")


def test_settle_split_and_reverse(session):
    """A settlement splits escrow exactly; a reversal is a new, linked transaction."""
    pay(session, amount=999)
    payout, commission = money.split(999, 1000)
    settle = ledger.post(session, "settle:1", "settle", [
        ("escrow:question:1", 999), ("payable:answerer:7", -payout),
        ("commission", -commission)], "EUR")
    assert ledger.balance(session, "payable:answerer:7") == -899
    assert ledger.balance(session, "commission") == -100
    reversal = ledger.reverse(session, settle, "settle:1:reversal", "reverse")
    assert reversal.reverses_id == settle.id
    assert ledger.balance(session, "escrow:question:1") == -999
    assert ledger.balance(session, "payable:answerer:7") == 0
    assert ledger.verify(session).ok


def test_a_post_opens_new_accounts_in_one_statement_and_held_accounts_see_it(session):
    """A payment into a new escrow account and a payment into one already open send as many
    statements (the new account is one INSERT, not the unit of work's flush); an account
    object the session already holds reads its new balance afterwards."""
    from tests.conftest import count_statements

    pay(session, question_id=1)
    held = session.scalars(sa.select(LedgerAccount).where(
        LedgerAccount.name == "stripe_balance")).one()
    assert held.balance_cents == 1250
    with count_statements() as new_account:
        pay(session, question_id=2, amount=700)
    with count_statements() as known_accounts:
        ledger.post(session, "top-up:2", "more", [("stripe_balance", 50),
                                                   ("escrow:question:2", -50)], "EUR")
    assert len(new_account) == len(known_accounts) + 1  # the INSERT of escrow:question:2
    assert held.balance_cents == 2000
    escrow = session.scalars(sa.select(LedgerAccount).where(
        LedgerAccount.name == "escrow:question:2")).one()
    assert (escrow.type, escrow.currency, escrow.balance_cents) == (
        ledger.account_type("escrow:question:2"), "EUR", -750)
    assert ledger.verify(session).ok


def test_trial_balance_sides_are_equal(session):
    """The totals per kind of account that verification sums sum to zero."""
    pay(session, 1, 500)
    pay(session, 2, 700)
    totals = ledger.verify(session).totals
    assert totals == {"stripe_balance EUR": 1200, "escrow EUR": -1200}


def test_ledger_rows_are_append_only_in_the_database(session):
    """The database itself refuses to change or delete posted rows."""
    pay(session)
    session.commit()
    for statement in ("UPDATE ledger_entry SET amount_cents = 1 WHERE id = 1",
                      "DELETE FROM ledger_entry WHERE id = 1",
                      "UPDATE ledger_transaction SET description = 'x' WHERE id = 1",
                      "DELETE FROM ledger_transaction WHERE id = 1"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            session.execute(sa.text(statement))
        session.rollback()


@pytest.fixture
def disable_guards(session):
    """Simulate someone with database access going around the application (the guards are
    back on after the test)."""
    yield lambda: disable_ledger_guards(session)
    session.rollback()
    enable_ledger_guards(session)


@pytest.mark.ledger_tampered
def test_verify_finds_an_amount_changed_behind_its_back(session, disable_guards):
    pay(session, 1, 1000)
    pay(session, 2, 2000)
    pay(session, 3, 3000)
    session.commit()
    assert ledger.verify(session).ok
    disable_guards()
    second = session.scalar(sa.select(LedgerTransaction).where(
        LedgerTransaction.idempotency_key == "payment:pi_2"))
    session.execute(sa.text("UPDATE ledger_entry SET amount_cents = 2500 "
                            "WHERE transaction_id = :t AND amount_cents = 2000"),
                    {"t": second.id})
    session.commit()
    report = ledger.verify(session)
    assert not report.ok
    assert report.problems[0] == (
        f"chain broken at transaction {second.id} (payment:pi_2): content changed")
    assert any("unbalanced" in p for p in report.problems)
    assert any("account stripe_balance: cached balance 6000 but entries sum to 6500" == p
               for p in report.problems)


@pytest.mark.ledger_tampered
def test_verify_finds_a_changed_description_and_a_broken_link(session, disable_guards):
    pay(session, 1)
    pay(session, 2)
    session.commit()
    disable_guards()
    session.execute(sa.text("UPDATE ledger_transaction SET description = 'edited' WHERE id = 1"))
    session.commit()
    assert ledger.verify(session).problems[0] == (
        "chain broken at transaction 1 (payment:pi_1): content changed")
    session.execute(sa.text("UPDATE ledger_transaction SET description = 'payment' WHERE id = 1"))
    session.execute(sa.text(f"UPDATE ledger_transaction SET prev_hash = '{'f' * 64}' "
                            "WHERE id = 2"))
    session.commit()
    assert ledger.verify(session).problems[0] == (
        "chain broken at transaction 2 (payment:pi_2): previous hash differs")


@pytest.mark.ledger_tampered
def test_verify_finds_a_cached_balance_that_drifted(session):
    pay(session)
    session.commit()
    session.execute(sa.text("UPDATE ledger_account SET balance_cents = 1 "
                            "WHERE name = 'stripe_balance'"))
    session.commit()
    problems = ledger.verify(session).problems
    assert "account stripe_balance: cached balance 1 but entries sum to 1250" in problems


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_refuses_an_unbalanced_transaction_at_commit(session):
    """On PostgreSQL a deferred constraint trigger checks each transaction's sum at COMMIT."""
    tx = pay(session)
    account_id = session.scalar(sa.select(LedgerAccount.id).where(
        LedgerAccount.name == "stripe_balance"))
    session.add(LedgerEntry(transaction_id=tx.id, account_id=account_id, amount_cents=1,
                            currency="EUR"))
    session.flush()
    with pytest.raises(sa.exc.DatabaseError, match="unbalanced"):
        session.commit()
    session.rollback()


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 4), st.integers(1, 10**7)),
    st.tuples(st.just("settle"), st.integers(1, 4), st.integers(0, 10_000)),
    st.tuples(st.just("refund"), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("repeat"), st.integers(0, 30), st.just(0)),
), max_size=25)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_ledger_matches_a_simple_model(session, operations):
    """Random payments, settlements, refunds and repeats: balances equal an in-memory model."""
    model: dict[str, int] = {}
    escrow: dict[int, int] = {}
    posted: list[tuple[str, list[tuple[str, int]]]] = []

    def apply(key, entries):
        ledger.post(session, key, key, entries, "EUR")
        for name, amount in entries:
            model[name] = model.get(name, 0) + amount
        posted.append((key, entries))

    for n, (kind, q, value) in enumerate(operations):
        if kind == "pay" and q not in escrow:
            escrow[q] = value
            apply(f"pay:{q}", [("stripe_balance", value), (f"escrow:question:{q}", -value)])
        elif kind == "settle" and escrow.get(q):
            payout, commission = money.split(escrow[q], value)
            entries = [(f"escrow:question:{q}", escrow[q]), (f"payable:answerer:{q}", -payout),
                       ("commission", -commission)]
            apply(f"settle:{q}:{n}", [e for e in entries if e[1]])
            escrow[q] = 0
        elif kind == "refund" and escrow.get(q):
            apply(f"refund:{q}:{n}", [(f"escrow:question:{q}", escrow[q]),
                                      ("stripe_balance", -escrow[q])])
            escrow[q] = 0
        elif kind == "repeat" and posted:
            key, entries = posted[q % len(posted)]
            ledger.post(session, key, key, entries, "EUR")  # a no-op

    for name, expected in model.items():
        assert ledger.balance(session, name) == expected
    for q, held in escrow.items():
        assert ledger.balance(session, f"escrow:question:{q}") == -held
    assert session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)) == len(
        posted)
    assert ledger.verify(session).ok
    session.rollback()
