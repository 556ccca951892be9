"""Organizer reports: account statements and CSV exports (``upss.statements``), traffic per
hour, queue depth and the SVG chart (``upss.charts``)."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from markupsafe import Markup
from sqlalchemy import func, select

from upss import charts, ledger, money, payments, questions, release, statements
from upss.extensions import db
from upss.models import (
    LedgerEntry,
    Payout,
    PayoutBatch,
    Question,
    QuestionEvent,
    User,
)

DAY = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
OSLO = ZoneInfo("Europe/Oslo")


@pytest.fixture
def app_config(app_config):
    """Questions stay open for 60 days: the traffic test pays some four weeks before they are
    offered, and the release never offers a question past its deadline."""
    return {**app_config, "UPSS_DEADLINE_HOURS": 60 * 24}


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session
        db.session.rollback()


def settled_world(world):
    """Two answered and accepted questions, one refunded: returns the ids involved."""
    answerer = world.answerer()
    asker = world.user("asker")
    accepted = [world.paid_question(paid_at=DAY, price_cents=price, asker_id=asker)
                for price in (1000, 2550)]
    world.run(release.release_due_questions, NIGHT, ignore_window=True)
    for n, q in enumerate(accepted):
        world.act(questions.claim, q, answerer, NIGHT)
        world.act(questions.post_answer, q, answerer, "Here is how.", NIGHT + timedelta(hours=1))
        world.act(questions.accept, q, asker, NIGHT + timedelta(hours=2 + n))
    cancelled = world.paid_question(paid_at=NIGHT, price_cents=1500, asker_id=asker,
                                    real_stripe=True)
    world.act(payments.cancel, cancelled, asker, NIGHT + timedelta(hours=3))
    return {"answerer": answerer, "accepted": accepted, "cancelled": cancelled}


def check_running_balance(st: statements.Statement) -> None:
    """Each row's balance is the previous one plus this entry, in the account's normal sign."""
    sign = 1 if st.type in ("asset", "expense") else -1
    previous = 0
    for row in st.rows:
        assert (row.debit_cents == 0) != (row.credit_cents == 0), row
        assert min(row.debit_cents, row.credit_cents) == 0 <= max(row.debit_cents,
                                                                  row.credit_cents)
        assert row.balance_cents == previous + sign * (row.debit_cents - row.credit_cents)
        previous = row.balance_cents
    assert st.closing_balance_cents == previous
    assert [r.transaction_id for r in st.rows] == sorted(r.transaction_id for r in st.rows)


def test_statements_match_the_ledger_after_payment_settlement_and_refund(app, world, session):
    """The closing balance of each statement is ledger.balance in the account's normal sign."""
    ids = settled_world(world)
    a, (q1, q2), q3 = ids["answerer"], ids["accepted"], ids["cancelled"]
    share1, commission1 = money.split(1000, 1000)
    share2, commission2 = money.split(2550, 1000)
    expected = {
        f"payable:answerer:{a}": ("liability", share1 + share2, 2),
        "commission": ("revenue", commission1 + commission2, 2),
        f"escrow:question:{q1}": ("liability", 0, 2),
        f"escrow:question:{q3}": ("liability", 0, 2),
        "stripe_balance": ("asset", 1000 + 2550, 4),
    }
    for name, (kind, closing, n_rows) in expected.items():
        st = statements.statement(session, name)
        assert (st.account, st.type, st.currency) == (name, kind, "EUR")
        assert len(st.rows) == n_rows
        check_running_balance(st)
        assert st.closing_balance_cents == closing
        assert st.closing_balance_cents == statements.normal_balance(
            kind, ledger.balance(session, name))

    payable = statements.statement(session, f"payable:answerer:{a}")
    assert [(r.debit_cents, r.credit_cents, r.balance_cents) for r in payable.rows] == [
        (0, share1, share1), (0, share2, share1 + share2)]
    assert [r.key for r in payable.rows] == [f"settle:question:{q1}", f"settle:question:{q2}"]
    assert all(r.at.tzinfo is not None for r in payable.rows)
    refunded = statements.statement(session, f"escrow:question:{q3}")
    assert [(r.debit_cents, r.credit_cents, r.balance_cents) for r in refunded.rows] == [
        (0, 1500, 1500), (1500, 0, 0)]
    assert refunded.rows[1].key.startswith("refund:re_")
    bank = statements.statement(session, "stripe_balance")
    assert max(r.balance_cents for r in bank.rows) == 1000 + 2550 + 1500


