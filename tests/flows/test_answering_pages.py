"""Answerer, asker and organizer pages of the answering flow, through the test client."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.conftest import csrf_token, sign_in_as, submit
from upss import ledger, release
from upss.extensions import db
from upss.models import AnswerDraft, Question

NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)


def offered(world) -> tuple[int, int]:
    """A question paid and offered now to a new answerer: (question, answerer)."""
    answerer = world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    return q, answerer


def claim(client, q: int):
    """Pick up the question ``q`` from the queue page, as the signed-in answerer."""
    return submit(client, f"/answer/questions/{q}/claim", form_url="/answer/queue")


def test_answerer_picks_up_writes_sends_and_asker_accepts_and_rates(app, world, client):
    q, answerer = offered(world)
    asker = world.question(q).asker_id

    sign_in_as(client, app, answerer)
    queue = client.get("/answer/queue").get_data(as_text=True)
    assert "Offered to you" in queue and "You earn €9.00" in queue
    assert claim(client, q).status_code == 302
    page = client.get(f"/answer/questions/{q}").get_data(as_text=True)
    assert "Send answer" in page and "Yours until" in page

    token = csrf_token(client, f"/answer/questions/{q}")
    saved = client.post(f"/answer/questions/{q}/draft", data={"csrf_token": token,
                                                               "answer": "Half an answer"})
    assert saved.status_code == 200 and "saved_at" in saved.get_json()
    assert "Half an answer" in client.get(f"/answer/questions/{q}").get_data(as_text=True)

    empty = client.post(f"/answer/questions/{q}", data={"csrf_token": token, "action": "send",
                                                        "a-answer": "  "})
    assert empty.status_code == 400 and "Write your answer before sending it" in (
        empty.get_data(as_text=True))
    sent = client.post(f"/answer/questions/{q}", data={"csrf_token": token, "action": "send",
                                                       "a-answer": "Open the camera app."})
    assert sent.status_code == 302
    assert world.question(q).status == "answered"

    sign_in_as(client, app, asker)
    page = client.get(f"/questions/{q}").get_data(as_text=True)
    assert "Open the camera app." in page and "Accept the answer" in page
    assert submit(client, f"/questions/{q}/accept", form_url=f"/questions/{q}").status_code == 302
    assert world.question(q).status == "closed"
    rated = submit(client, f"/questions/{q}/rate", {"s-stars": "5", "s-comment": "Thanks!"},
                   form_url=f"/questions/{q}")
    assert rated.status_code == 302 and world.question(q).rating == 5
    receipt = client.get(f"/questions/{q}/receipt").get_data(as_text=True)
    assert "€10.00" in receipt and "€9.00" in receipt and "€1.00" in receipt
    with app.app_context():
        assert ledger.balance(db.session, f"payable:answerer:{answerer}") == -900


def test_answerer_cannot_see_or_claim_questions_not_offered_to_them(app, world, client):
    a, b = world.answerer(), world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))
    made = world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    other = b if made[0].answerer_id == a else a
    sign_in_as(client, app, other)
    assert client.get(f"/answer/questions/{q}").status_code == 404
    assert claim(client, q).status_code == 404
    assert world.question(q).status == "offered"


def test_askers_get_403_on_answerer_and_organizer_pages(app, asker_client):
    for url in ("/answer/queue", "/organizer/settings", "/organizer/disputes"):
        assert asker_client.get(url).status_code == 403


def test_sending_after_the_lock_ran_out_keeps_the_text(app, world, client):
    q, answerer = offered(world)
    sign_in_as(client, app, answerer)
    claim(client, q)
    token = csrf_token(client, f"/answer/questions/{q}")
    world.run(release.expire_locks, datetime(2100, 1, 1, tzinfo=UTC))
    response = client.post(f"/answer/questions/{q}", data={
        "csrf_token": token, "action": "send", "a-answer": "My long careful answer"},
        follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "Your text is saved as a draft" in text and "My long careful answer" in text
    with app.app_context():
        assert db.session.get(AnswerDraft, (q, answerer)).body == "My long careful answer"
    assert "Your saved drafts" in client.get("/answer/queue").get_data(as_text=True)


def test_answerer_declines_from_the_queue(app, world, client):
    q, answerer = offered(world)
    sign_in_as(client, app, answerer)
    assert submit(client, f"/answer/questions/{q}/decline",
                  form_url="/answer/queue").status_code == 302
    assert world.question(q).status == "queued"


def test_clarification_round_trip_and_reject_and_cancel(app, world, client):
    q, answerer = offered(world)
    asker = world.question(q).asker_id
    sign_in_as(client, app, answerer)
    claim(client, q)
    token = csrf_token(client, f"/answer/questions/{q}")
    client.post(f"/answer/questions/{q}", data={"csrf_token": token, "action": "send",
                                               "a-answer": "Answer"})
    sign_in_as(client, app, asker)
    bad = submit(client, f"/questions/{q}/clarify", {"c-message": ""}, form_url=f"/questions/{q}")
    assert bad.status_code == 400 and "Write what you would like explained" in (
        bad.get_data(as_text=True))
    submit(client, f"/questions/{q}/clarify", {"c-message": "Which app?"},
           form_url=f"/questions/{q}")
    assert world.question(q).status == "clarifying"
    sign_in_as(client, app, answerer)
    assert "Which app?" in client.get(f"/answer/questions/{q}").get_data(as_text=True)
    token = csrf_token(client, f"/answer/questions/{q}")
    client.post(f"/answer/questions/{q}", data={"csrf_token": token, "action": "reply",
                                               "r-reply": "The camera app."})
    assert world.question(q).status == "answered"
    sign_in_as(client, app, asker)
    assert "The camera app." in client.get(f"/questions/{q}").get_data(as_text=True)
    submit(client, f"/questions/{q}/reject", {"r-reason": "Not what I asked"},
           form_url=f"/questions/{q}")
    assert world.question(q).status == "disputed"


def test_asker_withdraws_a_queued_question_and_is_refunded(app, world, asker_client):
    q = world.paid_question(paid_at=NIGHT, real_stripe=True, asker_id=asker_client.user_id)
    assert "Withdraw the question" in asker_client.get(f"/questions/{q}").get_data(as_text=True)
    submit(asker_client, f"/questions/{q}/cancel", form_url=f"/questions/{q}")
    assert world.question(q).status == "refunded"
    with app.app_context():
        assert ledger.balance(db.session, f"escrow:question:{q}") == 0


def test_organizer_settings_page_saves_windows_and_rules(app, world, client):
    organizer = world.user("organizer")
    sign_in_as(client, app, organizer)
    page = client.get("/organizer/settings").get_data(as_text=True)
    assert 'value="22:00-07:00"' in page and 'value="Europe/Oslo"' in page
    data = {"timezone": "Europe/Helsinki", "commission": "12.5", "price_min": "5",
            "price_max": "150", "offer_hours": "6", "lock_hours": "3", "lock_hours_large": "9",
            "large_price": "120", "deadline_hours": "48", "auto_accept_days": "2",
            "urgent_hours": "10", "release_max_per_run": "7",
            **{f"window_{d}": "22:00-07:00" for d in range(5)},
            "window_5": "", "window_6": "09:00-12:00, 20:00-23:00"}
    response = submit(client, "/organizer/settings", data)
    assert response.status_code == 302
    from upss import settings
    with app.app_context():
        s = settings.current(db.session)
    assert (s.timezone, s.commission_bps, s.price_min_cents, s.price_max_cents) == (
        "Europe/Helsinki", 1250, 500, 15000)
    assert (s.offer_hours, s.lock_hours_for(12000), s.deadline_hours, s.release_max_per_run) == (
        6, 9, 48, 7)
    assert [(w.weekday, w.start, w.end) for w in s.windows if w.weekday >= 5] == [
        (6, 540, 720), (6, 1200, 1380)]
    bad = submit(client, "/organizer/settings", {**data, "commission": "10.123",
                                                 "window_1": "late", "price_min": "200",
                                                 "timezone": "Mars/Olympus"})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400
    for message in ("Enter a commission from 0 to 100", "Write each window like 22:00-07:00",
                    "The highest price must not be below the lowest price",
                    "Enter a timezone like Europe/Oslo"):
        assert message in text


def test_organizer_decides_disputes(app, world, client):
    organizer = world.user("organizer")
    answerer = world.answerer()
    ids = [world.paid_question(paid_at=datetime.now(UTC), real_stripe=True) for _ in range(2)]
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    from upss import questions
    for q in ids:
        world.act(questions.claim, q, answerer, datetime.now(UTC))
        world.act(questions.post_answer, q, answerer, "Answer", datetime.now(UTC))
        world.act(questions.reject, q, world.question(q).asker_id, "Unhelpful",
                  datetime.now(UTC))
    sign_in_as(client, app, organizer)
    assert "Unhelpful" in client.get("/organizer/disputes").get_data(as_text=True)
    submit(client, f"/organizer/disputes/{ids[0]}/uphold", form_url="/organizer/disputes")
    submit(client, f"/organizer/disputes/{ids[1]}/refund", form_url="/organizer/disputes")
    assert [world.question(q).status for q in ids] == ["closed", "refunded"]
    with app.app_context():
        assert db.session.scalars(select(Question.status)).all() == ["closed", "refunded"]
