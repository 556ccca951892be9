"""A multi-line answer typed in the browser is accepted (CR LF normalised).

Browsers send a textarea's line breaks as CR LF when a form is submitted; the input filter
(``upss.web.inputs``) turns them into LF before anything is stored. Characters no page can show
(NUL and the other controls) are refused with the form's own error, never a 500.
"""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import claimed
from tests.browser.keyboard import activate, sign_in_by_keyboard, type_into
from tests.conftest import wait_until
from upss.extensions import db
from upss.models import AnswerDraft, Question

PARAGRAPHS = [
    "First, open the settings app.",
    "Then choose Accounts, and sign out of the old account.",
    "Last, sign in again with the new password.",
]
#: What the answerer means to type: three paragraphs with a blank line between them.
TYPED = "\n\n".join(PARAGRAPHS)


def is_form_post(request) -> bool:
    """The answer form's own POST (not the autosave fetch to .../draft)."""
    return request.method == "POST" and request.resource_type == "document"


def stored_draft(app, question_id: int, answerer_id: int) -> str | None:
    with app.app_context():
        draft = db.session.get(AnswerDraft, (question_id, answerer_id))
        return None if draft is None else draft.body


def test_multi_line_answer_typed_in_the_browser_is_stored_with_lf_only(
        page, live_server, app, world):
    answerer = world.answerer()
    q = claimed(world, answerer)

    sign_in_by_keyboard(page, live_server, f"answerer{answerer}@example.org")
    page.goto(f"{live_server}/answer/questions/{q}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Q")

    # Type three paragraphs with the keyboard, Enter twice between them.
    type_into(page, "^Your answer", PARAGRAPHS[0])
    for paragraph in PARAGRAPHS[1:]:
        page.keyboard.press("Enter")
        page.keyboard.press("Enter")
        page.keyboard.type(paragraph)
    expect(page.locator("#a-answer")).to_have_value(TYPED)

    # Autosave (fetch to /answer/questions/<id>/draft): the draft is stored with LF only.
    expect(page.locator("#draft-status")).to_contain_text("Draft saved at", timeout=10_000)
    wait_until(lambda: stored_draft(app, q, answerer) == TYPED, timeout=10)

    # "Save draft" posts the form itself, so the browser sends CR LF: stored as LF.
    with page.expect_request(is_form_post) as request:
        activate(page, "^Save draft$")
    assert "%0D%0A" in (request.value.post_data or ""), "the browser did not send CR LF"
    expect(page.get_by_role("status").first).to_contain_text("Your draft is saved")
    saved = stored_draft(app, q, answerer)
    assert saved is not None and "\r" not in saved, repr(saved)
    assert saved == TYPED
    expect(page.locator("#a-answer")).to_have_value(TYPED)

    # Send it: the success message, and the answer stored exactly as typed, LF only.
    with page.expect_request(is_form_post) as request, page.expect_navigation():
        page.get_by_role("button", name="Send answer").click()
    assert "%0D%0A" in (request.value.post_data or ""), "the browser did not send CR LF"
    expect(page.get_by_role("status").first).to_contain_text(
        "Your answer has been sent. Thank you!")
    with app.app_context():
        question = db.session.get(Question, q)
        status, body = question.status, question.answer_body
    assert status == "answered"
    assert body is not None and "\r" not in body, repr(body)
    assert body.count("\n") == 4, repr(body)
    assert body.strip() == TYPED


def test_sign_in_with_a_control_character_gets_the_forms_own_error(page, live_server, world):
    """A NUL cannot be typed, so it is put in by script; the reply is the form's error (400)."""
    world.user("asker")
    page.goto(live_server + "/sign-in")
    page.locator("#password").fill("correct horse 9")
    page.evaluate("""() => {
        document.getElementById("email").value = "a\\u0000@example.org";
    }""")
    assert page.evaluate("() => document.getElementById('email').value") == "a\x00@example.org"
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Sign in").click()
    response = navigation.value
    assert response is not None and response.status == 400, response and response.status
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("There is a problem")
    expect(alert).to_contain_text("cannot be stored")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    # The address comes back without the refused character.
    expect(page.locator("#email")).to_have_value("a@example.org")
