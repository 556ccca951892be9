"""The one-click unsubscribe link of a message (issue 17), keyboard only, signed out: opening it
only asks; the button turns that kind of message off; a money message's link is refused with a
clear page; the page follows the language chosen on the browser. axe-core finds nothing there
nor on the development mail page."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.keyboard import activate
from upss import notifications
from upss.extensions import db
from upss.models import LANGUAGE_NAMES


def token(app, user_id: int, kind: str) -> str:
    with app.app_context():
        return notifications.unsubscribe_token(user_id, kind)


def mode(app, user_id: int, kind: str) -> str:
    with app.app_context():
        try:
            return notifications.mode(db.session, user_id, kind)
        finally:
            db.session.remove()


def test_unsubscribe_by_keyboard_without_signing_in(page, live_server, app, world, a11y):
    asker = world.user("asker")
    link = f"{live_server}/unsubscribe/{token(app, asker, 'answer_ready')}"
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Stop these messages?")
    expect(page.get_by_text("Your answer is ready", exact=False)).to_be_visible()
    a11y.check(page, "unsubscribe: asking")
    assert mode(app, asker, "answer_ready") == "now", "opening the link changed nothing"

    activate(page, "^Stop these messages$")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "You will not get these messages any more")
    a11y.check(page, "unsubscribe: done")
    assert mode(app, asker, "answer_ready") == "off"

    page.goto(link)
    expect(page.get_by_text("These messages are already turned off")).to_be_visible()
    expect(page.get_by_role("button", name="Stop these messages")).to_have_count(0)

    response = page.goto(f"{live_server}/unsubscribe/{token(app, asker, 'payment_confirmed')}")
    assert response.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "These messages cannot be turned off")
    a11y.check(page, "unsubscribe: a money message")
    assert a11y.violations == []


def test_the_unsubscribe_page_in_the_language_chosen_on_the_browser(page, live_server, app,
                                                                    world, a11y):
    asker = world.user("asker")
    headings = {"en": "Stop these messages?", "nb": "Stoppe disse meldingene?",
                "fi": "Lopetetaanko nämä viestit?", "sv": "Stänga av de här meddelandena?",
                "sl": "Želite ustaviti ta sporočila?"}
    assert set(headings) == set(LANGUAGE_NAMES)
    link = f"{live_server}/unsubscribe/{token(app, asker, 'new_offer')}"
    for locale, heading in headings.items():
        page.context.add_cookies([{"name": "upss_language", "value": locale,
                                   "url": live_server}])
        page.goto(link)
        expect(page.locator("html")).to_have_attribute("lang", locale)
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        a11y.check(page, f"unsubscribe ({locale})")
    assert a11y.violations == []


def test_the_development_mail_page_has_no_accessibility_problems(page, live_server, a11y):
    page.goto(f"{live_server}/dev/mail")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mail received (development)")
    a11y.check(page, "development mail page")
    assert a11y.violations == []
