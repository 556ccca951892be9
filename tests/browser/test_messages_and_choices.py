"""The list of messages and the page of choices (issue 17 item 4), keyboard only in the real
browser: the header link says how many are unread in its text, the list marks the new ones
in words, the choices are radio groups reached with Tab and changed with the arrow keys, and
the account page lists a message that could not be sent. axe-core finds nothing on any of them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from tests.browser.keyboard import activate, sign_in_by_keyboard, tab_to
from upss import notifications
from upss.extensions import db
from upss.models import Notification, User

NOW = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)


def write(app, user_id: int, kind: str, data: dict, **row) -> None:
    with app.app_context():
        written = notifications.enqueue(db.session, db.session.get(User, user_id), kind, data,
                                        NOW)
        for key, value in row.items():
            setattr(written, key, value)
        db.session.commit()


def test_messages_and_choices_by_keyboard(page, live_server, app, world, a11y):
    answerer = world.answerer()
    write(app, answerer, "answer_rated", {"question_id": 1, "title": "Bus times",
                                          "amount_cents": 850, "currency": "EUR", "stars": 5})
    write(app, answerer, "answer_ready", {"question_id": 2, "title": "Pension"},
          status="failed", last_error="550 mailbox unavailable")
    with app.app_context():
        email = db.session.get(User, answerer).email
    sign_in_by_keyboard(page, live_server, email)

    activate(page, r"^Messages \(2 unread\)$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Messages")
    items = page.locator(".message-item")
    expect(items).to_have_count(2)
    expect(items.first.get_by_role("heading", level=2)).to_have_text(
        "New Your answer is ready: “Pension”")
    a11y.check(page, "messages")
    page.reload()
    expect(page.get_by_role("link", name="Messages", exact=True)).to_be_visible()
    expect(page.locator(".message-item .tag")).to_have_count(0)

    activate(page, "^Choose which messages are also sent by e-mail$")
    expect(page.get_by_role("heading", level=1)).to_have_text("How you get messages")
    a11y.check(page, "choices")
    # The first group is "Your answer is ready": Tab lands on its chosen radio, the arrow
    # key moves to the next choice and chooses it.
    tab_to(page, "^At once, by e-mail$")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#kind_answer_ready-1")).to_be_checked()
    tab_to(page, "^Time of your daily summary")
    page.keyboard.press("End")
    expect(page.get_by_label("Time of your daily summary")).to_have_value("23")
    tab_to(page, "^Send e-mails outside my available hours too$")
    page.keyboard.press("Space")
    activate(page, "^Save choices$")
    expect(page.get_by_text("Your choices are saved.")).to_be_visible()
    a11y.check(page, "choices saved")
    with app.app_context():
        user = db.session.get(User, answerer)
        assert notifications.mode(db.session, answerer, "answer_ready") == "digest"
        assert user.digest_hour == 23
        assert notifications.choices(db.session, user).outside_hours is True

    page.goto(f"{live_server}/account/preferences")
    expect(page.get_by_text("550 mailbox unavailable", exact=False)).to_be_visible()
    a11y.check(page, "account page with a message not sent")
    with app.app_context():
        assert db.session.query(Notification).filter_by(status="failed").count() == 1
    assert a11y.violations == []
