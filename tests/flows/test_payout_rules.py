"""Payout rules pinned to whole results: batches, refusals, the look-up job and SEPA files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET  # noqa: S405 - parses the files the code under test wrote
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, update

from tests.conftest import detached, disable_ledger_guards, enable_ledger_guards
from tests.flows.test_payouts import (
    IBAN_FI,
    IBAN_NO,
    NS,
    FakeTransfers,
    balance,
    batch_payouts,
    earn,
    later,
    run_batch,
    two_in_one_sepa_batch,
)
from upss import ledger, payouts, reconciliation, sepa
from upss.extensions import db
from upss.models import (
    AnswererProfile,
    AuditLog,
    LedgerTransaction,
    Notification,
    Payout,
    PayoutBatch,
    User,
    utcnow,
)
from upss.stripe_gateway import GatewayError, Transfer

LOST = GatewayError("Stripe did not answer in time", outcome_unknown=True)


class FakeStripe(FakeTransfers):
    """``create_transfer`` as FakeTransfers, and ``find_transfers`` answering from ``found``
    (transfer group -> transfers, or an exception to raise; nothing by default)."""

    def __init__(self):
        super().__init__()
        self.found: dict[str, object] = {}
        self.looked_up: list[str] = []
        self.on_find = None

    def find(self, transfer_group: str):
        self.looked_up.append(transfer_group)
        if self.on_find is not None:
            self.on_find(transfer_group)
        answer = self.found.get(transfer_group, [])
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def stripe(app, monkeypatch) -> FakeStripe:
    fake = FakeStripe()
    gateway = app.extensions["upss_stripe"]
    monkeypatch.setattr(gateway, "create_transfer", fake)
    monkeypatch.setattr(gateway, "find_transfers", fake.find)
    return fake


def connect(world) -> int:
    return world.answerer(payout_method="connect", stripe_account_id="acct_x",
                          connect_payouts_enabled=True)


def posting(app, key: str) -> tuple[str, str | None, dict[str, int]] | None:
    """The ledger transaction ``key``: its description, the key it reverses and its entries."""
    with app.app_context():
        tx = ledger.posted(db.session, key)
        if tx is None:
            return None
        reverses = db.session.get(LedgerTransaction, tx.reverses_id) if tx.reverses_id else None
        return (tx.description, reverses.idempotency_key if reverses else None,
                {e.account.name: e.amount_cents for e in tx.entries})


def resolve(app, now) -> str | None:
    with app.test_request_context():
        return payouts.resolve_unfinished(db.session, now)


def payout_messages(app, user_id: int) -> list[tuple[str, str | None]]:
    """The payout messages written to ``user_id``, oldest first: (kind, reason code)."""
    with app.app_context():
        return [(n.kind, json.loads(n.data)["reason"]) for n in db.session.scalars(
            select(Notification).where(Notification.user_id == user_id,
                                       Notification.kind.like("payout%"))
            .order_by(Notification.id))]


# --- the organizer's "Run a payout batch now" ------------------------------------------------

def test_the_audited_batch_uses_the_configured_age_and_minimum_skips_the_organizer(app, world):
    """Paid by the settings (3 days, 5.00 EUR), not run_batch's defaults; the organizer who
    also answers is not in their own batch; one audit row names the batch and its total."""
    app.config.update(UPSS_PAYOUT_AFTER_DAYS=3, UPSS_PAYOUT_MINIMUM_CENTS=500)
    small = world.answerer(iban=IBAN_NO)
    organizer = world.answerer(iban=IBAN_FI)
    with app.app_context():
        db.session.get(User, organizer).is_organizer = True
        db.session.commit()
    earn(app, world, small, 1000)       # 900: under the default minimum
    earn(app, world, organizer, 2000)   # 1800, but not in their own batch
    now = utcnow() + timedelta(days=4)  # past 3 days, not past the default 14

    with app.test_request_context():
        user = db.session.get(User, organizer)
        batch = payouts.run_batch_audited(db.session, now, user)
        db.session.commit()
        batch_id = batch.id
        assert payouts.run_batch_audited(db.session, now, user) is None
        db.session.commit()
    paid = batch_payouts(app, batch_id)
    assert {u: (p.amount_cents, p.status) for u, p in paid.items()} == {
        small: (900, "awaiting_bank")}
    assert detached(app, PayoutBatch, batch_id).created_by_id == organizer
    with app.app_context():
        rows = [(r.actor_id, r.action, r.target, json.loads(r.before), json.loads(r.after))
                for r in db.session.scalars(select(AuditLog))]
    assert rows == [(organizer, "run payout batch", f"payout_batch:{batch_id}", {},
                     {"payouts": 1, "total_cents": 900})]


@pytest.mark.ledger_tampered
def test_a_batch_refused_by_the_ledger_check_names_its_first_three_problems(app, world):
    """Two answerers' settlements raised in the database: LedgerCheckFailed keeps every
    problem and its message (shown by the job's record) names the first three."""
    people = [world.answerer(iban=IBAN_NO), world.answerer(iban=IBAN_FI)]
    questions = [earn(app, world, person, 2000) for person in people]
    with app.app_context():
        settles = [ledger.posted(db.session, f"settle:question:{q}").id for q in questions]
        disable_ledger_guards(db.session)
        for tx in settles:
            db.session.execute(sa.text("UPDATE ledger_entry SET amount_cents = -9000 "
                                       "WHERE transaction_id = :t AND amount_cents = -1800"),
                               {"t": tx})
        db.session.commit()
        enable_ledger_guards(db.session)
    with app.test_request_context(), pytest.raises(payouts.LedgerCheckFailed) as refused:
        payouts.run_batch(db.session, later())
    first = [f"transaction {settles[0]} (settle:question:{questions[0]}) is unbalanced",
             f"transaction {settles[0]} (settle:question:{questions[0]}): content changed",
             f"transaction {settles[1]} (settle:question:{questions[1]}) is unbalanced",
             f"transaction {settles[1]} (settle:question:{questions[1]}): content changed"]
    assert str(refused.value) == "the ledger does not verify: " + "; ".join(first[:3])
    assert refused.value.problems[:4] == first
    assert sorted(refused.value.problems[4:]) == [
        f"account payable:answerer:{person}: cached balance -1800 but entries sum to -9000"
        for person in people]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(PayoutBatch)) == 0