def test_statement_of_an_unknown_account_raises_key_error(app, session):
    with pytest.raises(KeyError):
        statements.statement(session, "payable:answerer:404")


def test_statement_of_an_account_without_entries_is_empty(app, session):
    from upss.models import LedgerAccount

    session.add(LedgerAccount(name="stripe_fees", type="expense", currency="EUR",
                              balance_cents=0))
    session.flush()
    st = statements.statement(session, "stripe_fees")
    assert (st.rows, st.closing_balance_cents) == ([], 0)


@pytest.mark.parametrize("kind, signed, shown", [
    ("asset", 500, 500), ("expense", -20, -20),
    ("liability", -900, 900), ("revenue", -100, 100), ("liability", 50, -50),
])
def test_normal_balance(kind, signed, shown):
    assert statements.normal_balance(kind, signed) == shown


def test_normal_balance_refuses_an_unknown_type():
    with pytest.raises(ValueError):
        statements.normal_balance("equity?", 1)


def test_ledger_csv_parses_back_to_the_ledger_totals(app, world, session):
    settled_world(world)
    rows = list(csv.DictReader(io.StringIO("".join(statements.ledger_entries_csv(session)))))
    assert list(rows[0]) == list(statements.LEDGER_CSV_COLUMNS)
    entries = session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    assert len(rows) == len(entries) == session.scalar(
        select(func.count()).select_from(LedgerEntry))
    positive = session.scalar(select(func.sum(LedgerEntry.amount_cents))
                              .where(LedgerEntry.amount_cents > 0))
    debit = sum(Decimal(r["debit"]) for r in rows)
    credit = sum(Decimal(r["credit"]) for r in rows)
    assert debit == credit == Decimal(int(positive)) / 100
    assert positive == 2 * (1000 + 2550 + 1500)
    for row, entry in zip(rows, entries, strict=True):
        assert int(row["transaction_id"]) == entry.transaction_id
        assert int(row["amount_cents"]) == entry.amount_cents
        assert row["account"] == entry.account.name
        assert row["account_type"] == entry.account.type
        assert row["idempotency_key"] == entry.transaction.idempotency_key
        assert (Decimal(row["debit"]) - Decimal(row["credit"])) * 100 == entry.amount_cents
        assert re.fullmatch(r"\d+\.\d\d", row["debit"]) and re.fullmatch(r"\d+\.\d\d",
                                                                          row["credit"])
        at = datetime.fromisoformat(row["created_at"])
        assert at.utcoffset() == timedelta(0) and at == entry.transaction.created_at
    # Per account, the CSV sums to the cached balance.
    for name in {r["account"] for r in rows}:
        assert sum(int(r["amount_cents"]) for r in rows if r["account"] == name) == (
            ledger.balance(session, name))


def test_ledger_csv_of_an_empty_ledger_is_just_the_header(app, session):
    assert "".join(statements.ledger_entries_csv(session)).splitlines() == [
        ",".join(statements.LEDGER_CSV_COLUMNS)]


