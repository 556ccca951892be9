"""Release policy: which queued question is offered to which answerer, and when.

Design overview
---------------
Paid questions are not answered live. The scheduler's ``release`` job calls
``release_due_questions(now)`` every few minutes (``upss.jobs``); inside an off-peak window it
offers queued questions, oldest paid first, each to one answerer, at most
``release_max_per_run`` per run, so a window's work is spread over the window instead of
landing at its first minute. Outside a window only *urgent* questions are
offered: those with less than ``urgent_hours`` left before their deadline. A question whose
deadline has passed is never offered (the ``refund-overdue`` job refunds it).

An answerer is eligible for a question when they are an active answerer, not its asker, speak
its language, are inside their own daily available hours, are under their daily limit and
their open-offer limit, never declined it, and their yearly earnings ceiling (many pensions and
disability benefits have one) leaves room for it: what they earned since 1 January in *their
own* time zone, plus their share of every question they hold that may still pay them (offered,
claimed, answered, clarifying, disputed), plus their share of this question, must not pass the
ceiling. Among the eligible, income is spread fairly: least earned first — earned over the last
30 days plus the shares of the questions they hold, so an offer made earlier in the same run
counts at once — then least recently offered, then lowest id (an answerer whose earlier offer of
the same question expired goes last).

Set-based: a run's cost follows the offers it makes and the answerers with room, not the length
of the queue or the number of busy answerers. One statement picks the answerers with room (open
work under their limit, counted by an index per answerer) and reads their numbers (today's
offers, the shares of the questions they hold, their income from the running totals
``ledger.post`` keeps, ``IncomeMark``). The queue is read a page at a time (``QUEUE_PAGE``
rows of a few columns, oldest paid first, only in languages someone with room speaks) and
only until the run's offers are made or nobody has room left.

The other jobs return questions to the queue (expired offers and locks), refund questions whose
deadline passed, and accept answers the asker left alone for ``auto_accept_days``. Every job
takes ``now`` so tests drive time directly; every state change goes through ``questions``.
"""

from __future__ import annotations

import logging
from bisect import insort
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, bindparam, case, func, literal, or_, select
from sqlalchemy.orm import Session

from . import earnings, money, payments, questions, settings
from .dbtypes import one_of
from .models import (
    AnswererProfile,
    Offer,
    Question,
    User,
)
from .offpeak import is_off_peak, local_minute, minute_in_daily_hours

log = logging.getLogger(__name__)
EARNINGS_PERIOD = timedelta(days=30)
#: Questions that hold an offer or a claim: they count toward the open-offer limit.
OPEN = ("offered", "claimed")
#: Questions that may still pay their answerer: their share counts toward the yearly ceiling
#: and the fair ranking until it is credited (or the question is refunded).
IN_PROGRESS = ("offered", "claimed", "answered", "clarifying", "disputed")
#: Queued questions read per query at most; a run reads another page only if the one before
#: did not give it its offers. The first page is ``FIRST_PAGE_PER_OFFER`` rows per offer the
#: run may make (most runs find their offers among the oldest questions), each next one twice
#: the one before, up to ``QUEUE_PAGE``.
QUEUE_PAGE = 200
FIRST_PAGE_PER_OFFER = 8
#: Above every real offer id: a choice made in this run, before its offer is written, is the
#: most recent offer of its answerer (ids grow with time).
PROVISIONAL_OFFER_ID = 1 << 62


@dataclass(frozen=True)
class Limits:
    """The columns of an answerer's profile the policy reads (not the whole row)."""

    languages: str
    timezone: str
    available_from_minute: int
    available_until_minute: int
    daily_limit: int
    open_offer_limit: int
    yearly_ceiling_cents: int | None

    @property
    def language_list(self) -> frozenset[str]:
        """The codes of ``languages`` (split once per distinct value: every question asks)."""
        return _language_codes(self.languages)


@lru_cache(maxsize=1024)
def _language_codes(languages: str) -> frozenset[str]:
    return frozenset(code for code in languages.split(",") if code)


