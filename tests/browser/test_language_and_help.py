"""Keyboard only, in the real browser (issue 16, items 6 and 13): a visitor chooses Suomi at the
foot of a page and the same page comes back in Finnish, on the next page too and on a new visit
(the cookie); a signed-in user's saved language wins over the cookie, and choosing one while
signed in saves it. The help link sits in the same place on every page, and the help page is
clean for axe-core in all five languages."""

from __future__ import annotations

import re
import time
from pathlib import Path

from babel.support import Translations
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.keyboard import activate, submit_with_enter, tab_to, type_into
from upss.config import LANGUAGE_COOKIE
from upss.extensions import db
from upss.models import LANGUAGE_NAMES, User

TRANSLATIONS = Path(__file__).resolve().parents[2] / "translations"


def t(locale: str, message: str) -> str:
    """``message`` as the pages show it in ``locale`` (the compiled catalogs)."""
    if locale == "en":
        return message
    return Translations.load(str(TRANSLATIONS), [locale]).gettext(message)


def choose_language(page, name: str, shown_in: str) -> None:
    """On a page shown in ``shown_in``: Tab to the language list, type the start of the
    language's own name (the list jumps to it), Tab to the button and press Enter.

    Only the letters before the first one a US keyboard lacks are typed ("Sloven" of
    "Slovenščina"): Playwright sends such letters as inserted text, which Chromium puts into
    the page's last text field instead of the focused list."""
    active = tab_to(page, f"^{re.escape(t(shown_in, 'Language'))}$", limit=120)
    assert active["tag"] == "SELECT", active
    page.keyboard.type(re.match(r"[A-Za-z ]*", name).group())
    assert page.evaluate("() => document.activeElement.selectedOptions[0].text") == name
    activate(page, f"^{re.escape(t(shown_in, 'Change language'))}$")


#: Where the help link is: its landmark, that landmark's place among the page's landmarks
#: counted from the end (the header's navigation differs by role), the path of element
#: positions from the landmark down to the link, and its place in the Tab order within it.
HELP_LINK_PLACE = """() => {
  const link = document.getElementById('help-link');
  if (!link) return null;
  const landmark = link.closest('header, nav, main, aside, footer, [role=region]');
  const landmarks = Array.from(document.querySelectorAll(
      'body > header, body main, body nav, body aside, body > footer'));
  const path = [];
  for (let el = link; el !== landmark; el = el.parentElement) {
    path.unshift(`${el.tagName}:${Array.from(el.parentElement.children).indexOf(el)}`);
  }
  const focusable = Array.from(landmark.querySelectorAll(
      'a[href], button, select, input:not([type=hidden]), textarea'));
  return {landmark: landmark.tagName, parent: landmark.parentElement.tagName,
          fromEnd: landmarks.length - landmarks.indexOf(landmark), path: path.join(' > '),
          tabIndexInLandmark: focusable.indexOf(link), text: link.innerText.trim()};
}"""


