"""Shared fixtures: databases (SQLite and PostgreSQL), a real localstripe, the app and helpers.

Every test that uses ``app`` runs once on SQLite and once on PostgreSQL. Both databases are built
with the real migrations (``flask db upgrade``), once per session; each test then gets a fresh
copy (SQLite: a copied file; PostgreSQL: emptied tables, sequences restarted). Under
``CI=true`` a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from upss import create_app
from upss.extensions import db
from upss.installation import new_installation_id

pytest_plugins = ["tests.stripe_contract"]

POSTGRES_ADMIN_URL = os.environ.get(
    "UPSS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
DATABASES = ("sqlite", "postgresql")


#: Files that take minutes, started first: with two workers and whole files per worker
#: (``--dist loadfile``), a long file at the end of the queue leaves the other worker idle.
SLOW_FILES_FIRST = ("tests/flows/test_readme.py", "tests/flows/test_fuzz_forms.py")


def pytest_collection_modifyitems(session, config, items):
    """Move ``SLOW_FILES_FIRST`` to the front of the run (a stable sort keeps every other
    test's order)."""
    def slow_first(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOW_FILES_FIRST.index(path) if path in SLOW_FILES_FIRST else len(
            SLOW_FILES_FIRST)

    items.sort(key=slow_first)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def compiled_translations():
    """Build the .mo catalogs from the .po files, as `make` does, so pytest alone works too
    (skipped when every catalog is already newer than its source)."""
    from babel.messages.frontend import CommandLineInterface

    translations = Path(__file__).resolve().parents[1] / "translations"
    sources = list(translations.glob("*/LC_MESSAGES/messages.po"))
    if sources and all(po.with_suffix(".mo").exists()
                       and po.with_suffix(".mo").stat().st_mtime >= po.stat().st_mtime
                       for po in sources):
        return
    CommandLineInterface().run(["pybabel", "-q", "compile", "-d", str(translations)])


@contextlib.contextmanager
def devstripe_process():
    """A local Stripe (``python -m upss.devstripe``) on a free loopback port while the block
    runs; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "upss.devstripe", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def localstripe_url():
    """The session's local Stripe (upss.devstripe, localstripe and more)."""
    with devstripe_process() as url:
        yield url


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(_base_config(url, "http://127.0.0.1:9"))
    with app.app_context():
        upgrade()
        db.engine.dispose()


def _base_config(database_url: str, localstripe_url: str) -> dict:
    return {
        "TESTING": True,
        "UPSS_ENV": "test",
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "RATELIMIT_ENABLED": False,
        "UPSS_LOCALSTRIPE_URL": localstripe_url,
        "UPSS_USES_LOCALSTRIPE": True,
        "UPSS_STRIPE_SECRET_KEY": "sk_test_upss_localstripe",
        "UPSS_STRIPE_PUBLISHABLE_KEY": "pk_test_upss_localstripe",
        "UPSS_STRIPE_WEBHOOK_SECRET": "whsec_test_secret",
        "UPSS_STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_test_connect_secret",
    }


#: A folder to keep the migrated SQLite template in between sessions (mutation testing starts
#: one session per mutant); the file's name carries a hash of the migrations.
TEMPLATE_CACHE = os.environ.get("UPSS_TEST_TEMPLATE_CACHE")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """The migrated, empty SQLite database every SQLite test copies."""
    if not TEMPLATE_CACHE:
        path = tmp_path_factory.mktemp("db") / "template.sqlite"
        _migrate(f"sqlite:///{path}")
        return path
    migrations = Path(__file__).resolve().parents[1] / "migrations"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(
        migrations.rglob("*.py")))).hexdigest()[:16]
    path = Path(TEMPLATE_CACHE) / f"template-{digest}.sqlite"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        building = path.with_name(f"{path.name}.{os.getpid()}")
        _migrate(f"sqlite:///{building}")
        os.replace(building, path)
    return path


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this session, migrated; dropped at the end."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        admin.dispose()
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the PostgreSQL tests are required)")
        pytest.skip(message)
    name = f"upss_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        _migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """A database with no tables at all (for migration tests), on SQLite and on PostgreSQL."""
    import sqlalchemy as sa

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite'}"
        return
    request.getfixturevalue("postgres_url")  # skips, or fails under CI, without PostgreSQL
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"upss_empty_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    """Empty every table of the session's PostgreSQL database and restart its sequences, as
    ``TRUNCATE … RESTART IDENTITY CASCADE`` would, with ``DELETE``: TRUNCATE makes new files
    for every table, index and sequence (~100 of them), about a second per test and more with
    each migration; deleting the few rows a test leaves takes a tenth of that. Triggers and
    foreign keys are off while it runs (``session_replication_role``; the test user is a
    superuser), so the ledger's guards (its rows refuse changes, its tables TRUNCATE) let its
    rows go and the order of tables does not matter, as in a restore from backup."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'")).scalars().all()
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        conn.execute(sa.text("; ".join(f'DELETE FROM "{t}"' for t in tables)))
        conn.execute(sa.text(
            "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, start_value,"
            " false) FROM pg_sequences WHERE schemaname = 'public'"))
    engine.dispose()


