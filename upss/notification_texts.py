"""What each kind of message says: who gets it, whether it may be turned off, and its text.

:data:`KINDS` lists every kind of message. Each kind's ``describe(data, user)`` is called by
the dispatcher (``upss.notifications``) inside ``force_locale``, so it returns the text in the
recipient's language: a subject, short paragraphs, and one link that says where it leads.
``data`` is what the service stored in the outbox row (ids, amounts in cents, ISO times); the
text is written only when the message is sent, so it follows the person's language then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from flask import current_app
from flask_babel import gettext, ngettext
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from . import account_tokens, money, reasons
from .models import LANGUAGES, Payout, Question, User


@dataclass(frozen=True)
class Section:
    """One part of a message that gathers several (a digest): a heading, text and a link."""

    heading: str
    paragraphs: list[str]
    link_label: str
    link_url: str


@dataclass(frozen=True)
class Content:
    """What one message says, already in the recipient's language."""

    subject: str
    paragraphs: list[str]
    link_label: str
    link_url: str
    sections: list[Section] = field(default_factory=list)


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
    #: ``still_true(session, data, now)``: for a message about something that runs out (an
    #: offer, a lock), whether it is still worth sending; one that waited too long is skipped.
    still_true: Callable[[Session, dict, datetime], bool] | None = field(default=None,
                                                                        repr=False)
    #: Whether it may wait for the person's daily digest (not what runs out within hours).
    can_wait: bool = True
    #: Shown in the person's list on the site? Not the messages that carry a link proving who
    #: they are (confirm, reset): those belong in the mailbox only.
    listed: bool = True

    @property
    def modes(self) -> tuple[str, ...]:
        """The choices a person has for this kind: money and security messages always come
        at once; what runs out within hours cannot wait for a daily digest."""
        if not self.optional:
            return ("now",)
        return ("now", "digest", "off") if self.can_wait else ("now", "off")



# --- links and formats ---------------------------------------------------------------------

