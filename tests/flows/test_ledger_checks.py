"""Checking the ledger in the background (``upss.ledger_check``): the incremental check from a
checkpoint finds changes after it and the full check those before it; neither the check of
what is new nor the organizer's ledger pages grow with the ledger; statements and the open
accounts come a page at a time, every row exactly once."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import count_statements, csrf_token, sign_in_as
from upss import ledger, ledger_check, statements
from upss.extensions import db
from upss.models import LedgerAccount, LedgerCheck, LedgerTransaction

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session
        db.session.rollback()


def pay(session, n: int, cents: int = 1000, settle: bool = False) -> None:
    """A payment into question ``n``'s escrow, and optionally its split to answerer ``n % 3``."""
    ledger.post(session, f"payment:{n}", "payment",
                [(ledger.STRIPE_BALANCE, cents), (ledger.escrow_account(n), -cents)], "EUR",
                now=NOW)
    if settle:
        ledger.post(session, f"settle:{n}", "settle",
                    [(ledger.escrow_account(n), cents), (ledger.payable_account(n % 3), -900),
                     (ledger.COMMISSION, 900 - cents)], "EUR", now=NOW)


def post_many(session, first: int, count: int, settle: bool = False) -> None:
    for n in range(first, first + count):
        pay(session, n, settle=settle)
    session.commit()


def check(session, kind: str) -> ledger.VerifyReport:
    _, report = ledger_check.check_now(session, kind, NOW)
    session.commit()
    return report


