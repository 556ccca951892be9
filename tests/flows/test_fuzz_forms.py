"""Hostile text into every form of every role, on both databases: no response is a 5xx.

A bounded fuzz (hypothesis, at most 50 examples per form: a few explicit ones every form and
every field gets, then ``EXAMPLES`` random ones) posts NUL and the other control characters,
CR LF and lone CR, right-to-left marks, emoji, template and SQL look-alikes, numbers too big for
any column and 100 kB strings into every field of every form, as the anonymous visitor, the
asker, the answerer (and an applicant) and the organizer. Every form gets its own hypothesis
run, so one broken form does not hide another: the failures are collected and reported
together. ``UPSS_FUZZ_EXAMPLES=N`` changes the random examples per form (still at most 50 in
all); ``UPSS_FUZZ_STATS=1`` (with ``-s``) prints how often each status came back per form.

Each example picks:

* the hostile ``value``;
* ``mode``: ``all`` puts it into every text field of the form (and the query string), ``one``
  into just one of them (``pick``), the others keeping valid values, so the hostile text can
  also pass validation and reach the services and the database;
* ``fuzz_other``: whether the numeric, choice and hidden fields get it too;
* ``token``: the session's valid CSRF token (mostly), the hostile value instead, or none.

Forms that change state on a valid post (a clarification, a dispute, an answer, an
application) are put back after a success, so later examples reach the database again.

Only answers of 500 or more (or an exception out of a view, which the test client raises under
``TESTING``) fail, and a 413 for a body under ``MAX_CONTENT_LENGTH``: a 100 kB text is allowed.
"""

from __future__ import annotations

import os
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.conftest import QUESTION, ask, csrf_token, sign_in
from upss import payouts, questions, vetting
from upss import settings as upss_settings
from upss.extensions import db
from upss.models import AnswererApplication, Question, User, utcnow

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

#: Examples per form (the issue allows at most 50).
EXAMPLES = min(int(os.environ.get("UPSS_FUZZ_EXAMPLES", "15")), 50)
PASSWORD = "correct horse 9"

CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]
NASTY = [
    *CONTROLS, "\r\n", "\r", "\n\n", "\t", "\x00\x00",
    "\u202e", "\u202d", "\u200f", "\u200e", "\u2066", "\u2069", "\u061c",  # bidi controls
    "\u200b", "\u200d", "\ufeff", "\u00ad", "\u2028", "\u2029", "\u0085",  # invisible, breaks
    "\u0301\u0301\u0301", "e\u0301", "\ufffd", "\uffff", "\U0010ffff", "\U000e0001",
    "👩‍🦳🎉", "🇳🇴", "👍🏽", "ﷺ", "𒐫", "Ⅻ", "١٢٣", "١٢,٥٠", "½", "²", "０１２", "٫",
    "مرحبا", "שלום", "Ωμέγα", "Şğİı", "ß", "ﬀ", "I\u0307",
    "<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>", "{{ 7 * 7 }}",
    "{% raw %}", "%(name)s", "%s%s%n", "{0}", "${jndi:x}", "'; DROP TABLE question; --",
    "\\", "\\\\x00", "%00", "%0d%0a", "&amp;", "&#0;", "/", "//evil.example", "/\\evil",
    "javascript:alert(1)", "../../etc/passwd", "..", "NaN", "Infinity", "-0", "1e9999",
    "9" * 40, "0x10", "12,50", "12.50", "1 000,00", "-5", " ", "", "null", "None", "true",
    "2026-02-30", "00:00-24:00", "22:00-07:00, 25:00-26:00", "Europe/Oslo", "UTC", "Europe",
    "Europe/", "Etc", "localtime", "posix/Europe/Oslo",
    "a@b.c", "\u202eexample.org", "NO9386011117947",
]
BIG = ["a" * 100_000, "é" * 50_000, "👩" * 25_000, "\u202e" * 33_333, "a\r\n" * 33_333,
       "\x00" * 100_000, ("ab\x01" * 33_334)[:100_000]]
