"""No time limit loses typed work (issue 14, item 2), on SQLite and PostgreSQL.

- Form tokens have no time limit of their own (``WTF_CSRF_TIME_LIMIT`` is None): an answer typed
  for 61 minutes, on a driven clock, is autosaved all along and sent; with Flask-WTF's default
  of 3600 s the same typing is refused, which is what the first test guards against.
- The answerer's time is adjustable (WCAG 2.2.1): the page shows the time left, warns before
  it runs out, and the lock can be extended by the stated rule (``questions.extend_lock``).
- A form sent with a token that no longer matches gets a page that still holds the text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select
from sqlalchemy.orm.attributes import set_committed_value

from tests.conftest import csrf_token, sign_in_as
from upss import questions, settings
from upss.extensions import db
from upss.models import AnswerDraft, AnswererProfile, Question, QuestionEvent, User

SITE = {"Origin": "http://localhost"}


class Clock:
    """The time the web layer and the token signatures see; tests move it on."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    """Drive the clock of the answerer's pages, of sessions and of signed tokens and cookies
    (itsdangerous, which Flask-WTF and Flask's session use)."""
    driven = Clock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr("upss.web.answerer.utcnow", driven)
    monkeypatch.setattr("upss.web.auth.utcnow", driven)
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: int(driven.now.timestamp()))
    return driven


def claimed_question(world, answerer: int, now: datetime, paid_at: datetime | None = None,
                     price_cents: int = 1000) -> int:
    """A paid question offered to ``answerer`` and claimed by them at ``now``."""
    q = world.paid_question(paid_at=paid_at or now, price_cents=price_cents)
    with world.app.test_request_context():
        question = db.session.get(Question, q)
        user = db.session.get(User, answerer)
        questions.offer(db.session, question, user, now, settings.current(db.session))
        questions.claim(db.session, question, user, now)
        db.session.commit()
    return q


def draft_of(app, q: int, answerer: int) -> str | None:
    with app.app_context():
        draft = db.session.get(AnswerDraft, (q, answerer))
        return None if draft is None else draft.body


def type_for_61_minutes(app, world, client, clock):
    """Claim, open the answer page once, autosave at 1, 10, 30, 45 and 61 minutes with the
    page's token (as the page's script does), then send at 61 minutes.

    Returns (question id, answerer id, the text, autosave responses, the send response)."""
    answerer = world.answerer()
    q = claimed_question(world, answerer, clock.now)
    sign_in_as(client, app, answerer)
    token = csrf_token(client, f"/answer/questions/{q}")
    start, typed, saves = clock.now, "", []
    for minute in (1, 10, 30, 45, 61):
        clock.now = start + timedelta(minutes=minute)
        typed += f"Sentence typed at minute {minute}. "
        saves.append(client.post(f"/answer/questions/{q}/draft",
                                 data={"csrf_token": token, "answer": typed},
                                 headers={"Accept": "application/json"}))
    sent = client.post(f"/answer/questions/{q}", headers=SITE,
                       data={"csrf_token": token, "action": "send", "a-answer": typed})
    return q, answerer, typed.strip(), saves, sent


def test_an_answer_typed_for_61_minutes_is_saved_and_sent(app, world, client, clock):
    """Form tokens have no time limit: autosave keeps working and the answer is sent."""
    assert app.config["WTF_CSRF_TIME_LIMIT"] is None
    q, answerer, typed, saves, sent = type_for_61_minutes(app, world, client, clock)
    assert [r.status_code for r in saves] == [200] * 5, saves[-1].get_data(as_text=True)[:300]
    assert all("saved_at" in r.get_json() for r in saves)
    assert sent.status_code == 302, sent.get_data(as_text=True)[:500]
    question = world.question(q)
    assert (question.status, question.answer_body) == ("answered", typed)
    assert draft_of(app, q, answerer) == typed


