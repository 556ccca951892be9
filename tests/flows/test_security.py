"""Holding up under attack: shared rate limits, sessions that end, the input filter, the secret
key, no-store, password rules and the error page after a database error.

The tests that need several processes run UPSS under ``gunicorn -w 4`` on PostgreSQL with its
rate limits in Redis, as production does; the rest use the test client on both databases.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import select, text, update

from tests.conftest import (
    CSRF_RE,
    _base_config,
    _truncate_postgres,
    ask,
    csrf_token,
    free_port,
    gunicorn,
    sign_in,
    sign_in_as,
    submit,
)
from upss import accounts, config, create_app, release, sessions
from upss.extensions import db
from upss.models import Question, User, UserSession

NIGHT = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _token(session: requests.Session, url: str) -> str:
    match = CSRF_RE.search(session.get(url, timeout=10).text)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


def _post(client, url, data, ip=None, form_url=None):
    headers = {"X-Forwarded-For": ip} if ip else {}
    return submit(client, url, data, form_url=form_url, headers=headers)


# --- rate limits: counted in Redis, per address and per account --------------------------------

class TestRateLimits:
    @pytest.fixture
    def app_config(self, app_config, redis_limits):
        return {**app_config, **redis_limits, "UPSS_TRUSTED_PROXIES": 1,
                "UPSS_RATE_LIMITS": {**config.RATE_LIMITS}}

    @sqlite_only
    def test_sign_in_is_limited_per_address_and_the_page_says_when(self, app, client):
        """The 11th attempt from one address within a minute (ten different accounts) gets a
        429 page saying how long to wait, with Retry-After."""
        statuses = [_post(client, "/sign-in", {"email": f"x{i}@example.org",
                                               "password": "wrong password"},
                          ip="203.0.113.7").status_code for i in range(11)]
        assert statuses == [400] * 10 + [429]
        other_address = _post(client, "/sign-in", {"email": "y@example.org", "password": "x"},
                              ip="203.0.113.8")
        assert other_address.status_code == 400
        limited = _post(client, "/sign-in", {"email": "z@example.org", "password": "x"},
                        ip="203.0.113.7")
        page = limited.get_data(as_text=True)
        assert limited.status_code == 429 and "Too many attempts" in page
        main = page[page.index("<main"):page.index("</main>")]
        assert re.search(r"You can try again in (\d+ seconds|1 minute)\.", main), main
        assert 0 < int(limited.headers["Retry-After"]) <= 60

    @sqlite_only
    def test_one_account_is_limited_from_any_address_but_its_owner_is_not_locked_out(
            self, app, client, make_user):
        """Attempts at one account from ever new addresses stop after 5 a minute; the owner's
        browser, which has signed in before, still gets in."""
        _, email, password = make_user()
        owner = app.test_client()
        assert _post(owner, "/sign-in", {"email": email, "password": password},
                     ip="198.51.100.1").status_code == 302
        owner.post("/sign-out", data={"csrf_token": csrf_token(owner, "/questions")})

        statuses = [_post(client, "/sign-in", {"email": email.upper(), "password": f"guess {i}"},
                          ip=f"203.0.113.{i}").status_code for i in range(1, 7)]
        assert statuses == [400, 400, 400, 400, 429, 429]  # the owner's sign-in counted too
        assert _post(owner, "/sign-in", {"email": email, "password": password},
                     ip="198.51.100.1").status_code == 302

    @sqlite_only
    def test_sign_up_is_limited_per_address(self, app, client):
        statuses = [_post(client, "/sign-up", {
            "name": "Bo", "email": f"bo{i}@example.org", "password": "long enough pass",
            "confirm": "long enough pass"}, ip="203.0.113.9").status_code for i in range(6)]
        assert statuses == [200] * 5 + [429]  # each answered "check your e-mail"

    @sqlite_only
    @pytest.mark.parametrize(("name", "method", "url"), [
        ("ASK", "post", "/ask"),
        ("PAY", "get", "/questions/999999/pay"),
        ("MESSAGE", "post", "/questions/999999/clarify"),
        ("CLAIM", "post", "/answer/questions/999999/claim"),
    ])
    def test_actions_are_limited_per_user(self, app, make_user, name, method, url):
        """Asking, paying, messages and claiming are counted per signed-in user: another user
        is not affected."""
        app.config["UPSS_RATE_LIMITS"][name] = "2 per minute"
        first, second = app.test_client(), app.test_client()
        for client, role in ((first, "answerer" if name == "CLAIM" else "asker"),
                             (second, "answerer" if name == "CLAIM" else "asker")):
            _, email, password = make_user(role)
            sign_in(client, email, password)
        token = csrf_token(first, "/questions")

        def hit(client):
            if method == "get":
                return client.get(url).status_code
            return client.post(url, data={"csrf_token": token}).status_code

        statuses = [hit(first) for _ in range(3)]
        assert statuses[2] == 429 and 429 not in statuses[:2]
        token = csrf_token(second, "/questions")
        assert hit(second) != 429

    @sqlite_only
    def test_start_up_fails_when_the_shared_store_cannot_be_reached(self, app_config):
        settings = {**app_config, "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0"}
        with pytest.raises(config.ConfigError, match="rate limit store"):
            create_app(settings)

    @sqlite_only
    def test_when_redis_fails_the_limits_count_per_process_and_say_so_loudly(
            self, app_config, redis_url):
        """Redis goes away while UPSS runs: sign-in is still limited (per process) and the
        failure is logged as an error."""
        with _TcpProxy(redis_url) as proxy:
            app = create_app({**app_config, "RATELIMIT_STORAGE_URI": proxy.url,
                              "UPSS_RATE_LIMITS": {**config.RATE_LIMITS,
                                                   "SIGN_IN": "4 per minute"}})
            client = app.test_client()
            records = _capture("flask-limiter")
            first = [_post(client, "/sign-in", {"email": f"a{i}@example.org", "password": "x"})
                     .status_code for i in range(2)]
            proxy.close()
            after = [_post(client, "/sign-in", {"email": f"b{i}@example.org", "password": "x"})
                     .status_code for i in range(6)]
        assert first == [400, 400]
        assert 429 in after and after.index(429) <= 4, after
        loud = [r for r in records if r.levelno >= logging.ERROR]
        assert loud and "RATE LIMIT STORE UNREACHABLE" in loud[0].getMessage()
        with app.app_context():
            db.engine.dispose()


def _capture(logger_name: str) -> list[logging.LogRecord]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.disabled = False  # the test session's migrations (Alembic's fileConfig) disable it

    return records


class _TcpProxy:
    """A TCP forwarder to Redis that the test can cut, as a failed network or server would."""

    def __init__(self, redis_url: str):
        host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.sockets: list[socket.socket] = []
        self.closed = False

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        try:  # wakes the accepting thread (a plain close would leave the port listening)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


# --- the same under gunicorn -w 4 on PostgreSQL ---------------------------------------------------

@pytest.fixture
def production_like(postgres_url, redis_url, localstripe_url):
    """gunicorn with 4 workers on PostgreSQL, rate limits in Redis; yields (base, proc, email,
    password, environment)."""
    _truncate_postgres(postgres_url)
    app = create_app(_base_config(postgres_url, localstripe_url))
    with app.app_context():
        accounts.sign_up(db.session, email="owner@example.org", name="Owner",
                         password="correct horse 9")
        db.session.commit()
        db.engine.dispose()
    environ = {
        "UPSS_ENV": "test", "UPSS_DATABASE_URL": postgres_url, "UPSS_SECRET_KEY": "gunicorn-test",
        "UPSS_RATELIMIT_STORAGE": redis_url,
        "UPSS_RATELIMIT_KEY_PREFIX": f"upss-test-{uuid.uuid4().hex[:10]}",
        "UPSS_LIMIT_SIGN_IN": "10000 per minute",  # the per-account limit is the one measured
        "UPSS_LIMIT_SIGN_IN_ACCOUNT": "5 per minute; 20 per hour",
        "UPSS_LOCALSTRIPE_URL": localstripe_url, "UPSS_SCHEDULER_TICK_SECONDS": "3600",
    }
    with gunicorn(environ, workers=4) as (base, proc):
        yield base, proc, "owner@example.org", "correct horse 9"


def test_wrong_passwords_through_four_workers_stay_within_the_limit(production_like):
    """Two seconds of wrong passwords for one account from 8 clients at once, spread over 4
    workers: no more than the configured 5 reach the password check, and after the workers
    are restarted the count is still there."""
    base, proc, email, _password = production_like

    def attack(worker: int) -> list[int]:
        with requests.Session() as browser:
            token = _token(browser, f"{base}/sign-in")
            statuses, deadline = [], time.monotonic() + 2
            while time.monotonic() < deadline:
                statuses.append(browser.post(f"{base}/sign-in", data={
                    "csrf_token": token, "email": email, "password": f"guess {worker}"},
                    timeout=10, allow_redirects=False).status_code)
            return statuses

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for result in pool.map(attack, range(8)) for s in result]
    checked = statuses.count(400)
    print(f"{len(statuses)} attempts through 4 workers: {checked} checked, "
          f"{statuses.count(429)} refused with 429")
    assert set(statuses) <= {400, 429}
    assert checked <= 5 and statuses.count(429) >= len(statuses) - 5

    proc.send_signal(__import__("signal").SIGHUP)  # gunicorn restarts every worker
    time.sleep(3)
    with requests.Session() as browser:
        token = _token(browser, f"{base}/sign-in")
        after_restart = browser.post(f"{base}/sign-in", data={
            "csrf_token": token, "email": email, "password": "one more"}, timeout=10)
    assert after_restart.status_code == 429


def test_sign_out_ends_the_session_for_copies_and_everywhere_ends_all(production_like):
    """Through 4 workers: a cookie copied before signing out is refused after it; "sign out
    everywhere" ends the account's other sessions too."""
    base, _proc, email, password = production_like

    def signed_in() -> requests.Session:
        browser = requests.Session()
        token = _token(browser, f"{base}/sign-in")
        response = browser.post(f"{base}/sign-in", data={
            "csrf_token": token, "email": email, "password": password}, timeout=10,
            allow_redirects=False)
        assert response.status_code == 302
        return browser

    def opens_questions(browser) -> bool:
        return browser.get(f"{base}/questions", timeout=10,
                           allow_redirects=False).status_code == 200

    first = signed_in()
    copy = requests.Session()
    copy.cookies.update(first.cookies)
    assert opens_questions(copy)
    first.post(f"{base}/sign-out", data={"csrf_token": _token(first, f"{base}/questions")},
               timeout=10)
    assert not opens_questions(first) and not opens_questions(copy)

    here, there = signed_in(), signed_in()
    assert opens_questions(here) and opens_questions(there)
    here.post(f"{base}/sign-out-everywhere",
              data={"csrf_token": _token(here, f"{base}/account/preferences")}, timeout=10)
    assert not opens_questions(there) and not opens_questions(here)


