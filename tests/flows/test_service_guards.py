"""The question services' own checks, called directly (not through the pages, which refuse
first): who may act, text and price bounds, ratings. They pin rules planted bugs slipped past."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.flows.test_release import DAY, NIGHT, answered
from upss import ledger, payments, questions, release, settings
from upss.extensions import db
from upss.models import AnswerDraft, AnswererProfile, Question, User

LATER = NIGHT + timedelta(hours=2)


def claimed(world) -> tuple[int, int]:
    """A question offered to and claimed by a new answerer: (question, answerer)."""
    a = world.answerer()
    q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, q, a, NIGHT)
    return q, a


def clarifying(world) -> tuple[int, int, int]:
    q, a, asker = answered(world)
    world.act(questions.ask_clarification, q, asker, "Which button?", LATER)
    return q, a, asker


def closed(world) -> tuple[int, int, int]:
    q, a, asker = answered(world)
    world.act(questions.accept, q, asker, LATER)
    return q, a, asker


def suspend(app, answerer: int) -> None:
    with app.app_context():
        db.session.get(AnswererProfile, answerer).active = False
        db.session.commit()


# --- create_question: every field's bounds ---------------------------------------------------

GOOD = {"title": "Q", "body": "Body", "language": "en", "topic": "other", "price_cents": 1000}


def create(app, world, **overrides) -> Question:
    asker = world.user("asker")
    with app.app_context():
        question = questions.create_question(db.session, db.session.get(User, asker),
                                             **{**GOOD, **overrides})
        db.session.commit()
        db.session.refresh(question)
        db.session.expunge(question)
        return question


def stored_questions(app) -> int:
    with app.app_context():
        return db.session.query(Question).count()


@pytest.mark.parametrize("field, overrides", [
    ("title", {"title": ""}), ("title", {"title": "   "}),
    ("title", {"title": "x" * (questions.TITLE_MAX + 1)}),
    ("body", {"body": ""}), ("body", {"body": " \n "}),
    ("body", {"body": "x" * (questions.BODY_MAX + 1)}),
    ("language", {"language": "xx"}), ("topic", {"topic": "gossip"}),
    ("price", {"price_cents": 1000.0}), ("price", {"price_cents": "1000"}),
    ("price", {"price_cents": None}),
], ids=lambda v: v if isinstance(v, str) else repr(v)[:30])
def test_create_question_refuses_each_bad_field(app, world, field, overrides):
    with pytest.raises(questions.InvalidQuestion) as refused:
        create(app, world, **overrides)
    assert refused.value.field == field
    assert stored_questions(app) == 0


def test_create_question_accepts_the_longest_title_and_body(app, world):
    question = create(app, world, title="t" * questions.TITLE_MAX,
                      body="  " + "b" * questions.BODY_MAX + "\n")
    assert (len(question.title), len(question.body), question.status) == (
        questions.TITLE_MAX, questions.BODY_MAX, "draft")


def test_create_question_price_bounds_are_inclusive(app, world):
    with app.app_context():
        rules = settings.current(db.session)
    low, high = rules.price_min_cents, rules.price_max_cents
    assert create(app, world, price_cents=low).price_cents == low
    assert create(app, world, price_cents=high).price_cents == high
    for price in (low - 1, high + 1):
        with pytest.raises(questions.InvalidQuestion) as refused:
            create(app, world, price_cents=price)
        assert refused.value.field == "price"
    assert stored_questions(app) == 2


# --- Only the asker acts on their question ---------------------------------------------------

@pytest.mark.parametrize("action, args", [
    (questions.accept, ()), (questions.reject, ("Not helpful",)),
    (questions.ask_clarification, ("Why?",)),
], ids=["accept", "reject", "ask_clarification"])
def test_another_asker_may_not_decide_on_an_answer(app, world, action, args):
    q, _a, _asker = answered(world)
    stranger = world.user("asker")
    with pytest.raises(questions.NotYourQuestion):
        world.act(action, q, stranger, *args, LATER)
    assert world.question(q).status == "answered"
    with app.app_context():
        assert ledger.posted(db.session, f"settle:question:{q}") is None


def test_another_asker_may_not_cancel_a_queued_question(app, world):
    q = world.paid_question(paid_at=DAY)
    stranger = world.user("asker")
    with pytest.raises(questions.NotYourQuestion, match=f"question {q} belongs to another asker"):
        world.act(payments.cancel, q, stranger, NIGHT)
    assert (world.question(q).status, world.question(q).refund_status) == ("queued", None)


def test_another_asker_may_not_rate(app, world):
    q, _a, _asker = closed(world)
    stranger = world.user("asker")
    with pytest.raises(questions.NotYourQuestion):
        world.act(questions.rate, q, stranger, 1, "")
    assert world.question(q).rating is None


# --- Only the answerer holding the question acts on it ---------------------------------------

def test_another_answerer_may_not_decline_an_offer(app, world):
    a = world.answerer()
    q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    intruder = world.answerer()
    with pytest.raises(questions.NotYourOffer):
        world.act(questions.decline, q, intruder, LATER)
    assert (world.question(q).status, world.question(q).answerer_id) == ("offered", a)


def test_an_answerer_who_never_held_it_may_not_post_an_answer(app, world):
    q, a = claimed(world)
    intruder = world.answerer()
    with pytest.raises(questions.NotYourOffer, match=f"question {q} is not yours to answer"):
        world.act(questions.post_answer, q, intruder, "My answer", LATER)
    assert (world.question(q).status, world.question(q).answerer_id) == ("claimed", a)
    with app.app_context():
        assert db.session.get(AnswerDraft, (q, intruder)) is None


def test_a_former_answerer_may_not_post_over_the_new_holder(app, world):
    """Their lock ran out and someone else claimed it: their draft is saved, nothing is sent."""
    first, second = world.answerer(), world.answerer()
    q = world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT)
    world.act(questions.claim, q, first, NIGHT)
    world.run(release.expire_locks, NIGHT + timedelta(hours=4))
    world.run(release.release_due_questions, NIGHT + timedelta(hours=4))
    world.act(questions.claim, q, second, NIGHT + timedelta(hours=4))
    with pytest.raises(questions.NotYourOffer, match=f"question {q} is not claimed by you"):
        world.act(questions.post_answer, q, first, "Late answer", NIGHT + timedelta(hours=5))
    question = world.question(q)
    assert (question.status, question.answerer_id, question.answer_body) == (
        "claimed", second, None)


def test_another_answerer_may_not_reply_to_a_clarification(app, world):
    q, a, _asker = clarifying(world)
    intruder = world.answerer()
    with pytest.raises(questions.NotYourOffer):
        world.act(questions.reply_clarification, q, intruder, "Let me", LATER)
    assert (world.question(q).status, world.question(q).answerer_id) == ("clarifying", a)


def test_a_suspended_answerer_may_not_post_an_answer(app, world):
    q, a = claimed(world)
    suspend(app, a)
    with pytest.raises(questions.Suspended):
        world.act(questions.post_answer, q, a, "My answer", LATER)
    assert world.question(q).status == "claimed"


def test_a_suspended_answerer_may_not_reply_to_a_clarification(app, world):
    q, a, _asker = clarifying(world)
    suspend(app, a)
    with pytest.raises(questions.Suspended):
        world.act(questions.reply_clarification, q, a, "The green one", LATER)
    assert world.question(q).status == "clarifying"


# --- Nobody decides a dispute they are a party to --------------------------------------------

def _uphold(world, q, who):
    world.act(questions.uphold_dispute, q, who, LATER)


def _refund(world, q, who):
    world.act(lambda session, question, user, now: questions.refund(
        session, question, "refund_dispute", user, now), q, who, LATER)


@pytest.mark.parametrize("decide", [_uphold, _refund], ids=["uphold", "refund"])
@pytest.mark.parametrize("party", ["asker", "answerer"])
def test_a_party_to_the_dispute_may_not_decide_it(app, world, decide, party):
    q, a, asker = answered(world)
    world.act(questions.reject, q, asker, "Not helpful", LATER)
    who = {"asker": asker, "answerer": a}[party]
    with app.app_context():
        db.session.get(User, who).is_organizer = True
        db.session.commit()
    with pytest.raises(questions.ConflictOfInterest):
        decide(world, q, who)
    question = world.question(q)
    assert (question.status, question.refund_status) == ("disputed", None)
    with app.app_context():
        assert ledger.posted(db.session, f"settle:question:{q}") is None


# --- Text bounds -----------------------------------------------------------------------------

def test_an_answer_of_the_longest_length_is_sent(app, world):
    q, a = claimed(world)
    world.act(questions.post_answer, q, a, "a" * questions.ANSWER_MAX, LATER)
    assert (world.question(q).status, len(world.question(q).answer_body)) == (
        "answered", questions.ANSWER_MAX)


@pytest.mark.parametrize("body", ["", "  \n ", "a" * (questions.ANSWER_MAX + 1)],
                         ids=["empty", "blank", "too long"])
def test_an_empty_or_too_long_answer_is_refused(app, world, body):
    q, a = claimed(world)
    with pytest.raises(questions.InvalidText):
        world.act(questions.post_answer, q, a, body, LATER)
    assert world.question(q).status == "claimed"


def test_a_clarification_request_of_the_longest_length_is_sent(app, world):
    q, _a, asker = answered(world)
    world.act(questions.ask_clarification, q, asker, "m" * questions.MESSAGE_MAX, LATER)
    assert world.question(q).status == "clarifying"


@pytest.mark.parametrize("action", [questions.ask_clarification, questions.reject],
                         ids=["ask_clarification", "reject"])
@pytest.mark.parametrize("text", ["", " ", "m" * (questions.MESSAGE_MAX + 1)],
                         ids=["empty", "blank", "too long"])
def test_an_empty_or_too_long_clarification_or_reason_is_refused(app, world, action, text):
    q, _a, asker = answered(world)
    with pytest.raises(questions.InvalidText):
        world.act(action, q, asker, text, LATER)
    assert world.question(q).status == "answered"


def test_a_too_long_clarification_reply_is_refused(app, world):
    q, a, _asker = clarifying(world)
    with pytest.raises(questions.InvalidText):
        world.act(questions.reply_clarification, q, a, "r" * (questions.ANSWER_MAX + 1), LATER)
    assert world.question(q).status == "clarifying"


# --- Ratings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stars", [1, 5])
def test_one_and_five_star_ratings_are_accepted_and_stored(app, world, stars):
    q, _a, asker = closed(world)
    world.act(questions.rate, q, asker, stars, "  Thanks  ")
    assert (world.question(q).rating, world.question(q).rating_comment) == (stars, "Thanks")


@pytest.mark.parametrize("stars", [0, 6, -1, True, 3.0])
def test_ratings_outside_1_to_5_whole_stars_are_refused(app, world, stars):
    q, _a, asker = closed(world)
    with pytest.raises(questions.InvalidText):
        world.act(questions.rate, q, asker, stars, "")
    assert world.question(q).rating is None


def test_a_rating_comment_may_be_as_long_as_a_message_and_no_longer(app, world):
    q, _a, asker = closed(world)
    with pytest.raises(questions.InvalidText):
        world.act(questions.rate, q, asker, 3, "c" * (questions.MESSAGE_MAX + 1))
    assert world.question(q).rating is None
    world.act(questions.rate, q, asker, 3, "c" * questions.MESSAGE_MAX)
    assert len(world.question(q).rating_comment) == questions.MESSAGE_MAX


def test_a_refund_names_an_action_that_is_not_one(app, world):
    """Only the refund actions refund; anything else is a programming error, named."""
    q = world.paid_question(paid_at=DAY)
    with pytest.raises(ValueError, match="^accept is not a refund$"):
        world.act(questions.refund, q, None, "accept", None, NIGHT)
    assert world.question(q).status == "queued"
