"""Keyboard only, in the real browser: an answerer picks up and answers; the asker accepts
and rates. axe-core finds no violation on any page visited."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.keyboard import activate, sign_in_by_keyboard, tab_to, type_into
from upss import release


def test_answering_flow_by_keyboard_only(page, live_server, world, a11y):
    answerer = world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC), price_cents=2000)
    asker = world.question(q).asker_id
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)

    sign_in_by_keyboard(page, live_server, f"answerer{answerer}@example.org")
    activate(page, "My answer queue")
    expect(page.get_by_role("heading", level=1)).to_have_text("My answer queue")
    expect(page.get_by_text("You earn €18.00.")).to_be_visible()
    a11y.check(page, "answerer queue")
    screenshot(page, "answerer-queue")
    activate(page, "^Pick up")

    expect(page.get_by_role("heading", level=1)).to_have_text("Q")
    a11y.check(page, "answer page")
    type_into(page, "^Your answer", "Open the settings app, then choose Accounts.")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved at", timeout=10_000)
    screenshot(page, "answer-page")
    activate(page, "^Send answer$")
    expect(page.get_by_role("status").first).to_contain_text("Your answer has been sent")
    a11y.check(page, "queue after sending")
    assert world.question(q).status == "answered"

    activate(page, "^Sign out$")
    sign_in_by_keyboard(page, live_server, f"asker{asker}@example.org")
    page.goto(f"{live_server}/questions/{q}")
    expect(page.locator("#answer-text")).to_have_text(
        "Open the settings app, then choose Accounts.")
    a11y.check(page, "asker reads the answer")
    activate(page, "^Accept the answer$")
    expect(page.get_by_role("status").first).to_contain_text("The answer is accepted")
    a11y.check(page, "closed question")
    tab_to(page, "^5 – very helpful")
    page.keyboard.press("ArrowDown")  # moves to, and checks, "4 – helpful"
    page.keyboard.press("ArrowUp")    # back to 5
    type_into(page, "Comment", "Clear, thank you")
    activate(page, "^Send rating$")
    expect(page.get_by_text("You rated this answer 5 out of 5.")).to_be_visible()
    activate(page, "See your receipt")
    expect(page.get_by_role("heading", level=1)).to_have_text("Receipt")
    expect(page.get_by_role("cell", name="€18.00")).to_be_visible()
    a11y.check(page, "receipt")
    screenshot(page, "receipt")
    assert world.question(q).rating == 5 and world.question(q).status == "closed"
    assert a11y.violations == [], "\n".join(a11y.violations)
