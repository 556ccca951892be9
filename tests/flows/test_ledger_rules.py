"""The ledger pinned to whole results: reversals, the trial balance and verify()'s reports."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import count_statements, disable_ledger_guards, enable_ledger_guards
from upss import ledger
from upss.extensions import db
from upss.models import LedgerTransaction


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session
        db.session.rollback()


@pytest.fixture
def tamper(session):
    """Go around the append-only guards like someone with database access; back on after."""
    disable_ledger_guards(session)
    yield lambda sql, **params: session.execute(sa.text(sql), params)
    session.rollback()
    enable_ledger_guards(session)


def pay(session, question_id: int, amount: int) -> LedgerTransaction:
    return ledger.post(session, f"payment:pi_{question_id}", f"Payment for question {question_id}",
                       [("stripe_balance", amount), (f"escrow:question:{question_id}", -amount)],
                       "EUR")


def chain(session) -> dict[str, LedgerTransaction]:
    """Four transactions, the last a reversal of the second: payment, payment, settlement,
    reversal."""
    txs = {"pay1": pay(session, 1, 1000), "pay2": pay(session, 2, 2000)}
    txs["settle"] = ledger.post(session, "settle:question:1", "Settlement of question 1",
                                [("escrow:question:1", 1000), ("payable:answerer:7", -900),
                                 ("commission", -100)], "EUR")
    txs["undo"] = ledger.reverse(session, txs["pay2"], "payment:pi_2:reversal", "Undo 2")
    session.commit()
    return txs


def test_a_reversal_posted_again_under_its_key_is_the_same_transaction(session):
    """Reversing twice with the same key is a no-op: the stored reversal, link included, is
    the same content."""
    first = pay(session, 1, 1250)
    reversal = ledger.reverse(session, first, "payment:pi_1:reversal", "Undo")
    again = ledger.reverse(session, first, "payment:pi_1:reversal", "Undo")
    assert (again.id, again.reverses_id) == (reversal.id, first.id)
    assert session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)) == 2
    assert ledger.balance(session, "stripe_balance") == 0


def test_the_totals_sum_each_kind_of_account_with_its_currency(session):
    """One total per fixed account and one for all escrow and all payable accounts, in signed
    cents; each kind has its account type."""
    ledger.post(session, "k1", "d", [("stripe_balance", 1000), ("escrow:question:3", -1000)],
                "EUR")
    ledger.post(session, "k2", "d", [("escrow:question:3", 1000), ("payable:answerer:9", -850),
                                     ("commission", -100), ("stripe_fees", -50)], "EUR")
    ledger.post(session, "k3", "d", [("payable:answerer:9", 850), ("bank_clearing", -850)],
                "EUR")
    ledger.post(session, "k4", "d", [("losses", 30), ("disputed_funds", 20), ("bank", 5),
                                     ("payouts_in_transit", -55), ("escrow:question:4", 7),
                                     ("payable:answerer:2", -7)], "EUR")
    assert ledger.verify(session).totals == {
        "bank EUR": 5, "bank_clearing EUR": -850, "commission EUR": -100,
        "disputed_funds EUR": 20, "escrow EUR": 7, "losses EUR": 30, "payable EUR": -7,
        "payouts_in_transit EUR": -55, "stripe_balance EUR": 1000, "stripe_fees EUR": -50,
    }
    assert [ledger.kind_type(k) for k in ("escrow", "payable", "bank", "commission",
                                          "losses")] == [
        "liability", "liability", "asset", "revenue", "expense"]


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_verify_counts_a_clean_chain_with_a_reversal_in_any_batch_size(session, batch_size):
    chain(session)
    report = ledger.verify(session, batch_size=batch_size)
    assert (report.transactions, report.accounts, report.problems) == (4, 5, [])
    assert ledger.verify_accounts(session, ["stripe_balance", "payable:answerer:7"]) == []


def walk_in_batches_of_one(session) -> tuple[ledger.VerifyReport, list[str]]:
    """``ledger.walk`` over the whole chain a transaction at a time: its report, and the
    statements that read accounts' names."""
    report = ledger.VerifyReport()
    with count_statements() as seen:
        ledger.walk(session, report, ledger.head(session), None, batch_size=1)
    return report, [s for s in seen if "ledger_account" in s]


