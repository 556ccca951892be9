"""The organizer's audit pages through the test client: payouts twice, exports, earnings."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token, sign_in_as
from upss import ledger, questions, release
from upss.extensions import db
from upss.models import AnswererProfile, AuditLog


@pytest.fixture
def app_config(app_config):
    return {**app_config, "UPSS_PAYOUT_AFTER_DAYS": 0}


def earn(world, answerer, price_cents=2000):
    now = datetime.now(UTC)
    q = world.paid_question(paid_at=now - timedelta(hours=2), price_cents=price_cents)
    world.run(release.release_due_questions, now, ignore_window=True)
    world.act(questions.claim, q, answerer, now)
    world.act(questions.post_answer, q, answerer, "Answer", now)
    world.act(questions.accept, q, world.question(q).asker_id, now)


def test_payout_batch_from_the_page_pays_once_and_exports_add_up(app, world, client):
    organizer, answerer = world.user("organizer"), world.answerer()
    with app.app_context():
        profile = db.session.get(AnswererProfile, answerer)
        profile.iban, profile.account_holder = "SE4550000000058398257466", "Sven Berg"
        db.session.commit()
    earn(world, answerer, 2000)
    earn(world, answerer, 1000)
    sign_in_as(client, app, organizer)
    token = csrf_token(client, "/organizer/payouts")
    first = client.post("/organizer/payouts/run", data={"csrf_token": token},
                        follow_redirects=True).get_data(as_text=True)
    assert "Payout batch 1 is made" in first and "€27.00" in first
    second = client.post("/organizer/payouts/run", data={"csrf_token": token},
                         follow_redirects=True).get_data(as_text=True)
    assert "Nobody is due a payout right now" in second

    sepa = client.get("/organizer/payouts/1/sepa.xml")
    assert sepa.status_code == 200 and b"SE4550000000058398257466" in sepa.data
    rows = list(csv.DictReader(io.StringIO(client.get("/organizer/payouts.csv").get_data(
        as_text=True))))
    assert [(r["answerer_id"], r["amount_cents"], r["status"]) for r in rows] == [
        (str(answerer), "2700", "awaiting_bank")]
    entries = list(csv.DictReader(io.StringIO(client.get(
        "/organizer/ledger/entries.csv").get_data(as_text=True))))
    assert sum(int(r["amount_cents"]) for r in entries) == 0
    payable = sum(int(r["amount_cents"]) for r in entries
                  if r["account"] == f"payable:answerer:{answerer}")
    assert payable == 0  # 27.00 credited, 27.00 paid out

    for step, said in (("sent", "marked as sent to the bank"),
                       ("settled", "marked as paid by the bank")):
        page = client.post(f"/organizer/payouts/1/{step}", data={"csrf_token": token},
                           follow_redirects=True).get_data(as_text=True)
        assert said in page
    with app.app_context():
        assert [a.action for a in db.session.scalars(select(AuditLog).order_by(AuditLog.id))
                ][-2:] == ["mark SEPA file sent", "mark SEPA file settled"]
        assert ledger.balance(db.session, "bank_clearing") == 0
        assert ledger.balance(db.session, "bank") == -2700

    sign_in_as(client, app, answerer)
    page = client.get("/answer/earnings").get_data(as_text=True)
    assert "Owed to you" in page and "Bank transfer" not in page
    assert "€27.00" in page  # the payout in the list and the statement


def test_earnings_page_shows_owed_this_year_and_the_ceiling(app, world, client):
    answerer = world.answerer()
    earn(world, answerer, 3000)
    with app.app_context():  # lowered afterwards: no offer passes the ceiling (``release``)
        db.session.get(AnswererProfile, answerer).yearly_ceiling_cents = 2500
        db.session.commit()
    sign_in_as(client, app, answerer)
    page = client.get("/answer/earnings").get_data(as_text=True)
    assert "€27.00" in page and "of your limit of €25.00" in page
    assert "reached: no more questions are offered to you this year" in page
    assert "Next payout" in page
