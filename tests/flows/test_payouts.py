"""Payout batches (Stripe Connect and SEPA files), IBAN checks and reconciliation with Stripe.

Settled money carries the real time it was posted (``LedgerTransaction.created_at``), so to make
it "old enough" the batch runs with a ``now`` some days in the future.
"""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - parses the files the code under test wrote
from datetime import UTC, datetime, timedelta

import pytest
import stripe
import xmlschema
from sqlalchemy import func, select

from tests.conftest import csrf_token, sign_in, stripe_client
from upss import ledger, payments, payouts, questions, reconciliation, sepa, settings
from upss.extensions import db
from upss.models import (
    AnswererProfile,
    AuditLog,
    LedgerAccount,
    LedgerTransaction,
    Notification,
    Payout,
    PayoutBatch,
    Question,
    User,
    utcnow,
)
from upss.stripe_gateway import GatewayError, StripeGateway, Transfer

DAY = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
NS = {"p": sepa.PAIN_001_NS}
IBAN_NO, IBAN_FI = "NO9386011117947", "FI2112345600000785"
IBAN_SE, IBAN_SI = "SE4550000000058398257466", "SI56263300012039086"


def later(days: int = 15) -> datetime:
    """A ``now`` far enough ahead that everything settled so far is past the dispute window."""
    return utcnow() + timedelta(days=days)


def earn(app, world, answerer: int, price_cents: int, real_stripe: bool = False) -> int:
    """A question paid, offered to ``answerer``, answered and accepted: the share is payable."""
    q = world.paid_question(paid_at=DAY, price_cents=price_cents, real_stripe=real_stripe)
    with app.test_request_context():
        question = db.session.get(Question, q)
        user = db.session.get(User, answerer)
        questions.offer(db.session, question, user, DAY, settings.current(db.session))
        questions.claim(db.session, question, user, DAY)
        questions.post_answer(db.session, question, user, "Here is how.", DAY)
        questions.accept(db.session, question, question.asker, DAY + timedelta(hours=1))
        db.session.commit()
    return q


def settled_at(app, question_id: int) -> datetime:
    """When the question's settlement was posted (real time)."""
    with app.app_context():
        return db.session.scalar(select(LedgerTransaction.created_at).where(
            LedgerTransaction.idempotency_key == f"settle:question:{question_id}"))


def run_batch(app, now: datetime, **kwargs) -> int | None:
    """Run a payout batch as the job does (phase 1 committed, then its transfers sent);
    returns the batch id."""
    with app.test_request_context():
        batch = payouts.run_batch(db.session, now, **kwargs)
        db.session.commit()
        if batch is None:
            return None
        payouts.send_transfers(db.session, now, batch.id)
        return batch.id


def batch_payouts(app, batch_id: int) -> dict[int, Payout]:
    """The batch's payouts by answerer id (detached, for reading)."""
    with app.app_context():
        found = db.session.scalars(select(Payout).where(Payout.batch_id == batch_id)).all()
        for payout in found:
            db.session.expunge(payout)
        return {p.answerer_id: p for p in found}


def two_in_one_sepa_batch(app, world, second_iban: str) -> tuple[int, int, int, dict]:
    """Answerer ``a`` (a Norwegian IBAN) earns 18.00 and ``b`` (``second_iban``) 27.00, both paid
    in one SEPA batch: (a, b, the batch's id, its payouts by answerer)."""
    a, b = world.answerer(iban=IBAN_NO), world.answerer(iban=second_iban)
    earn(app, world, a, 2000)
    earn(app, world, b, 3000)
    batch_id = run_batch(app, later())
    return a, b, batch_id, batch_payouts(app, batch_id)


def balance(app, account: str) -> int:
    with app.app_context():
        return ledger.balance(db.session, account)


def entries(app, key: str) -> dict[str, int]:
    """Account name -> signed cents of the ledger transaction ``key``."""
    with app.app_context():
        tx = db.session.scalar(select(LedgerTransaction).where(
            LedgerTransaction.idempotency_key == key))
        assert tx is not None, f"no ledger transaction {key}"
        return {e.account.name: e.amount_cents for e in tx.entries}


def ledger_state(app) -> tuple[int, list[tuple[str, int]]]:
    """How many transactions there are and every account balance."""
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(LedgerTransaction))
        return count, db.session.execute(select(LedgerAccount.name, LedgerAccount.balance_cents)
                                         .order_by(LedgerAccount.name)).all()


