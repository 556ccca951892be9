"""Messages to people: the transactional outbox, its dispatcher, and each person's choices.

The outbox
----------
The service that changes state calls :func:`enqueue` in the same database transaction: it only
adds a ``Notification`` row (the caller commits). A change that is rolled back therefore sends
nothing, and a committed one is always sent. :data:`KINDS` lists every kind of message: who
gets it and whether the person may turn it off (``optional``). Money and security messages are
not optional: they carry no unsubscribe link and cannot be turned off.

The dispatcher
--------------
:func:`dispatch_due` (the ``send-notifications`` job, and ``flask upss send-notifications``)
takes due rows in batches. It *claims* them first, in a short transaction of its own: on
PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` (a second dispatcher skips the rows the first
one is claiming instead of waiting), on SQLite a guarded conditional UPDATE (``WHERE status =
'pending' AND (claimed_until IS NULL OR claimed_until <= now)``; SQLite's ``BEGIN IMMEDIATE``
lets one writer in at a time). A claim lasts ``CLAIM_SECONDS``; another dispatcher takes the row
only after that, so several dispatchers can run side by side and each message is sent by one.

Each claimed row is rendered in its recipient's language (``force_locale``; the user's own
language, else English): a plain-text part and an HTML alternative made for screen readers
(a ``lang`` attribute, a title, headings-free short paragraphs, link texts that say where they
lead, no layout tables), from ``templates/email/message.txt`` and ``message.html``. It is then
sent through a sender (``upss.mailer``) and marked sent, one commit per message. This is
the one service that commits by itself (besides the two-phase Stripe calls): a message must not
be marked sent before the server has it, and must be marked as soon as it has.

Delivery is **at-least-once and deduplicable**: the Message-ID is derived from the row
(``<upss-notification-{id}@{domain}>``), so if the dispatcher dies between "the server took
it" and "marked sent", the claim runs out and the same message is sent again with the same
Message-ID, at most that one message per dispatcher. Mail clients and servers drop a repeated
Message-ID.

Failures: a temporary one (the server answered 4xx, refused the connection or did not answer)
is tried again later, each wait twice the one before (``RETRY_FIRST`` … ``RETRY_LONGEST``);
when the server cannot be reached, the rest of the batch waits as long without counting an
attempt. After ``MAX_ATTEMPTS`` tries, or at once on a permanent failure (5xx), the row is
kept as ``failed`` with the server's answer; the organizer's overview counts them.

Choices
-------
For each optional kind a person chooses (``NotificationPreference``) to get it at once, in a
daily digest at their ``digest_hour``, or not by e-mail; money and security kinds always come
at once (``Kind.modes``). ``enqueue`` follows the choice: a digest row waits (``digest``) until
:func:`gather_digests` puts the person's due rows into one ``digest`` message; a row turned
off is ``skipped``. Answerers are not woken: a message outside their available hours waits for
the start of those hours unless they chose otherwise. A kind may be turned off also without
signing in by the one-click link in the message (:func:`unsubscribe`, RFC 8058: a signed token
of user id and kind, made with the app's secret). A message already written when its kind is
turned off is not sent, nor one about something that has run out by then (``still_true``).

Every message, e-mailed or not, is in the person's list on the site (:func:`notices_page`,
:func:`unread_count` for the header), and those that failed for good are on their account page
(:func:`failed_for`).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import formataddr
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import force_locale, gettext
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import and_, bindparam, func, insert, null, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from . import mailer
from .models import (
    AnswererProfile,
    Notification,
    NotificationPreference,
    User,
    utcnow,
)
from .notification_texts import (
    KINDS,
    UNLISTED,
    Kind,
    about_payout,
    describe_digest,
    link,
    locale_of,
)
from .offpeak import daily_hours_contain
from .paging import Key, Page, keyset_page

__all__ = ["KINDS", "about_payout", "enqueue"]

log = logging.getLogger(__name__)

#: Rows claimed (and sent) per batch, and batches per run of the dispatcher.
BATCH = 50
MAX_BATCHES = 20
#: How long a claim lasts: another dispatcher takes the row after this (the first one died).
CLAIM_SECONDS = 300
#: Waits between tries after a temporary failure: 1 minute, 2, 4, … at most 4 hours; after
#: ``MAX_ATTEMPTS`` tries (about a day and a half) the message is kept as failed.
RETRY_FIRST = timedelta(minutes=1)
RETRY_LONGEST = timedelta(hours=4)
MAX_ATTEMPTS = 16
#: Salt of the unsubscribe tokens (signed with the app's secret key).
UNSUBSCRIBE_SALT = "upss-unsubscribe"


class NotificationError(Exception):
    """Base of this module's refusals."""


