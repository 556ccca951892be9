"""A forgotten password, end to end in the real browser by keyboard only (issue 18 item 2):
from the sign-in page to the e-mail's link (read from the real SMTP server in the test), a new
password typed twice, signed out everywhere (another browser signed in before is signed out),
signed in with the new password; the same link again, and one past its hour, are refused with
a clear page. axe-core finds nothing on any page."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from itsdangerous.timed import TimestampSigner
from playwright.sync_api import expect

from tests.browser.keyboard import activate, sign_in_by_keyboard, submit_with_enter, type_into
from upss import notifications
from upss.extensions import db
from upss.models import User, utcnow


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "UPSS_SMTP_URL": smtp_server.url,
            "UPSS_MAIL_FROM": "UPSS <upss@upss.example>",
            "UPSS_BASE_URL": "https://upss.example"}


def reset_link(app, smtp_server, base: str) -> str:
    """Send what is due; the link of the newest message, on the served site."""
    with app.app_context():
        notifications.dispatch_due(db.session, utcnow())
        db.session.remove()
    text = smtp_server.messages[-1].get_body(("plain",)).get_content()
    line = next(line for line in text.splitlines() if line.startswith("https://upss.example"))
    return base + urlsplit(line).path


def test_a_forgotten_password_by_keyboard(page, browser, live_server, app, world, smtp_server,
                                          a11y):
    user_id = world.user("asker")
    with app.app_context():
        email = db.session.get(User, user_id).email
    other = browser.new_context()
    other_page = other.new_page()
    sign_in_by_keyboard(other_page, live_server, email)
    expect(other_page.get_by_role("button", name="Sign out")).to_be_visible()

    page.goto(live_server + "/sign-in")
    activate(page, "^Forgotten your password\\?$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Forgotten password")
    a11y.check(page, "forgotten password")
    type_into(page, "E-mail address", email)
    submit_with_enter(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")
    a11y.check(page, "reset link sent")

    link = reset_link(app, smtp_server, live_server)
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    a11y.check(page, "choose a new password")
    type_into(page, "^New password$", "lingonberry jam on toast")
    type_into(page, "^New password again", "lingonberry jam on toast")
    submit_with_enter(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.get_by_text("Your new password is saved")).to_be_visible()
    a11y.check(page, "signed out after the reset")

    other_page.reload()
    expect(other_page.get_by_role("link", name="Sign in")).to_be_visible()
    other.close()

    sign_in_by_keyboard(page, live_server, email, "lingonberry jam on toast")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    response = page.goto(link)
    assert response.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    a11y.check(page, "a used reset link")
    assert a11y.violations == []


def test_a_reset_link_past_its_hour_is_refused(page, live_server, app, world, smtp_server,
                                               a11y, monkeypatch):
    user_id = world.user("asker")
    with app.app_context():
        email = db.session.get(User, user_id).email
    page.goto(live_server + "/forgot-password")
    type_into(page, "E-mail address", email)
    submit_with_enter(page)
    link = reset_link(app, smtp_server, live_server)
    later = int(time.time()) + 3601
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    response = page.goto(link)
    assert response.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("This link has expired")
    activate(page, "^Ask for a new link$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Forgotten password")
    a11y.check(page, "an expired reset link")
    assert a11y.violations == []


@pytest.mark.parametrize("locale", ["en", "sl"])
def test_the_account_pages_by_keyboard_in_each_language(page, live_server, app, world, a11y,
                                                        locale):
    """Sign-up's answer, changing the password and changing the address: reached and sent by
    keyboard, in English and Slovenian (the page's ``lang`` and its own heading; all five
    languages are checked without a browser in test_accounts_recovery.py), axe clean; a wrong
    password is an error summary that takes focus."""
    user_id = world.user("asker")
    with app.app_context():
        user = db.session.get(User, user_id)
        user.locale = locale
        email = user.email
        db.session.commit()
    page.context.add_cookies([{"name": "upss_language", "value": locale, "url": live_server}])
    page.goto(live_server + "/sign-up")
    for field in page.locator("form input:not([type=hidden])").all():
        field.focus()
        page.keyboard.type("new-person@example.org" if field.get_attribute("type") == "email"
                           else "Ny Person" if field.get_attribute("name") == "name"
                           else "lingonberry jam on toast")
    submit_with_enter(page)
    expect(page.locator("html")).to_have_attribute("lang", locale)
    a11y.check(page, f"sign-up answered ({locale})")
    page.goto(live_server + "/sign-in")
    page.locator("#email").focus()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse 9")
    submit_with_enter(page)
    english = {"/account/password": "Change your password",
               "/account/email": "Change your e-mail address"}
    for path, heading in english.items():
        page.goto(live_server + path)
        expect(page.locator("html")).to_have_attribute("lang", locale)
        shown = page.get_by_role("heading", level=1).inner_text()
        assert (shown == heading) == (locale == "en"), (locale, shown)
        a11y.check(page, f"{path} ({locale})")
    page.locator("#password").focus()
    page.keyboard.type("not my password")
    page.locator("#email").focus()
    page.keyboard.type("other@example.org")
    submit_with_enter(page)
    expect(page.locator(".error-summary")).to_be_focused()
    a11y.check(page, f"change of address refused ({locale})")
    assert a11y.violations == []
