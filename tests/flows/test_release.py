"""Release, expiry, refunds and settlement, driven by job functions with an explicit ``now``."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from sqlalchemy import select

from upss import ledger, money, payments, questions, release
from upss.extensions import db
from upss.models import AnswerDraft, Offer

#: 23:00 in Oslo on a winter Wednesday (inside the default 22:00–07:00 window).
NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
#: 13:00 in Oslo the same day: outside any window.
DAY = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)


def offers(app) -> list[tuple[int, int, str]]:
    with app.app_context():
        return [(o.question_id, o.answerer_id, o.outcome) for o in db.session.scalars(
            select(Offer).order_by(Offer.id))]


def test_nothing_is_offered_outside_a_window(app, world):
    world.answerer()
    q = world.paid_question(paid_at=DAY - timedelta(hours=1))
    assert world.run(release.release_due_questions, DAY) == []
    assert world.question(q).status == "queued"


def test_queued_questions_are_offered_inside_a_window(app, world):
    a = world.answerer()
    q = world.paid_question(paid_at=DAY)
    made = world.run(release.release_due_questions, NIGHT)
    assert [(o.question_id, o.answerer_id) for o in made] == [(q, a)]
    question = world.question(q)
    assert (question.status, question.answerer_id) == ("offered", a)
    assert question.offer_expires_at == NIGHT + timedelta(hours=12)


def test_a_question_near_its_deadline_is_offered_outside_a_window(app, world):
    world.answerer()
    urgent = world.paid_question(paid_at=DAY - timedelta(hours=61))  # 11 h left
    relaxed = world.paid_question(paid_at=DAY - timedelta(hours=59))  # 13 h left
    made = world.run(release.release_due_questions, DAY)
    assert [o.question_id for o in made] == [urgent]
    assert world.question(relaxed).status == "queued"


def test_oldest_paid_first_and_at_most_max_per_run(app, world):
    world.answerer()
    ids = [world.paid_question(paid_at=DAY - timedelta(minutes=m)) for m in (1, 50, 20, 40,
                                                                            30, 10, 5)]
    made = world.run(release.release_due_questions, NIGHT)
    assert [o.question_id for o in made] == [ids[1], ids[3], ids[4], ids[2], ids[5]]
    assert len(world.run(release.release_due_questions, NIGHT + timedelta(minutes=5))) == 2


def test_release_now_ignores_the_window(app, world, runner):
    world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))  # release-now runs at the real time
    result = runner.invoke(args=["upss", "release-now"])
    assert result.exit_code == 0, result.output
    assert "1 question(s) offered" in result.output
    assert world.question(q).status == "offered"


def test_fair_rotation_thirty_questions_three_answerers(app, world):
    """30 questions over several release runs: each of 3 answerers gets 10 ± 1."""
    answerers = [world.answerer() for _ in range(3)]
    for n in range(30):
        world.paid_question(paid_at=DAY + timedelta(minutes=n))
    now = NIGHT
    while len(offers(app)) < 30:
        assert len(world.run(release.release_due_questions, now)) <= 5
        now += timedelta(minutes=10)
    counts = Counter(answerer for _, answerer, _ in offers(app))
    assert set(counts) == set(answerers)
    assert all(9 <= n <= 11 for n in counts.values()), counts


def test_least_earned_answerer_is_offered_first(app, world):
    rich, poor = world.answerer(), world.answerer()
    with app.app_context():
        ledger.post(db.session, "settle:old", "earlier work",
                    [("escrow:question:999", 5000), (f"payable:answerer:{rich}", -5000)], "EUR")
        ledger.post(db.session, "pay:old", "earlier payment",
                    [("stripe_balance", 5000), ("escrow:question:999", -5000)], "EUR")
        db.session.commit()
    q = world.paid_question(paid_at=DAY)
    assert world.run(release.release_due_questions, NIGHT)[0].answerer_id == poor
    assert world.question(q).answerer_id == poor


def test_language_mismatch_is_never_offered(app, world):
    finnish = world.answerer(languages="fi")
    both = world.answerer(languages="fi,sv")
    sv = [world.paid_question(paid_at=DAY, language="sv") for _ in range(3)]
    en = world.paid_question(paid_at=DAY, language="en")
    world.run(release.release_due_questions, NIGHT)
    assert {world.question(q).answerer_id for q in sv} == {both}
    assert world.question(en).status == "queued"
    assert finnish not in {a for _, a, _ in offers(app)}


def test_answerers_at_a_limit_are_skipped(app, world):
    busy = world.answerer(open_offer_limit=1)
    tired = world.answerer(daily_limit=0)
    away = world.answerer(available_from_minute=9 * 60, available_until_minute=17 * 60)
    free = world.answerer()
    ids = [world.paid_question(paid_at=DAY) for _ in range(4)]
    world.run(release.release_due_questions, NIGHT)
    got = Counter(world.question(q).answerer_id for q in ids)
    assert got == {free: 3, busy: 1}
    assert tired not in got and away not in got


def test_daily_limit_counts_offers_since_local_midnight(app, world):
    a = world.answerer(daily_limit=2)
    ids = [world.paid_question(paid_at=DAY) for _ in range(3)]
    world.run(release.release_due_questions, NIGHT)        # 23:00 Oslo: 2 offered
    assert sorted(world.question(q).status for q in ids) == ["offered", "offered", "queued"]
    for q in ids[:2]:
        world.act(questions.decline, q, a, NIGHT)
    assert world.run(release.release_due_questions, NIGHT + timedelta(minutes=30)) == []
    after_midnight = NIGHT + timedelta(hours=1, minutes=30)  # 00:30 Oslo, a new day
    assert [o.question_id for o in world.run(release.release_due_questions,
                                             after_midnight)] == [ids[2]]


def test_a_declined_question_never_returns_to_the_same_answerer(app, world):
    a, b = world.answerer(), world.answerer()
    q = world.paid_question(paid_at=DAY)
    first = world.run(release.release_due_questions, NIGHT)[0].answerer_id
    world.act(questions.decline, q, first, NIGHT)
    second = world.run(release.release_due_questions, NIGHT + timedelta(minutes=5))
    assert [o.answerer_id for o in second] == [b if first == a else a]
    world.act(questions.decline, q, second[0].answerer_id, NIGHT + timedelta(minutes=6))
    for minutes in (10, 60, 600):
        assert world.run(release.release_due_questions, NIGHT + timedelta(minutes=minutes)) == []
    assert world.question(q).status == "queued"


def test_offer_expiry_returns_the_question_and_prefers_someone_else(app, world):
    a, b = world.answerer(), world.answerer()
    q = world.paid_question(paid_at=DAY)
    first = world.run(release.release_due_questions, NIGHT)[0].answerer_id
    assert world.run(release.expire_offers, NIGHT + timedelta(hours=11, minutes=59)) == 0
    assert world.run(release.expire_offers, NIGHT + timedelta(hours=12)) == 1
    assert world.question(q).status == "queued"
    later = NIGHT + timedelta(days=1)
    assert world.run(release.release_due_questions, later)[0].answerer_id == (
        b if first == a else a)
    assert [outcome for _, _, outcome in offers(app)] == ["expired", "open"]


def test_lock_expiry_returns_the_question_and_the_draft_survives(app, world):
    a = world.answerer()
    q = world.paid_question(paid_at=DAY, price_cents=2000)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, q, a, NIGHT + timedelta(minutes=1))
    assert world.question(q).lock_expires_at == NIGHT + timedelta(hours=4, minutes=1)
    world.act(questions.save_draft, q, a, "First, open the camera app", NIGHT)
    assert world.run(release.expire_locks, NIGHT + timedelta(hours=4)) == 0
    assert world.run(release.expire_locks, NIGHT + timedelta(hours=4, minutes=1)) == 1
    assert world.question(q).status == "queued"
    # Still typing after the lock ran out: the text is kept, not lost.
    world.act(questions.save_draft, q, a, "First, open the camera app. Then", NIGHT)
    with app.app_context(), pytest.raises(questions.NotYourOffer):
        from upss.models import Question, User
        try:
            questions.post_answer(db.session, db.session.get(Question, q),
                                  db.session.get(User, a), "First, open the camera app. Then tap.",
                                  NIGHT)
        finally:
            db.session.commit()  # as the answer page does when sending is refused
    with app.app_context():
        assert db.session.get(AnswerDraft, (q, a)).body == "First, open the camera app. Then tap."
    # Offered back to the same answerer, the draft is waiting.
    world.run(release.release_due_questions, NIGHT + timedelta(days=1))
    with app.app_context():
        from upss.models import Question, User
        question = db.session.get(Question, q)
        assert question.answerer_id == a
        assert questions.draft_for(db.session, question, db.session.get(User, a)).endswith(
            "Then tap.")


def test_large_questions_get_the_longer_lock(app, world):
    a = world.answerer()
    q = world.paid_question(paid_at=DAY, price_cents=10000)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, q, a, NIGHT)
    assert world.question(q).lock_expires_at == NIGHT + timedelta(hours=8)


def test_claiming_an_expired_or_foreign_offer_is_refused(app, world):
    a, b = world.answerer(), world.answerer()
    q = world.paid_question(paid_at=DAY)
    offered_to = world.run(release.release_due_questions, NIGHT)[0].answerer_id
    other = b if offered_to == a else a
    with pytest.raises(questions.NotYourOffer):
        world.act(questions.claim, q, other, NIGHT)
    with pytest.raises(questions.NotYourOffer):
        world.act(questions.claim, q, offered_to, NIGHT + timedelta(hours=12))
    world.act(questions.claim, q, offered_to, NIGHT + timedelta(hours=11))
    assert world.question(q).status == "claimed"


def test_deadline_refund_at_localstripe_and_in_the_ledger(app, world, asker_client):
    """An unanswered question at its deadline: refunded at Stripe, escrow 0, asker sees it."""
    q = world.paid_question(paid_at=DAY, price_cents=1500, real_stripe=True,
                            asker_id=asker_client.user_id)
    assert world.run(release.refund_overdue, DAY + timedelta(hours=71, minutes=59)) == 0
    assert world.run(release.refund_overdue, DAY + timedelta(hours=72)) == 1
    question = world.question(q)
    assert question.status == "refunded" and question.stripe_refund_id
    client = stripe.StripeClient(app.config["UPSS_STRIPE_SECRET_KEY"],
                                 base_addresses={"api": app.config["UPSS_LOCALSTRIPE_URL"]})
    refund = client.v1.refunds.retrieve(question.stripe_refund_id)
    assert (refund.amount, refund.payment_intent, refund.status) == (
        1500, question.payment_intent_id, "succeeded")
    with app.app_context():
        assert ledger.balance(db.session, f"escrow:question:{q}") == 0
        assert ledger.balance(db.session, "stripe_balance") == 0
    assert world.run(release.refund_overdue, DAY + timedelta(hours=80)) == 0
    assert "Refunded" in asker_client.get(f"/questions/{q}").get_data(as_text=True)


def test_deadline_refund_of_a_claimed_question(app, world):
    a = world.answerer()
    q = world.paid_question(paid_at=DAY, real_stripe=True)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, q, a, NIGHT)
    assert world.run(release.refund_overdue, DAY + timedelta(hours=72)) == 1
    assert world.question(q).status == "refunded"
    with pytest.raises(questions.InvalidTransition):
        world.act(questions.post_answer, q, a, "Too late", DAY + timedelta(hours=73))


def answered(world, price_cents=1000, **kw) -> tuple[int, int, int]:
    a = world.answerer()
    q = world.paid_question(paid_at=DAY, price_cents=price_cents, **kw)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, q, a, NIGHT)
    world.act(questions.post_answer, q, a, "Here is how.", NIGHT + timedelta(hours=1))
    return q, a, world.question(q).asker_id


def test_accept_splits_exactly_for_random_prices_and_rates(app, world):
    """Accept: payable = price − commission, commission += commission, escrow 0."""
    rng = random.Random(20261122)
    expected_payable, expected_commission = {}, 0
    for _ in range(12):
        price, bps = rng.randint(300, 10000), rng.randint(0, 10000)
        app.config["UPSS_COMMISSION_BPS"] = bps  # frozen on the question when paid
        q, a, asker = answered(world, price_cents=price)
        assert world.question(q).commission_bps == bps
        world.act(questions.accept, q, asker, NIGHT + timedelta(hours=2))
        payout, commission = money.split(price, bps)
        expected_payable[a] = payout
        expected_commission += commission
        with app.app_context():
            assert ledger.balance(db.session, f"escrow:question:{q}") == 0
            assert ledger.balance(db.session, f"payable:answerer:{a}") == -(price - commission)
            assert ledger.balance(db.session, "commission") == -expected_commission
    assert world.question(q).status == "closed"


def test_commission_is_frozen_when_paid(app, world):
    app.config["UPSS_COMMISSION_BPS"] = 1000
    q, a, asker = answered(world, price_cents=1000)
    app.config["UPSS_COMMISSION_BPS"] = 5000
    world.act(questions.accept, q, asker, NIGHT)
    with app.app_context():
        assert ledger.balance(db.session, f"payable:answerer:{a}") == -900


def test_auto_accept_after_three_days_settles(app, world):
    q, a, _ = answered(world)
    answered_at = NIGHT + timedelta(hours=1)
    assert world.run(release.auto_accept_due, answered_at + timedelta(days=3, seconds=-1)) == 0
    assert world.run(release.auto_accept_due, answered_at + timedelta(days=3)) == 1
    assert world.question(q).status == "closed"
    with app.app_context():
        assert ledger.balance(db.session, f"payable:answerer:{a}") == -900


def test_clarification_restarts_the_auto_accept_clock(app, world):
    q, a, asker = answered(world)
    world.act(questions.ask_clarification, q, asker, "Which button?", NIGHT + timedelta(days=1))
    assert world.run(release.auto_accept_due, NIGHT + timedelta(days=5)) == 0
    world.act(questions.reply_clarification, q, a, "The green one.", NIGHT + timedelta(days=2))
    assert world.run(release.auto_accept_due, NIGHT + timedelta(days=4)) == 0
    assert world.run(release.auto_accept_due, NIGHT + timedelta(days=5)) == 1


def test_dispute_uphold_settles_and_refund_refunds(app, world):
    organizer = world.user("organizer")
    q1, a1, asker1 = answered(world)
    q2, a2, asker2 = answered(world, real_stripe=True)
    world.act(questions.reject, q1, asker1, "It does not answer my question", NIGHT)
    world.act(questions.reject, q2, asker2, "Wrong language", NIGHT)
    assert world.question(q1).status == world.question(q2).status == "disputed"
    world.act(questions.uphold_dispute, q1, organizer, NIGHT)
    world.act(payments.refund_question, q2, None, "refund_dispute", None, NIGHT)
    assert (world.question(q1).status, world.question(q2).status) == ("closed", "refunded")
    with app.app_context():
        assert ledger.balance(db.session, f"payable:answerer:{a1}") == -900
        assert ledger.balance(db.session, f"payable:answerer:{a2}") == 0
        assert ledger.balance(db.session, f"escrow:question:{q2}") == 0


def test_rating_only_after_closing_and_only_1_to_5(app, world):
    q, a, asker = answered(world)
    with pytest.raises(questions.InvalidTransition):
        world.act(questions.rate, q, asker, 5, "")
    world.act(questions.accept, q, asker, NIGHT)
    for bad in (0, 6, "5"):
        with pytest.raises(questions.InvalidText):
            world.act(questions.rate, q, asker, bad, "")
    world.act(questions.rate, q, asker, 4, "Clear and kind")
    assert (world.question(q).rating, world.question(q).rating_comment) == (4, "Clear and kind")
