"""The scale benchmark's generator (``bench/generate.py``) still makes a ledger that verifies:
at a tiny size on PostgreSQL, its own SQL checks find nothing, the bench's streaming pass
(``bench/streaming.py``, the baseline of ``verify-ledger``) finds nothing, ``flask upss
verify-ledger`` passes, and a description changed afterwards breaks the chain where it was
changed. Nothing here looks at how long anything took (``bench/run.py`` is never run here)."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from bench import generate, streaming
from upss import create_app


@pytest.fixture
def bench_database(postgres_url):
    """A database name for the generator on the tests' PostgreSQL server; dropped after."""
    server = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1).rsplit("/", 1)[0]
    before = generate.ADMIN_URL
    generate.ADMIN_URL = server
    name = f"upss_bench_smoke_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        with psycopg.connect(generate.psycopg_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        generate.ADMIN_URL = before


def test_the_generated_ledger_verifies_and_a_change_breaks_its_chain(bench_database):
    info = generate.generate(bench_database, 60, quiet=True)
    counts = info["counts"]
    assert counts["question"] == 60
    assert counts["ledger_transaction"] > 60
    assert counts["ledger_entry"] >= 2 * counts["ledger_transaction"]
    assert generate.usable(bench_database, 60) == info

    url = generate.psycopg_url(bench_database)
    with psycopg.connect(url) as conn:
        assert generate.check(conn) == []
    found = streaming.verify(url)
    assert (found.transactions, found.entries) == (counts["ledger_transaction"],
                                                   counts["ledger_entry"])
    assert found.problems == []

    app = create_app({"TESTING": True, "SECRET_KEY": "bench-smoke",
                      "SQLALCHEMY_DATABASE_URI": generate.sqlalchemy_url(bench_database)})
    result = app.test_cli_runner().invoke(args=["upss", "verify-ledger"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        from upss.extensions import db
        db.engine.dispose()

    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # past the append-only trigger
        conn.execute("UPDATE ledger_transaction SET description = 'changed' WHERE id = 5")
    found = streaming.verify(url)
    assert found.problems[0] == "chain broken at transaction 5: content changed"