# --- sessions: lifetimes and the service ---------------------------------------------------------

def test_a_copied_cookie_is_refused_after_sign_out(app, client, make_user):
    _, email, password = make_user()
    sign_in(client, email, password)
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    assert copy.get("/questions").status_code == 200
    client.post("/sign-out", data={"csrf_token": csrf_token(client, "/questions")})
    assert copy.get("/questions").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(UserSession.end_reason)) == "signed_out"


def test_any_request_renews_the_session(app, client, make_user):
    """A plain GET (no other write) renews an idle session, and the renewal is stored."""
    _, email, password = make_user()
    sign_in(client, email, password)
    with app.app_context():
        row = db.session.scalar(select(UserSession))
        row.last_seen_at -= timedelta(minutes=100)
        db.session.commit()
    assert client.get("/questions").status_code == 200
    with app.app_context():
        seen = db.session.scalar(select(UserSession.last_seen_at))
        assert datetime.now(UTC) - seen < timedelta(minutes=1)
        db.session.execute(update(UserSession).values(
            last_seen_at=datetime.now(UTC) - timedelta(minutes=121)))
        db.session.commit()
    assert client.get("/questions").status_code == 302  # idle for longer than 120 minutes
    with app.app_context():
        assert db.session.scalar(select(UserSession.end_reason)) == "idle"