def test_a_long_refusal_is_cut_to_fit_the_payout_and_its_reversal(app, world, stripe):
    """The failure is coded ``transfer_refused``; Stripe's refusal text is its detail (500
    characters at most) and goes into the reversal's description (255 at most)."""
    a = connect(world)
    earn(app, world, a, 2000)
    stripe.fail_with = GatewayError("x" * 600, http_status=400)
    now = later()
    payout = batch_payouts(app, run_batch(app, now))[a]
    reason = "Stripe refused the transfer: " + "x" * 600
    assert (payout.status, payout.failure_code, payout.failure_reason) == (
        "failed", "transfer_refused", "x" * 500)
    assert posting(app, f"payout:{payout.id}:reversal") == (
        f"Payout {payout.id} failed: {reason}"[:255], f"payout:{payout.id}",
        {f"payable:answerer:{a}": -1800, "stripe_balance": 1800})
    profile = detached(app, AnswererProfile, a)
    assert (profile.payout_failures, profile.payouts_held_until) == (1, now + timedelta(days=7))
    assert payout_messages(app, a) == [("payout_failed", "transfer_refused")]


def test_a_long_unclear_answer_is_cut_to_fit_the_payout(app, world, stripe):
    a = connect(world)
    earn(app, world, a, 2000)
    stripe.fail_with = GatewayError("y" * 600, outcome_unknown=True)
    payout = batch_payouts(app, run_batch(app, later()))[a]
    assert (payout.status, payout.failure_code, payout.failure_reason) == (
        "unknown", "no_clear_answer", "y" * 500)


def test_eligible_amounts_for_one_answerer_and_the_inactive_hold(app, world):
    a, b = world.answerer(iban=IBAN_NO), world.answerer(iban=IBAN_FI)
    earn(app, world, a, 2000)
    earn(app, world, b, 3000)
    with app.app_context():
        db.session.get(AnswererProfile, b).active = False
        db.session.commit()
    now = later()
    with app.app_context():
        assert payouts.eligible_amounts(db.session, now, answerer_id=a) == {a: 1800}
        assert payouts.eligible_amounts(db.session, now) == {a: 1800, b: 2700}
        assert payouts.holds(db.session, now, [a, b]) == {b: "inactive"}
        assert payouts.holds(db.session, now, []) == {}


def test_a_hold_is_told_once_until_the_answerer_is_paid_and_again_after(app, world):
    """No valid IBAN: the first batch tells the answerer why their money waits, the next one
    does not repeat it. Once they are paid, the same hold later is news again."""
    a = world.answerer()

    def set_iban(iban: str | None) -> None:
        with app.app_context():
            db.session.get(AnswererProfile, a).iban = iban
            db.session.commit()

    earn(app, world, a, 2000)
    assert run_batch(app, later(15)) is None
    assert run_batch(app, later(22)) is None
    assert payout_messages(app, a) == [("payout_held", "no_valid_iban")]
    set_iban(IBAN_NO)
    assert run_batch(app, later(29)) is not None
    set_iban(None)
    earn(app, world, a, 3000)
    assert run_batch(app, later(50)) is None
    assert payout_messages(app, a) == [("payout_held", "no_valid_iban")] * 2


