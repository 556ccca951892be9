"""What messages cost (issue 17): the outbox's sending rate, and the outbox row inside a request.

Run ``python -m bench.notifications [--messages N] [--requests N] [--database-url URL]``. The
database is a new SQLite file in a temporary folder unless ``--database-url`` names another
(a scratch database: the bench migrates it and leaves its users, questions and messages there).
A real SMTP server (aiosmtpd) runs in this process on a free loopback port.

Two measurements, each against a baseline taken in the same run on the same machine, so the
ratios mean something on a loaded or slow machine where the absolute numbers do not:

(a) Messages per second: after one untimed message, ``--messages`` rows are written to the
    outbox (``enqueue``, committed) for a few users, then ``dispatch_due`` is timed until every
    one is sent (claim, render in the user's language, SMTP, mark sent). The baseline sends
    the very same bytes with plain ``smtplib``, one connection per message as
    ``upss.mailer.SmtpSender`` does; the ratio says how much of the raw SMTP rate is left
    after the outbox, the rendering and the sender's own work.

(b) The outbox row inside a request: an answerer sends an answer (``POST
    /answer/questions/<id>``, which writes an ``answer_ready`` message) through the Flask test
    client, ``--requests`` times as it is and ``--requests`` times with
    ``notifications.enqueue`` replaced by a function that writes nothing, interleaved (the
    order swaps every pair), each request on its own claimed question. Median milliseconds of
    each and their ratio.

Timing is never asserted anywhere; ``tests/flows/test_bench_notifications.py`` runs this with
tiny numbers and checks only that every message arrived once and the table is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import smtplib
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr

from flask import Flask
from sqlalchemy import select

from upss import accounts, create_app, notifications, questions, settings
from upss.extensions import db
from upss.models import AnswererProfile, Notification, Question, User, utcnow

MAIL_FROM = "UPSS <upss@upss.example>"
BASE_URL = "https://upss.example"
PASSWORD = "correct horse 9"
#: Messages of part (a) go round-robin to this many users.
RECIPIENTS = 5
CSRF_RE = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


# --- the SMTP server ---------------------------------------------------------------------------

class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port in this process that keeps the raw
    bytes of every message it takes; ``take()`` hands them over and forgets them."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"smtp://127.0.0.1:{self.port}"
        self._raw: list[bytes] = []
        self._lock = threading.Lock()
        self._controller = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        with self._lock:
            self._raw.append(envelope.original_content or envelope.content)
        return "250 OK"

    def take(self) -> list[bytes]:
        with self._lock:
            raw, self._raw = self._raw, []
        return raw

    @contextlib.contextmanager
    def running(self) -> Iterator[SmtpSink]:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        try:
            yield self
        finally:
            self._controller.stop()
            self._controller = None


def message_ids(raw: list[bytes]) -> Counter:
    """How often each Message-ID occurs in ``raw``."""
    parser = BytesParser(policy=policy.default)
    return Counter(str(parser.parsebytes(data, headersonly=True)["Message-ID"]) for data in raw)


# --- the app -----------------------------------------------------------------------------------

def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` on the driver the project installs (psycopg 3)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_app(database_url: str, smtp_url: str) -> Flask:
    """The app as the tests configure it (no real Stripe is called), sending to ``smtp_url``,
    on a database migrated to the newest revision (``flask db upgrade``)."""
    from flask_migrate import upgrade

    app = create_app({
        "TESTING": True,
        "UPSS_ENV": "test",
        "SECRET_KEY": "bench-secret",
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "RATELIMIT_ENABLED": False,
        "UPSS_LOCALSTRIPE_URL": "http://127.0.0.1:9",
        "UPSS_USES_LOCALSTRIPE": True,
        "UPSS_STRIPE_SECRET_KEY": "sk_test_upss_localstripe",
        "UPSS_STRIPE_PUBLISHABLE_KEY": "pk_test_upss_localstripe",
        "UPSS_STRIPE_WEBHOOK_SECRET": "whsec_bench_secret",
        "UPSS_STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_bench_connect_secret",
        "UPSS_SMTP_URL": smtp_url,
        "UPSS_MAIL_FROM": MAIL_FROM,
        "UPSS_BASE_URL": BASE_URL,
    })
    with app.app_context():
        upgrade()
    return app


def new_user(role: str, tag: str, number: int) -> User:
    """A user (``role``: asker or answerer) in the current session, not committed."""
    user = accounts.sign_up(db.session, email=f"bench-{tag}-{role}{number}@example.org",
                            name=f"Bench {role.title()} {number}", password=PASSWORD)
    if role == "answerer":
        user.is_answerer = True
        db.session.add(AnswererProfile(user_id=user.id, languages="en", daily_limit=100_000,
                                       open_offer_limit=100_000))
    db.session.flush()
    return user


# --- (a) messages per second -----------------------------------------------------------------

@dataclass
class Sending:
    messages: int
    outbox_seconds: float
    plain_seconds: float
    #: The Message-IDs of the rows written, and how often each reached the server.
    expected: set[str] = field(default_factory=set)
    received: Counter = field(default_factory=Counter)
    #: How many of the baseline's messages the server took.
    plain_received: int = 0

    @property
    def outbox_rate(self) -> float:
        return self.messages / self.outbox_seconds if self.outbox_seconds else 0.0

    @property
    def plain_rate(self) -> float:
        return self.messages / self.plain_seconds if self.plain_seconds else 0.0


def measure_sending(app: Flask, sink: SmtpSink, count: int, tag: str) -> Sending:
    """Part (a): write ``count`` messages, time ``dispatch_due`` until all are sent, then send
    the same bytes with plain smtplib."""
    with app.app_context():
        users = [new_user("asker", tag, n) for n in range(1, RECIPIENTS + 1)]
        # One message to warm up (templates, catalogs), and anything left due in a reused
        # database, go out first, untimed and uncounted.
        notifications.enqueue(db.session, users[0], "answer_ready",
                              {"question_id": 1, "title": "Warming up"})
        db.session.commit()
        notifications.dispatch_due(db.session, utcnow())
        sink.take()
        rows = [notifications.enqueue(db.session, users[n % RECIPIENTS], "answer_ready",
                                      {"question_id": n + 1, "title": f"Bench message {n + 1}"})
                for n in range(count)]
        db.session.commit()
        sender = app.config["UPSS_MAIL_FROM"]
        expected = {notifications.message_id(row.id, sender) for row in rows}

        started = time.perf_counter()
        sent = 0
        while sent < count:
            result = notifications.dispatch_due(db.session, utcnow())
            if not result.attempted:
                break
            sent += result.sent
        outbox_seconds = time.perf_counter() - started
        db.session.remove()
    raw = sink.take()

    # The baseline: the same messages (a Message-ID of their own), sent as SmtpSender does.
    plain = []
    for data in raw:
        headers = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
        plain.append((parseaddr(str(headers["From"]))[1], parseaddr(str(headers["To"]))[1],
                      data.replace(b"<upss-notification-", b"<bench-plain-", 1)))
    started = time.perf_counter()
    for from_address, to_address, data in plain:
        smtp = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
        try:
            smtp.ehlo()
            smtp.sendmail(from_address, [to_address], data)
        finally:
            smtp.quit()
    plain_seconds = time.perf_counter() - started
    return Sending(messages=count, outbox_seconds=outbox_seconds, plain_seconds=plain_seconds,
                   expected=expected, received=message_ids(raw),
                   plain_received=len(sink.take()))


# --- (b) the outbox row inside a request -----------------------------------------------------

@dataclass
class Requests:
    with_ms: list[float]
    without_ms: list[float]
    #: answer_ready rows written per question, for the questions of each variant.
    with_rows: list[int]
    without_rows: list[int]

    @property
    def with_median(self) -> float:
        return statistics.median(self.with_ms)

    @property
    def without_median(self) -> float:
        return statistics.median(self.without_ms)


def _claimed_questions(app: Flask, count: int, tag: str) -> tuple[int, int, list[int]]:
    """One answerer and ``count`` paid questions offered to and claimed by them, through the
    services (no Stripe is called: the PaymentIntent id is made up). Returns the asker's id,
    the answerer's id and the questions' ids."""
    with app.test_request_context():
        asker, answerer = new_user("asker", tag, 0), new_user("answerer", tag, 0)
        rules = settings.current(db.session)
        ids = []
        for n in range(count):
            now = utcnow()
            q = questions.create_question(db.session, asker, title=f"Bench question {n + 1}",
                                          body="How do I make the text larger?",
                                          language="en", topic="other", price_cents=1000)
            intent = f"pi_bench_{uuid.uuid4().hex[:16]}"
            questions.start_payment(db.session, q, asker, intent, now)
            questions.confirm_payment(db.session, q, intent, now)
            questions.offer(db.session, q, answerer, now, rules)
            questions.claim(db.session, q, answerer, now)
            ids.append(q.id)
        db.session.commit()
        asker_id, answerer_id = asker.id, answerer.id
        db.session.remove()
    return asker_id, answerer_id, ids


def _csrf(page: str) -> str:
    match = CSRF_RE.search(page)
    if not match:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


@contextlib.contextmanager
def outbox_off() -> Iterator[None]:
    """While the block runs, ``notifications.enqueue`` writes nothing and returns None (the
    services call it as ``notifications.enqueue``, so they see the replacement)."""
    real = notifications.enqueue
    notifications.enqueue = lambda *args, **kwargs: None
    try:
        yield
    finally:
        notifications.enqueue = real


def measure_requests(app: Flask, pairs: int, tag: str) -> Requests:
    """Part (b): ``pairs`` answers sent with the outbox row and as many without, interleaved,
    after one untimed warm-up request."""
    asker_id, answerer_id, ids = _claimed_questions(app, 2 * pairs + 1, tag)
    warm_up, with_ids, without_ids = ids[0], ids[1::2], ids[2::2]
    client = app.test_client()
    with app.app_context():
        email = db.session.get(User, answerer_id).email
        db.session.remove()
    signed_in = client.post("/sign-in", data={
        "csrf_token": _csrf(client.get("/sign-in").get_data(as_text=True)),
        "email": email, "password": PASSWORD})
    if signed_in.status_code != 302:
        raise RuntimeError(f"sign-in failed ({signed_in.status_code})")
    token = _csrf(client.get(f"/answer/questions/{warm_up}").get_data(as_text=True))

    def send(question_id: int) -> float:
        started = time.perf_counter()
        response = client.post(f"/answer/questions/{question_id}", data={
            "csrf_token": token, "action": "send",
            "a-answer": "Press the A button twice, then choose Larger text."})
        elapsed = time.perf_counter() - started
        if response.status_code != 302:
            raise RuntimeError(f"sending the answer to {question_id} gave "
                               f"{response.status_code}")
        return elapsed * 1000

    send(warm_up)
    with_ms, without_ms = [], []
    for n, (with_id, without_id) in enumerate(zip(with_ids, without_ids, strict=True)):
        for variant in ((with_id, False), (without_id, True))[::1 if n % 2 == 0 else -1]:
            question_id, off = variant
            with outbox_off() if off else contextlib.nullcontext():
                (without_ms if off else with_ms).append(send(question_id))

    with app.app_context():
        written = Counter(json.loads(data)["question_id"] for data in db.session.scalars(
            select(Notification.data).where(Notification.kind == "answer_ready",
                                            Notification.user_id == asker_id)))
        answered = db.session.scalars(select(Question.status).where(Question.id.in_(ids)))
        if set(answered) != {"answered"}:
            raise RuntimeError("not every question was answered")
        db.session.remove()
    return Requests(with_ms=with_ms, without_ms=without_ms,
                    with_rows=[written[q] for q in with_ids],
                    without_rows=[written[q] for q in without_ids])


# --- the run -----------------------------------------------------------------------------------

@dataclass
class Result:
    database: str
    sending: Sending
    requests: Requests

    def table(self) -> str:
        s, r = self.sending, self.requests
        lines = [
            ("database", self.database),
            ("messages", f"{s.messages}"),
            ("messages/s, outbox (dispatch_due)", f"{s.outbox_rate:.1f}"),
            ("messages/s, plain smtplib (baseline)", f"{s.plain_rate:.1f}"),
            ("ratio outbox / plain smtplib", _ratio(s.outbox_rate, s.plain_rate)),
            ("requests per variant", f"{len(r.with_ms)}"),
            ("request median ms, with outbox row", f"{r.with_median:.2f}"),
            ("request median ms, without (baseline)", f"{r.without_median:.2f}"),
            ("ratio with / without outbox row", _ratio(r.with_median, r.without_median)),
        ]
        width = max(len(name) for name, _ in lines)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in lines)


def _ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}" if baseline else "n/a"


def run(messages: int, requests: int, database_url: str | None = None) -> Result:
    """Both measurements on ``database_url`` (a new SQLite file when None)."""
    tag = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="upss-bench-"))
            database_url = f"sqlite:///{folder}/bench.sqlite"
        sink = stack.enter_context(SmtpSink().running())
        app = make_app(database_url, sink.url)
        try:
            sending = measure_sending(app, sink, messages, tag)
            timed = measure_requests(app, requests, tag)
            with app.app_context():
                database = db.engine.dialect.name
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    return Result(database=database, sending=sending, requests=timed)


def main(argv: list[str] | None = None) -> Result:
    """Parse the options, run, print the table; returns the result (for the smoke test)."""
    parser = argparse.ArgumentParser(prog="python -m bench.notifications",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300,
                        help="messages to send in part (a) (default 300)")
    parser.add_argument("--requests", type=int, default=50,
                        help="requests per variant in part (b) (default 50)")
    parser.add_argument("--database-url", default=None,
                        help="a scratch database (default: SQLite in a temporary folder)")
    options = parser.parse_args(argv)
    if options.messages < 1 or options.requests < 1:
        parser.error("--messages and --requests must be at least 1")
    result = run(options.messages, options.requests, options.database_url)
    print(result.table())
    return result


if __name__ == "__main__":
    main()
