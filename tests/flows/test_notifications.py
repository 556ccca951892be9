"""Messages (issue 17): the outbox written in the state change's transaction, the dispatcher
against a real SMTP server in the test process (aiosmtpd, ``smtp_server``), retries with a
driven clock, the same Message-ID after a crash, two dispatchers side by side on PostgreSQL,
the one-click unsubscribe, DKIM, and the first messages in the five languages."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import dkim
import pytest
from sqlalchemy import select

from tests.conftest import _base_config, sign_in_as
from upss import create_app, devmail, mailer, notifications, overview, questions, settings
from upss.extensions import db
from upss.models import Notification, NotificationPreference, Question, User

BASE = "https://upss.example"
#: 23:00 in Oslo on a winter Wednesday.
NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "UPSS_SMTP_URL": smtp_server.url,
            "UPSS_MAIL_FROM": "UPSS <upss@upss.example>", "UPSS_BASE_URL": BASE}


def dispatch(app, now, **kwargs) -> notifications.DispatchResult:
    with app.app_context():
        try:
            return notifications.dispatch_due(db.session, now, **kwargs)
        finally:
            db.session.remove()


def rows(app) -> list[Notification]:
    with app.app_context():
        found = list(db.session.scalars(select(Notification).order_by(Notification.id)))
        db.session.expunge_all()
        return found


def set_locale(app, user_id: int, locale: str) -> None:
    with app.app_context():
        db.session.get(User, user_id).locale = locale
        db.session.commit()


def enqueue(app, user_id: int, kind: str, data: dict, now=NIGHT):
    with app.app_context():
        row = notifications.enqueue(db.session, db.session.get(User, user_id), kind, data, now)
        db.session.commit()
        return row.id if row else None


def path_of(url: str) -> str:
    assert url.startswith(BASE + "/"), url
    return urlsplit(url).path


def body_link(message, label: str) -> str:
    """The URL on the line after ``label:`` in the plain-text part."""
    lines = message.get_body(("plain",)).get_content().splitlines()
    return lines[lines.index(f"{label}:") + 1]


# --- the outbox ------------------------------------------------------------------------------

def test_a_committed_payment_sends_exactly_one_message_with_the_right_headers(
        app, world, smtp_server, client):
    q = world.paid_question(paid_at=NIGHT)
    result = dispatch(app, NIGHT)
    assert (result.sent, result.attempted) == (1, 1)
    assert dispatch(app, NIGHT + timedelta(hours=1)).attempted == 0
    [message] = smtp_server.messages
    question = world.question(q)
    with app.app_context():
        asker = db.session.get(User, question.asker_id)
        email, name = asker.email, asker.name
    [row] = rows(app)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, NIGHT)
    assert message["Message-ID"] == f"<upss-notification-{row.id}@upss.example>"
    assert message["To"].addresses[0].addr_spec == email
    assert message["To"].addresses[0].display_name == name
    assert message["From"] == "UPSS <upss@upss.example>"
    assert message["Date"].datetime == NIGHT
    assert message["MIME-Version"] == "1.0"
    assert message["Subject"] == "We have your payment for “Q”"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain", "text/html"]
    html = message.get_body(("html",)).get_content()
    assert '<html lang="en">' in html and "<title>We have your payment for “Q”</title>" in html
    # A money message cannot be turned off: no unsubscribe headers.
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    text = message.get_body(("plain",)).get_content()
    assert "€10.00" in text and "always sent" in text
    # The link leads to the asker's question.
    sign_in_as(client, app, question.asker_id)
    link = path_of(body_link(message, "See your question"))
    assert link == f"/questions/{q}"
    assert client.get(link).status_code == 200


def test_a_rolled_back_change_sends_nothing(app, world, smtp_server):
    asker_id = world.user("asker")
    with app.test_request_context():
        asker = db.session.get(User, asker_id)
        q = questions.create_question(db.session, asker, title="Q", body="B", language="en",
                                      topic="other", price_cents=1000)
        questions.start_payment(db.session, q, asker, "pi_rolled_back")
        questions.confirm_payment(db.session, q, "pi_rolled_back", now=NIGHT)
        assert db.session.scalars(select(Notification)).all(), "written in the transaction"
        db.session.rollback()
    assert rows(app) == []
    assert dispatch(app, NIGHT + timedelta(days=1)).attempted == 0
    assert smtp_server.messages == []


def test_server_down_then_back_every_message_delivered_once(app, world, smtp_server):
    for _ in range(3):
        world.paid_question(paid_at=NIGHT)
    smtp_server.stop()
    first = dispatch(app, NIGHT)
    assert (first.sent, first.retrying) == (0, 3)
    assert [r.attempts for r in rows(app)] == [1, 0, 0], "one try: the server is unreachable"
    assert {r.next_attempt_at for r in rows(app)} == {NIGHT + timedelta(minutes=1)}
    # Not due yet: nothing is tried.
    assert dispatch(app, NIGHT + timedelta(seconds=59)).attempted == 0
    # Still down a minute later: the next wait is twice as long.
    assert dispatch(app, NIGHT + timedelta(minutes=1)).sent == 0
    assert rows(app)[0].attempts == 2
    assert {r.next_attempt_at for r in rows(app)} == {NIGHT + timedelta(minutes=3)}
    smtp_server.start()
    assert dispatch(app, NIGHT + timedelta(minutes=2)).attempted == 0
    assert dispatch(app, NIGHT + timedelta(minutes=3)).sent == 3
    assert dispatch(app, NIGHT + timedelta(days=2)).attempted == 0
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert [r.status for r in rows(app)] == ["sent"] * 3


def test_a_4xx_answer_is_tried_again_and_a_5xx_answer_stops(app, world, smtp_server):
    world.paid_question(paid_at=NIGHT)
    smtp_server.reply = "451 4.3.0 Mailbox busy, try later"
    assert dispatch(app, NIGHT).retrying == 1
    [row] = rows(app)
    assert (row.status, row.attempts, row.next_attempt_at) == (
        "pending", 1, NIGHT + timedelta(minutes=1))
    assert row.last_error.startswith("451")
    smtp_server.reply = "550 5.1.1 No such user here"
    assert dispatch(app, NIGHT + timedelta(minutes=1)).failed == 1
    [row] = rows(app)
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.last_error.startswith("550")
    smtp_server.reply = None
    assert dispatch(app, NIGHT + timedelta(days=3)).attempted == 0, "never tried again"
    assert smtp_server.messages == []
    with app.app_context():
        assert overview.organizer_overview(db.session).failed_messages == 1


def test_failed_messages_are_counted_on_the_organizer_overview(app, world, smtp_server,
                                                                client):
    world.paid_question(paid_at=NIGHT)
    smtp_server.reply = "554 5.7.1 Refused"
    dispatch(app, NIGHT)
    sign_in_as(client, app, world.user("organizer"))
    page = client.get("/organizer/").get_data(as_text=True)
    assert "1 message could not be sent" in page


class DiesAfterSending:
    """A sender whose process dies after the server took the message, before it is marked."""

    def __init__(self, real):
        self.real = real

    def send(self, message):
        self.real.send(message)
        raise KeyboardInterrupt("killed between send and mark")


def test_killed_between_send_and_mark_sends_again_with_the_same_message_id(
        app, world, smtp_server):
    world.paid_question(paid_at=NIGHT)
    world.paid_question(paid_at=NIGHT)
    with app.app_context():
        real = mailer.sender_for(app.config)
    with pytest.raises(KeyboardInterrupt):
        dispatch(app, NIGHT, sender=DiesAfterSending(real))
    assert len(smtp_server.messages) == 1
    assert [r.status for r in rows(app)] == ["pending", "pending"]
    # The claim still holds: nobody sends it again at once...
    assert dispatch(app, NIGHT + timedelta(seconds=10)).attempted == 0
    # ...after it runs out, both go, the first one a second time with the same Message-ID.
    later = NIGHT + timedelta(seconds=notifications.CLAIM_SECONDS)
    assert dispatch(app, later).sent == 2
    ids = [m["Message-ID"] for m in smtp_server.messages]
    first = rows(app)[0].id
    assert ids == [f"<upss-notification-{first}@upss.example>",
                   f"<upss-notification-{first}@upss.example>",
                   f"<upss-notification-{first + 1}@upss.example>"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_dispatchers_side_by_side_on_postgresql_send_each_message_once(
        app, world, smtp_server):
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    asker = world.user("asker")
    for n in range(40):
        enqueue(app, asker, "answer_ready", {"question_id": n + 1, "title": f"Q{n}"})
    with app.app_context():
        real = mailer.sender_for(app.config)
    slow = SimpleNamespace(send=lambda message: (time.sleep(0.02), real.send(message)))
    barrier = threading.Barrier(2, timeout=30)
    results, errors = [], []

    def run():
        barrier.wait()
        try:
            results.append(dispatch(app, NIGHT, batch=3, sender=slow))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(r.sent for r in results) == 40
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(ids) == 40 and len(set(ids)) == 40
    assert all(r.sent for r in results), f"one dispatcher did everything: {results}"


# --- one-click unsubscribe -------------------------------------------------------------------

def test_one_click_unsubscribe_without_signing_in_and_get_changes_nothing(
        app, world, smtp_server, client):
    asker = world.user("asker")
    enqueue(app, asker, "answer_ready", {"question_id": 1, "title": "Q"})
    dispatch(app, NIGHT)
    [message] = smtp_server.messages
    header = message["List-Unsubscribe"]
    # On the wire a plain link, not encoded words (which mail clients do not read as one).
    assert f"\r\nList-Unsubscribe: {header}\r\n".encode() in smtp_server.raw[0]
    assert header.startswith(f"<{BASE}/unsubscribe/") and header.endswith(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = path_of(header[1:-1])
    assert path_of(body_link(message, "Stop messages like this one")) == link
    # Opening the link (a mail scanner, a curious click) only asks.
    page = client.get(link)
    assert page.status_code == 200
    assert "Stop these messages?" in page.get_data(as_text=True)
    with app.app_context():
        assert notifications.mode(db.session, asker, "answer_ready") == "now"
    # The mail client's one-click POST: no session, no form token.
    done = client.post(link, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.get_data(as_text=True)[:300]
    assert "You will not get these messages any more" in done.get_data(as_text=True)
    with app.app_context():
        assert notifications.mode(db.session, asker, "answer_ready") == "off"
    # Nothing more of that kind is written, and one already written is not sent.
    with app.app_context():
        db.session.add(Notification(user_id=asker, kind="answer_ready",
                                    data='{"question_id": 3, "title": "Q3"}',
                                    status="pending", next_attempt_at=NIGHT, attempts=0))
        db.session.commit()
    # Turned off: written for the list on the site, never e-mailed.
    later = enqueue(app, asker, "answer_ready", {"question_id": 2, "title": "Q2"})
    assert {row.id: row.status for row in rows(app)}[later] == "skipped"
    assert dispatch(app, NIGHT + timedelta(minutes=1)).skipped == 1
    assert len(smtp_server.messages) == 1
    assert "already turned off" in client.get(link).get_data(as_text=True)


def test_a_money_message_cannot_be_turned_off(app, world, client):
    asker = world.user("asker")
    with app.app_context():
        token = notifications.unsubscribe_token(asker, "payment_confirmed")
    for response in (client.get(f"/unsubscribe/{token}"),
                     client.post(f"/unsubscribe/{token}")):
        assert response.status_code == 400
        assert "These messages cannot be turned off" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(NotificationPreference, (asker, "payment_confirmed")) is None
        with pytest.raises(notifications.NotOptional):
            notifications.set_mode(db.session, asker, "payment_confirmed", "off")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    refused = client.post(f"/unsubscribe/{forged}")
    assert refused.status_code == 400
    assert "This link does not work" in refused.get_data(as_text=True)


# --- DKIM ------------------------------------------------------------------------------------

@pytest.fixture
def dkim_key(tmp_path):
    """An RSA key made for this test: (private key file, the DNS TXT record's value)."""
    private = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(private), "2048"],
                   check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform",
                             "DER"], check=True, capture_output=True).stdout
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_messages_are_dkim_signed_over_the_unsubscribe_headers(app, world, smtp_server,
                                                               dkim_key):
    private, record = dkim_key
    app.config.update(UPSS_DKIM_SELECTOR="mail2026", UPSS_DKIM_DOMAIN="upss.example",
                      UPSS_DKIM_KEY_FILE=str(private))
    asker = world.user("asker")
    enqueue(app, asker, "answer_ready", {"question_id": 1, "title": "Æ ø å – ä ö č"})
    dispatch(app, NIGHT)
    [raw] = smtp_server.raw
    asked = []

    def dns(name, timeout=5):
        asked.append(name)
        return record if name == b"mail2026._domainkey.upss.example." else None

    assert dkim.verify(raw, dnsfunc=dns)
    assert asked == [b"mail2026._domainkey.upss.example."]
    signature = smtp_server.messages[0]["DKIM-Signature"]
    signed = {h.strip().lower() for h in
              signature.split("h=")[1].split(";")[0].replace("\r\n", "").split(":")}
    assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe",
            "list-unsubscribe-post"} <= signed
    # A changed header breaks the signature.
    tampered = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                           b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks")
    assert tampered != raw and not dkim.verify(tampered, dnsfunc=dns)


