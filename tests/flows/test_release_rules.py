"""Release and offer rules that planted bugs slipped past: an offered question at its deadline,
the yearly ceiling, which offer a resolution closes, and the daily limit at local midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.flows.test_release import DAY, NIGHT, answered, offers
from upss import ledger, questions, release, vetting
from upss.extensions import db
from upss.models import AnswererProfile, Offer, Question, User


def earn(app, answerer: int, cents: int, at: datetime) -> None:
    """Credit ``answerer`` with ``cents`` of settled work at ``at`` (and the payment behind it)."""
    with app.app_context():
        escrow = f"escrow:question:{9000 + answerer}"
        ledger.post(db.session, f"payment:earlier:{answerer}:{at.isoformat()}", "earlier payment",
                    [("stripe_balance", cents), (escrow, -cents)], "EUR", now=at)
        ledger.post(db.session, f"settle:earlier:{answerer}:{at.isoformat()}", "earlier answer",
                    [(escrow, cents), (f"payable:answerer:{answerer}", -cents)], "EUR", now=at)
        db.session.commit()


def offered_to(app, question_id: int) -> int | None:
    """Who got the (only) offer of the question, if anyone."""
    with app.app_context():
        return db.session.scalar(sa.select(Offer.answerer_id).where(
            Offer.question_id == question_id))


# --- An offered (not claimed) question reaching its deadline ---------------------------------

def test_an_offered_question_at_its_deadline_is_refunded_and_its_offer_withdrawn(app, world):
    """Deadline passed while offered: refunded in full (like queued and claimed ones), the open
    offer ends ``withdrawn`` and the answerer can no longer pick it up."""
    a = world.answerer()
    q = world.paid_question(paid_at=DAY, real_stripe=True)
    deadline = DAY + timedelta(hours=72)
    world.run(release.release_due_questions, deadline - timedelta(hours=1))  # urgent: offered
    assert (world.question(q).status, world.question(q).offer_expires_at) == (
        "offered", deadline + timedelta(hours=11))  # the offer would outlive the deadline
    assert world.run(release.refund_overdue, deadline - timedelta(seconds=1)) == 0
    assert world.question(q).status == "offered"
    assert world.run(release.refund_overdue, deadline) == 1
    question = world.question(q)
    assert (question.status, question.refund_status, question.offer_expires_at) == (
        "refunded", "sent", None)
    assert offers(app) == [(q, a, "withdrawn")]
    with app.app_context():
        assert ledger.balance(db.session, f"escrow:question:{q}") == 0
    with pytest.raises(questions.InvalidTransition):
        world.act(questions.claim, q, a, deadline)


# --- The yearly earnings ceiling -------------------------------------------------------------

#: A summer day, half a year after 1 January: earnings in February are this year's, yet more
#: than 30 days old (so they do not count for the fair rotation).
SUMMER = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("ceiling, gets_it", [(1800, "other"), (2699, "other"),
                                              (2700, "capped"), (None, "capped")])
def test_the_yearly_ceiling_is_looked_up_even_for_the_least_earning_answerer(
        app, world, ceiling, gets_it):
    """``capped`` earned 1800 in February and nothing in the last 30 days, so the rotation
    puts them first; the question would pay them 900, so below a ceiling of 2700 they get no
    offer (2700 or none: they do)."""
    capped = world.answerer(yearly_ceiling_cents=ceiling)
    other = world.answerer()
    earn(app, capped, 1800, datetime(2026, 2, 10, 12, 0, tzinfo=UTC))
    earn(app, other, 500, SUMMER - timedelta(days=1))
    q = world.paid_question(paid_at=SUMMER - timedelta(hours=1))
    world.run(release.release_due_questions, SUMMER, ignore_window=True)
    assert offered_to(app, q) == {"capped": capped, "other": other}[gets_it]


@pytest.mark.parametrize("earned_at, gets_it", [
    (datetime(2025, 12, 31, 22, 59, 59, tzinfo=UTC), "capped"),  # 23:59:59 Oslo: last year
    (datetime(2025, 12, 31, 23, 0, 0, tzinfo=UTC), "other"),     # 00:00:00 Oslo: this year
])
def test_the_earnings_year_starts_at_local_midnight_of_1_january(app, world, earned_at, gets_it):
    """The ceiling counts from 1 January 00:00 in the organizer's timezone (Europe/Oslo), not
    UTC. ``other`` earned more in the last 30 days, so ``capped`` would be first."""
    capped = world.answerer(yearly_ceiling_cents=1800)
    other = world.answerer()
    now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
    earn(app, capped, 1800, earned_at)
    earn(app, other, 5000, now - timedelta(days=1))
    q = world.paid_question(paid_at=now - timedelta(hours=1))
    world.run(release.release_due_questions, now, ignore_window=True)
    assert offered_to(app, q) == {"capped": capped, "other": other}[gets_it]


# --- Resolving an offer closes that question's offer only ------------------------------------

def _decline(world, q, a):
    world.act(questions.decline, q, a, NIGHT + timedelta(hours=2))


def _claim(world, q, a):
    world.act(questions.claim, q, a, NIGHT + timedelta(hours=2))


def _expire(world, q, a):
    assert world.run(release.expire_offers, NIGHT + timedelta(hours=12)) == 1


def _refund_at_stripe(world, q, a):
    world.act(questions.refund_at_stripe, q, None, NIGHT + timedelta(hours=2))


def test_a_question_refunded_at_stripe_while_offered_keeps_no_offer(app, world):
    """Refunded at Stripe while offered: no offer expiry is left on the question (nothing
    would send it back to the queue) and the open offer is withdrawn at that moment."""
    a = world.answerer()
    q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    at = NIGHT + timedelta(hours=2)
    world.act(questions.refund_at_stripe, q, None, at)
    after = world.question(q)
    assert (after.status, after.offer_expires_at, after.closed_at) == ("refunded", None, at)
    with app.app_context():
        assert db.session.execute(sa.select(Offer.answerer_id, Offer.outcome, Offer.resolved_at)
                                  .where(Offer.question_id == q)).one() == (a, "withdrawn", at)


@pytest.mark.parametrize("resolve, outcome", [
    (_decline, "declined"), (_claim, "claimed"), (_expire, "expired"),
    (_refund_at_stripe, "withdrawn"),
], ids=["declined", "claimed", "expired", "refunded"])
def test_resolving_one_offer_leaves_the_answerers_other_offer_open(app, world, resolve,
                                                                    outcome):
    """One answerer holds two open offers; resolving the first closes that offer alone."""
    a = world.answerer()
    first = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    second = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT + timedelta(hours=1))  # expires an hour later
    assert offers(app) == [(first, a, "open"), (second, a, "open")]
    resolve(world, first, a)
    assert offers(app) == [(first, a, outcome), (second, a, "open")]
    assert (world.question(second).status, world.question(second).answerer_id) == ("offered", a)


# --- The daily limit at local midnight -------------------------------------------------------

def local(zone: str, *args) -> datetime:
    """A wall-clock moment in ``zone`` (January: no DST change near it), as UTC."""
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


#: The organizer's zone and one an hour ahead of it (the answerer's own midnight counts).
ZONES = ["Europe/Oslo", "Europe/Helsinki"]


def released_at(world, zone: str, *wall_clock) -> list[tuple[int, int]]:
    """Run the release job at a wall-clock moment in ``zone``: the (question, answerer) pairs
    it offered."""
    made = world.run(release.release_due_questions, local(zone, *wall_clock))
    return [(o.question_id, o.answerer_id) for o in made]


@pytest.mark.parametrize("zone", ZONES)
def test_an_offer_at_23_59_59_local_counts_for_the_day_before(app, world, zone):
    """Daily limit 1: an offer at 23:59:59 local leaves room for another at 00:00:00."""
    a = world.answerer(daily_limit=1, timezone=zone)
    first, second = (world.paid_question(paid_at=DAY) for _ in range(2))
    assert released_at(world, zone, 2026, 1, 14, 23, 59, 59) == [(first, a)]
    assert released_at(world, zone, 2026, 1, 15, 0, 0, 0) == [(second, a)]


@pytest.mark.parametrize("zone", ZONES)
def test_an_offer_at_00_00_00_local_counts_for_the_new_day(app, world, zone):
    """Daily limit 1: an offer at 00:00:00 local uses that whole day, up to 23:59:59."""
    a = world.answerer(daily_limit=1, timezone=zone)
    first, second = (world.paid_question(paid_at=DAY) for _ in range(2))
    assert released_at(world, zone, 2026, 1, 15, 0, 0, 0) == [(first, a)]
    assert released_at(world, zone, 2026, 1, 15, 23, 59, 59) == []
    assert released_at(world, zone, 2026, 1, 16, 0, 0, 0) == [(second, a)]


# --- Whose hours, and who is an answerer -----------------------------------------------------

def test_available_hours_are_read_in_the_answerers_own_timezone(app, world):
    """An answerer in Tokyo free 09:00–12:00 there: 01:00 UTC is 10:00 in Tokyo (offered),
    although 01:00 is outside those hours in UTC and in the organizer's Oslo."""
    tokyo = world.answerer(timezone="Asia/Tokyo", available_from_minute=9 * 60,
                           available_until_minute=12 * 60)
    q = world.paid_question(paid_at=DAY)
    assert released_at(world, "Asia/Tokyo", 2026, 1, 15, 8, 59, 0) == []
    assert released_at(world, "Asia/Tokyo", 2026, 1, 15, 10, 0, 0) == [(q, tokyo)]