def test_payouts_csv_parses_back(app, world, session):
    sepa_answerer, connect_answerer = world.answerer(), world.answerer()
    session.get(User, sepa_answerer).name = "=HYPERLINK(\"http://evil\")"
    batch = PayoutBatch(currency="EUR")
    session.add(batch)
    session.flush()
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    session.add_all([
        Payout(batch_id=batch.id, answerer_id=sepa_answerer, amount_cents=123456,
               currency="EUR", method="sepa", status="awaiting_bank",
               iban="NO9386011117947", created_at=at),
        Payout(batch_id=batch.id, answerer_id=connect_answerer, amount_cents=5,
               currency="EUR", method="connect", status="failed",
               stripe_transfer_id=None, failure_reason="account, \"restricted\"\nretry",
               created_at=at),
    ])
    session.flush()
    rows = list(csv.DictReader(io.StringIO("".join(statements.payouts_csv(session, batch=1)))))
    assert list(rows[0]) == list(statements.PAYOUT_CSV_COLUMNS)
    assert len(rows) == 2
    sepa, connect = rows
    assert (int(sepa["batch_id"]), int(sepa["answerer_id"]), sepa["method"], sepa["status"],
            sepa["currency"], sepa["amount"], int(sepa["amount_cents"]), sepa["iban"]) == (
        batch.id, sepa_answerer, "sepa", "awaiting_bank", "EUR", "1234.56", 123456,
        "NO9386011117947")
    assert datetime.fromisoformat(sepa["created_at"]) == at
    # A name that a spreadsheet would run as a formula is written as text.
    assert sepa["answerer_name"] == "'=HYPERLINK(\"http://evil\")"
    assert (connect["answerer_name"], connect["amount"], connect["stripe_transfer_id"],
            connect["failure_reason"]) == (
        session.get(User, connect_answerer).name, "0.05", "", "account, \"restricted\"\nretry")
    assert sum(int(r["amount_cents"]) for r in rows) == 123456 + 5


def test_traffic_by_hour_buckets_by_oslo_local_hour_across_dst(app, world):
    """Oslo moves from UTC+1 to UTC+2 at 01:00 UTC on 29 March 2026: the same UTC hour lands
    in different local hours before and after, and local 02:00 does not exist that night."""
    now = datetime(2026, 4, 5, 0, 0, tzinfo=UTC)
    start = now - timedelta(days=28)                     # 8 March 00:00 UTC = 01:00 CET
    answerer = world.answerer()
    paid = {
        "winter_noon": datetime(2026, 3, 20, 11, 30, tzinfo=UTC),   # 12:30 CET
        "summer_noon": datetime(2026, 4, 1, 11, 30, tzinfo=UTC),    # 13:30 CEST
        "before_switch": datetime(2026, 3, 29, 0, 59, tzinfo=UTC),  # 01:59 CET
        "after_switch": datetime(2026, 3, 29, 1, 0, tzinfo=UTC),    # 03:00 CEST
        "window_start": start,                                      # 01:00 CET, included
        "too_early": start - timedelta(seconds=1),                  # excluded
    }
    ids = {name: world.paid_question(paid_at=at) for name, at in paid.items()}
    late = world.paid_question(paid_at=now)                          # excluded: [start, now)
    offered_at = datetime(2026, 4, 2, 21, 15, tzinfo=UTC)            # 23:15 CEST
    world.run(release.release_due_questions, offered_at, ignore_window=True)
    world.run(release.release_due_questions, offered_at + timedelta(minutes=1),
              ignore_window=True)
    world.act(questions.claim, ids["winter_noon"], answerer, offered_at)
    world.act(questions.claim, late, answerer, offered_at)
    world.act(questions.post_answer, ids["winter_noon"], answerer, "Yes.",
              datetime(2026, 4, 2, 22, 30, tzinfo=UTC))               # 00:30 CEST
    world.act(questions.post_answer, late, answerer, "No.",
              datetime(2026, 3, 10, 7, 0, tzinfo=UTC))                 # 08:00 CET

    with app.app_context():
        traffic = charts.traffic_by_hour(db.session, now, OSLO)
        utc = charts.traffic_by_hour(db.session, now, ZoneInfo("UTC"))
    expected_paid = [0] * 24
    expected_paid[12] = expected_paid[13] = expected_paid[3] = 1
    expected_paid[1] = 2
    assert traffic.paid == expected_paid
    assert traffic.paid[2] == 0 and traffic.paid[0] == 0
    expected_offered = [0] * 24
    expected_offered[23] = 7                                          # all, at 23:15 and 23:16
    assert traffic.offered == expected_offered
    expected_answered = [0] * 24
    expected_answered[0] = expected_answered[8] = 1
    assert traffic.answered == expected_answered
    # The same data bucketed in UTC: both "noon" payments are at 11 UTC.
    assert (utc.paid[11], utc.paid[0], utc.paid[1], utc.offered[21]) == (2, 2, 1, 7)
    assert sum(utc.paid) == sum(traffic.paid) == 5
    with app.app_context():
        short = charts.traffic_by_hour(db.session, now, OSLO, days=4)
    assert short.paid[13] == 1 and sum(short.paid) == 1               # only 1 April