@dataclass
class Candidate:
    """An answerer with room for an offer, and the numbers the release policy ranks them by."""

    user_id: int
    profile: Limits
    zone: ZoneInfo
    #: Credited in the last 30 days.
    earned_cents: int = 0
    #: Credited since 1 January 00:00 in the answerer's own time zone.
    earned_this_year_cents: int = 0
    #: Their share of the questions they hold that may still pay them (``IN_PROGRESS``).
    pending_cents: int = 0
    #: Id of the newest offer made to them: ids grow with time, and unlike timestamps they
    #: never tie, so "least recently offered" rotates strictly.
    last_offer_id: int = 0
    offers_today: int = 0
    open_count: int = 0
    declined: set[int] = field(default_factory=set)
    expired: set[int] = field(default_factory=set)

    @property
    def has_room(self) -> bool:
        """Under the daily and open-offer limits, and below the yearly ceiling."""
        p = self.profile
        return (self.offers_today < p.daily_limit and self.open_count < p.open_offer_limit
                and (p.yearly_ceiling_cents is None
                     or self.earned_this_year_cents + self.pending_cents
                     < p.yearly_ceiling_cents))

    def can_take(self, question: QueuedQuestion) -> bool:
        p = self.profile
        return (self.has_room
                and question.asker_id != self.user_id
                and question.language in p.language_list
                and question.id not in self.declined
                and (p.yearly_ceiling_cents is None
                     or self.earned_this_year_cents + self.pending_cents + question.share_cents
                     <= p.yearly_ceiling_cents))

    def took(self, offer_id: int, share_cents: int) -> None:
        """Count an offer chosen in this run at once (limits, ceiling and ranking)."""
        self.offers_today += 1
        self.open_count += 1
        self.pending_cents += share_cents
        self.last_offer_id = offer_id

    def gave_back(self, share_cents: int) -> None:
        """Undo :meth:`took`'s counts for an offer that could not be made."""
        self.offers_today -= 1
        self.open_count -= 1
        self.pending_cents -= share_cents


@dataclass(frozen=True)
class QueuedQuestion:
    """The columns of a queued question the policy reads (not its text)."""

    id: int
    asker_id: int
    language: str
    paid_at: datetime
    share_cents: int