class FakeTransfers:
    """Stands in for ``StripeGateway.create_transfer``, recording each call (the local
    Stripe's own transfers are used by test_payouts_exactly_once.py)."""

    def __init__(self, fail_with: Exception | None = None):
        self.calls: list[dict] = []
        self.fail_with = fail_with

    def __call__(self, **kwargs) -> Transfer:
        self.calls.append(kwargs)
        if self.fail_with is not None:
            raise self.fail_with
        return Transfer(id=f"tr_fake_{len(self.calls)}", amount=kwargs["amount_cents"],
                        currency=kwargs["currency"], destination=kwargs["destination"],
                        transfer_group=kwargs["transfer_group"])


@pytest.fixture
def transfers(app, monkeypatch) -> FakeTransfers:
    fake = FakeTransfers()
    monkeypatch.setattr(app.extensions["upss_stripe"], "create_transfer", fake)
    return fake


def test_each_answerer_is_paid_exactly_what_they_earned_and_only_once(app, world, transfers):
    """Three answerers, two by SEPA and one by Connect, are each paid their exact share; a
    second run finds nobody due, creates nothing and leaves the ledger as it was."""
    a = world.answerer(payout_method="sepa", iban=IBAN_NO, account_holder="Kari Nordmann")
    b = world.answerer(payout_method="sepa", iban=IBAN_FI)
    c = world.answerer(payout_method="connect", stripe_account_id="acct_c",
                       connect_payouts_enabled=True)
    earn(app, world, a, 2000)   # 1800
    earn(app, world, a, 1500)   # 1350
    earn(app, world, b, 5000)   # 4500
    earn(app, world, c, 1234)   # commission (1234000 + 5000) // 10000 = 123 -> 1111
    now = later()
    with app.app_context():
        assert payouts.eligible_amounts(db.session, now) == {a: 3150, b: 4500, c: 1111}

    batch_id = run_batch(app, now)
    paid = batch_payouts(app, batch_id)
    assert {user: p.amount_cents for user, p in paid.items()} == {a: 3150, b: 4500, c: 1111}
    assert {user: (p.method, p.status) for user, p in paid.items()} == {
        a: ("sepa", "awaiting_bank"), b: ("sepa", "awaiting_bank"), c: ("connect", "sent")}
    for user in (a, b, c):
        assert balance(app, f"payable:answerer:{user}") == 0
    assert balance(app, "bank_clearing") == -(3150 + 4500)

    before = ledger_state(app)
    assert run_batch(app, now + timedelta(days=30)) is None
    assert ledger_state(app) == before
    assert len(transfers.calls) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PayoutBatch)) == 1
        assert db.session.scalar(select(func.count()).select_from(Payout)) == 3


def test_only_money_settled_fourteen_days_ago_and_at_least_ten_euros_is_paid(app, world):
    """Credits count once 14 days old (at the boundary included); under 10.00 EUR waits."""
    small, exact, old, new = (world.answerer(iban=IBAN_SE) for _ in range(4))
    earn(app, world, small, 1110)   # commission 111 -> 999: under the minimum
    earn(app, world, exact, 1111)   # commission 111 -> 1000: exactly the minimum
    q_old = earn(app, world, old, 2000)
    old_at = settled_at(app, q_old)
    time.sleep(0.01)
    earn(app, world, new, 2000)

    assert run_batch(app, utcnow() + timedelta(days=13)) is None
    with app.app_context():
        assert payouts.eligible_amounts(
            db.session, old_at + timedelta(days=14) - timedelta(microseconds=1)) == {
            exact: 1000}
        assert payouts.eligible_amounts(db.session, old_at + timedelta(days=14)) == {
            exact: 1000, old: 1800}
        assert payouts.eligible_amounts(db.session, later(), minimum_cents=999) == {
            small: 999, exact: 1000, old: 1800, new: 1800}

    batch_id = run_batch(app, old_at + timedelta(days=14))
    assert {u: p.amount_cents for u, p in batch_payouts(app, batch_id).items()} == {
        exact: 1000, old: 1800}
    assert balance(app, f"payable:answerer:{new}") == -1800
    assert balance(app, f"payable:answerer:{small}") == -999

    batch_id = run_batch(app, later())
    assert {u: p.amount_cents for u, p in batch_payouts(app, batch_id).items()} == {new: 1800}
    earn(app, world, small, 1000)   # 900 more: 1899 in all
    batch_id = run_batch(app, later())
    assert {u: p.amount_cents for u, p in batch_payouts(app, batch_id).items()} == {small: 1899}