class BadToken(NotificationError):
    """The unsubscribe link is not one UPSS made (or was changed)."""


class NotOptional(NotificationError):
    """This kind of message cannot be turned off (money, security)."""




# --- the outbox ------------------------------------------------------------------------------

def mode(session: Session, user_id: int, kind: str) -> str:
    """The user's choice for ``kind``: "now" (the default), "digest" or "off"."""
    if not KINDS[kind].optional:
        return "now"
    chosen = session.get(NotificationPreference, (user_id, kind))
    return chosen.mode if chosen else "now"


def user_zone(session: Session, user: User) -> ZoneInfo:
    """The time zone the user lives in: an answerer's own, else the service's."""
    return _zone_of(session.get(AnswererProfile, user.id))


def _zone_of(profile: AnswererProfile | None) -> ZoneInfo:
    return ZoneInfo(profile.timezone if profile else
                    current_app.config["BABEL_DEFAULT_TIMEZONE"])


def _local_moments(now: datetime, zone: ZoneInfo, minute_of_day: int, days: range):
    """The moments ``minute_of_day`` minutes after local midnight in ``zone``, on the local
    dates ``days`` after ``now``'s (negative: before), in UTC."""
    local_day = now.astimezone(zone).date()
    wanted = time(minute_of_day // 60, minute_of_day % 60)
    for offset in days:
        yield datetime.combine(local_day + timedelta(days=offset), wanted,
                               tzinfo=zone).astimezone(UTC)


def next_local_time(now: datetime, zone: ZoneInfo, minute_of_day: int) -> datetime:
    """The first moment at or after ``now`` whose local time in ``zone`` is
    ``minute_of_day`` minutes after midnight (a time skipped by a clock change moves on)."""
    return next(m for m in _local_moments(now, zone, minute_of_day, range(3)) if m >= now)


def last_local_time(now: datetime, zone: ZoneInfo, minute_of_day: int) -> datetime:
    """The last moment at or before ``now`` whose local time in ``zone`` is ``minute_of_day``
    minutes after midnight."""
    return next(m for m in _local_moments(now, zone, minute_of_day, range(0, -3, -1))
                if m <= now)


def _quiet_until(profile: AnswererProfile | None, now: datetime) -> datetime:
    """When a message to an answerer (``profile``) may go out: they are not woken, so outside
    their available hours it waits for the start of those hours, unless they chose otherwise."""
    if profile is None or profile.messages_outside_hours:
        return now
    zone = ZoneInfo(profile.timezone)
    if daily_hours_contain(now, zone, profile.available_from_minute,
                           profile.available_until_minute):
        return now
    return next_local_time(now, zone, profile.available_from_minute)


def _status_and_due(user: User, kind: str, chosen: str, profile: AnswererProfile | None,
                    now: datetime) -> tuple[str, datetime]:
    """A new row's status and when it is due: sent at once (an answerer's waits for their
    available hours), kept for the daily digest, or skipped, by the person's choice."""
    if chosen == "off":
        return "skipped", now
    if chosen == "digest":
        return "digest", next_local_time(now, _zone_of(profile), user.digest_hour * 60)
    if KINDS[kind].recipient == "answerer":  # account and security messages go at once
        return "pending", _quiet_until(profile, now)
    return "pending", now


def enqueue(session: Session, user: User, kind: str, data: dict,
            now: datetime | None = None) -> Notification | None:
    """Write a message to ``user`` into the outbox, in the caller's transaction (it only adds
    a row; the caller commits, and a rollback takes it away).

    The row follows the person's choice for the kind: sent at once (an answerer's waits for
    their available hours), kept for their daily digest (``digest``, due at their digest
    hour), or not e-mailed at all (``skipped``). Every row shows in their list on the site.
    Nothing is written to an erased account (None)."""
    if user.deleted_at is not None:
        return None
    now = now or utcnow()
    status, due = _status_and_due(user, kind, mode(session, user.id, kind),
                                  session.get(AnswererProfile, user.id), now)
    row = Notification(user_id=user.id, kind=kind, data=json.dumps(data, sort_keys=True),
                       status=status, created_at=now, next_attempt_at=due, attempts=0)
    session.add(row)
    return row


def enqueue_many(session: Session, kind: str, messages: list[tuple[int, dict]],
                 now: datetime) -> int:
    """:func:`enqueue` for many messages of one kind (``(user id, data)``), as the release run
    writes its offers: the people with their profiles and their choices are read in one
    statement, and the rows written in one. Returns how many rows were written."""
    ids = sorted({user_id for user_id, _ in messages})
    if not ids:
        return 0
    query = (select(User.id, User.deleted_at, User.digest_hour, AnswererProfile)
             .outerjoin(AnswererProfile, AnswererProfile.user_id == User.id)
             .where(User.id.in_(ids)))
    if KINDS[kind].optional:  # else everyone gets it at once
        query = query.add_columns(NotificationPreference.mode.label("choice")).outerjoin(
            NotificationPreference, and_(NotificationPreference.user_id == User.id,
                                         NotificationPreference.kind == kind))
    else:
        query = query.add_columns(null().label("choice"))
    people = {row.id: row for row in session.execute(query)}
    rows = []
    for user_id, data in messages:
        person = people[user_id]
        if person.deleted_at is not None:
            continue
        status, due = _status_and_due(person, kind, person.choice or "now",
                                      person.AnswererProfile, now)
        rows.append({"user_id": user_id, "kind": kind, "data": json.dumps(data, sort_keys=True),
                     "status": status, "created_at": now, "next_attempt_at": due,
                     "attempts": 0})
    if rows:
        session.execute(insert(Notification.__table__), rows)
    return len(rows)


def told_since(session: Session, user_id: int, kind: str, since: datetime | None,
               **match) -> bool:
    """Whether ``user_id`` was written ``kind`` (after ``since``, if given) with data that has
    the values ``match``: for a state that is seen again and again (a payout held at each
    batch), which must be told once, not at every look."""
    query = select(Notification.data).where(Notification.user_id == user_id,
                                            Notification.kind == kind)
    if since is not None:
        query = query.where(Notification.created_at > since)
    return any(all(json.loads(data).get(key) == value for key, value in match.items())
               for data in session.scalars(query))


def message_id(row_id: int, sender: str) -> str:
    """The Message-ID of the message of row ``row_id``: the same every time it is sent."""
    return f"<upss-notification-{row_id}@{mailer.mail_domain(sender)}>"


def _data(session: Session, row: Notification, user: User, zone: str | None = None) -> dict:
    data = json.loads(row.data)
    if "timezone" not in data:
        data["timezone"] = zone or user_zone(session, user).key
    return data


def describe(session: Session, row: Notification, user: User, zone: str | None = None):
    """What ``row`` says (``notification_texts.Content``), in the current locale: a digest
    gathers the messages it names. ``zone``: the user's time zone if the caller knows it."""
    if row.kind != "digest":
        return KINDS[row.kind].describe(_data(session, row, user, zone), user)
    items = session.scalars(select(Notification).where(
        Notification.id.in_(json.loads(row.data)["items"])).order_by(Notification.id))
    return describe_digest([(KINDS[item.kind], _data(session, item, user, zone)) for item in items],
                           user)


def render(session: Session, row: Notification, user: User, now: datetime) -> EmailMessage:
    """The e-mail of ``row`` for ``user``, in their language."""
    kind = KINDS[row.kind]
    config = current_app.config
    locale = locale_of(user)
    with force_locale(locale):
        content = describe(session, row, user)
        unsubscribe_url = (link("mail.unsubscribe", token=unsubscribe_token(user.id, kind.name))
                           if kind.optional else None)
        values = {
            "lang": locale, "content": content, "unsubscribe_url": unsubscribe_url,
            "greeting": gettext("Hello %(name)s,", name=user.name),
            "signature": gettext("UPSS, questions answered by people"),
            "why": (gettext("You get this message because you have an account at UPSS.")
                    if kind.optional else
                    gettext("This message is about your money or your account, so it is "
                            "always sent.")),
            "stop_label": gettext("Stop messages like this one"),
        }
        text = current_app.jinja_env.get_template("email/message.txt").render(values)
        html = current_app.jinja_env.get_template("email/message.html").render(values)
    address = json.loads(row.data).get("to") or user.email  # a new address being confirmed
    return mailer.build_message(
        sender=config["UPSS_MAIL_FROM"], to=formataddr((user.name, address)),
        subject=content.subject, text=text, html=html,
        message_id=message_id(row.id, config["UPSS_MAIL_FROM"]), date=now,
        unsubscribe_url=unsubscribe_url)


# --- the dispatcher --------------------------------------------------------------------------

@dataclass
class DispatchResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.retrying + self.failed + self.skipped

    def __str__(self) -> str:
        return (f"{self.sent} sent, {self.retrying} to try again, {self.failed} failed, "
                f"{self.skipped} turned off or out of date")


def _free(now: datetime):
    return (Notification.status == "pending", Notification.next_attempt_at <= now,
            or_(Notification.claimed_until.is_(None), Notification.claimed_until <= now))


def _claim(session: Session, now: datetime, batch: int) -> tuple[int, list[int]]:
    """Claim up to ``batch`` due rows for this dispatcher and commit; returns how many were
    due and the ids of those this dispatcher got (another may have claimed some first)."""
    due = (select(Notification.id).where(*_free(now))
           .order_by(Notification.next_attempt_at, Notification.id).limit(batch))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list(session.scalars(due))
    if not ids:
        session.commit()
        return 0, []
    token = uuid.uuid4().hex
    session.execute(update(Notification).where(Notification.id.in_(ids), *_free(now))
                    .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
                            claim_token=token)
                    .execution_options(synchronize_session=False))
    mine = list(session.scalars(select(Notification.id).where(Notification.claim_token == token)
                                .order_by(Notification.id)))
    session.commit()
    return len(ids), mine


