"""Answerer vetting: applications, eligibility, approval, rejection, suspension.

UPSS exists for answerers who are 65 or over, or living with a disability (or both). The
applicant declares the basis; no medical document is ever uploaded or stored. The organizer
checks it outside the system and records how (method, date, who, note). Every organizer
decision is written to the audit log in the same commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import access, audit, money, notifications, questions
from .models import LANGUAGES, AnswererApplication, AnswererProfile, User, utcnow
from .questions import TOPICS
from .sepa import InvalidIBAN, validate_iban

MINIMUM_AGE = 65
BASES = ("age", "disability", "both")
#: What the audit log keeps of a profile when it changes. Not the IBAN: the log is
#: append-only, and an erased account's IBAN must not stay in it (``account_deletion``).
_PROFILE_FIELDS = ("active", "languages", "daily_limit", "yearly_ceiling_cents",
                   "payout_method")


class VettingError(Exception):
    """An application or decision breaks a rule; ``field`` names the field, if any."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ApplicationData:
    basis: str
    birth_year: int | None
    languages: tuple[str, ...]
    topics: tuple[str, ...]
    available_from_minute: int
    available_until_minute: int
    daily_limit: int
    yearly_ceiling_cents: int | None
    payout_method: str
    iban: str | None
    account_holder: str | None


def check(data: ApplicationData, today: date) -> ApplicationData:
    """The application's rules; returns the data with the IBAN normalised."""
    if data.basis not in BASES:
        raise VettingError("unknown eligibility basis", "basis")
    if data.basis in ("age", "both"):
        if data.birth_year is None:
            raise VettingError("birth year needed for the age basis", "birth_year")
        if not 1900 <= data.birth_year <= today.year - MINIMUM_AGE:
            raise VettingError(f"must be {MINIMUM_AGE} or over this year", "birth_year")
    if not data.languages or any(code not in LANGUAGES for code in data.languages):
        raise VettingError("choose at least one known language", "languages")
    if any(topic not in TOPICS for topic in data.topics):
        raise VettingError("unknown topic", "topics")
    if not 1 <= data.daily_limit <= 50:
        raise VettingError("daily limit must be 1 to 50", "daily_limit")
    if data.yearly_ceiling_cents is not None and not (
            0 < data.yearly_ceiling_cents <= money.MAX_AMOUNT_CENTS):
        raise VettingError("the yearly ceiling must be above zero and not too large",
                           "yearly_ceiling")
    iban = data.iban
    if data.payout_method == "sepa":
        try:
            iban = validate_iban(data.iban or "")
        except InvalidIBAN:
            raise VettingError("not a valid IBAN", "iban") from None
        if not (data.account_holder or "").strip():
            raise VettingError("the account holder's name is needed", "account_holder")
    elif data.payout_method == "connect":
        iban = None
    else:
        raise VettingError("unknown payout method", "payout_method")
    return ApplicationData(**{**data.__dict__, "iban": iban})


def apply(session: Session, user: User, data: ApplicationData, now: datetime
          ) -> AnswererApplication:
    """Store an application to answer (one pending application per person)."""
    data = check(data, now.date())
    pending = session.scalar(select(AnswererApplication).where(
        AnswererApplication.user_id == user.id, AnswererApplication.status == "pending"))
    if pending is not None:
        raise VettingError("you already have an application waiting")
    if user.is_answerer:
        raise VettingError("you are already an answerer")
    if not access.may_apply_to_answer(user):
        raise VettingError("confirm your e-mail address before applying")
    application = AnswererApplication(
        user_id=user.id, basis=data.basis, birth_year=data.birth_year,
        languages=",".join(data.languages), topics=",".join(data.topics),
        available_from_minute=data.available_from_minute,
        available_until_minute=data.available_until_minute, daily_limit=data.daily_limit,
        yearly_ceiling_cents=data.yearly_ceiling_cents, payout_method=data.payout_method,
        iban=data.iban, account_holder=(data.account_holder or "").strip() or None,
        submitted_at=now)
    session.add(application)
    session.flush()
    return application


