"""Every list is read a keyset page at a time (``upss.paging``, ``upss.lists``).

For each paginated page: following its "next" link returns every row exactly once (45 rows
at 20 a page: 20 + 20 + 5), also when rows are added between two page loads; a garbage cursor
gives the first page, never an error; and the number of SQL statements a page runs is the
same with 1 row as with 200 (no per-row queries, no whole-table reads).
"""

from __future__ import annotations

import html
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import count_statements, plan_of, sign_in_as
from upss import audit, lists, notifications
from upss.extensions import db
from upss.models import (
    AnswererApplication,
    AnswererProfile,
    AuditLog,
    Notification,
    Offer,
    Payout,
    PayoutBatch,
    Question,
    ReconciliationRun,
    StripeDispute,
    User,
)
from upss.paging import encode_cursor

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_EMAILS = itertools.count(1)


def _users(n: int, prefix: str, name=lambda i: None, **flags) -> list[int]:
    """``n`` users stored directly (no password hashing: these never sign in)."""
    made = [User(email=f"listed{next(_EMAILS)}@example.org",
                 name=name(i) or f"{prefix.title()} {i}", password_hash="-", **flags)
            for i in range(n)]
    db.session.add_all(made)
    db.session.flush()
    return [u.id for u in made]


def _question(asker_id: int, i: int, **values) -> Question:
    return Question(asker_id=asker_id, title=f"Title {i}", body="Body", language="en",
                    topic="other", price_cents=1000, currency="EUR", **values)


@dataclass
class Ctx:
    """What a list's rows are made for: the signed-in user and the page's owner."""

    viewer: int
    counter: int = 0
    extra: dict = field(default_factory=dict)

    def next(self) -> int:
        self.counter += 1
        return self.counter


# --- one maker per list: add ``n`` rows, return the label each row shows on the page ----------

def make_asker_questions(ctx: Ctx, n: int) -> list[str]:
    rows = [_question(ctx.viewer, ctx.next()) for _ in range(n)]
    db.session.add_all(rows)
    db.session.flush()
    return [f"/questions/{q.id}\"" for q in rows]


def make_rejected_answers(ctx: Ctx, n: int) -> list[str]:
    asker = ctx.extra.setdefault("asker", _users(1, "asker")[0])
    rows = [_question(asker, ctx.next(), status="disputed", answer_body="A",
                      dispute_reason="R") for _ in range(n)]
    db.session.add_all(rows)
    db.session.flush()
    return [f"/organizer/disputes/{q.id}/uphold\"" for q in rows]


def make_answerers(ctx: Ctx, n: int) -> list[str]:
    # Three answerers share each name: the page boundary falls inside a group of equal names.
    start = ctx.counter
    ids = _users(n, f"answerer{start}-", name=lambda i: f"Answerer {(start + i) // 3:03d}",
                 is_answerer=True)
    ctx.counter += n
    db.session.add_all([AnswererProfile(user_id=i, languages="en") for i in ids])
    db.session.flush()
    return [f"/organizer/answerers/{i}/suspend\"" for i in ids]


def _applications(ctx: Ctx, n: int, status: str) -> list[str]:
    ids = _users(n, f"applicant{ctx.next()}-")  # each applicant a different person
    rows = [AnswererApplication(user_id=i, status=status, basis="age", languages="en",
                                submitted_at=T0) for i in ids]
    db.session.add_all(rows)
    db.session.flush()
    return [f"/organizer/applications/{a.id}\"" for a in rows]


def make_waiting_applications(ctx: Ctx, n: int) -> list[str]:
    return _applications(ctx, n, "pending")


def make_decided_applications(ctx: Ctx, n: int) -> list[str]:
    return _applications(ctx, n, "approved")


def make_audit_entries(ctx: Ctx, n: int) -> list[str]:
    actors = _users(n, f"organizer{ctx.next()}-", is_organizer=True)  # each by someone else
    rows = [AuditLog(actor_id=actor, action="change", target=f"target-{ctx.next()}")
            for actor in actors]
    db.session.add_all(rows)
    db.session.flush()
    return [f"({row.target})" for row in rows]


def _batch() -> int:
    batch = PayoutBatch(currency="EUR")
    db.session.add(batch)
    db.session.flush()
    return batch.id


