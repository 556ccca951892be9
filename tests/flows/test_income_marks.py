"""The answerers' running income (``IncomeMark``, kept by ``ledger.post``): what the release run
reads as each answerer's income of the last 30 days and of their own year is what the ledger's
legs say (``earnings.income_since``, which sums them), whatever order the postings' times come
in; reversals and payouts are not income; one statement reads it for any number of credits;
migration 0018 fills it from an existing ledger; a full check names an answerer whose marks were
changed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.conftest import World, _base_config, count_statements
from upss import create_app, earnings, ledger
from upss.extensions import db
from upss.models import IncomeMark

START = datetime(2025, 12, 1, tzinfo=UTC)
ZONES = (ZoneInfo("Europe/Oslo"), ZoneInfo("Pacific/Auckland"), ZoneInfo("America/New_York"))


def post_history(app, world, rng: random.Random, postings: int,
                 first: int = 0) -> tuple[list[int], list]:
    """Three answerers, ``postings`` random postings at random times (not in order): credits
    of settled work, tips, payouts out of the payable account, and reversals of credits and
    of payouts (keys and question numbers from ``first`` on)."""
    answerers = [world.answerer() for _ in ZONES]
    moments = []
    with app.app_context():
        credits = []
        for n in range(first, first + postings):
            who = rng.choice(answerers)
            at = START + timedelta(minutes=rng.randrange(0, 90 * 24 * 60))
            if rng.random() < 0.1:  # two credits at the same moment
                at = moments[-1] if moments else at
            moments.append(at)
            cents = rng.randrange(1, 20000)
            payable = ledger.payable_account(who)
            kind = rng.random()
            if kind < 0.6 or not credits:
                escrow = f"escrow:question:{n}"
                tx = ledger.post(db.session, f"settle:{n}", "settled",
                                 [(escrow, cents), (payable, -cents)], "EUR", now=at)
                credits.append(tx)
            elif kind < 0.75:
                ledger.post(db.session, f"tip:{n}", "tip", [("stripe_balance", cents),
                            (payable, -cents)], "EUR", now=at)
            elif kind < 0.9:
                credits.append(ledger.post(db.session, f"payout:{n}", "payout", [
                    (payable, cents), ("stripe_balance", -cents)], "EUR", now=at))
            else:  # a payout reversed gives money back to the payable account: not income
                original = credits.pop(rng.randrange(len(credits)))
                ledger.reverse(db.session, original, f"reverse:{n}", "reversed")
            db.session.commit()
    return answerers, moments


@pytest.mark.parametrize("seed", [1, 2])
def test_income_read_from_the_marks_is_the_sum_of_the_ledgers_credits(app, world, seed):
    rng = random.Random(seed)
    answerers, moments = post_history(app, world, rng, 60)
    zones = dict(zip(answerers, ZONES, strict=True))
    checks = [*rng.sample(moments, 8), START - timedelta(days=1),
              datetime(2026, 1, 1, 0, 0, tzinfo=UTC), START + timedelta(days=120)]
    with app.app_context():
        assert ledger.income_mark_problems(db.session) == []
        for now in checks:
            for period in (timedelta(days=30), timedelta(days=7)):
                read = earnings.recent_and_yearly_income(db.session, zones, now, period)
                for who, zone in zones.items():
                    recent = earnings.income_since(db.session, [who], now - period)
                    yearly = earnings.income_since(db.session, [who],
                                                   earnings.year_start(now, zone))
                    assert read.get(who, (0, 0)) == (recent.get(who, 0), yearly.get(who, 0)), (
                        who, now, period)


def test_one_statement_whatever_the_number_of_credits(app, world):
    answerers, _ = post_history(app, world, random.Random(3), 6)
    zones = dict(zip(answerers, ZONES, strict=True))
    now = START + timedelta(days=100)

    def statements() -> int:
        with app.app_context(), count_statements() as seen:
            earnings.recent_and_yearly_income(db.session, zones, now, timedelta(days=30))
        return len([s for s in seen if not s.startswith("BEGIN")])

    few = statements()
    post_history(app, world, random.Random(4), 40, first=1000)
    assert statements() == few == 1


def test_a_changed_mark_is_named_by_a_full_check(app, world):
    answerers, _ = post_history(app, world, random.Random(5), 20)
    with app.app_context():
        assert ledger.verify(db.session).ok
        victim = db.session.scalar(sa.select(IncomeMark.answerer_id).limit(1))
        db.session.execute(sa.update(IncomeMark).where(IncomeMark.answerer_id == victim)
                           .values(total_cents=IncomeMark.total_cents + 1))
        report = ledger.verify(db.session)
        db.session.rollback()
    assert report.problems == [f"income marks of answerer {victim} differ from the ledger's "
                               f"credits to payable:answerer:{victim}"]


def test_migration_0018_fills_the_marks_of_an_existing_ledger(empty_database):
    """What ``ledger.post`` kept, downgraded to 0017 (no marks) and upgraded again: the
    migration makes the same marks from the ledger."""
    from flask_migrate import downgrade, upgrade

    app = create_app(_base_config(empty_database, "http://127.0.0.1:9"))
    with app.app_context():
        upgrade()
    post_history(app, World(app), random.Random(6), 30)
    columns = (IncomeMark.answerer_id, IncomeMark.created_at, IncomeMark.transaction_id,
               IncomeMark.credited_cents, IncomeMark.total_cents)

    def marks() -> list:
        with app.app_context():
            found = db.session.execute(sa.select(*columns).order_by(*columns[:3])).all()
            db.session.remove()
        return found

    kept = marks()
    with app.app_context():
        downgrade(revision="0017_offer_lapsed")
        assert not sa.inspect(db.engine).has_table("income_mark")
        upgrade()
    assert len(kept) > 10 and marks() == kept
    with app.app_context():
        db.engine.dispose()
