"""No timeout loses typed work, in the real browser (issue 14, item 2).

- The answer page's token stops matching while the answerer types (they signed in again in
  another window): autosave says so, "Send answer" gets a page that still holds the whole text,
  and opening the answer page again puts the text back, ready to send.
- Signed out while typing: the same, through signing in again.
- The time left is counted down in the page, a warning is announced before the end, and the
  answerer can add time with the keyboard.
axe-core finds no violation in any of these states.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect

from tests.browser.conftest import answering, claimed, screenshot, sign_in
from tests.browser.keyboard import activate
from upss.extensions import db
from upss.models import Question

FIRST, SECOND = "Open the settings app. ", "Then choose Accounts and sign out."


def sent_answer(app, q: int) -> tuple[str, str | None]:
    with app.app_context():
        question = db.session.get(Question, q)
        return question.status, question.answer_body


def test_an_answer_sent_with_an_expired_token_is_kept_and_then_sent(
        page, live_server, app, world, a11y):
    q, email = answering(page, live_server, world)
    status = page.locator("#draft-status")
    page.locator("#a-answer").press_sequentially(FIRST)
    expect(status).to_contain_text("Draft saved at", timeout=10_000)

    # Signed in again in another window: this page's form token no longer matches.
    other = page.context.new_page()
    sign_in(other, live_server, email)
    other.close()
    page.locator("#a-answer").press_sequentially(SECOND)
    expect(status).to_contain_text("The form had expired, so this was not saved to the server.",
                                   timeout=10_000)
    a11y.check(page, "answer page, autosave refused")

    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Send answer").click()
    assert navigation.value.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("This form had expired")
    expect(page.get_by_label("Your answer")).to_have_value(FIRST + SECOND)
    expect(page.get_by_label("Your answer")).not_to_be_editable()
    a11y.check(page, "form expired page")
    screenshot(page, "form-expired")
    assert sent_answer(app, q) == ("claimed", None)

    page.get_by_role("link", name="Open the page again").click()
    expect(page.locator("#a-answer")).to_have_value(FIRST + SECOND)
    expect(status).to_contain_text("has been put back")
    expect(status).to_contain_text("Draft saved at", timeout=10_000)
    a11y.check(page, "answer page, text put back")
    send_and_check(page, app, q, a11y)


def send_and_check(page, app, q: int, a11y) -> None:
    """Send the answer page's text; it is sent whole, and no page had an axe violation."""
    with page.expect_navigation():
        page.get_by_role("button", name="Send answer").click()
    expect(page.get_by_role("status").first).to_contain_text("Your answer has been sent")
    assert sent_answer(app, q) == ("answered", (FIRST + SECOND).strip())
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_signed_out_while_typing_the_answer_comes_back_after_signing_in(
        page, live_server, app, world, a11y):
    q, email = answering(page, live_server, world)
    # A request still in flight would set the session cookie again after it is cleared.
    page.wait_for_load_state("networkidle")
    page.context.clear_cookies()  # the session is gone while the answerer types
    page.locator("#a-answer").press_sequentially(FIRST + SECOND)
    expect(page.locator("#draft-status")).to_contain_text(
        "You are signed out, so this was not saved to the server.", timeout=10_000)

    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Send answer").click()
    assert navigation.value.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed out")
    expect(page.get_by_label("Your answer")).to_have_value(FIRST + SECOND)
    a11y.check(page, "signed out page with the text")

    page.get_by_role("link", name="Sign in again").click()
    sign_in(page, None, email)
    assert page.url.endswith(f"/answer/questions/{q}")
    expect(page.locator("#a-answer")).to_have_value(FIRST + SECOND)
    expect(page.locator("#draft-status")).to_contain_text("has been put back")
    send_and_check(page, app, q, a11y)


def test_the_time_left_counts_down_warns_and_can_be_extended_by_keyboard(
        page, live_server, app, world, a11y):
    answerer = world.answerer()
    q = claimed(world, answerer, lock_in=timedelta(minutes=16))
    sign_in(page, live_server, f"answerer{answerer}@example.org")
    page.clock.install()  # the page's clock, driven from here; the server's is real
    page.goto(f"{live_server}/answer/questions/{q}")
    left = page.locator("#lock-time-left")
    polite, urgent = page.locator("#lock-warning"), page.locator("#lock-alert")
    expect(left).to_contain_text("About 15 minutes left to answer, until")
    expect(polite).to_be_empty()
    expect(polite).to_have_attribute("aria-live", "polite")

    page.clock.fast_forward("02:00")
    expect(left).to_contain_text("About 13 minutes left to answer")
    expect(polite).to_contain_text("Your time runs out in 13 minutes. Send your answer, or add "
                                   "more time with the button below.")
    expect(urgent).to_be_empty()
    a11y.check(page, "answer page, time nearly up")

    page.clock.fast_forward("09:00")
    expect(urgent).to_contain_text("Warning: Your time runs out in 4 minutes.")
    expect(page.get_by_role("alert")).to_contain_text("Your time runs out")
    expect(polite).to_be_empty()
    a11y.check(page, "answer page, final warning")
    screenshot(page, "answer-page-time-nearly-up")

    page.locator("#a-answer").press_sequentially("Typed before asking for time.")
    activate(page, "^Add 2 hours to my time$")
    expect(page.get_by_role("status").first).to_contain_text(
        "You have 2 hours more. The question is yours until")
    expect(page.locator("#a-answer")).to_have_value("Typed before asking for time.")
    expect(page.locator("#lock-time-left")).to_contain_text("About 2 hours, 1")
    expect(page.locator("#lock-warning")).to_be_empty()
    expect(page.locator("#lock-extend-hint")).to_have_text(
        "You can add time 1 more time, never past the asker's deadline.")
    a11y.check(page, "answer page after adding time")
    with app.app_context():
        lock = db.session.get(Question, q).lock_expires_at
    assert timedelta(hours=2, minutes=14) < lock - datetime.now(UTC) <= timedelta(hours=2,
                                                                                  minutes=16)
    assert a11y.violations == [], "\n".join(a11y.violations)
