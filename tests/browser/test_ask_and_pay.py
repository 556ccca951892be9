"""In a real browser: sign in, ask, pay on the test panel (plain and 3-D Secure), see it queued."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import screenshot

WAITING = "Paid: waiting for an off-peak answerer"


def ask_question(page, title: str, price: str) -> None:
    page.get_by_role("link", name="Ask a question").first.click()
    page.get_by_label("Title of your question").fill(title)
    page.get_by_label("Your question", exact=True).fill("Step by step, please.")
    page.get_by_label("Language of the answer").select_option("en")
    page.get_by_label("Topic").select_option("technology")
    page.get_by_label("Price you will pay").fill(price)
    page.get_by_role("button", name="Continue to payment").click()


def test_asker_signs_in_asks_and_pays_with_and_without_3d_secure(page, live_server, make_user,
                                                                  a11y):
    _, email, password = make_user("asker")
    page.goto(live_server + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Ask a question, get a considered answer")
    a11y.check(page, "home")
    screenshot(page, "home")

    page.get_by_role("link", name="Sign in").first.click()
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("The e-mail address or the password")
    a11y.check(page, "sign-in error")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My questions")
    a11y.check(page, "my questions (empty)")

    # A bad form first: the error summary takes focus and links to the field.
    page.get_by_role("link", name="Ask a question").first.click()
    a11y.check(page, "ask")
    page.get_by_role("button", name="Continue to payment").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("There is a problem")
    expect(summary).to_be_focused()
    a11y.check(page, "ask with errors")
    screenshot(page, "ask-errors")
    summary.get_by_role("link", name="Enter a title for your question").click()
    expect(page.get_by_label("Title of your question")).to_be_focused()

    # 1. Needs 3-D Secure, completed in localstripe's dialog.
    ask_question(page, "Video calls on my tablet", "12.50")
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay for your question")
    expect(page.get_by_text("No real card is charged")).to_be_visible()
    expect(page.get_by_text("€12.50").first).to_be_visible()
    a11y.check(page, "pay")
    screenshot(page, "pay")
    page.get_by_label("The card needs 3-D Secure authentication").check()
    page.get_by_role("button", name="Pay €12.50 (test)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Confirm the payment with your bank")
    a11y.check(page, "3-D Secure")
    page.get_by_role("button", name="Confirm with my bank").click()
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Video calls on my tablet")
    expect(page.get_by_role("status")).to_have_text(WAITING, timeout=20_000)
    a11y.check(page, "question queued (3-D Secure)")
    screenshot(page, "question-queued")

    # 2. A declined card, then a card that succeeds.
    ask_question(page, "Which pension forms do I need?", "30")
    page.get_by_label("The card is declined").check()
    page.get_by_role("button", name="Pay €30.00 (test)").click()
    expect(page.get_by_role("alert").first).to_contain_text("Your card was declined")
    a11y.check(page, "pay after decline")
    page.get_by_label("The card succeeds").check()
    page.get_by_role("button", name="Pay €30.00 (test)").click()
    expect(page.get_by_role("status")).to_have_text(WAITING, timeout=20_000)

    page.get_by_role("link", name="My questions", exact=True).click()
    expect(page.get_by_role("row")).to_have_count(3)
    a11y.check(page, "my questions")

    assert a11y.violations == [], "\n".join(a11y.violations)
    assert len(a11y.checked) == 10


def test_three_d_secure_failure_leaves_the_question_payable(page, live_server, make_user, a11y):
    _, email, password = make_user("asker")
    page.goto(live_server + "/sign-in")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    ask_question(page, "Failing bank check", "5")
    page.get_by_label("The card needs 3-D Secure authentication").check()
    page.get_by_role("button", name="Pay €5.00 (test)").click()
    page.get_by_role("button", name="Confirm with my bank").click()
    page.get_by_role("button", name="Fail authentication").click()
    expect(page.locator("#authentication-result")).to_contain_text(
        "The bank did not confirm the payment")
    expect(page.get_by_role("button", name="Confirm with my bank")).to_be_focused()
    a11y.check(page, "3-D Secure failed")
    page.get_by_role("link", name="Choose another way to pay").click()
    page.get_by_label("The card succeeds").check()
    page.get_by_role("button", name="Pay €5.00 (test)").click()
    expect(page.get_by_role("status")).to_have_text(WAITING, timeout=20_000)
    assert a11y.violations == [], "\n".join(a11y.violations)
