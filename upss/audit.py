"""The organizer's audit log: every organizer action, who, when, what, before and after.

Rows are append-only (database triggers refuse UPDATE and DELETE), like the ledger. ``record``
flushes with the action it describes, so the log entry and the change land in one commit.
"""

from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from .models import AuditLog, User
from .paging import PER_PAGE, Key, Page, keyset_page


def _plain(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def snapshot(obj, fields: tuple[str, ...]) -> dict:
    """The named attributes of ``obj`` as a JSON-ready dict."""
    return {name: _plain(getattr(obj, name)) for name in fields}


def record(session: Session, actor: User | None, action: str, target: str,
           before: dict | None = None, after: dict | None = None) -> AuditLog:
    """Write one audit entry (flushes; the caller commits with the change itself)."""
    entry = AuditLog(actor_id=actor.id if actor else None, action=action, target=target,
                     before=json.dumps(before or {}, sort_keys=True, default=str),
                     after=json.dumps(after or {}, sort_keys=True, default=str))
    session.add(entry)
    session.flush()
    return entry


def entries_page(session: Session, cursor: str | None, per_page: int = PER_PAGE) -> Page[AuditLog]:
    """One page of the log, newest first (keyset on the id), with each entry's organizer."""
    return keyset_page(session, select(AuditLog).options(selectinload(AuditLog.actor)),
                       Key(AuditLog.id, descending=True), cursor, per_page)