def sqlite_copy(template, directory) -> str:
    """A fresh copy of the migrated SQLite template in ``directory``; returns its URL.

    Each copy is its own installation, so Stripe idempotency keys never collide at the
    session's shared local Stripe (PostgreSQL gets a new id after its truncation).
    """
    path = directory / "upss.sqlite"
    shutil.copy(template, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE installation SET installation_id = ?", (new_installation_id(),))
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    """A migrated, empty database: once SQLite, once PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def app_config(database_url, localstripe_url):
    """Override in a test module to change settings."""
    return _base_config(database_url, localstripe_url)


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def stripe_client(app):
    """A stripe-python client on the app's local Stripe, to see what Stripe holds."""
    import stripe

    return stripe.StripeClient(app.config["UPSS_STRIPE_SECRET_KEY"],
                               base_addresses={"api": app.config["UPSS_LOCALSTRIPE_URL"]})


def detached(app, model, key):
    """The ``model`` row ``key``, read in its own app context and detached, for assertions."""
    with app.app_context():
        row = db.session.get(model, key)
        if row is not None:
            db.session.expunge(row)
        return row


def disable_ledger_guards(session) -> None:
    """Switch off the triggers that keep the ledger append-only, as someone with database
    access going around the application would (``enable_ledger_guards`` undoes it).

    PostgreSQL's database outlives the test, so its triggers are only disabled; each SQLite
    test has its own copy of the database, so they are dropped.
    """
    import sqlalchemy as sa

    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("ALTER TABLE ledger_entry DISABLE TRIGGER USER"))
        session.execute(sa.text("ALTER TABLE ledger_transaction DISABLE TRIGGER USER"))
    else:
        for name in ("ledger_entry_no_update", "ledger_transaction_no_update"):
            session.execute(sa.text(f"DROP TRIGGER {name}"))


def enable_ledger_guards(session) -> None:
    import sqlalchemy as sa

    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("ALTER TABLE ledger_entry ENABLE TRIGGER USER"))
        session.execute(sa.text("ALTER TABLE ledger_transaction ENABLE TRIGGER USER"))
        session.commit()


@pytest.fixture
def stripe_faults(localstripe_url):
    """Add faults to the local Stripe (``upss.devstripe``); all are cleared after the test."""

    def add(**spec):
        requests.post(f"{localstripe_url}/_upss/faults", json=spec, timeout=5).raise_for_status()

    yield add
    requests.delete(f"{localstripe_url}/_upss/faults", timeout=5).raise_for_status()


@pytest.fixture(autouse=True)
def ledger_invariants(request):
    """After every test with an app: the ledger balances and cached balances equal entries."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    yield
    if request.node.get_closest_marker("ledger_tampered"):
        return
    from upss import ledger

    with app.app_context():
        db.session.remove()
        report = ledger.verify(db.session)
        db.session.remove()
    assert report.ok, f"ledger invariants broken after the test: {report.problems}"


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                     r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, url: str) -> str:
    page = client.get(url)
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} (status {page.status_code})"
    return match.group(1) or match.group(2)


def submit(client, url: str, data: dict | None = None, form_url: str | None = None, **kwargs):
    """POST ``data`` to ``url`` with the CSRF token from the form page (``form_url``, else
    ``url`` itself), as a browser would."""
    token = csrf_token(client, form_url or url)
    return client.post(url, data={"csrf_token": token, **(data or {})}, **kwargs)


@functools.cache
def _password_hash(password: str) -> str:
    """A real scrypt hash of ``password``, made once per session: each one costs ~0.1 s of CPU
    and 32 MB, and most tests make several users with the same password."""
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password)


@contextlib.contextmanager
def hashing_once():
    """While the block runs, ``accounts.sign_up`` stores the session's one hash of each
    password (a valid scrypt hash: signing in checks it for real) instead of hashing again.
    Only for users the fixtures make; sign-up through the pages hashes as always."""
    from unittest import mock

    with mock.patch("upss.accounts.generate_password_hash", _password_hash):
        yield


@pytest.fixture
def make_user(app):
    """Factory: ``make_user(role="asker")`` stores a user and returns (id, email, password)."""
    from upss import accounts

    counter = iter(range(1, 10_000))

    def make(role: str = "asker", email: str | None = None, password: str = "correct horse 9"):
        email = email or f"{role}{next(counter)}@example.org"
        with app.app_context(), hashing_once():
            user = accounts.sign_up(db.session, email=email, name=role.title(), password=password,
                                    confirmed_at=datetime.now(UTC))
            user.is_answerer = role == "answerer"
            user.is_organizer = role == "organizer"
            db.session.commit()
            return user.id, email, password

    return make


def sign_in(client, email: str, password: str):
    response = submit(client, "/sign-in", {"email": email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response


def sign_in_as(client, app, user_id: int):
    """Sign ``client`` in as the user ``user_id`` (made by ``World`` or ``make_user`` with the
    default password), dropping whoever was signed in."""
    from upss.models import User

    with app.app_context():
        email = db.session.get(User, user_id).email
    client.delete_cookie("session")
    return sign_in(client, email, "correct horse 9")


@pytest.fixture
def asker_client(client, make_user):
    """A test client signed in as a new asker; ``asker_client.user_id`` is the user's id."""
    user_id, email, password = make_user("asker")
    sign_in(client, email, password)
    client.user_id = user_id
    return client


