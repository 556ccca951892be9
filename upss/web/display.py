"""Display helpers for pages and templates: question states, topics, stored reason codes,
amounts, durations and clock times in the reader's language and time zone. Formatting only:
no rules here."""

from __future__ import annotations

from datetime import datetime, timedelta

from babel.lists import format_list
from babel.units import format_unit
from flask_babel import format_datetime, format_time, get_locale, to_user_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from .. import money

# Stored reason codes in plain words live in ``upss.reasons`` (messages use them too); pages
# and templates (``reason_text``) use them from here.
from ..reasons import REASON_TEXTS, reason_text  # noqa: F401 - re-exported


def N_(message: str) -> str:
    """Marks ``message`` for translation (``pybabel extract`` finds ``N_``) and returns it as
    it is: for texts translated where they are shown."""
    return message


#: What each question state means to the asker, in plain words: the texts, which the pages
#: translate with the page's own translations (``page_i18n.status_label``) ...
STATUS_MESSAGES = {
    "draft": N_("Not paid yet"),
    "awaiting_payment": N_("Confirming payment"),
    "queued": N_("Paid: waiting for an off-peak answerer"),
    "offered": N_("Offered to an answerer"),
    "claimed": N_("An answerer is writing the answer"),
    "answered": N_("Answered"),
    "clarifying": N_("Waiting for the answerer to clarify"),
    "closed": N_("Closed"),
    "disputed": N_("Rejected: the organizer is reviewing it"),
    "refunded": N_("Refunded"),
}

#: ... and the same as lazy strings, for code that shows them outside a template.
STATUS_LABELS = {status: _l(message) for status, message in STATUS_MESSAGES.items()}

#: The topics an asker may choose, in plain words.
TOPIC_NAMES = {
    "everyday": _l("Everyday life"), "health": _l("Health and care"),
    "home": _l("Home and garden"), "money": _l("Money and benefits"),
    "technology": _l("Phones, computers and the internet"),
    "language": _l("Language and translation"), "law": _l("Rights and official matters"),
    "other": _l("Something else"),
}

def reader_locale() -> str:
    """The locale of the person reading the page (see ``upss.select_locale``)."""
    return str(get_locale() or "en")


def money_text(cents: int, currency: str) -> str:
    """An amount formatted for the reader's locale (also the templates' ``money`` filter)."""
    return money.format_money(cents, currency, reader_locale())


def duration_text(left: timedelta) -> str:
    """A time span in hours and whole minutes, in the reader's language: "3 hours, 20 minutes"
    (CLDR units, as the answer page's script writes them with ``Intl``)."""
    minutes = int(left.total_seconds() // 60)
    if minutes < 1:
        return _("less than a minute")
    locale = reader_locale()
    hours, minutes = divmod(minutes, 60)
    parts = [format_unit(value, unit, length="long", locale=locale)
             for value, unit in ((hours, "duration-hour"), (minutes, "duration-minute")) if value]
    return format_list(parts, style="unit", locale=locale)


def until_text(moment: datetime, now: datetime | None = None) -> str:
    """A clock time in the reader's time zone: just the time if it is on the same day as
    ``now``, else the date too."""
    today = to_user_timezone(now or datetime.now(moment.tzinfo)).date()
    if to_user_timezone(moment).date() == today:
        return format_time(moment, "short")
    return format_datetime(moment, "short")


def cell_label(text: str) -> Markup:
    """A table cell's column name (the templates' ``cell_label``), shown only at narrow widths
    where the header row is out of sight (``.table--labelled`` in upss.css); hidden from
    screen readers, which announce the column header of the table itself. Leave an empty cell
    empty: no label. A function, not a macro: a list page calls it for every cell, and this
    is half the work of a macro call. ``text`` is escaped unless it is ``Markup`` already, as
    ``{{ text }}`` in a template would be."""
    return Markup(  # noqa: S704 - the only variable part is escaped
        f'<span class="cell-label" aria-hidden="true">{escape(text)}</span> ')


def person_name(user) -> str:
    """How pages name a person: their name, or "Deleted user" once their account is erased
    (``upss.account_deletion``; the stored pseudonym is not shown). Also the templates'
    ``person_name``."""
    if user is None:
        return ""
    if getattr(user, "deleted_at", None) is not None:
        return _("Deleted user")
    return user.name
