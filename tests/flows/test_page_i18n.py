"""The templates' gettext and money filter (``upss.web.page_i18n``): the page's translations
are looked up once per render, not once per string; a template rendered for someone else
(inside ``force_locale``, as the e-mails are) is still in their language."""

from __future__ import annotations

from pathlib import Path

import flask_babel
import jinja2
import pytest
from babel.messages.pofile import read_po
from flask import render_template_string
from flask_babel import force_locale

from upss.web import page_i18n

TRANSLATIONS = Path(__file__).resolve().parents[2] / "translations"
PAGE = ("{% for n in range(25) %}{{ _('Skip to main content') }}|{% endfor %}"
        "{{ ngettext('This account is also signed in on %(num)d other browser or device.', "
        "'This account is also signed in on %(num)d other browsers or devices.', 3) }}|"
        "{{ 1250|money('EUR') }}")


def finnish(message: str) -> str:
    with open(TRANSLATIONS / "fi" / "LC_MESSAGES" / "messages.po", "rb") as f:
        return {m.id if isinstance(m.id, str) else m.id[0]: m.string
                for m in read_po(f)}[message]


def test_a_page_looks_up_its_translations_once(app, monkeypatch):
    calls = []
    real = flask_babel.get_translations

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(flask_babel, "get_translations", counted)
    monkeypatch.setattr(page_i18n, "get_translations", counted)
    with app.test_request_context("/", headers={"Accept-Language": "fi"}):
        text = render_template_string(PAGE)
    skip = finnish("Skip to main content")
    parts = text.split("|")
    assert parts[:25] == [skip] * 25 and skip != "Skip to main content"
    assert parts[25] == finnish("This account is also signed in on %(num)d other browser or "
                                "device.")[1].replace("%(num)d", "3")
    assert parts[26] == "12,50\xa0€"
    assert len(calls) == 1


def test_a_template_rendered_for_someone_else_is_in_their_language(app):
    """An English page's request renders a Finnish reader's text inside ``force_locale``:
    through ``render_template`` (the context is made inside) and through the bare Jinja
    environment (no context: Flask-Babel's own lookup)."""
    skip = finnish("Skip to main content")
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert render_template_string(PAGE).startswith("Skip to main content|")
        with force_locale("fi"):
            assert render_template_string(PAGE).startswith(skip + "|")
            bare = app.jinja_env.from_string(PAGE).render()
            assert bare.startswith(skip + "|") and bare.endswith("12,50\xa0€")
        assert render_template_string(PAGE).endswith("€12.50")


SNIPPETS = [
    "{{ _('Skip to main content') }}",
    "{{ _('100%% sure') }}",
    "{{ _('Hello %(name)s,', name='<b>Ann</b> & co') }}",
    "{{ gettext('Stop messages like this one') }}",
    "{{ ngettext('%(num)d apple', '%(num)d apples', 3) }}",
    "{{ ngettext('This account is also signed in on %(num)d other browser or device.', "
    "'This account is also signed in on %(num)d other browsers or devices.', 1) }}",
    "{{ pgettext('menu', 'Open %(what)s in %(context)s', what='<x>') }}",
    "{{ _('<em>%(x)s</em> stays a tag, the value does not', x='<b>') }}",
    "{{ npgettext('files', '%(num)d file of %(context)s', '%(num)d files', 1) }}",
    "{% trans %}Skip to main content{% endtrans %}",
    "{% trans who='<i>' %}Hello {{ who }}, 50%{% endtrans %}",
    "{% trans n=2 %}{{ n }} item{% pluralize %}{{ n }} items{% endtrans %}",
]


@pytest.mark.parametrize("autoescape", [True, False])
def test_the_callables_write_what_jinjas_own_wrappers_write(app, autoescape):
    """The callables are installed without Jinja's wrappers; for each kind of call (plain,
    %% escaped, variables to escape, plurals, contexts, trans blocks) and with and without
    escaping, they give Jinja's own wrappers' text, with the render's translations and
    without them (the fallback)."""
    with app.test_request_context("/", headers={"Accept-Language": "fi"}):
        translations = flask_babel.get_translations()
        stock = jinja2.Environment(extensions=["jinja2.ext.i18n"],
                                   autoescape=autoescape)  # noqa: S701 - text e-mails too
        stock.install_gettext_translations(translations, newstyle=True)
        ours = app.jinja_env.overlay(autoescape=autoescape)
        for source in SNIPPETS:
            expected = stock.from_string(source).render()
            assert ours.from_string(source).render() == expected, source
            assert ours.from_string(source).render(
                {page_i18n.TRANSLATIONS: translations}) == expected, source
        assert stock.from_string(SNIPPETS[0]).render() == finnish("Skip to main content")


def _moments() -> list:
    """Every 20 minutes over the days the clocks change in Oslo (spring and autumn), the turn
    of a year, a leap day, a time without a zone (read as UTC) and one given in another zone."""
    from datetime import UTC, datetime, timedelta, timezone
    moments = []
    for start in (datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 10, 24, 22, tzinfo=UTC)):
        moments += [start + timedelta(minutes=20 * i) for i in range(3 * 24 * 3)]
    moments += [datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC), datetime(2028, 2, 29, 12, 5),
                datetime(2027, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
                datetime(2026, 7, 1, 11, 0, 0, 123456, tzinfo=UTC)]
    return moments


@pytest.mark.parametrize("locale", ["en", "fi", "nb", "sv", "sl"])
def test_datetimeformat_gives_flask_babels_text(app, locale):
    """The page's ``datetimeformat`` (one pattern per locale and format) against Flask-Babel's
    ``format_datetime`` in the same request, for each short and medium format, across the
    changes of the clocks; other formats and a render without the page's context are
    Flask-Babel's own."""
    moments = _moments()
    template = ("{% for m in moments %}{{ m|datetimeformat('short') }}|"
                "{{ m|datetimeformat('medium') }}|{{ m|datetimeformat('full') }}|"
                "{{ m|datetimeformat }}#{% endfor %}")
    with app.test_request_context("/", headers={"Accept-Language": locale}):
        assert str(flask_babel.get_locale()) == locale
        expected = "".join(
            "|".join(str(jinja2.utils.markupsafe.escape(flask_babel.format_datetime(m, f)))
                     for f in ("short", "medium", "full", None)) + "#" for m in moments)
        assert render_template_string(template, moments=moments) == expected
        bare = app.jinja_env.from_string(template).render(moments=moments)
        assert bare == expected
    assert len(page_i18n._patterns) >= 2


@pytest.mark.parametrize("name", ["ar", "fa", "ja", "zh_Hant", "ko", "he", "hi", "th", "ru",
                                  "de", "fr", "es_419", "pt_BR", "en_GB", "ta", "bg", "my"])
def test_one_pattern_is_babels_format_datetime_in_other_scripts(name):
    """The joined pattern against Babel itself in locales with other glue, digits and
    scripts than the five the site speaks (a new language should not need new code)."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from babel import Locale
    from babel.dates import format_datetime

    locale, zone = Locale.parse(name), ZoneInfo("Europe/Oslo")
    for moment in _moments()[::37]:
        local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone)
        for format in page_i18n.FORMATS:
            assert page_i18n.datetime_pattern(locale, format).apply(local, locale) == \
                format_datetime(moment, format, tzinfo=zone, locale=locale), (name, moment)