QUESTION = {"title": "How do I video call my grandson?", "body": "I have an Android tablet.",
            "language": "en", "topic": "technology", "price": "12.50"}


def ask(client, **overrides):
    """Submit the ask form; returns the response."""
    return submit(client, "/ask", {**QUESTION, **overrides})


@contextlib.contextmanager
def serving(app):
    """Serve ``app`` on a free loopback port (threaded) while the block runs; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def live_server(app, localstripe_url):
    """Serve ``app`` on a free loopback port and register it as localstripe's webhook target."""
    with serving(app) as base:
        register_webhooks(app, localstripe_url, base)
        yield base


def register_webhooks(app, localstripe_url: str, base: str) -> None:
    """Point the local Stripe's webhook endpoints (the account's and Connect's) at ``base``."""
    requests.post(f"{localstripe_url}/_config/webhooks/upss",
                  data={"url": f"{base}/stripe/webhook",
                        "secret": app.config["UPSS_STRIPE_WEBHOOK_SECRET"]},
                  timeout=5).raise_for_status()
    requests.post(f"{localstripe_url}/_config/connect_webhooks/upss",
                  data={"url": f"{base}/stripe/connect-webhook",
                        "secret": app.config["UPSS_STRIPE_CONNECT_WEBHOOK_SECRET"]},
                  timeout=5).raise_for_status()


class World:
    """Builds answerers and paid questions directly through the services, for job tests."""

    def __init__(self, app):
        self.app = app
        self.count = 0

    def user(self, role: str = "asker", **profile) -> int:
        from upss import accounts
        from upss.models import AnswererProfile

        self.count += 1
        with self.app.app_context(), hashing_once():
            user = accounts.sign_up(db.session, email=f"{role}{self.count}@example.org",
                                    name=f"{role.title()} {self.count}",
                                    password="correct horse 9", confirmed_at=datetime.now(UTC))
            if role == "answerer":
                user.is_answerer = True
                db.session.add(AnswererProfile(user_id=user.id, **{
                    "languages": "en", "daily_limit": 100, "open_offer_limit": 100,
                    **profile}))
            user.is_organizer = role == "organizer"
            db.session.commit()
            return user.id

    def answerer(self, **profile) -> int:
        return self.user("answerer", **profile)

    #: The application :meth:`applicant` sends unless told otherwise.
    APPLICATION = {"basis": "disability", "birth_year": None, "languages": ("sv",), "topics": (),
                   "available_from_minute": 0, "available_until_minute": 1440, "daily_limit": 2,
                   "yearly_ceiling_cents": None, "payout_method": "connect", "iban": None,
                   "account_holder": None}

    def applicant(self, now=None, **application) -> int:
        """A new user who has applied to answer (``application`` changes fields of
        :attr:`APPLICATION`), through ``vetting.apply``."""
        from upss import vetting
        from upss.models import User

        user_id = self.user()
        with self.app.app_context():
            vetting.apply(db.session, db.session.get(User, user_id), vetting.ApplicationData(
                **{**self.APPLICATION, **application}), now or datetime.now(UTC))
            db.session.commit()
        return user_id

    def paid_question(self, paid_at, price_cents: int = 1000, language: str = "en",
                      asker_id: int | None = None, real_stripe: bool = False) -> int:
        """A question paid at ``paid_at`` (through localstripe if ``real_stripe``)."""
        from upss import questions
        from upss.models import User
        from upss.stripe_gateway import gateway

        asker_id = asker_id or self.user("asker")
        with self.app.test_request_context():
            asker = db.session.get(User, asker_id)
            q = questions.create_question(db.session, asker, title="Q", body="Body",
                                          language=language, topic="other",
                                          price_cents=price_cents)
            if real_stripe:
                intent = gateway().create_payment_intent(
                    amount_cents=price_cents, currency="EUR", metadata={"question_id": q.id},
                    idempotency_key=f"test:{uuid.uuid4()}")
                gateway().confirm_with_test_card(intent.id, "succeeds", f"test:{uuid.uuid4()}")
                pi_id = intent.id
            else:
                pi_id = f"pi_test_{uuid.uuid4().hex[:12]}"
            questions.start_payment(db.session, q, asker, pi_id)
            questions.confirm_payment(db.session, q, pi_id, now=paid_at)
            db.session.commit()
            return q.id

    def run(self, job, *args, **kwargs):
        """Run a job function in its own transaction, as the scheduler does."""
        with self.app.test_request_context():
            result = job(db.session, *args, **kwargs)
            db.session.commit()
            for item in result if isinstance(result, list) else ():
                db.session.refresh(item)
                db.session.expunge(item)
            return result

    def question(self, question_id: int):
        from upss.models import Question

        return detached(self.app, Question, question_id)

    def act(self, fn, question_id: int, user_id: int | None, *args, **kwargs):
        """Call a question service as ``user_id`` (None: no user) and commit."""
        from upss.models import Question, User

        with self.app.test_request_context():
            q = db.session.get(Question, question_id)
            user = db.session.get(User, user_id) if user_id else None
            result = fn(db.session, q, user, *args, **kwargs) if user_id else fn(
                db.session, q, *args, **kwargs)
            db.session.commit()
            return result


