"""Keyset pagination: one page of a list, the same cost on every page whatever the table's size.

A list is read in the order of a unique key: one column (``id``) or a column and a
tie-breaker (``(name, id)``), each ascending or descending. A page asks for ``per_page + 1``
rows after the cursor; the extra row only tells whether there is a next page. The cursor is
the key of the last row shown, so a row added while someone pages neither shifts the pages
nor appears twice (no ``OFFSET``). Each key needs an index that matches the list's filter,
e.g. ``(asker_id, id)`` for one asker's questions (``upss/models.py``).

A cursor is text in the URL (``?before=`` / ``?after=``): a plain integer for a one-integer
key (``?before=120``), otherwise a URL-safe token of the key's values. Anything that does not
decode to the key's types (garbage, a wrong type, an edited token) reads as no cursor: the
first page, never an error.

Services build the queries and call :func:`keyset_page`; pages only pass the cursor from the
URL and render ``Page.items`` with the ``paging.html`` macro.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

T = TypeVar("T")

#: Rows per page unless a list says otherwise.
PER_PAGE = 20
#: Longest cursor read from a URL (a longer one is garbage: the first page).
MAX_CURSOR = 400


@dataclass(frozen=True)
class Key:
    """One column of a list's order: ``column`` (a mapped attribute or a labelled expression
    that is also in the select), ``descending`` or not. Its values must never be NULL."""

    column: Any
    descending: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its ``items`` and the cursor of the next page (None on the last)."""

    items: list[T]
    next_cursor: str | None = None
    #: A cursor was given: this is not the first page.
    continued: bool = False

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def _keys(order: Key | Any | Sequence[Key | Any]) -> list[Key]:
    items = order if isinstance(order, list | tuple) else [order]
    return [item if isinstance(item, Key) else Key(item) for item in items]


def _python_type(key: Key) -> type:
    column_type = key.column.type
    column_type = getattr(column_type, "impl", column_type)  # a TypeDecorator: what it stores
    try:
        return column_type.python_type
    except (AttributeError, NotImplementedError):  # pragma: no cover - every key used is typed
        return str


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _decode_value(raw: Any, kind: type) -> Any:
    """``raw`` from a token as a value of ``kind``; ValueError if it is not one."""
    if kind is bool or isinstance(raw, bool):
        if isinstance(raw, bool) and kind is bool:
            return raw
        raise ValueError("not a key value")
    if kind is int and isinstance(raw, int):
        return raw
    if kind is str and isinstance(raw, str):
        return raw
    if kind is datetime and isinstance(raw, str):
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            raise ValueError("a time without its zone")
        return moment
    raise ValueError("not a key value")


def encode_cursor(values: Sequence[Any]) -> str:
    """The cursor of a row whose key is ``values``: ``"120"`` for one integer, else a
    URL-safe token."""
    if len(values) == 1 and isinstance(values[0], int) and not isinstance(values[0], bool):
        return str(values[0])
    text = json.dumps([_encode_value(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, order: Key | Any | Sequence[Key | Any]) -> tuple | None:
    """The key values in ``cursor`` for ``order``, or None when it is absent or not a cursor
    of this order (so the caller shows the first page)."""
    keys = _keys(order)
    if not cursor or len(cursor) > MAX_CURSOR:
        return None
    kinds = [_python_type(key) for key in keys]
    try:
        if len(keys) == 1 and kinds[0] is int:
            if not cursor.isascii() or not cursor.isdigit():
                return None
            value = int(cursor)
            return (value,) if value < 2 ** 63 else None
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode())
        if not isinstance(raw, list) or len(raw) != len(keys):
            return None
        values = tuple(_decode_value(item, kind) for item, kind in zip(raw, kinds, strict=True))
    except (ValueError, UnicodeError, binascii.Error, TypeError):
        return None
    if any(isinstance(v, int) and not -2 ** 63 <= v < 2 ** 63 for v in values):
        return None
    return values


def after_condition(keys: Sequence[Key], values: Sequence[Any]):
    """Rows that come after ``values`` in the order of ``keys`` (any mix of directions):
    ``k1 > v1 OR (k1 = v1 AND k2 > v2) ...``, with ``<`` for descending keys."""
    alternatives = []
    for position, key in enumerate(keys):
        equal = [keys[i].column == values[i] for i in range(position)]
        beyond = key.column < values[position] if key.descending \
            else key.column > values[position]
        alternatives.append(and_(*equal, beyond))
    return or_(*alternatives)


def keyset_page(session: Session, query: Select, order: Key | Any | Sequence[Key | Any],
                cursor: str | None, per_page: int = PER_PAGE, *,
                scalars: bool = True, key_of: Callable[[Any], Sequence[Any]] | None = None,
                ) -> Page:
    """One page of ``query`` (not yet ordered or limited) in the order of ``order`` (a unique
    key: a column, a :class:`Key`, or a sequence of them, the last one unique), after
    ``cursor`` (from :func:`encode_cursor`; unreadable means the first page). One SQL
    statement. ``scalars``: the items are the first column of each row (an ORM object), else
    the rows. ``key_of(item)`` gives an item's key values; by default each key column's
    attribute name is read from the item."""
    keys = _keys(order)
    values = decode_cursor(cursor, keys)
    if values is not None:
        query = query.where(after_condition(keys, values))
    query = query.order_by(*[key.column.desc() if key.descending else key.column.asc()
                             for key in keys]).limit(per_page + 1)
    result = session.execute(query)
    rows = list(result.scalars() if scalars else result.all())
    items = rows[:per_page]
    next_cursor = None
    if len(rows) > per_page:
        last = items[-1]
        values_of = key_of or (lambda item: [_value(item, key) for key in keys])
        next_cursor = encode_cursor(list(values_of(last)))
    return Page(items=items, next_cursor=next_cursor, continued=values is not None)


def _value(item: Any, key: Key) -> Any:
    name = getattr(key.column, "key", None) or getattr(key.column, "name", None)
    if hasattr(item, "_mapping"):  # a row: by label, else by the column itself
        mapping = item._mapping
        return mapping[key.column] if key.column in mapping else mapping[name]
    return getattr(item, name)