def test_inactive_answerers_and_answerers_without_profile_are_not_paid(app, world):
    """Money stays payable while the answerer's profile is inactive or missing."""
    paused = world.answerer(iban=IBAN_NO)
    earn(app, world, paused, 3000)
    with app.app_context():
        db.session.get(AnswererProfile, paused).active = False
        db.session.commit()
    with app.app_context():
        ledger.post(db.session, "settle:test:orphan", "earnings of a user with no profile",
                    [("escrow:question:9999", 2000), ("payable:answerer:9999", -2000)], "EUR")
        ledger.post(db.session, "payment:test:orphan", "payment for it",
                    [("stripe_balance", 2000), ("escrow:question:9999", -2000)], "EUR")
        db.session.commit()
    assert run_batch(app, later()) is None
    with app.app_context():
        db.session.get(AnswererProfile, paused).active = True
        db.session.commit()
    batch_id = run_batch(app, later())
    assert {u: p.amount_cents for u, p in batch_payouts(app, batch_id).items()} == {
        paused: 2700}


def test_the_sepa_file_validates_and_its_total_equals_the_ledger_movement(app, world,
                                                                          transfers):
    """One pain.001.001.03 file per batch holds every SEPA payout and nothing else; it passes
    the XSD and its total is exactly what the batch moved into bank_clearing."""
    people = [world.answerer(iban=iban, account_holder=holder) for iban, holder in (
        ("no93 8601 1117 947", "Åse Østby"), (IBAN_FI, "Mikko Määttä"), (IBAN_SI, None))]
    connect = world.answerer(payout_method="connect", stripe_account_id="acct_x",
                             connect_payouts_enabled=True)
    for person, price in zip(people, (1999, 2500, 9999), strict=True):
        earn(app, world, person, price)
    earn(app, world, connect, 3000)
    now = later()
    batch_id = run_batch(app, now)
    paid = batch_payouts(app, batch_id)
    with app.app_context():
        xml = db.session.get(PayoutBatch, batch_id).sepa_xml
    assert xml

    sepa.validate_pain001(xml)
    moved = 0
    for payout in paid.values():
        if payout.method == "sepa":
            moved -= entries(app, f"payout:{payout.id}")["bank_clearing"]
    assert moved == sum(p.amount_cents for p in paid.values() if p.method == "sepa") > 0
    assert sepa.sepa_total_cents(xml) == moved

    root = ET.fromstring(xml.encode())  # noqa: S314
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=NS) == "3"
    assert root.findtext(".//p:ReqdExctnDt", namespaces=NS) == now.date().isoformat()
    assert root.findtext(".//p:DbtrAcct/p:Id/p:IBAN", namespaces=NS) == "NO9386011117947"
    rows = {tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS): (
        tx.findtext("p:Cdtr/p:Nm", namespaces=NS),
        tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS),
        tx.findtext("p:Amt/p:InstdAmt", namespaces=NS))
        for tx in root.iterfind(".//p:CdtTrfTxInf", NS)}
    first = paid[people[0]]
    assert rows[f"UPSS-PAYOUT-{first.id}"] == ("Ase Ostby", "NO9386011117947", "17.99")
    assert f"UPSS-PAYOUT-{paid[connect].id}" not in rows
    assert paid[people[2]].iban == IBAN_SI

    broken = xml.replace("<IBAN>NO9386011117947</IBAN>", "<IBAN>not an iban</IBAN>", 1)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        sepa.validate_pain001(broken)
    tampered = xml.replace(">17.99<", ">17.98<", 1)
    with pytest.raises(ValueError, match="control sum"):
        sepa.sepa_total_cents(tampered)


@pytest.mark.parametrize("text, expected", [
    ("NO93 8601 1117 947", IBAN_NO),
    ("fi21 1234 5600 0007 85", IBAN_FI),
    (" SE45 5000 0000 0583 9825 7466 ", IBAN_SE),
    ("SI56 2633 0001 2039 086", IBAN_SI),
])
def test_valid_ibans_are_normalised(text, expected):
    """IBANs from Norway, Finland, Sweden and Slovenia come back compact and upper-case."""
    assert sepa.validate_iban(text) == expected


@pytest.mark.parametrize("text", [
    "NO93 8601 1117 948",          # check digits broken
    "FI21 1234 5600 0007 8",       # one digit short
    "XX00 1234",                   # no such country
    "not an IBAN", "",
])
def test_invalid_ibans_are_refused(text):
    """A broken checksum, a wrong length or plain text is refused as InvalidIBAN."""
    with pytest.raises(sepa.InvalidIBAN):
        sepa.validate_iban(text)
    assert issubclass(sepa.InvalidIBAN, ValueError)


