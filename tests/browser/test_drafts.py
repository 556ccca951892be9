"""No time limit loses work: the ask form and the answer are kept as they are typed."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from tests.browser.conftest import answering, sign_in


def test_ask_form_comes_back_after_leaving_the_page(page, live_server, world):
    asker = world.user("asker")
    sign_in(page, live_server, f"asker{asker}@example.org")
    page.goto(live_server + "/ask")
    page.locator("#title").type("My printer will not print")
    page.locator("#body").type("It blinks orange.")
    page.goto(live_server + "/questions")
    page.goto(live_server + "/ask")
    expect(page.locator("#title")).to_have_value("My printer will not print")
    expect(page.locator("#body")).to_have_value("It blinks orange.")
    expect(page.locator("#ask-draft-status")).not_to_be_empty()


def test_answer_typed_after_the_session_expired_is_kept(page, live_server, world):
    q, email = answering(page, live_server, world)
    # A request still in flight would set the session cookie again after it is cleared.
    page.wait_for_load_state("networkidle")
    page.context.clear_cookies()  # the session runs out while the answerer types
    page.locator("#a-answer").type("Turn it off and on again.")
    expect(page.locator("#draft-status")).to_contain_text("kept on this computer",
                                                          timeout=10_000)
    sign_in(page, live_server, email)
    page.goto(f"{live_server}/answer/questions/{q}")
    expect(page.locator("#a-answer")).to_have_value("Turn it off and on again.")
    expect(page.locator("#draft-status")).not_to_be_empty()


def test_read_aloud_is_offered_where_the_browser_can_speak(page, live_server, world):
    """The read-aloud button appears only when the browser has speech synthesis."""
    asker = world.user("asker")
    q = world.paid_question(paid_at=datetime.now(UTC), asker_id=asker)
    sign_in(page, live_server, f"asker{asker}@example.org")
    page.goto(f"{live_server}/questions/{q}")
    can_speak = page.evaluate("() => 'speechSynthesis' in window")
    expect(page.get_by_role("button", name="Read the question aloud")).to_have_count(
        1 if can_speak else 0)
    page.add_init_script("delete window.speechSynthesis")
    page.goto(f"{live_server}/questions/{q}")
    expect(page.get_by_role("button", name="Read the question aloud")).to_have_count(0)
    expect(page.locator("#question-text")).to_have_text("Body")