def tamper(session, sql: str, **params) -> None:
    """Change ledger rows behind its back, with the append-only triggers out of the way."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(sa.text("SET LOCAL session_replication_role = replica"))
    else:
        for table in ("ledger_transaction", "ledger_entry"):
            session.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
    session.execute(sa.text(sql), params)
    session.commit()


# --- what each check finds ---------------------------------------------------------------------

@pytest.mark.ledger_tampered
def test_the_incremental_check_finds_a_change_made_after_the_checkpoint(session):
    post_many(session, 1, 3)
    assert check(session, "full").ok
    post_many(session, 4, 2)
    tamper(session, "UPDATE ledger_transaction SET description = 'changed' WHERE id = 5")
    report = check(session, "new")
    assert report.transactions == 2  # only what came after the checkpoint was read
    assert report.problems[0] == "chain broken at transaction 5 (payment:5): content changed"
    # A failed check is recorded but is not the checkpoint: the next one starts where it did.
    assert ledger_check.checkpoint(session).through_transaction_id == 3


@pytest.mark.ledger_tampered
def test_a_change_before_the_checkpoint_is_left_to_the_full_check_which_finds_it(session):
    post_many(session, 1, 3)
    assert check(session, "full").ok
    tamper(session, "UPDATE ledger_transaction SET description = 'changed' WHERE id = 2")
    post_many(session, 4, 1)
    assert check(session, "new").ok  # by design: it reads only transaction 4
    report = check(session, "full")
    assert report.problems[0] == "chain broken at transaction 2 (payment:2): content changed"


@pytest.mark.ledger_tampered
def test_the_incremental_check_finds_a_cached_balance_that_new_entries_do_not_explain(session):
    post_many(session, 1, 2)
    assert check(session, "full").ok
    post_many(session, 3, 1)
    tamper(session, "UPDATE ledger_account SET balance_cents = balance_cents + 5 "
                    "WHERE name = 'stripe_balance'")
    report = check(session, "new")
    assert report.problems == [
        "account stripe_balance: cached balance 3005 but the last check's 2000 and the new "
        "entries make 3000"]


@pytest.mark.ledger_tampered
def test_the_incremental_check_finds_its_checkpoint_rewritten(session):
    post_many(session, 1, 2)
    assert check(session, "full").ok
    tamper(session, "UPDATE ledger_transaction SET hash = :h WHERE id = 2", h="f" * 64)
    post_many(session, 3, 1)
    problem = check(session, "new").problems[0]
    assert problem.startswith("transaction 2 changed or went missing since the check of ")


def test_incremental_totals_and_balances_equal_a_full_check(session):
    """Checkpoint totals carried forward by incremental checks equal a full recount, and so do
    the stored verified balances."""
    post_many(session, 1, 4, settle=True)
    assert check(session, "new").ok  # no checkpoint yet: a full check
    post_many(session, 5, 3, settle=True)
    assert check(session, "new").ok
    post_many(session, 8, 2)
    incremental = check(session, "new")
    full = ledger.verify(session)
    assert incremental.ok and full.ok
    assert incremental.totals == full.totals
    stored = dict(session.execute(sa.text(
        "SELECT account_id, balance_cents FROM ledger_verified_balance")).all())
    cached = dict(session.execute(sa.select(LedgerAccount.id, LedgerAccount.balance_cents)).all())
    assert stored == cached


def test_the_check_of_what_is_new_costs_the_same_on_a_small_and_a_large_ledger(session):
    """Same new transactions (3, same accounts) after a checkpoint of 2 or of 150."""
    counts = []
    for before in (2, 150):
        session.execute(sa.delete(LedgerCheck))
        session.commit()
        base = 1000 * before
        post_many(session, base, before)
        assert check(session, "full").ok
        post_many(session, base + before, 3)
        with count_statements() as seen:
            report = check(session, "new")
        assert report.ok and report.transactions == 3
        counts.append(len(seen))
    assert counts[0] == counts[1]


def test_the_job_checks_what_is_new_runs_requested_checks_and_idles(app, world, session):
    organizer = world.user("organizer")
    assert ledger_check.run(session, NOW) == 0  # an empty ledger: nothing to check
    post_many(session, 1, 2)
    assert ledger_check.run(session, NOW) == "full check: 2 transactions, ok"
    assert ledger_check.run(session, NOW) == 0  # nothing new
    post_many(session, 3, 1)
    assert ledger_check.run(session, NOW) == "new check: 1 transactions, ok"
    from upss.models import User
    ledger_check.request_check(session, session.get(User, organizer), "full", NOW)
    with pytest.raises(ledger_check.CheckAlreadyWaiting):
        ledger_check.request_check(session, session.get(User, organizer), "new", NOW)
    assert ledger_check.run(session, NOW) == "full check: 3 transactions, ok"


@pytest.mark.ledger_tampered
def test_after_a_failed_check_the_job_waits_an_hour_before_reading_again(session):
    post_many(session, 1, 2)
    tamper(session, "UPDATE ledger_transaction SET description = 'x' WHERE id = 2")
    assert ledger_check.run(session, NOW) == "full check: 2 transactions, 1 problems"
    session.commit()
    assert ledger_check.run(session, NOW + timedelta(minutes=59)) == 0
    assert ledger_check.run(session, NOW + timedelta(minutes=61)).startswith("full check")


# --- the organizer's pages ---------------------------------------------------------------------

@contextlib.contextmanager
def in_app(app):
    """A session for a test that also drives the test client: an app context of its own, so
    the client's requests keep theirs (and their CSRF tokens)."""
    with app.app_context():
        yield db.session
        db.session.commit()
        db.session.remove()


def test_the_ledger_page_shows_the_last_check_and_starts_one(app, world, client):
    organizer = world.user("organizer")
    sign_in_as(client, app, organizer)
    first = client.get("/organizer/ledger").get_data(as_text=True)
    assert "The ledger has not been checked yet" in first
    with in_app(app) as session:
        post_many(session, 1, 2, settle=True)
    token = csrf_token(client, "/organizer/ledger")
    started = client.post("/organizer/ledger/checks/full", data={"csrf_token": token},
                          follow_redirects=True).get_data(as_text=True)
    assert "The check will run within a few minutes" in started
    assert "is waiting to run" in started and "Check the whole ledger" not in started
    again = client.post("/organizer/ledger/checks/new", data={"csrf_token": token},
                        follow_redirects=True).get_data(as_text=True)
    assert "A check is already waiting to run" in again
    with in_app(app) as session:
        assert ledger_check.run(session, NOW) == "full check: 4 transactions, ok"
    done = client.get("/organizer/ledger").get_data(as_text=True)
    assert "Verified:" in done and "It checked the whole chain: 4 transactions." in done
    assert "Escrow of every question" in done and "Owed to every answerer" in done
    assert "€20.00" in done  # stripe_balance: two payments of 10.00