def test_the_session_cookie_lives_as_long_as_the_session_and_is_not_sent_again(
        app, client, make_user):
    """Signing in sets the cookie to last UPSS_SESSION_MAX_HOURS, the server session's own
    limit; a page that changes nothing in it sends no new cookie (Flask would sign and send
    it again on every request)."""
    from email.utils import parsedate_to_datetime
    from http.cookies import SimpleCookie

    _, email, password = make_user()
    signed_in = sign_in(client, email, password)
    cookie = SimpleCookie(next(value for name, value in signed_in.headers
                               if name == "Set-Cookie" and value.startswith("session=")))
    expires = parsedate_to_datetime(cookie["session"]["expires"])
    lifetime = timedelta(hours=app.config["UPSS_SESSION_MAX_HOURS"])
    assert abs(expires - (datetime.now(UTC) + lifetime)) < timedelta(minutes=1)
    assert client.get("/questions").status_code == 200  # its first form token: a new cookie
    page = client.get("/questions")
    assert page.status_code == 200 and "csrf_token" in page.get_data(as_text=True)
    assert not [v for n, v in page.headers if n == "Set-Cookie" and v.startswith("session=")]


def test_sessions_end_when_idle_or_old_but_never_during_an_answer_lock(app, world):
    """Idle for longer than the setting: ended; the same while holding an answer lock: kept
    (and renewed); older than the absolute lifetime: ended whatever happens."""
    from upss import questions

    answerer = world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    lifetimes = sessions.Lifetimes(idle=timedelta(minutes=30), absolute=timedelta(hours=12))
    now = datetime.now(UTC)
    with app.app_context():
        user = db.session.get(User, answerer)
        idle_token = sessions.start(db.session, user, now)
        db.session.commit()
        assert sessions.check(db.session, idle_token, answerer, now + timedelta(minutes=29),
                              lifetimes)[0] is not None
        later = now + timedelta(minutes=29) + timedelta(minutes=31)
        assert sessions.check(db.session, idle_token, answerer, later, lifetimes) == (None, True)
        db.session.commit()
        assert sessions.check(db.session, idle_token, answerer, now, lifetimes) == (None, False)

        token = sessions.start(db.session, user, now)
        question = db.session.get(Question, q)
        questions.claim(db.session, question, user, now)
        db.session.commit()
        lock_ends = question.lock_expires_at
        assert lock_ends > now + timedelta(minutes=31)
        kept, _ = sessions.check(db.session, token, answerer,
                                 lock_ends - timedelta(minutes=1), lifetimes)
        assert kept is not None and kept.last_seen_at == lock_ends - timedelta(minutes=1)
        db.session.commit()
        assert sessions.check(db.session, token, answerer,
                              now + timedelta(hours=12, seconds=1), lifetimes)[0] is None
        db.session.commit()
        assert db.session.scalars(select(UserSession.end_reason).order_by(
            UserSession.id)).all() == ["idle", "expired"]


