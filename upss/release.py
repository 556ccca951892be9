"""Release policy: which queued question is offered to which answerer, and when.

Design overview
---------------
Paid questions are not answered live. The scheduler's ``release`` job calls
``release_due_questions(now)`` every few minutes (``upss.jobs``); inside an off-peak window it
offers queued questions, oldest paid first, each to one answerer, at most
``release_max_per_run`` per run, so a window's work is spread over the window instead of
landing at its first minute. Outside a window only *urgent* questions are
offered: those with less than ``urgent_hours`` left before their deadline.

An answerer is eligible for a question when they are an active answerer, not its asker, speak
its language, are inside their own daily available hours, are under their daily limit, their
open-offer limit and their yearly earnings ceiling (many pensions and disability benefits have
one), and never declined it. Among the eligible, income is spread fairly:
least earned over the last 30 days first, then least recently offered, then lowest id (an
answerer whose earlier offer of the same question expired goes last).

The other jobs return questions to the queue (expired offers and locks), refund questions whose
deadline passed, and accept answers the asker left alone for ``auto_accept_days``. Every job
takes ``now`` so tests drive time directly; every state change goes through ``questions``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import earnings, payments, questions, settings
from .models import (
    AnswererProfile,
    Offer,
    Question,
    User,
)
from .offpeak import daily_hours_contain, is_off_peak

log = logging.getLogger(__name__)
EARNINGS_PERIOD = timedelta(days=30)


@dataclass
class Candidate:
    """An answerer and the numbers the release policy ranks them by."""

    user: User
    profile: AnswererProfile
    earned_cents: int = 0
    #: Credited since 1 January (local): offers stop once the yearly ceiling is reached.
    earned_this_year_cents: int = 0
    #: Id of the newest offer made to them: ids grow with time, and unlike timestamps they
    #: never tie, so "least recently offered" rotates strictly.
    last_offer_id: int = 0
    offers_today: int = 0
    open_count: int = 0
    declined: set[int] = field(default_factory=set)
    expired: set[int] = field(default_factory=set)

    def can_take(self, question: Question, now: datetime) -> bool:
        p = self.profile
        return (question.asker_id != self.user.id
                and question.language in p.language_list
                and question.id not in self.declined
                and self.offers_today < p.daily_limit
                and self.open_count < p.open_offer_limit
                and (p.yearly_ceiling_cents is None
                     or self.earned_this_year_cents < p.yearly_ceiling_cents)
                and daily_hours_contain(now, ZoneInfo(p.timezone), p.available_from_minute,
                                        p.available_until_minute))

    def rank(self, question: Question) -> tuple:
        return (question.id in self.expired, self.earned_cents, self.last_offer_id,
                self.user.id)


def _local_midnight(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def load_candidates(session: Session, now: datetime,
                    rules: settings.Settings) -> list[Candidate]:
    """Every active answerer with their earnings, recent offers and open work."""
    rows = session.execute(
        select(User, AnswererProfile).join(AnswererProfile, AnswererProfile.user_id == User.id)
        .where(User.is_answerer.is_(True), AnswererProfile.active.is_(True))
        .order_by(User.id)
    ).all()
    candidates = {user.id: Candidate(user, profile) for user, profile in rows}
    if not candidates:
        return []
    ids = list(candidates)

    for answerer_id, cents in earnings.income_since(session, ids,
                                                    now - EARNINGS_PERIOD).items():
        candidates[answerer_id].earned_cents = cents
    for answerer_id, cents in earnings.income_since(
            session, ids, earnings.year_start(now, rules.zone)).items():
        candidates[answerer_id].earned_this_year_cents = cents

    # Today's offers of each answerer, counted from their own local midnight; the query reads
    # only offers since the earliest of those midnights.
    earliest_midnight = min(_local_midnight(now, ZoneInfo(c.profile.timezone))
                            for c in candidates.values())
    for offer in session.scalars(
        select(Offer).where(Offer.answerer_id.in_(ids), Offer.offered_at >= earliest_midnight)
    ):
        c = candidates[offer.answerer_id]
        if offer.offered_at >= _local_midnight(now, ZoneInfo(c.profile.timezone)):
            c.offers_today += 1
    for answerer_id, last in session.execute(
        select(Offer.answerer_id, func.max(Offer.id))
        .where(Offer.answerer_id.in_(ids)).group_by(Offer.answerer_id)
    ):
        candidates[answerer_id].last_offer_id = last
    for answerer_id, count in session.execute(
        select(Question.answerer_id, func.count())
        .where(Question.answerer_id.in_(ids), Question.status.in_(("offered", "claimed")))
        .group_by(Question.answerer_id)
    ):
        candidates[answerer_id].open_count = count
    for answerer_id, question_id, outcome in session.execute(
        select(Offer.answerer_id, Offer.question_id, Offer.outcome)
        .where(Offer.answerer_id.in_(ids), Offer.outcome.in_(("declined", "expired")))
    ):
        target = candidates[answerer_id].declined if outcome == "declined" else (
            candidates[answerer_id].expired)
        target.add(question_id)
    return list(candidates.values())


def release_due_questions(session: Session, now: datetime, *,
                          ignore_window: bool = False) -> list[Offer]:
    """Offer queued questions to answerers, as the policy above says. Returns the offers."""
    rules = settings.current(session)
    in_window = ignore_window or is_off_peak(now, rules)
    query = select(Question).where(Question.status == "queued")
    if not in_window:
        query = query.where(Question.deadline_at < now + timedelta(hours=rules.urgent_hours))
    queued = session.scalars(query.order_by(Question.paid_at, Question.id)).all()
    if not queued:
        return []
    candidates = load_candidates(session, now, rules)
    made: list[Offer] = []
    for question in queued:
        if len(made) >= rules.release_max_per_run:
            break
        pool = [c for c in candidates if c.can_take(question, now)]
        if not pool:
            continue
        chosen = min(pool, key=lambda c: c.rank(question))
        try:
            offer = questions.offer(session, question, chosen.user, now, rules)
        except questions.InvalidTransition:
            continue  # changed meanwhile (e.g. the asker cancelled): nothing to offer
        made.append(offer)
        chosen.offers_today += 1
        chosen.open_count += 1
        chosen.last_offer_id = offer.id
    return made


def expire_offers(session: Session, now: datetime) -> int:
    """Offers nobody picked up in time go back to the queue. Returns how many."""
    due = session.scalars(select(Question).where(
        Question.status == "offered", Question.offer_expires_at <= now)).all()
    for question in due:
        questions.expire_offer(session, question, now)
    return len(due)


def expire_locks(session: Session, now: datetime) -> int:
    """Claims whose lock ran out go back to the queue (drafts stay). Returns how many."""
    due = session.scalars(select(Question).where(
        Question.status == "claimed", Question.lock_expires_at <= now)).all()
    for question in due:
        questions.expire_lock(session, question, now)
    return len(due)


def refund_overdue(session: Session, now: datetime) -> int:
    """Unanswered questions past their deadline are refunded in full. Returns how many.

    Phase 1 (state ``refunded``, refund ``requested``) is committed for all of them first;
    then each refund is sent to Stripe (``payments.send_refund``). One Stripe refuses or does
    not answer is looked up and retried by ``payments.resolve_unfinished_refunds``.
    """
    due = session.scalars(select(Question).where(
        Question.status.in_(("queued", "offered", "claimed")),
        Question.deadline_at <= now)).all()
    refunded = []
    for question in due:
        try:
            with session.begin_nested():
                questions.refund(session, question, "refund_at_deadline", None, now,
                                 note="answer deadline passed")
            refunded.append(question.id)
        except questions.InvalidTransition as exc:
            log.warning("refund of question %s skipped: %s", question.id, exc)
    session.commit()
    for question_id in refunded:
        payments.send_refund(session, question_id, now)
    return len(refunded)


def auto_accept_due(session: Session, now: datetime) -> int:
    """Answers the asker left alone for ``auto_accept_days`` are accepted. Returns how many."""
    after = timedelta(days=settings.current(session).auto_accept_days)
    due = session.scalars(select(Question).where(
        Question.status == "answered", Question.answered_at <= now - after)).all()
    for question in due:
        questions.auto_accept(session, question, now, after)
    return len(due)