@pytest.mark.ledger_tampered
def test_the_ledger_page_shows_a_failed_check_first_break_first(app, world, client):
    sign_in_as(client, app, world.user("organizer"))
    with in_app(app) as session:
        post_many(session, 1, 2)
        tamper(session, "UPDATE ledger_transaction SET description = 'x' WHERE id = 1")
        check(session, "full")
    page = client.get("/organizer/ledger").get_data(as_text=True)
    assert "Problem found:" in page
    assert "chain broken at transaction 1 (payment:1): content changed" in page


def test_ledger_pages_cost_the_same_with_1_and_200_transactions(app, world, client):
    """The ledger page, the open escrow accounts and a statement page: the same statements
    with a small and a large ledger (no page reads the whole ledger)."""
    sign_in_as(client, app, world.user("organizer"))
    with app.app_context():
        engine = db.engine
    counts = {}
    for size, first in ((1, 1), (199, 2)):
        with in_app(app) as session:
            post_many(session, first, size, settle=False)
            check(session, "new")
        for url in ("/organizer/ledger", "/organizer/ledger/open/escrow",
                    "/organizer/ledger/accounts/stripe_balance",
                    "/organizer/ledger/accounts/stripe_balance?newest=1"):
            with count_statements(engine) as seen:
                response = client.get(url)
            assert response.status_code == 200, url
            counts.setdefault(url, []).append(len(seen))
    assert all(a == b for a, b in counts.values()), counts


def walk_statement(client, account: str) -> list[str]:
    """Every row of a statement page after page by its "Later entries" link."""
    import re

    url, rows = f"/organizer/ledger/accounts/{account}", []
    while url:
        page = client.get(url).get_data(as_text=True)
        rows += re.findall(r"\((payment:\d+)\)</span>", page)
        found = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = found.group(1).replace("&amp;", "&") if found else None
    return rows


def test_a_statement_comes_a_page_at_a_time_every_entry_once_with_running_balances(
        app, world, client):
    with in_app(app) as session:
        post_many(session, 1, 120)
        pages, cursor = [], None
        while True:
            page = statements.statement(session, "stripe_balance", after=cursor)
            pages.append(page)
            if page.next is None:
                break
            cursor = page.next
        newest = statements.statement(session, "stripe_balance", newest=True)
    assert [len(p.rows) for p in pages] == [50, 50, 20]
    rows = [r for p in pages for r in p.rows]
    assert [r.key for r in rows] == [f"payment:{n}" for n in range(1, 121)]
    assert [r.balance_cents for r in rows] == [1000 * n for n in range(1, 121)]
    assert pages[1].opening_balance_cents == 50_000 and pages[-1].closing_balance_cents == 120_000
    assert [r.key for r in newest.rows] == [f"payment:{n}" for n in range(71, 121)]
    assert (newest.opening_balance_cents, newest.closing_balance_cents) == (70_000, 120_000)
    assert not newest.first and newest.last

    sign_in_as(client, app, world.user("organizer"))
    assert walk_statement(client, "stripe_balance") == [f"payment:{n}" for n in range(1, 121)]
    last = client.get("/organizer/ledger/accounts/stripe_balance?newest=1").get_data(
        as_text=True)
    assert "The closing balance equals the ledger's balance for this account." in last, \
        last[last.find("<main"):]
    forged = client.get("/organizer/ledger/accounts/stripe_balance?after=WzUwLCA5OTk5OTld.x")
    assert forged.status_code == 400


def test_the_open_accounts_leave_closed_ones_out_and_come_a_page_at_a_time(session):
    post_many(session, 1, 45)
    post_many(session, 46, 10, settle=True)  # these escrow accounts are closed (0)
    pages, after = [], None
    while True:
        page = statements.open_accounts(session, "escrow", after, per_page=20)
        pages.append(page)
        if page.next_after is None:
            break
        after = page.next_after
    names = [name for p in pages for name, _, _ in p.rows]
    assert [len(p.rows) for p in pages] == [20, 20, 5]
    assert sorted(names) == sorted(ledger.escrow_account(n) for n in range(1, 46))
    assert len(set(names)) == 45
    assert {cents for p in pages for _, _, cents in p.rows} == {1000}
    payable = statements.open_accounts(session, "payable")
    assert [name for name, _, _ in payable.rows] == [ledger.payable_account(n) for n in (0, 1, 2)]