def retry_wait(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed try: 1, 2, 4, … minutes, at most
    ``RETRY_LONGEST``."""
    return min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_LONGEST)


def _finish(row: Notification, **values) -> None:
    for key, value in {"claimed_until": None, "claim_token": None, **values}.items():
        setattr(row, key, value)


def dispatch_due(session: Session, now: datetime, batch: int = BATCH,
                 sender=None) -> DispatchResult:
    """Send every message due at ``now``, in batches; commits after each claim and each
    message (see the module's docstring: at-least-once, the same Message-ID on a repeat)."""
    sender = sender or mailer.sender_for(current_app.config)
    result = DispatchResult()
    for _ in range(MAX_BATCHES):
        due, ids = _claim(session, now, batch)
        unreachable_until = None
        for row_id in ids:
            row = session.get(Notification, row_id)
            if unreachable_until is not None:
                _finish(row, next_attempt_at=unreachable_until)
                session.commit()
                result.retrying += 1
                continue
            user = session.get(User, row.user_id)
            kind = KINDS[row.kind]
            if mode(session, user.id, row.kind) == "off" or (
                    kind.still_true and not kind.still_true(session, json.loads(row.data), now)):
                _finish(row, status="skipped")
                session.commit()
                result.skipped += 1
                continue
            try:
                message = render(session, row, user, now)
            except Exception as exc:  # noqa: BLE001 - a bug in one message must not stop all
                log.exception("notification %s could not be written", row.id)
                _finish(row, status="failed", last_error=f"not written: {exc}"[:500])
                session.commit()
                result.failed += 1
                continue
            try:
                sender.send(message)
            except mailer.TemporaryFailure as exc:
                attempts = row.attempts + 1
                if attempts >= MAX_ATTEMPTS:
                    _finish(row, attempts=attempts, status="failed", last_error=str(exc)[:500])
                    result.failed += 1
                else:
                    _finish(row, attempts=attempts, last_error=str(exc)[:500],
                            next_attempt_at=now + retry_wait(attempts))
                    result.retrying += 1
                    if exc.unreachable:
                        unreachable_until = row.next_attempt_at
                log.warning("notification %s not sent (%s): %s", row.id,
                            row.status, exc)
            except mailer.PermanentFailure as exc:
                _finish(row, attempts=row.attempts + 1, status="failed",
                        last_error=str(exc)[:500])
                result.failed += 1
                log.error("notification %s refused for good: %s", row.id, exc)
            else:
                _finish(row, attempts=row.attempts + 1, status="sent", sent_at=now,
                        last_error=None)
                result.sent += 1
            session.commit()
        if due < batch or unreachable_until is not None:
            break
    return result


def send_notifications(session: Session, now: datetime):
    """The scheduler job: :func:`dispatch_due`; says what it did, or 0 if nothing was due."""
    result = dispatch_due(session, now)
    return str(result) if result.attempted else 0


# --- daily digests ---------------------------------------------------------------------------

#: People whose digests are gathered per run, and messages per digest at most (more wait for
#: the next run, a minute later).
DIGESTS_PER_RUN = 200
DIGEST_MAX_ITEMS = 50


def gather_digests(session: Session, now: datetime) -> int:
    """The ``gather-digests`` job: for each person whose digest hour has come, one ``digest``
    message naming the messages kept for it, which become ``digested``; the dispatcher then
    sends it like any other. Commits per person. Returns how many digests it wrote."""
    due = (Notification.status == "digest", Notification.next_attempt_at <= now)
    user_ids = list(session.scalars(select(Notification.user_id).where(*due).distinct()
                                    .limit(DIGESTS_PER_RUN)))
    written = 0
    for user_id in user_ids:
        ids = list(session.scalars(select(Notification.id).where(
            Notification.user_id == user_id, *due).order_by(Notification.id)
            .limit(DIGEST_MAX_ITEMS)))
        taken = session.execute(update(Notification).where(Notification.id.in_(ids), *due)
                                .values(status="digested")
                                .execution_options(synchronize_session=False)).rowcount
        if taken != len(ids):  # another run took some first: leave them to it
            session.rollback()
            continue
        session.add(Notification(user_id=user_id, kind="digest",
                                 data=json.dumps({"items": ids}), status="pending",
                                 created_at=now, next_attempt_at=now, attempts=0))
        session.commit()
        written += 1
    return written


# --- the list on the site --------------------------------------------------------------------

def unread_of(user_id):
    """How many messages of ``user_id`` (a value, a bound parameter or a column to correlate
    with) are unread, as a scalar subquery: one indexed count."""
    return select(func.count()).select_from(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None),
        Notification.kind.not_in(UNLISTED)).scalar_subquery()


#: Built once, for a page whose user came without their count (``User.unread_messages``).
_UNREAD = select(unread_of(bindparam("user_id")))


def unread_count(session: Session, user_id: int) -> int:
    """How many of the user's messages they have not seen on the site (one indexed count).
    On the session's connection: the session's pending changes are flushed first."""
    session.flush()
    return session.connection().execute(_UNREAD, {"user_id": user_id}).scalar() or 0


@dataclass(frozen=True)
class ListedNotice:
    """One message as the person's list shows it."""

    id: int
    at: datetime
    unread: bool
    #: What it says (``notification_texts.Content``), in the current locale.
    content: object


def notices_page(session: Session, user: User, cursor: str | None = None,
                 per_page: int = 20) -> Page[ListedNotice]:
    """One page of the user's messages, newest first, older than the ``cursor`` (a keyset page,
    ``upss.paging``: the same cost on every page). Digests themselves are not listed: what they
    gathered is."""
    query = select(Notification).where(Notification.user_id == user.id,
                                       Notification.kind.not_in(UNLISTED))
    page = keyset_page(session, query, Key(Notification.id, descending=True), cursor, per_page)
    zone = user_zone(session, user).key  # once for the page, not once a message
    return Page(items=[ListedNotice(id=row.id, at=row.created_at, unread=row.read_at is None,
                                    content=describe(session, row, user, zone))
                       for row in page.items],
                next_cursor=page.next_cursor, continued=page.continued)


def mark_read(session: Session, user_id: int, ids: range, now: datetime) -> int:
    """Mark the user's messages with ids in ``ids`` (those a page showed, oldest to newest)
    as read: one that arrived since, or is on an older page, stays unread. Returns how many
    changed."""
    return session.execute(update(Notification).where(
        Notification.user_id == user_id, Notification.id >= ids.start,
        Notification.id < ids.stop,
        Notification.read_at.is_(None)).values(read_at=now)
        .execution_options(synchronize_session=False)).rowcount


@dataclass(frozen=True)
class FailedNotice:
    """A message that could not be sent to the person, for their account page."""

    at: datetime
    subject: str
    error: str | None


def failed_for(session: Session, user: User, limit: int = 10) -> list[FailedNotice]:
    """The user's newest messages that could not be sent for good (the mail server refused
    the address, or gave up), with what they were about."""
    rows = session.scalars(select(Notification).where(
        Notification.user_id == user.id, Notification.status == "failed")
        .order_by(Notification.id.desc()).limit(limit))
    zone = user_zone(session, user).key  # once for the list, not once a message
    return [FailedNotice(at=row.created_at, subject=describe(session, row, user, zone).subject,
                         error=row.last_error) for row in rows]


# --- choices and the one-click unsubscribe ---------------------------------------------------

def unsubscribe_token(user_id: int, kind: str) -> str:
    """The signed token of the one-click unsubscribe link (no expiry: old mail keeps working)."""
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=UNSUBSCRIBE_SALT).dumps(
        [user_id, kind])