def test_the_walk_reads_each_accounts_name_once_by_its_id(session):
    """Batches of one over the four transactions of five accounts: the accounts' names are
    read by id, and only for accounts no batch before touched (three reads: the second
    payment touches a new escrow account, the reversal nothing new); the entries are never
    joined with all the accounts."""
    chain(session)
    report, names = walk_in_batches_of_one(session)
    assert (report.transactions, report.problems) == (4, [])
    assert len(names) == 3, names
    assert all(s.startswith("SELECT ledger_account.id, ledger_account.name FROM ledger_account "
                            "WHERE ledger_account.id") for s in names), names


def test_the_walk_keeps_a_bounded_number_of_names(session, monkeypatch):
    """Past ``NAMES_KEPT`` names the walk starts again: with room for two, the settlement's
    three accounts are read after the two payments' three, and the reversal's two again;
    the result is the same."""
    chain(session)
    monkeypatch.setattr(ledger, "NAMES_KEPT", 2)
    report, names = walk_in_batches_of_one(session)
    assert (report.transactions, report.problems, len(names)) == (4, [], 4)


def test_verify_accounts_of_accounts_never_used_finds_nothing(session):
    chain(session)
    assert ledger.verify_accounts(session, ["payable:answerer:999"]) == []


@pytest.mark.ledger_tampered
def test_verify_finds_a_reversal_relinked_to_another_transaction(session, tamper):
    """The reversal's link is part of its hashed content: pointing it elsewhere is found by
    both checks."""
    txs = chain(session)
    undo = txs["undo"]
    tamper("UPDATE ledger_transaction SET reverses_id = :other WHERE id = :id",
           other=txs["pay1"].id, id=undo.id)
    session.commit()
    changed = f"transaction {undo.id} (payment:pi_2:reversal): content changed"
    assert ledger.verify(session).problems == [
        f"chain broken at transaction {undo.id} (payment:pi_2:reversal): content changed"]
    assert ledger.verify_accounts(session, ["escrow:question:2"]) == [changed]


@pytest.mark.ledger_tampered
def test_a_key_whose_entries_were_moved_away_is_a_conflict_not_a_crash(session, tamper):
    """A transaction left without entries (moved to another one behind the ledger's back):
    posting its key again is an IdempotencyConflict, and verify() names both transactions."""
    txs = chain(session)
    pay1, pay2 = txs["pay1"].id, txs["pay2"].id
    tamper("UPDATE ledger_entry SET transaction_id = :to WHERE transaction_id = :id",
           to=pay2, id=pay1)
    session.commit()
    with pytest.raises(ledger.IdempotencyConflict, match="payment:pi_1"):
        pay(session, 1, 1000)
    assert ledger.verify(session).problems == [
        f"chain broken at transaction {pay1} (payment:pi_1): content changed",
        f"transaction {pay1} (payment:pi_1) is unbalanced: 0 entries summing to 0",
    ]
    assert ledger.verify_accounts(session, ["stripe_balance"]) == [
        f"transaction {pay2} (payment:pi_2): content changed"]


