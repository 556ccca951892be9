"""The PostgreSQL role the web workers and the scheduler connect as, without owner rights.

Migrations run as the database's owner; the app connects as a role that can read and write
rows but cannot ``TRUNCATE``, ``ALTER`` or drop anything, so a bug or a stolen app password
cannot switch off the ledger's append-only triggers or empty its tables (the triggers also
refuse ``TRUNCATE``, for the owner too). On the ledger's rows the role has only what posting
needs: ``SELECT`` and ``INSERT`` on transactions and entries, ``UPDATE`` of accounts' cached
balances (and inserting new accounts).

``grant_app_role`` is run by the owner after each ``flask db upgrade`` (``flask upss
grant-app-role NAME``); it also sets default privileges, so tables a later migration makes
are usable at once. SQLite has no roles: there the command refuses.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection

#: Ledger tables and what the app role may do with their rows (every other table: read and
#: write rows).
LEDGER_PRIVILEGES = {
    "ledger_transaction": "SELECT, INSERT",
    "ledger_entry": "SELECT, INSERT",
    "ledger_account": "SELECT, INSERT, UPDATE",
}
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class NotPostgres(Exception):
    """Roles exist only on PostgreSQL."""


def grant_app_role(conn: Connection, role: str) -> list[str]:
    """Give ``role`` (which must exist) row rights on every table of the ``public`` schema,
    the ledger's narrower ones, and the same by default on tables made later. Returns the
    statements run. Run as the owner of the tables."""
    if conn.dialect.name != "postgresql":
        raise NotPostgres("database roles exist only on PostgreSQL")
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError(f"a role name is lower-case letters, digits and _, not {role!r}")
    tables = conn.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
    statements = [f"GRANT USAGE ON SCHEMA public TO {role}",
                  f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"]
    for table in sorted(tables):
        rights = LEDGER_PRIVILEGES.get(table, "SELECT, INSERT, UPDATE, DELETE")
        if table == "alembic_version":
            rights = "SELECT"
        statements.append(f'GRANT {rights} ON "{table}" TO {role}')
    statements += [
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE "
        f"ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]
    for statement in statements:
        conn.execute(text(statement))
    return statements