def test_with_a_one_hour_token_limit_the_same_typing_is_refused_but_kept(
        app, world, client, clock):
    """The test above can fail: with Flask-WTF's default limit (3600 s) the autosave at 61
    minutes and the send are refused before any view runs. Even then the send's page keeps the
    text, and nothing is lost from the last autosave that went through."""
    app.config["WTF_CSRF_TIME_LIMIT"] = 3600
    q, answerer, typed, saves, sent = type_for_61_minutes(app, world, client, clock)
    assert [r.status_code for r in saves] == [200, 200, 200, 200, 400]
    assert saves[-1].get_json()["reason"] == "expired"
    assert sent.status_code == 400
    page = unescape(sent.get_data(as_text=True))
    assert "This form had expired" in page and typed in page
    assert world.question(q).status == "claimed"
    assert draft_of(app, q, answerer).startswith("Sentence typed at minute 1. ")


# --- the time to answer: shown, warned about, extendable -----------------------------------


@pytest.fixture
def t0():
    return datetime.now(UTC).replace(microsecond=0)


def extension_events(app, q: int) -> int:
    with app.app_context():
        return len(db.session.scalars(select(QuestionEvent).where(
            QuestionEvent.question_id == q, QuestionEvent.action == "extend_lock")).all())


def test_the_lock_is_extended_at_most_twice_by_half_the_lock_hours(app, world, t0):
    """4 hours to answer; each extension adds 2 hours; a third is refused."""
    answerer = world.answerer()
    q = claimed_question(world, answerer, t0)
    assert world.question(q).lock_expires_at == t0 + timedelta(hours=4)
    assert questions.MAX_LOCK_EXTENSIONS == 2
    first = world.act(questions.extend_lock, q, answerer, t0 + timedelta(hours=1))
    assert first == t0 + timedelta(hours=6) == world.question(q).lock_expires_at
    second = world.act(questions.extend_lock, q, answerer, t0 + timedelta(hours=5))
    assert second == t0 + timedelta(hours=8)
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, q, answerer, t0 + timedelta(hours=7))
    assert refused.value.reason == "limit"
    question = world.question(q)
    assert (question.status, question.lock_expires_at) == ("claimed", t0 + timedelta(hours=8))
    assert extension_events(app, q) == 2
    with app.app_context():
        events = db.session.scalars(select(QuestionEvent).where(
            QuestionEvent.question_id == q, QuestionEvent.action == "extend_lock")).all()
        assert {(e.from_status, e.to_status, e.actor_id) for e in events} == {
            ("claimed", "claimed", answerer)}


def test_a_large_question_gets_longer_extensions(app, world, t0):
    """Half the lock hours of the question: 8 hours for a large one, so 4 more."""
    answerer = world.answerer()
    q = claimed_question(world, answerer, t0, price_cents=10000)
    assert world.act(questions.extend_lock, q, answerer, t0) == t0 + timedelta(hours=12)


def test_the_lock_is_never_extended_past_the_deadline(app, world, t0):
    """An extension stops at the asker's deadline; none is given if less than 15 minutes of it
    is left, nor when the deadline comes before the lock runs out."""
    answerer = world.answerer()
    # Deadline 72 h after payment: 5 h from now, the lock runs out in 4 h.
    capped = claimed_question(world, answerer, t0, paid_at=t0 - timedelta(hours=67))
    assert world.act(questions.extend_lock, capped, answerer, t0) == t0 + timedelta(hours=5)
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, capped, answerer, t0)
    assert refused.value.reason == "deadline"
    # Deadline in 4 h 10 min: an extension would give only 10 minutes.
    short = claimed_question(world, answerer, t0,
                             paid_at=t0 - timedelta(hours=67, minutes=50))
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, short, answerer, t0)
    assert refused.value.reason == "deadline"
    # Deadline in 2 h, before the lock: the time shown ends at the deadline.
    early = claimed_question(world, answerer, t0, paid_at=t0 - timedelta(hours=70))
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, early, answerer, t0)
    assert refused.value.reason == "deadline"
    with app.app_context():
        shown = questions.lock_time_for(db.session, db.session.get(Question, early), t0)
    assert shown.ends_at == t0 + timedelta(hours=2) and not shown.can_extend
    assert world.question(early).lock_expires_at == t0 + timedelta(hours=4)