def test_an_active_profile_without_the_answerer_role_gets_no_offer(app, world):
    """The role decides: a user whose answerer role was taken away (``is_answerer`` false)
    keeps an active profile row, yet gets no offers; one who has the role does."""
    former, current = world.answerer(), world.answerer()
    with app.app_context():
        db.session.get(User, former).is_answerer = False
        db.session.commit()
    ids = [world.paid_question(paid_at=DAY) for _ in range(2)]
    world.run(release.release_due_questions, NIGHT)
    assert {offered_to(app, q) for q in ids} == {current}


def test_each_offer_today_counts_once_toward_the_daily_limit(app, world):
    """Daily limit 2: one offer at 23:00 leaves room for exactly one more today."""
    a = world.answerer(daily_limit=2)
    first = world.paid_question(paid_at=DAY)
    assert released_at(world, "Europe/Oslo", 2026, 1, 14, 23, 0, 0) == [(first, a)]
    second, third = (world.paid_question(paid_at=DAY) for _ in range(2))
    offered = released_at(world, "Europe/Oslo", 2026, 1, 14, 23, 40, 0)
    assert len(offered) == 1 and offered[0][0] in (second, third) and offered[0][1] == a


def test_offers_of_a_suspended_answerer_do_not_disturb_the_release(app, world):
    """An answerer suspended after an offer today is no candidate; the release still offers the
    next question to the others (their offers are read only for candidates)."""
    gone, other, organizer = world.answerer(), world.answerer(), world.user("organizer")
    first = world.paid_question(paid_at=DAY)
    assert released_at(world, "Europe/Oslo", 2026, 1, 14, 23, 0, 0) == [(first, gone)]
    with app.app_context():
        vetting.set_suspended(db.session, db.session.get(User, gone),
                              db.session.get(User, organizer), True, "test",
                              now=local("Europe/Oslo", 2026, 1, 14, 23, 20, 0))
        db.session.commit()
    later_one = world.paid_question(paid_at=DAY)
    assert dict(released_at(world, "Europe/Oslo", 2026, 1, 14, 23, 40, 0))[later_one] == other


