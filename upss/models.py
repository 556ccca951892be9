"""SQLAlchemy models. Money is always an integer of minor units plus an ISO currency code."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship

from .dbtypes import UTCDateTime
from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


#: The question states of DESIGN.md; ``upss.questions`` is the only code that changes them.
QUESTION_STATES = (
    "draft", "awaiting_payment", "queued", "offered", "claimed", "answered",
    "clarifying", "closed", "disputed", "refunded",
)
#: The languages of UPSS: of its pages, of questions and of answerers. The one list (codes and
#: each language's own name); a new language is added here and in ``translations/``.
LANGUAGE_NAMES = {"en": "English", "nb": "Norsk bokmål", "fi": "Suomi", "sv": "Svenska",
                  "sl": "Slovenščina"}
LANGUAGES = tuple(LANGUAGE_NAMES)


class User(UserMixin, db.Model):
    __tablename__ = "user"
    #: The organizer's list of answerers, by name, a page at a time (``upss.lists``).
    __table_args__ = (Index("ix_user_name_id", "name", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-cased, so sign-in is case-insensitive and unique.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_answerer: Mapped[bool] = mapped_column(default=False)
    is_organizer: Mapped[bool] = mapped_column(default=False)
    #: Preferred interface language; empty means "from the browser".
    locale: Mapped[str] = mapped_column(String(5), default="")
    #: Display preferences, remembered across sessions and devices.
    large_text: Mapped[bool] = mapped_column(default=False)
    high_contrast: Mapped[bool] = mapped_column(default=False)
    #: The local hour (0–23) of the daily digest of the messages they chose to get that way.
    digest_hour: Mapped[int] = mapped_column(Integer, default=8)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the person opened the link sent to their address (None: not confirmed yet).
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: They asked to delete the account; it is erased after the grace period unless they sign
    #: in before (``upss.account_deletion``).
    deletion_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: The account was erased: personal data replaced, only the pseudonym is left.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Not a column: how many of their messages they have not read, loaded with the signed-in
    #: user in the request's one session statement (``sessions.check``) for the pages' header
    #: (and again whenever that user is reloaded after a commit); None when the user was
    #: loaded any other way.
    unread_messages: Mapped[int | None] = query_expression()

    questions: Mapped[list[Question]] = relationship(back_populates="asker",
                                                     foreign_keys="Question.asker_id")


class UserSession(db.Model):
    """One signed-in browser: ``upss.sessions`` starts, checks and ends it.

    The browser's signed cookie holds a random token; only its SHA-256 is stored, so reading
    this table does not let anyone sign in. A session ends when it is signed out, when "sign
    out everywhere" (or a password change) ends it, or when it is idle or old (settings).
    """

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why it ended: signed_out, signed_out_everywhere, other_sessions_ended, idle, expired.
    end_reason: Mapped[str | None] = mapped_column(String(30))

    #: Loaded with the session (one query for both on every signed-in request).
    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class OrganizerSettings(db.Model):
    """The organizer's business settings: one row, written whole by ``settings.save``; until
    it exists the ``UPSS_*`` defaults of ``upss/config.py`` are in force."""

    __tablename__ = "organizer_settings"
    __table_args__ = (
        CheckConstraint("price_min_cents > 0 AND price_max_cents >= price_min_cents",
                        name="price_bounds"),
        CheckConstraint("commission_bps BETWEEN 0 AND 10000", name="commission_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    price_min_cents: Mapped[int] = mapped_column(Integer)
    price_max_cents: Mapped[int] = mapped_column(Integer)
    #: Organizer's share in basis points (1000 = 10 %).
    commission_bps: Mapped[int] = mapped_column(Integer)
    #: IANA zone the off-peak windows are written in.
    timezone: Mapped[str] = mapped_column(String(64))
    offer_hours: Mapped[int] = mapped_column(Integer)
    lock_hours: Mapped[int] = mapped_column(Integer)
    #: Lock time for questions priced at ``large_price_cents`` or more.
    lock_hours_large: Mapped[int] = mapped_column(Integer)
    large_price_cents: Mapped[int] = mapped_column(Integer)
    #: Hours from payment until an unanswered question is refunded.
    deadline_hours: Mapped[int] = mapped_column(Integer)
    auto_accept_days: Mapped[int] = mapped_column(Integer)
    #: A question with less than this many hours left is offered even outside a window.
    urgent_hours: Mapped[int] = mapped_column(Integer)
    #: At most this many offers per run of the ``release`` job (``upss.jobs``), so a window's
    #: work is spread out.
    release_max_per_run: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OffPeakWindow(db.Model):
    """An off-peak window in the organizer's timezone; ``end <= start`` crosses midnight."""

    __tablename__ = "offpeak_window"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("start_minute BETWEEN 0 AND 1439 AND end_minute BETWEEN 0 AND 1440 "
                        "AND start_minute <> end_minute", name="minutes_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Monday is 0: the window starts on this local weekday.
    weekday: Mapped[int] = mapped_column(Integer)
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)


