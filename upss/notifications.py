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
A person may turn an optional kind off (``NotificationPreference``), also without signing in by
the one-click link in the message (:func:`unsubscribe`, RFC 8058: a signed token of user id and
kind, made with the app's secret). A message already written when its kind is turned off is not
sent (``skipped``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from flask import current_app
from flask_babel import force_locale, gettext
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from . import mailer, money, reasons
from .models import (
    LANGUAGES,
    AnswererProfile,
    Notification,
    NotificationPreference,
    Payout,
    User,
    utcnow,
)

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


@dataclass(frozen=True)
class Content:
    """What one message says, already in the recipient's language."""

    subject: str
    paragraphs: list[str]
    link_label: str
    link_url: str


@dataclass(frozen=True)
class Kind:
    name: str
    #: Who gets it: "asker", "answerer" or "organizer".
    recipient: str
    #: May the person turn it off? Money and security messages may not.
    optional: bool
    #: What the person sees in their choices and on the unsubscribe page.
    label: object
    #: ``describe(data, recipient) -> Content``, called inside ``force_locale``.
    describe: Callable[[dict, User], Content] = field(repr=False)


class NotificationError(Exception):
    """Base of this module's refusals."""


class BadToken(NotificationError):
    """The unsubscribe link is not one UPSS made (or was changed)."""


class NotOptional(NotificationError):
    """This kind of message cannot be turned off (money, security)."""


# --- links and formats ---------------------------------------------------------------------

def link(endpoint: str, **values) -> str:
    """An absolute link to a page of UPSS (``UPSS_BASE_URL``), outside any request."""
    base = urlsplit(current_app.config["UPSS_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/",
                                       url_scheme=base.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)


def _locale(user: User) -> str:
    return user.locale if user.locale in LANGUAGES else "en"


def _amount(data: dict, user: User) -> str:
    return money.format_money(data["amount_cents"], data["currency"], _locale(user))


def _moment(at: str, zone: str, user: User) -> str:
    """A moment in the recipient's time zone and language, with the zone's name."""
    return format_datetime(datetime.fromisoformat(at), "full", tzinfo=ZoneInfo(zone),
                           locale=_locale(user))


def _day(at: str, zone: str, user: User) -> str:
    """The date of a moment in the recipient's time zone and language ("12 December 2026")."""
    return format_date(datetime.fromisoformat(at).astimezone(ZoneInfo(zone)).date(), "long",
                       locale=_locale(user))


# --- the kinds of messages -----------------------------------------------------------------

def _payment_confirmed(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("We have your payment for “%(title)s”", title=data["title"]),
        paragraphs=[
            gettext("Your payment of %(amount)s has been received. Your question is now "
                    "waiting for an answerer.", amount=_amount(data, user)),
            gettext("You do not need to do anything. We will write to you when the answer "
                    "is ready."),
        ],
        link_label=gettext("See your question"),
        link_url=link("asker.question", question_id=data["question_id"]))


def _answer_ready(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your answer is ready: “%(title)s”", title=data["title"]),
        paragraphs=[
            gettext("An answerer has answered your question."),
            gettext("Read the answer, then accept it, ask for a clarification, or tell us "
                    "what is wrong with it."),
        ],
        link_label=gettext("Read the answer"),
        link_url=link("asker.question", question_id=data["question_id"]))


def _new_offer(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("A new question for you: “%(title)s”", title=data["title"]),
        paragraphs=[
            gettext("A question has been offered to you. You can take it until %(time)s.",
                    time=_moment(data["expires_at"], data["timezone"], user)),
            gettext("If you do not take it by then, it will be offered to someone else."),
        ],
        link_label=gettext("See the question"),
        link_url=link("answerer.question", question_id=data["question_id"]))


def _payment_failed(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your payment for “%(title)s” did not go through", title=data["title"]),
        paragraphs=[
            gettext("We could not take your payment of %(amount)s. No money was taken.",
                    amount=_amount(data, user)),
            gettext("Your question is kept. You can try again, with another card if you "
                    "like."),
        ],
        link_label=gettext("See your question"),
        link_url=link("asker.question", question_id=data["question_id"]))


def _clarification_replied(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("The answerer has explained more: “%(title)s”", title=data["title"]),
        paragraphs=[
            gettext("The answerer has replied to what you asked about their answer."),
            gettext("Read the reply, then accept the answer or tell us what is wrong with "
                    "it."),
        ],
        link_label=gettext("Read the answer"),
        link_url=link("asker.question", question_id=data["question_id"]))


#: Why a question's money was given back (``refund_made``'s ``reason``): the question's
#: refunding action (``questions.TRANSITIONS``).
REFUND_REASONS = {
    "cancel": _l("You cancelled the question before it was answered."),
    "refund_at_deadline": _l("No answerer answered it before your deadline."),
    "refund_dispute": _l("The organizer agreed with your complaint about the answer."),
    "refund_at_stripe": _l("The payment was refunded through our payment provider, Stripe."),
}


def _refund_made(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("We have refunded %(amount)s for “%(title)s”",
                        amount=_amount(data, user), title=data["title"]),
        paragraphs=[
            str(REFUND_REASONS.get(data["reason"], REFUND_REASONS["refund_at_stripe"])),
            gettext("The money goes back to the card you paid with. It can take a few days "
                    "before your bank shows it."),
        ],
        link_label=gettext("See your question"),
        link_url=link("asker.question", question_id=data["question_id"]))


def _earned(data: dict, user: User) -> str:
    return gettext("%(amount)s has been added to your earnings.", amount=_amount(data, user))


def _clarification_asked(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("The asker has a question about your answer: “%(title)s”",
                        title=data["title"]),
        paragraphs=[
            gettext("The asker wants you to explain more before they accept your answer."),
            gettext("Write your reply on the question's page."),
        ],
        link_label=gettext("See the question"),
        link_url=link("answerer.question", question_id=data["question_id"]))


def _answer_accepted(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your answer was accepted: “%(title)s”", title=data["title"]),
        paragraphs=[
            gettext("The asker did not reply in time, so your answer was accepted for them.")
            if data["automatically"] else gettext("The asker accepted your answer."),
            _earned(data, user),
        ],
        link_label=gettext("See your earnings"),
        link_url=link("answerer.earnings"))


def _answer_rated(data: dict, user: User) -> Content:
    paragraphs = [gettext("The asker gave your answer %(stars)s of 5 stars.",
                          stars=data["stars"])]
    if data.get("comment"):
        paragraphs.append(gettext("Their comment: %(comment)s", comment=data["comment"]))
    return Content(
        subject=gettext("Your answer was rated: “%(title)s”", title=data["title"]),
        paragraphs=paragraphs,
        link_label=gettext("See the question"),
        link_url=link("answerer.question", question_id=data["question_id"]))


def _tip_received(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("You got a tip of %(amount)s: “%(title)s”",
                        amount=_amount(data, user), title=data["title"]),
        paragraphs=[
            gettext("The asker sent you a tip for your answer. All of it is yours."),
            _earned(data, user),
        ],
        link_label=gettext("See your earnings"),
        link_url=link("answerer.earnings"))


def _answer_disputed(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("The asker rejected your answer: “%(title)s”", title=data["title"]),
        paragraphs=[
            gettext("The asker has told us what they think is wrong with your answer. The "
                    "organizer will read the answer and decide."),
            gettext("You do not need to do anything. We will write to you when the organizer "
                    "has decided."),
        ],
        link_label=gettext("See the question"),
        link_url=link("answerer.question", question_id=data["question_id"]))


def _dispute_decided(data: dict, user: User) -> Content:
    if data["upheld"]:
        subject = gettext("Your answer was found fair: “%(title)s”", title=data["title"])
        paragraphs = [gettext("The organizer read your answer and found it fair."),
                      _earned(data, user)]
    else:
        subject = gettext("The asker got their money back: “%(title)s”", title=data["title"])
        paragraphs = [gettext("The organizer agreed with the asker, and the asker got their "
                              "money back. You are not paid for this answer.")]
    return Content(subject=subject, paragraphs=paragraphs,
                   link_label=gettext("See the question"),
                   link_url=link("answerer.question", question_id=data["question_id"]))


def _suspension(data: dict, user: User) -> Content:
    if data["suspended"]:
        return Content(
            subject=gettext("You have been suspended as an answerer"),
            paragraphs=[
                gettext("The organizer has suspended you as an answerer. You will not get new "
                        "questions, and questions you were working on have gone back to the "
                        "queue."),
                gettext("Your earnings are kept, but they are not paid out while you are "
                        "suspended. If you think this is a mistake, write to %(contact)s.",
                        contact=current_app.config["UPSS_CONTACT_EMAIL"]),
            ],
            link_label=gettext("Get help"),
            link_url=link("main.help_page"))
    return Content(
        subject=gettext("You can answer questions again"),
        paragraphs=[gettext("The organizer has reinstated you as an answerer. You will be "
                            "offered questions again, and your payouts go on.")],
        link_label=gettext("Open your queue"),
        link_url=link("answerer.queue"))


def _application_approved(data: dict, user: User) -> Content:
    paragraphs = [gettext("Your application has been approved. You will be offered questions "
                          "in your languages during your hours.")]
    if data["connect"]:
        paragraphs.append(gettext("To be paid, set up payouts with Stripe on your earnings "
                                  "page."))
        label, url = gettext("Set up payouts"), link("answerer.earnings")
    else:
        label, url = gettext("Open your queue"), link("answerer.queue")
    return Content(subject=gettext("You are now an answerer at UPSS"), paragraphs=paragraphs,
                   link_label=label, link_url=url)


def _application_rejected(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your application to answer was not approved"),
        paragraphs=[gettext("The organizer could not approve your application. The reason "
                            "they gave: %(reason)s", reason=data["reason"])],
        link_label=gettext("See your application"),
        link_url=link("answerer.application"))


def about_payout(payout: Payout, at: datetime, reason: str | None = None) -> dict:
    """The data of a payout message: amount, method, when (ISO) and why (a reason code of
    ``upss.reasons``, or None)."""
    return {"payout_id": payout.id, "amount_cents": payout.amount_cents,
            "currency": payout.currency, "method": payout.method, "at": at.isoformat(),
            "reason": reason}


def _why(data: dict) -> str:
    return gettext("Why: %(reason)s.", reason=reasons.reason_text(data["reason"]))


def _see_payout(data: dict) -> dict:
    return {"link_label": gettext("See the payout"),
            "link_url": link("answerer.payout", payout_id=data["payout_id"])}


def _payout_sent(data: dict, user: User) -> Content:
    when = _day(data["at"], data["timezone"], user)
    amount = _amount(data, user)
    if data["method"] == "sepa":
        paragraphs = [gettext("We sent %(amount)s to your bank account on %(date)s. The bank "
                              "can take a few working days.", amount=amount, date=when)]
    else:
        paragraphs = [gettext("We sent %(amount)s to your Stripe account on %(date)s.",
                              amount=amount, date=when)]
    return Content(subject=gettext("We have paid you %(amount)s", amount=amount),
                   paragraphs=paragraphs, **_see_payout(data))


def _payout_failed(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your payout of %(amount)s did not go through",
                        amount=_amount(data, user)),
        paragraphs=[
            _why(data),
            gettext("The money is still yours and will be paid in a later payout. Check your "
                    "payout details on your earnings page."),
        ],
        **_see_payout(data))


def _payout_unknown(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your payout of %(amount)s is being checked",
                        amount=_amount(data, user)),
        paragraphs=[
            _why(data),
            gettext("You do not need to do anything. We will write to you when we know more."),
        ],
        **_see_payout(data))


def _payout_held(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your payout of %(amount)s is waiting", amount=_amount(data, user)),
        paragraphs=[
            _why(data),
            gettext("The money is kept for you and paid in the first payout after this is "
                    "put right."),
        ],
        link_label=gettext("See your earnings"),
        link_url=link("answerer.earnings"))


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("payment_confirmed", "asker", False, _l("Your payment was received"),
         _payment_confirmed),
    Kind("answer_ready", "asker", True, _l("Your answer is ready"), _answer_ready),
    Kind("new_offer", "answerer", True, _l("A new question for you"), _new_offer),
    Kind("payment_failed", "asker", False, _l("Your payment did not go through"),
         _payment_failed),
    Kind("clarification_replied", "asker", True, _l("The answerer explained more"),
         _clarification_replied),
    Kind("refund_made", "asker", False, _l("Your money was refunded"), _refund_made),
    Kind("clarification_asked", "answerer", True, _l("The asker has a question about your "
                                                     "answer"), _clarification_asked),
    Kind("answer_accepted", "answerer", False, _l("Your answer was accepted"),
         _answer_accepted),
    Kind("answer_rated", "answerer", True, _l("Your answer was rated"), _answer_rated),
    Kind("tip_received", "answerer", False, _l("You got a tip"), _tip_received),
    Kind("answer_disputed", "answerer", False, _l("The asker rejected your answer"),
         _answer_disputed),
    Kind("dispute_decided", "answerer", False, _l("The organizer decided about your answer"),
         _dispute_decided),
    Kind("suspension", "answerer", False, _l("You were suspended or reinstated"),
         _suspension),
    Kind("application_approved", "answerer", False, _l("Your application was approved"),
         _application_approved),
    Kind("application_rejected", "answerer", False, _l("Your application was not approved"),
         _application_rejected),
    Kind("payout_sent", "answerer", False, _l("A payout was sent to you"), _payout_sent),
    Kind("payout_failed", "answerer", False, _l("A payout did not go through"),
         _payout_failed),
    Kind("payout_unknown", "answerer", False, _l("A payout is being checked"),
         _payout_unknown),
    Kind("payout_held", "answerer", False, _l("A payout is waiting"), _payout_held),
)}