#: Right at (and one past) the length limits of the forms and the columns, in characters
#: that take 2, 3 or 4 bytes (and a three-code-point emoji), so they pass the input filter.
AT_LIMITS = [piece * n for n in (70, 71, 100, 101, 150, 151, 200, 201, 254, 255, 2000, 2001,
                                 5000, 5001, 20_000, 20_001)
             for piece in ("é", "\u202e", "🎉", "👩\u200d🦳")]
#: Hostile, but nothing the input filter takes out: these can reach the services.
REFUSED_BY_FILTER = {chr(c) for c in range(0x20)} - {"\t", "\n", "\r"}
STORABLE = st.lists(st.one_of(
    st.sampled_from([p for p in NASTY if not REFUSED_BY_FILTER & set(p)]),
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=30)),
    min_size=1, max_size=8).map("".join)

VALUES = st.one_of(
    st.text(max_size=300),
    st.sampled_from(NASTY),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=20)), min_size=2,
             max_size=10).map("".join),
    st.sampled_from(BIG),
    STORABLE,
    st.sampled_from(AT_LIMITS),
    st.tuples(st.sampled_from(BIG), st.lists(st.sampled_from(NASTY), max_size=4)).map(
        lambda t: t[0] + "".join(t[1])),
)

#: Every form gets these (value, mode, pick, fuzz_other, token_mode) examples: 100 kB into
#: every field, the nasty characters together, and 100 kB with NUL, RTL and emoji.
EVERY_FORM = [
    ("a" * 100_000, "all", 0, True, "valid"),
    ("\x00\x01\x1f\x7f\r\n\r\t\u202e\u200f👩\u200d🦳🎉<b>%(x)s{{x}}", "all", 0, True, "valid"),
    ("é" * 50_000 + "\x00\u202e🎉", "all", 0, False, "valid"),
]
#: And every text field of every form gets these alone (the other fields valid): a number too
#: big for any database column, and the name of a directory of the time zone database.
EVERY_FIELD = ["9" * 40, "Europe"]

#: A request body under this many (url-encoded) bytes must never get 413.
BODY_BUDGET = 900_000


@dataclass
class FormSpec:
    """One form: where it posts, and its fields with valid values."""

    name: str
    url: str
    #: Text fields: given the value in mode ``all``, and one of them in mode ``one``.
    text: dict[str, str]
    #: Numbers, choices and hidden fields: given the value only with ``fuzz_other``.
    other: dict[str, str | list[str]] = field(default_factory=dict)
    #: Query-string parameters, treated as text fields.
    query: dict[str, str] = field(default_factory=dict)
    #: The signed-in client and its CSRF token, or ``fresh`` making (client, token) each time.
    client: object = None
    token: str = ""
    fresh: Callable[[], tuple[object, str]] | None = None
    #: Called with the response after each post, to put the state back after a success.
    after: Callable[[object], None] | None = None
    #: Fields whose valid value changes per post (e.g. a new e-mail address).
    dynamic: Callable[[], dict[str, str]] | None = None
    #: Examples for this form (default ``EXAMPLES``), for forms that are slow to set up.
    examples: int | None = None
    #: How often each status came back (shown with ``UPSS_FUZZ_STATS=1`` and ``-s``).
    statuses: Counter = field(default_factory=Counter)


def _short(value: str) -> str:
    if len(value) <= 160:
        return repr(value)
    return f"{value[:120]!r}... ({len(value)} chars, {len(value.encode())} bytes UTF-8)"