def test_end_other_sessions_keeps_the_current_one(app, make_user):
    user_id, _, _ = make_user()
    now = datetime.now(UTC)
    lifetimes = sessions.Lifetimes(idle=timedelta(hours=1), absolute=timedelta(days=1))
    with app.app_context():
        user = db.session.get(User, user_id)
        keep, other1, other2 = (sessions.start(db.session, user, now) for _ in range(3))
        assert sessions.other_session_count(db.session, user, keep) == 2
        assert sessions.end_other_sessions(db.session, user, keep, now) == 2
        db.session.commit()
        assert sessions.check(db.session, keep, user_id, now, lifetimes)[0] is not None
        assert sessions.check(db.session, other1, user_id, now, lifetimes)[0] is None
        assert sessions.check(db.session, other2, user_id, now, lifetimes)[0] is None


def test_preferences_page_offers_sign_out_everywhere(app, make_user):
    _, email, password = make_user()
    here, there = app.test_client(), app.test_client()
    sign_in(here, email, password)
    sign_in(there, email, password)
    page = here.get("/account/preferences").get_data(as_text=True)
    assert "also signed in on 1 other browser or device" in page
    response = submit(here, "/sign-out-everywhere", {}, form_url="/account/preferences")
    assert response.status_code == 302 and response.headers["Location"] == "/sign-in"
    assert there.get("/questions").status_code == 302


