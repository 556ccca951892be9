"""What waits for the organizer: the counts on their overview page (read-only).

Every count is one ``COUNT`` query; the last reconciliation run is one row. Nothing here loads
a whole table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import (
    AnswererApplication,
    Notification,
    PayoutBatch,
    Question,
    ReconciliationRun,
    StripeDispute,
)
from .stripe_money import CLOSED_DISPUTE


@dataclass(frozen=True)
class LastReconciliation:
    """The newest finished reconciliation run, as the overview shows it."""

    finished_at: datetime
    #: How many differences between Stripe and the ledger it found.
    differences: int
    #: Stripe did not answer, so the run checked nothing.
    failed: bool


@dataclass(frozen=True)
class OrganizerOverview:
    #: Applications to answer that nobody has decided yet.
    applications_waiting: int
    #: Answers the askers rejected, waiting for an organizer's decision.
    rejected_answers: int
    #: Card disputes still open at Stripe.
    card_disputes: int
    #: Payout batches with a SEPA file not yet marked as given to the bank.
    bank_files_to_send: int
    #: None if reconciliation has never finished a run.
    reconciliation: LastReconciliation | None
    #: Messages the mail server refused for good, or that could not be sent for days.
    failed_messages: int = 0


def _count(session: Session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def organizer_overview(session: Session) -> OrganizerOverview:
    """The counts of what waits for the organizer (``/organizer/``)."""
    run = session.execute(
        select(ReconciliationRun.finished_at, ReconciliationRun.differences,
               ReconciliationRun.error)
        .where(ReconciliationRun.finished_at.is_not(None))
        .order_by(ReconciliationRun.id.desc()).limit(1)).first()
    return OrganizerOverview(
        applications_waiting=_count(session, AnswererApplication,
                                    AnswererApplication.status == "pending"),
        rejected_answers=_count(session, Question, Question.status == "disputed"),
        card_disputes=_count(session, StripeDispute, StripeDispute.status.not_in(CLOSED_DISPUTE)),
        bank_files_to_send=_count(session, PayoutBatch, PayoutBatch.sepa_xml.is_not(None),
                                  PayoutBatch.sepa_xml != "",
                                  PayoutBatch.sepa_marked_sent_at.is_(None)),
        reconciliation=None if run is None else LastReconciliation(
            finished_at=run.finished_at, differences=len(json.loads(run.differences or "[]")),
            failed=run.error is not None),
        failed_messages=_count(session, Notification, Notification.status == "failed"),
    )
