"""The app's PostgreSQL role (``flask upss grant-app-role``): the app works through it, and it
is refused TRUNCATE, ALTER, dropping the ledger's triggers and changing ledger rows; the
owner is refused TRUNCATE of the ledger too (a statement trigger)."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from upss import ledger
from upss.extensions import db

ENTRIES = [("stripe_balance", 700), ("escrow:question:1", -700)]


@pytest.fixture
def app_role(app, database_url):
    """A new LOGIN role with the app's grants, and the database URL that connects as it."""
    role = f"upss_app_{secrets.token_hex(4)}"
    owner = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    yield role, make_url(database_url).set(username=role).render_as_string(hide_password=False)
    with owner.connect() as conn:
        conn.execute(sa.text(f"DROP OWNED BY {role}"))
        conn.execute(sa.text(f"DROP ROLE {role}"))
    owner.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_app_role_posts_to_the_ledger_but_cannot_truncate_alter_or_rewrite(
        app, runner, app_role):
    role, url = app_role
    result = runner.invoke(args=["upss", "grant-app-role", role])
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(url)
    try:
        with sa.orm.Session(engine) as session:
            with app.app_context():
                ledger.post(session, "payment:pi_1", "payment", ENTRIES, "EUR")
            session.commit()
            assert ledger.verify(session, hmac_key=None).ok
        for statement in ("TRUNCATE ledger_entry", "TRUNCATE question",
                          "ALTER TABLE ledger_transaction DISABLE TRIGGER USER",
                          "DROP TRIGGER ledger_transaction_append_only ON ledger_transaction",
                          "UPDATE ledger_transaction SET description = 'x'",
                          "DELETE FROM ledger_entry",
                          "CREATE TABLE shadow (id integer)"):
            with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError) as refused:
                conn.execute(sa.text(statement))
            assert "permission denied" in str(refused.value) or "must be owner" in str(
                refused.value), statement
    finally:
        engine.dispose()


@pytest.mark.ledger_tampered
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_even_the_owner_cannot_truncate_the_ledger(app):
    with app.app_context():
        ledger.post(db.session, "payment:pi_1", "payment", ENTRIES, "EUR")
        db.session.commit()
        for table in ("ledger_entry", "ledger_transaction", "ledger_account"):
            with pytest.raises(sa.exc.DatabaseError, match="TRUNCATE on .* refused"):
                db.session.execute(sa.text(f"TRUNCATE {table} CASCADE"))
            db.session.rollback()
        assert ledger.verify(db.session).transactions == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_has_no_roles_to_grant(runner):
    result = runner.invoke(args=["upss", "grant-app-role", "upss_app"])
    assert result.exit_code == 1 and "only on PostgreSQL" in result.output