@pytest.fixture
def world(app):
    return World(app)


REDIS_URL = os.environ.get("UPSS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url():
    """The shared rate-limit store (Redis). Under ``CI=true`` a missing Redis fails the run."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        message = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the Redis tests are required)")
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture
def redis_limits(redis_url):
    """Settings that count rate limits in Redis under a key prefix of this test's own."""
    return {"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": redis_url,
            "RATELIMIT_KEY_PREFIX": f"upss-test-{uuid.uuid4().hex[:10]}"}


@contextlib.contextmanager
def gunicorn(environ: dict, workers: int = 4):
    """``gunicorn -w <workers> wsgi:app`` on a free port with ``environ`` added to this
    process's environment; yields (base URL, the master's Popen)."""
    import tempfile

    port = free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "5", "wsgi:app"],
        cwd=root, env={**os.environ, **environ},
        stdout=subprocess.DEVNULL, stderr=errors)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/sign-in", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or workers still busy starting (a loaded machine)
            if proc.poll() is not None or time.monotonic() > deadline:
                errors.seek(0)
                raise RuntimeError("gunicorn did not start: "
                                   + errors.read().decode(errors="replace")[-3000:])
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errors.close()


class SmtpTestServer:
    """A real SMTP server (aiosmtpd) in the test process on a free loopback port, keeping what
    it receives in memory: ``raw`` (the bytes as received) and ``messages`` (parsed).

    ``stop()`` and ``start()`` take it down and bring it back on the same port (connections
    are refused meanwhile); ``reply`` set to e.g. ``"451 …"`` or ``"550 …"`` answers every
    message with that instead of taking it."""

    def __init__(self):
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.raw: list[bytes] = []
        self.reply: str | None = None
        self.controller = None
        self.lock = threading.Lock()

    @property
    def messages(self):
        from email import policy
        from email.parser import BytesParser

        with self.lock:
            return [BytesParser(policy=policy.default).parsebytes(raw) for raw in self.raw]

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        if self.reply:
            return self.reply
        with self.lock:
            self.raw.append(envelope.original_content or envelope.content)
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server():
    """A running :class:`SmtpTestServer`; stopped after the test."""
    server = SmtpTestServer()
    server.start()
    yield server
    server.stop()


# --- counting SQL statements (tests of a page's cost: the same with 1 row and with 200) -------

class Statements(list):
    """The SQL statements run inside :func:`count_statements`, whitespace-collapsed."""


@contextlib.contextmanager
def count_statements(engine=None):
    """Collect every statement sent to the database (``before_cursor_execute``) in the block:
    ``with count_statements() as seen: ...; len(seen)``."""
    from sqlalchemy import event

    engine = engine if engine is not None else db.engine
    seen = Statements()

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan_of(run, pick=lambda sent: sent[0], off=("seqscan",)) -> str:
    """PostgreSQL's plan (``EXPLAIN``) of a statement ``run()`` sends: ``pick`` chooses it
    from the ``(statement, parameters)`` pairs sent, and each planner method in ``off``
    (``enable_<name>``) is made as costly as it goes first. Inside an app context; the
    session is rolled back after."""
    from sqlalchemy import event

    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    statement, parameters = pick(sent)
    connection = db.session.connection()
    for name in off:
        connection.exec_driver_sql(f"SET LOCAL enable_{name} = off")
    plan = "\n".join(row[0] for row in connection.exec_driver_sql(
        "EXPLAIN " + statement, parameters))
    db.session.rollback()
    return plan
# --- end counting SQL statements
