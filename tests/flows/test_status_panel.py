"""A question's status panel (issue 16 item 2): the status endpoint returns the panel as the
question's page shows it, for each status: the status, what it means, and only the actions the
one rule (``access.allowed_actions``) allows. Only the question's asker gets it; anyone else
gets 404, as for the page itself."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from tests.conftest import sign_in_as
from tests.flows.test_newcomer import Page
from upss import access, questions, release
from upss.extensions import db
from upss.models import Question, User

WAITING_FOR_CARD = "We are waiting for the card company to confirm your payment."
DID_NOT_GO_THROUGH = "Your payment did not go through:"
STOPPED_ASKING = "we stopped asking the payment service"
CONFIRMED = "Your payment is confirmed."
WORKING = "An answerer is working on it."
WITHDRAW = "Withdraw the question and get a refund"
PAY_NOW = "Pay for this question"

#: state -> (status label, the text that explains it, the texts that must not be there)
EXPECTED = {
    "draft": ("Not paid yet", PAY_NOW, [WAITING_FOR_CARD, CONFIRMED, WITHDRAW]),
    "awaiting_payment": ("Confirming payment", WAITING_FOR_CARD,
                         [DID_NOT_GO_THROUGH, CONFIRMED, WITHDRAW]),
    "payment_failed": ("Confirming payment", DID_NOT_GO_THROUGH,
                       [WAITING_FOR_CARD, CONFIRMED, WITHDRAW]),
    "checks_ended": ("Confirming payment", STOPPED_ASKING,
                     [WAITING_FOR_CARD, CONFIRMED, WITHDRAW]),
    "queued": ("Paid: waiting for an off-peak answerer", CONFIRMED,
               [WAITING_FOR_CARD, DID_NOT_GO_THROUGH, PAY_NOW]),
    "offered": ("Offered to an answerer", WORKING, [WAITING_FOR_CARD, CONFIRMED, WITHDRAW]),
    "claimed": ("An answerer is writing the answer", WORKING,
                [WAITING_FOR_CARD, CONFIRMED, WITHDRAW]),
}
#: Where the page still follows the status (only while the payment is being confirmed).
POLLED = {"awaiting_payment", "payment_failed", "checks_ended"}
CSRF_VALUE = re.compile(r'(name="csrf_token"[^>]*value=")[^"]+(")')


def question_in(app, world, asker_id: int, state: str) -> int:
    """A question of ``asker_id`` in ``state`` (a status, or an awaiting payment that failed
    or is no longer checked), made through the services with no Stripe call."""
    now = datetime.now(UTC)
    with app.test_request_context():
        asker = db.session.get(User, asker_id)
        q = questions.create_question(db.session, asker, title="How do I video call?",
                                      body="Step by step, please.", language="en",
                                      topic="technology", price_cents=1250)
        if state != "draft":
            pi_id = f"pi_test_{uuid.uuid4().hex[:12]}"
            questions.start_payment(db.session, q, asker, pi_id)
            if state == "payment_failed":
                q.payment_error = "Your card was declined."
            elif state == "checks_ended":
                q.payment_checks_ended_at = now
            elif state not in POLLED:
                questions.confirm_payment(db.session, q, pi_id, now=now)
        db.session.commit()
        question_id = q.id
    if state in ("offered", "claimed"):
        answerer = world.answerer()
        world.run(release.release_due_questions, now, ignore_window=True)
        assert world.question(question_id).status == "offered"
        if state == "claimed":
            world.act(questions.claim, question_id, answerer, now)
    return question_id


def panel(html: str) -> str:
    """The status panel (``#question-panel``) of ``html``, as written, CSRF tokens blanked."""
    start = html.index('<div id="question-panel"')
    end = html.index("<h2", start) if "<h2" in html[start:] else len(html)
    return CSRF_VALUE.sub(r"\1…\2", html[start:end].strip())


def text_of(page: Page, element_id: str) -> str:
    node = page.by_id(element_id)
    assert node is not None, f"no #{element_id}"
    return " ".join(node.text.split())


@pytest.mark.parametrize("state", list(EXPECTED))
def test_the_status_endpoint_returns_the_panel_the_page_shows(app, client, world, state):
    """For each status, status.json's ``html`` is the question page's panel: the status tag,
    what the status means, the actions allowed now (the withdraw form with its CSRF token
    only once paid and waiting), and the address to follow only while paying."""
    asker = world.user("asker")
    q = question_in(app, world, asker, state)
    sign_in_as(client, app, asker)
    label, explanation, absent = EXPECTED[state]

    response = client.get(f"/questions/{q}/status.json")
    assert response.status_code == 200
    data = response.get_json()
    assert data["label"] == label
    fragment = Page(data["html"])
    assert text_of(fragment, "question-status") == label
    status = fragment.by_id("question-status")
    assert status.attrs["role"] == "status"
    next_text = text_of(fragment, "question-next")
    assert explanation in next_text
    for text in absent:
        assert text not in next_text, f"{state}: {text!r} is shown"
    assert status.text.strip() not in next_text  # the status is said once, by its tag

    forms = fragment.forms()
    if state == "queued":
        assert [f.attrs["action"] for f in forms] == [f"/questions/{q}/cancel"]
        assert WITHDRAW in text_of(fragment, "question-next")
        assert re.search(r'name="csrf_token"[^>]*value="[^"]+"', data["html"])
    else:
        assert forms == []
    poll = fragment.by_id("question-panel").attrs.get("data-poll-url")
    assert poll == (f"/questions/{q}/status.json" if state in POLLED else None)

    # A reload shows the same panel (the page without JavaScript).
    page = client.get(f"/questions/{q}")
    assert page.status_code == 200
    assert panel(page.get_data(as_text=True)) == panel(data["html"])


def test_the_panels_actions_come_from_the_one_rule(app, client, world, monkeypatch):
    """The withdraw form is shown because ``access.allowed_actions`` allows "cancel", not by the
    template's own reading of the status: without it the paid question shows no form."""
    asker = world.user("asker")
    q = question_in(app, world, asker, "queued")
    sign_in_as(client, app, asker)
    assert WITHDRAW in client.get(f"/questions/{q}/status.json").get_json()["html"]

    rule = access.allowed_actions
    monkeypatch.setattr(access, "allowed_actions",
                        lambda session, question, user: rule(session, question, user) - {"cancel"})
    html = client.get(f"/questions/{q}/status.json").get_json()["html"]
    assert WITHDRAW not in html and Page(html).forms() == []
    assert WITHDRAW not in client.get(f"/questions/{q}").get_data(as_text=True)


@pytest.mark.parametrize("who", ["another asker", "the answerer", "the organizer"])
def test_only_the_asker_gets_the_panel(app, client, world, who):
    """Anyone but the question's asker gets 404, the answerer who holds it and the organizer
    too; nothing of the panel is in the answer."""
    asker = world.user("asker")
    q = question_in(app, world, asker, "claimed")
    with app.app_context():
        holder = db.session.get(Question, q).answerer_id
    other = {"another asker": lambda: world.user("asker"), "the answerer": lambda: holder,
             "the organizer": lambda: world.user("organizer")}[who]()
    sign_in_as(client, app, other)
    for url in (f"/questions/{q}/status.json", f"/questions/{q}"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "question-panel" not in response.get_data(as_text=True)


def test_signed_out_the_status_is_not_given(app, client, world):
    asker = world.user("asker")
    q = question_in(app, world, asker, "queued")
    response = client.get(f"/questions/{q}/status.json")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