def test_a_one_cent_debit_lowers_what_is_owed(app, world):
    """Every debit of the answerer's payable account counts, however small."""
    a = world.answerer(iban=IBAN_NO)
    earn(app, world, a, 2000)
    with app.app_context():
        ledger.post(db.session, "correction:1", "A one-cent correction",
                    [(f"payable:answerer:{a}", 1), ("stripe_balance", -1)], "EUR")
        db.session.commit()
        assert payouts.eligible_amounts(db.session, later(), answerer_id=a) == {a: 1799}


# --- the look-up job (resolve_unfinished) ----------------------------------------------------

def test_the_look_up_job_fails_payouts_stripe_never_made_once_their_key_expired(app, world,
                                                                                stripe):
    """24 hours after the batch (the key's lifetime, boundary included) a payout Stripe has
    no transfer for is not sent again: it is failed and reversed, so it is owed again; one
    whose look-up fails stays unknown. The job reports each outcome with its count."""
    people = [connect(world) for _ in range(3)]
    for person in people:
        earn(app, world, person, 2000)
    stripe.fail_with = LOST
    now = later()
    made = batch_payouts(app, run_batch(app, now))
    assert {p.status for p in made.values()} == {"unknown"}
    down = made[people[2]]
    stripe.found[down.idempotency_key] = GatewayError("Stripe is down", outcome_unknown=True)
    stripe.fail_with = None

    assert resolve(app, now + payouts.KEY_LIFETIME) == "2 not at Stripe: failed, 1 still unknown"
    assert len(stripe.calls) == 3  # nothing sent again
    after = batch_payouts(app, made[people[0]].batch_id)
    for person in people[:2]:
        payout = after[person]
        assert (payout.status, payout.failure_code, payout.failure_reason) == (
            "failed", "not_at_stripe", None)
        assert posting(app, f"payout:{payout.id}:reversal") == (
            f"Payout {payout.id} not made at Stripe", f"payout:{payout.id}",
            {f"payable:answerer:{person}": -1800, "stripe_balance": 1800})
        assert balance(app, f"payable:answerer:{person}") == -1800
        assert payout_messages(app, person)[-1] == ("payout_failed", "not_at_stripe")
    assert after[people[2]].status == "unknown"
    assert posting(app, f"payout:{down.id}:reversal") is None


def test_sending_a_batch_again_sends_neither_a_tried_payout_nor_another_batchs(app, world,
                                                                                stripe):
    """Two batches left ``sending``; in the first, one payout was tried (its process died
    during the call). Sending the first batch sends only its untried payout: the tried one is
    left to the look-up job, the other batch's to its own run."""
    first, second, other = (connect(world) for _ in range(3))
    for person in (first, second):
        earn(app, world, person, 2000)
    now = later()
    with app.test_request_context():
        batch_id = payouts.run_batch(db.session, now).id
        db.session.commit()
    earn(app, world, other, 2000)
    with app.test_request_context():
        payouts.run_batch(db.session, now + timedelta(days=8))
        tried = db.session.scalar(select(Payout).where(Payout.answerer_id == first))
        tried.attempts = 1
        db.session.commit()
        assert payouts.send_transfers(db.session, now, batch_id) == 1
    assert [call["metadata"]["answerer_id"] for call in stripe.calls] == [second]


def left_sending(app, world) -> tuple[int, datetime, Payout]:
    """A Connect answerer owed 1800 and a batch whose process died before sending: (the
    answerer, the batch's time, its payout, still ``sending``)."""
    a = connect(world)
    earn(app, world, a, 2000)
    now = later()
    with app.test_request_context():
        payouts.run_batch(db.session, now)
        db.session.commit()
    with app.app_context():
        payout = db.session.scalar(select(Payout))
        db.session.expunge(payout)
    return a, now, payout


