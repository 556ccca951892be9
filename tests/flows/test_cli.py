"""``flask upss`` and ``flask db`` commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from tests.conftest import _base_config
from upss import create_app, ledger, ledger_check
from upss.extensions import db


def test_verify_ledger_prints_the_totals_and_ok_and_records_a_checkpoint(app, runner):
    with app.app_context():
        ledger.post(db.session, "payment:pi_1", "payment",
                    [("stripe_balance", 1250), ("escrow:question:1", -1250)], "EUR")
        db.session.commit()
    result = runner.invoke(args=["upss", "verify-ledger"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:4] == ["escrow", "liability", "0.00", "12.50"] for line in lines)
    assert any(line.split()[:4] == ["stripe_balance", "asset", "12.50", "0.00"]
               for line in lines)
    assert any(line.split()[:3] == ["total", "12.50", "12.50"] for line in lines)
    assert "ledger OK" in result.output
    with app.app_context():
        point = ledger_check.checkpoint(db.session)
        assert (point.kind, point.through_transaction_id, point.transactions_checked) == (
            "full", 1, 1)


@pytest.mark.ledger_tampered
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_verify_ledger_reports_the_first_break_and_fails(app, runner):
    with app.app_context():
        for n in (1, 2):
            ledger.post(db.session, f"payment:pi_{n}", "payment",
                        [("stripe_balance", 100), (f"escrow:question:{n}", -100)], "EUR")
        db.session.commit()
        db.session.execute(sa.text("DROP TRIGGER ledger_transaction_no_update"))
        db.session.execute(sa.text("UPDATE ledger_transaction SET description = 'x' "
                                   "WHERE id = 2"))
        db.session.commit()
    result = runner.invoke(args=["upss", "verify-ledger"])
    assert result.exit_code == 1
    assert "FIRST BREAK: chain broken at transaction 2 (payment:pi_2): content changed" in (
        result.output)


def test_seed_demo_creates_one_user_per_role_and_can_run_twice(app, runner):
    first = runner.invoke(args=["upss", "seed-demo"])
    second = runner.invoke(args=["upss", "seed-demo"])
    assert first.exit_code == second.exit_code == 0
    assert "sign in as organizer@example.org with password organizer-demo-pass" in first.output
    from upss.models import User
    with app.app_context():
        users = db.session.scalars(sa.select(User).order_by(User.id)).all()
        assert [(u.email, u.is_answerer, u.is_organizer) for u in users] == [
            ("asker@example.org", False, False), ("answerer@example.org", True, False),
            ("organizer@example.org", False, True)]


def test_db_upgrade_from_empty_matches_the_models(empty_database, localstripe_url):
    """`flask db upgrade` builds the schema from nothing; `flask db check` finds no drift;
    `flask db downgrade base` removes it again."""
    app = create_app(_base_config(empty_database, localstripe_url))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        tables = set(sa.inspect(db.engine).get_table_names())
    assert {"user", "question", "question_event", "stripe_event", "ledger_account",
            "ledger_transaction", "ledger_entry", "organizer_settings"} <= tables
    check = runner.invoke(args=["db", "check"])
    assert check.exit_code == 0, check.output
    down = runner.invoke(args=["db", "downgrade", "base"])
    assert down.exit_code == 0, down.output
    with app.app_context():
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_make_answerer_goes_through_vetting_and_the_audit_log(app, runner, make_user):
    """The command applies and approves through ``vetting``: its rules hold (known languages,
    the age basis needs a birth year of someone 65 or over, an organizer decides) and the
    decision is in the audit log."""
    from upss.models import AnswererApplication, AnswererProfile, AuditLog, User

    user_id, email, _ = make_user()
    organizer_id, organizer_email, _ = make_user("organizer")
    vetted = ["upss", "make-answerer", email, "--by", organizer_email, "--method", "met in person"]
    refused = [
        ([*vetted, "--basis", "disability", "--languages", "fi,xx"], "known language"),
        ([*vetted, "--basis", "age"], "birth year"),
        ([*vetted, "--basis", "age", "--birth-year", "1990"], "65 or over"),
        (["upss", "make-answerer", "nobody@example.org", "--by", organizer_email, "--method",
          "x", "--basis", "disability"], "no user"),
        (["upss", "make-answerer", email, "--by", email, "--method", "x", "--basis",
          "disability"], "not an organizer"),
    ]
    for args, reason in refused:
        result = runner.invoke(args=args)
        assert result.exit_code != 0 and reason in result.output, (args, result.output)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AnswererApplication)) == 0

    result = runner.invoke(args=[*vetted, "--basis", "age", "--birth-year", "1950",
                                 "--languages", "fi,sv"])
    assert result.exit_code == 0 and "is now an answerer (fi,sv)" in result.output
    with app.app_context():
        assert db.session.get(User, user_id).is_answerer
        assert db.session.get(AnswererProfile, user_id).language_list == ["fi", "sv"]
        application = db.session.scalar(select(AnswererApplication))
        assert (application.status, application.decided_by_id,
                application.verification_method) == ("approved", organizer_id, "met in person")
        entry = db.session.scalar(select(AuditLog).where(
            AuditLog.target == f"application:{application.id}"))
        assert entry.actor_id == organizer_id and entry.action == "approve application"


def test_reconcile_full_reports_a_ledger_payment_stripe_never_saw(app, runner):
    """`flask upss reconcile-full` compares Stripe's whole history with the ledger on demand
    and fails when something differs."""
    with app.app_context():
        ledger.post(db.session, "payment:pi_nowhere", "a payment Stripe never saw",
                    [("stripe_balance", 700), ("escrow:question:9999", -700)], "EUR")
        db.session.commit()
    result = runner.invoke(args=["upss", "reconcile-full"])
    assert result.exit_code == 1
    assert "ledger payments missing at Stripe: 1" in result.output
    assert "ledger payment payment:pi_nowhere has no PaymentIntent pi_nowhere at Stripe" in (
        result.output)