# --- the development mail page and the CLI ---------------------------------------------------

def test_the_development_mail_page_exists_only_outside_production(app, client, tmp_path):
    assert client.get("/dev/mail").status_code == 200  # test config, SMTP on 127.0.0.1
    production = create_app({
        **_base_config(app.config["SQLALCHEMY_DATABASE_URI"], "http://127.0.0.1:9"),
        "UPSS_ENV": "production", "UPSS_USES_LOCALSTRIPE": False,
        "UPSS_STRIPE_SECRET_KEY": "sk_live_abc", "UPSS_STRIPE_WEBHOOK_SECRET": "whsec_real",
        "UPSS_STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_real_connect",
        "RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
        "UPSS_CONTACT_EMAIL": "help@upss.example.no", "UPSS_BASE_URL": "https://upss.example.no",
        "UPSS_MAIL_FROM": "UPSS <upss@upss.example.no>", "UPSS_SMTP_URL": "smtp://127.0.0.1:8025"})
    assert production.config["UPSS_ENV"] == "production"
    assert "devmail.received" not in production.view_functions
    with production.app_context():
        assert production.test_client().get("/dev/mail").status_code == 404
        db.engine.dispose()
    elsewhere = {**app.config, "UPSS_SMTP_URL": "smtp://mail.upss.example:587"}
    assert not mailer.uses_local_dev_server(elsewhere)
    assert mailer.uses_local_dev_server(app.config)