@dataclass(frozen=True)
class UnsubscribeChoice:
    kind: Kind
    #: Already turned off.
    off: bool


def _read_token(session: Session, token: str) -> tuple[int, Kind]:
    try:
        user_id, kind = URLSafeSerializer(current_app.config["SECRET_KEY"],
                                          salt=UNSUBSCRIBE_SALT).loads(token)
    except (BadSignature, ValueError, TypeError) as exc:
        raise BadToken("this unsubscribe link is not valid") from exc
    if kind not in KINDS or session.get(User, user_id) is None:
        raise BadToken("this unsubscribe link is not valid")
    return user_id, KINDS[kind]


def unsubscribe_choice(session: Session, token: str) -> UnsubscribeChoice:
    """What the unsubscribe link ``token`` would turn off (changes nothing)."""
    user_id, kind = _read_token(session, token)
    if not kind.optional:
        raise NotOptional(kind.name)
    return UnsubscribeChoice(kind=kind, off=mode(session, user_id, kind.name) == "off")


class InvalidChoice(NotificationError):
    """A choice the person cannot make (a mode this kind does not have, an hour off the clock)."""


def set_mode(session: Session, user_id: int, kind: str, chosen: str,
             now: datetime | None = None) -> None:
    """Store the user's choice for ``kind`` (one of ``Kind.modes``): money kinds cannot be
    off. An upsert, so two clicks at once (the one-click link twice) both succeed."""
    if chosen not in KINDS[kind].modes:
        if chosen == "off":
            raise NotOptional(kind)
        raise InvalidChoice(f"{kind} cannot be {chosen!r}")
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    values = {"user_id": user_id, "kind": kind, "mode": chosen, "updated_at": now or utcnow()}
    session.execute(insert(NotificationPreference).values(**values).on_conflict_do_update(
        index_elements=["user_id", "kind"],
        set_={"mode": chosen, "updated_at": values["updated_at"]}))
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, NotificationPreference) and (
                loaded.user_id, loaded.kind) == (user_id, kind):
            session.expire(loaded)