def test_claimed_work_counts_toward_the_open_offer_limit(app, world):
    """Open-offer limit 1: an answerer holding a claimed question gets no new offer."""
    a = world.answerer(open_offer_limit=1)
    first = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, first, a, NIGHT)
    second = world.paid_question(paid_at=DAY)
    assert world.run(release.release_due_questions, NIGHT + timedelta(minutes=10)) == []
    assert world.question(second).status == "queued"


def test_an_answerer_with_one_question_in_hand_takes_only_up_to_the_limit_in_a_run(
        app, world):
    """Open-offer limit 2, one claimed question in hand, three queued: one run offers them one
    more (each offer in the run counts on top of what they hold)."""
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 5
    a = world.answerer(open_offer_limit=2)
    held = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, held, a, NIGHT)
    queued = [world.paid_question(paid_at=DAY) for _ in range(3)]
    made = world.run(release.release_due_questions, NIGHT + timedelta(minutes=10))
    assert [(o.question_id, o.answerer_id) for o in made] == [(queued[0], a)]


def test_the_only_answerer_whose_offer_expired_is_offered_it_again(app, world):
    """Letting an offer expire is not declining it: with nobody else, it comes back to them."""
    a = world.answerer()
    q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    expired_at = world.question(q).offer_expires_at
    assert world.run(release.expire_offers, expired_at) == 1
    again = world.run(release.release_due_questions, expired_at + timedelta(minutes=1),
                      ignore_window=True)
    assert [(o.question_id, o.answerer_id) for o in again] == [(q, a)]