class AnswererProfile(db.Model):
    """What the release policy needs to know about an answerer."""

    __tablename__ = "answerer_profile"
    __table_args__ = (
        CheckConstraint("daily_limit >= 0 AND open_offer_limit >= 0", name="limits"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    #: Comma-separated language codes, e.g. "en,fi".
    languages: Mapped[str] = mapped_column(String(40), default="en")
    #: Daily hours the answerer is available, in ``timezone``; until <= from crosses midnight.
    available_from_minute: Mapped[int] = mapped_column(Integer, default=0)
    available_until_minute: Mapped[int] = mapped_column(Integer, default=1440)
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Oslo")
    #: Most offers per local day.
    daily_limit: Mapped[int] = mapped_column(Integer, default=5)
    #: Most questions offered to or claimed by them at once.
    open_offer_limit: Mapped[int] = mapped_column(Integer, default=2)
    active: Mapped[bool] = mapped_column(default=True)
    #: Comma-separated topic keys the answerer prefers (empty: any).
    topics: Mapped[str] = mapped_column(String(200), default="")
    #: Offers stop once this calendar year's earnings reach it (benefit rules); empty: none.
    yearly_ceiling_cents: Mapped[int | None] = mapped_column(BigInteger)
    #: "sepa" (IBAN, bank transfer file) or "connect" (Stripe Connect account).
    payout_method: Mapped[str] = mapped_column(String(10), default="sepa")
    #: Normalised IBAN for SEPA payouts (validated with schwifty).
    iban: Mapped[str | None] = mapped_column(String(34))
    account_holder: Mapped[str | None] = mapped_column(String(70))
    stripe_account_id: Mapped[str | None] = mapped_column(String(255))
    #: The Connect account's state as Stripe last reported it (``account.updated``):
    #: onboarding finished, and able to receive transfers (capability ``transfers`` active).
    connect_details_submitted: Mapped[bool] = mapped_column(default=False)
    connect_payouts_enabled: Mapped[bool] = mapped_column(default=False)
    #: What Stripe still needs (``requirements.currently_due``), comma-separated.
    connect_requirements: Mapped[str] = mapped_column(String(500), default="")
    connect_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Payouts refused by the bank or Stripe in a row; each one doubles the pause.
    payout_failures: Mapped[int] = mapped_column(Integer, default=0)
    #: No payout is tried before this time (after refusals).
    payouts_held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Optional messages may arrive outside the available hours (else they wait for them).
    messages_outside_hours: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship()

    @property
    def language_list(self) -> list[str]:
        return [code for code in self.languages.split(",") if code]


#: A question in progress (``release.IN_PROGRESS``), as ``ix_question_in_progress``'s condition.
_IN_PROGRESS_SQL = "status IN ('offered', 'claimed', 'answered', 'clarifying', 'disputed')"


class Question(db.Model):
    __tablename__ = "question"
    __table_args__ = (
        CheckConstraint("price_cents > 0", name="price_positive"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in QUESTION_STATES) + ")",
            name="status_known",
        ),
        Index("ix_question_status_paid_at", "status", "paid_at"),
        # The traffic page counts a window of payments and answers (``upss.charts``). Partial,
        # so that it cannot serve an order by ``paid_at`` alone: the release's page of the
        # queue then reads ``ix_question_queue`` (below), not every closed question first.
        Index("ix_question_paid_at", "paid_at",
              sqlite_where=text("paid_at IS NOT NULL"),
              postgresql_where=text("paid_at IS NOT NULL")),
        Index("ix_question_answered_at", "answered_at"),
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
        # Keyset pages (``upss.lists``): an asker's questions; the rejected answers.
        Index("ix_question_asker_id_id", "asker_id", "id"),
        Index("ix_question_status_id", "status", "id"),
        # The release (``upss.release``): an answerer's open work, counted by index alone.
        Index("ix_question_answerer_id_status", "answerer_id", "status"),
        # The release counts each answerer's open work and sums the shares of what they hold
        # from this alone (migration 0020; the statuses are ``release.IN_PROGRESS``).
        Index("ix_question_in_progress", "answerer_id", "status", "price_cents",
              "commission_bps", sqlite_where=text(_IN_PROGRESS_SQL),
              postgresql_where=text(_IN_PROGRESS_SQL)),
        # An answerer's queue lists the questions whose asker wants more detail a page at a
        # time, oldest first (migration 0021).
        Index("ix_question_clarifying", "answerer_id", "id",
              sqlite_where=text("status = 'clarifying'"),
              postgresql_where=text("status = 'clarifying'")),
        # The release reads the queue oldest paid first, a page at a time: only queued rows,
        # in that order.
        Index("ix_question_queue", "paid_at", "id",
              sqlite_where=text("status = 'queued'"),
              postgresql_where=text("status = 'queued'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    asker_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    title: Mapped[str] = mapped_column(String(150))
    body: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(5))
    topic: Mapped[str] = mapped_column(String(40))
    price_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    #: The PaymentIntent currently used to pay for this question (a new one after a decline).
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: How many PaymentIntents have been created; part of each one's idempotency key.
    payment_attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Why the last payment attempt failed, in words the asker can act on; cleared on success.
    payment_error: Mapped[str | None] = mapped_column(String(500))
    #: When payment started (draft -> awaiting_payment); Stripe is asked about it for a while.
    payment_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When to ask Stripe next whether it is paid (a webhook may be lost); None: not asking.
    payment_check_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: How often Stripe was asked; each gap is twice the one before.
    payment_checks: Mapped[int] = mapped_column(Integer, default=0)
    #: When UPSS stopped asking Stripe (shown on the question).
    payment_checks_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Commission rate frozen when the question is paid.
    commission_bps: Mapped[int | None] = mapped_column(Integer)
    #: Frozen when paid: unanswered by then, the question is refunded.
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The answerer it is offered to, claimed by, or answered by.
    answerer_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    offer_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lock_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answer_body: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why the asker rejected the answer.
    dispute_reason: Mapped[str | None] = mapped_column(String(2000))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    #: A refund's progress: requested (committed, not yet sent), sent (Stripe has it),
    #: unknown (no clear answer: looked up later), failed (Stripe refused; the organizer acts).
    refund_status: Mapped[str | None] = mapped_column(String(20), index=True)
    refund_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refund_failure: Mapped[str | None] = mapped_column(String(500))
    #: Everything refunded of this question's payment so far (by UPSS or at Stripe).
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0)
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(String(2000))
    #: The lock end the answerer was reminded of (a new or longer lock is reminded again).
    lock_reminded_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The answer time whose coming auto-accept the asker was reminded of (a clarification
    #: reply restarts the clock, and the reminder).
    accept_reminded_for: Mapped[datetime | None] = mapped_column(UTCDateTime)

    asker: Mapped[User] = relationship(back_populates="questions", foreign_keys=[asker_id])
    answerer: Mapped[User | None] = relationship(foreign_keys=[answerer_id])
    messages: Mapped[list[Message]] = relationship(order_by="Message.id")
    events: Mapped[list[QuestionEvent]] = relationship(
        back_populates="question", order_by="QuestionEvent.id"
    )


class QuestionEvent(db.Model):
    """One row per state change of a question: who, when, from, to."""

    __tablename__ = "question_event"
    #: The traffic page's queue depth reads only its window's events.
    __table_args__ = (Index("ix_question_event_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("question.id"), index=True)
    #: The user who acted; empty when Stripe or the scheduler did.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    #: "user", "stripe" or "scheduler".
    actor_kind: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(String(500), default="")

    question: Mapped[Question] = relationship(back_populates="events")


class Offer(db.Model):
    """One offer of a question to one answerer, and how it ended."""

    __tablename__ = "offer"
    __table_args__ = (
        Index("ix_offer_answerer_offered_at", "answerer_id", "offered_at"),
        Index("ix_offer_offered_at", "offered_at"),  # the traffic page's window of offers
        #: The release's "least recently offered": an answerer's newest offer, one index probe.
        Index("ix_offer_answerer_id_id", "answerer_id", "id"),
        #: An answerer's lapsed drafts, a page at a time (``upss.lists.lapsed_drafts``).
        Index("ix_offer_answerer_id_outcome_question_id", "answerer_id", "outcome",
              "question_id"),
        CheckConstraint("outcome IN ('open', 'claimed', 'declined', 'expired', 'withdrawn', "
                        "'lapsed')", name="outcome_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("question.id"), index=True)
    answerer_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: open; claimed; declined; expired (nobody picked it up in time); withdrawn (the answerer
    #: was suspended); lapsed: claimed, then the lock ran out or the answerer was suspended
    #: before they answered (their draft is kept: ``upss.lists.lapsed_drafts``).
    outcome: Mapped[str] = mapped_column(String(20), default="open")
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AnswerDraft(db.Model):
    """An answer being written: saved as the answerer types, kept when a lock expires."""

    __tablename__ = "answer_draft"

    question_id: Mapped[int] = mapped_column(ForeignKey("question.id"), primary_key=True)
    answerer_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    body: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(db.Model):
    """A clarification asked by the asker or given by the answerer."""

    __tablename__ = "message"

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("question.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    #: "clarification_request" (asker) or "clarification_reply" (answerer).
    kind: Mapped[str] = mapped_column(String(30))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[User] = relationship()


class Tip(db.Model):
    """A thank-you paid by the asker on top of the price: all of it goes to the answerer."""

    __tablename__ = "tip"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("question.id"), index=True)
    answerer_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: "awaiting_payment" until Stripe confirms, then "paid".
    status: Mapped[str] = mapped_column(String(20), default="awaiting_payment")
    payment_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SchedulerLease(db.Model):
    """SQLite's scheduler lease: one row, held by one process until it expires."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRun(db.Model):
    """One run of a scheduler job: which process ran it, when, and what it did."""

    __tablename__ = "job_run"
    __table_args__ = (Index("ix_job_run_job_id_started_at", "job_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    holder: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: e.g. "3 offered", or the error.
    outcome: Mapped[str] = mapped_column(String(500), default="")


class AnswererApplication(db.Model):
    """Someone applying to answer. No medical documents are stored: the applicant declares the
    basis, and the organizer records how it was verified."""

    __tablename__ = "answerer_application"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status_known"),
        CheckConstraint("basis IN ('age', 'disability', 'both')", name="basis_known"),
        CheckConstraint("payout_method IN ('sepa', 'connect')", name="payout_method_known"),
        #: Waiting and decided applications, a page at a time (``upss.lists.applications``).
        Index("ix_answerer_application_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    #: "age" (65 or over), "disability", or "both": declared by the applicant.
    basis: Mapped[str] = mapped_column(String(12))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    languages: Mapped[str] = mapped_column(String(40))
    topics: Mapped[str] = mapped_column(String(200), default="")
    available_from_minute: Mapped[int] = mapped_column(Integer, default=0)
    available_until_minute: Mapped[int] = mapped_column(Integer, default=1440)
    daily_limit: Mapped[int] = mapped_column(Integer, default=5)
    yearly_ceiling_cents: Mapped[int | None] = mapped_column(BigInteger)
    payout_method: Mapped[str] = mapped_column(String(10), default="sepa")
    iban: Mapped[str | None] = mapped_column(String(34))
    account_holder: Mapped[str | None] = mapped_column(String(70))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    rejection_reason: Mapped[str | None] = mapped_column(String(2000))
    #: How the organizer verified eligibility (e.g. "ID card seen at library meeting").
    verification_method: Mapped[str | None] = mapped_column(String(200))
    verified_on: Mapped[date | None] = mapped_column(Date)
    verification_note: Mapped[str | None] = mapped_column(String(2000))

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])


class AuditLog(db.Model):
    """Every organizer action: who, when, what, before and after. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(100))
    #: JSON of the values before and after the action.
    before: Mapped[str] = mapped_column(Text, default="{}")
    after: Mapped[str] = mapped_column(Text, default="{}")

    actor: Mapped[User | None] = relationship()


class PayoutBatch(db.Model):
    """One run of the payout batch: Connect transfers and/or one SEPA credit-transfer file."""

    __tablename__ = "payout_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The organizer who pressed the button; empty when the weekly job ran it.
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    currency: Mapped[str] = mapped_column(String(3))
    #: pain.001 XML for the bank, if any answerer is paid by SEPA.
    sepa_xml: Mapped[str | None] = mapped_column(Text)
    sepa_marked_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sepa_marked_sent_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    #: The bank has paid the file: its money left the organizer's bank account.
    sepa_settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sepa_settled_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    payouts: Mapped[list[Payout]] = relationship(order_by="Payout.id")


#: Why a payout failed or is not confirmed, as a code; pages show each in the reader's language
#: (``upss.reasons.REASON_TEXTS``). ``other``: an old free-text reason no code fits
#: (migration 0010), kept as the payout's ``failure_reason``.
PAYOUT_FAILURE_CODES = (
    "transfer_refused", "no_clear_answer", "amount_differs", "not_at_stripe",
    "reversed_at_stripe", "returned_by_bank", "other",
)


class Payout(db.Model):
    __tablename__ = "payout"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint("status IN ('sending', 'sent', 'unknown', 'awaiting_bank', 'failed')",
                        name="status_known"),
        CheckConstraint("failure_code IN (" + ", ".join(
            f"'{code}'" for code in PAYOUT_FAILURE_CODES) + ")", name="failure_code_known"),
        #: An answerer's payouts, a page at a time (``upss.lists.answerer_payouts``).
        Index("ix_payout_answerer_id_id", "answerer_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("payout_batch.id"), index=True)
    answerer_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(10))
    #: sending (committed, transfer not yet answered), sent (Connect transfer made, or SEPA
    #: file marked sent), unknown (no clear answer from Stripe: looked up, never reversed),
    #: awaiting_bank (in a SEPA file), failed (refused: reversed in the ledger).
    status: Mapped[str] = mapped_column(String(20), index=True)
    #: Connect: the transfer's idempotency key and ``transfer_group`` (installation id +
    #: payout id), fixed when the row is committed, before Stripe is called.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255))
    iban: Mapped[str | None] = mapped_column(String(34))
    #: Why the payout failed or is not confirmed (one of ``PAYOUT_FAILURE_CODES``); empty
    #: while nothing went wrong. The words people read come from this code.
    failure_code: Mapped[str | None] = mapped_column(String(40))
    #: The detail behind ``failure_code`` for the organizer, as it came: Stripe's own message,
    #: the transfer's id, the reason the bank gave. Never shown to the answerer.
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    #: How often the transfer was sent, and when last.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    batch: Mapped[PayoutBatch] = relationship(back_populates="payouts")
    answerer: Mapped[User] = relationship()


class Installation(db.Model):
    """This installation's identity: one row, written once (see ``upss.installation``)."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Prefix of every Stripe idempotency key, so installations sharing a Stripe account
    #: (developers, CI, a demo) never collide.
    installation_id: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeEvent(db.Model):
    """Every Stripe webhook event we accepted, stored once by its id: a repeat does nothing."""

    __tablename__ = "stripe_event"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    #: The id of the object the event is about (e.g. the PaymentIntent).
    object_id: Mapped[str] = mapped_column(String(255), default="")
    #: What handling did: "applied", "ignored: <why>".
    outcome: Mapped[str] = mapped_column(String(255), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeDispute(db.Model):
    """A card dispute (chargeback or inquiry) as Stripe last reported it."""

    __tablename__ = "stripe_dispute"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: The question (or tip's question) whose payment is disputed; None if not ours.
    question_id: Mapped[int | None] = mapped_column(ForeignKey("question.id"), index=True)
    payment_intent_id: Mapped[str] = mapped_column(String(255), default="")
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: Stripe's status: warning_needs_response, needs_response, under_review, won, lost, …
    status: Mapped[str] = mapped_column(String(30), index=True)
    reason: Mapped[str] = mapped_column(String(60), default="")
    #: Stripe's ``evidence_details.due_by``: the organizer must respond by then.
    evidence_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReconciliationRun(db.Model):
    """One run of the incremental reconciliation job, with what it found."""

    __tablename__ = "reconciliation_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The newest balance transaction's ``created`` (Unix time) checked: the next run starts
    #: after it.
    checked_through: Mapped[int] = mapped_column(BigInteger, default=0)
    checked: Mapped[int] = mapped_column(Integer, default=0)
    #: JSON list of differences ({"what", "stripe_cents", "ledger_cents", "currency"}).
    differences: Mapped[str] = mapped_column(Text, default="[]")
    #: Stripe's balance and the ledger's stripe_balance at the end of the run (JSON by currency).
    stripe_balance: Mapped[str] = mapped_column(Text, default="{}")
    ledger_balance: Mapped[str] = mapped_column(Text, default="{}")
    error: Mapped[str | None] = mapped_column(String(500))


class LedgerAccount(db.Model):
    __tablename__ = "ledger_account"
    __table_args__ = (
        # The open accounts of a kind, by name, without walking the closed ones (a question's
        # escrow account stays at 0 once it is split or refunded).
        Index("ix_ledger_account_open_name", "name",
              sqlite_where=text("balance_cents <> 0"),
              postgresql_where=text("balance_cents <> 0")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: e.g. "stripe_balance", "escrow:question:12", "payable:answerer:3".
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: asset, liability, revenue, expense.
    type: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    #: Cached sum of this account's signed entries (debit +, credit -), updated with each post.
    balance_cents: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTransaction(db.Model):
    """A balanced, append-only ledger transaction, chained to the previous one by hash."""

    __tablename__ = "ledger_transaction"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Unique key of the business event, e.g. "payment:pi_123": posting it twice is a no-op.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(String(255))
    #: A reversing transaction points at the transaction it reverses.
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transaction.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Hash of the transaction before this one; unique, so the chain can never fork.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: How ``hash`` was made (``upss.ledger``: 1 first chain, 2 with the time, 3 keyed); it never
    #: goes down along the chain.
    hash_version: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    #: The chain hash of this transaction over the previous hash and its content.
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    entries: Mapped[list[LedgerEntry]] = relationship(
        back_populates="transaction", order_by="LedgerEntry.id"
    )


class LedgerEntry(db.Model):
    __tablename__ = "ledger_entry"
    __table_args__ = (CheckConstraint("amount_cents <> 0", name="amount_nonzero"),
                      # One account's statement, newest first, a page at a time.
                      Index("ix_ledger_entry_account_id_id", "account_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transaction.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"), index=True)
    #: Signed minor units: debit positive, credit negative.
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")
    account: Mapped[LedgerAccount] = relationship()


class IncomeMark(db.Model):
    """An answerer's running income, kept by ``ledger.post`` in the posting's transaction: one
    row per ledger transaction that credited their payable account (a reversal is not income),
    with what it credited and the total credited to them up to and including it, in
    ``(created_at, transaction_id)`` order. Income since any moment is the latest total minus
    the last total before that moment: two probes of the primary key per answerer, however long
    the ledger (``earnings.recent_and_yearly_income``). Derived from the ledger, not part of
    it: a full ``verify-ledger`` recomputes every row."""

    __tablename__ = "income_mark"

    answerer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transaction.id"),
                                                primary_key=True, autoincrement=False)
    credited_cents: Mapped[int] = mapped_column(BigInteger)
    total_cents: Mapped[int] = mapped_column(BigInteger)


#: A ledger check's state: asked for by the organizer, running, or finished.
LEDGER_CHECK_STATES = ("requested", "running", "done")


class LedgerCheck(db.Model):
    """One verification of the ledger (``upss.ledger_check``): the whole chain (``full``) or what
    was posted after the last checkpoint (``new``). A check that found nothing wrong is the
    next checkpoint: the transaction it verified up to, its hash, and the totals per kind of
    account at that point."""

    __tablename__ = "ledger_check"
    __table_args__ = (
        CheckConstraint("state IN ('requested', 'running', 'done')", name="state_known"),
        CheckConstraint("kind IN ('full', 'new')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(12), default="requested", index=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The last transaction this check verified (the checkpoint, when ``ok``), and its hash.
    through_transaction_id: Mapped[int | None] = mapped_column(Integer)
    through_hash: Mapped[str | None] = mapped_column(String(64))
    transactions_checked: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[bool | None] = mapped_column()
    #: JSON list of problems, the first break of the chain first (at most 50 kept).
    problems: Mapped[str] = mapped_column(Text, default="[]")
    #: JSON {"<kind> <currency>": signed cents} of every account at the checkpoint.
    totals: Mapped[str] = mapped_column(Text, default="{}")


class LedgerVerifiedBalance(db.Model):
    """An account's balance as the last checkpoint verified it, so the next incremental check
    compares cached balances with (verified + new entries) without summing old entries."""

    __tablename__ = "ledger_verified_balance"

    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_account.id"), primary_key=True)
    balance_cents: Mapped[int] = mapped_column(BigInteger)


#: What became of a notification: waiting to be sent (or retried), sent, failed for good, or
#: not sent because its recipient turned that kind off after it was written.
#: pending: to be sent; sent; failed (for good); skipped: not sent by e-mail (turned off, or no
#: longer true when its time came; still in the person's list); digest: waits for the person's
#: daily digest; digested: went out inside a digest message.
NOTIFICATION_STATES = ("pending", "sent", "failed", "skipped", "digest", "digested")
#: A person's choice per kind: at once, in the daily digest, or not by e-mail.
NOTIFICATION_MODES = ("now", "digest", "off")


class Notification(db.Model):
    """One message to one user, written by the service that changed state in the same
    transaction (the outbox); ``upss.notifications`` sends it. Its id makes the Message-ID."""

    __tablename__ = "notification"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in NOTIFICATION_STATES) + ")",
                        name="status_known"),
        Index("ix_notification_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_notification_user_id_read_at", "user_id", "read_at"),
        #: A person's messages, a page at a time (``notifications.notices_page``).
        Index("ix_notification_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    #: A name of ``upss.notifications.KINDS``.
    kind: Mapped[str] = mapped_column(String(40))
    #: What the message says (JSON): ids, amounts, times; the text is rendered when sent.
    data: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Not sent before this moment (a retry waits longer each time).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: A dispatcher took it until then; another may take it after (it died while sending).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(40))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The mail server's last answer when sending failed.
    last_error: Mapped[str | None] = mapped_column(String(500))
    #: When the person saw it in their list of messages on the site (None: unread).
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NotificationPreference(db.Model):
    """A user's choice for one kind of message; no row means "send at once"."""

    __tablename__ = "notification_preference"
    __table_args__ = (CheckConstraint(
        "mode IN (" + ", ".join(f"'{m}'" for m in NOTIFICATION_MODES) + ")", name="mode_known"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    mode: Mapped[str] = mapped_column(String(10), default="now")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


DATA_EXPORT_STATES = ("pending", "ready", "failed")


class DataExport(db.Model):
    """A copy of one person's data they asked for (GDPR Art. 15 and 20), made by a job and
    offered for download until ``expires_at``."""

    __tablename__ = "data_export"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in DATA_EXPORT_STATES) + ")",
                        name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The JSON file, once made; emptied when it expires.
    content: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
