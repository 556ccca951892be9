"""Translations: complete catalogs, and the page language from the user or the browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.conftest import sign_in, submit
from upss.extensions import db
from upss.models import User

TRANSLATIONS = Path(__file__).resolve().parents[2] / "translations"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def template_ids() -> set[str]:
    with open(TRANSLATIONS / "messages.pot", "rb") as f:
        return {m.id for m in read_po(f) if m.id}


@pytest.mark.parametrize("locale", ["nb", "fi", "sv", "sl"])
def test_catalog_is_complete_not_fuzzy_and_keeps_placeholders(locale):
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", "rb") as f:
        catalog = read_po(f)
    entries = {m.id: m for m in catalog if m.id}
    assert set(entries) == template_ids(), "catalog out of date: run `pybabel update`"
    # A plural message has a tuple of ids (singular, plural) and one string per plural form.
    def forms(m):
        return list(m.string) if isinstance(m.id, tuple) else [m.string]

    def placeholders(text):
        return sorted(PLACEHOLDER.findall(text))

    missing = [i for i, m in entries.items() if not all(s and s.strip() for s in forms(m))]
    fuzzy = [i for i, m in entries.items() if m.fuzzy]
    broken = [i for i, m in entries.items()
              if any(placeholders(s) != placeholders(i[-1] if isinstance(i, tuple) else i)
                     for s in forms(m))]
    assert (missing, fuzzy, broken) == ([], [], [])
    assert not catalog.fuzzy


def test_template_is_up_to_date_with_the_code():
    """Every translatable string of the code and templates is in messages.pot."""
    from babel.messages.extract import extract_from_dir

    root = Path(__file__).resolve().parents[2]
    found = set()
    for subdir, method in (("upss", "python"), ("templates", "jinja2")):
        for _file, _line, message, _comments, _context in extract_from_dir(
                root / subdir, method_map=[("**.py", method)] if method == "python" else
                [("**.html", "jinja2")], keywords={"_": None, "gettext": None, "N_": None,
                                                   "_l": None, "lazy_gettext": None}):
            found.add(message if isinstance(message, str) else message[0])
    assert found - template_ids() == set(), "run: pybabel extract (see README)"


def test_accept_language_fi_gives_a_finnish_page(client):
    page = client.get("/", headers={"Accept-Language": "fi-FI,fi;q=0.9,en;q=0.5"})
    text = page.get_data(as_text=True)
    assert '<html lang="fi"' in text
    assert "Skip to main content" not in text
    with open(TRANSLATIONS / "fi" / "LC_MESSAGES" / "messages.po", "rb") as f:
        skip = {m.id: m.string for m in read_po(f)}["Skip to main content"]
    assert skip in text


def test_the_users_setting_wins_over_the_browser(app, client, make_user):
    user_id, email, password = make_user()
    sign_in(client, email, password)
    response = submit(client, "/account/preferences", {"locale": "sv", "large_text": "y",
                                                        "high_contrast": "y"})
    assert response.status_code == 302
    with app.app_context():
        user = db.session.get(User, user_id)
        assert (user.locale, user.large_text, user.high_contrast) == ("sv", True, True)
    page = client.get("/questions", headers={"Accept-Language": "fi"}).get_data(as_text=True)
    assert '<html lang="sv" class="large-text high-contrast">' in page


def test_money_follows_the_locale(app, client, make_user):
    """The same price reads €99.50 in English and 99,50 € in Finnish."""
    from tests.conftest import ask
    _, email, password = make_user()
    sign_in(client, email, password)
    assert ask(client, price="99,5").status_code == 302
    english = client.get("/questions", headers={"Accept-Language": "en"}).get_data(as_text=True)
    finnish = client.get("/questions", headers={"Accept-Language": "fi"}).get_data(as_text=True)
    assert "€99.50" in english and "99,50\xa0€" in finnish


def test_each_language_is_one_locale_that_keeps_its_name(app):
    """Every request in a language gets the same babel ``Locale`` (its CLDR data loaded once),
    whose name is babel's own for it."""
    import flask_babel
    from babel import Locale

    import upss

    for code in upss.SUPPORTED_LOCALES:
        assert str(upss._LOCALES[code]) == str(Locale.parse(code)) == code
        assert upss._LOCALES[code] == Locale.parse(code)
    seen = []
    for _ in range(2):
        with app.test_request_context("/", headers={"Accept-Language": "sv-SE,sv;q=0.9"}):
            seen.append(flask_babel.get_locale())
    assert seen[0] is seen[1] is upss._LOCALES["sv"]