@pytest.mark.ledger_tampered
def test_verify_reports_every_problem_of_a_changed_amount(session, tamper):
    """An entry changed behind the ledger's back: the chain breaks there, its transaction is
    unbalanced, the cached balance differs from the entries, and so do the answerer's income
    marks; a cached balance "fixed" by hand elsewhere differs too, and puts the trial balance
    off."""
    txs = chain(session)
    settle = txs["settle"].id
    tamper("UPDATE ledger_entry SET amount_cents = -950 WHERE transaction_id = :t "
           "AND amount_cents = -900", t=settle)
    tamper("UPDATE ledger_account SET balance_cents = 1830 WHERE name = 'stripe_balance'")
    session.commit()
    assert ledger.verify(session, batch_size=2).problems == [
        f"chain broken at transaction {settle} (settle:question:1): content changed",
        f"transaction {settle} (settle:question:1) is unbalanced: 3 entries summing to -50",
        "account stripe_balance: cached balance 1830 but entries sum to 1000",
        "account payable:answerer:7: cached balance -900 but entries sum to -950",
        "trial balance in EUR is off by -50",
        "income marks of answerer 7 differ from the ledger's credits to payable:answerer:7",
    ]
    problems = ledger.verify_accounts(session, ["payable:answerer:7", "stripe_balance"])
    assert problems[:2] == [f"transaction {settle} (settle:question:1) is unbalanced",
                            f"transaction {settle} (settle:question:1): content changed"]
    assert sorted(problems[2:]) == [
        "account payable:answerer:7: cached balance -900 but entries sum to -950",
        "account stripe_balance: cached balance 1830 but entries sum to 1000"]


@pytest.mark.ledger_tampered
def test_verify_accounts_finds_a_transaction_re_hashed_in_place(session, tamper):
    """A description changed and its hash recomputed: the hash matches its content, but the
    next transaction no longer links to it."""
    txs = chain(session)
    settle = txs["settle"]
    rehashed = ledger.hash_for(settle.prev_hash, "settle:question:1", "edited", "EUR", None,
                               [("escrow:question:1", 1000), ("payable:answerer:7", -900),
                                ("commission", -100)], settle.created_at, settle.hash_version)
    tamper("UPDATE ledger_transaction SET description = 'edited', hash = :h WHERE id = :id",
           h=rehashed, id=settle.id)
    session.commit()
    assert ledger.verify_accounts(session, ["payable:answerer:7"]) == [
        f"transaction {settle.id} (settle:question:1): the next transaction does not link "
        f"to it"]
    undo = txs["undo"].id
    assert ledger.verify(session).problems == [
        f"chain broken at transaction {undo} (payment:pi_2:reversal): previous hash differs"]


@pytest.mark.ledger_tampered
def test_verify_accounts_finds_a_link_to_no_earlier_transaction(session, tamper):
    """A transaction whose previous hash was changed: its hash no longer matches, its link
    points nowhere, and the one before it has nothing linking to it."""
    txs = chain(session)
    pay1, pay2 = txs["pay1"].id, txs["pay2"].id
    tamper("UPDATE ledger_transaction SET prev_hash = :h WHERE id = :id", h="f" * 64, id=pay2)
    session.commit()
    assert ledger.verify_accounts(session, ["stripe_balance"]) == [
        f"transaction {pay1} (payment:pi_1): the next transaction does not link to it",
        f"transaction {pay2} (payment:pi_2): content changed",
        f"transaction {pay2} (payment:pi_2): previous hash matches no earlier transaction",
    ]
    # A link to a later transaction is no better than a link to none.
    tamper("UPDATE ledger_transaction SET prev_hash = :h WHERE id = :id",
           h=txs["undo"].hash, id=pay2)
    session.commit()
    assert (f"transaction {pay2} (payment:pi_2): previous hash matches no earlier transaction"
            in ledger.verify_accounts(session, ["stripe_balance"]))


@pytest.mark.ledger_tampered
def test_entries_moved_to_another_account_change_their_transactions(session, tamper):
    """Every entry of one account moved to another: both transactions' content changed, and
    the emptied account is checked as holding nothing."""
    txs = chain(session)
    tamper("UPDATE ledger_entry SET account_id = (SELECT id FROM ledger_account WHERE name = "
           "'stripe_balance') WHERE account_id = (SELECT id FROM ledger_account WHERE name = "
           "'escrow:question:2')")
    session.commit()
    assert ledger.verify_accounts(session, ["escrow:question:2", "stripe_balance"]) == [
        f"transaction {txs['pay2'].id} (payment:pi_2): content changed",
        f"transaction {txs['undo'].id} (payment:pi_2:reversal): content changed"]