def make_payouts(ctx: Ctx, n: int) -> list[str]:
    payees = _users(n, f"payee{ctx.next()}-", name=lambda i: f"Payee {ctx.counter}-{i}")
    batches = [_batch() for _ in range(3)]  # each page spans batches
    rows = [Payout(batch_id=batches[i * 3 // n], answerer_id=payee, amount_cents=100 + i,
                   currency="EUR", method="connect", status="sent")
            for i, payee in enumerate(payees)]
    db.session.add_all(rows)
    db.session.flush()
    return [f">{db.session.get(User, p.answerer_id).name}<" for p in rows]


def make_answerer_payouts(ctx: Ctx, n: int) -> list[str]:
    batch = _batch()
    rows = [Payout(batch_id=batch, answerer_id=ctx.viewer, amount_cents=100, currency="EUR",
                   method="sepa", status="sent") for _ in range(n)]
    db.session.add_all(rows)
    db.session.flush()
    return [f"/answer/payouts/{p.id}\"" for p in rows]


def make_lapsed_drafts(ctx: Ctx, n: int) -> list[str]:
    asker = ctx.extra.setdefault("asker", _users(1, "asker")[0])
    rows = [_question(asker, ctx.next(), status="queued") for _ in range(n)]
    db.session.add_all(rows)
    db.session.flush()
    # Lapsed twice (picked up, ran out, offered again, picked up, ran out again): listed once.
    db.session.add_all([Offer(question_id=q.id, answerer_id=ctx.viewer, offered_at=T0,
                              expires_at=T0, outcome="lapsed")
                        for q in rows for _ in range(2)])
    db.session.flush()
    return [f"/answer/questions/{q.id}\"" for q in rows]


def make_clarifying(ctx: Ctx, n: int) -> list[str]:
    asker = ctx.extra.setdefault("asker", _users(1, "asker")[0])
    rows = [_question(asker, ctx.next(), status="clarifying", answerer_id=ctx.viewer)
            for _ in range(n)]
    db.session.add_all(rows)
    db.session.flush()
    return [f"/answer/questions/{q.id}\"" for q in rows]


def make_messages(ctx: Ctx, n: int) -> list[str]:
    rows = [Notification(user_id=ctx.viewer, kind="answer_ready", status="skipped",
                         data=json.dumps({"question_id": 1, "title": f"Title {ctx.next()}"}))
            for _ in range(n)]
    db.session.add_all(rows)
    db.session.flush()
    return [f'id="notice-{row.id}"' for row in rows]


def make_card_disputes(ctx: Ctx, n: int) -> list[str]:
    rows, later = [], bool(ctx.counter)
    for _ in range(n):
        i = ctx.next()
        # Deadlines repeat (ties broken by id) and some are missing (listed last, as are the
        # disputes opened after the first ones).
        due = None if later or i % 7 == 0 else T0 + timedelta(days=i % 4)
        rows.append(StripeDispute(id=f"dp_{i:04d}", amount_cents=100, currency="EUR",
                                  status="needs_response", evidence_due_at=due))
    db.session.add_all(rows)
    db.session.add(StripeDispute(id=f"dp_closed_{ctx.next()}", amount_cents=1, currency="EUR",
                                 status="won"))
    db.session.flush()
    return [f">{row.id}<" for row in rows]


def make_differences(ctx: Ctx, n: int) -> list[str]:
    run = ctx.extra.get("run")
    if run is None:
        run = ReconciliationRun(started_at=T0, finished_at=T0, differences="[]")
        db.session.add(run)
        db.session.flush()
        ctx.extra["run"] = run.id
    else:
        run = db.session.get(ReconciliationRun, run)
    found = json.loads(run.differences)
    labels = [f"difference-{ctx.next()}" for _ in range(n)]
    found += [{"what": label, "stripe_cents": 1, "ledger_cents": 0, "currency": "EUR"}
              for label in labels]
    run.differences = json.dumps(found)
    db.session.flush()
    return [f">{label}<" for label in labels]


@dataclass(frozen=True)
class Listing:
    url: str
    param: str
    make: Callable[[Ctx, int], list[str]]
    role: str = "organizer"
    per_page: int = 20
    #: New rows come after the ones already listed (ascending lists), else before.
    new_rows_last: bool = False


LISTINGS = {
    "asker questions": Listing("/questions", "before", make_asker_questions, role="asker"),
    "rejected answers": Listing("/organizer/disputes", "after", make_rejected_answers,
                                new_rows_last=True),
    "answerers": Listing("/organizer/answerers", "after", make_answerers, new_rows_last=True),
    "waiting applications": Listing("/organizer/applications", "waiting",
                                    make_waiting_applications),
    "decided applications": Listing("/organizer/applications", "decided",
                                    make_decided_applications),
    "audit log": Listing("/organizer/audit-log", "before", make_audit_entries),
    "payouts": Listing("/organizer/payouts", "before", make_payouts, per_page=50),
    "answerer payouts": Listing("/answer/earnings", "payouts", make_answerer_payouts,
                                role="answerer"),
    "lapsed drafts": Listing("/answer/queue", "drafts", make_lapsed_drafts, role="answerer"),
    "waiting for clarification": Listing("/answer/queue", "asked", make_clarifying,
                                         role="answerer", new_rows_last=True),
    "messages": Listing("/messages", "before", make_messages, role="asker"),
    "card disputes": Listing("/organizer/reconciliation", "disputes", make_card_disputes,
                             new_rows_last=True),
    "reconciliation differences": Listing("/organizer/reconciliation", "differences",
                                          make_differences, new_rows_last=True),
}


def _viewer(world, role: str) -> int:
    if role == "answerer":
        return world.answerer()
    return world.user(role)


def _add(app, listing: Listing, ctx: Ctx, n: int) -> list[str]:
    with app.app_context():
        labels = listing.make(ctx, n)
        db.session.commit()
        return labels


def _next_link(page: str, param: str) -> str | None:
    """The href of the page's "next" link for the list whose cursor is ``param``."""
    for href in re.findall(r'<a href="([^"]+)" rel="next">', page):
        href = html.unescape(href)
        if re.search(rf"[?&]{param}=", href):
            return href
    return None


def _shown(page: str, labels: list[str]) -> list[str]:
    return [label for label in labels if label in page]


@pytest.mark.parametrize("name", list(LISTINGS))
def test_following_the_pages_shows_every_row_exactly_once(app, world, client, name):
    """45 rows (105 for the payouts' pages of 50) come back as full pages and a short last
    one, each row once; rows added after the first page neither repeat nor hide a row."""
    listing = LISTINGS[name]
    ctx = Ctx(viewer=_viewer(world, listing.role))
    total = 2 * listing.per_page + 5
    labels = _add(app, listing, ctx, total)
    sign_in_as(client, app, ctx.viewer)
    url, pages, added = listing.url, [], []
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        pages.append(_shown(page, labels + added))
        if len(pages) == 1:
            added = _add(app, listing, ctx, 3)  # arrive while the person reads page 1
        url = _next_link(page, listing.param)
        assert len(pages) < 10, "the pages never end"
    seen = [label for shown in pages for label in shown]
    assert [len(shown) for shown in pages[:3]] == [listing.per_page, listing.per_page, 5 + (
        3 if listing.new_rows_last else 0)]
    assert len(seen) == len(set(seen)), "a row is listed twice"
    assert set(labels) <= set(seen), "a row is missing"
    assert set(seen) - set(labels) == (set(added) if listing.new_rows_last else set())


def test_the_queues_two_lists_keep_each_others_place(app, world, client):
    """The queue pages the questions waiting for clarification and the saved drafts each with
    its own cursor; moving on in one keeps the other where it was."""
    ctx = Ctx(viewer=_viewer(world, "answerer"))
    asked = _add(app, LISTINGS["waiting for clarification"], ctx, 25)
    drafts = _add(app, LISTINGS["lapsed drafts"], ctx, 25)
    sign_in_as(client, app, ctx.viewer)
    first = client.get("/answer/queue").get_data(as_text=True)
    later_drafts = _next_link(first, "drafts")
    page = client.get(later_drafts).get_data(as_text=True)
    assert len(_shown(page, drafts)) == 5 and len(_shown(page, asked)) == 20
    page = client.get(_next_link(page, "asked")).get_data(as_text=True)
    assert len(_shown(page, asked)) == 5
    assert len(_shown(page, drafts)) == 5, "moving on in one list sent the other back"


@pytest.mark.parametrize("name", list(LISTINGS))
def test_a_page_costs_the_same_with_1_row_and_with_200(app, world, client, name):
    """The number of SQL statements a page runs does not grow with the rows behind it."""
    listing = LISTINGS[name]
    ctx = Ctx(viewer=_viewer(world, listing.role))
    sign_in_as(client, app, ctx.viewer)
    with app.app_context():
        engine = db.engine

    def statements() -> list[str]:
        assert client.get(listing.url).status_code == 200  # warm: first-use lookups
        with count_statements(engine) as seen:
            assert client.get(listing.url).status_code == 200
        return seen

    _add(app, listing, ctx, 1)
    one = statements()
    _add(app, listing, ctx, 199)
    many = statements()
    assert len(many) == len(one), "\n".join(many)


#: Cursors edited by hand, cut short, too large, or of another list.
NOT_CURSORS = ("garbage", "-1", "1e9", "%00", "99999999999999999999999", "W10", "WyJ4Il0",
               "eyJhIjoxfQ", "WyIyMDI2LTAzLTAzIiwiZHBfMSJd", "x" * 500)


@pytest.mark.parametrize("name", list(LISTINGS))
def test_a_cursor_that_is_not_one_gives_the_first_page(app, world, client, name):
    """A cursor that is not one of this list's is never an error: the first page."""
    listing = LISTINGS[name]
    ctx = Ctx(viewer=_viewer(world, listing.role))
    labels = _add(app, listing, ctx, 3)
    sign_in_as(client, app, ctx.viewer)
    for cursor in NOT_CURSORS:
        response = client.get(f"{listing.url}?{listing.param}={cursor}")
        assert response.status_code == 200, cursor
        assert set(_shown(response.get_data(as_text=True), labels)) == set(labels), cursor


# --- each list reads along an index matching its filter (PostgreSQL's plans) ------------------

def _plan(app, read, user_id: int, cursor: str | None) -> str:
    """PostgreSQL's plan of the first statement ``read`` runs (the list's own query), with
    sorting and whole-table scans made as costly as they go: a plan that still sorts, or
    filters rows an index should have found, has no index for the list."""
    with app.app_context():
        user = db.session.get(User, user_id)
        return plan_of(lambda: read(db.session, cursor, user),
                       lambda sent: next(pair for pair in sent
                                         if pair[0].lstrip().upper().startswith("SELECT")),
                       off=("sort", "seqscan"))


#: List -> (read a page of it as a user, the index it must read along).
PLANS = {
    "asker questions": (lambda s, c, u: lists.asker_questions(s, u, c),
                        "ix_question_asker_id_id"),
    "lapsed drafts": (lambda s, c, u: lists.lapsed_drafts(s, u, c),
                      "ix_offer_answerer_id_outcome_question_id"),
    "waiting for clarification": (lambda s, c, u: lists.awaiting_clarification(s, u, c),
                                  "ix_question_clarifying"),
    "answerer payouts": (lambda s, c, u: lists.answerer_payouts(s, u, c),
                         "ix_payout_answerer_id_id"),
    "rejected answers": (lambda s, c, u: lists.rejected_answers(s, c), "ix_question_status_id"),
    "waiting applications": (lambda s, c, u: lists.applications(s, True, c),
                             "ix_answerer_application_status_id"),
    "decided applications": (lambda s, c, u: lists.applications(s, False, c),
                             "pk_answerer_application"),
    "answerers": (lambda s, c, u: lists.answerers(s, c), "ix_user_name_id"),
    "payouts": (lambda s, c, u: lists.payouts(s, c), "pk_payout"),
    "audit log": (lambda s, c, u: audit.entries_page(s, c), "pk_audit_log"),
    "messages": (lambda s, c, u: notifications.notices_page(s, u, c),
                 "ix_notification_user_id_id"),
}


@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_each_list_reads_along_an_index(app, world, name):
    """A page neither sorts the rows it filters nor reads the whole table (PostgreSQL), on
    the first page and after a cursor."""
    read, index = PLANS[name]
    user_id = world.user("asker")
    cursor = encode_cursor(["Someone", 10]) if name == "answerers" else "10"
    for page in (None, cursor):
        plan = _plan(app, read, user_id, page)
        assert "Sort" not in plan and "Seq Scan" not in plan, plan
        assert f"using {index} on" in plan, plan


def test_the_payouts_csv_is_streamed_a_batch_at_a_time(app, world, client):
    """The CSV of every payout is sent as it is read (``stream_with_context``), every payout
    once."""
    organizer = world.user("organizer")
    labels = _add(app, LISTINGS["payouts"], Ctx(viewer=organizer), 45)
    sign_in_as(client, app, organizer)
    response = client.get("/organizer/payouts.csv")
    assert response.status_code == 200 and response.is_streamed
    lines = response.get_data(as_text=True).splitlines()
    assert len(lines) == 1 + 45
    assert sorted(label.strip("><") for label in labels) == sorted(
        line.split(",")[4] for line in lines[1:])


def test_my_questions_reads_only_what_the_list_shows(app, world, client):
    """The asker's list reads each question's title, language, price and status, never its
    text (which may be long), and the page shows them."""
    ctx = Ctx(viewer=_viewer(world, "asker"))
    labels = _add(app, LISTINGS["asker questions"], ctx, 3)
    sign_in_as(client, app, ctx.viewer)
    with app.app_context():
        engine = db.engine
    with count_statements(engine) as seen:
        page = client.get("/questions").get_data(as_text=True)
    listed = [s for s in seen if "FROM question" in s]
    assert len(listed) == 1 and "question.title" in listed[0], seen
    assert "question.body" not in listed[0]
    assert all(label.strip("><") in page for label in labels)
