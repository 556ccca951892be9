"""Keyboard only, in the real browser (issue 16 items 2, 3 and 5): after paying, the question's
page follows the payment without a reload and then shows only the paid panel, with the
withdraw button the one rule allows; a declined card says so in one message; signing up from
"Apply to answer" lands on the application form. axe-core finds nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.conftest import screenshot
from tests.browser.keyboard import ACTIVE, activate, sign_in_by_keyboard, tab_to, type_into
from tests.conftest import register_webhooks
from upss import account_tokens, payments, questions
from upss.extensions import db
from upss.models import User

TITLE = "How do I video call my grandson?"
WAITING_FOR_CARD = "We are waiting for the card company to confirm your payment"
PAID = "Paid: waiting for an off-peak answerer"
CONFIRMED = "Your payment is confirmed."
WITHDRAW = "Withdraw the question and get a refund"
DECLINED = "Your card was declined"


def draft_question(app, asker_id: int) -> int:
    """A question written but not paid yet (the Ask page's part is tested elsewhere)."""
    with app.test_request_context():
        q = questions.create_question(db.session, db.session.get(User, asker_id), title=TITLE,
                                      body="I have an Android tablet.", language="en",
                                      topic="technology", price_cents=1250)
        db.session.commit()
        return q.id


def to_the_pay_page(page, base: str, asker_id: int) -> None:
    """Sign in and go from "My questions" to the question and on to its pay page."""
    sign_in_by_keyboard(page, base, f"asker{asker_id}@example.org")
    expect(page.get_by_role("heading", level=1)).to_have_text("My questions")
    activate(page, f"^{re.escape(TITLE)}$")
    activate(page, "^Pay for this question$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay for your question")


def shift_tab_to(page, pattern: str, limit: int = 30) -> dict:
    """Press Shift+Tab until the focused element's text matches ``pattern``."""
    regex = re.compile(pattern)
    for _ in range(limit):
        page.keyboard.press("Shift+Tab")
        active = page.evaluate(ACTIVE)
        assert active is not None, "focus was lost (it fell back to the page body)"
        if regex.search(active["text"]):
            return active
    raise AssertionError(f"never reached {pattern!r} with Shift+Tab")


@pytest.mark.parametrize("focus_on", ["Back to my questions", "go to the payment page"])
def test_after_paying_the_panel_follows_without_a_reload(page, live_server, app, world,
                                                         localstripe_url, a11y, focus_on):
    """Focus stays where it was: on a link outside the panel, or, when the link it was on is
    gone with the old panel, on the new part of the panel (never lost to the page)."""
    asker = world.user("asker")
    q = draft_question(app, asker)
    # Stripe's confirmation is held back (its webhook goes nowhere), so the page is first seen
    # waiting for it, as when the card company is slow.
    register_webhooks(app, localstripe_url, live_server + "/held-back")
    try:
        to_the_pay_page(page, live_server, asker)
        tab_to(page, "^The card succeeds$")
        page.keyboard.press("Space")
        activate(page, r"^Pay €12\.50 \(test\)$")
        expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
        main = page.get_by_role("main")
        expect(main.get_by_text(WAITING_FOR_CARD)).to_be_visible()
        expect(page.get_by_role("button", name=WITHDRAW)).to_have_count(0)
        a11y.check(page, "question waiting for the card company")
        # Marks that vanish if the page is loaded again, or the live region is replaced.
        page.evaluate("""() => { window.notReloaded = true;
            window.statusTag = document.getElementById('question-status'); }""")
        tab_to(page, f"^{focus_on}$")

        world.run(payments.check_unconfirmed_payments, datetime.now(UTC) + timedelta(hours=1))
        assert world.question(q).status == "queued"

        status = page.get_by_role("status")
        expect(status).to_have_text(PAID, timeout=30_000)
    finally:
        register_webhooks(app, localstripe_url, live_server)
    expect(main.get_by_text(CONFIRMED)).to_be_visible()
    expect(main.get_by_text(WAITING_FOR_CARD)).to_have_count(0)
    expect(main.get_by_text("go to the payment page")).to_have_count(0)
    expect(page.get_by_role("button", name=WITHDRAW)).to_be_visible()
    expect(page.get_by_role("form", name=WITHDRAW, exact=True)).to_have_count(1)
    assert page.evaluate("() => window.notReloaded === true"), "the page was loaded again"
    # One status, said by the same live region (so it is announced once, as a change) ...
    expect(status).to_have_count(1)
    assert page.evaluate("""() => window.statusTag === document.getElementById('question-status')
        && document.contains(window.statusTag)"""), "the status's live region was replaced"
    # ... and the keyboard is where it was.
    if focus_on == "Back to my questions":
        assert page.evaluate(ACTIVE)["text"] == focus_on
        shift_tab_to(page, f"^{WITHDRAW}$")
    else:
        assert page.evaluate("() => document.activeElement.id") == "question-next"
        tab_to(page, f"^{WITHDRAW}$", limit=1)
    a11y.check(page, f"question paid, updated in place (focus on {focus_on})")
    screenshot(page, "question-paid-updated-in-place")

    # The new withdraw form works as it is (its CSRF token came with the panel).
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("status").first).to_contain_text("Your question is withdrawn")
    a11y.check(page, "question withdrawn")
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_a_declined_card_says_so_once(page, live_server, app, world, a11y):
    asker = world.user("asker")
    q = draft_question(app, asker)
    to_the_pay_page(page, live_server, asker)
    tab_to(page, "^The card succeeds$")
    page.keyboard.press("ArrowDown")  # in a group of radios the arrows choose
    assert page.evaluate(ACTIVE)["label"] == "The card is declined"
    activate(page, r"^Pay €12\.50 \(test\)$")

    expect(page.get_by_role("heading", level=1)).to_have_text("Pay for your question")
    main = page.get_by_role("main")
    # Exactly one visible message says the card was declined, in one alert (the error
    # summary, which takes focus so it is read first and once), and no flash beside it.
    declined = main.get_by_text(DECLINED)
    expect(declined).to_have_count(1)
    expect(declined).to_be_visible()
    expect(main.get_by_text("No money was taken")).to_have_count(1)
    alert = page.get_by_role("alert")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text(DECLINED)
    expect(alert).to_be_focused()
    expect(main.locator(".notice")).to_have_count(0)
    assert page.title().startswith("Error:")
    a11y.check(page, "pay page after a declined card")
    screenshot(page, "pay-declined")

    # The summary's link leads to the choice of card; paying again works.
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#scenario-0$"))
    assert page.evaluate(ACTIVE)["label"] == "The card succeeds"
    page.keyboard.press("Space")
    activate(page, r"^Pay €12\.50 \(test\)$")
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.get_by_role("status")).to_have_text(PAID, timeout=30_000)
    expect(page.get_by_role("main").get_by_text(DECLINED)).to_have_count(0)
    assert world.question(q).status == "queued"
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_signing_up_from_apply_to_answer_lands_on_the_application(page, live_server, a11y,
                                                                   app):
    page.goto(live_server + "/")
    activate(page, "^Apply to answer$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    a11y.check(page, "sign in, on the way to the application")
    activate(page, "^Create an account$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Create an account")
    a11y.check(page, "create an account, on the way to the application")

    type_into(page, "^Your name$", "Aino Virtanen")
    type_into(page, "^E-mail address$", "aino@example.org")
    type_into(page, "^Password$", "a long password")
    type_into(page, "^Password again$", "a long password")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # "Check your e-mail" (the same for a known address), then sign in: back to the way.
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")
    a11y.check(page, "sign-up answered, on the way to the application")
    activate(page, "^Sign in$")
    type_into(page, "^E-mail address$", "aino@example.org")
    type_into(page, "^Password$", "a long password")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == live_server + "/answer/apply"
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Confirm your e-mail address first")
    # The link of the confirmation e-mail opens the form.
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "aino@example.org"))
        link = f"{live_server}/confirm/{account_tokens.make('confirm', user.id, user.email)}"
        db.session.remove()
    page.goto(link)
    page.goto(live_server + "/answer/apply")
    expect(page.get_by_role("heading", level=1)).to_have_text("Apply to answer questions")
    a11y.check(page, "application form after signing up")
    assert a11y.violations == [], "\n".join(a11y.violations)