def test_a_payout_left_sending_is_looked_up_from_two_minutes_and_sent_at_that_time(app, world,
                                                                                   stripe):
    """The process died before sending: the job leaves the payout alone for two minutes
    after its batch (boundary included), then finds nothing at Stripe and sends it, once."""
    _a, now, left = left_sending(app, world)
    assert (left.status, left.attempts, left.failure_reason, left.last_attempt_at) == (
        "sending", 0, None, now)
    assert resolve(app, now + payouts.STALE_SENDING - timedelta(microseconds=1)) is None
    assert stripe.looked_up == []
    resent_at = now + payouts.STALE_SENDING
    assert resolve(app, resent_at) == "1 resent: sent"
    with app.app_context():
        payout = db.session.scalar(select(Payout))
        assert (payout.status, payout.attempts, payout.last_attempt_at) == ("sent", 1, resent_at)
        assert [c["idempotency_key"] for c in stripe.calls] == [payout.idempotency_key]


def test_a_transfer_found_with_another_amount_leaves_the_payout_unknown(app, world, stripe):
    """The look-up finds a transfer that does not match: the payout stays unknown, coded
    ``amount_differs``, and its detail (500 characters at most) names Stripe's transfer and
    its amount (the payout's own is on the row)."""
    a = connect(world)
    earn(app, world, a, 2000)
    stripe.fail_with = LOST
    now = later()
    payout = batch_payouts(app, run_batch(app, now))[a]
    odd = "tr_" + "z" * 500
    stripe.found[payout.idempotency_key] = [Transfer(
        id=odd, amount=1799, currency="EUR", destination="acct_x",
        transfer_group=payout.idempotency_key)]
    assert resolve(app, now + timedelta(minutes=5)) == "1 found: unknown"
    after = detached(app, Payout, payout.id)
    assert (after.status, after.stripe_transfer_id, after.failure_code, after.failure_reason) == (
        "unknown", None, "amount_differs", f"{odd}: 17.99 EUR"[:500])


@pytest.mark.parametrize("amount, currency, shown", [
    (1799, "EUR", "17.99 EUR"),  # another amount
    (1800, "JPY", "1800 JPY"),  # another currency, shown in its own units (no cents)
])
def test_a_payout_left_sending_and_found_unlike_itself_tells_the_answerer_once(
        app, world, stripe, amount, currency, shown):
    """The process died while sending; the look-up finds a transfer that does not match:
    the payout becomes unknown and the answerer is told once that it is being checked, with
    the time it was sent and the reason. A later look-up that finds the same says nothing."""
    a, now, payout = left_sending(app, world)
    stripe.found[payout.idempotency_key] = [Transfer(
        id="tr_odd", amount=amount, currency=currency, destination="acct_x",
        transfer_group=payout.idempotency_key)]
    for minutes in (0, 10):
        assert resolve(app, now + payouts.STALE_SENDING + timedelta(minutes=minutes)) == (
            "1 found: unknown")
    after = detached(app, Payout, payout.id)
    assert (after.status, after.failure_code, after.failure_reason) == (
        "unknown", "amount_differs", f"tr_odd: {shown}")
    with app.app_context():
        told = [(n.kind, json.loads(n.data)) for n in db.session.scalars(
            select(Notification).where(Notification.user_id == a,
                                       Notification.kind.like("payout%")))]
    assert told == [("payout_unknown", {
        "payout_id": payout.id, "amount_cents": 1800, "currency": "EUR", "method": "connect",
        "at": now.isoformat(), "reason": "amount_differs"})]


def test_a_payout_settled_while_it_was_looked_up_is_left_alone(app, world, stripe):
    """Another run marked the payout sent during the look-up: the job changes nothing."""
    a = connect(world)
    earn(app, world, a, 2000)
    stripe.fail_with = LOST
    now = later()
    payout = batch_payouts(app, run_batch(app, now))[a]

    def settled_meanwhile(_group):
        with db.engine.begin() as conn:
            conn.execute(update(Payout).where(Payout.id == payout.id).values(status="sent"))

    stripe.on_find = settled_meanwhile
    assert resolve(app, now + timedelta(days=2)) == "1 already settled"
    assert detached(app, Payout, payout.id).status == "sent"
    assert posting(app, f"payout:{payout.id}:reversal") is None


# --- reconciliation reads the SEPA file ------------------------------------------------------