def test_a_connect_transfer_moves_payable_to_stripe_balance(app, world, transfers):
    """A Connect payout transfers under the key fixed when its row was committed (installation
    id + payout id, also its transfer_group), and posts payable → stripe_balance."""
    a = world.answerer(payout_method="connect", stripe_account_id="acct_1Answerer",
                       connect_payouts_enabled=True)
    earn(app, world, a, 2500)
    stripe_before = balance(app, "stripe_balance")
    payout = batch_payouts(app, run_batch(app, later()))[a]
    assert (payout.status, payout.stripe_transfer_id, payout.failure_reason) == (
        "sent", "tr_fake_1", None)
    key = payout.idempotency_key
    assert re.fullmatch(rf"upss-[0-9a-f]{{16}}:payout:{payout.id}", key), key
    assert transfers.calls == [{"amount_cents": 2250, "currency": "EUR",
                                "destination": "acct_1Answerer", "transfer_group": key,
                                "metadata": {"payout_id": payout.id, "answerer_id": a},
                                "idempotency_key": key}]
    assert entries(app, f"payout:{payout.id}") == {f"payable:answerer:{a}": 2250,
                                                   "stripe_balance": -2250}
    assert balance(app, "stripe_balance") == stripe_before - 2250
    assert balance(app, f"payable:answerer:{a}") == 0


def test_a_refused_transfer_is_reversed_once_and_the_answerer_paused(app, world, transfers):
    """Stripe refuses the transfer: the payout is failed with its reason, the ledger shows the
    posting and its reversal, the answerer is still owed, and payouts to them pause a week
    (not retried every batch); answerers who cannot be paid at all are held, with nothing
    posted."""
    refused = world.answerer(payout_method="connect", stripe_account_id="acct_gone",
                             connect_payouts_enabled=True)
    unset = world.answerer(payout_method="connect")
    details_needed = world.answerer(payout_method="connect", stripe_account_id="acct_new")
    bad_iban = world.answerer(payout_method="sepa", iban="NO9386011117948")
    for person in (refused, unset, details_needed, bad_iban):
        earn(app, world, person, 2000)
    transfers.fail_with = GatewayError("No such destination: 'acct_gone'", http_status=400)
    now = later()

    batch_id = run_batch(app, now)
    paid = batch_payouts(app, batch_id)
    assert {u: p.status for u, p in paid.items()} == {refused: "failed"}
    assert "No such destination" in paid[refused].failure_reason
    assert [call["destination"] for call in transfers.calls] == ["acct_gone"]
    payout = paid[refused]
    assert entries(app, f"payout:{payout.id}") == {f"payable:answerer:{refused}": 1800,
                                                   "stripe_balance": -1800}
    assert entries(app, f"payout:{payout.id}:reversal") == {
        f"payable:answerer:{refused}": -1800, "stripe_balance": 1800}
    with app.app_context():
        original, reversal = (db.session.scalar(select(LedgerTransaction).where(
            LedgerTransaction.idempotency_key == key)) for key in (
            f"payout:{payout.id}", f"payout:{payout.id}:reversal"))
        assert reversal.reverses_id == original.id
        assert payouts.holds(db.session, now, [refused, unset, details_needed, bad_iban]) == {
            refused: "paused_after_refusals", unset: "connect_not_set_up",
            details_needed: "connect_details_needed", bad_iban: "no_valid_iban"}
        profile = db.session.get(AnswererProfile, refused)
        assert (profile.payout_failures, profile.payouts_held_until) == (
            1, now + timedelta(days=7))
    for person in (refused, unset, details_needed, bad_iban):
        assert balance(app, f"payable:answerer:{person}") == -1800

    transfers.fail_with = None
    assert run_batch(app, now + timedelta(days=1)) is None  # paused: not tried again
    assert len(transfers.calls) == 1
    retry = batch_payouts(app, run_batch(app, now + timedelta(days=7)))
    assert retry[refused].status == "sent" and retry[refused].amount_cents == 1800
    assert set(retry) == {refused}
    assert balance(app, f"payable:answerer:{refused}") == 0
    with app.app_context():
        assert db.session.get(AnswererProfile, refused).payout_failures == 0


def test_each_refusal_in_a_row_doubles_the_pause(app, world, transfers):
    """One week, then two, then four: a failing answerer is tried less and less often."""
    a = world.answerer(payout_method="connect", stripe_account_id="acct_gone",
                       connect_payouts_enabled=True)
    earn(app, world, a, 2000)
    transfers.fail_with = GatewayError("refused", http_status=400)
    now = later()
    pauses = []
    for _ in range(3):
        assert run_batch(app, now) is not None
        with app.app_context():
            held_until = db.session.get(AnswererProfile, a).payouts_held_until
        pauses.append((held_until - now).days)
        now = held_until
    assert pauses == [7, 14, 28]