def test_another_answerers_refusal_does_not_stop_the_run(app, world):
    """``b`` declined the question and is suspended now (not a candidate); reading the
    refusals of the page skips theirs, and ``a`` gets the question."""
    a, b = world.answerer(), world.answerer()
    q = world.paid_question(paid_at=DAY)
    with app.app_context():
        db.session.get(AnswererProfile, a).active = False
        db.session.commit()
    assert [o.answerer_id for o in world.run(release.release_due_questions, NIGHT)] == [b]
    world.act(questions.decline, q, b, NIGHT + timedelta(minutes=1))
    with app.app_context():
        db.session.get(AnswererProfile, a).active = True
        db.session.get(AnswererProfile, b).active = False
        db.session.commit()
    made = world.run(release.release_due_questions, NIGHT + timedelta(minutes=5))
    assert [(o.question_id, o.answerer_id) for o in made] == [(q, a)]


def test_a_run_limit_of_zero_offers_nothing(app, world):
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 0
    world.answerer()
    q = world.paid_question(paid_at=DAY)
    assert world.run(release.release_due_questions, NIGHT) == []
    assert world.question(q).status == "queued"


def test_the_queue_is_read_page_after_page_in_paid_order(app, world, monkeypatch):
    """Pages of two: the first holds only the answerer's own questions (nothing they can
    take), so the run reads on, in (paid, id) order across equal and out-of-order payment
    times, and offers each question it can, once. Order: q5 (earliest), then q1, q2, q3, q6
    paid at the same moment, then q4; only q3 and q4 are someone else's."""
    monkeypatch.setattr(release, "QUEUE_PAGE", 2)
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = 5
    a, asker = world.answerer(), world.user("asker")
    t = DAY - timedelta(hours=4)
    own = {"asker_id": a}
    q1 = world.paid_question(paid_at=t + timedelta(hours=1), **own)
    q2 = world.paid_question(paid_at=t + timedelta(hours=1), **own)
    q3 = world.paid_question(paid_at=t + timedelta(hours=1), asker_id=asker)
    q4 = world.paid_question(paid_at=t + timedelta(hours=3), asker_id=asker)
    q5 = world.paid_question(paid_at=t, **own)
    q6 = world.paid_question(paid_at=t + timedelta(hours=1), **own)
    made = world.run(release.release_due_questions, NIGHT)
    assert [(o.question_id, o.answerer_id) for o in made] == [(q3, a), (q4, a)]
    assert {q: world.question(q).status for q in (q1, q2, q5, q6)} == dict.fromkeys(
        (q1, q2, q5, q6), "queued")


def test_only_questions_still_to_pay_their_answerer_count_toward_the_ceiling(app, world):
    """Ceiling 5000, 1800 earned on a closed question: a question worth 1800 to them still
    fits (3600), because the closed one counts once, as earned, not again as in progress."""
    q, a, asker = answered(world, price_cents=2000)
    world.act(questions.accept, q, asker, NIGHT + timedelta(hours=2))
    with app.app_context():
        db.session.get(AnswererProfile, a).yearly_ceiling_cents = 5000
        db.session.commit()
    new = world.paid_question(paid_at=DAY, price_cents=2000)
    made = world.run(release.release_due_questions, NIGHT + timedelta(hours=3))
    assert [(o.question_id, o.answerer_id) for o in made] == [(new, a)]