# --- the input filter --------------------------------------------------------------------------

def test_nul_in_sign_in_is_the_forms_own_error_not_a_500(app, client):
    response = submit(client, "/sign-in", {"email": "a\x00@example.com", "password": "x"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "There is a problem" in page and "cannot be stored" in page


def test_controls_in_a_question_are_refused_and_the_text_comes_back(app, asker_client):
    response = ask(asker_client, title="Video\x00 call\x07 help", body="Line one\x1bline two")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and page.count("cannot be stored") >= 2
    assert "Video call help" in page  # the rest of what was typed is kept
    with asker_client.application.app_context():
        assert db.session.scalar(select(Question.id)) is None


def test_line_breaks_are_stored_as_lf(app, asker_client):
    response = ask(asker_client, body="First line\r\nSecond line\rThird line\n\tIndented")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Question.body)) == (
            "First line\nSecond line\nThird line\n\tIndented")


def test_one_line_fields_refuse_line_breaks(app, asker_client):
    response = ask(asker_client, title="Two\nlines")
    assert response.status_code == 400
    assert "must be one line" in response.get_data(as_text=True)


def test_autosave_refuses_controls_with_a_400_and_keeps_the_draft(app, world, client):
    answerer = world.answerer()
    q = world.paid_question(paid_at=datetime.now(UTC))
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)
    sign_in_as(client, app, answerer)
    assert submit(client, f"/answer/questions/{q}/claim", form_url="/answer/queue").status_code \
        == 302
    token = csrf_token(client, f"/answer/questions/{q}")
    assert client.post(f"/answer/questions/{q}/draft", data={
        "csrf_token": token, "answer": "Good so far\r\nline two"}).status_code == 200
    refused = client.post(f"/answer/questions/{q}/draft", data={
        "csrf_token": token, "answer": "Bad\x00 text"})
    assert refused.status_code == 400 and "cannot be stored" in refused.get_json()["error"]
    page = client.post(f"/answer/questions/{q}", data={
        "csrf_token": token, "action": "save", "a-answer": "Also\x00 bad"})
    assert page.status_code == 400 and "cannot be stored" in page.get_data(as_text=True)
    with app.app_context():
        from upss.models import AnswerDraft
        assert db.session.scalar(select(AnswerDraft.body)) == "Good so far\nline two"


@sqlite_only
def test_json_bodies_and_query_strings_go_through_the_filter(app):
    from werkzeug.exceptions import BadRequest

    with app.test_request_context("/?q=a%00b", method="POST", json={"text": "x\r\ny"}):
        from flask import request

        from upss.web import inputs
        assert request.get_json() == {"text": "x\ny"}
        assert request.args["q"] == "ab" and inputs.refused_fields() == {"q"}
    with app.test_request_context("/", method="POST", json={"a": ["ok", "bad\x00"]}):
        from flask import request
        with pytest.raises(BadRequest):
            request.get_json()
    with app.test_request_context("/", method="POST", data=b'{"a": "\\ud800"}',
                                  content_type="application/json"):
        from flask import request
        with pytest.raises(BadRequest):
            request.get_json()


def test_a_body_over_the_limit_gets_413_without_echo(app, client):
    marker = "ECHO-ME-" * 10
    response = client.post("/sign-in", data={"email": marker + "x" * 1_100_000,
                                             "password": "x"})
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "too much to send" in page and marker not in page and len(page) < 20_000