def test_marking_a_sepa_file_sent_is_idempotent(app, world):
    """Marking sent records who and when once; the SEPA payouts become sent; again: no change."""
    first_org, second_org = world.user("organizer"), world.user("organizer")
    people = [world.answerer(iban=IBAN_NO), world.answerer(iban=IBAN_FI)]
    for person in people:
        earn(app, world, person, 2000)
    batch_id = run_batch(app, later())
    before = ledger_state(app)
    t1, t2 = later(16), later(17)
    with app.app_context():
        batch = db.session.get(PayoutBatch, batch_id)
        assert sepa.mark_file_sent(db.session, batch, db.session.get(User, first_org),
                                   t1) == 2
        db.session.commit()
        assert sepa.mark_file_sent(db.session, batch, db.session.get(User, second_org),
                                   t2) == 0
        db.session.commit()
        batch = db.session.get(PayoutBatch, batch_id)
        assert (batch.sepa_marked_sent_at, batch.sepa_marked_sent_by_id) == (t1, first_org)
        assert [p.status for p in batch.payouts] == ["sent", "sent"]
    assert ledger_state(app) == before


def test_a_sepa_file_paid_by_the_bank_clears_bank_clearing_once(app, world):
    """Marked sent, then paid by the bank: what the file moved into bank_clearing leaves the
    organizer's bank account, once; a transfer the bank returns afterwards comes back into
    the bank account and is owed to the answerer again."""
    organizer = world.user("organizer")
    a, b = world.answerer(iban=IBAN_NO), world.answerer(iban=IBAN_SE)
    earn(app, world, a, 2000)
    earn(app, world, b, 3000)
    batch_id = run_batch(app, later())
    with app.app_context():
        batch = db.session.get(PayoutBatch, batch_id)
        user = db.session.get(User, organizer)
        with pytest.raises(sepa.SepaStateError):
            sepa.mark_file_settled(db.session, batch, user, later())
        sent_at = later()
        sepa.mark_file_sent(db.session, batch, user, sent_at)
        settled_at = later()
        assert sepa.mark_file_settled(db.session, batch, user, settled_at) == 1800 + 2700
        assert sepa.mark_file_settled(db.session, batch, user, later()) == 0
        assert (batch.sepa_settled_by_id, batch.sepa_settled_at) == (organizer, settled_at)
        db.session.commit()
    assert balance(app, "bank_clearing") == 0
    assert balance(app, "bank") == -(1800 + 2700)
    with app.app_context():
        returned = db.session.scalar(select(Payout).where(Payout.batch_id == batch_id,
                                                          Payout.answerer_id == a))
        returned_at = later()
        sepa.mark_payout_returned(db.session, returned, db.session.get(User, organizer),
                                  "AC04 account closed", returned_at)
        db.session.commit()
    assert balance(app, "bank") == -2700
    assert balance(app, f"payable:answerer:{a}") == -1800
    with app.app_context():  # each answerer is told at the moment of each mark
        told = db.session.execute(select(Notification.user_id, Notification.kind,
                                         Notification.created_at)
                                  .where(Notification.kind.like("payout%"))
                                  .order_by(Notification.id)).all()
    assert [tuple(row) for row in told] == [
        (a, "payout_sent", sent_at), (b, "payout_sent", sent_at),
        (a, "payout_failed", returned_at)]


def test_a_batch_without_a_sepa_file_cannot_be_marked_sent(app, world, transfers):
    """Only a batch with a SEPA file is given to the bank."""
    organizer = world.user("organizer")
    a = world.answerer(payout_method="connect", stripe_account_id="acct_a",
                       connect_payouts_enabled=True)
    earn(app, world, a, 2000)
    batch_id = run_batch(app, later())
    with app.app_context(), pytest.raises(sepa.SepaStateError):
        sepa.mark_file_sent(db.session, db.session.get(PayoutBatch, batch_id),
                            db.session.get(User, organizer), later())


