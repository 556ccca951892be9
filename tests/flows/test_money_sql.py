"""``money.payout_sql``: the answerer's share computed in the database equals ``money.split``
to the cent, on SQLite and PostgreSQL, up to the largest price and the full commission."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from upss import money
from upss.extensions import db

AMOUNTS = st.integers(min_value=0, max_value=money.MAX_AMOUNT_CENTS)
BPS = st.integers(min_value=0, max_value=money.BPS_DENOMINATOR)
EDGES = [(0, 0), (1, 5000), (5, 1000), (15, 3333), (99_999, 1), (money.MAX_AMOUNT_CENTS, 10_000),
         (money.MAX_AMOUNT_CENTS, 9_999), (money.MAX_AMOUNT_CENTS, 1), (12_345, 1_250)]


def test_the_share_in_sql_is_split_to_the_cent(app):
    with app.app_context():
        connection = db.session.connection()

        def in_sql(pairs):
            rows = sa.union_all(*(
                sa.select(sa.literal(n).label("n"), sa.literal(a, sa.Integer).label("amount"),
                          sa.literal(b, sa.Integer).label("bps"))
                for n, (a, b) in enumerate(pairs))).subquery()  # SQLite names no VALUES columns
            return connection.execute(sa.select(money.payout_sql(rows.c.amount, rows.c.bps))
                                      .order_by(rows.c.n)).scalars().all()

        assert in_sql(EDGES) == [money.split(a, b)[0] for a, b in EDGES]

        @settings(max_examples=40, deadline=None, database=None)
        @given(st.lists(st.tuples(AMOUNTS, BPS), min_size=1, max_size=50))
        def agrees(pairs):
            assert in_sql(pairs) == [money.split(a, b)[0] for a, b in pairs]

        agrees()
        # With the commission as a bound parameter, as the release passes the organizer's.
        assert connection.execute(sa.select(money.payout_sql(
            sa.literal(1999, sa.Integer), sa.bindparam("bps", 1250)))).scalar_one() \
            == money.split(1999, 1250)[0]