def test_the_development_mail_server_keeps_each_message_as_a_file(tmp_path):
    folder = tmp_path / "devmail"
    handler = devmail.MailFolder.from_cli(None, str(folder))
    message = mailer.build_message(
        sender="UPSS <upss@localhost>", to="Asker <asker@example.org>", subject="Hei på deg",
        text="Hello there", html="<p>Hello there</p>", message_id="<x@localhost>",
        date=NIGHT)
    envelope = SimpleNamespace(original_content=bytes(message), content=bytes(message))
    # Its own thread: after the browser tests, Playwright's loop still runs in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(asyncio.run, handler.handle_DATA(None, None, envelope)).result()
    assert answer.startswith("250")
    [mail] = devmail.received(folder)
    assert (mail.subject, mail.to, mail.text.strip()) == (
        "Hei på deg", "Asker <asker@example.org>", "Hello there")
    assert devmail.received(tmp_path / "nothing") == []


def test_the_send_notifications_command(app, world, runner, smtp_server):
    world.paid_question(paid_at=NIGHT)
    result = runner.invoke(args=["upss", "send-notifications"])
    assert result.exit_code == 0, result.output
    assert "1 sent" in result.output
    assert len(smtp_server.messages) == 1


# --- the first messages, in the recipient's language -----------------------------------------

