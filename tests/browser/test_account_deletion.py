"""Delete my account (issue 18 item 5), keyboard only in the real browser: from the account
page to the page that says what deleting means (a question waiting in the queue is refunded in
full), a wrong password refused with a linked error, the right one accepted; the person is
signed out and told the date and that signing in cancels it. axe-core finds nothing on any page.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.keyboard import activate, sign_in_by_keyboard, submit_with_enter, type_into
from upss.extensions import db
from upss.models import User, utcnow


def test_delete_my_account_by_keyboard(page, live_server, app, world, a11y):
    asker = world.user("asker")
    world.paid_question(paid_at=utcnow(), asker_id=asker)
    with app.app_context():
        email = db.session.get(User, asker).email
    sign_in_by_keyboard(page, live_server, email)
    page.goto(f"{live_server}/account/preferences")

    activate(page, "^Delete my account$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete my account")
    expect(page.get_by_text("withdrawn now and refunded in full", exact=False)).to_be_visible()
    a11y.check(page, "delete my account")

    type_into(page, "^Your password", "not my password")
    submit_with_enter(page)
    expect(page.get_by_role("alert")).to_contain_text("The password is not right")
    a11y.check(page, "delete my account, wrong password")

    type_into(page, "^Your password", "correct horse 9")
    activate(page, "^Delete my account$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account will be deleted")
    expect(page.get_by_text("signing in cancels the deletion", exact=False)).to_be_visible()
    a11y.check(page, "deletion scheduled")
    with app.app_context():
        assert db.session.get(User, asker).deletion_requested_at is not None

    page.goto(f"{live_server}/account/delete")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")  # signed out
    assert a11y.violations == []