def test_only_the_answerer_holding_the_lock_may_extend_it_and_not_after_it_ran_out(
        app, world, t0):
    answerer, other = world.answerer(), world.answerer()
    q = claimed_question(world, answerer, t0)
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, q, other, t0)
    assert refused.value.reason == "not_yours"
    lapse = t0 + timedelta(hours=4)
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, q, answerer, lapse)
    assert refused.value.reason == "expired"
    with app.test_request_context():
        questions.expire_lock(db.session, db.session.get(Question, q), lapse)
        db.session.commit()
    with pytest.raises(questions.LockNotExtended) as refused:
        world.act(questions.extend_lock, q, answerer, lapse)
    assert refused.value.reason == "not_yours"
    with app.app_context():
        db.session.get(AnswererProfile, answerer).active = False
        db.session.commit()
    suspended = claimed_question(world, other, t0)
    with app.app_context():
        db.session.get(AnswererProfile, other).active = False
        db.session.commit()
    with pytest.raises(questions.Suspended):
        world.act(questions.extend_lock, suspended, other, t0)
    assert extension_events(app, q) == extension_events(app, suspended) == 0
    assert world.question(suspended).lock_expires_at == t0 + timedelta(hours=4)


def test_of_two_extensions_from_the_same_reading_only_one_counts(app, world, t0):
    """The UPDATE is guarded by the lock expiry read: a stale reading changes nothing."""
    answerer = world.answerer()
    q = claimed_question(world, answerer, t0)
    world.act(questions.extend_lock, q, answerer, t0)
    with app.test_request_context():
        stale = db.session.get(Question, q)
        set_committed_value(stale, "lock_expires_at", t0 + timedelta(hours=4))
        with pytest.raises(questions.LockNotExtended) as refused:
            questions.extend_lock(db.session, stale, db.session.get(User, answerer), t0)
        db.session.rollback()
    assert refused.value.reason == "changed"
    assert world.question(q).lock_expires_at == t0 + timedelta(hours=6)
    assert extension_events(app, q) == 1


def test_lock_time_warns_15_and_5_minutes_before_the_end(app, world, t0):
    answerer = world.answerer()
    q = claimed_question(world, answerer, t0)
    lock = t0 + timedelta(hours=4)
    with app.app_context():
        question = db.session.get(Question, q)
        rules = settings.current(db.session)
        at = {minutes: questions.lock_time(question, 0, rules, lock - timedelta(minutes=minutes))
              for minutes in (16, 15, 6, 5, 0, -1)}
    assert {m: t.warning for m, t in at.items()} == {
        16: "none", 15: "warn", 6: "warn", 5: "final", 0: "over", -1: "over"}
    assert at[16].left == timedelta(minutes=16) and at[-1].left == timedelta(0)
    assert at[5].can_extend and at[5].extension == timedelta(hours=2)
    assert not at[0].can_extend and at[0].refusal == "expired"


def page_text(response) -> str:
    return re.sub(r"\s+", " ", unescape(response.get_data(as_text=True)))


