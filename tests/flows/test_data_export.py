"""Download my data (issue 18 item 4): an asker's and an answerer's copies after real activity
(a question asked, paid, answered, clarified, accepted, rated and tipped; a SEPA payout), each
with every section and its content, and nothing of the other people in the same data; a large
account made by the job, with one ``data_export_ready`` e-mail whose link works; someone else's
export and an expired one answer 404 and the expired file is gone."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select

from tests.conftest import sign_in_as, submit
from tests.flows.test_notifications import BASE, dispatch
from tests.flows.test_payouts import IBAN_FI, IBAN_NO, later, run_batch
from upss import data_export, notifications, payments, questions, settings
from upss.extensions import db
from upss.models import DataExport, Notification, Question, Tip, User, utcnow

SECTIONS = {"format", "exported_at", "profile", "questions", "answers", "messages",
            "notifications", "consents", "ledger", "payouts", "tips"}


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "UPSS_SMTP_URL": smtp_server.url,
            "UPSS_MAIL_FROM": "UPSS <upss@upss.example>", "UPSS_BASE_URL": BASE}


def person(app, world, role: str, name: str, **profile) -> dict:
    """A user with a name of their own; returns their id, e-mail and name."""
    user_id = world.user(role, **profile)
    with app.app_context():
        user = db.session.get(User, user_id)
        user.name = name
        db.session.commit()
        return {"id": user_id, "email": user.email, "name": name}


def answered_question(app, asker: int, answerer: int, title: str, body: str, answer: str,
                      price_cents: int, clarify: tuple[str, str] | None = None,
                      tip_cents: int | None = None) -> int:
    """A question ``asker`` asks and pays, ``answerer`` answers (after a clarification, if
    given), accepted and rated 5; tipped through the local Stripe if ``tip_cents``."""
    now = utcnow()
    with app.test_request_context():
        asking = db.session.get(User, asker)
        answering = db.session.get(User, answerer)
        q = questions.create_question(db.session, asking, title=title, body=body,
                                      language="en", topic="other", price_cents=price_cents)
        questions.start_payment(db.session, q, asking, f"pi_test_export_{title[:8]}_{q.id}")
        questions.confirm_payment(db.session, q, q.payment_intent_id, now=now)
        questions.offer(db.session, q, answering, now, settings.current(db.session))
        questions.claim(db.session, q, answering, now)
        questions.post_answer(db.session, q, answering, answer, now)
        if clarify:
            questions.ask_clarification(db.session, q, asking, clarify[0], now)
            questions.reply_clarification(db.session, q, answering, clarify[1], now)
        questions.accept(db.session, q, asking, now)
        questions.rate(db.session, q, asking, 5, "Very helpful, thank you")
        db.session.commit()
        if tip_cents:
            tip = payments.start_tip(db.session, q, asking, tip_cents)
            db.session.commit()
            intent = payments.pay_tip_with_test_card(db.session, tip, "succeeds")
            assert payments.apply_payment_intent(db.session, intent) == "applied: tip paid"
            db.session.commit()
        return q.id


@pytest.fixture
def people(app, world):
    """Aino asks Bruno a question (clarified, accepted, rated, tipped); Cecilia asks Dag one.
    Bruno and Dag are paid in one SEPA batch."""
    aino = person(app, world, "asker", "Aino Asker")
    bruno = person(app, world, "answerer", "Bruno Answerer", iban=IBAN_NO,
                   account_holder="Bruno Answerer")
    cecilia = person(app, world, "asker", "Cecilia Other")
    dag = person(app, world, "answerer", "Dag Other", iban=IBAN_FI,
                 account_holder="Dag Other Holder")
    aino["question"] = answered_question(
        app, aino["id"], bruno["id"], "How do I renew my bus pass?",
        "My bus pass ran out yesterday.", "Take it to the ticket office.", 2000,
        clarify=("Which office is open on Sunday?", "The one at the central station."),
        tip_cents=250)
    cecilia["question"] = answered_question(
        app, cecilia["id"], dag["id"], "Cecilia's private tax question",
        "Cecilia's secret body text.", "Dag's answer about taxes.", 1500,
        clarify=("Cecilia asks more", "Dag explains more"))
    assert run_batch(app, later()) is not None
    return aino, bruno, cecilia, dag


def export_of(app, user_id: int) -> tuple[str, dict]:
    """Ask for ``user_id``'s data (a small account: made at once); the file's text and JSON."""
    with app.test_request_context():
        export = data_export.request_export(db.session, db.session.get(User, user_id), utcnow())
        db.session.commit()
        assert export.status == "ready"
        return export.content, json.loads(export.content)


def assert_nothing_of(text: str, *others: dict, words: tuple[str, ...] = ()) -> None:
    for other in others:
        for value in (other["email"], other["name"]):
            assert value not in text, f"{value!r} is in the file"
    for word in words:
        assert word not in text, f"{word!r} is in the file"


def test_the_askers_file_has_every_section_and_nothing_of_anyone_else(app, people):
    aino, bruno, cecilia, dag = people
    text, data = export_of(app, aino["id"])
    assert set(data) == SECTIONS and data["format"] == data_export.FORMAT
    account = data["profile"]["account"]
    assert (account["email"], account["name"]) == (aino["email"], "Aino Asker")
    assert "password" not in text and "scrypt" not in text
    assert data["profile"]["answerer_profile"] is None
    [asked] = data["questions"]
    assert asked["title"] == "How do I renew my bus pass?"
    assert asked["body"] == "My bus pass ran out yesterday."
    assert asked["answer"] == "Take it to the ticket office."
    assert asked["price"] == {"amount_cents": 2000, "currency": "EUR"}
    assert (asked["status"], asked["rating"]) == ("closed", 5)
    assert [(m["from"], m["body"]) for m in asked["messages"]] == [
        ("you", "Which office is open on Sunday?"), ("answerer", "The one at the central station.")]
    assert ("accept", "you") in {(e["action"], e["by"]) for e in asked["events"]}
    assert ("post_answer", "answerer") in {(e["action"], e["by"]) for e in asked["events"]}
    assert [m["body"] for m in data["messages"]] == ["Which office is open on Sunday?",
                                                     "The one at the central station."]
    assert data["answers"] == {"answered": [], "drafts": [], "offers": []}
    kinds = {n["kind"] for n in data["notifications"]}
    assert {"answer_ready", "clarification_replied"} <= kinds and "tip_received" not in kinds
    assert data["consents"]["email_confirmed_at"] is not None
    assert data["consents"]["account_created_at"] == account["created_at"]
    escrow = f"escrow:question:{aino['question']}"
    assert [(line["account"], line["amount_cents"]) for line in data["ledger"]["as_asker"]] == [
        (escrow, -2000), (escrow, 2000)]
    assert data["ledger"]["as_answerer"] == [] and data["payouts"] == []
    assert [(t["amount"]["amount_cents"], t["status"]) for t in data["tips"]["given"]] == [
        (250, "paid")]
    assert_nothing_of(text, bruno, cecilia, dag,
                      words=(IBAN_NO, IBAN_FI, "Cecilia's private tax question",
                             "Cecilia's secret body text.", "Dag's answer about taxes.",
                             "Dag explains more", "commission", "stripe_balance",
                             f"payable:answerer:{bruno['id']}"))


def test_the_answerers_file_has_their_earnings_payout_and_iban_and_nothing_of_others(
        app, people):
    aino, bruno, cecilia, dag = people
    text, data = export_of(app, bruno["id"])
    assert set(data) == SECTIONS
    profile = data["profile"]["answerer_profile"]
    assert (profile["iban"], profile["account_holder"]) == (IBAN_NO, "Bruno Answerer")
    [answered] = data["answers"]["answered"]
    assert answered["title"] == "How do I renew my bus pass?"
    assert answered["answer"] == "Take it to the ticket office."
    assert (answered["rating"], answered["rating_comment"]) == (5, "Very helpful, thank you")
    assert [(m["from"], m["body"]) for m in answered["messages"]] == [
        ("asker", "Which office is open on Sunday?"), ("you", "The one at the central station.")]
    assert [o["outcome"] for o in data["answers"]["offers"]] == ["claimed"]
    assert data["questions"] == []
    payable = f"payable:answerer:{bruno['id']}"
    assert [(line["account"], line["amount_cents"]) for line in data["ledger"]["as_answerer"]] == [
        (payable, -1800), (payable, -250), (payable, 2050)]
    [payout] = data["payouts"]
    assert (payout["amount"], payout["iban"], payout["method"]) == (
        {"amount_cents": 2050, "currency": "EUR"}, IBAN_NO, "sepa")
    assert [t["amount"]["amount_cents"] for t in data["tips"]["received"]] == [250]
    kinds = {n["kind"] for n in data["notifications"]}
    assert {"answer_accepted", "tip_received", "clarification_asked", "answer_rated"} <= kinds
    assert data["consents"]["messages_outside_available_hours"] is False
    assert_nothing_of(text, aino, cecilia, dag,
                      words=(IBAN_FI, "Dag Other Holder", "My bus pass ran out yesterday.",
                             "Cecilia's private tax question", "Dag's answer about taxes.",
                             "Cecilia asks more", f"payable:answerer:{dag['id']}",
                             f"escrow:question:{aino['question']}", "commission"))


def test_the_pages_prepare_and_download_the_file_and_refuse_anyone_elses(app, people, client):
    aino, bruno, *_ = people
    sign_in_as(client, app, aino["id"])
    page = client.get("/account/data").get_data(as_text=True)
    assert "You have not asked for your data yet." in page
    assert "/account/data" in client.get("/account/preferences").get_data(as_text=True)
    response = submit(client, "/account/data", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Your data is ready to download." in page
    link = re.search(r'href="(/account/data/(\d+)/download)"', page)
    assert link, page
    download = client.get(link.group(1))
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert download.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(r'attachment; filename="upss-data-\d{4}-\d\d-\d\d\.json"',
                        download.headers["Content-Disposition"])
    assert download.get_json()["profile"]["account"]["email"] == aino["email"]
    sign_in_as(client, app, bruno["id"])
    assert client.get(link.group(1)).status_code == 404
    assert client.get("/account/data/999999/download").status_code == 404


def test_asking_again_while_one_is_prepared_returns_it_and_a_ready_one_is_replaced(
        app, world, monkeypatch):
    user_id = world.user()
    monkeypatch.setattr(data_export, "SMALL_ACCOUNT_ROWS", 0)
    with app.test_request_context():
        user = db.session.get(User, user_id)
        first = data_export.request_export(db.session, user, utcnow())
        again = data_export.request_export(db.session, user, utcnow())
        assert again.id == first.id and first.status == "pending"
        data_export.build(db.session, first, utcnow())
        new = data_export.request_export(db.session, user, utcnow())
        db.session.commit()
        assert new.id != first.id
        assert db.session.scalar(select(func.count()).select_from(DataExport)) == 1


def test_a_large_account_is_made_by_the_job_and_told_once_by_email(app, world, client,
                                                                   monkeypatch, smtp_server):
    asker = person(app, world, "asker", "Eeva Large")
    other = person(app, world, "asker", "Frans Other")
    for n in range(3):
        with app.test_request_context():
            questions.create_question(db.session, db.session.get(User, asker["id"]),
                                      title=f"Eeva's question {n}", body="Body", language="en",
                                      topic="other", price_cents=1000)
            db.session.commit()
    monkeypatch.setattr(data_export, "SMALL_ACCOUNT_ROWS", 3)
    monkeypatch.setattr(data_export, "PAGE", 2)  # the questions come in two pages
    sign_in_as(client, app, asker["id"])
    page = submit(client, "/account/data", follow_redirects=True).get_data(as_text=True)
    assert "We are preparing your data." in page and "/download" not in page
    assert "Prepare my data" not in page
    now = utcnow()
    with app.app_context():
        assert data_export.run(db.session, now) == "1 ready, 0 expired"
        db.session.commit()
        assert data_export.run(db.session, now) == 0
        db.session.commit()
    assert dispatch(app, now).sent == 1
    assert dispatch(app, now + timedelta(minutes=10)).sent == 0
    [mail] = smtp_server.messages
    assert mail["To"].endswith(f"<{asker['email']}>") or mail["To"] == asker["email"]
    assert mail["Subject"] == "Your data is ready to download"
    text = mail.get_body(("plain",)).get_content()
    url = re.search(r"https://upss\.example/\S+", text).group(0)
    assert urlsplit(url).path == "/account/data"
    page = client.get(urlsplit(url).path).get_data(as_text=True)
    link = re.search(r'href="(/account/data/\d+/download)"', page).group(1)
    data = client.get(link).get_json()
    assert [q["title"] for q in data["questions"]] == [f"Eeva's question {n}" for n in range(3)]
    assert other["email"] not in json.dumps(data)


def test_a_failed_build_is_marked_and_the_person_told(app, world, client, monkeypatch):
    user_id = world.user()
    monkeypatch.setattr(data_export, "SMALL_ACCOUNT_ROWS", 0)
    with app.test_request_context():
        data_export.request_export(db.session, db.session.get(User, user_id), utcnow())
        db.session.commit()

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(data_export, "_tips", broken)
    with app.app_context():
        assert data_export.run(db.session, utcnow()) == 0
        db.session.commit()
        export = db.session.scalar(select(DataExport))
        assert (export.status, export.content) == ("failed", None)
        assert db.session.scalars(select(Notification.kind).where(
            Notification.user_id == user_id)).all() == ["data_export_failed"]


def test_an_expired_file_is_emptied_and_answers_404(app, world, client):
    user_id = world.user()
    with app.test_request_context():
        export = data_export.request_export(db.session, db.session.get(User, user_id), utcnow())
        db.session.commit()
        export_id, expires_at = export.id, export.expires_at
    assert expires_at - utcnow() > timedelta(days=6)
    sign_in_as(client, app, user_id)
    assert client.get(f"/account/data/{export_id}/download").status_code == 200
    with app.app_context():
        assert data_export.run(db.session, expires_at - timedelta(seconds=1)) == 0
        assert data_export.run(db.session, expires_at) == "0 ready, 1 expired"
        db.session.commit()
        export = db.session.get(DataExport, export_id)
        assert (export.content, export.size_bytes) == (None, None)
    assert client.get(f"/account/data/{export_id}/download").status_code == 404
    page = client.get("/account/data").get_data(as_text=True)
    assert "no longer kept" in page and "/download" not in page


def test_the_file_reads_only_the_persons_own_rows(app, people):
    """The tips and questions of another asker are not counted or read for this one."""
    aino, _bruno, cecilia, _dag = people
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Tip)) == 1
        assert db.session.scalar(select(func.count()).select_from(Question)) == 2
    _, data = export_of(app, cecilia["id"])
    assert data["tips"] == {"given": [], "received": []}
    assert [q["title"] for q in data["questions"]] == ["Cecilia's private tax question"]


@pytest.mark.parametrize("locale, heading, button", [
    ("fi", "Lataa tietosi", "Valmistele tietoni"),
    ("nb", "Last ned dataene dine", "Gjør klar dataene mine"),
    ("sv", "Ladda ner dina uppgifter", "Förbered mina uppgifter"),
    ("sl", "Prenesite svoje podatke", "Pripravite moje podatke"),
])
def test_the_page_and_the_message_are_in_the_persons_language(app, world, client, locale,
                                                              heading, button):
    user_id = world.user()
    with app.app_context():
        db.session.get(User, user_id).locale = locale
        db.session.commit()
    sign_in_as(client, app, user_id)
    page = client.get("/account/data").get_data(as_text=True)
    assert f"<h1>{heading}</h1>" in page and button in page
    assert "You have not asked" not in page
    with app.test_request_context():
        data_export.request_export(db.session, db.session.get(User, user_id), utcnow())
        db.session.commit()
        row = db.session.scalar(select(Notification).where(Notification.user_id == user_id))
        with force_locale(locale):
            content = notifications.describe(db.session, row, db.session.get(User, user_id))
        assert content.subject != "Your data is ready to download"
        assert content.link_url == f"{BASE}/account/data"
