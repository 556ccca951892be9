"""The templates' gettext and ``money`` filter, reading the page's language once per render.

Flask-Babel installs gettext callables that look up the request's translations on every call
(``get_translations()``: the app, ``g``, the locale selector's cached result, the cache of
translations, several context-local proxies each). A page calls them 50–100 times: a few
milliseconds of a page's CPU. Here a context processor puts the translations and the locale
into the page's context when ``render_template`` starts (inside ``force_locale`` as well, so a
message rendered for someone else is still in their language), and the callables read them
from the template's context. A template rendered without that context (an ``import`` without
``with context``, or ``jinja_env.get_template(...).render(...)`` as the e-mails are) falls back
to Flask-Babel's lookup, so the text is never in the wrong language.
"""

from __future__ import annotations

from flask import Flask
from flask_babel import get_translations
from jinja2 import pass_context
from jinja2.runtime import Context

from .. import money
from .display import money_text

TRANSLATIONS = "_page_translations"
#: Set for every page by ``web.register_blueprints`` (the ``lang`` of its ``<html>``).
LOCALE = "page_lang"


def _translations(context: Context):
    found = context.get(TRANSLATIONS)
    return found if found is not None else get_translations()


@pass_context
def gettext(context: Context, string: str) -> str:
    return _translations(context).ugettext(string)


@pass_context
def ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return _translations(context).ungettext(singular, plural, n)


@pass_context
def pgettext(context: Context, message_context: str, string: str) -> str:
    return _translations(context).upgettext(message_context, string)


@pass_context
def npgettext(context: Context, message_context: str, singular: str, plural: str,
              n: int) -> str:
    return _translations(context).unpgettext(message_context, singular, plural, n)


@pass_context
def money_filter(context: Context, cents: int, currency: str) -> str:
    """``display.money_text`` in the page's locale, read once per render."""
    locale = context.get(LOCALE)
    if locale is None:
        return money_text(cents, currency)
    return money.format_money(cents, currency, locale)


def init_app(app: Flask) -> None:
    """Replace Flask-Babel's template callables (call after ``babel.init_app``)."""
    app.jinja_env.install_gettext_callables(
        gettext=gettext, ngettext=ngettext, newstyle=True, pgettext=pgettext,
        npgettext=npgettext)
    app.jinja_env.filters["money"] = money_filter

    @app.context_processor
    def page_translations():
        return {TRANSLATIONS: get_translations()}