def _trace(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/upss/" in f.filename] or frames
    lines = [f"{f.filename.rsplit('/work/main/', 1)[-1]}:{f.lineno} in {f.name}: {f.line}"
             for f in ours[-5:]]
    if frames and frames[-1] not in ours[-5:]:
        last = frames[-1]
        lines.append(f"... {last.filename}:{last.lineno} in {last.name}: {last.line}")
    return "\n    ".join(lines)


def _build(spec: FormSpec, value: str, mode: str, pick: int, fuzz_other: bool,
           token_mode: str, token: str) -> tuple[dict, dict, str]:
    text = {**spec.text, **(spec.dynamic() if spec.dynamic else {})}
    fuzzable = [*text, *(f"?{k}" for k in spec.query)]
    chosen = fuzzable[pick % len(fuzzable)]
    targets = set(fuzzable) if mode == "all" else {chosen}
    data = {k: (value if k in targets else v) for k, v in text.items()}
    query = {k: (value if f"?{k}" in targets else v) for k, v in spec.query.items()}
    for k, v in spec.other.items():
        if fuzz_other:
            data[k] = [value] if isinstance(v, list) else value
        else:
            data[k] = v
    if token_mode == "valid":
        data["csrf_token"] = token
    elif token_mode == "fuzzed":
        data["csrf_token"] = value
    if len(urlencode(data, doseq=True)) > BODY_BUDGET:
        # Too big for one request: the whole value into the picked field, the start of it
        # into the others (every field still gets the hostile characters).
        data = {k: (v if k == chosen else v[:1000] if isinstance(v, str)
                    else [x[:1000] for x in v])
                for k, v in data.items()}
    return data, query, chosen.lstrip("?")


def _post(spec: FormSpec, value: str, mode: str, pick: int, fuzz_other: bool,
          token_mode: str) -> None:
    client, token = spec.fresh() if spec.fresh else (spec.client, spec.token)
    data, query, chosen = _build(spec, value, mode, pick, fuzz_other, token_mode, token)
    fields = "every text field" if mode == "all" else f"field {chosen!r}"
    where = (f"{spec.name} (POST {spec.url}; {fields}, fuzz_other={fuzz_other}, "
             f"token={token_mode}) with value {_short(value)}")
    try:
        response = client.post(spec.url, data=data, query_string=query)
    except Exception as exc:
        raise AssertionError(f"{where}: {type(exc).__name__}: {str(exc)[:300]}\n    "
                             f"{_trace(exc)}") from exc
    status = response.status_code
    assert status < 500, f"{where}: status {status}: {response.get_data(as_text=True)[:300]}"
    if status == 413:
        size = response.request.content_length or 0
        limit = client.application.config["MAX_CONTENT_LENGTH"]
        assert size > limit, f"{where}: 413 for a body of {size} bytes (limit {limit})"
    spec.statuses[status] += 1
    if spec.after:
        spec.after(response)


def _fuzzable(spec: FormSpec) -> int:
    return len({**spec.text, **(spec.dynamic() if spec.dynamic else {})}) + len(spec.query)


def _search(spec: FormSpec):
    """The hypothesis search for one form: the explicit examples every form gets, then random
    ones, at most 50 in all."""
    explicit = [*EVERY_FORM, *((value, "one", pick, False, "valid")
                               for value in EVERY_FIELD for pick in range(_fuzzable(spec)))]
    random_examples = min(spec.examples or EXAMPLES, 50 - len(explicit))
    assert random_examples > 0, f"{spec.name}: too many explicit examples"

    @settings(max_examples=random_examples, deadline=None, database=None,
              phases=(Phase.explicit, Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(value=VALUES, mode=st.sampled_from(["all", "one"]),
           pick=st.integers(min_value=0, max_value=63), fuzz_other=st.booleans(),
           token_mode=st.sampled_from(["valid", "valid", "valid", "valid", "fuzzed",
                                       "missing"]))
    def check(value, mode, pick, fuzz_other, token_mode):
        _post(spec, value, mode, pick, fuzz_other, token_mode)

    for value, mode, pick, fuzz_other, token_mode in explicit:
        check = example(value=value, mode=mode, pick=pick, fuzz_other=fuzz_other,
                        token_mode=token_mode)(check)
    return check


def _leaves(exc: BaseException) -> list[BaseException]:
    """The failures in ``exc`` (hypothesis groups several distinct ones)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def fuzz_forms(specs: list[FormSpec]) -> None:
    """Run each form's own hypothesis search; fail once, with every form's failure."""
    failures = []
    for spec in specs:
        try:
            _search(spec)()
        except Exception as exc:  # noqa: BLE001 - each form's failure is reported at the end
            failures.extend(f"[{spec.name}] {one}" for one in _leaves(exc))
        if os.environ.get("UPSS_FUZZ_STATS"):
            print(f"{spec.name}: {dict(sorted(spec.statuses.items()))}")  # noqa: T201
    if failures:
        pytest.fail(f"{len(failures)} failures in {len(specs)} forms:\n\n" + "\n\n".join(failures),
                    pytrace=False)


# --- building the state ---------------------------------------------------------------------


def login(app, user_id: int, token_url: str):
    """A new test client signed in as ``user_id``, and its CSRF token (from ``token_url``)."""
    with app.app_context():
        email = db.session.get(User, user_id).email
    client = app.test_client()
    sign_in(client, email, PASSWORD)
    return client, csrf_token(client, token_url)


class Questions:
    """Questions in the states the forms need, offered straight to one answerer."""

    def __init__(self, app, world, answerer: int, asker: int):
        self.app, self.world, self.answerer, self.asker = app, world, answerer, asker

    def now(self) -> datetime:
        return datetime.now(UTC)

    def status(self, q: int) -> str:
        return self.world.question(q).status

    def offered(self) -> int:
        q = self.world.paid_question(paid_at=self.now(), asker_id=self.asker)
        with self.app.test_request_context():
            questions.offer(db.session, db.session.get(Question, q),
                            db.session.get(User, self.answerer), self.now(),
                            upss_settings.current(db.session))
            db.session.commit()
        return q

    def claimed(self) -> int:
        q = self.offered()
        self.world.act(questions.claim, q, self.answerer, self.now())
        return q

    def answered(self) -> int:
        q = self.claimed()
        self.world.act(questions.post_answer, q, self.answerer, "Open the camera app.",
                       self.now())
        return q

    def clarifying(self) -> int:
        q = self.answered()
        self.clarify(q)
        return q

    def clarify(self, q: int) -> None:
        self.world.act(questions.ask_clarification, q, self.asker, "Which app?", self.now())

    def reply(self, q: int) -> None:
        self.world.act(questions.reply_clarification, q, self.answerer, "The camera app.",
                       self.now())

    def closed(self) -> int:
        q = self.answered()
        self.world.act(questions.accept, q, self.asker, self.now())
        return q

    def disputed(self, real_stripe: bool = False) -> int:
        q = self.world.paid_question(paid_at=self.now(), asker_id=self.asker,
                                     real_stripe=real_stripe)
        with self.app.test_request_context():
            question, user = db.session.get(Question, q), db.session.get(User, self.answerer)
            questions.offer(db.session, question, user, self.now(),
                            upss_settings.current(db.session))
            questions.claim(db.session, question, user, self.now())
            questions.post_answer(db.session, question, user, "An answer.", self.now())
            questions.reject(db.session, question, question.asker, "Not helpful", self.now())
            db.session.commit()
        return q


def button(name: str, url: str, client, token: str) -> FormSpec:
    """A form with only a button (and the CSRF token): the hostile text goes into an extra
    field the view does not expect (and, at times, into the token)."""
    return FormSpec(name, url, {"note": ""}, client=client, token=token)


def _location(response) -> str:
    return response.headers.get("Location", "")


# --- the roles ------------------------------------------------------------------------------


def anonymous_forms(app, make_user) -> list[FormSpec]:
    _, email, password = make_user("asker")
    emails = count(1)

    def fresh():
        client = app.test_client()
        return client, csrf_token(client, "/sign-in")

    return [
        FormSpec("sign-up", "/sign-up",
                 {"name": "Aino Virtanen", "email": "", "password": PASSWORD,
                  "confirm": PASSWORD},
                 query={"next": "/ask"}, fresh=fresh,
                 dynamic=lambda: {"email": f"fuzz{next(emails)}@example.org"}),
        FormSpec("sign-in", "/sign-in", {"email": email, "password": password},
                 query={"next": "/questions"}, fresh=fresh),
    ]


def asker_forms(app, world) -> list[FormSpec]:
    answerer, asker = world.answerer(), world.user("asker")
    made = Questions(app, world, answerer, asker)
    to_clarify, to_reject, to_accept = made.answered(), made.answered(), made.answered()
    closed = made.closed()
    queued = world.paid_question(paid_at=made.now(), asker_id=asker, real_stripe=True)
    client, token = login(app, asker, f"/questions/{closed}")

    drafted = ask(client)
    assert drafted.status_code == 302, drafted.get_data(as_text=True)[:500]
    draft = int(_location(drafted).split("/")[-2])
    assert client.get(f"/questions/{draft}/pay").status_code == 200
    tipped = client.post(f"/questions/{closed}/tip", data={"csrf_token": token,
                                                           "t-amount": "2.50"})
    assert tipped.status_code == 302, tipped.get_data(as_text=True)[:500]
    tip = int(_location(tipped).split("/")[-2])

    clarify = FormSpec("asker: ask for a clarification", f"/questions/{to_clarify}/clarify",
                       {"c-message": "Which app do you mean?"}, client=client, token=token)

    def answer_the_clarification(response):
        if made.status(to_clarify) == "clarifying":
            made.reply(to_clarify)

    clarify.after = answer_the_clarification
    reject = FormSpec("asker: reject the answer", f"/questions/{to_reject}/reject",
                      {"r-reason": "It does not help."}, client=client, token=token)

    def new_answer_to_reject(response):
        if made.status(int(reject.url.split("/")[2])) != "answered":
            reject.url = f"/questions/{made.answered()}/reject"

    reject.after = new_answer_to_reject

    return [
        FormSpec("asker: ask a question", "/ask", {"title": QUESTION["title"],
                                                     "body": QUESTION["body"]},
                 other={"language": "en", "topic": "technology", "price": "12.50"},
                 client=client, token=token),
        clarify,
        reject,
        FormSpec("asker: rate the answer", f"/questions/{closed}/rate",
                 {"s-comment": "Thanks!"}, other={"s-stars": "5"}, client=client,
                 token=token),
        FormSpec("asker: tip", f"/questions/{closed}/tip", {"t-amount": "2.50"},
                 client=client, token=token),
        FormSpec("asker: test payment of a question", f"/questions/{draft}/pay/test",
                 {"scenario": "declined"}, client=client, token=token),
        FormSpec("asker: test payment of a tip", f"/tips/{tip}/pay/test",
                 {"scenario": "declined"}, client=client, token=token),
        FormSpec("asker: preferences", "/account/preferences", {"locale": "en"},
                 other={"large_text": "y", "high_contrast": "y"}, client=client, token=token),
        button("asker: accept the answer", f"/questions/{to_accept}/accept", client, token),
        button("asker: withdraw a queued question", f"/questions/{queued}/cancel", client,
               token),
        # Last, as they end the asker's sessions (the one above too): each example signs in
        # anew (slow, so fewer examples).
        FormSpec("asker: sign out everywhere", "/sign-out-everywhere", {"note": ""},
                 fresh=lambda: login(app, asker, "/account/preferences"), examples=4),
        FormSpec("asker: sign out", "/sign-out", {"note": ""},
                 fresh=lambda: login(app, asker, "/account/preferences"), examples=4),
    ]


def answerer_forms(app, world) -> list[FormSpec]:
    # Paid through Stripe Connect, so "set up payouts" goes all the way to the onboarding link.
    answerer, asker = world.answerer(payout_method="connect"), world.user("asker")
    organizer, applicant = world.user("organizer"), world.user("asker")
    made = Questions(app, world, answerer, asker)
    to_claim, to_decline = made.offered(), made.offered()
    to_save, to_send, to_reply = made.claimed(), made.claimed(), made.clarifying()
    to_extend = made.claimed()
    client, token = login(app, answerer, "/answer/queue")
    applicant_client, applicant_token = login(app, applicant, "/answer/apply")

    send = FormSpec("answerer: send the answer", f"/answer/questions/{to_send}",
                    {"a-answer": "Open the camera app."}, other={"action": "send"},
                    client=client, token=token)

    def new_question_to_send(response):
        if made.status(int(send.url.split("/")[3])) != "claimed":
            send.url = f"/answer/questions/{made.claimed()}"

    send.after = new_question_to_send
    reply = FormSpec("answerer: reply to a clarification", f"/answer/questions/{to_reply}",
                     {"r-reply": "The camera app."}, other={"action": "reply"}, client=client,
                     token=token)

    def ask_again(response):
        if made.status(to_reply) == "answered":
            made.clarify(to_reply)

    reply.after = ask_again

    def reject_pending_application(response):
        with app.test_request_context():
            pending = db.session.scalar(select(AnswererApplication).where(
                AnswererApplication.user_id == applicant,
                AnswererApplication.status == "pending"))
            if pending is not None:
                vetting.reject(db.session, pending, db.session.get(User, organizer),
                               reason="Fuzzing: apply again", now=utcnow())
                db.session.commit()

    return [
        button("answerer: pick up", f"/answer/questions/{to_claim}/claim", client, token),
        button("answerer: pass", f"/answer/questions/{to_decline}/decline", client, token),
        FormSpec("answerer: save the draft (button)", f"/answer/questions/{to_save}",
                 {"a-answer": "Half an answer"}, other={"action": "save"}, client=client,
                 token=token),
        FormSpec("answerer: autosave the draft", f"/answer/questions/{to_save}/draft",
                 {"answer": "Half an answer"}, client=client, token=token),
        # The "add time" button of the answer form: the text comes along and is saved.
        FormSpec("answerer: add time", f"/answer/questions/{to_extend}/extend",
                 {"a-answer": "Half an answer"}, other={"action": "extend"}, client=client,
                 token=token),
        send,
        reply,
        button("answerer: set up payouts with Stripe", "/answer/earnings/connect", client,
               token),
        FormSpec("applicant: apply to answer", "/answer/apply",
                 {"birth_year": "1950", "available_hours": "08:00-20:00",
                  "yearly_ceiling": "5000", "iban": "FI21 1234 5600 0007 85",
                  "account_holder": "Aino Virtanen"},
                 other={"basis": "age", "languages": ["fi", "sv"], "topics": ["health"],
                        "daily_limit": "3", "payout_method": "sepa"},
                 client=applicant_client, token=applicant_token,
                 after=reject_pending_application),
    ]


def organizer_forms(app, world) -> list[FormSpec]:
    from upss.web.organizer import SettingsForm, _fill

    organizer, asker = world.user("organizer"), world.user("asker")
    answerer = world.answerer(payout_method="sepa", iban="NO9386011117947",
                              account_holder="Kari Nordmann")
    made = Questions(app, world, answerer, asker)
    to_uphold, to_refund = made.disputed(), made.disputed(real_stripe=True)
    made.closed()  # earnings for a payout batch
    with app.test_request_context():
        batch = payouts.run_batch(db.session, utcnow() + timedelta(days=15), minimum_cents=1)
        db.session.commit()
        assert batch is not None
        batch_id, returned_id = batch.id, batch.payouts[0].id
    to_suspend = world.answerer()
    to_reinstate = world.answerer(active=False)

    def pending_application() -> int:
        user_id = world.user("asker")
        with app.test_request_context():
            found = vetting.apply(db.session, db.session.get(User, user_id),
                                  vetting.ApplicationData(
                                      basis="age", birth_year=1950, languages=("fi",),
                                      topics=(), available_from_minute=0,
                                      available_until_minute=1440, daily_limit=3,
                                      yearly_ceiling_cents=None, payout_method="connect",
                                      iban=None, account_holder=None), utcnow())
            db.session.commit()
            return found.id

    with app.test_request_context():
        current = upss_settings.current(db.session)
        form = SettingsForm(current.currency, formdata=None)
        _fill(form, current)
        valid = {f.name: str(f.data) for f in form if f.name != "csrf_token"}
    numbers = ("offer_hours", "lock_hours", "lock_hours_large", "deadline_hours",
               "auto_accept_days", "urgent_hours", "release_max_per_run")

    client, token = login(app, organizer, "/organizer/settings")
    approve = FormSpec("organizer: approve an application",
                       f"/organizer/applications/{pending_application()}",
                       {"a-method": "Pension card seen in person", "a-note": "At the library"},
                       other={"decision": "approve", "a-verified_on": "2026-01-14"},
                       client=client, token=token)
    refuse = FormSpec("organizer: reject an application",
                      f"/organizer/applications/{pending_application()}",
                      {"r-reason": "We could not reach you"}, other={"decision": "reject"},
                      client=client, token=token)

    def next_application(spec):
        def after(response):
            with app.app_context():
                status = db.session.get(AnswererApplication,
                                        int(spec.url.rsplit("/", 1)[1])).status
            if status != "pending":
                spec.url = f"/organizer/applications/{pending_application()}"
        return after

    approve.after, refuse.after = next_application(approve), next_application(refuse)

    return [
        FormSpec("organizer: settings", "/organizer/settings",
                 {k: v for k, v in valid.items() if k not in numbers},
                 other={k: valid[k] for k in numbers}, client=client, token=token),
        approve,
        refuse,
        button("organizer: uphold a dispute", f"/organizer/disputes/{to_uphold}/uphold",
               client, token),
        button("organizer: refund a dispute", f"/organizer/disputes/{to_refund}/refund",
               client, token),
        button("organizer: suspend an answerer", f"/organizer/answerers/{to_suspend}/suspend",
               client, token),
        button("organizer: reinstate an answerer",
               f"/organizer/answerers/{to_reinstate}/reinstate", client, token),
        button("organizer: run a payout batch", "/organizer/payouts/run", client, token),
        button("organizer: mark the SEPA file sent", f"/organizer/payouts/{batch_id}/sent",
               client, token),
        # After the file is marked sent: a payment of it can come back from the bank.
        FormSpec("organizer: mark a SEPA payment returned by the bank",
                 f"/organizer/payouts/{batch_id}/returned/{returned_id}",
                 {f"returned-{returned_id}-reason": "AC04 account closed"}, client=client,
                 token=token),
        button("organizer: mark the SEPA file settled",
               f"/organizer/payouts/{batch_id}/settled", client, token),
        button("organizer: reconcile with Stripe now", "/organizer/reconciliation", client,
               token),
        button("organizer: check the whole ledger", "/organizer/ledger/checks/full", client,
               token),
    ]


# --- the tests: each role's forms, once on SQLite and once on PostgreSQL ---------------------


def test_fuzz_anonymous_forms(app, make_user):
    fuzz_forms(anonymous_forms(app, make_user))


def test_fuzz_asker_forms(app, world):
    fuzz_forms(asker_forms(app, world))


def test_fuzz_answerer_forms(app, world):
    fuzz_forms(answerer_forms(app, world))


def test_fuzz_organizer_forms(app, world):
    fuzz_forms(organizer_forms(app, world))
