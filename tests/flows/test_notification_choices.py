"""Each person's choices of issue 17 item 4, and the messages sent on a timer: the daily digest
(gathered at the person's hour, one e-mail naming each message), answerers not woken outside
their available hours, messages about what has run out not sent late, the reminders before a
lock or an auto-accept runs out, the organizer's digest, the list on the site with the unread
count in the header, the page of choices, and failed messages on the account page. All sent
through a real SMTP server in the test process (``smtp_server``) on a driven clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tests.conftest import count_statements, sign_in_as
from tests.flows.test_notifications import BASE, NIGHT, dispatch, enqueue, offer_to, rows
from upss import jobs, notifications, organizer_digest, questions, reminders, settings
from upss.extensions import db
from upss.models import (
    AnswererApplication,
    JobRun,
    Notification,
    Question,
    ReconciliationRun,
    StripeDispute,
    User,
)


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "UPSS_SMTP_URL": smtp_server.url,
            "UPSS_MAIL_FROM": "UPSS <upss@upss.example>", "UPSS_BASE_URL": BASE}


def run(app, fn, now, *args):
    with app.app_context():
        try:
            result = fn(db.session, now, *args)
            db.session.commit()
            return result
        finally:
            db.session.remove()


def choose(app, user_id: int, kind: str, mode: str) -> None:
    with app.app_context():
        notifications.set_mode(db.session, user_id, kind, mode)
        db.session.commit()


def texts(smtp_server) -> list[str]:
    return [m.get_body(("plain",)).get_content() for m in smtp_server.messages]


def subjects(smtp_server) -> list[str]:
    return [m["Subject"] for m in smtp_server.messages]


# --- the daily digest ------------------------------------------------------------------------

def test_a_digest_gathers_the_chosen_messages_into_one_email_at_the_persons_hour(
        app, smtp_server):
    """Two messages chosen for the digest wait for 08:00 Oslo, then go as one e-mail that
    names both with their links; a money message still goes at once."""
    from tests.conftest import World
    world = World(app)
    asker = world.user("asker")
    choose(app, asker, "answer_ready", "digest")
    choose(app, asker, "clarification_replied", "digest")
    first = enqueue(app, asker, "answer_ready", {"question_id": 7, "title": "Bus times"})
    second = enqueue(app, asker, "clarification_replied", {"question_id": 8, "title": "Tax"})
    enqueue(app, asker, "payment_confirmed", {"question_id": 9, "title": "Paid", "amount_cents":
                                              1000, "currency": "EUR"})
    eight = datetime(2026, 1, 15, 7, 0, tzinfo=UTC)  # 08:00 in Oslo
    assert {r.id: r.next_attempt_at for r in rows(app)}[first] == eight
    assert dispatch(app, NIGHT + timedelta(minutes=1)).sent == 1  # only the money message
    assert run(app, notifications.gather_digests, eight - timedelta(minutes=1)) == 0
    assert run(app, notifications.gather_digests, eight) == 1
    assert run(app, notifications.gather_digests, eight) == 0  # nothing gathered twice
    assert dispatch(app, eight).sent == 1
    digest = smtp_server.messages[-1]
    assert digest["Subject"] == "Your daily summary: 2 messages"
    body = digest.get_body(("plain",)).get_content()
    assert "Your answer is ready: “Bus times”" in body and "“Tax”" in body
    assert f"{BASE}/questions/7" in body and f"{BASE}/questions/8" in body
    html = digest.get_body(("html",)).get_content()
    assert html.count("<h2") == 2
    statuses = {r.id: r.status for r in rows(app)}
    assert statuses[first] == statuses[second] == "digested"


def test_a_new_digest_hour_moves_the_waiting_messages(app, world, smtp_server):
    asker = world.user("asker")
    choose(app, asker, "answer_ready", "digest")
    waiting = enqueue(app, asker, "answer_ready", {"question_id": 7, "title": "Bus times"})
    with app.app_context():
        user = db.session.get(User, asker)
        notifications.save_choices(db.session, user, {}, 18, None, NIGHT)
        db.session.commit()
    # 18:00 in Oslo the next day.
    assert {r.id: r.next_attempt_at for r in rows(app)}[waiting] == datetime(
        2026, 1, 15, 17, 0, tzinfo=UTC)


def test_what_runs_out_within_hours_cannot_wait_for_a_digest(app, world):
    answerer = world.answerer()
    with app.app_context(), pytest.raises(notifications.InvalidChoice):
        notifications.set_mode(db.session, answerer, "new_offer", "digest")
    with app.app_context(), pytest.raises(notifications.NotOptional):
        notifications.set_mode(db.session, answerer, "payout_sent", "off")


def test_choosing_twice_is_one_choice(app, world):
    """The one-click link clicked twice (or two mail clients): an upsert, no error."""
    asker = world.user("asker")
    choose(app, asker, "answer_ready", "off")
    choose(app, asker, "answer_ready", "off")
    choose(app, asker, "answer_ready", "digest")
    with app.app_context():
        assert notifications.mode(db.session, asker, "answer_ready") == "digest"


# --- answerers are not woken; nothing is sent late -------------------------------------------

def test_an_answerer_is_not_woken_unless_they_chose_so(app, world, smtp_server):
    """Available 09:00–17:00 in Helsinki: a message at midnight waits until 09:00 there;
    with "outside my hours too" ticked it goes at once."""
    sleeper = world.answerer(timezone="Europe/Helsinki", available_from_minute=9 * 60,
                             available_until_minute=17 * 60)
    night_owl = world.answerer(timezone="Europe/Helsinki", available_from_minute=9 * 60,
                               available_until_minute=17 * 60, messages_outside_hours=True)
    data = {"question_id": 3, "title": "Pension", "amount_cents": 850, "currency": "EUR",
            "stars": 5}
    waits = enqueue(app, sleeper, "answer_rated", data)
    enqueue(app, night_owl, "answer_rated", data)
    nine = datetime(2026, 1, 15, 7, 0, tzinfo=UTC)  # 09:00 in Helsinki
    assert {r.id: r.next_attempt_at for r in rows(app)}[waits] == nine
    assert dispatch(app, NIGHT).sent == 1
    assert dispatch(app, nine - timedelta(minutes=1)).sent == 0
    assert dispatch(app, nine).sent == 1
    with app.app_context():
        emails = [db.session.get(User, u).email for u in (night_owl, sleeper)]
    assert [m["To"].addresses[0].addr_spec for m in smtp_server.messages] == emails


def test_an_offer_that_was_taken_or_ran_out_is_not_sent_late(app, world, smtp_server):
    """The mail server was down: when it is back, an offer that expired meanwhile is not
    sent (it would send the answerer to a question they can no longer take)."""
    answerer = world.answerer()
    q = world.paid_question(paid_at=NIGHT)
    offer_to(app, q, answerer, NIGHT)
    with app.app_context():
        offer = db.session.scalar(select(Notification).where(Notification.kind == "new_offer"))
        expires = db.session.get(Question, q).offer_expires_at
        offer_id = offer.id
    result = dispatch(app, expires + timedelta(minutes=1))
    assert {r.id: r.status for r in rows(app)}[offer_id] == "skipped"
    assert result.skipped == 1
    assert "A new question for you" not in " ".join(subjects(smtp_server))


# --- reminders -------------------------------------------------------------------------------

def test_a_lock_about_to_run_out_is_reminded_once_per_lock_end(app, world, smtp_server):
    answerer = world.answerer()
    q = world.paid_question(paid_at=NIGHT)
    offer_to(app, q, answerer, NIGHT)
    world.act(questions.claim, q, answerer, NIGHT + timedelta(minutes=1))
    lock = world.question(q).lock_expires_at
    assert run(app, reminders.remind_lock_ending, lock - timedelta(minutes=31)) == 0
    assert run(app, reminders.remind_lock_ending, lock - timedelta(minutes=30)) == 1
    assert run(app, reminders.remind_lock_ending, lock - timedelta(minutes=10)) == 0
    dispatch(app, lock - timedelta(minutes=9))
    [message] = [m for m in smtp_server.messages if "ends soon" in m["Subject"]]
    assert f"{BASE}/answer/questions/{q}" in message.get_body(("plain",)).get_content()
    # A longer lock is a new end: reminded again before it.
    world.act(questions.extend_lock, q, answerer, lock - timedelta(minutes=5))
    longer = world.question(q).lock_expires_at
    assert longer > lock
    assert run(app, reminders.remind_lock_ending, longer - timedelta(minutes=20)) == 1


def test_an_auto_accept_is_announced_two_days_before(app, world, smtp_server):
    asker = world.user("asker")
    answerer = world.answerer()
    q = world.paid_question(paid_at=NIGHT, asker_id=asker)
    offer_to(app, q, answerer, NIGHT)
    world.act(questions.claim, q, answerer, NIGHT + timedelta(minutes=1))
    world.act(questions.post_answer, q, answerer, "Yes.", NIGHT + timedelta(minutes=2))
    with app.app_context():
        days = settings.current(db.session).auto_accept_days
    accept_at = NIGHT + timedelta(minutes=2, days=days)
    warning = reminders.accept_warning(timedelta(days=days))
    assert warning == min(timedelta(days=2), timedelta(days=days) / 2)
    assert run(app, reminders.remind_auto_accept, accept_at - warning - timedelta(minutes=1)) == 0
    assert run(app, reminders.remind_auto_accept, accept_at - warning) == 1
    assert run(app, reminders.remind_auto_accept, accept_at - warning / 2) == 0
    dispatch(app, accept_at - warning / 2)
    reminder = [m for m in smtp_server.messages if "will be accepted" in m["Subject"]]
    left = -(-warning // timedelta(days=1))
    assert [m["Subject"] for m in reminder] == [
        f"“Q”: the answer will be accepted in {left} day{'s' if left > 1 else ''}"]
    # Past the auto-accept it is too late to remind.
    assert run(app, reminders.remind_auto_accept, accept_at + timedelta(minutes=1)) == 0


# --- the organizer's digest ------------------------------------------------------------------

def test_the_organizer_digest_gathers_what_waits_once_a_day(app, world, smtp_server):
    organizer = world.user("organizer")
    world.applicant()
    with app.app_context():
        db.session.add(StripeDispute(id="dp_1", question_id=None, payment_intent_id="pi_1",
                                     amount_cents=1250, currency="EUR",
                                     status="needs_response", reason="fraudulent",
                                     evidence_due_at=datetime(2026, 1, 20, 12, 0, tzinfo=UTC)))
        db.session.add(StripeDispute(id="dp_2", question_id=None, payment_intent_id="pi_2",
                                     amount_cents=500, currency="EUR", status="won"))
        db.session.add(ReconciliationRun(started_at=NIGHT, finished_at=NIGHT,
                                         differences=json.dumps([{"a": 1}, {"b": 2}])))
        db.session.add(Notification(user_id=organizer, kind="payout_sent", data="{}",
                                    status="failed", next_attempt_at=NIGHT, attempts=16))
        eight = datetime(2026, 1, 15, 7, 0, tzinfo=UTC)  # 08:00 in Oslo
        db.session.add(JobRun(job_id="send-notifications", holder="h", outcome="ok",
                              started_at=eight - timedelta(hours=3)))
        for job in jobs.JOBS:
            if job.every_ticks and job.id != "send-notifications":
                db.session.add(JobRun(job_id=job.id, holder="h", outcome="ok",
                                      started_at=eight - timedelta(minutes=1)))
        db.session.commit()
    expected = jobs.expected_gaps(60)
    assert run(app, organizer_digest.send_organizer_digests, NIGHT, expected) == 1
    assert run(app, organizer_digest.send_organizer_digests, eight - timedelta(minutes=1),
               expected) == 0  # the digest of the 14th is out
    assert run(app, organizer_digest.send_organizer_digests, eight, expected) == 1
    assert run(app, organizer_digest.send_organizer_digests, eight + timedelta(hours=5),
               expected) == 0
    dispatch(app, eight)
    digests = [m for m in smtp_server.messages if m["Subject"].startswith("UPSS today")]
    assert len(digests) == 2
    body = digests[-1].get_body(("plain",)).get_content()
    assert "1 application to answer is waiting for you." in body
    assert "Card dispute about question None (€12.50): evidence is due by" in body
    assert "€5.00" not in body  # a closed dispute is not named
    assert "The last check against Stripe found 2 differences." in body
    assert "1 message could not be sent." in body
    assert "“send-notifications” last ran at" in body
    assert "“release” last ran" not in body
    assert f"{BASE}/organizer/" in body


def test_a_quiet_day_says_nothing_is_waiting(app, world, smtp_server):
    world.user("organizer")
    with app.app_context():
        for job in jobs.JOBS:
            db.session.add(JobRun(job_id=job.id, holder="h", outcome="ok", started_at=NIGHT))
        db.session.commit()
    assert run(app, organizer_digest.send_organizer_digests, NIGHT, jobs.expected_gaps(60)) == 1
    dispatch(app, NIGHT)
    assert "Nothing is waiting for you today." in texts(smtp_server)[-1]


# --- on the site -----------------------------------------------------------------------------

def test_the_list_shows_every_message_and_the_header_counts_the_unread(
        app, world, client, smtp_server):
    asker = world.user("asker")
    choose(app, asker, "clarification_replied", "off")
    for n in range(23):
        enqueue(app, asker, "answer_ready", {"question_id": n + 1, "title": f"Title {n}"})
    enqueue(app, asker, "clarification_replied", {"question_id": 99, "title": "Off"})
    sign_in_as(client, app, asker)
    home = client.get("/").get_data(as_text=True)
    assert "Messages (24 unread)" in home
    page = client.get("/messages").get_data(as_text=True)
    # Newest first; an e-mail turned off is still listed; 20 a page.
    assert page.index("“Off”") < page.index("Title 22") < page.index("Title 21")
    assert page.count('class="message-item"') == 20 and page.count(">New</strong>") == 20
    assert 'href="/questions/23"' in page
    assert "Messages (4 unread)" in page  # its own header counts after marking them read
    assert "Messages (4 unread)" in client.get("/").get_data(as_text=True)
    older = page.split('href="/messages?before=')[1].split('"')[0]
    rest = client.get(f"/messages?before={older}").get_data(as_text=True)
    assert rest.count('class="message-item"') == 4 and "Title 0" in rest
    assert "Older messages" not in rest
    home = client.get("/").get_data(as_text=True)
    assert "unread)" not in home and ">Messages</a>" in home
    # Someone else's messages are not here.
    other = world.user("asker")
    sign_in_as(client, app, other)
    assert "You have no messages yet" in client.get("/messages").get_data(as_text=True)


def test_the_header_count_comes_with_the_signed_in_user(app, world, client):
    """A signed-in page counts the unread messages in the statement that reads the session
    and the user, not in one of its own."""
    from tests.conftest import count_statements
    from upss.extensions import db as database

    asker = world.user("asker")
    enqueue(app, asker, "answer_ready", {"question_id": 1, "title": "One"})
    sign_in_as(client, app, asker)
    client.get("/")  # the first page after signing in stores its form token
    with app.app_context():
        engine = database.engine
    with count_statements(engine) as seen:
        home = client.get("/").get_data(as_text=True)
    assert "Messages (1 unread)" in home
    counting = [s for s in seen if "FROM notification" in s]
    assert len(counting) == 1 and "FROM user_session" in counting[0], seen


def test_the_page_of_choices_saves_each_kind_and_refuses_what_cannot_be(app, world, client):
    answerer = world.answerer()
    sign_in_as(client, app, answerer)
    page = client.get("/account/messages").get_data(as_text=True)
    assert 'name="kind_new_offer"' in page and 'name="kind_answer_ready"' in page
    assert 'name="kind_payout_sent"' not in page  # money: always sent, listed as such
    assert "A payout was sent to you" in page and 'name="outside_hours"' in page
    assert 'value="digest"' in page.split('name="kind_answer_rated"', 1)[1][:900]
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    done = client.post("/account/messages", data={
        "csrf_token": token, "kind_answer_rated": "digest", "kind_new_offer": "off",
        "digest_hour": "18", "outside_hours": "y"}, follow_redirects=True)
    assert done.status_code == 200 and "Your choices are saved." in done.get_data(as_text=True)
    with app.app_context():
        assert notifications.mode(db.session, answerer, "answer_rated") == "digest"
        assert notifications.mode(db.session, answerer, "new_offer") == "off"
        assert notifications.mode(db.session, answerer, "clarification_asked") == "now"
        user = db.session.get(User, answerer)
        assert user.digest_hour == 18
        assert notifications.choices(db.session, user).outside_hours is True
    refused = client.post("/account/messages", data={
        "csrf_token": token, "kind_new_offer": "digest", "digest_hour": "25"})
    assert refused.status_code == 400
    body = refused.get_data(as_text=True)
    assert "There is a problem" in body or "error-summary" in body
    with app.app_context():
        assert notifications.mode(db.session, answerer, "new_offer") == "off"


def test_the_account_page_shows_messages_that_could_not_be_sent(app, world, client):
    asker = world.user("asker")
    with app.app_context():
        db.session.add(Notification(
            user_id=asker, kind="answer_ready", data='{"question_id": 5, "title": "Bus"}',
            status="failed", next_attempt_at=NIGHT, attempts=1,
            last_error="550 5.1.1 mailbox unavailable"))
        db.session.commit()
    sign_in_as(client, app, asker)
    page = client.get("/account/preferences").get_data(as_text=True)
    assert "could not be sent to your e-mail address" in page
    assert "Your answer is ready: “Bus”" in page and "550 5.1.1 mailbox unavailable" in page
    with app.app_context():
        db.session.execute(update(Notification).values(status="sent"))
        db.session.commit()
    assert "could not be sent" not in client.get("/account/preferences").get_data(as_text=True)


def test_applications_waiting_are_counted_from_pending_only(app, world):
    """The digest counts what waits: a decided application is not counted."""
    world.applicant()
    with app.app_context():
        db.session.execute(update(AnswererApplication).values(status="rejected"))
        db.session.commit()
        data = organizer_digest.gather(db.session, NIGHT, {})
    assert data["applications_waiting"] == 0


# --- many messages at once (the release run's offers) ----------------------------------------

def test_many_messages_at_once_follow_each_persons_choice_as_one_at_a_time_does(app, world):
    """``enqueue_many`` writes what ``enqueue`` writes for each person, in one statement that
    reads the people, their profiles and their choices and one that writes, for six people
    as for one: at once, the digest at their hour, off,
    waiting for an answerer's hours (or not, when they chose so), nothing to an erased
    account."""
    at_once = world.answerer()
    digest = world.answerer(timezone="Europe/Helsinki")
    off = world.answerer()
    sleeper = world.answerer(timezone="Europe/Helsinki", available_from_minute=9 * 60,
                             available_until_minute=17 * 60)
    night_owl = world.answerer(timezone="Europe/Helsinki", available_from_minute=9 * 60,
                               available_until_minute=17 * 60, messages_outside_hours=True)
    erased = world.answerer()
    choose(app, digest, "answer_rated", "digest")
    choose(app, off, "answer_rated", "off")
    with app.app_context():
        db.session.execute(update(User).where(User.id == erased)
                           .values(deleted_at=NIGHT - timedelta(days=1)))
        db.session.commit()
    people = [at_once, digest, off, sleeper, night_owl, erased]
    messages = [(user_id, {"question_id": n, "title": f"Q{n}", "amount_cents": 850,
                           "currency": "EUR", "stars": 5}) for n, user_id in enumerate(people)]

    def written() -> list[tuple]:
        with app.app_context():
            found = db.session.execute(
                select(Notification.user_id, Notification.kind, Notification.data,
                       Notification.status, Notification.created_at,
                       Notification.next_attempt_at, Notification.attempts)
                .order_by(Notification.id)).all()
            db.session.execute(Notification.__table__.delete())
            db.session.commit()
        return [tuple(row) for row in found]

    for user_id, data in messages:
        enqueue(app, user_id, "answer_rated", data)
    one_at_a_time = written()
    assert [row[3] for row in one_at_a_time] == [
        "pending", "digest", "skipped", "pending", "pending"]
    assert one_at_a_time[3][5] == datetime(2026, 1, 15, 7, 0, tzinfo=UTC)  # 09:00 there

    def many(batch) -> tuple[int, int]:
        """Rows written, and statements sent."""
        with app.app_context():
            with count_statements() as seen:
                n = notifications.enqueue_many(db.session, "answer_rated", batch, NIGHT)
            db.session.commit()
        return n, len([s for s in seen if not s.startswith("BEGIN")])

    rows, six = many(messages)
    assert rows == 5 and written() == one_at_a_time
    rows, one = many(messages[:1])
    assert rows == 1 and one == six == 2
