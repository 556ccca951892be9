"""This installation's identity, generated once and stored in the database.

Stripe keeps idempotency keys per account. Two installations sharing one Stripe test key (two
developers, CI, a demo) would otherwise both send ``question:1:pay`` and get each other's
PaymentIntent back, so every key UPSS sends starts with this installation's id.

The id is written by migration 0005 (or, if the row is missing, on first use in a transaction of
its own): it must never be part of a request's transaction, because a request that rolls back
after a Stripe timeout would take a new id with it, and its retry would pay a second time.
"""

from __future__ import annotations

import secrets
from weakref import WeakKeyDictionary

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import Installation, utcnow

#: Stripe refuses idempotency keys longer than this.
MAX_KEY_LENGTH = 255
_known: WeakKeyDictionary[Engine, str] = WeakKeyDictionary()


def new_installation_id() -> str:
    return f"upss-{secrets.token_hex(8)}"


def installation_id(session: Session) -> str:
    """The id of this installation (read once per engine; created if missing, race-safe)."""
    engine = session.get_bind()
    if engine in _known:
        return _known[engine]
    query = select(Installation.installation_id).where(Installation.id == 1)
    # Read in the caller's transaction: on SQLite it may hold the write lock, which a second
    # connection would wait for in vain. Only a missing row (a database the migrations did not
    # fill) is created on a connection of its own, committed before it is used.
    value = session.scalar(query)
    if value is not None:
        _known[engine] = value
        return value
    with engine.connect() as conn:
        value = conn.scalar(query)
        if value is None:
            try:
                conn.execute(insert(Installation).values(
                    id=1, installation_id=new_installation_id(), created_at=utcnow()))
                conn.commit()
            except IntegrityError:
                conn.rollback()  # another process created it first: use theirs
            value = conn.scalar(query)
    _known[engine] = value
    return value


def idempotency_key(session: Session, *parts: object) -> str:
    """A Stripe idempotency key: the installation id, then ``parts`` joined by colons."""
    key = ":".join([installation_id(session), *(str(p) for p in parts)])
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"idempotency key of {len(key)} characters")
    return key