def test_a_sepa_payout_the_bank_returns_is_reversed_and_paid_again(app, world):
    """The bank returns a transfer: the payout fails, the ledger reverses it (once), and the
    money is owed again at the first batch after a week's pause."""
    organizer = world.user("organizer")
    a, b = world.answerer(iban=IBAN_NO), world.answerer(iban=IBAN_SE)
    earn(app, world, a, 2000)
    last = earn(app, world, b, 3000)
    batch_id = run_batch(app, later())
    with app.app_context():
        batch = db.session.get(PayoutBatch, batch_id)
        sepa.mark_file_sent(db.session, batch, db.session.get(User, organizer), later())
        returned = db.session.scalar(select(Payout).where(Payout.batch_id == batch_id,
                                                          Payout.answerer_id == a))
        returned_at = later()
        user = db.session.get(User, organizer)
        assert sepa.mark_payout_returned(db.session, returned, user, "AC04 account closed",
                                         returned_at)
        db.session.commit()
        assert not sepa.mark_payout_returned(db.session, returned, user, "again", later(20))
        db.session.commit()
        assert (returned.status, returned.failure_reason) == ("failed", "AC04 account closed")
        returned_id = returned.id
    assert entries(app, f"payout:{returned_id}:reversal") == {
        f"payable:answerer:{a}": -1800, "bank_clearing": 1800}
    assert balance(app, f"payable:answerer:{a}") == -1800
    assert balance(app, "bank_clearing") == -2700
    assert last and run_batch(app, returned_at + timedelta(days=6)) is None
    again = batch_payouts(app, run_batch(app, returned_at + timedelta(days=7)))
    assert {u: (p.amount_cents, p.status) for u, p in again.items()} == {
        a: (1800, "awaiting_bank")}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_batches_pay_once(app, world):
    """Four batch runs at the same instant on PostgreSQL: one pays, the others find nothing."""
    people = [world.answerer(iban=IBAN_FI) for _ in range(3)]
    for person in people:
        earn(app, world, person, 2000)
    now = later()
    barrier = threading.Barrier(4, timeout=30)
    results: list[int | None] = []
    lock = threading.Lock()

    def run():
        barrier.wait()
        batch_id = run_batch(app, now)
        with lock:
            results.append(batch_id)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4 and sum(r is not None for r in results) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payout)) == 3
    for person in people:
        assert balance(app, f"payable:answerer:{person}") == 0


def paid_behind_our_back(client: stripe.StripeClient, amount: int) -> str:
    """A PaymentIntent created and confirmed at localstripe without the app knowing."""
    intent = client.v1.payment_intents.create(params={
        "amount": amount, "currency": "eur", "allowed_payment_method_types": ["card"]})
    client.v1.payment_intents.update(intent.id, params={"payment_method": "pm_card_visa"})
    client.v1.payment_intents.confirm(intent.id)
    return intent.id


def test_reconciliation_reports_mismatches_both_ways(app, world):
    """A payment Stripe has but the ledger lacks, a ledger payment Stripe never saw, and a
    refund made at Stripe without the ledger are each reported; matched ones are not."""
    client = stripe_client(app)
    asker = world.user("asker")
    matched = world.question(world.paid_question(paid_at=DAY, real_stripe=True, asker_id=asker))
    cancelled = world.paid_question(paid_at=DAY, real_stripe=True, asker_id=asker)
    world.act(payments.cancel, cancelled, asker, DAY)
    cancelled_q = world.question(cancelled)
    refunded_at_stripe = world.question(world.paid_question(paid_at=DAY, real_stripe=True))
    by_charge = world.question(world.paid_question(paid_at=DAY, real_stripe=True))
    stranger = paid_behind_our_back(client, 4321)
    refund = client.v1.refunds.create(params={
        "payment_intent": refunded_at_stripe.payment_intent_id})
    charge = client.v1.payment_intents.retrieve(by_charge.payment_intent_id).to_dict()[
        "latest_charge"]
    charge_refund = client.v1.refunds.create(params={
        "charge": charge["id"] if isinstance(charge, dict) else charge})
    with app.app_context():
        ledger.post(db.session, "payment:pi_doesnotexist", "a payment Stripe never saw",
                    [("stripe_balance", 700), ("escrow:question:9999", -700)], "EUR")
        ledger.post(db.session, "refund:test:pi_doesnotexist", "refunded again",
                    [("escrow:question:9999", 700), ("stripe_balance", -700)], "EUR")
        db.session.commit()

    with app.test_request_context():
        result = reconciliation.reconcile_full_history(db.session)

    def reported(items: list[str], needle: str) -> bool:
        return any(needle in item for item in items)

    assert reported(result.missing_in_ledger, stranger)
    assert not reported(result.missing_in_ledger, matched.payment_intent_id)
    assert not reported(result.missing_in_ledger, cancelled_q.payment_intent_id)
    assert reported(result.missing_at_stripe, "pi_doesnotexist")
    assert not reported(result.missing_at_stripe, matched.payment_intent_id)
    assert reported(result.refunds_missing_in_ledger, refund.id)
    assert reported(result.refunds_missing_in_ledger, f"question {refunded_at_stripe.id} ")
    assert reported(result.refunds_missing_in_ledger, charge_refund.id)
    assert not reported(result.refunds_missing_in_ledger, cancelled_q.stripe_refund_id)
    assert not result.ok


