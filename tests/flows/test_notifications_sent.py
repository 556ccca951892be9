"""Messages of issue 17 item 3, each produced by the real service that makes the change (as the
other flow tests drive it), written in that change's transaction and sent through a real SMTP
server (``smtp_server``): exactly one message to the right person, with the right subject in
their language, money and security messages without ``List-Unsubscribe``, and nothing more
when the same event comes again (a retry, a webhook delivered twice)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.conftest import sign_in_as, stripe_client
from tests.flows.test_notifications import BASE, NIGHT, dispatch, offer_to, path_of, set_locale
from tests.flows.test_payouts import IBAN_NO, FakeTransfers, batch_payouts, earn, later, run_batch
from upss import payments, payouts, questions, release, sepa, stripe_money, vetting
from upss.extensions import db
from upss.models import AnswererApplication, Notification, PayoutBatch, Question, User
from upss.stripe_gateway import GatewayError, gateway


@pytest.fixture
def app_config(app_config, smtp_server):
    return {**app_config, "UPSS_SMTP_URL": smtp_server.url,
            "UPSS_MAIL_FROM": "UPSS <upss@upss.example>", "UPSS_BASE_URL": BASE}


def email_of(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).email


#: Later than every message the tests write (some services stamp them with the real clock).
LATER = datetime.now(UTC) + timedelta(days=30)


def sent(app, smtp_server, now=LATER) -> list:
    """Send what is due and return the messages the server got since the last call."""
    dispatch(app, now)
    with smtp_server.lock:
        raw, smtp_server.raw[:] = list(smtp_server.raw), []
    from email import policy
    from email.parser import BytesParser
    return [BytesParser(policy=policy.default).parsebytes(r) for r in raw]


def one_message(app, smtp_server, to: int, subject: str, *, money: bool, now=None):
    """Exactly one message went out, to ``to``, with ``subject``; a money (or security)
    message has no unsubscribe headers, an optional one has both."""
    messages = sent(app, smtp_server, now or LATER)
    assert [(m["To"].addresses[0].addr_spec, m["Subject"]) for m in messages] == [
        (email_of(app, to), subject)]
    [message] = messages
    if money:
        assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
        assert "List-Unsubscribe" not in message.get_body(("plain",)).get_content()
    else:
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return message


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def link_of(message) -> str:
    return path_of([line for line in text_of(message).splitlines()
                    if line.startswith(BASE)][0])


def answered(app, world, asker: int, answerer: int, *, real_stripe: bool = False) -> int:
    """A question of ``asker``, paid, offered to and answered by ``answerer``."""
    q = world.paid_question(paid_at=NIGHT, asker_id=asker, real_stripe=real_stripe)
    offer_to(app, q, answerer, NIGHT)
    world.act(questions.claim, q, answerer, NIGHT + timedelta(minutes=5))
    world.act(questions.post_answer, q, answerer, "Open the camera app.",
              NIGHT + timedelta(minutes=30))
    return q


# --- to askers -------------------------------------------------------------------------------

def test_payment_failed_once_in_norwegian_also_when_stripe_reports_it_again(
        app, world, smtp_server):
    asker = world.user("asker")
    set_locale(app, asker, "nb")
    with app.test_request_context():
        user = db.session.get(User, asker)
        q = questions.create_question(db.session, user, title="Skriver", body="B",
                                      language="nb", topic="other", price_cents=1250)
        with pytest.raises(payments.CardDeclined):
            payments.pay_with_test_card(db.session, q, user, "declined")
        db.session.commit()
        q_id, intent_id = q.id, q.payment_intent_id
    message = one_message(app, smtp_server, asker,
                          "Betalingen for «Skriver» gikk ikke gjennom", money=True)
    assert "12,50" in text_of(message) and "Ingen penger ble trukket" in text_of(message)
    assert link_of(message) == f"/questions/{q_id}"
    # Stripe reports the same failure (its webhook, or the look-up job): nothing more is sent.
    with app.test_request_context():
        intent = gateway().retrieve_payment_intent(intent_id)
        failed = dataclasses.replace(intent, status="requires_payment_method",
                                     failure_message="Your card was declined.")
        assert payments.apply_payment_intent(db.session, failed) == "applied: failure recorded"
        db.session.commit()
    assert sent(app, smtp_server) == []


def test_a_refund_when_the_asker_cancels_once_in_finnish(app, world, smtp_server):
    asker = world.user("asker")
    set_locale(app, asker, "fi")
    q = world.paid_question(paid_at=NIGHT, asker_id=asker, real_stripe=True)
    sent(app, smtp_server)  # the payment's own message
    assert world.act(payments.cancel, q, asker, NIGHT + timedelta(hours=1)) == "sent"
    message = one_message(app, smtp_server, asker,
                          "Olemme palauttaneet 10,00\xa0€ kysymyksestä ”Q”", money=True)
    assert "Peruit kysymyksen ennen kuin siihen vastattiin." in text_of(message)
    # Stripe's refund events for the same refund, and the refund job, send nothing more.
    pi = world.question(q).payment_intent_id
    assert world.run(stripe_money.sync_refunds, pi) == "ignored: refunds already posted"
    world.run(payments.resolve_unfinished_refunds, NIGHT + timedelta(hours=2))
    assert sent(app, smtp_server) == []


def test_a_refund_made_at_stripe_tells_the_asker_once(app, world, smtp_server):
    asker = world.user("asker")
    q = world.paid_question(paid_at=NIGHT, asker_id=asker, real_stripe=True)
    sent(app, smtp_server)
    pi = world.question(q).payment_intent_id
    stripe_client(app).v1.refunds.create(params={"payment_intent": pi})
    assert world.run(stripe_money.sync_refunds, pi).startswith("applied")
    message = one_message(app, smtp_server, asker, "We have refunded €10.00 for “Q”",
                          money=True)
    assert "through our payment provider, Stripe" in text_of(message)
    assert world.question(q).status == "refunded"
    assert world.run(stripe_money.sync_refunds, pi) == "ignored: refunds already posted"
    assert sent(app, smtp_server) == []


def test_a_partial_refund_at_stripe_after_settlement_tells_the_asker_once(
        app, world, smtp_server):
    asker, answerer = world.user("asker"), world.answerer()
    q = answered(app, world, asker, answerer, real_stripe=True)
    world.act(questions.accept, q, asker, NIGHT + timedelta(hours=1))
    sent(app, smtp_server)
    pi = world.question(q).payment_intent_id
    stripe_client(app).v1.refunds.create(params={"payment_intent": pi, "amount": 400})
    assert world.run(stripe_money.sync_refunds, pi).startswith("applied")
    one_message(app, smtp_server, asker, "We have refunded €4.00 for “Q”", money=True)
    assert world.run(stripe_money.sync_refunds, pi) == "ignored: refunds already posted"
    assert sent(app, smtp_server) == []


def test_a_clarification_reply_tells_the_asker_once_in_swedish(app, world, smtp_server,
                                                               client):
    asker, answerer = world.user("asker"), world.answerer()
    set_locale(app, asker, "sv")
    q = answered(app, world, asker, answerer)
    world.act(questions.ask_clarification, q, asker, "Which app?", NIGHT + timedelta(hours=1))
    sent(app, smtp_server)
    world.act(questions.reply_clarification, q, answerer, "The one called Camera.",
              NIGHT + timedelta(hours=2))
    message = one_message(app, smtp_server, asker,
                          "Den som svarade har förklarat mer: ”Q”", money=False)
    assert link_of(message) == f"/questions/{q}"
    sign_in_as(client, app, asker)
    assert "The one called Camera." in client.get(link_of(message)).get_data(as_text=True)
    with pytest.raises(questions.InvalidTransition):
        world.act(questions.reply_clarification, q, answerer, "Again.",
                  NIGHT + timedelta(hours=3))
    assert sent(app, smtp_server) == []
    with app.app_context():
        assert db.session.get(Question, q).status == "answered"


# --- to answerers ----------------------------------------------------------------------------

def test_a_clarification_question_tells_the_answerer_once_in_slovenian(app, world, smtp_server,
                                                                       client):
    asker, answerer = world.user("asker"), world.answerer()
    set_locale(app, answerer, "sl")
    q = answered(app, world, asker, answerer)
    sent(app, smtp_server)
    world.act(questions.ask_clarification, q, asker, "Which app?", NIGHT + timedelta(hours=1))
    message = one_message(app, smtp_server, answerer,
                          "Spraševalec ima vprašanje o vašem odgovoru: »Q«", money=False)
    assert link_of(message) == f"/answer/questions/{q}"
    sign_in_as(client, app, answerer)
    assert "Which app?" in client.get(link_of(message)).get_data(as_text=True)
    with pytest.raises(questions.InvalidTransition):
        world.act(questions.ask_clarification, q, asker, "Again?", NIGHT + timedelta(hours=2))
    assert sent(app, smtp_server) == []


def test_an_accepted_answer_tells_the_answerer_their_share_once(app, world, smtp_server):
    asker, answerer = world.user("asker"), world.answerer()
    q = answered(app, world, asker, answerer)
    sent(app, smtp_server)
    world.act(questions.accept, q, asker, NIGHT + timedelta(hours=1))
    message = one_message(app, smtp_server, answerer, "Your answer was accepted: “Q”",
                          money=True)
    assert "The asker accepted your answer." in text_of(message)
    assert "€9.00 has been added to your earnings." in text_of(message)
    assert link_of(message) == "/answer/earnings"
    with pytest.raises(questions.InvalidTransition):
        world.act(questions.accept, q, asker, NIGHT + timedelta(hours=2))
    assert sent(app, smtp_server) == []


def test_an_answer_accepted_automatically_tells_the_answerer_once(app, world, smtp_server):
    asker, answerer = world.user("asker"), world.answerer()
    answered(app, world, asker, answerer)
    sent(app, smtp_server)
    later = NIGHT + timedelta(days=4)
    assert world.run(release.auto_accept_due, later) == 1
    message = one_message(app, smtp_server, answerer, "Your answer was accepted: “Q”",
                          money=True)
    assert "accepted for them" in text_of(message)
    assert world.run(release.auto_accept_due, later + timedelta(minutes=15)) == 0
    assert sent(app, smtp_server) == []


def test_a_rating_tells_the_answerer_once(app, world, smtp_server):
    asker, answerer = world.user("asker"), world.answerer()
    q = answered(app, world, asker, answerer)
    world.act(questions.accept, q, asker, NIGHT + timedelta(hours=1))
    sent(app, smtp_server)
    world.act(questions.rate, q, asker, 4, "Clear and kind.")
    message = one_message(app, smtp_server, answerer, "Your answer was rated: “Q”",
                          money=False)
    assert "4 of 5 stars" in text_of(message) and "Clear and kind." in text_of(message)
    world.act(questions.rate, q, asker, 4, "Clear and kind.")  # sent twice: a double click
    assert sent(app, smtp_server) == []


def test_a_tip_tells_the_answerer_once(app, world, smtp_server):
    asker, answerer = world.user("asker"), world.answerer()
    q = answered(app, world, asker, answerer)
    world.act(questions.accept, q, asker, NIGHT + timedelta(hours=1))
    sent(app, smtp_server)
    with app.test_request_context():
        question = db.session.get(Question, q)
        tip = payments.start_tip(db.session, question, db.session.get(User, asker), 250)
        db.session.commit()
        payments.pay_tip_with_test_card(db.session, tip, "succeeds")
        db.session.commit()
        intent = gateway().retrieve_payment_intent(tip.payment_intent_id)
    for outcome in ("applied: tip paid", "ignored: tip already paid"):  # webhook, look-up
        with app.test_request_context():
            assert payments.apply_payment_intent(db.session, intent) == outcome
            db.session.commit()
    message = one_message(app, smtp_server, answerer, "You got a tip of €2.50: “Q”",
                          money=True)
    assert "€2.50 has been added to your earnings." in text_of(message)


def test_a_rejected_answer_and_the_decision_each_tell_the_answerer_once(
        app, world, smtp_server):
    asker, answerer, organizer = (world.user("asker"), world.answerer(),
                                  world.user("organizer"))
    set_locale(app, answerer, "nb")
    q = answered(app, world, asker, answerer)
    sent(app, smtp_server)
    world.act(questions.reject, q, asker, "It is wrong.", NIGHT + timedelta(hours=1))
    one_message(app, smtp_server, answerer, "Den som spurte, avviste svaret ditt: «Q»",
                money=True)
    world.act(questions.uphold_dispute, q, organizer, NIGHT + timedelta(hours=2))
    message = one_message(app, smtp_server, answerer, "Svaret ditt ble funnet rimelig: «Q»",
                          money=True)
    assert "9,00" in text_of(message)
    with pytest.raises(questions.InvalidTransition):
        world.act(questions.uphold_dispute, q, organizer, NIGHT + timedelta(hours=3))
    assert sent(app, smtp_server) == []


def test_a_dispute_decided_for_the_asker_tells_both_once(app, world, smtp_server):
    asker, answerer, organizer = (world.user("asker"), world.answerer(),
                                  world.user("organizer"))
    q = answered(app, world, asker, answerer, real_stripe=True)
    world.act(questions.reject, q, asker, "It is wrong.", NIGHT + timedelta(hours=1))
    sent(app, smtp_server)
    with app.test_request_context():
        assert payments.refund_question(
            db.session, db.session.get(Question, q), "refund_dispute",
            db.session.get(User, organizer), NIGHT + timedelta(hours=2)) == "sent"
        assert db.session.scalars(select(Notification.created_at).where(
            Notification.user_id == answerer, Notification.kind == "dispute_decided")).all() == [
            NIGHT + timedelta(hours=2)]  # written at the moment of the decision
    messages = sent(app, smtp_server)
    assert sorted((m["To"].addresses[0].addr_spec, m["Subject"]) for m in messages) == sorted([
        (email_of(app, asker), "We have refunded €10.00 for “Q”"),
        (email_of(app, answerer), "The asker got their money back: “Q”")])
    assert all(m["List-Unsubscribe"] is None for m in messages)
    refund = next(m for m in messages if m["To"].addresses[0].addr_spec == email_of(app, asker))
    assert "agreed with your complaint" in text_of(refund)
    assert world.run(stripe_money.sync_refunds, world.question(q).payment_intent_id) == (
        "ignored: refunds already posted")
    assert sent(app, smtp_server) == []


def test_suspension_and_reinstatement_each_tell_the_answerer_once(app, world, smtp_server):
    answerer, organizer = world.answerer(), world.user("organizer")
    set_locale(app, answerer, "fi")

    def suspend(suspended: bool) -> None:
        with app.app_context():
            vetting.set_suspended(db.session, db.session.get(User, answerer),
                                  db.session.get(User, organizer), suspended, "Rude", NIGHT)
            db.session.commit()

    suspend(True)
    message = one_message(app, smtp_server, answerer, "Vastaajatilisi on keskeytetty",
                          money=True)
    assert app.config["UPSS_CONTACT_EMAIL"] in text_of(message)
    suspend(True)  # the same decision again (a second tab)
    assert sent(app, smtp_server) == []
    suspend(False)
    one_message(app, smtp_server, answerer, "Voit taas vastata kysymyksiin", money=True)
    suspend(False)
    assert sent(app, smtp_server) == []


def decide(app, applicant: int, organizer: int, decision: str) -> None:
    with app.app_context():
        application = db.session.scalar(select(AnswererApplication).where(
            AnswererApplication.user_id == applicant))
        who = db.session.get(User, organizer)
        if decision == "approve":
            vetting.approve(db.session, application, who, method="Phone call",
                            verified_on=NIGHT.date(), note="", now=NIGHT)
        else:
            vetting.reject(db.session, application, who, reason="We need answerers in Sami.",
                           now=NIGHT)
        db.session.commit()


@pytest.mark.parametrize("method", ["connect", "sepa"])
def test_an_approved_application_tells_the_applicant_once(app, world, smtp_server, client,
                                                          method):
    extra = {"iban": "FI21 1234 5600 0007 85", "account_holder": "Aino"} if (
        method == "sepa") else {}
    applicant = world.applicant(now=NIGHT, payout_method=method, **extra)
    organizer = world.user("organizer")
    set_locale(app, applicant, "sv")
    decide(app, applicant, organizer, "approve")
    message = one_message(app, smtp_server, applicant, "Du är nu svarare hos UPSS",
                          money=True)
    if method == "connect":  # straight to where Stripe payouts are set up
        assert link_of(message) == "/answer/earnings"
        assert "Stripe" in text_of(message)
    else:
        assert link_of(message) == "/answer/queue"
        assert "Stripe" not in text_of(message)
    sign_in_as(client, app, applicant)
    assert client.get(link_of(message)).status_code == 200
    with pytest.raises(vetting.VettingError):
        decide(app, applicant, organizer, "approve")
    assert sent(app, smtp_server) == []


def test_a_rejected_application_tells_the_applicant_why_once(app, world, smtp_server,
                                                              client):
    applicant, organizer = world.applicant(now=NIGHT), world.user("organizer")
    decide(app, applicant, organizer, "reject")
    message = one_message(app, smtp_server, applicant,
                          "Your application to answer was not approved", money=True)
    assert "We need answerers in Sami." in text_of(message)
    assert link_of(message) == "/answer/application"
    sign_in_as(client, app, applicant)
    assert "We need answerers in Sami." in client.get(link_of(message)).get_data(as_text=True)
    with pytest.raises(vetting.VettingError):
        decide(app, applicant, organizer, "reject")
    assert sent(app, smtp_server) == []


# --- payouts to answerers --------------------------------------------------------------------

@pytest.fixture
def transfers(app, monkeypatch) -> FakeTransfers:
    fake = FakeTransfers()
    monkeypatch.setattr(app.extensions["upss_stripe"], "create_transfer", fake)
    return fake


def connect_answerer(world) -> int:
    return world.answerer(payout_method="connect", stripe_account_id="acct_1Answerer",
                          connect_payouts_enabled=True)


def test_a_connect_payout_sent_tells_the_answerer_once(app, world, smtp_server, transfers,
                                                       client):
    answerer = connect_answerer(world)
    earn(app, world, answerer, 2500)
    sent(app, smtp_server)
    now = later()
    [payout] = batch_payouts(app, run_batch(app, now)).values()
    message = one_message(app, smtp_server, answerer, "We have paid you €22.50", money=True)
    assert "to your Stripe account on" in text_of(message) and str(now.year) in text_of(message)
    assert link_of(message) == f"/answer/payouts/{payout.id}"
    sign_in_as(client, app, answerer)
    assert "22.50" in client.get(link_of(message)).get_data(as_text=True)
    assert run_batch(app, now + timedelta(days=7)) is None
    world.run(payouts.resolve_unfinished, now + timedelta(hours=1))
    assert sent(app, smtp_server) == []


def test_a_refused_payout_and_the_hold_after_it_each_tell_the_answerer_once_in_swedish(
        app, world, smtp_server, transfers):
    answerer = connect_answerer(world)
    set_locale(app, answerer, "sv")
    earn(app, world, answerer, 2000)
    sent(app, smtp_server)
    transfers.fail_with = GatewayError("No such destination", http_status=400)
    now = later()
    run_batch(app, now)
    message = one_message(app, smtp_server, answerer,
                          "Utbetalningen på 18,00\xa0€ gick inte igenom", money=True)
    assert text_of(message).splitlines()[2].startswith("Orsak: ")
    assert "No such destination" not in text_of(message), "Stripe's detail is the organizer's"
    # The next batches find the money owed again but paused: told once that it waits.
    transfers.fail_with = None
    assert run_batch(app, now + timedelta(days=1)) is None
    held = one_message(app, smtp_server, answerer, "Utbetalningen på 18,00\xa0€ väntar",
                       money=True)
    assert link_of(held) == "/answer/earnings"
    assert run_batch(app, now + timedelta(days=2)) is None
    assert sent(app, smtp_server) == []


def test_a_payout_held_tells_why_once_per_reason(app, world, smtp_server):
    answerer = world.answerer(payout_method="connect")
    earn(app, world, answerer, 2000)
    sent(app, smtp_server)
    for days in (15, 22):  # two weekly batches: told once
        assert run_batch(app, later(days)) is None
    message = one_message(app, smtp_server, answerer, "Your payout of €18.00 is waiting",
                          money=True)
    assert "Why: Payouts through Stripe are not set up yet." in text_of(message)


def test_a_payout_without_a_clear_answer_then_found_tells_the_answerer_each_once_in_finnish(
        app, world, smtp_server, transfers):
    answerer = connect_answerer(world)
    set_locale(app, answerer, "fi")
    earn(app, world, answerer, 2000)
    sent(app, smtp_server)
    transfers.fail_with = GatewayError("timed out", outcome_unknown=True)
    now = later()
    run_batch(app, now)
    one_message(app, smtp_server, answerer, "Maksua 18,00\xa0€ sinulle tarkistetaan",
                money=True)
    # Asked again, still no answer: nothing more is written.
    world.run(payouts.resolve_unfinished, now + timedelta(minutes=5))
    assert sent(app, smtp_server) == []
    transfers.fail_with = None
    assert world.run(payouts.resolve_unfinished, now + timedelta(minutes=10)) == "1 resent: sent"
    one_message(app, smtp_server, answerer, "Olemme maksaneet sinulle 18,00\xa0€", money=True)
    world.run(payouts.resolve_unfinished, now + timedelta(minutes=15))
    assert sent(app, smtp_server) == []


def test_a_sepa_payout_sent_and_returned_tell_the_answerer_once_each_in_slovenian(
        app, world, smtp_server):
    answerer, organizer = world.answerer(iban=IBAN_NO), world.user("organizer")
    set_locale(app, answerer, "sl")
    earn(app, world, answerer, 2000)
    batch_id = run_batch(app, later())
    assert [m["Subject"] for m in sent(app, smtp_server)
            if "18,00" in m["Subject"]] == [], "in the bank file: not sent yet"

    def mark(fn, *args) -> None:
        with app.app_context():
            batch = db.session.get(PayoutBatch, batch_id)
            target = batch if fn is sepa.mark_file_sent else batch.payouts[0]
            fn(db.session, target, db.session.get(User, organizer), *args)
            db.session.commit()

    mark(sepa.mark_file_sent, later(16))
    message = one_message(app, smtp_server, answerer, "Izplačali smo vam 18,00\xa0€",
                          money=True)
    assert "bančni račun" in text_of(message)
    mark(sepa.mark_file_sent, later(17))
    assert sent(app, smtp_server) == []
    mark(sepa.mark_payout_returned, "AC04 account closed", later(18))
    message = one_message(app, smtp_server, answerer, "Izplačilo 18,00\xa0€ ni uspelo",
                          money=True)
    assert "AC04" not in text_of(message)
    mark(sepa.mark_payout_returned, "again", later(19))
    assert sent(app, smtp_server) == []


def test_a_card_dispute_tells_each_organizer_once(app, world, smtp_server, localstripe_url):
    """A card dispute opened at Stripe (its webhook delivered ten times, in any order): each
    organizer gets one message with the amount and the evidence deadline, which cannot be
    turned off; the asker and the answerer get nothing."""
    from tests.conftest import serving
    from tests.flows.test_money_at_stripe import control, deliver, paid, wait_for

    organizers = [world.user("organizer"), world.user("organizer")]
    with serving(app) as base:
        q, pi = paid(app, world)
        sent(app, smtp_server)  # the payment's own message
        control(app, "/_upss/disputes", {"payment_intent": pi, "inquiry": True})
        assert set(deliver(app, base, wait_for(app, "charge.dispute.created"))) == {200}
    messages = sent(app, smtp_server)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(
        email_of(app, o) for o in organizers)
    for message in messages:
        assert message["Subject"] == f"A card payment was disputed (question {q})"
        assert message["List-Unsubscribe"] is None
        body = text_of(message)
        assert "€12.50" in body and "Send your evidence to Stripe before" in body
        assert link_of(message) == "/organizer/reconciliation"