def link(endpoint: str, **values) -> str:
    """An absolute link to a page of UPSS (``UPSS_BASE_URL``), outside any request."""
    base = urlsplit(current_app.config["UPSS_BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, script_name=base.path or "/",
                                       url_scheme=base.scheme or "https")
    return adapter.build(endpoint, values, force_external=True)


def locale_of(user: User) -> str:
    """The language messages to ``user`` are written in: their own, else English."""
    return user.locale if user.locale in LANGUAGES else "en"


def _amount(data: dict, user: User) -> str:
    return money.format_money(data["amount_cents"], data["currency"], locale_of(user))


def _moment(at: str, zone: str, user: User) -> str:
    """A moment in the recipient's time zone and language, with the zone's name."""
    return format_datetime(datetime.fromisoformat(at), "full", tzinfo=ZoneInfo(zone),
                           locale=locale_of(user))


def _day(at: str, zone: str, user: User) -> str:
    """The date of a moment in the recipient's time zone and language ("12 December 2026")."""
    return format_date(datetime.fromisoformat(at).astimezone(ZoneInfo(zone)).date(), "long",
                       locale=locale_of(user))


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


def _offer_open(session: Session, data: dict, now: datetime) -> bool:
    question = session.get(Question, data["question_id"])
    return (question is not None and question.status == "offered"
            and question.offer_expires_at is not None and question.offer_expires_at > now)


def _lock_ending(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your time for “%(title)s” ends soon", title=data["title"]),
        paragraphs=[
            gettext("You took this question. Your time to answer it ends at %(time)s.",
                    time=_moment(data["lock_expires_at"], data["timezone"], user)),
            gettext("Send your answer before then, or ask for more time on the question's "
                    "page. If the time runs out, the question goes back to the queue; what "
                    "you have written is kept."),
        ],
        link_label=gettext("Go to the question"),
        link_url=link("answerer.question", question_id=data["question_id"]))


def _lock_still_yours(session: Session, data: dict, now: datetime) -> bool:
    question = session.get(Question, data["question_id"])
    return (question is not None and question.status == "claimed"
            and question.answerer_id == data["answerer_id"]
            and question.lock_expires_at is not None and question.lock_expires_at > now)


def _auto_accept_soon(data: dict, user: User) -> Content:
    return Content(
        subject=ngettext("“%(title)s”: the answer will be accepted in %(num)d day",
                         "“%(title)s”: the answer will be accepted in %(num)d days",
                         data["days"], title=data["title"]),
        paragraphs=[
            gettext("If you do nothing, the answer is accepted for you on %(day)s, and the "
                    "answerer is paid.", day=_day(data["accept_at"], data["timezone"], user)),
            gettext("If something is wrong with the answer, ask the answerer to explain more, "
                    "or tell us what is wrong, before then."),
        ],
        link_label=gettext("Read the answer"),
        link_url=link("asker.question", question_id=data["question_id"]))


def _still_answered(session: Session, data: dict, now: datetime) -> bool:
    question = session.get(Question, data["question_id"])
    return question is not None and question.status == "answered"


def _card_disputed(data: dict, user: User) -> Content:
    due = data.get("evidence_due_at")
    return Content(
        subject=gettext("A card payment was disputed (question %(id)s)",
                        id=data["question_id"]),
        paragraphs=[
            gettext("The asker's bank disputes the payment of %(amount)s for question "
                    "%(id)s. Stripe has taken the money back until the dispute is decided.",
                    amount=_amount(data, user), id=data["question_id"]),
            gettext("Send your evidence to Stripe before %(time)s.",
                    time=_moment(due, data["timezone"], user)) if due else
            gettext("Stripe has not given a deadline for evidence yet."),
        ],
        link_label=gettext("See the card disputes"),
        link_url=link("money.reconciliation"))


def _organizer_digest(data: dict, user: User) -> Content:
    zone = data["timezone"]
    lines = []
    if data["applications_waiting"]:
        lines.append(ngettext("%(num)d application to answer is waiting for you.",
                              "%(num)d applications to answer are waiting for you.",
                              data["applications_waiting"]))
    if data["rejected_answers"]:
        lines.append(ngettext("%(num)d rejected answer is waiting for your decision.",
                              "%(num)d rejected answers are waiting for your decision.",
                              data["rejected_answers"]))
    for dispute in data["card_disputes"]:
        amount = money.format_money(dispute["amount_cents"], dispute["currency"],
                                    locale_of(user))
        lines.append(gettext("Card dispute about question %(id)s (%(amount)s): evidence is due "
                             "by %(time)s.", id=dispute["question_id"], amount=amount,
                             time=_moment(dispute["evidence_due_at"], zone, user))
                     if dispute["evidence_due_at"] else
                     gettext("Card dispute about question %(id)s (%(amount)s): no deadline "
                             "for evidence yet.", id=dispute["question_id"], amount=amount))
    if data["reconciliation_failed"]:
        lines.append(gettext("The last check against Stripe could not reach Stripe."))
    elif data["reconciliation_differences"]:
        lines.append(ngettext("The last check against Stripe found %(num)d difference.",
                              "The last check against Stripe found %(num)d differences.",
                              data["reconciliation_differences"]))
    if data["failed_messages"]:
        lines.append(ngettext("%(num)d message could not be sent.",
                              "%(num)d messages could not be sent.", data["failed_messages"]))
    for job in data["late_jobs"]:
        lines.append(gettext("The scheduled task “%(job)s” last ran at %(time)s.",
                             job=job["job"], time=_moment(job["last_run"], zone, user))
                     if job["last_run"] else
                     gettext("The scheduled task “%(job)s” has never run.", job=job["job"]))
    if not lines:
        lines.append(gettext("Nothing is waiting for you today."))
    return Content(
        subject=gettext("UPSS today: %(day)s", day=_day(data["at"], zone, user)),
        paragraphs=lines,
        link_label=gettext("Open the organizer's overview"),
        link_url=link("organizer.overview"))


def describe_digest(items: list[tuple[Kind, dict]], user: User) -> Content:
    """The daily digest: one section per message it gathers (``items``, oldest first)."""
    sections = []
    for kind, data in items:
        content = kind.describe(data, user)
        sections.append(Section(heading=content.subject, paragraphs=content.paragraphs,
                                link_label=content.link_label, link_url=content.link_url))
    return Content(
        subject=ngettext("Your daily summary: %(num)d message",
                         "Your daily summary: %(num)d messages", len(items)),
        paragraphs=[gettext("These are the messages you chose to get once a day.")],
        link_label=gettext("Change how you get messages"),
        link_url=link("notices.choices"),
        sections=sections)


# --- the account's own messages: never off, never in the list on the site ---------------------

def _confirm_account(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Confirm your e-mail address for UPSS"),
        paragraphs=[
            gettext("Welcome to UPSS. Please confirm that this e-mail address is yours by "
                    "opening the link below. It works for seven days."),
            gettext("If you did not create an account, you can ignore this message."),
        ],
        link_label=gettext("Confirm my e-mail address"),
        link_url=link("account.confirm_email",
                      token=account_tokens.make("confirm", user.id, user.email)))


def _account_exists(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("You already have an account at UPSS"),
        paragraphs=[
            gettext("Someone, perhaps you, tried to create a new account with this e-mail "
                    "address. You already have an account, so nothing was changed."),
            gettext("You can sign in as usual. If you have forgotten your password, you can "
                    "choose a new one."),
        ],
        link_label=gettext("Choose a new password"),
        link_url=link("account.forgot_password"))


def _password_reset(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Choose a new password for UPSS"),
        paragraphs=[
            gettext("You asked to choose a new password. Open the link below to do it. The "
                    "link works for one hour, and only once."),
            gettext("If you did not ask for this, you can ignore this message: your password "
                    "stays the same."),
        ],
        link_label=gettext("Choose a new password"),
        link_url=link("account.reset_password", token=account_tokens.make(
            "reset", user.id, account_tokens.password_fingerprint(user))))


def _password_changed(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your UPSS password was changed"),
        paragraphs=[
            gettext("The password of your account was changed."),
            gettext("If you did not do this, choose a new password at once with the link "
                    "below, and write to us."),
        ],
        link_label=gettext("Choose a new password"),
        link_url=link("account.forgot_password"))


def _email_change_confirm(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Confirm your new e-mail address for UPSS"),
        paragraphs=[
            gettext("You asked to use this e-mail address for your UPSS account. Open the "
                    "link below to confirm it. It works for one day."),
            gettext("Until then, your account keeps its old address. If you did not ask for "
                    "this, you can ignore this message."),
        ],
        link_label=gettext("Confirm my new e-mail address"),
        link_url=link("account.confirm_email_change", token=account_tokens.make(
            "email_change", user.id, user.email, data["to"])))


def _email_change_requested(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Someone asked to change your UPSS e-mail address"),
        paragraphs=[
            gettext("Someone signed in to your account asked to use %(email)s instead of "
                    "this address. It changes only if the link sent there is opened.",
                    email=data["new_email"]),
            gettext("If this was not you, change your password at once and write to us."),
        ],
        link_label=gettext("Choose a new password"),
        link_url=link("account.forgot_password"))


def _email_changed(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your UPSS e-mail address was changed"),
        paragraphs=[
            gettext("Your account now uses %(email)s. Messages will go there from now on.",
                    email=data["new_email"]),
            gettext("If this was not you, write to us at once."),
        ],
        link_label=gettext("Get help"),
        link_url=link("main.help_page"))


# --- a copy of one's data (``upss.data_export``) ----------------------------------------------

def _data_export_ready(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your data is ready to download"),
        paragraphs=[
            gettext("The copy of your data you asked for is ready. You can download it until "
                    "%(date)s.", date=_day(data["expires_at"], data["timezone"], user)),
            gettext("For your safety the file is not attached to this e-mail: sign in to "
                    "download it."),
        ],
        link_label=gettext("Download your data"),
        link_url=link("account_data.page"))


def _data_export_failed(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("We could not prepare your data"),
        paragraphs=[gettext("Something went wrong while we prepared the copy of your data. "
                            "Please ask for it again. If it fails again, write to us.")],
        link_label=gettext("Ask for your data again"),
        link_url=link("account_data.page"))


# --- deleting one's account (``upss.account_deletion``) --------------------------------------

def _account_deletion_scheduled(data: dict, user: User) -> Content:
    when = _day(data["erase_after"], data["timezone"], user)
    paragraphs = [
        gettext("You asked us to delete your UPSS account. We will delete it on %(date)s.",
                date=when),
        gettext("Changed your mind? Sign in before then: signing in cancels the deletion."),
    ]
    if data.get("questions_refunded"):
        paragraphs.append(ngettext(
            "%(num)d question that was still waiting for an answerer was withdrawn. You get "
            "all your money back.",
            "%(num)d questions that were still waiting for an answerer were withdrawn. You get "
            "all your money back.", data["questions_refunded"]))
    return Content(
        subject=gettext("Your account will be deleted on %(date)s", date=when),
        paragraphs=paragraphs,
        link_label=gettext("Sign in to keep your account"),
        link_url=link("auth.sign_in"))


def _account_deletion_cancelled(data: dict, user: User) -> Content:
    return Content(
        subject=gettext("Your account will not be deleted"),
        paragraphs=[
            gettext("You signed in, so we cancelled the deletion of your account. Your account "
                    "stays as it was."),
            gettext("If you did not sign in yourself, change your password now."),
        ],
        link_label=gettext("See your account"),
        link_url=link("auth.preferences"))


def _account_deletion_waiting(data: dict, user: User) -> Content:
    amount = _amount(data, user)
    if data["reason"] == "owed":
        paragraphs = [gettext("We still owe you %(amount)s. We delete your account only after "
                              "we have paid it, so that you do not lose it.", amount=amount)]
        if data.get("expected_on"):
            paragraphs.append(gettext("We expect to pay it on %(date)s.", date=format_date(
                date.fromisoformat(data["expected_on"]), "long", locale=locale_of(user))))
        if data.get("held_because"):
            paragraphs.append(gettext("It cannot be paid yet. Why: %(reason)s.",
                                      reason=reasons.reason_text(data["held_because"])))
    elif data["reason"] == "on_its_way":
        paragraphs = [gettext("We sent you %(amount)s, and the payment is not confirmed yet. "
                              "We delete your account once it is.", amount=amount)]
    else:
        paragraphs = [gettext("An answer of yours is not accepted yet. We delete your account "
                              "after it is settled and we have paid you your share.")]
    paragraphs.append(gettext("If you want to keep your account after all, sign in: that "
                              "cancels the deletion."))
    return Content(
        subject=gettext("Your account will be deleted after we have paid you"),
        paragraphs=paragraphs,
        link_label=gettext("Sign in to keep your account"),
        link_url=link("auth.sign_in"))


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("payment_confirmed", "asker", False, _l("Your payment was received"),
         _payment_confirmed),
    Kind("answer_ready", "asker", True, _l("Your answer is ready"), _answer_ready),
    Kind("new_offer", "answerer", True, _l("A new question for you"), _new_offer,
         still_true=_offer_open, can_wait=False),
    Kind("lock_ending", "answerer", True, _l("Your time to answer ends soon"), _lock_ending,
         still_true=_lock_still_yours, can_wait=False),
    Kind("auto_accept_soon", "asker", True, _l("An answer will soon be accepted for you"),
         _auto_accept_soon, still_true=_still_answered),
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
    Kind("card_disputed", "organizer", False, _l("A card payment was disputed"),
         _card_disputed),
    Kind("organizer_digest", "organizer", False, _l("What is waiting for you each day"),
         _organizer_digest),
    Kind("confirm_account", "account", False, _l("Confirm your e-mail address"),
         _confirm_account, listed=False),
    Kind("account_exists", "account", False, _l("You already have an account"),
         _account_exists, listed=False),
    Kind("password_reset", "account", False, _l("Choose a new password"), _password_reset,
         listed=False),
    Kind("password_changed", "account", False, _l("Your password was changed"),
         _password_changed),
    Kind("email_change_confirm", "account", False, _l("Confirm your new e-mail address"),
         _email_change_confirm, listed=False),
    Kind("email_change_requested", "account", False,
         _l("Someone asked to change your e-mail address"), _email_change_requested),
    Kind("email_changed", "account", False, _l("Your e-mail address was changed"),
         _email_changed),
    Kind("data_export_ready", "account", False, _l("Your data is ready to download"),
         _data_export_ready),
    Kind("data_export_failed", "account", False, _l("We could not prepare your data"),
         _data_export_failed),
    Kind("account_deletion_scheduled", "account", False,
         _l("Your account will be deleted"), _account_deletion_scheduled),
    Kind("account_deletion_cancelled", "account", False,
         _l("Your account will not be deleted"), _account_deletion_cancelled),
    Kind("account_deletion_waiting", "account", False,
         _l("Your account will be deleted after we have paid you"),
         _account_deletion_waiting),
    # The daily digest of one person's messages; ``describe_digest`` writes it.
    Kind("digest", "anyone", False, _l("Your daily summary"), describe_digest,
         listed=False),
)}

#: The kinds a person's list on the site leaves out (see ``Kind.listed``).
UNLISTED = tuple(name for name, kind in KINDS.items() if not kind.listed)