def test_the_ledger_csv_streams_in_batches_and_adds_up(session):
    post_many(session, 1, 5, settle=True)
    chunks = list(statements.ledger_entries_csv(session, batch=4))
    assert len(chunks) == 1 + 7  # the header, then 25 entries 4 at a time
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == 25 and sum(int(r["amount_cents"]) for r in rows) == 0


def test_posting_takes_its_time_from_the_caller(session):
    at = NOW - timedelta(days=40)
    ledger.post(session, "payment:old", "payment",
                [(ledger.STRIPE_BALANCE, 5), (ledger.escrow_account(1), -5)], "EUR", now=at)
    session.commit()
    assert session.scalar(sa.select(LedgerTransaction.created_at)) == at
    assert json.loads(json.dumps(ledger.verify(session).totals)) == {
        "stripe_balance EUR": 5, "escrow EUR": -5}


def test_a_post_writes_its_rows_without_reading_them_back(app, session):
    """Posting to known accounts: the head, the accounts, the key; then the transaction, its
    entries in one statement and the balances in one UPDATE, and nothing read back after."""
    pay(session, 1, settle=True)
    session.commit()
    entries = [(ledger.STRIPE_BALANCE, 30), (ledger.escrow_account(1), -20),
               (ledger.COMMISSION, -10)]
    with count_statements(db.engine) as seen:
        ledger.post(session, "payment:2", "payment", entries, "EUR", now=NOW)
        session.commit()
    kinds = [s.split()[0] for s in seen]
    first_write = kinds.index("INSERT")
    assert "SELECT" not in kinds[first_write:], seen
    assert kinds[first_write:first_write + 3] == ["INSERT", "INSERT", "UPDATE"]
    assert len([s for s in seen if s.startswith("UPDATE ledger_account")]) == 1
    assert len(seen) <= 8, seen


def test_a_statement_walks_back_from_the_newest_page_to_the_first(session):
    post_many(session, 1, 120)
    page = statements.statement(session, "stripe_balance", newest=True)
    pages = [page]
    while page.previous is not None:
        page = statements.statement(session, "stripe_balance", before=page.previous)
        pages.append(page)
    assert [len(p.rows) for p in pages] == [50, 50, 20]
    assert pages[-1].first and pages[-1].opening_balance_cents == 0
    rows = [r for p in reversed(pages) for r in p.rows]
    assert [r.key for r in rows] == [f"payment:{n}" for n in range(1, 121)]
    assert [r.balance_cents for r in rows] == [1000 * n for n in range(1, 121)]
    # Going forward again from an earlier page lands exactly after it.
    later = statements.statement(session, "stripe_balance", after=pages[1].next)
    assert [r.key for r in later.rows] == [f"payment:{n}" for n in range(71, 121)]


def test_the_answerer_sees_the_newest_earnings_first_and_can_go_back(app, world, client):
    answerer = world.answerer()
    with in_app(app) as session:
        for n in range(1, 61):
            ledger.post(session, f"settle:{n}", f"Answer {n}",
                        [(ledger.escrow_account(n), 100), (ledger.payable_account(answerer),
                                                             -100)], "EUR", now=NOW)
    sign_in_as(client, app, answerer)
    import re

    newest = client.get("/answer/earnings").get_data(as_text=True)
    assert "Answer 11<" in newest and "Answer 60<" in newest and "Answer 10<" not in newest
    earlier = re.search(r'<a href="([^"]+)" rel="prev">Earlier entries</a>', newest)
    first = client.get(earlier.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r"Answer (\d+)<", first) == [str(n) for n in range(1, 11)]
    assert "€10.00" in first and "rel=\"next\">Later entries" in first
    assert client.get("/answer/earnings?entries_before=forged").status_code == 400