# --- the outbox ------------------------------------------------------------------------------

def mode(session: Session, user_id: int, kind: str) -> str:
    """The user's choice for ``kind``: "now" (the default) or "off"."""
    chosen = session.get(NotificationPreference, (user_id, kind))
    return chosen.mode if chosen else "now"


def enqueue(session: Session, user: User, kind: str, data: dict,
            now: datetime | None = None) -> Notification | None:
    """Write a message to ``user`` into the outbox, in the caller's transaction (it only adds
    a row; the caller commits, and a rollback takes it away). Returns None when the user
    turned this optional kind off."""
    chosen = KINDS[kind]
    if chosen.optional and mode(session, user.id, kind) == "off":
        return None
    now = now or utcnow()
    row = Notification(user_id=user.id, kind=kind, data=json.dumps(data, sort_keys=True),
                       status="pending", created_at=now, next_attempt_at=now, attempts=0)
    session.add(row)
    return row


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


def render(session: Session, row: Notification, user: User, now: datetime) -> EmailMessage:
    """The e-mail of ``row`` for ``user``, in their language."""
    kind = KINDS[row.kind]
    config = current_app.config
    data = json.loads(row.data)
    if kind.recipient == "answerer" and "timezone" not in data:
        profile = session.get(AnswererProfile, user.id)
        data["timezone"] = profile.timezone if profile else config["BABEL_DEFAULT_TIMEZONE"]
    locale = _locale(user)
    with force_locale(locale):
        content = kind.describe(data, user)
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
    return mailer.build_message(
        sender=config["UPSS_MAIL_FROM"], to=formataddr((user.name, user.email)),
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
                f"{self.skipped} turned off")


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
            if KINDS[row.kind].optional and mode(session, user.id, row.kind) == "off":
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


def set_mode(session: Session, user_id: int, kind: str, chosen: str,
             now: datetime | None = None) -> None:
    """Store the user's choice for ``kind`` ("now" or "off"); money kinds cannot be off."""
    if chosen == "off" and not KINDS[kind].optional:
        raise NotOptional(kind)
    row = session.get(NotificationPreference, (user_id, kind))
    if row is None:
        row = NotificationPreference(user_id=user_id, kind=kind)
        session.add(row)
    row.mode = chosen
    row.updated_at = now or utcnow()
    session.flush()


def unsubscribe(session: Session, token: str) -> Kind:
    """Turn off the kind of message the link ``token`` names, for its user (no sign-in: the
    signed token is the proof). Raises ``BadToken`` or ``NotOptional``."""
    user_id, kind = _read_token(session, token)
    set_mode(session, user_id, kind.name, "off")
    return kind
