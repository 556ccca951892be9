"""Double clicks and second tabs: every concurrent request ends on the same correct page, with
one effect, no 5xx and no misleading error (real threads against a served app, both databases).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select

from tests.conftest import CSRF_RE
from upss import questions, release
from upss.extensions import db
from upss.installation import installation_id
from upss.models import Question, QuestionEvent, Tip, User

NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)


@pytest.fixture
def app_config(app_config):
    """Enough pooled connections for every racing request at once."""
    options = {**app_config["SQLALCHEMY_ENGINE_OPTIONS"]}
    if app_config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        options.update(pool_size=40, max_overflow=0)
    return {**app_config, "SQLALCHEMY_ENGINE_OPTIONS": options}


def browser(base: str, email: str) -> requests.Session:
    """A signed-in browser (one cookie jar, as a person's tabs share)."""
    session = requests.Session()
    token = token_on(session, f"{base}/sign-in")
    response = session.post(f"{base}/sign-in", data={
        "csrf_token": token, "email": email, "password": "correct horse 9"},
        allow_redirects=False, timeout=10)
    assert response.status_code == 302
    return session


def token_on(session: requests.Session, url: str) -> str:
    match = CSRF_RE.search(session.get(url, timeout=10).text)
    assert match, url
    return match.group(1) or match.group(2)


def at_once(n: int, request) -> list[requests.Response]:
    """``request()`` from ``n`` threads released together; the responses, in no order."""
    barrier = threading.Barrier(n, timeout=30)
    responses: list = []
    lock = threading.Lock()

    def run():
        barrier.wait()
        try:
            result = request()
        except Exception as exc:  # noqa: BLE001 - reported below
            result = exc
        with lock:
            responses.append(result)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(responses) == n, "a request did not finish"
    errors = [r for r in responses if isinstance(r, Exception)]
    assert not errors, errors
    return responses


def clicked(n: int, tabs: requests.Session, url: str, data: dict) -> list[requests.Response]:
    """``n`` clicks on a form at once: every one ends on a page (200), none with a problem."""
    responses = at_once(n, lambda: tabs.post(url, data=data, timeout=60))
    assert [r.status_code for r in responses] == [200] * n, [
        (r.status_code, r.url) for r in responses]
    for r in responses:
        assert "Problem:" not in r.text, r.text[r.text.index("Problem:"):][:200]
    return responses


def performed(localstripe_url: str, path: str, key_part: str) -> list[dict]:
    log = requests.get(f"{localstripe_url}/_upss/requests", timeout=5).json()["requests"]
    return [r for r in log if r["performed"] and not r["replayed"] and r["path"] == path
            and key_part in (r["idempotency_key"] or "")]


def draft(app, world) -> tuple[int, str]:
    """An unpaid question of a new asker; (question id, the asker's e-mail)."""
    asker_id = world.user("asker")
    with app.test_request_context():
        asker = db.session.get(User, asker_id)
        q = questions.create_question(db.session, asker, title="Q", body="Body", language="en",
                                      topic="other", price_cents=1500)
        db.session.commit()
        return q.id, asker.email


def test_32_concurrent_first_opens_of_the_pay_page_make_one_payment_intent(
        app, world, live_server, localstripe_url):
    q, email = draft(app, world)
    tabs = browser(live_server, email)
    pages = at_once(32, lambda: tabs.get(f"{live_server}/questions/{q}/pay", timeout=60))
    assert sorted(r.status_code for r in pages) == [200] * 32
    for r in pages:  # every tab shows the pay page itself, not an error
        assert r.url.endswith(f"/questions/{q}/pay") and "Pay for your question" in r.text
    with app.app_context():
        question = db.session.get(Question, q)
        assert question.status == "awaiting_payment" and question.payment_intent_id
        key = f"{installation_id(db.session)}:question:{q}:pay"
        assert db.session.scalar(select(func.count()).select_from(QuestionEvent).where(
            QuestionEvent.question_id == q, QuestionEvent.action == "start_payment")) == 1
    assert len(performed(localstripe_url, "/v1/payment_intents", key)) == 1


def test_8_concurrent_pay_submits_charge_once_and_all_show_the_status_page(
        app, world, live_server, localstripe_url):
    q, email = draft(app, world)
    tabs = browser(live_server, email)
    token = token_on(tabs, f"{live_server}/questions/{q}/pay")
    responses = clicked(8, tabs, f"{live_server}/questions/{q}/pay/test",
                        {"csrf_token": token, "scenario": "succeeds"})
    assert {r.url for r in responses} == {f"{live_server}/questions/{q}"}
    assert not any("unavailable" in r.text.lower() for r in responses)
    with app.app_context():
        question = db.session.get(Question, q)
        intent_id = question.payment_intent_id
        assert question.status in ("awaiting_payment", "queued")
    confirms = [r for r in performed(localstripe_url, f"/v1/payment_intents/{intent_id}/confirm",
                                     "")]
    assert len(confirms) == 1


def _answered(app, world) -> tuple[int, str]:
    answerer = world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    now = datetime.now(UTC)
    with app.test_request_context():
        question = db.session.get(Question, q)
        user = db.session.get(User, answerer)
        questions.claim(db.session, question, user, now)
        questions.post_answer(db.session, question, user, "An answer", now)
        db.session.commit()
        return q, question.asker.email


@pytest.mark.parametrize(("path", "data", "done", "final"), [
    ("accept", {}, "The answer is accepted", "closed"),
    ("reject", {"r-reason": "It does not help"}, "The organizer will review", "disputed"),
    ("clarify", {"c-message": "Which app?"}, "Your message has been sent", "clarifying"),
])
def test_double_clicks_on_the_answer_act_once_and_say_so(app, world, live_server, path, data,
                                                         done, final):
    q, email = _answered(app, world)
    tabs = browser(live_server, email)
    token = token_on(tabs, f"{live_server}/questions/{q}")
    responses = clicked(6, tabs, f"{live_server}/questions/{q}/{path}",
                        {"csrf_token": token, **data})
    assert {r.url for r in responses} == {f"{live_server}/questions/{q}"}
    with app.app_context():
        assert db.session.get(Question, q).status == final
        assert db.session.scalar(select(func.count()).select_from(QuestionEvent).where(
            QuestionEvent.question_id == q, QuestionEvent.to_status == final)) == 1


def test_double_clicks_on_cancel_refund_once(app, world, live_server):
    asker_id = world.user("asker")
    q = world.paid_question(paid_at=NIGHT, asker_id=asker_id, real_stripe=True)
    with app.app_context():
        email = db.session.get(User, asker_id).email
    tabs = browser(live_server, email)
    token = token_on(tabs, f"{live_server}/questions/{q}")
    clicked(6, tabs, f"{live_server}/questions/{q}/cancel", {"csrf_token": token})
    with app.app_context():
        assert db.session.get(Question, q).status == "refunded"


def test_double_clicks_on_a_tip_start_one_tip(app, world, live_server):
    q, email = _answered(app, world)
    tabs = browser(live_server, email)
    token = token_on(tabs, f"{live_server}/questions/{q}")
    tabs.post(f"{live_server}/questions/{q}/accept", data={"csrf_token": token}, timeout=30)
    clicked(6, tabs, f"{live_server}/questions/{q}/tip",
            {"csrf_token": token, "t-amount": "2.50"})
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Tip)) == 1


def test_double_clicks_on_pick_up_and_send_answer_act_once(app, world, live_server):
    answerer = world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    with app.app_context():
        email = db.session.get(User, answerer).email
    tabs = browser(live_server, email)
    token = token_on(tabs, f"{live_server}/answer/queue")
    picked = clicked(6, tabs, f"{live_server}/answer/questions/{q}/claim",
                     {"csrf_token": token})
    assert {r.url for r in picked} == {f"{live_server}/answer/questions/{q}"}

    sent = clicked(6, tabs, f"{live_server}/answer/questions/{q}", {
        "csrf_token": token, "action": "send", "a-answer": "Open the camera app."})
    assert {r.url for r in sent} == {f"{live_server}/answer/queue"}
    with app.app_context():
        assert db.session.get(Question, q).status == "answered"
        for action in ("claim", "post_answer"):
            assert db.session.scalar(select(func.count()).select_from(QuestionEvent).where(
                QuestionEvent.question_id == q, QuestionEvent.action == action)) == 1