def test_a_held_question_counts_at_the_commission_it_was_paid_with(app, world):
    """Held: 2000 paid at 10 % (1800 to them). The commission is now 50 %; a new 2000 question
    is 1000 to them. Ceiling 2500: 1800 + 1000 does not fit (at today's rate the held one
    would count 1000 and it would)."""
    a = world.answerer(yearly_ceiling_cents=2500)
    held = world.paid_question(paid_at=DAY, price_cents=2000)
    assert [(o.question_id, o.answerer_id) for o in world.run(
        release.release_due_questions, NIGHT)] == [(held, a)]
    app.config["UPSS_COMMISSION_BPS"] = 5000
    new = world.paid_question(paid_at=DAY, price_cents=2000)
    assert world.run(release.release_due_questions, NIGHT + timedelta(minutes=5)) == []
    assert world.question(new).status == "queued"


def test_an_answerer_whose_offer_expired_goes_last_for_that_question(app, world):
    """Two answerers each let an offer expire; each question then goes to the other one,
    although otherwise the answerer offered longest ago would come first."""
    a, b = world.answerer(open_offer_limit=1), world.answerer(open_offer_limit=1)
    q1, q2 = (world.paid_question(paid_at=DAY) for _ in range(2))
    first = {o.question_id: o.answerer_id for o in world.run(release.release_due_questions,
                                                                NIGHT)}
    assert first == {q1: a, q2: b}
    expired_at = max(world.question(q).offer_expires_at for q in (q1, q2))
    assert world.run(release.expire_offers, expired_at) == 2
    again = {o.question_id: o.answerer_id for o in world.run(
        release.release_due_questions, expired_at + timedelta(minutes=1), ignore_window=True)}
    assert again == {q1: b, q2: a}


def test_outside_the_window_only_a_deadline_strictly_inside_the_urgent_hours_releases(
        app, world):
    """Urgent hours 12, outside the off-peak window: a deadline exactly 12 hours ahead is not
    urgent yet; one second later it is."""
    a = world.answerer()
    q = world.paid_question(paid_at=datetime(2026, 1, 14, 0, 0, tzinfo=UTC))
    boundary = world.question(q).deadline_at - timedelta(hours=12)
    assert boundary == datetime(2026, 1, 16, 12, 0, tzinfo=UTC)  # 13:00 in Oslo: not off-peak
    assert world.run(release.release_due_questions, boundary) == []
    made = world.run(release.release_due_questions, boundary + timedelta(seconds=1))
    assert [(o.question_id, o.answerer_id) for o in made] == [(q, a)]


@pytest.mark.parametrize("max_per_run", [1, 5])
def test_a_question_that_changed_meanwhile_is_skipped_and_the_release_goes_on(
        app, world, monkeypatch, max_per_run):
    """If a chosen question is no longer queued when its offer is written (the asker
    cancelled after the run read it), it is not offered; its answerer's room is given back
    and the questions after it are offered, also when the run may make only one offer and the
    answerer has room for only one."""
    app.config["UPSS_RELEASE_MAX_PER_RUN"] = max_per_run
    a = world.answerer(open_offer_limit=1)
    first, second = (world.paid_question(paid_at=DAY) for _ in range(2))
    real_offer_many = questions.offer_many
    batches = []

    def offer_many(session, chosen, *args, **kwargs):
        batches.append(list(chosen))
        if len(batches) == 1:
            session.execute(sa.update(Question).where(Question.id == first)
                            .values(status="refunded"))
        return real_offer_many(session, chosen, *args, **kwargs)

    monkeypatch.setattr(questions, "offer_many", offer_many)
    made = world.run(release.release_due_questions, NIGHT)
    assert [(o.question_id, o.answerer_id) for o in made] == [(second, a)]
    assert batches == [[(first, a)], [(second, a)]]
    assert (world.question(first).status, world.question(second).status) == (
        "refunded", "offered")