def test_a_visitor_chooses_suomi_by_keyboard_and_it_is_remembered(page, live_server, browser,
                                                                  a11y):
    page.goto(live_server + "/sign-up")
    assert page.locator("html").get_attribute("lang") == "en"
    a11y.check(page, "sign-up page, English, with the language choice")

    choose_language(page, "Suomi", shown_in="en")
    # The same page, now in Finnish.
    assert page.url == live_server + "/sign-up"
    assert page.locator("html").get_attribute("lang") == "fi"
    expect(page.get_by_role("heading", level=1)).to_have_text(t("fi", "Create an account"))
    expect(page.locator("#language-choice")).to_have_value("fi")
    a11y.check(page, "sign-up page after choosing Suomi")

    # The next page too (followed by keyboard: the help link).
    activate(page, f"^{re.escape(t('fi', 'Help and contact'))}$")
    assert page.url == live_server + "/help"
    assert page.locator("html").get_attribute("lang") == "fi"
    expect(page.get_by_role("heading", level=1)).to_have_text(t("fi", "Help and contact"))

    # The choice is a lasting cookie, not a session one: a new visit (a new browser context
    # with only the lasting cookies of this one) is in Finnish at once.
    cookies = {c["name"]: c for c in page.context.cookies()}
    chosen = cookies[LANGUAGE_COOKIE]
    assert chosen["value"] == "fi" and chosen["httpOnly"] and chosen["sameSite"] == "Lax"
    assert chosen["expires"] > time.time() + 180 * 24 * 3600
    lasting = [c for c in cookies.values() if c["expires"] > 0]
    assert [c["name"] for c in lasting] == [LANGUAGE_COOKIE]
    later = browser.new_context()
    try:
        later.add_cookies(lasting)
        visit = later.new_page()
        visit.goto(live_server + "/")
        assert visit.locator("html").get_attribute("lang") == "fi"
        expect(visit.locator("#language-choice")).to_have_value("fi")
    finally:
        later.close()
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_a_saved_language_wins_over_the_cookie_and_a_signed_in_choice_is_saved(
        page, live_server, app, world, a11y):
    asker = world.user("asker")
    with app.app_context():
        db.session.get(User, asker).locale = "sv"
        db.session.commit()
    page.goto(live_server + "/")
    choose_language(page, "Suomi", shown_in="en")  # this browser has chosen Finnish
    assert page.locator("html").get_attribute("lang") == "fi"

    # Signing in on the Finnish page, by keyboard.
    page.goto(live_server + "/sign-in")
    type_into(page, f"^{re.escape(t('fi', 'E-mail address'))}", f"asker{asker}@example.org")
    type_into(page, f"^{re.escape(t('fi', 'Password'))}", "correct horse 9")
    submit_with_enter(page)
    assert page.url == live_server + "/questions"
    # The saved Swedish wins over the Finnish cookie, on this page and the next.
    assert page.locator("html").get_attribute("lang") == "sv"
    expect(page.locator("#language-choice")).to_have_value("sv")
    activate(page, f"^{re.escape(t('sv', 'Ask a question'))}$")
    assert page.locator("html").get_attribute("lang") == "sv"
    a11y.check(page, "ask page in the saved Swedish")

    # Choosing a language while signed in saves it as the preference.
    choose_language(page, LANGUAGE_NAMES["sl"], shown_in="sv")
    assert page.url == live_server + "/ask"
    assert page.locator("html").get_attribute("lang") == "sl"
    with app.app_context():
        assert db.session.get(User, asker).locale == "sl"
    page.goto(live_server + "/account/preferences")
    expect(page.locator("#locale")).to_have_value("sl")
    a11y.check(page, "preferences in the chosen Slovenian")
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_the_help_link_is_in_the_same_place_on_every_page(page, live_server, world, a11y):
    places = {}
    for url in ("/", "/sign-in", "/sign-up", "/help", "/answer/apply", "/no-such-page"):
        page.goto(live_server + url)
        places[f"visitor {url}"] = page.evaluate(HELP_LINK_PLACE)
    asker = world.user("asker")
    page.goto(live_server + "/sign-in")
    type_into(page, "^E-mail address", f"asker{asker}@example.org")
    type_into(page, "^Password", "correct horse 9")
    submit_with_enter(page)
    for url in ("/questions", "/ask", "/account/preferences", "/answer/apply", "/help"):
        page.goto(live_server + url)
        places[f"asker {url}"] = page.evaluate(HELP_LINK_PLACE)
    first = places["visitor /"]
    assert first == {"landmark": "FOOTER", "parent": "BODY", "fromEnd": 1,
                     "path": first["path"], "tabIndexInLandmark": 0,
                     "text": "Help and contact"}
    different = {where: place for where, place in places.items() if place != first}
    assert different == {}, f"the help link moved: {first} but {different}"

    # By keyboard from a signed-in page: the help link comes right after the main content.
    page.goto(live_server + "/questions")
    activate(page, "^Help and contact$")
    assert page.url == live_server + "/help"
    expect(page.get_by_role("link", name="Help and contact")).to_have_attribute(
        "aria-current", "page")
    expect(page.get_by_role("link", name="Display and language").last).to_be_visible()
    a11y.check(page, "help page signed in")
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_the_help_page_is_clean_in_all_five_languages(page, live_server, app, a11y):
    page.goto(live_server + "/help")
    shown_in = "en"
    for locale in ("en", "nb", "fi", "sv", "sl"):
        if locale != shown_in:
            choose_language(page, LANGUAGE_NAMES[locale], shown_in=shown_in)
            shown_in = locale
        assert page.url == live_server + "/help"
        assert page.locator("html").get_attribute("lang") == locale
        expect(page.get_by_role("heading", level=1)).to_have_text(t(locale, "Help and contact"))
        for section in ("What UPSS is", "Asking and paying", "Answering and pay", "Refunds",
                        "Accessibility", "Contact the organizer"):
            expect(page.get_by_role("heading", level=2, name=t(locale, section),
                                    exact=True)).to_have_count(1)
        contact = app.config["UPSS_CONTACT_EMAIL"]
        expect(page.get_by_role("link", name=contact)).to_have_attribute(
            "href", f"mailto:{contact}")
        a11y.check(page, f"help page {locale}")
    screenshot(page, "help-page-sl")
    page.set_viewport_size({"width": 320, "height": 800})
    page.reload()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 320
    a11y.check(page, "help page sl at 320 px")
    assert a11y.violations == [], "\n".join(a11y.violations)