def test_gateway_lists_refunds_with_their_payment_intent_in_both_shapes(app, world):
    """localstripe leaves a refund made by charge without its PaymentIntent: the gateway
    looks it up through the charge."""
    client = stripe_client(app)
    intent = paid_behind_our_back(client, 1500)
    charge = client.v1.payment_intents.retrieve(intent).to_dict()["latest_charge"]
    by_charge = client.v1.refunds.create(params={"charge": charge["id"], "amount": 500})
    by_intent = client.v1.refunds.create(params={"payment_intent": intent, "amount": 1000})
    with app.app_context():
        gateway = app.extensions["upss_stripe"]
        listed = {r.id: r for r in gateway.list_refunds()}
        intents = {pi.id: pi for pi in gateway.list_payment_intents()}
    assert (listed[by_charge.id].payment_intent, listed[by_charge.id].amount) == (intent, 500)
    assert (listed[by_intent.id].payment_intent, listed[by_intent.id].currency) == (
        intent, "EUR")
    assert (intents[intent].status, intents[intent].amount) == ("succeeded", 1500)


def test_gateway_lists_follow_every_page():
    """Lists are read 100 at a time, each page starting after the last id of the one before."""

    class Pages:
        def __init__(self):
            self.params: list[dict] = []

        def list(self, params):
            self.params.append(params)
            start = 0 if "starting_after" not in params else int(
                params["starting_after"].removeprefix("pi_")) + 1
            ids = range(start, min(start + params["limit"], 205))
            return {"has_more": start + params["limit"] < 205, "data": [
                {"id": f"pi_{n}", "status": "succeeded", "amount": 100, "currency": "eur"}
                for n in ids]}

    gateway = StripeGateway("sk_test_x", "whsec_x", api_base="http://127.0.0.1:9")
    pages = Pages()
    gateway.client = type("Client", (), {"v1": type("V1", (), {"payment_intents": pages})})()
    found = gateway.list_payment_intents()
    assert [pi.id for pi in found] == [f"pi_{n}" for n in range(205)]
    assert pages.params == [{"limit": 100}, {"limit": 100, "starting_after": "pi_99"},
                            {"limit": 100, "starting_after": "pi_199"}]


def test_a_batch_rolled_back_before_its_commit_sends_nothing(app, world, transfers):
    """Phase 1 rolled back: no transfer was asked for, and the rerun pays once."""
    a = world.answerer(payout_method="connect", stripe_account_id="acct_1Answerer",
                       connect_payouts_enabled=True)
    earn(app, world, a, 2500)
    with app.app_context():
        payouts.run_batch(db.session, later())
        db.session.rollback()
    assert transfers.calls == []
    run_batch(app, later())
    assert [call["amount_cents"] for call in transfers.calls] == [2250]


# --- SEPA files: one batch's marks never touch another ---------------------------------------

def test_marking_one_sepa_batch_sent_or_settled_does_not_mark_another(app, world):
    """Two batches with SEPA payouts: marking the first file sent leaves the second batch's
    payouts awaiting the bank and its file unmarked; settling the first moves only its own
    money out of bank_clearing and leaves the second sent, unsettled."""
    organizer = world.user("organizer")
    a, b = world.answerer(iban=IBAN_NO), world.answerer(iban=IBAN_FI)
    earn(app, world, a, 2000)                  # 1800 in the first batch
    first = run_batch(app, later())
    earn(app, world, b, 3000)                  # 2700 in the second
    second = run_batch(app, later())
    assert first != second

    def state(batch_id):
        with app.app_context():
            batch = db.session.get(PayoutBatch, batch_id)
            return (batch.sepa_marked_sent_at, batch.sepa_settled_at,
                    sorted(p.status for p in batch.payouts))

    with app.app_context():
        user = db.session.get(User, organizer)
        assert sepa.mark_file_sent(db.session, db.session.get(PayoutBatch, first), user,
                                   later()) == 1
        db.session.commit()
    assert state(first)[0] is not None and state(first)[2] == ["sent"]
    assert state(second) == (None, None, ["awaiting_bank"])

    with app.app_context():
        user = db.session.get(User, organizer)
        sepa.mark_file_sent(db.session, db.session.get(PayoutBatch, second), user, later())
        db.session.commit()
        second_sent = state(second)
        assert sepa.mark_file_settled(db.session, db.session.get(PayoutBatch, first), user,
                                      later()) == 1800
        db.session.commit()
    assert state(first)[1] is not None
    assert state(second) == second_sent and second_sent[1:] == (None, ["sent"])
    assert balance(app, "bank_clearing") == -2700
    assert balance(app, "bank") == -1800
    with app.app_context():
        assert ledger.posted(db.session, f"sepa-settled:batch:{second}") is None


# --- the SEPA file is checked before it is stored --------------------------------------------