GREETING = {"en": "Hello", "nb": "Hei", "fi": "Hei", "sv": "Hej", "sl": "Pozdravljeni"}


def offer_to(app, q: int, answerer: int, now: datetime) -> None:
    with app.app_context():
        questions.offer(db.session, db.session.get(Question, q),
                        db.session.get(User, answerer), now, settings.current(db.session))
        db.session.commit()


@pytest.mark.parametrize("locale", ["en", "nb", "fi", "sv", "sl"])
def test_each_message_goes_once_to_the_right_person_in_their_language(
        app, world, smtp_server, client, locale):
    asker = world.user("asker")
    answerer = world.answerer(languages="en", timezone="Europe/Helsinki")
    set_locale(app, asker, locale)
    set_locale(app, answerer, locale)
    q = world.paid_question(paid_at=NIGHT, asker_id=asker)
    offer_to(app, q, answerer, NIGHT)
    assert dispatch(app, NIGHT + timedelta(minutes=1)).sent == 2
    world.act(questions.claim, q, answerer, NIGHT + timedelta(minutes=5))
    world.act(questions.post_answer, q, answerer, "Open the camera app.",
              NIGHT + timedelta(minutes=30))
    assert dispatch(app, NIGHT + timedelta(hours=1)).sent == 1
    paid, offered, answered = smtp_server.messages
    with app.app_context():
        emails = {u.id: u.email for u in db.session.scalars(select(User))}
    assert [m["To"].addresses[0].addr_spec for m in (paid, offered, answered)] == [
        emails[asker], emails[answerer], emails[asker]]
    for message in (paid, offered, answered):
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert text.startswith(GREETING[locale]), text[:80]
        assert f'<html lang="{locale}">' in html
        if locale != "en":
            assert "Hello" not in text
    # Money: no unsubscribe; the two others may be turned off.
    assert paid["List-Unsubscribe"] is None
    assert offered["List-Unsubscribe-Post"] == answered["List-Unsubscribe-Post"] == (
        "List-Unsubscribe=One-Click")
    # The offer says until when, in the answerer's own time zone (Helsinki: 12 hours after
    # 22:00 UTC is 12:00 the next day), with a link straight to it.
    offer_text = offered.get_body(("plain",)).get_content()
    assert "12" in offer_text and "2026" in offer_text
    links = [line for line in offer_text.splitlines() if line.startswith(BASE)]
    assert path_of(links[0]) == f"/answer/questions/{q}"
    answer_link = [line for line in answered.get_body(("plain",)).get_content().splitlines()
                   if line.startswith(BASE)][0]
    assert path_of(answer_link) == f"/questions/{q}"
    sign_in_as(client, app, answerer)
    assert client.get(path_of(links[0])).status_code in (200, 403)
    sign_in_as(client, app, asker)
    assert client.get(path_of(answer_link)).status_code == 200