def test_reconciliation_reports_a_file_that_lost_an_end_to_end_id_or_an_amount(app, world):
    """A stored file edited by hand: the transfer without its end-to-end id counts as an
    unknown one, the transfer without its amount as zero."""
    a, b, batch_id, paid = two_in_one_sepa_batch(app, world, IBAN_FI)
    pa, pb = paid[a].id, paid[b].id
    with app.app_context():
        batch = db.session.get(PayoutBatch, batch_id)
        xml = batch.sepa_xml
        assert sepa.file_amounts(xml) == {f"UPSS-PAYOUT-{pa}": 1800, f"UPSS-PAYOUT-{pb}": 2700}
        damaged, lost_id = re.subn(rf"<EndToEndId>UPSS-PAYOUT-{pa}</EndToEndId>", "", xml)
        damaged, lost_amount = re.subn(r'<InstdAmt Ccy="EUR">27\.00</InstdAmt>', "", damaged)
        assert (lost_id, lost_amount) == (1, 1)
        assert sepa.file_amounts(damaged) == {"": 1800, f"UPSS-PAYOUT-{pb}": 0}
        batch.sepa_xml = damaged
        db.session.commit()
    with app.test_request_context():
        result = reconciliation.reconcile_full_history(db.session)
    assert result.sepa_differences == [
        f"payout {pa} (18.00 EUR) is missing from the file of batch {batch_id}",
        f"payout {pb} (27.00 EUR) is 0.00 EUR in the file of batch {batch_id}",
        f"the file of batch {batch_id} pays  (18.00 EUR), which is no payout of the batch",
    ]


# --- the SEPA file and the organizer's marks on it -------------------------------------------

def test_the_sepa_file_names_the_organizer_in_at_most_70_characters(app, world):
    app.config["UPSS_ORGANIZER_NAME"] = "Organizer " * 10
    a = world.answerer(iban=IBAN_NO)
    earn(app, world, a, 2000)
    batch_id = run_batch(app, later())
    with app.app_context():
        root = ET.fromstring(db.session.get(PayoutBatch, batch_id).sepa_xml.encode())  # noqa: S314
    name = " ".join(["Organizer"] * 7)
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:InitgPty/p:Nm", namespaces=NS) == name
    assert root.findtext(".//p:PmtInf/p:Dbtr/p:Nm", namespaces=NS) == name


def test_each_mark_on_a_sepa_file_leaves_its_whole_audit_row(app, world):
    """Sent twice, settled twice, two payments returned after settlement (one reason too long,
    one empty): the ledger and every audit row say exactly what happened."""
    organizer = world.user("organizer")
    a, b, batch_id, paid = two_in_one_sepa_batch(app, world, IBAN_FI)
    pa, pb = paid[a].id, paid[b].id
    sent, settled, returned = later(16), later(17), later(18)
    with app.app_context():
        user = db.session.get(User, organizer)
        for _ in range(2):
            batch = db.session.get(PayoutBatch, batch_id)
            sepa.mark_file_sent(db.session, batch, user, sent)
            sepa.mark_file_settled(db.session, batch, user, settled)
            db.session.commit()
        for payout_id, reason in ((pa, "R" * 600), (pb, "")):
            assert sepa.mark_payout_returned(db.session, db.session.get(Payout, payout_id), user,
                                             reason, returned)
        db.session.commit()
        rows = [(r.actor_id, r.action, r.target, json.loads(r.before), json.loads(r.after))
                for r in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]
    target = f"payout_batch:{batch_id}"
    assert rows == [
        (organizer, "mark SEPA file sent", target, {"sepa_marked_sent_at": None},
         {"sepa_marked_sent_at": str(sent), "payouts_sent": 2}),
        (organizer, "mark SEPA file settled", target, {},
         {"sepa_settled_at": str(settled), "total_cents": 4500}),
        (organizer, "mark SEPA file sent", target, {"sepa_marked_sent_at": str(sent)},
         {"sepa_marked_sent_at": str(sent), "payouts_sent": 0}),
        (organizer, "mark SEPA file settled", target, {},
         {"sepa_settled_at": str(settled), "total_cents": 0}),
        (organizer, "mark SEPA payment returned", f"payout:{pa}", {"status": "sent"},
         {"status": "failed", "failure_code": "returned_by_bank", "reason": "R" * 500}),
        (organizer, "mark SEPA payment returned", f"payout:{pb}", {"status": "sent"},
         {"status": "failed", "failure_code": "returned_by_bank", "reason": None}),
    ]
    assert posting(app, f"sepa-settled:batch:{batch_id}") == (
        f"SEPA file of batch {batch_id} paid by the bank", None,
        {"bank_clearing": 4500, "bank": -4500})
    assert posting(app, f"payout:{pa}:reversal") == (
        f"SEPA payout {pa} returned by the bank on {returned.date().isoformat()}", None,
        {"bank": 1800, f"payable:answerer:{a}": -1800})
    returned_without_words = detached(app, Payout, pb)
    assert (returned_without_words.failure_code, returned_without_words.failure_reason) == (
        "returned_by_bank", None)