def test_a_batch_whose_sepa_file_fails_the_schema_pays_nothing(app, world, transfers):
    """The organizer's IBAN in the environment is broken: the file fails the pain.001 XSD,
    run_batch raises InvalidSepaFile, and after the rollback nothing was paid or stored."""
    a = world.answerer(iban=IBAN_NO)
    earn(app, world, a, 2000)
    app.config["UPSS_ORGANIZER_IBAN"] = "not an iban"
    before = ledger_state(app)
    with app.test_request_context():
        with pytest.raises(sepa.InvalidSepaFile, match="schema"):
            payouts.run_batch(db.session, later())
        db.session.rollback()
    assert ledger_state(app) == before
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PayoutBatch)) == 0


def test_a_sepa_file_whose_control_sum_differs_from_its_payouts_is_refused(app, world,
                                                                           monkeypatch):
    """A file whose amounts do not add up to the batch's SEPA payouts is not stored."""
    a = world.answerer(iban=IBAN_NO)
    earn(app, world, a, 2000)
    export = sepa.SepaTransfer.export

    def one_cent_more(self, *args, **kwargs):
        return export(self, *args, **kwargs).replace(b">18.00<", b">18.01<")

    monkeypatch.setattr(sepa.SepaTransfer, "export", one_cent_more)
    with app.test_request_context():
        with pytest.raises(sepa.InvalidSepaFile, match="does not add up|control sum"):
            payouts.run_batch(db.session, later())
        db.session.rollback()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PayoutBatch)) == 0


# --- the organizer marks a payment the bank returned -----------------------------------------

def test_the_organizer_marks_a_returned_payment_on_the_payouts_page(app, world, client):
    """Once a batch's file is marked sent, each of its SEPA payments has a "returned by the
    bank" form with a required reason; the mark fails the payout, reverses it, pauses the
    answerer and leaves an audit row. Not before the file is sent, not for another batch."""
    organizer = world.user("organizer")
    a, b, batch_id, paid = two_in_one_sepa_batch(app, world, IBAN_SE)
    with app.app_context():
        email = db.session.get(User, organizer).email
    sign_in(client, email, "correct horse 9")
    token = csrf_token(client, "/organizer/payouts")
    returned = f"/organizer/payouts/{batch_id}/returned/{paid[a].id}"

    page = client.get("/organizer/payouts").get_data(as_text=True)
    assert "Mark as returned by the bank" not in page
    assert client.post(returned, data={"csrf_token": token,
                                       f"returned-{paid[a].id}-reason": "AC04"}).status_code == 409
    assert client.post("/organizer/payouts/999/sent", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/organizer/payouts/{batch_id}/sent",
                       data={"csrf_token": token}).status_code == 302

    page = client.get("/organizer/payouts").get_data(as_text=True)
    assert page.count("Mark as returned by the bank") == 2
    assert f'for="returned-{paid[a].id}-reason"' in page
    assert client.post(f"/organizer/payouts/{batch_id + 1}/returned/{paid[a].id}",
                       data={"csrf_token": token}).status_code == 404

    empty = client.post(returned, data={"csrf_token": token, f"returned-{paid[a].id}-reason": ""})
    assert empty.status_code == 400
    text = empty.get_data(as_text=True)
    assert "There is a problem" in text and "Enter the reason the bank gave" in text
    assert f'href="#returned-{paid[a].id}-reason"' in text
    assert batch_payouts(app, batch_id)[a].status == "sent"

    done = client.post(returned, data={"csrf_token": token,
                                       f"returned-{paid[a].id}-reason": " AC04 account closed "},
                       follow_redirects=True)
    assert done.status_code == 200
    assert "is marked as returned by the bank" in done.get_data(as_text=True)
    after = batch_payouts(app, batch_id)
    assert (after[a].status, after[a].failure_reason) == ("failed", "AC04 account closed")
    assert after[b].status == "sent"
    assert entries(app, f"payout:{paid[a].id}:reversal") == {
        f"payable:answerer:{a}": -1800, "bank_clearing": 1800}
    with app.app_context():
        row = db.session.scalar(select(AuditLog).order_by(AuditLog.id.desc()))
        assert (row.action, row.target, row.actor_id) == (
            "mark SEPA payment returned", f"payout:{paid[a].id}", organizer)
        assert db.session.get(AnswererProfile, a).payouts_held_until is not None

    again = client.post(returned, data={"csrf_token": token,
                                        f"returned-{paid[a].id}-reason": "again"},
                        follow_redirects=True)
    assert "was already marked as returned" in again.get_data(as_text=True)
    assert client.get("/organizer/payouts").get_data(as_text=True).count(
        "Mark as returned by the bank") == 1