def add_question(session, asker_id: int) -> int:
    q = Question(asker_id=asker_id, title="Q", body="B", language="en", topic="other",
                 price_cents=1000, currency="EUR", status="draft")
    session.add(q)
    session.flush()
    return q.id


def add_event(session, question_id: int, from_status: str, to_status: str, at: datetime):
    """An event, and the question's status as the event left it (events come in time order
    here, as the services write them)."""
    session.add(QuestionEvent(question_id=question_id, actor_kind="scheduler", action="test",
                              from_status=from_status, to_status=to_status, at=at))
    session.get(Question, question_id).status = to_status
    session.flush()


def test_queue_depth_at_exact_sample_times(app, world, session):
    """Paid questions raise the depth, offers lower it; an event at a sample time counts; an
    event before the window counts through the questions' present state."""
    asker = world.user("asker")
    t0 = datetime(2026, 1, 10, tzinfo=UTC)
    h = timedelta(hours=1)
    q1, q2, q3, q4, q5 = (add_question(session, asker) for _ in range(5))
    add_event(session, q2, "awaiting_payment", "queued", t0 - timedelta(days=2))
    add_event(session, q1, "awaiting_payment", "queued", t0 + 1 * h)
    add_event(session, q4, "draft", "awaiting_payment", t0 + 2 * h)
    add_event(session, q3, "awaiting_payment", "queued", t0 + 6 * h)   # exactly at a sample
    add_event(session, q2, "queued", "offered", t0 + 7 * h)
    add_event(session, q1, "queued", "offered", t0 + 12 * h)           # exactly at a sample
    add_event(session, q5, "awaiting_payment", "queued", t0 + 18 * h)  # same instant ...
    add_event(session, q5, "queued", "offered", t0 + 18 * h)           # ... later event wins
    add_event(session, q2, "offered", "queued", t0 + 19 * h)
    add_event(session, q3, "queued", "refunded", t0 + 30 * h)          # after now: ignored
    now = t0 + 24 * h
    assert charts.queue_depth(session, now, days=1) == [
        (t0, 1), (t0 + 6 * h, 3), (t0 + 12 * h, 1), (t0 + 18 * h, 1), (t0 + 24 * h, 2)]
    # A step that does not divide the period still ends at now.
    assert charts.queue_depth(session, now, days=1, step=7 * h) == [
        (t0, 1), (t0 + 7 * h, 2), (t0 + 14 * h, 1), (t0 + 21 * h, 2), (now, 2)]
    # Later, q3's refund has happened.
    assert charts.queue_depth(session, t0 + 30 * h, days=0) == [(t0 + 30 * h, 1)]
    with pytest.raises(ValueError):
        charts.queue_depth(session, now, step=timedelta(0))


def test_queue_depth_follows_the_question_services(app, world):
    """Through the real services, which stamp each event with the ``now`` they were given: up
    when paid, down when offered."""
    world.answerer()
    world.paid_question(paid_at=DAY)
    world.paid_question(paid_at=DAY)
    world.run(release.release_due_questions, NIGHT, ignore_window=True)
    second = timedelta(seconds=1)
    with app.app_context():
        for at, expected in ((DAY - second, 0), (DAY, 2), (NIGHT - second, 2), (NIGHT, 0)):
            assert charts.queue_depth(db.session, at, days=0)[-1] == (at, expected)