def kinds_for(user: User) -> list[Kind]:
    """The kinds of message ``user`` can get: every user may ask; answerers and organizers
    get theirs too."""
    roles = {"asker"} | ({"answerer"} if user.is_answerer else set()) | (
        {"organizer"} if user.is_organizer else set())
    return [kind for kind in KINDS.values() if kind.recipient in roles]


@dataclass(frozen=True)
class Choices:
    #: Kind name → "now", "digest" or "off".
    modes: dict[str, str]
    digest_hour: int
    #: None for someone who is not an answerer.
    outside_hours: bool | None


def choices(session: Session, user: User) -> Choices:
    """What ``user`` chose for each of their kinds, and when."""
    profile = session.get(AnswererProfile, user.id) if user.is_answerer else None
    return Choices(modes={kind.name: mode(session, user.id, kind.name)
                          for kind in kinds_for(user)},
                   digest_hour=user.digest_hour,
                   outside_hours=profile.messages_outside_hours if profile else None)


def save_choices(session: Session, user: User, modes: dict[str, str], digest_hour: int,
                 outside_hours: bool | None, now: datetime) -> None:
    """Store ``user``'s choices (the page of choices): a mode per kind, the digest hour and,
    for an answerer, whether messages may come outside their available hours. Messages
    already waiting for a digest move to the new hour."""
    if not 0 <= digest_hour <= 23:
        raise InvalidChoice("the digest hour must be 0 to 23")
    for kind in kinds_for(user):
        if kind.name in modes:
            set_mode(session, user.id, kind.name, modes[kind.name], now)
    if digest_hour != user.digest_hour:
        user.digest_hour = digest_hour
        session.execute(update(Notification).where(
            Notification.user_id == user.id, Notification.status == "digest").values(
            next_attempt_at=next_local_time(now, user_zone(session, user), digest_hour * 60))
            .execution_options(synchronize_session=False))
    profile = session.get(AnswererProfile, user.id)
    if profile is not None and outside_hours is not None:
        profile.messages_outside_hours = outside_hours
    session.flush()


def unsubscribe(session: Session, token: str) -> Kind:
    """Turn off the kind of message the link ``token`` names, for its user (no sign-in: the
    signed token is the proof). Raises ``BadToken`` or ``NotOptional``."""
    user_id, kind = _read_token(session, token)
    set_mode(session, user_id, kind.name, "off")
    return kind