def test_an_offer_link_opens_the_offer_for_the_answerer(app, world, smtp_server, client):
    answerer = world.answerer()
    q = world.paid_question(paid_at=NIGHT)
    offer_to(app, q, answerer, NIGHT)
    dispatch(app, NIGHT)
    offered = [m for m in smtp_server.messages if "new question" in m["Subject"]]
    assert len(offered) == 1
    link = path_of(body_link(offered[0], "See the question"))
    sign_in_as(client, app, answerer)
    page = client.get(link)
    assert page.status_code == 200
    assert "Q" in page.get_data(as_text=True)


def test_the_smtp_url_and_dkim_settings_are_read(tmp_path):
    from upss import config

    read = config.from_environment(str(tmp_path), {
        "UPSS_SECRET_KEY": "x", "UPSS_SMTP_URL": "smtps://u%40x:p@mail.example:465"})
    sender = mailer.sender_for(read)
    assert (sender.implicit_tls, sender.host, sender.port, sender.username, sender.password) == (
        True, "mail.example", 465, "u@x", "p")
    assert sender.dkim_key is None


def test_a_message_that_cannot_be_written_is_kept_as_failed_and_the_others_go(app, world,
                                                                               smtp_server):
    asker = world.user("asker")
    with app.app_context():
        db.session.add(Notification(user_id=asker, kind="answer_ready", data="{}",
                                    status="pending", next_attempt_at=NIGHT, attempts=0))
        db.session.commit()
    enqueue(app, asker, "answer_ready", {"question_id": 1, "title": "Q"})
    result = dispatch(app, NIGHT)
    assert (result.failed, result.sent) == (1, 1)
    broken, fine = rows(app)
    assert broken.status == "failed" and broken.last_error.startswith("not written")
    assert fine.status == "sent" and len(smtp_server.messages) == 1
