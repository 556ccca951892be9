"""The templates' gettext and ``money`` filter, reading the page's language once per render.

Flask-Babel installs gettext callables that look up the request's translations on every call
(``get_translations()``: the app, ``g``, the locale selector's cached result, the cache of
translations, several context-local proxies each). A page calls them 50–100 times: a few
milliseconds of a page's CPU. Here a context processor puts the translations into the page's
context when ``render_template`` starts (inside ``force_locale`` as well, so a message rendered
for someone else is still in their language), with the page's locale (``page_lang``, the
``lang`` of its ``<html>``), and the callables read them from the template's context. A
template rendered without that context (an ``import`` without ``with context``, or
``jinja_env.get_template(...).render(...)`` as the e-mails are) falls back to Flask-Babel's
lookup, so the text is never in the wrong language.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from babel import Locale, dates
from flask import Flask
from flask_babel import format_datetime, get_locale, get_timezone, get_translations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from .. import money
from ..extensions import babel
from .display import STATUS_MESSAGES, money_text

TRANSLATIONS = "_page_translations"
#: The page's babel ``Locale`` and time zone, for ``datetimeformat``.
LOCALE_OBJECT, ZONE = "_page_locale", "_page_zone"
#: The page's locale as text (the ``lang`` of its ``<html>``).
LOCALE = "page_lang"


def _translations(context: Context):
    found = context.get(TRANSLATIONS)
    return found if found is not None else get_translations()


def _formatted(context: Context, text: str, variables: dict) -> str:
    """What Jinja's "newstyle" gettext does with a translation: ``Markup`` when the template
    escapes (so the variables are escaped), then always ``%``-formatted ("%%" becomes "%");
    a text without "%" is the same after formatting, so it is not formatted."""
    if context.eval_ctx.autoescape:
        text = Markup(text)  # noqa: S704 - our catalogs, as Jinja's own wrapper trusts them
    return text % variables if "%" in text else text


@pass_context
def gettext(context: Context, string: str, **variables) -> str:
    return _formatted(context, _translations(context).ugettext(string), variables)


@pass_context
def ngettext(context: Context, singular: str, plural: str, num: int, **variables) -> str:
    variables.setdefault("num", num)
    return _formatted(context, _translations(context).ungettext(singular, plural, num),
                      variables)


@pass_context
def pgettext(context: Context, message_context: str, string: str, **variables) -> str:
    variables.setdefault("context", message_context)
    return _formatted(context, _translations(context).upgettext(message_context, string),
                      variables)


@pass_context
def npgettext(context: Context, message_context: str, singular: str, plural: str, num: int,
              **variables) -> str:
    variables.setdefault("context", message_context)
    variables.setdefault("num", num)
    return _formatted(context, _translations(context).unpgettext(
        message_context, singular, plural, num), variables)


@pass_context
def money_filter(context: Context, cents: int, currency: str) -> str:
    """``display.money_text`` in the page's locale, read once per render."""
    locale = context.get(LOCALE)
    if locale is None:
        return money_text(cents, currency)
    return money.format_money(cents, currency, locale)


@pass_context
def status_label(context: Context, status: str) -> str:
    """A question state in plain words (``display.STATUS_MESSAGES``) in the page's language
    (a list shows one per row; a lazy string would look the translations up for each);
    a state without words, as it is."""
    message = STATUS_MESSAGES.get(status)
    if message is None:
        return status
    return _formatted(context, _translations(context).ugettext(message), {})


#: The formats ``datetimeformat`` formats itself; others (and templates rendered without the
#: page's context) go to Flask-Babel. Their patterns have no time zone fields.
FORMATS = ("short", "medium")
_patterns: dict[tuple[str, str], dates.DateTimePattern] = {}


def datetime_pattern(locale: Locale, format: str) -> dates.DateTimePattern:
    """One pattern for Babel's ``format_datetime(..., format)`` in ``locale``. Babel formats
    the time and the date with their own patterns and puts the two texts into the locale's
    glue ("{1}, {0}", its quotes removed); here the glue's text is quoted as literal text
    between the two patterns, so a datetime is formatted in one pass, the pattern parsed
    once per locale and format."""
    key = (str(locale), format)
    found = _patterns.get(key)
    if found is None:
        glue = str(dates.get_datetime_format(format, locale=locale)).replace("'", "")
        parts = {"{0}": dates.get_time_format(format, locale=locale).pattern,
                 "{1}": dates.get_date_format(format, locale=locale).pattern}
        text = "".join(parts.get(part) or (f"'{part}'" if part else "")
                       for part in re.split(r"(\{[01]\})", glue))
        found = _patterns[key] = dates.parse_pattern(text)
    return found


@pass_context
def datetime_filter(context: Context, moment: datetime, format: str | None = None) -> str:
    """Flask-Babel's ``datetimeformat`` (the moment in the page's time zone, in its locale),
    with the locale and zone read once per render and the pattern once per locale."""
    locale, zone = context.get(LOCALE_OBJECT), context.get(ZONE)
    if locale is None or zone is None or format not in FORMATS:
        return format_datetime(moment, format)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(zone)
    if hasattr(zone, "normalize"):  # pytz: the offset of the moment's own date
        moment = zone.normalize(moment)
    return datetime_pattern(locale, format).apply(moment, locale, reference_date=moment.date())


def init_app(app: Flask) -> None:
    """Replace Flask-Babel's template callables (call after ``babel.init_app``). They are
    installed as they are, already "newstyle" (Jinja's ``install_gettext_callables`` would
    wrap each in two more calls through the context: ``_`` -> ``gettext`` -> the callable);
    ``tests/flows/test_page_i18n.py`` holds them to Jinja's own wrappers' output."""
    app.jinja_env.newstyle_gettext = True  # how {% trans %} blocks are compiled
    app.jinja_env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext,
                                 pgettext=pgettext, npgettext=npgettext,
                                 status_label=status_label)
    app.jinja_env.filters["money"] = money_filter

    # Formats configured for the app (BABEL's ``date_formats``) are Flask-Babel's to apply.
    if all(babel.date_formats.get(f"datetime.{name}") is None for name in FORMATS):
        app.jinja_env.filters["datetimeformat"] = datetime_filter

    @app.context_processor
    def page_translations():
        locale = get_locale()
        return {TRANSLATIONS: get_translations(), LOCALE_OBJECT: locale,
                LOCALE: str(locale or "en"), ZONE: get_timezone()}