def svg_fragments(html: str) -> list[ET.Element]:
    root = ET.fromstring(f"<div>{html}</div>")  # noqa: S314 - our own output
    return list(root)


SVG_NS = "{http://www.w3.org/2000/svg}"


def test_peak_shaving_svg_is_accessible_and_escapes_labels(app):
    paid = [0] * 24
    paid[12], paid[13] = 7, 3
    offered = [1] * 24
    offered[23] = 9
    answered = [0] * 24
    answered[9] = 4
    depth = [(datetime(2026, 1, 10, tzinfo=UTC) + timedelta(hours=6 * n), n % 4)
             for n in range(8)]
    svg = charts.peak_shaving_svg(
        charts.HourlyTraffic(paid, offered, answered), depth,
        title_paid="Paid <script>alert(1)</script>", title_offered="Offered & sent",
        title_answered="Answered", title_depth="Waiting", caption_hours="Per hour",
        caption_depth="Queue over time")
    assert isinstance(svg, Markup)
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "Offered &amp; sent" in svg
    pictures = svg_fragments(str(svg))
    assert [c.tag for c in pictures] == [f"{SVG_NS}svg"] * 2
    dashes = set()
    for chart in pictures:
        assert chart.get("role") == "img" and chart.get("width") == "100%"
        view = [float(v) for v in chart.get("viewBox").split()]
        title, desc = chart.find(f"{SVG_NS}title"), chart.find(f"{SVG_NS}desc")
        assert chart.get("aria-labelledby").split() == [title.get("id"), desc.get("id")]
        # Text stays at least 12 CSS px when the picture is scaled down to 320 px wide.
        sizes = [float(t.get("font-size")) for t in chart.iter(f"{SVG_NS}text")]
        assert sizes and min(sizes) * 320 / view[2] >= 12
        for line in chart.iter(f"{SVG_NS}polyline"):
            dashes.add(line.get("stroke-dasharray"))
            assert line.get("stroke").lower() in {"#0b0c0c", "#1d70b8", "#00703c", "#d4351c"}
    hours, queue = pictures
    desc = hours.find(f"{SVG_NS}desc").text
    assert hours.find(f"{SVG_NS}title").text == "Per hour"
    assert "Paid <script>alert(1)</script>: 12:00 (7)" in desc
    assert "Offered & sent: 23:00 (9)" in desc and "Answered: 09:00 (4)" in desc
    legend = [t.text for t in hours.iter(f"{SVG_NS}text")]
    assert {"Paid <script>alert(1)</script>", "Offered & sent", "Answered"} <= set(legend)
    assert {"00", "06", "12", "18"} <= set(legend)
    assert len(dashes) == 3  # the three hourly series differ without colour (solid = None)
    queue_desc = queue.find(f"{SVG_NS}desc").text
    assert "Waiting: 2026-01-10 18:00 UTC (3)" in queue_desc
    assert "2026-01-11 18:00 UTC (3)" in queue_desc  # the latest value
    assert [len(list(c.iter(f"{SVG_NS}{shape}"))) for c in (hours,)
            for shape in ("circle", "rect", "polygon")] == [24 + 1, 24 + 1, 24 + 1]


def test_peak_shaving_svg_with_no_data(app):
    empty = charts.HourlyTraffic([0] * 24, [0] * 24, [0] * 24)
    svg = charts.peak_shaving_svg(empty, [], title_paid="P", title_offered="O",
                                   title_answered="A", title_depth="D", caption_hours="H",
                                   caption_depth="Q")
    hours, queue = svg_fragments(str(svg))
    assert "P: 00:00 (0)" in hours.find(f"{SVG_NS}desc").text
    assert queue.find(f"{SVG_NS}desc").text == "Q."
    with pytest.raises(ValueError):
        charts.peak_shaving_svg(charts.HourlyTraffic([1] * 23, [0] * 24, [0] * 24), [],
                                 title_paid="P", title_offered="O", title_answered="A",
                                 title_depth="D", caption_hours="H", caption_depth="Q")
