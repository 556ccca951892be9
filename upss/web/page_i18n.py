"""The templates' gettext and ``money`` filter, reading the page's language once per render.

Flask-Babel installs gettext callables that look up the request's translations on every call
(``get_translations()``: the app, ``g``, the locale selector's cached result, the cache of
translations, several context-local proxies each). A page calls them 50–100 times: a few
milliseconds of a page's CPU. Here a context processor puts the translations into the page's
context when ``render_template`` starts (inside ``force_locale`` as well, so a message rendered
for someone else is still in their language), next to the locale ``page_lang`` that
``web.register_blueprints`` puts there, and the callables read them from the template's
context. A template rendered without that context (an ``import`` without
``with context``, or ``jinja_env.get_template(...).render(...)`` as the e-mails are) falls back
to Flask-Babel's lookup, so the text is never in the wrong language.
"""

from __future__ import annotations

from flask import Flask
from flask_babel import get_translations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from .. import money
from .display import money_text

TRANSLATIONS = "_page_translations"
#: Set for every page by ``web.register_blueprints`` (the ``lang`` of its ``<html>``).
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


def init_app(app: Flask) -> None:
    """Replace Flask-Babel's template callables (call after ``babel.init_app``). They are
    installed as they are, already "newstyle" (Jinja's ``install_gettext_callables`` would
    wrap each in two more calls through the context: ``_`` -> ``gettext`` -> the callable);
    ``tests/flows/test_page_i18n.py`` holds them to Jinja's own wrappers' output."""
    app.jinja_env.newstyle_gettext = True  # how {% trans %} blocks are compiled
    app.jinja_env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext,
                                 pgettext=pgettext, npgettext=npgettext)
    app.jinja_env.filters["money"] = money_filter

    @app.context_processor
    def page_translations():
        return {TRANSLATIONS: get_translations()}