# --- the secret key file -------------------------------------------------------------------------

def _read_key(directory: str, start, results) -> None:
    start.wait()
    try:
        results.put(config._secret_key({}, __import__("pathlib").Path(directory)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"error: {exc!r}")


def test_processes_starting_together_agree_on_one_secret_key(tmp_path):
    """4 forked processes create the key file at the same moment, 100 rounds: one non-empty
    key each round, the same in every process."""
    context = multiprocessing.get_context("fork")
    for round_ in range(100):
        directory = tmp_path / f"round{round_}" / "instance"
        start, results = context.Barrier(4), context.Queue()
        processes = [context.Process(target=_read_key, args=(str(directory), start, results))
                     for _ in range(4)]
        for process in processes:
            process.start()
        keys = {results.get(timeout=20) for _ in processes}
        for process in processes:
            process.join(timeout=20)
        assert len(keys) == 1, f"round {round_}: {keys}"
        key = keys.pop()
        assert len(key) == 64 and not key.startswith("error")
        assert (directory / "secret_key").read_text() == key
        assert os.stat(directory / "secret_key").st_mode & 0o077 == 0
        assert [p.name for p in directory.iterdir()] == ["secret_key"]


# --- no-store, passwords, the error page ---------------------------------------------------------

@sqlite_only
def test_signed_in_pages_and_downloads_are_not_stored(app, client, make_user):
    _, email, password = make_user("organizer")
    sign_in(client, email, password)
    for url in ("/questions", "/organizer/ledger", "/organizer/ledger/entries.csv",
                "/organizer/payouts.csv", "/account/preferences"):
        response = client.get(url)
        response.get_data()  # read a streamed download to its end, as a browser does
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "no-store", url
    assert "no-store" not in client.get("/static/css/upss.css").headers.get(
        "Cache-Control", "")


@pytest.mark.parametrize("password", [
    "aaaaaaaaaa", "1234567890", "password12", " " * 10, "  short  ", "abcdefghij",
    "9876543210", "Password123", "qwertyuiop"])
def test_weak_passwords_are_refused_with_a_reason(password):
    assert accounts.password_problem(password) is not None


@pytest.mark.parametrize("password", ["correct horse 9", "  tea with milk  ", "Grandma's garden"])
def test_reasonable_passwords_are_accepted(password):
    assert accounts.password_problem(password) is None


@sqlite_only
def test_sign_up_explains_a_weak_password(app, client):
    for password, message in (("password12", "one of the most common passwords"),
                              ("aaaaaaaaaa", "one character repeated"),
                              ("   abc    ", "not counting spaces")):
        response = submit(client, "/sign-up", {"name": "Bo", "email": "bo@example.org",
                                               "password": password, "confirm": password})
        assert response.status_code == 400 and message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(User.id)) is None


@pytest.fixture
def failing_app(app_config):
    """An app that shows error pages as production does, with a page that breaks the database
    connection (or its transaction) for a signed-in user."""
    app = create_app({**app_config, "PROPAGATE_EXCEPTIONS": False})

    def broken():
        from flask_login import current_user
        assert current_user.is_authenticated
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        db.session.execute(text("SELECT * FROM no_such_table"))
        return "unreachable"

    app.add_url_rule("/_test/broken", view_func=broken)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_error_page_renders_after_a_database_error(failing_app):
    from upss.models import User as UserModel

    with failing_app.app_context():
        user = accounts.sign_up(db.session, email="e@example.org", name="Eva",
                                password="correct horse 9")
        user.large_text = True
        db.session.commit()
    assert UserModel  # the model module is loaded
    client = failing_app.test_client()
    sign_in(client, "e@example.org", "correct horse 9")
    response = client.get("/_test/broken")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Sorry, something went wrong on our side" in page
    assert "large-text" in page  # the signed-in user's display choice is kept
    assert client.get("/questions").status_code == 200  # the next request is fine