def region(html: str, element_id: str) -> str:
    """The text inside the element with ``element_id`` (up to its closing tag)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</div>\s*(<div|</div>)', html, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split()) if match else ""


def test_the_answer_page_shows_the_time_left_warns_and_offers_more_time(
        app, world, client, clock):
    answerer = world.answerer()
    start = clock.now
    q = claimed_question(world, answerer, start)
    sign_in_as(client, app, answerer)
    url = f"/answer/questions/{q}"

    clock.now = start + timedelta(minutes=40)
    page = page_text(client.get(url))
    assert "About 3 hours, 20 minutes left to answer, until" in page
    assert 'data-seconds-left="12000"' in page and 'data-level="none"' in page
    assert region(page, "lock-warning") == region(page, "lock-alert") == ""
    assert "Add 2 hours to my time" in page
    assert "You can add time 2 more times, never past the asker's deadline." in page

    clock.now = start + timedelta(hours=3, minutes=50)
    page = page_text(client.get(url))
    assert 'role="status" aria-live="polite"' in page
    assert "Your time runs out in 10 minutes. Send your answer, or add more time with the " \
           "button below." in region(page, "lock-warning")
    assert "Add 2 hours to my time" in page

    clock.now = start + timedelta(hours=3, minutes=56)
    page = page_text(client.get(url))
    assert "Warning: Your time runs out in 4 minutes." in region(page, "lock-alert")
    assert region(page, "lock-warning") == ""

    # More time, with the text typed so far coming along and saved.
    token = csrf_token(client, url)
    extended = client.post(f"{url}/extend", data={"csrf_token": token, "action": "extend",
                                                  "a-answer": "Half of my answer"})
    assert extended.status_code == 302 and extended.headers["Location"].endswith(url)
    assert world.question(q).lock_expires_at == start + timedelta(hours=6)
    assert draft_of(app, q, answerer) == "Half of my answer"
    page = page_text(client.get(url))
    assert "You have 2 hours more. The question is yours until" in page
    assert "About 2 hours, 4 minutes left to answer" in page and 'data-level="none"' in page
    assert "You can add time 1 more time, never past the asker's deadline." in page

    client.post(f"{url}/extend", data={"csrf_token": token, "a-answer": "More"})
    page = page_text(client.get(url))
    assert "Add 2 hours to my time" not in page
    assert "You have already had all the extra time this question allows." in page
    refused = client.post(f"{url}/extend", data={"csrf_token": token, "a-answer": "Most"})
    assert refused.status_code == 302
    page = page_text(client.get(url))
    assert "<strong>Problem:</strong> You have already had all the extra time this question " \
           "allows." in page
    assert world.question(q).lock_expires_at == start + timedelta(hours=8)
    assert draft_of(app, q, answerer) == "Most"

    # Without time to add, the warning says the text is kept either way.
    clock.now = start + timedelta(hours=7, minutes=50)
    page = page_text(client.get(url))
    assert "Your time runs out in 10 minutes. Send your answer before then; your text is kept " \
           "as a draft either way." in region(page, "lock-warning")

    clock.now = start + timedelta(hours=8, minutes=1)
    page = page_text(client.get(url))
    assert "Your time to answer has run out. Your text is kept as a draft." in region(
        page, "lock-alert")


def test_another_answerer_cannot_extend_and_a_former_one_sees_no_button(
        app, world, client, clock):
    answerer, other = world.answerer(), world.answerer()
    q = claimed_question(world, answerer, clock.now)
    sign_in_as(client, app, other)
    token = csrf_token(client, "/answer/queue")
    assert client.post(f"/answer/questions/{q}/extend",
                       data={"csrf_token": token}).status_code == 404
    with app.test_request_context():
        questions.expire_lock(db.session, db.session.get(Question, q),
                              clock.now + timedelta(hours=4))
        db.session.commit()
    sign_in_as(client, app, answerer)
    page = page_text(client.get(f"/answer/questions/{q}"))
    assert "The time to answer ran out" in page
    assert "Add 2 hours to my time" not in page and 'id="lock-time"' not in page
    token = csrf_token(client, f"/answer/questions/{q}")
    refused = client.post(f"/answer/questions/{q}/extend",
                          data={"csrf_token": token, "a-answer": "Still my draft"})
    assert refused.status_code == 302
    assert "no longer yours to answer" in page_text(client.get(f"/answer/questions/{q}"))
    assert draft_of(app, q, answerer) == "Still my draft"
    assert world.question(q).status == "queued"


# --- a form whose token no longer matches keeps the text ------------------------------------


def answering(app, world, client):
    answerer = world.answerer()
    q = claimed_question(world, answerer, datetime.now(UTC))
    sign_in_as(client, app, answerer)
    return q, answerer


def test_sending_with_a_stale_token_shows_the_typed_text_and_the_way_back(app, world, client):
    """Signed in again in another window: the page's token no longer matches. Nothing is sent,
    and the 400 page holds the answer, escaped and labelled, with a link back to the page."""
    q, answerer = answering(app, world, client)
    url = f"/answer/questions/{q}"
    token = csrf_token(client, url)
    sign_in_as(client, app, answerer)  # a new session: the old page's token is stale
    typed = "Line one <script>alert(1)</script>\nLine two & more"
    response = client.post(url, headers={**SITE, "Referer": f"http://localhost{url}"},
                           data={"csrf_token": token, "action": "send", "a-answer": typed})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "Line one &lt;script&gt;alert(1)&lt;/script&gt;\nLine two &amp; more" in html
    assert re.search(r'<label class="label" for="kept-1">Your answer</label>', html)
    assert re.search(r'<textarea id="kept-1" class="textarea" readonly', html)
    assert f'href="{url}"' in html and "Open the page again" in html
    assert "This form had expired" in html
    assert world.question(q).status == "claimed"
    assert draft_of(app, q, answerer) is None  # a refused request changes nothing


def test_a_missing_token_keeps_the_text_too(app, world, client):
    q, _answerer = answering(app, world, client)
    response = client.post(f"/answer/questions/{q}", headers=SITE,
                           data={"action": "send", "a-answer": "My careful answer"})
    assert response.status_code == 400
    assert "My careful answer" in response.get_data(as_text=True)
    assert f'href="/answer/questions/{q}"' in response.get_data(as_text=True)


def test_signed_out_the_page_keeps_the_text_and_leads_to_signing_in(app, world, client):
    q, _answerer = answering(app, world, client)
    url = f"/answer/questions/{q}"
    token = csrf_token(client, url)
    client.delete_cookie("session")
    response = client.post(url, headers=SITE, data={"csrf_token": token, "action": "send",
                                                    "a-answer": "Typed while signed out"})
    assert response.status_code == 400
    html = unescape(response.get_data(as_text=True))
    assert "You are signed out" in html and "Typed while signed out" in html
    assert f'href="/sign-in?next={url}"' in html
    assert world.question(q).status == "claimed"


def test_autosave_is_told_whether_the_form_expired_or_the_user_signed_out(app, world, client):
    q, answerer = answering(app, world, client)
    url = f"/answer/questions/{q}"
    token = csrf_token(client, url)
    sign_in_as(client, app, answerer)
    expired = client.post(f"{url}/draft", headers={"Accept": "application/json"},
                          data={"csrf_token": token, "answer": "Typed"})
    assert expired.status_code == 400 and expired.get_json()["reason"] == "expired"
    client.delete_cookie("session")
    signed_out = client.post(f"{url}/draft", headers={"Accept": "application/json"},
                             data={"csrf_token": token, "answer": "Typed"})
    assert signed_out.status_code == 400 and signed_out.get_json()["reason"] == "signed_out"
    assert draft_of(app, q, answerer) is None


def test_text_is_shown_only_for_a_post_from_this_site_and_never_a_password(
        app, world, client, make_user):
    """Another site's POST cannot put its words on these pages; a password never comes back."""
    q, _answerer = answering(app, world, client)
    for headers in ({}, {"Origin": "https://evil.example"},
                    {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"}):
        response = client.post(f"/answer/questions/{q}", headers=headers, data={
            "action": "send", "a-answer": "Call this number to unlock your account"})
        assert response.status_code == 400
        html = response.get_data(as_text=True)
        assert "Call this number" not in html and "This form had expired" in html
    _id, email, password = make_user("asker")
    fresh = app.test_client()
    response = fresh.post("/sign-in", headers={"Sec-Fetch-Site": "same-origin"},
                          data={"email": email, "password": password})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert email in html and password not in html
