"""``dbtypes.one_of``: the same rows as ``IN``; on PostgreSQL a thousand ids are one parameter."""

from __future__ import annotations

import sqlalchemy as sa

from upss.dbtypes import one_of
from upss.extensions import db
from upss.models import User


def test_one_of_finds_what_in_finds_with_one_parameter_on_postgresql(app, world):
    users = [world.user() for _ in range(3)]
    wanted = [users[0], users[2], *range(10**6, 10**6 + 997)]  # 999 ids, two of them real
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(parameters)

    with app.app_context():
        dialect = db.engine.dialect.name
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            found = db.session.scalars(sa.select(User.id).where(
                one_of(dialect, User.id, wanted)).order_by(User.id)).all()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        assert found == db.session.scalars(sa.select(User.id).where(
            User.id.in_(wanted)).order_by(User.id)).all() == [users[0], users[2]]
        assert one_of(dialect, User.id, []) is not None
        assert db.session.scalars(sa.select(User.id).where(one_of(dialect, User.id, []))).all() \
            == []
    assert len(sent[-1]) == (1 if dialect == "postgresql" else 999)