def _local_midnight(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


#: The answerers' time zones seen by earlier runs in this process (it only grows: there are a
#: few hundred zones). The run's ``CASE`` on the zone has a branch for each; a zone too many
#: does no harm, and an answerer in a zone not seen yet makes the run read the zones and its
#: statement once more.
_ZONES_SEEN: set[str] = set()


def load_candidates(session: Session, now: datetime,
                    rules: settings.Settings) -> list[Candidate]:
    """The active answerers with room for an offer now, with their numbers, in one statement
    (:func:`_room_statement`). When it names a time zone no earlier run saw, the active
    answerers' zones are read and the statement is sent again, once."""
    rows, zones = _read_room(session, now, rules)
    if any(row.timezone not in zones for row in rows):
        p = AnswererProfile
        _ZONES_SEEN.update(session.connection().execute(
            select(p.timezone).where(p.active.is_(True)).distinct()).scalars())
        rows, zones = _read_room(session, now, rules)

    candidates = []
    for (user_id, *columns, open_count, held_cents, last_offer_id, offers_today, latest,
         before_period, before_year) in rows:
        limits = Limits(*columns)
        zone = zones.get(limits.timezone)
        if zone is None:  # the zone changed between the two readings: next run
            continue
        if not minute_in_daily_hours(zone.minute, limits.available_from_minute,
                                     limits.available_until_minute):
            continue
        latest = latest or 0
        candidate = Candidate(user_id, limits, zone.zone, open_count=open_count,
                              pending_cents=int(held_cents), last_offer_id=last_offer_id or 0,
                              offers_today=offers_today,
                              earned_cents=int(latest - (before_period or 0)),
                              earned_this_year_cents=int(latest - (before_year or 0)))
        if candidate.has_room:
            candidates.append(candidate)
    return candidates


def _read_room(session: Session, now: datetime,
               rules: settings.Settings) -> tuple[list, dict[str, _Zone]]:
    """Send :func:`_room_statement` for the zones seen so far, with this run's moments;
    returns its rows and those zones."""
    names = tuple(sorted(_ZONES_SEEN))
    zones = {name: _Zone(name, now) for name in names}
    params = {"commission_bps": rules.commission_bps, "period_start": now - EARNINGS_PERIOD}
    for n, name in enumerate(names):
        params[f"midnight_{n}"], params[f"new_year_{n}"] = zones[name].midnight, \
            zones[name].new_year
    statement = _room_statement(names, session.get_bind().dialect.name == "postgresql")
    return session.connection().execute(statement, params).all(), zones


@lru_cache(maxsize=4)
def _room_statement(zone_names: tuple[str, ...], lateral: bool):
    """The answerers under their open-offer limit (a count by index per answerer, made once,
    inside the database) and, for those only: their newest offer; their share of the
    questions they hold (summed in the database, ``money.payout_sql``); their offers since
    their own local midnight; and their income over the last 30 days and since their own
    1 January (``earnings.total_before``, the running totals). Each zone's midnight and New
    Year are worked out once in Python and chosen by the answerer's zone in SQL (a ``CASE``
    of a branch per zone in ``zone_names``; NULL for a zone not among them), so nothing is
    computed per answerer but the probes of their own rows. Built once per set of zones;
    the moments and the commission are parameters (:func:`_read_room`).

    ``lateral`` (PostgreSQL): the open work and the held shares come from one pass over the
    answerer's questions in progress (a ``LATERAL`` aggregate, ``ix_question_in_progress``)
    instead of two probes, about a tenth of the statement with 1 000 answerers; SQLite has
    no ``LATERAL`` and counts them apart."""
    p, q = AnswererProfile, Question
    commission = bindparam("commission_bps", type_=Integer)
    share = money.payout_sql(q.price_cents, func.coalesce(q.commission_bps, commission))
    columns = (p.user_id, p.languages, p.timezone, p.available_from_minute,
               p.available_until_minute, p.daily_limit, p.open_offer_limit,
               p.yearly_ceiling_cents)
    room = (select(*columns).join(User, User.id == p.user_id)
            .where(User.is_answerer.is_(True), p.active.is_(True), p.daily_limit > 0))
    if lateral:
        work = (select(func.count().filter(q.status.in_(OPEN)).label("open_count"),
                       func.coalesce(func.sum(share), 0).label("held"))
                .where(q.answerer_id == p.user_id, q.status.in_(IN_PROGRESS))
                .lateral("work"))
        room = (room.add_columns(work.c.open_count, work.c.held).join(work, literal(True))
                .cte("room").prefix_with("MATERIALIZED"))
        held = room.c.held
    else:
        room = room.add_columns(
            select(func.count()).where(q.answerer_id == p.user_id, q.status.in_(OPEN))
            .correlate(p).scalar_subquery().label("open_count")).cte("room")
        held = (select(func.coalesce(func.sum(share), 0))
                .where(q.answerer_id == room.c.user_id, q.status.in_(IN_PROGRESS))
                .correlate(room).scalar_subquery())
    last_offer = (select(func.max(Offer.id)).where(Offer.answerer_id == room.c.user_id)
                  .correlate(room).scalar_subquery())
    moment = Offer.offered_at.type

    def by_zone(which: str):
        """The row's zone's moment ``which`` (a parameter per zone)."""
        if not zone_names:
            return literal(None, moment)
        return case({name: bindparam(f"{which}_{n}", type_=moment)
                     for n, name in enumerate(zone_names)}, value=room.c.timezone)

    today = (select(func.count()).where(Offer.answerer_id == room.c.user_id,
                                        Offer.offered_at >= by_zone("midnight"))
             .correlate(room).scalar_subquery())
    return (select(*(room.c[column.key] for column in columns), room.c.open_count, held,
                   last_offer, today,
                   earnings.total_before(room.c.user_id, None),
                   earnings.total_before(room.c.user_id,
                                         bindparam("period_start", type_=moment)),
                   earnings.total_before(room.c.user_id, by_zone("new_year")))
            .where(room.c.open_count < room.c.open_offer_limit)
            .order_by(room.c.user_id))


class _Zone:
    """An answerer's time zone as the run reads it: ``now``'s local minute after midnight,
    and the moments (in UTC) of local midnight today and of local New Year."""

    def __init__(self, name: str, now: datetime) -> None:
        self.zone = ZoneInfo(name)
        self.minute = local_minute(now, self.zone)[1]
        self.midnight = _local_midnight(now, self.zone)
        self.new_year = earnings.year_start(now, self.zone)


def _queued_pages(session: Session, now: datetime, rules: settings.Settings, in_window: bool,
                  languages: set[str]):
    """Queued questions not past their deadline, in the given languages, oldest paid first, a
    page at a time (keyset on ``(paid_at, id)``; pages grow from ``FIRST_PAGE_PER_OFFER`` rows
    per offer of the run to ``QUEUE_PAGE``)."""
    query = (select(Question.id, Question.asker_id, Question.language, Question.paid_at,
                    money.payout_sql(Question.price_cents, func.coalesce(
                        Question.commission_bps, rules.commission_bps)))
             .where(Question.status == "queued", Question.deadline_at > now,
                    Question.language.in_(sorted(languages)))
             .order_by(Question.paid_at, Question.id))
    if not in_window:
        query = query.where(Question.deadline_at < now + timedelta(hours=rules.urgent_hours))
    after = None
    size = min(QUEUE_PAGE, FIRST_PAGE_PER_OFFER * rules.release_max_per_run)
    while True:
        page_query = query if after is None else query.where(or_(
            Question.paid_at > after.paid_at,
            and_(Question.paid_at == after.paid_at, Question.id > after.id)))
        page = [QueuedQuestion(*row)
                for row in session.connection().execute(page_query.limit(size))]
        if page:
            yield page
        if len(page) < size:
            return
        after = page[-1]
        size = min(QUEUE_PAGE, 2 * size)


def _read_refusals(session: Session, page: list[QueuedQuestion],
                   candidates: list[Candidate]) -> None:
    """Note which of the page's questions each candidate declined, or let expire (the page's
    refusals are few: read them all, keep the candidates')."""
    by_id = {c.user_id: c for c in candidates}
    dialect = session.get_bind().dialect.name
    for answerer_id, question_id, outcome in session.connection().execute(
        select(Offer.answerer_id, Offer.question_id, Offer.outcome)
        .where(one_of(dialect, Offer.question_id, [q.id for q in page]),
               Offer.outcome.in_(("declined", "expired")))
    ):
        c = by_id.get(answerer_id)
        if c is not None:
            (c.declined if outcome == "declined" else c.expired).add(question_id)


def _standing(candidate: Candidate) -> tuple[int, int, int]:
    """How the policy ranks answerers who may take a question and did not let it expire: least
    earned (with the shares they hold), then least recently offered, then lowest id."""
    return (candidate.earned_cents + candidate.pending_cents, candidate.last_offer_id,
            candidate.user_id)


def _choose(pending: list[QueuedQuestion], everyone: list[Candidate],
            wanted: int) -> tuple[list[tuple[QueuedQuestion, Candidate]], list[QueuedQuestion]]:
    """Choose an answerer for each question of ``pending`` in order, as the policy ranks them,
    until ``wanted`` are chosen or nobody has room; each choice counts at once (its offer id
    is provisional until it is written). Returns the choices and the questions not looked
    at.

    The answerers are kept sorted by :func:`_standing`, so a question takes the first who may
    take it (or, when all who may let it expire before, the first of those) and usually looks
    at a few; the one chosen moves to their new place."""
    order = sorted(everyone, key=_standing)
    chosen = []
    for n, queued in enumerate(pending):
        best = let_expire = None
        for c in order:
            if c.can_take(queued):
                if queued.id not in c.expired:
                    best = c
                    break
                let_expire = let_expire or c
        best = best or let_expire
        if best is None:
            continue
        chosen.append((queued, best))
        order.remove(best)
        best.took(PROVISIONAL_OFFER_ID + len(chosen), queued.share_cents)
        insort(order, best, key=_standing)
        if len(chosen) >= wanted or not any(c.has_room for c in order):
            return chosen, pending[n + 1:]
    return chosen, []


def release_due_questions(session: Session, now: datetime, *,
                          ignore_window: bool = False) -> list[Offer]:
    """Offer queued questions to answerers, as the policy above says. Returns the offers.

    A page's choices are made first and written together (``questions.offer_many``). A
    question that changed since it was read (the asker cancelled) is not offered: its
    answerer's counts are given back and the rest of the page is chosen again."""
    rules = settings.current(session)
    in_window = ignore_window or is_off_peak(now, rules)
    if rules.release_max_per_run <= 0:
        return []
    everyone = load_candidates(session, now, rules)
    made: list[Offer] = []
    if not everyone:
        return made
    languages = {code for c in everyone for code in c.profile.language_list}
    for page in _queued_pages(session, now, rules, in_window, languages):
        _read_refusals(session, page, everyone)
        pending = page
        while pending:
            last_before = {c.user_id: c.last_offer_id for c in everyone}
            chosen, pending = _choose(pending, everyone, rules.release_max_per_run - len(made))
            offers = {o.question_id: o for o in questions.offer_many(
                session, [(q.id, c.user_id) for q, c in chosen], now, rules)}
            for _, candidate in chosen:
                candidate.last_offer_id = last_before[candidate.user_id]
            for queued, candidate in chosen:
                if queued.id in offers:
                    made.append(offers[queued.id])
                    candidate.last_offer_id = offers[queued.id].id  # ids grow in this order
                else:  # changed meanwhile: nothing to offer
                    candidate.gave_back(queued.share_cents)
            if len(made) >= rules.release_max_per_run or not any(
                    c.has_room for c in everyone):
                return made
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
