"""Delete my account (issue 18, item 5): the grace period, what happens to work in progress, money
still owed, and, past the grace period, that the person's e-mail, name and IBAN are left only in
the bookkeeping records ``account_deletion.KEPT_FOR_BOOKKEEPING`` names (every text column of
every table is scanned), with the ledger still verifying and the other party's pages reading.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask_babel import force_locale
from sqlalchemy import select
from werkzeug.security import check_password_hash

from tests.conftest import csrf_token, sign_in_as, submit
from tests.flows.test_payouts import DAY, IBAN_NO, earn, later, run_batch
from upss import account_deletion, ledger, questions, release, sepa, sessions, vetting
from upss.extensions import db
from upss.models import (
    LANGUAGES,
    AnswerDraft,
    AuditLog,
    Notification,
    NotificationPreference,
    PayoutBatch,
    Question,
    User,
    UserSession,
    utcnow,
)
from upss.notification_texts import KINDS

PASSWORD = "correct horse 9"  # noqa: S105 - the test users' password (tests/conftest.py)
ANSWERER = {"email": "ingrid.solberg@example.org", "name": "Ingrid Solberg"}
ASKER = {"email": "matti.korhonen@example.org", "name": "Matti Korhonen"}


def rename(app, user_id: int, email: str, name: str) -> None:
    """Give a World user an e-mail and name that occur nowhere else (for the scan)."""
    with app.app_context():
        user = db.session.get(User, user_id)
        user.email, user.name = email, name
        db.session.commit()


def call(app, fn, user_id: int, *args):
    """Call an account_deletion service for ``user_id`` and commit."""
    with app.test_request_context():
        result = fn(db.session, db.session.get(User, user_id), *args)
        db.session.commit()
        return result


def run(app, fn, *args):
    with app.test_request_context():
        result = fn(db.session, *args)
        db.session.commit()
        return result


def kinds(app, user_id: int) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Notification.kind).where(
            Notification.user_id == user_id).order_by(Notification.id)))


def where_found(app, needles: list[str]) -> set[str]:
    """Every ``table.column`` of the database (reflected, not the models) holding one of
    ``needles`` in any row, case-insensitively; spaces are ignored too (an IBAN in groups)."""
    needles = [n.lower() for n in needles]
    found = set()
    with app.app_context():
        metadata = sa.MetaData()
        metadata.reflect(bind=db.engine)
        with db.engine.connect() as connection:
            for table in metadata.sorted_tables:
                for row in connection.execute(sa.select(table)):
                    for column, value in zip(table.columns, row, strict=True):
                        if not isinstance(value, str):
                            continue
                        text = value.lower()
                        if any(n in text or n in text.replace(" ", "") for n in needles):
                            found.add(f"{table.name}.{column.name}")
    return found


def real_activity(app, world):
    """An asker and an answerer with real activity: a question paid, clarified, answered,
    accepted and rated; the answerer paid out through a SEPA file marked sent. Returns
    (answerer, asker, organizer, question)."""
    answerer, asker = world.answerer(iban=IBAN_NO), world.user("asker")
    organizer = world.user("organizer")
    rename(app, answerer, **ANSWERER)
    rename(app, asker, **ASKER)
    q = world.paid_question(paid_at=DAY, price_cents=3000, asker_id=asker)
    with app.test_request_context():
        question, a, b = (db.session.get(Question, q), db.session.get(User, answerer),
                          db.session.get(User, asker))
        questions.offer(db.session, question, a, DAY, account_deletion.settings.current(
            db.session))
        questions.claim(db.session, question, a, DAY)
        questions.post_answer(db.session, question, a, "Press the green button.", DAY)
        questions.ask_clarification(db.session, question, b, "Which one?", DAY)
        questions.reply_clarification(db.session, question, a, "The round one.", DAY)
        questions.accept(db.session, question, b, DAY + timedelta(hours=1))
        questions.rate(db.session, question, b, 5, "Thank you!")
        db.session.commit()
    batch_id = run_batch(app, later())
    with app.test_request_context():
        sepa.mark_file_sent(db.session, db.session.get(PayoutBatch, batch_id),
                            db.session.get(User, organizer), later())
        db.session.commit()
    return answerer, asker, organizer, q


def test_after_the_grace_period_only_the_bookkeeping_records_keep_the_data(app, world, client):
    answerer, asker, organizer, q = real_activity(app, world)
    # Before: the data is where it is used (a sanity check of the scan itself).
    assert {"user.email", "user.name"} <= where_found(app, [ANSWERER["email"]]) | where_found(
        app, [ANSWERER["name"]])
    assert "answerer_profile.iban" in where_found(app, [IBAN_NO])
    now = utcnow()
    for user_id in (answerer, asker):
        call(app, account_deletion.request_deletion, user_id, PASSWORD, now)

    # Nothing happens within the grace period.
    assert run(app, account_deletion.erase_due, now + timedelta(days=13, hours=23)) == 0
    assert run(app, account_deletion.erase_due, now + timedelta(days=14, minutes=1)) == 2

    answerer_data = [ANSWERER["email"], ANSWERER["name"], IBAN_NO]
    assert where_found(app, answerer_data) == set(account_deletion.KEPT_FOR_BOOKKEEPING)
    assert account_deletion.KEPT_FOR_BOOKKEEPING == ("payout.iban", "payout_batch.sepa_xml")
    assert where_found(app, [ASKER["email"], ASKER["name"]]) == set()

    with app.app_context():
        assert ledger.verify(db.session).ok
        deleted = db.session.get(User, answerer)
        assert (deleted.email, deleted.name) == (f"deleted-{answerer}@deleted.invalid",
                                                 f"Deleted user {answerer}")
        assert deleted.deleted_at is not None
        assert not check_password_hash(deleted.password_hash, PASSWORD)
        for model, column in ((Notification, Notification.user_id),
                              (NotificationPreference, NotificationPreference.user_id),
                              (UserSession, UserSession.user_id),
                              (AnswerDraft, AnswerDraft.answerer_id)):
            assert db.session.scalar(select(sa.func.count()).select_from(model).where(
                column == answerer)) == 0, model.__name__
        question = db.session.get(Question, q)
        assert (question.status, question.rating, question.answer_body) == (
            "closed", 5, "Press the green button.")
        assert [m.body for m in question.messages] == ["Which one?", "The round one."]
        entries = db.session.scalars(select(AuditLog).where(
            AuditLog.action == "account_deleted")).all()
        assert sorted(e.target for e in entries) == sorted([f"user:{answerer}", f"user:{asker}"])
        assert all(e.actor_id is None and e.before == "{}" and e.after == "{}" for e in entries)

    # The deleted accounts cannot sign in, with the old address or the new one.
    for user_id, person in ((answerer, ANSWERER), (asker, ASKER)):
        for email in (person["email"], f"deleted-{user_id}@deleted.invalid"):
            response = submit(client, "/sign-in", {"email": email, "password": PASSWORD})
            assert response.status_code == 400

    # The organizer's pages read "Deleted user", never the e-mail or name.
    sign_in_as(client, app, organizer)
    for page in ("/organizer/audit-log", "/organizer/payouts"):
        html = client.get(page).get_data(as_text=True)
        assert "Deleted user" in html
        assert f"Deleted user {answerer}" not in html  # the stored pseudonym is not shown
        assert ANSWERER["email"] not in html and ANSWERER["name"] not in html


def test_the_other_party_still_reads_the_question(app, world, client):
    answerer, asker, _organizer, q = real_activity(app, world)
    call(app, account_deletion.request_deletion, asker, PASSWORD, utcnow())
    run(app, account_deletion.erase_due, utcnow() + timedelta(days=15))
    sign_in_as(client, app, answerer)
    html = client.get(f"/answer/questions/{q}").get_data(as_text=True)
    assert "Press the green button." in html and "Which one?" in html
    assert ASKER["name"] not in html


def test_signing_in_within_the_grace_period_cancels(app, world):
    answerer = world.answerer(iban=IBAN_NO)
    now = utcnow()
    with app.app_context():
        token = sessions.start(db.session, db.session.get(User, answerer), now)
        db.session.commit()
    call(app, account_deletion.request_deletion, answerer, PASSWORD, now)
    with app.app_context():
        user = db.session.get(User, answerer)
        assert user.deletion_requested_at is not None and not user.is_answerer
        ended = db.session.scalar(select(UserSession).where(UserSession.user_id == answerer))
        assert ended.ended_at is not None and ended.end_reason == "account_deletion"
        assert sessions.check(db.session, token, answerer, now, sessions.Lifetimes(
            timedelta(hours=1), timedelta(hours=9)))[0] is None
    assert kinds(app, answerer) == ["account_deletion_scheduled"]

    assert call(app, account_deletion.cancel_on_sign_in, answerer, now + timedelta(days=13))
    assert not call(app, account_deletion.cancel_on_sign_in, answerer, now + timedelta(days=13))
    with app.app_context():
        user = db.session.get(User, answerer)
        assert user.deletion_requested_at is None and user.is_answerer
    assert kinds(app, answerer) == ["account_deletion_scheduled", "account_deletion_cancelled"]
    assert run(app, account_deletion.erase_due, now + timedelta(days=30)) == 0
    with app.app_context():
        assert db.session.get(User, answerer).deleted_at is None


def test_money_still_owed_is_paid_before_erasure_and_the_person_is_told_once(app, world):
    answerer = world.answerer(iban=IBAN_NO)
    earn(app, world, answerer, 3000)
    now = utcnow()
    plan = call(app, account_deletion.request_deletion, answerer, PASSWORD, now)
    assert plan.money is not None and plan.money.owed_cents == 2700  # 90 % of 30.00
    for _ in range(2):
        assert run(app, account_deletion.erase_due, later()) == 0
    waiting = [k for k in kinds(app, answerer) if k == "account_deletion_waiting"]
    assert waiting == ["account_deletion_waiting"]
    with app.app_context():
        data = json.loads(db.session.scalar(select(Notification.data).where(
            Notification.kind == "account_deletion_waiting")))
    assert (data["reason"], data["amount_cents"], data["held_because"]) == ("owed", 2700, None)
    assert data["expected_on"] is not None

    batch_id = run_batch(app, later())  # the weekly batch pays it into a bank file
    assert run(app, account_deletion.erase_due, later()) == 0  # on its way: still waiting
    assert kinds(app, answerer).count("account_deletion_waiting") == 2  # owed, then on its way
    with app.test_request_context():
        organizer = db.session.get(User, world.user("organizer"))
        sepa.mark_file_sent(db.session, db.session.get(PayoutBatch, batch_id), organizer,
                            later())
        db.session.commit()
    assert run(app, account_deletion.erase_due, later()) == 1
    with app.app_context():
        assert db.session.get(User, answerer).deleted_at is not None
        assert ledger.verify(db.session).ok


def test_questions_in_progress_are_handled_as_the_page_said(app, world):
    asker, answerer = world.user("asker"), world.answerer()
    waiting = world.paid_question(paid_at=utcnow(), asker_id=asker)
    answered = world.paid_question(paid_at=utcnow(), asker_id=asker)
    claimed = world.paid_question(paid_at=utcnow())
    now = utcnow()
    with app.test_request_context():
        a = db.session.get(User, answerer)
        rules = account_deletion.settings.current(db.session)
        for q in (answered, claimed):
            question = db.session.get(Question, q)
            questions.offer(db.session, question, a, now, rules)
            questions.claim(db.session, question, a, now)
        questions.post_answer(db.session, db.session.get(Question, answered), a, "Yes.", now)
        db.session.commit()
        asker_plan = account_deletion.what_happens(db.session, db.session.get(User, asker), now)
        answerer_plan = account_deletion.what_happens(db.session, a, now)
    assert [(o.question_id, o.outcome) for o in asker_plan.as_asker] == [
        (waiting, "refunded"), (answered, "auto_accepted")]
    assert [(o.question_id, o.outcome) for o in answerer_plan.as_answerer] == [
        (claimed, "back_to_queue")]

    call(app, account_deletion.request_deletion, asker, PASSWORD, now)
    call(app, account_deletion.request_deletion, answerer, PASSWORD, now)
    assert (world.question(waiting).status, world.question(waiting).refund_status) == (
        "refunded", "requested")
    assert (world.question(claimed).status, world.question(claimed).answerer_id) == (
        "queued", None)
    assert world.question(answered).status == "answered"
    # The asker is gone, the answer is still accepted for them, and the answerer is paid.
    # The asker is erased; the answerer waits: their answer is not settled yet.
    assert run(app, account_deletion.erase_due, now + timedelta(days=15)) == 1
    with app.app_context():
        assert db.session.get(User, asker).deleted_at is not None
        assert db.session.get(User, answerer).deleted_at is None
    with app.app_context():
        days = account_deletion.settings.current(db.session).auto_accept_days
    run(app, release.auto_accept_due, now + timedelta(days=15 + days))
    assert world.question(answered).status == "closed"


def test_wrong_password_and_organizers_are_refused(app, world):
    asker, organizer = world.user("asker"), world.user("organizer")
    with pytest.raises(account_deletion.DeletionError) as refused:
        call(app, account_deletion.request_deletion, asker, "not my password", utcnow())
    assert refused.value.code == "wrong_password"
    with pytest.raises(account_deletion.DeletionError) as refused:
        call(app, account_deletion.request_deletion, organizer, PASSWORD, utcnow())
    assert refused.value.code == "organizer"
    with app.app_context():
        assert db.session.get(User, asker).deletion_requested_at is None


def test_the_pages_ask_for_the_password_and_sign_the_person_out(app, world, client):
    asker = world.user("asker")
    world.paid_question(paid_at=utcnow(), asker_id=asker)
    sign_in_as(client, app, asker)
    page = client.get("/account/delete")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Delete my account" in html
    assert "refunded in full" in html
    token = csrf_token(client, "/account/delete")
    wrong = client.post("/account/delete", data={"csrf_token": token, "password": "nope"})
    assert wrong.status_code == 400 and "password is not right" in wrong.get_data(as_text=True)
    done = client.post("/account/delete", data={"csrf_token": token, "password": PASSWORD})
    assert done.status_code == 200
    assert "signing in cancels" in done.get_data(as_text=True).lower()
    assert client.get("/account/delete").status_code == 302  # signed out
    with app.app_context():
        assert db.session.get(User, asker).deletion_requested_at is not None


def test_a_suspended_answerers_iban_is_not_left_in_the_audit_log(app, world):
    answerer, organizer = world.answerer(iban=IBAN_NO), world.user("organizer")
    with app.test_request_context():
        for suspended in (True, False):
            vetting.set_suspended(db.session, db.session.get(User, answerer),
                                  db.session.get(User, organizer), suspended, now=utcnow())
        db.session.commit()
    call(app, account_deletion.request_deletion, answerer, PASSWORD, utcnow())
    assert run(app, account_deletion.erase_due, utcnow() + timedelta(days=15)) == 1
    assert where_found(app, [IBAN_NO]) <= set(account_deletion.KEPT_FOR_BOOKKEEPING)


@pytest.mark.parametrize(("kind", "data"), [
    ("account_deletion_scheduled", {"erase_after": "2026-02-01T12:00:00+00:00",
                                    "grace_days": 14, "questions_refunded": 2}),
    ("account_deletion_cancelled", {}),
    ("account_deletion_waiting", {"reason": "owed", "currency": "EUR", "amount_cents": 2700,
                                  "expected_on": "2026-02-02", "held_because": "no_valid_iban"}),
    ("account_deletion_waiting", {"reason": "on_its_way", "currency": "EUR",
                                  "amount_cents": 2700, "expected_on": None,
                                  "held_because": None}),
    ("account_deletion_waiting", {"reason": "answer_pending", "currency": "EUR",
                                  "amount_cents": 0, "expected_on": None, "held_because": None}),
])
def test_the_messages_say_when_and_why_in_every_language(app, world, kind, data):
    kind_ = KINDS[kind]
    assert not kind_.optional  # about the account itself: it cannot be turned off
    with app.test_request_context():
        user = db.session.get(User, world.user())
        texts = {}
        for locale in LANGUAGES:
            user.locale = locale
            with force_locale(locale):
                content = kind_.describe({**data, "timezone": "Europe/Oslo"}, user)
            texts[locale] = " ".join([content.subject, *content.paragraphs])
            assert content.link_url.startswith("http")
    assert len(set(texts.values())) == len(LANGUAGES)  # each one translated
    english = texts["en"]
    if kind == "account_deletion_scheduled":
        assert "February 1, 2026" in english and "2 questions" in english
    if data.get("expected_on"):
        assert "27.00" in english and "February 2, 2026" in english
        assert "bank account" in english.lower() or "IBAN" in english


@pytest.mark.parametrize(("locale", "button", "deleted_user"), [
    ("en", "Delete my account", "Deleted user"), ("fi", "Poista tilini", "Poistettu käyttäjä"),
    ("nb", "Slett kontoen min", "Slettet bruker"), ("sv", "Radera mitt konto", "Raderad användare"),
    ("sl", "Izbriši moj račun", "Izbrisan uporabnik")])
def test_the_pages_read_in_five_languages(app, world, client, locale, button, deleted_user):
    answerer, organizer = world.answerer(iban=IBAN_NO), world.user("organizer")
    earn(app, world, answerer, 3000)
    run_batch(app, later())
    with app.test_request_context():
        db.session.get(User, answerer).locale = locale
        db.session.get(User, organizer).locale = locale
        db.session.commit()
    sign_in_as(client, app, answerer)
    html = client.get("/account/delete").get_data(as_text=True)
    assert f'lang="{locale}"' in html and button in html
    with app.test_request_context():
        account_deletion.erase(db.session, db.session.get(User, answerer), utcnow())
        db.session.commit()
    sign_in_as(client, app, organizer)
    assert deleted_user in client.get("/organizer/payouts").get_data(as_text=True)
