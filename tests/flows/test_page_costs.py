"""Every GET page costs the same number of SQL statements with a little data as with 200 more
rows of what it shows: no query per row, no read that grows with a table (issue 19).

One world per database serves every page (a module fixture: a world per page would take
minutes). It is made through the services: the asker has one
question in each state (with its events, offers, draft and messages), a tip, an export; the
ledger has postings and a check; there is a payout batch with its SEPA file marked sent, an
application waiting and one decided, notifications and audit rows. Every page is opened once
to settle what opening it changes (a payment started, a Stripe account made), then measured as
the person who may open it (anonymous, the asker, an applicant, the answerer, the organizer):
fetched once (warm-up) and counted once. Then ``ROWS`` more rows of every kind are added in
bulk (the asker's questions in every state with their events, offers, drafts and messages;
tips and messages on the questions whose pages are measured; ledger postings through
``ledger.post`` and a new check; payouts; notifications; sessions; audit rows; applications;
answerers; card disputes; reconciliation differences) and every page is measured again.

Each page is its own test of the two counts; a GET route that is neither measured here nor
listed in ``SKIPPED`` fails ``test_every_get_route_is_measured_or_skipped``. (The lists' paging
itself is ``test_paging``'s, the ledger pages' ``test_ledger_checks``'s.)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, insert, inspect, select

from tests.conftest import (
    DATABASES,
    World,
    _base_config,
    _truncate_postgres,
    count_statements,
    sign_in_as,
    sqlite_copy,
)
from tests.flows.test_fuzz_forms import Questions
from tests.flows.test_payouts import IBAN_NO, earn
from upss import (
    account_tokens,
    create_app,
    data_export,
    ledger,
    ledger_check,
    notifications,
    payments,
    payouts,
    questions,
    sepa,
    sessions,
    vetting,
)
from upss.extensions import db
from upss.models import (
    AnswerDraft,
    AnswererApplication,
    AnswererProfile,
    AuditLog,
    LedgerAccount,
    LedgerTransaction,
    Message,
    Notification,
    NotificationPreference,
    Offer,
    Payout,
    PayoutBatch,
    Question,
    QuestionEvent,
    ReconciliationRun,
    StripeDispute,
    Tip,
    User,
    UserSession,
)

#: How many rows of each kind the second measure adds.
ROWS = 200


# --- the world ---------------------------------------------------------------------------------

@dataclass
class Scene:
    """The people and the objects the pages with a path parameter show."""

    now: datetime
    organizer: int = 0
    asker: int = 0
    #: Paid through Stripe Connect (not set up until the refresh page makes the account).
    answerer: int = 0
    #: An asker whose application to answer waits for a decision.
    applicant: int = 0
    #: Moves to a new address each time the new-address link is opened.
    mover: int = 0
    application: int = 0
    #: State -> the asker's question in it (answered by ``answerer`` where it has one).
    question: dict[str, int] = field(default_factory=dict)
    #: A tip on the closed question, waiting to be paid.
    tip: int = 0
    #: The answerer's payout, and the batch with a SEPA file (of someone else's).
    payout: int = 0
    batch: int = 0
    export: int = 0
    addresses: itertools.count = field(default_factory=lambda: itertools.count(1))


def build(app) -> Scene:
    """The world with a little of everything, made through the services."""
    now = datetime.now(UTC)
    world = World(app)
    s = Scene(now)
    s.organizer = world.user("organizer")
    s.asker = world.user("asker")
    s.answerer = world.answerer(payout_method="connect")
    s.applicant = world.applicant()
    s.mover = world.user("asker")
    made = Questions(app, world, s.answerer, s.asker)
    s.question = {"queued": world.paid_question(paid_at=now, asker_id=s.asker),
                  "offered": made.offered(), "claimed": made.claimed(),
                  "answered": made.answered(), "clarifying": made.clarifying(),
                  "closed": made.closed(), "disputed": made.disputed(),
                  "refunded": world.paid_question(paid_at=now, asker_id=s.asker,
                                                  real_stripe=True)}
    world.act(payments.cancel, s.question["refunded"], s.asker, now)
    decided = world.applicant()
    # Someone else is due a payout: the batch pays them by SEPA.
    app.config.update(UPSS_PAYOUT_AFTER_DAYS=0, UPSS_PAYOUT_MINIMUM_CENTS=1)
    earn(app, world, world.answerer(iban=IBAN_NO), 3000)
    with app.test_request_context():
        session = db.session
        asker, organizer = session.get(User, s.asker), session.get(User, s.organizer)
        # "draft": the pay page starts its payment (on its first opening); "unpaid" stays one.
        for state in ("draft", "unpaid"):
            s.question[state] = questions.create_question(
                session, asker, title=f"Not paid {state}", body="Body", language="en",
                topic="other", price_cents=1000).id
        closed = session.get(Question, s.question["closed"])
        s.tip = payments.start_tip(session, closed, asker, 500).id
        session.add(Tip(question_id=closed.id, answerer_id=s.answerer, amount_cents=300,
                        currency="EUR", status="paid", paid_at=now))
        # The answerer picked the queued question up once and ran out of time: a lapsed draft.
        session.add_all([
            Offer(question_id=s.question["queued"], answerer_id=s.answerer, offered_at=now,
                  expires_at=now, outcome="lapsed", resolved_at=now),
            AnswerDraft(question_id=s.question["queued"], answerer_id=s.answerer,
                        body="Half an answer")])
        applications = {a.user_id: a for a in session.scalars(select(AnswererApplication))}
        s.application = applications[s.applicant].id
        vetting.approve(session, applications[decided], organizer, method="Seen a letter",
                        verified_on=date.today(), note="", now=now)
        # (At the real time: the batch pays what was settled before it.)
        batch = payouts.run_batch_audited(session, datetime.now(UTC), organizer)
        session.commit()
        sepa.mark_file_sent(session, batch, organizer, now)
        s.batch = batch.id
        mine = Payout(batch_id=batch.id, answerer_id=s.answerer, amount_cents=900,
                      currency="EUR", method="connect", status="sent",
                      stripe_transfer_id="tr_scene")
        session.add(mine)
        session.add_all([
            ReconciliationRun(started_at=now, finished_at=now, differences=json.dumps(
                [{"what": "difference-0", "stripe_cents": 1, "ledger_cents": 0,
                  "currency": "EUR"}])),
            StripeDispute(id="dp_scene", amount_cents=100, currency="EUR",
                          status="needs_response", evidence_due_at=now + timedelta(days=3))])
        s.export = data_export.request_export(session, asker, now).id
        # One message to the asker that the mail server refused (the preferences page says so).
        refused = session.scalar(select(Notification).where(Notification.user_id == s.asker)
                                 .order_by(Notification.id))
        refused.status, refused.last_error = "failed", "550 no such mailbox"
        session.flush()
        s.payout = mine.id
        ledger_check.check_now(session, "full", now)
        session.commit()
    return s


def _users(n: int, prefix: str, **flags) -> list[int]:
    """``n`` users stored directly (no password hashing: these never sign in)."""
    return _insert(User, [{"email": f"{prefix}{i}@example.org", "name": f"{prefix} {i}",
                           "password_hash": "-", **flags} for i in range(n)])


def _insert(model, rows: list[dict]) -> list[int]:
    """Insert ``rows`` in one statement per batch; their ids in the same order."""
    if not rows:
        return []
    return list(db.session.scalars(
        insert(model).returning(model.id, sort_by_parameter_order=True), rows))


def _copy(row, **changes) -> dict:
    """The column values of ``row`` but its id, with ``changes``."""
    return {**{a.key: getattr(row, a.key) for a in inspect(type(row)).column_attrs
               if a.key != "id"}, **changes}


def _by_question(model, question_ids) -> dict[int, list]:
    found = defaultdict(list)
    for row in db.session.scalars(select(model).where(model.question_id.in_(question_ids))):
        found[row.question_id].append(row)
    return found


def grow(s: Scene, n: int) -> dict[str, int]:
    """Add about ``n`` rows of every kind the pages read; returns how many rows each table
    got."""
    counted = (Question, QuestionEvent, Offer, AnswerDraft, Message, Tip, Notification,
               UserSession, AuditLog, AnswererApplication, AnswererProfile, Payout,
               StripeDispute, LedgerTransaction, LedgerAccount)

    def counts() -> dict[str, int]:
        return {m.__name__: db.session.scalar(select(func.count()).select_from(m))
                for m in counted}

    session, now = db.session, s.now
    before = counts()
    # New people: answerers (half paid by SEPA, half through Connect not set up: held), and
    # applicants (half waiting, half decided).
    answerers = _users(n, "grown-answerer", is_answerer=True)
    session.execute(insert(AnswererProfile), [
        {"user_id": user, "languages": "en", **(
            {"payout_method": "connect"} if i % 2 else {"iban": IBAN_NO,
                                                       "account_holder": "Grown"})}
        for i, user in enumerate(answerers)])
    _insert(AnswererApplication, [
        {"user_id": user, "status": "pending" if i % 2 else "approved", "basis": "age",
         "languages": "en", "submitted_at": now,
         **({} if i % 2 else {"decided_at": now, "decided_by_id": s.organizer})}
        for i, user in enumerate(_users(n, "grown-applicant"))])

    # The asker's questions in every state, each with its events, offers, drafts, messages.
    base = session.scalars(select(Question).where(Question.asker_id == s.asker)
                           .order_by(Question.id)).all()
    sources = [base[i % len(base)] for i in range(n)]
    grown = _insert(Question, [
        _copy(q, title=f"Grown {i}", payment_intent_id=q.payment_intent_id and f"pi_grown_{i}")
        for i, q in enumerate(sources)])
    pairs = list(zip(grown, (q.id for q in sources), strict=True))
    for model in (QuestionEvent, Offer, Message):
        of = _by_question(model, [q.id for q in base])
        _insert(model, [_copy(row, question_id=new) for new, old in pairs for row in of[old]])
    drafts = _by_question(AnswerDraft, [q.id for q in base])
    rows = [_copy(row, question_id=new) for new, old in pairs for row in drafts[old]]
    if rows:
        session.execute(insert(AnswerDraft), rows)

    # On the questions whose own pages are measured: tips and a long thread.
    _insert(Tip, [{"question_id": s.question["closed"], "answerer_id": s.answerer,
                   "amount_cents": 100 + i, "currency": "EUR",
                   "status": ("paid", "awaiting_payment", "failed")[i % 3],
                   "paid_at": now if i % 3 == 0 else None} for i in range(n)])
    thread = session.scalars(select(Message).where(
        Message.question_id == s.question["clarifying"])).all()
    _insert(Message, [_copy(thread[i % len(thread)], body=f"More {i}") for i in range(n)])

    # Everyone's notifications (copies of the ones the services wrote), sessions, choices.
    people = (s.asker, s.answerer, s.organizer, s.applicant)
    for user in people:
        mine = session.scalars(select(Notification).where(Notification.user_id == user)
                               ).all() or session.scalars(select(Notification).where(
                                   Notification.user_id == s.asker)).all()
        statuses = ("pending", "sent", "failed", "skipped", "digest", "digested")
        _insert(Notification, [
            _copy(mine[i % len(mine)], user_id=user, status=statuses[i % len(statuses)],
                  read_at=None, created_at=now, next_attempt_at=now) for i in range(n)])
        _insert(UserSession, [
            {"token_hash": hashlib.sha256(f"grown-{user}-{i}".encode()).hexdigest(),
             "user_id": user, "created_at": now, "last_seen_at": now} for i in range(n)])
    chosen = [{"user_id": s.asker, "kind": kind.name, "mode": "digest"}
              for kind in notifications.kinds_for(session.get(User, s.asker))
              if "digest" in kind.modes
              and not session.get(NotificationPreference, (s.asker, kind.name))]
    if chosen:
        session.execute(insert(NotificationPreference), chosen)

    # The ledger: payments into the grown questions' escrow, half of each split to the
    # answerer and to a grown answerer (both stay open), and a check of what is new.
    for i, question in enumerate(grown[:n // 2]):
        ledger.post(session, f"grown-payment:{question}", "Grown payment",
                    [(ledger.STRIPE_BALANCE, 1000), (ledger.escrow_account(question), -1000)],
                    "EUR", now=now)
        ledger.post(session, f"grown-settle:{question}", "Grown split",
                    [(ledger.escrow_account(question), 500),
                     (ledger.payable_account(s.answerer), -200),
                     (ledger.payable_account(answerers[i]), -200),
                     (ledger.COMMISSION, -100)], "EUR", now=now)
    ledger_check.check_now(session, "new", now)

    # Payouts: the answerer's through Connect in every status, the grown answerers' by SEPA in
    # a file marked sent (each with its "returned by the bank" form), and a file not sent yet.
    xml = session.get(PayoutBatch, s.batch).sepa_xml
    sent, connect, waiting = (PayoutBatch(currency="EUR", created_by_id=s.organizer,
                                          sepa_xml=xml, sepa_marked_sent_at=now,
                                          sepa_marked_sent_by_id=s.organizer),
                              PayoutBatch(currency="EUR", created_by_id=s.organizer),
                              PayoutBatch(currency="EUR", created_by_id=s.organizer,
                                          sepa_xml=xml))
    session.add_all([sent, connect, waiting])
    session.flush()
    statuses = ("sent", "failed", "unknown", "sending")
    _insert(Payout, [
        {"batch_id": connect.id, "answerer_id": s.answerer, "amount_cents": 100 + i,
         "currency": "EUR", "method": "connect", "status": statuses[i // 2 % 4],
         "failure_code": "transfer_refused" if statuses[i // 2 % 4] == "failed" else None}
        if i % 2 else
        {"batch_id": (sent, waiting)[i % 4 // 2].id, "answerer_id": answerers[i],
         "amount_cents": 100 + i, "currency": "EUR", "method": "sepa",
         "status": "sent" if i % 4 == 0 else "awaiting_bank", "iban": IBAN_NO}
        for i in range(n)])

    # The organizer's: audit rows, card disputes, reconciliation differences.
    _insert(AuditLog, [{"actor_id": (s.organizer, answerers[i])[i % 2], "at": now,
                        "action": "change", "target": f"grown-{i}"} for i in range(n)])
    session.add_all([StripeDispute(id=f"dp_grown_{i}", amount_cents=100, currency="EUR",
                                   status="needs_response",
                                   evidence_due_at=now + timedelta(days=i % 5))
                     for i in range(n)])
    run = session.scalar(select(ReconciliationRun).order_by(ReconciliationRun.id.desc()))
    run.differences = json.dumps(json.loads(run.differences) + [
        {"what": f"difference-{i}", "stripe_cents": i, "ledger_cents": 0, "currency": "EUR"}
        for i in range(1, n)])
    session.flush()
    after = counts()
    return {name: after[name] - before[name] for name in after}


# --- the pages ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    endpoint: str
    #: Who opens it: "anonymous", "asker", "applicant", "answerer" or "organizer".
    role: str
    #: The address, or a function of the scene that makes it (in an app context) each time.
    url: str | Callable[[Scene], str]
    status: int = 200


def _question(state: str, path: str = "/questions/{}") -> Callable[[Scene], str]:
    return lambda s: path.format(s.question[state])


def _reset_link(s: Scene) -> str:
    user = db.session.get(User, s.asker)
    return "/reset-password/" + account_tokens.make(
        "reset", user.id, account_tokens.password_fingerprint(user))


def _confirm_link(s: Scene) -> str:
    user = db.session.get(User, s.asker)
    return "/confirm/" + account_tokens.make("confirm", user.id, user.email)


def _new_address_link(s: Scene) -> str:
    """A link to a new address of ``mover`` (each one opened moves the account)."""
    user = db.session.get(User, s.mover)
    return "/confirm-new-email/" + account_tokens.make(
        "email_change", user.id, user.email, f"moved{next(s.addresses)}@example.org")


def _unsubscribe_link(s: Scene) -> str:
    kind = next(k for k in notifications.KINDS.values() if k.optional and k.recipient == "asker")
    return "/unsubscribe/" + notifications.unsubscribe_token(s.asker, kind.name)


PAGES: dict[str, Page] = {
    # Anyone.
    "home": Page("main.home", "anonymous", "/"),
    "favicon": Page("main.favicon", "anonymous", "/favicon.ico", 301),
    "sign in": Page("auth.sign_in", "anonymous", "/sign-in"),
    "sign up": Page("auth.sign_up", "anonymous", "/sign-up"),
    "forgot password": Page("account.forgot_password", "anonymous", "/forgot-password"),
    "reset password link": Page("account.reset_password", "anonymous", _reset_link),
    "confirm address link": Page("account.confirm_email", "anonymous", _confirm_link),
    "new address link": Page("account.confirm_email_change", "anonymous", _new_address_link),
    "unsubscribe link": Page("mail.unsubscribe", "anonymous", _unsubscribe_link),
    "development mail": Page("devmail.received", "anonymous", "/dev/mail"),
    # The asker.
    "help": Page("main.help_page", "asker", "/help"),
    "ask": Page("asker.ask", "asker", "/ask"),
    "my questions": Page("asker.my_questions", "asker", "/questions"),
    "question answered": Page("asker.question", "asker", _question("answered")),
    "question clarifying": Page("asker.question", "asker", _question("clarifying")),
    "question closed and tipped": Page("asker.question", "asker", _question("closed")),
    "question status": Page("asker.question_status", "asker",
                            _question("answered", "/questions/{}/status.json")),
    "receipt": Page("asker.receipt", "asker", _question("closed", "/questions/{}/receipt")),
    "pay": Page("paying.pay", "asker", _question("draft", "/questions/{}/pay")),
    "pay a tip": Page("paying.pay_tip", "asker", lambda s: f"/tips/{s.tip}/pay"),
    "messages": Page("notices.messages", "asker", "/messages"),
    "message choices": Page("notices.choices", "asker", "/account/messages"),
    "preferences": Page("auth.preferences", "asker", "/account/preferences"),
    "change password": Page("account.change_password", "asker", "/account/password"),
    "change address": Page("account.change_email", "asker", "/account/email"),
    "my data": Page("account_data.page", "asker", "/account/data"),
    "my data download": Page("account_data.download", "asker",
                             lambda s: f"/account/data/{s.export}/download"),
    "delete account asker": Page("account_closing.page", "asker", "/account/delete"),
    "apply to answer": Page("answerer.apply", "asker", "/answer/apply"),
    # An applicant.
    "my application": Page("answerer.application", "applicant", "/answer/application"),
    # The answerer.
    "answer queue": Page("answerer.queue", "answerer", "/answer/queue"),
    "answer page claimed": Page("answerer.question", "answerer",
                                _question("claimed", "/answer/questions/{}")),
    "answer page clarifying": Page("answerer.question", "answerer",
                                   _question("clarifying", "/answer/questions/{}")),
    "earnings": Page("answerer.earnings", "answerer", "/answer/earnings"),
    "my payout": Page("answerer.payout", "answerer", lambda s: f"/answer/payouts/{s.payout}"),
    "connect refresh": Page("answerer.connect_refresh", "answerer",
                            "/answer/earnings/connect/refresh", 302),
    "connect return": Page("answerer.connect_return", "answerer",
                           "/answer/earnings/connect/return", 302),
    "delete account answerer": Page("account_closing.page", "answerer", "/account/delete"),
    # The organizer.
    "overview": Page("organizer.overview", "organizer", "/organizer/"),
    "settings": Page("organizer.settings", "organizer", "/organizer/settings"),
    "traffic": Page("organizer.traffic", "organizer", "/organizer/traffic"),
    "rejected answers": Page("organizer.disputes", "organizer", "/organizer/disputes"),
    "applications": Page("organizer.applications", "organizer", "/organizer/applications"),
    "application": Page("organizer.application", "organizer",
                        lambda s: f"/organizer/applications/{s.application}"),
    "answerers": Page("organizer.answerers", "organizer", "/organizer/answerers"),
    "audit log": Page("organizer.audit_log", "organizer", "/organizer/audit-log"),
    "ledger": Page("money.ledger", "organizer", "/organizer/ledger"),
    "open escrow accounts": Page("money.open_accounts", "organizer",
                                 "/organizer/ledger/open/escrow"),
    "open payable accounts": Page("money.open_accounts", "organizer",
                                  "/organizer/ledger/open/payable"),
    "statement": Page("money.statement", "organizer",
                      "/organizer/ledger/accounts/stripe_balance"),
    "statement newest": Page("money.statement", "organizer", lambda s: (
        f"/organizer/ledger/accounts/{ledger.payable_account(s.answerer)}?newest=1")),
    "ledger csv": Page("money.entries_csv", "organizer", "/organizer/ledger/entries.csv"),
    "payouts": Page("money.payouts", "organizer", "/organizer/payouts"),
    "payouts csv": Page("money.payouts_csv", "organizer", "/organizer/payouts.csv"),
    "sepa file": Page("money.sepa_file", "organizer",
                      lambda s: f"/organizer/payouts/{s.batch}/sepa.xml"),
    "reconciliation": Page("money.reconciliation", "organizer", "/organizer/reconciliation"),
}

#: GET routes no page here opens, and why.
SKIPPED = {
    "static": "Flask's own view of the files in static/: no application code, no database",
}

#: Pages whose count grows with the rows (each a bug to fix; strict: fixing it fails here
#: until its mark goes).
GROWS: dict[str, str] = {}


# --- measuring ---------------------------------------------------------------------------------

@dataclass
class Cost:
    status: int = 0
    #: The endpoint the address reached.
    endpoint: str = ""
    statements: list[str] = field(default_factory=list)
    #: The length of the body (more rows shown: a longer page).
    size: int = 0
    #: What the request raised, if it did.
    error: str = ""


@dataclass
class Measured:
    one: dict[str, Cost]
    many: dict[str, Cost]
    #: Table -> rows the second measure added.
    added: dict[str, int]


def _address(app, page: Page, scene: Scene) -> str:
    if isinstance(page.url, str):
        return page.url
    with app.app_context():
        return page.url(scene)


def _get(client, url: str):
    """GET ``url`` and read the whole body (a streamed one runs its queries as it is read)."""
    response = client.get(url)
    response.get_data()
    return response


def measure(app, clients: dict, scene: Scene, warm_only: bool = False) -> dict[str, Cost]:
    """Each page fetched once (warm-up), then once more with its statements counted."""
    with app.app_context():
        engine = db.engine
    adapter = app.url_map.bind("localhost")
    costs = {}
    for name, page in PAGES.items():
        client, cost = clients[page.role], Cost()
        try:
            _get(client, _address(app, page, scene))
            if warm_only:
                continue
            url = _address(app, page, scene)
            cost.endpoint = adapter.match(urlsplit(url).path, method="GET")[0]
            with count_statements(engine) as seen:
                response = _get(client, url)
            cost.status, cost.size = response.status_code, len(response.get_data())
            cost.statements = list(seen)
        except Exception:  # noqa: BLE001 - kept for this page's own test to report
            cost.error = traceback.format_exc()
        costs[name] = cost
    return costs


def _database_url(request, tmp_path_factory) -> str:
    """A migrated, empty database of this module's own (``conftest.database_url``'s ways)."""
    if request.param == "sqlite":
        return sqlite_copy(request.getfixturevalue("sqlite_template"),
                           tmp_path_factory.mktemp("page-costs"))
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture(scope="module", params=DATABASES)
def measured(request, tmp_path_factory, localstripe_url) -> Measured:
    """Every page measured in the small world, then again after ``grow`` (one world per
    database for all the pages: building it per page would take minutes)."""
    app = create_app(_base_config(_database_url(request, tmp_path_factory), localstripe_url))
    # A session's last_seen_at is written at most once a minute, by whichever request comes
    # first: on a slow machine that could be a counted one. Not a cost of the page: never here.
    renewals = mock.patch.object(sessions, "RENEW_EVERY", timedelta(days=1))
    renewals.start()
    try:
        scene = build(app)
        clients = {"anonymous": app.test_client()}
        for role in ("asker", "applicant", "answerer", "organizer"):
            clients[role] = app.test_client()
            sign_in_as(clients[role], app, getattr(scene, role))
        measure(app, clients, scene, warm_only=True)  # what opening a page changes, done
        one = measure(app, clients, scene)
        with app.app_context():
            added = grow(scene, ROWS)
            db.session.commit()
        many = measure(app, clients, scene)
        with app.app_context():
            report = ledger.verify(db.session)
        assert report.ok, f"ledger invariants broken: {report.problems}"
        yield Measured(one, many, added)
    finally:
        renewals.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- the tests ---------------------------------------------------------------------------------

def _growth(one: Cost, many: Cost) -> str:
    """The counts, and the statements run more (+) or less (-) often with the rows."""
    more = Counter(many.statements) - Counter(one.statements)
    fewer = Counter(one.statements) - Counter(many.statements)
    return "\n".join([f"{len(one.statements)} statements with a little data ({one.size} bytes), "
                      f"{len(many.statements)} with {ROWS} more rows ({many.size} bytes):",
                      *(f"+{n}x {_short(s)}" for s, n in more.most_common()),
                      *(f"-{n}x {_short(s)}" for s, n in fewer.most_common())])


def _short(statement: str) -> str:
    """A statement's start and its end (where its WHERE is), without the long column list."""
    return statement if len(statement) <= 300 else f"{statement[:100]} ... {statement[-180:]}"


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=GROWS[name]))
    if name in GROWS else name for name in PAGES])
def test_a_page_costs_the_same_with_a_little_data_and_with_200_more_rows(measured, name):
    page = PAGES[name]
    one, many = measured.one[name], measured.many[name]
    for cost in (one, many):
        assert not cost.error, cost.error
        assert (cost.endpoint, cost.status) == (page.endpoint, page.status)
    assert len(many.statements) == len(one.statements), _growth(one, many)


def test_the_second_measure_has_200_more_rows_of_each_kind(measured):
    """``grow`` added what it says, so a page's equal counts mean something."""
    assert {table: added for table, added in measured.added.items() if added < ROWS // 2} == {}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_get_route_is_measured_or_skipped(app):
    """A new GET route fails here until a page above opens it (or ``SKIPPED`` says why not)."""
    routes = {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    measured = {page.endpoint for page in PAGES.values()}
    assert routes - measured - set(SKIPPED) == set(), "a GET route is not measured"
    assert (measured | set(SKIPPED)) - routes == set(), "a page here names no GET route"
    assert measured.isdisjoint(SKIPPED)