def may_decide(application: AnswererApplication, organizer: User) -> bool:
    """Whether ``organizer`` may approve or reject ``application`` now."""
    return application.status == "pending" and application.user_id != organizer.id


def _decidable(application: AnswererApplication, organizer: User) -> None:
    """Pending, and not the organizer's own (nobody decides their own application)."""
    if application.status != "pending":
        raise VettingError(f"this application is already {application.status}")
    if application.user_id == organizer.id:
        raise VettingError("you cannot decide your own application: another organizer must")


def approve(session: Session, application: AnswererApplication, organizer: User, *,
            method: str, verified_on: date, note: str, now: datetime) -> AnswererProfile:
    """Approve: record how eligibility was verified and make the applicant an answerer."""
    _decidable(application, organizer)
    method = (method or "").strip()
    if not method:
        raise VettingError("say how eligibility was verified", "method")
    if verified_on > now.date():
        raise VettingError("the verification date is in the future", "verified_on")
    before = audit.snapshot(application, ("status",))
    application.status, application.decided_at, application.decided_by_id = (
        "approved", now, organizer.id)
    application.verification_method, application.verified_on = method, verified_on
    application.verification_note = (note or "").strip() or None
    user = application.user
    user.is_answerer = True
    profile = session.get(AnswererProfile, user.id) or AnswererProfile(user_id=user.id)
    profile.languages, profile.topics = application.languages, application.topics
    profile.available_from_minute = application.available_from_minute
    profile.available_until_minute = application.available_until_minute
    profile.daily_limit = application.daily_limit
    profile.yearly_ceiling_cents = application.yearly_ceiling_cents
    profile.payout_method, profile.iban = application.payout_method, application.iban
    profile.account_holder = application.account_holder
    profile.active = True
    session.add(profile)
    session.flush()
    audit.record(session, organizer, "approve application", f"application:{application.id}",
                 before, {**audit.snapshot(application, (
                     "status", "verification_method", "verified_on", "verification_note")),
                     "user_id": user.id})
    notifications.enqueue(session, user, "application_approved", {
        "connect": application.payout_method == "connect"}, now)
    return profile


def reject(session: Session, application: AnswererApplication, organizer: User, *,
           reason: str, now: datetime) -> None:
    """Reject with a reason the applicant can read."""
    _decidable(application, organizer)
    reason = (reason or "").strip()
    if not reason:
        raise VettingError("give a reason", "reason")
    before = audit.snapshot(application, ("status",))
    application.status, application.decided_at, application.decided_by_id = (
        "rejected", now, organizer.id)
    application.rejection_reason = reason
    session.flush()
    audit.record(session, organizer, "reject application", f"application:{application.id}",
                 before, audit.snapshot(application, ("status", "rejection_reason")))
    notifications.enqueue(session, application.user, "application_rejected",
                          {"reason": reason}, now)


def set_suspended(session: Session, answerer: User, organizer: User, suspended: bool,
                  reason: str = "", now: datetime | None = None) -> None:
    """Suspend or reinstate an answerer. Suspension takes effect at once: no more offers,
    claims, answers or replies, and their work in progress is handed back
    (``questions.withdraw_from_answerer``)."""
    profile = session.get(AnswererProfile, answerer.id)
    if profile is None:
        raise VettingError("not an answerer")
    if profile.active == (not suspended):
        return
    before = audit.snapshot(profile, _PROFILE_FIELDS)
    profile.active = not suspended
    session.flush()
    withdrawn = []
    if suspended:
        withdrawn = questions.withdraw_from_answerer(session, answerer, now or utcnow(),
                                                     organizer)
    audit.record(session, organizer, "suspend answerer" if suspended else "reinstate answerer",
                 f"user:{answerer.id}", before,
                 {**audit.snapshot(profile, _PROFILE_FIELDS), "reason": reason,
                  **({"questions_withdrawn": withdrawn} if withdrawn else {})})
    # Only on a change (the same decision again returned above): sent once.
    notifications.enqueue(session, answerer, "suspension", {"suspended": suspended}, now)
