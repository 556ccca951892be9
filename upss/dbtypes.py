"""The app's own SQLAlchemy column types, for ``upss.models`` and Alembic's autogenerate, and
:func:`one_of`, a membership test that stays one parameter on PostgreSQL.

``UTCDateTime`` stores every moment as a timezone-aware UTC datetime on SQLite and PostgreSQL
alike. It lives apart from the models so that ``upss.extensions`` can render it in migrations
(as ``sa.DateTime(timezone=True)``) without importing the models, which import the extensions.
This module imports nothing of ``upss``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC

from sqlalchemy import DateTime, Integer, TypeDecorator, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def one_of(dialect_name: str, column, ids: Iterable[int]):
    """``column IN ids``. On PostgreSQL one array parameter (``= ANY(:ids)``): a thousand ids
    are then one bind, not a thousand placeholders to render, send, parse and plan (the release
    run reads the numbers of every answerer with room). Elsewhere a plain ``IN``."""
    ids = list(ids)
    if dialect_name == "postgresql":
        return column == any_(bindparam(None, ids, type_=ARRAY(Integer)))
    return column.in_(ids)
