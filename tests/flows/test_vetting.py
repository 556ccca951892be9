"""Vetting end to end, the audit log, role checks, and the yearly earnings ceiling."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.conftest import csrf_token, sign_in_as, submit
from upss import ledger, release
from upss.extensions import db
from upss.models import AnswererApplication, AnswererProfile, AuditLog, User

APPLICATION = {"basis": "age", "birth_year": "1950", "languages": ["fi", "sv"],
               "topics": ["health"], "available_hours": "08:00-20:00", "daily_limit": "3",
               "yearly_ceiling": "5000", "payout_method": "sepa",
               "iban": "FI21 1234 5600 0007 85", "account_holder": "Aino Virtanen"}


def test_vetting_flow_end_to_end(app, world, client):
    """Apply → organizer approves with how it was verified → the applicant gets offers."""
    applicant, organizer = world.user("asker"), world.user("organizer")
    sign_in_as(client, app, applicant)
    assert submit(client, "/answer/apply", APPLICATION).status_code == 302
    assert "The organizer will contact you" in client.get("/answer/application").get_data(
        as_text=True)
    assert client.get("/answer/queue").status_code == 403

    sign_in_as(client, app, organizer)
    page = client.get("/organizer/applications").get_data(as_text=True)
    assert "Asker" in page and "Waiting" in page
    detail = client.get("/organizer/applications/1").get_data(as_text=True)
    main = detail.split("<footer")[0]  # the footer's language choice also lists "Suomi"
    assert "FI2112345600000785" in main and "Suomi" in main
    token = csrf_token(client, "/organizer/applications/1")
    missing = client.post("/organizer/applications/1", data={
        "csrf_token": token, "decision": "approve", "a-method": "", "a-verified_on": "2026-11-20"})
    assert missing.status_code == 400 and "Say how you verified the eligibility" in (
        missing.get_data(as_text=True))
    approved = client.post("/organizer/applications/1", data={
        "csrf_token": token, "decision": "approve", "a-method": "Pension card seen in person",
        "a-verified_on": "2026-11-20", "a-note": "Met at the library"})
    assert approved.status_code == 302

    with app.app_context():
        user = db.session.get(User, applicant)
        profile = db.session.get(AnswererProfile, applicant)
        application = db.session.get(AnswererApplication, 1)
        assert user.is_answerer and profile.active
        assert (profile.languages, profile.iban, profile.yearly_ceiling_cents) == (
            "fi,sv", "FI2112345600000785", 500000)
        assert (profile.available_from_minute, profile.available_until_minute) == (480, 1200)
        assert (application.verification_method, str(application.verified_on),
                application.decided_by_id) == ("Pension card seen in person", "2026-11-20",
                                               organizer)
        log = db.session.scalars(select(AuditLog)).all()
        assert [(e.actor_id, e.action, e.target) for e in log] == [
            (organizer, "approve application", "application:1")]
        assert json.loads(log[0].before) == {"status": "pending"}
        assert json.loads(log[0].after)["verification_method"] == "Pension card seen in person"

    q = world.paid_question(paid_at=datetime(2026, 1, 14, 9, tzinfo=UTC), language="fi")
    made = world.run(release.release_due_questions, datetime(2026, 1, 14, 9, 30, tzinfo=UTC),
                     ignore_window=True)
    assert [(o.question_id, o.answerer_id) for o in made] == [(q, applicant)]


@pytest.mark.parametrize("overrides, message", [
    ({"iban": "FI21 1234 5600 0007 86"}, "Enter a valid IBAN"),
    ({"iban": ""}, "Enter your IBAN"),
    ({"birth_year": ""}, "Enter your year of birth"),
    ({"birth_year": "1990"}, "must be 65 or over this year"),
    ({"languages": []}, "Choose at least one language"),
    ({"available_hours": "mornings"}, "Write the hours like 08:00-20:00"),
    ({"basis": ""}, "Choose why you can answer for UPSS"),
])
def test_bad_applications_are_refused_and_nothing_is_stored(app, world, client, overrides,
                                                            message):
    sign_in_as(client, app, world.user("asker"))
    response = submit(client, "/answer/apply", {**APPLICATION, **overrides})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(AnswererApplication)).all() == []


def test_disability_basis_needs_no_birth_year_and_connect_needs_no_iban(app, world, client):
    sign_in_as(client, app, world.user("asker"))
    data = {**APPLICATION, "basis": "disability", "birth_year": "", "payout_method": "connect",
            "iban": "", "account_holder": ""}
    assert submit(client, "/answer/apply", data).status_code == 302


def test_reject_with_reason_then_suspend_and_reinstate(app, world, client):
    applicant, organizer = world.user("asker"), world.user("organizer")
    sign_in_as(client, app, applicant)
    submit(client, "/answer/apply", APPLICATION)
    sign_in_as(client, app, organizer)
    submit(client, "/organizer/applications/1", {"decision": "reject",
                                                 "r-reason": "We could not reach you"})
    sign_in_as(client, app, applicant)
    assert "We could not reach you" in client.get("/answer/application").get_data(as_text=True)

    answerer = world.answerer()
    sign_in_as(client, app, organizer)
    assert submit(client, f"/organizer/answerers/{answerer}/suspend", {},
                  form_url="/organizer/answerers").status_code == 302
    q = world.paid_question(paid_at=datetime.now(UTC))
    assert world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True) == []
    submit(client, f"/organizer/answerers/{answerer}/reinstate", {},
           form_url="/organizer/answerers")
    made = world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    assert [o.question_id for o in made] == [q]
    with app.app_context():
        actions = db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["reject application", "suspend answerer", "reinstate answerer"]
    assert "suspend answerer" in client.get("/organizer/audit-log").get_data(as_text=True)


def test_audit_log_cannot_be_edited(app, world):
    organizer = world.user("organizer")
    from upss import audit
    with app.app_context():
        audit.record(db.session, db.session.get(User, organizer), "x", "y", {}, {})
        db.session.commit()
        for statement in ("UPDATE audit_log SET action = 'z'", "DELETE FROM audit_log"):
            with pytest.raises(sa.exc.DatabaseError, match="append-only"):
                db.session.execute(sa.text(statement))
            db.session.rollback()


ORGANIZER_PAGES = ("/organizer/applications", "/organizer/applications/1",
                   "/organizer/answerers", "/organizer/disputes", "/organizer/settings",
                   "/organizer/ledger", "/organizer/ledger/accounts/stripe_balance",
                   "/organizer/ledger/entries.csv", "/organizer/payouts", "/organizer/payouts.csv",
                   "/organizer/reconciliation", "/organizer/traffic", "/organizer/audit-log")


def test_askers_and_answerers_get_403_on_every_organizer_page(app, world, client):
    sign_in_as(client, app, world.user("asker"))
    submit(client, "/answer/apply", APPLICATION)
    for user in (world.user("asker"), world.answerer()):
        sign_in_as(client, app, user)
        for url in ORGANIZER_PAGES:
            assert client.get(url).status_code == 403, url
        for url in ("/organizer/payouts/run", "/organizer/answerers/1/suspend",
                    "/organizer/applications/1"):
            assert submit(client, url, {"decision": "approve", "a-method": "x"},
                          form_url="/questions").status_code == 403, url


def test_an_answerer_cannot_see_another_answerers_payout(app, world, client):
    from upss.models import Payout, PayoutBatch
    a, b = world.answerer(), world.answerer()
    with app.app_context():
        batch = PayoutBatch(currency="EUR")
        db.session.add(batch)
        db.session.flush()
        db.session.add_all([
            Payout(batch_id=batch.id, answerer_id=a, amount_cents=1500, currency="EUR",
                   method="sepa", status="sent", iban="FI2112345600000785"),
            Payout(batch_id=batch.id, answerer_id=b, amount_cents=2500, currency="EUR",
                   method="sepa", status="sent", iban="NO9386011117947")])
        db.session.commit()
    sign_in_as(client, app, a)
    assert "€15.00" in client.get("/answer/payouts/1").get_data(as_text=True)
    assert client.get("/answer/payouts/2").status_code == 404
    earnings = client.get("/answer/earnings").get_data(as_text=True)
    assert "€15.00" in earnings and "€25.00" not in earnings


def test_the_yearly_ceiling_stops_offers(app, world):
    """An answerer whose earnings this year reached their ceiling gets no more offers."""
    capped = world.answerer(yearly_ceiling_cents=1800)
    free = world.answerer(open_offer_limit=3)  # full after the first three offers
    now = datetime.now(UTC)
    with app.app_context():
        ledger.post(db.session, "settle:earlier", "earlier answer",
                    [("escrow:question:900", 1800), (f"payable:answerer:{capped}", -1800)],
                    "EUR")
        ledger.post(db.session, "payment:earlier", "earlier payment",
                    [("stripe_balance", 1800), ("escrow:question:900", -1800)], "EUR")
        db.session.commit()
    ids = [world.paid_question(paid_at=now - timedelta(hours=1)) for _ in range(3)]
    world.run(release.release_due_questions, now, ignore_window=True)
    assert {world.question(q).answerer_id for q in ids} == {free}
    with app.app_context():
        # Room for the next question's 900 (its share of 1000) on top of the 1800 earned.
        db.session.get(AnswererProfile, capped).yearly_ceiling_cents = 2700
        db.session.commit()
    extra = world.paid_question(paid_at=now)
    world.run(release.release_due_questions, now, ignore_window=True)
    assert world.question(extra).answerer_id == capped
