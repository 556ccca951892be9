"""Keyset cursors (``upss.paging``): what a page puts in its "next" link reads back as the
same key, and anything else reads as no cursor (the first page), never an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from upss.models import AuditLog, StripeDispute, User
from upss.paging import Key, after_condition, decode_cursor, encode_cursor


def test_one_integer_key_is_a_plain_number():
    assert encode_cursor([120]) == "120"
    assert decode_cursor("120", Key(AuditLog.id)) == (120,)


@pytest.mark.parametrize("values, order", [
    (("Åse Østby ~ \"quoted\"", 7), (User.name, User.id)),
    ((datetime(2026, 3, 2, 9, 30, tzinfo=UTC), "dp_1"),
     (Key(StripeDispute.evidence_due_at), Key(StripeDispute.id))),
])
def test_a_key_of_several_columns_reads_back_as_itself(values, order):
    cursor = encode_cursor(list(values))
    assert cursor.replace("-", "").replace("_", "").isalnum()  # safe in a URL as it is
    assert decode_cursor(cursor, order) == values


def test_a_time_in_another_zone_reads_back_as_the_same_moment():
    moment = datetime(2026, 3, 2, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    order = (Key(StripeDispute.evidence_due_at), Key(StripeDispute.id))
    assert decode_cursor(encode_cursor([moment, "dp_1"]), order)[0] == moment


@pytest.mark.parametrize("cursor", [
    None, "", "abc", "-1", "1.5", "١٢", "9" * 30, "x" * 1000,
    encode_cursor([1, "a"]),               # a number where a name or a time is
    encode_cursor([1]) + "x",              # cut or edited
    encode_cursor(["2026-03-02T09:30:00", "dp_1"]),  # a time without its zone
    encode_cursor(["Name", 1, 2]),         # another list's key
])
def test_anything_else_is_no_cursor(cursor):
    assert decode_cursor(cursor, Key(AuditLog.id)) is None
    assert decode_cursor(cursor, (User.name, User.id)) is None
    assert decode_cursor(cursor, (Key(StripeDispute.evidence_due_at),
                                  Key(StripeDispute.id))) is None


def test_after_compares_each_key_in_its_own_direction():
    condition = after_condition([Key(User.name), Key(User.id, descending=True)], ["B", 5])
    sql = str(condition.compile(dialect=sqlite.dialect(),
                                compile_kwargs={"literal_binds": True}))
    assert sql == "user.name > 'B' OR user.name = 'B' AND user.id < 5"
