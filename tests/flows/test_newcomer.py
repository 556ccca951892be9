"""What a newcomer hit (issue 16): every form on a page with several has its own accessible
name, a declined card says so once, each role lands on its own start page, signing up from
"Apply to answer" returns to the application, a favicon, the question's title in the
question's language everywhere, and two Finnish words that were one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import event, select

from tests.conftest import ask, csrf_token, sign_in_as, submit
from upss import account_tokens, overview, payouts, questions, release
from upss.extensions import db
from upss.models import (
    AnswererProfile,
    PayoutBatch,
    ReconciliationRun,
    StripeDispute,
    User,
)

TRANSLATIONS = Path(__file__).resolve().parents[2] / "translations"
#: Elements that have no end tag.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.text = ""

    def lang(self) -> str | None:
        """The language of this element: its own ``lang``, else its nearest ancestor's."""
        node = self
        while node is not None:
            if "lang" in node.attrs:
                return node.attrs["lang"]
            node = node.parent
        return None


class Page(HTMLParser):
    """An HTML page as a list of elements with their text (their descendants' too), and every
    piece of text with the element it is in."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[Node] = []
        self.texts: list[tuple[str, Node]] = []
        self._open: list[Node] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self._open[-1] if self._open else None)
        self.elements.append(node)
        if tag not in VOID:
            self._open.append(node)

    def handle_startendtag(self, tag, attrs):
        self.elements.append(Node(tag, {k: v or "" for k, v in attrs},
                                  self._open[-1] if self._open else None))

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data):
        if self._open:
            self.texts.append((data, self._open[-1]))
        for node in self._open:
            node.text += data

    def by_id(self, element_id: str) -> Node | None:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) <= 1, f"id {element_id!r} is used {len(found)} times"
        return found[0] if found else None

    def forms(self) -> list[Node]:
        return [e for e in self.elements if e.tag == "form"]

    def accessible_name(self, form: Node) -> str:
        """A form's accessible name: the text its ``aria-labelledby`` points to, else its
        ``aria-label`` ("" if it has none, or one pointing nowhere)."""
        if "aria-labelledby" in form.attrs:
            parts = []
            for ref in form.attrs["aria-labelledby"].split():
                target = self.by_id(ref)
                if target is None or not target.text.strip():
                    return ""
                parts.append(" ".join(target.text.split()))
            return " ".join(parts)
        return " ".join(form.attrs.get("aria-label", "").split())


def get_page(client, url: str) -> Page:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return Page(response.get_data(as_text=True))


# --- A world where each role's pages have several forms -------------------------------------

@pytest.fixture
def app_config(app_config):
    return {**app_config, "UPSS_PAYOUT_AFTER_DAYS": 0, "UPSS_RELEASE_MAX_PER_RUN": 20}


TITLES = {"answered": "Miten soitan videopuhelun?", "closed": "Kuinka kauan leipä säilyy?",
          "disputed": "Mikä on paras kahvinkeitin?", "disputed2": "Miten pakastan marjoja?",
          "claimed": "Kuka kirjoitti Kalevalan?", "offered": "Milloin lumi sulaa?",
          "offered2": "Mistä saan bussikortin?", "queued": "Missä on lähin kirjasto?",
          "clarifying": "Miksi taivas on sininen?"}


def paid_question(app, asker_id: int, title: str, language: str, paid_at) -> int:
    """A question with ``title`` in ``language``, paid at ``paid_at`` (no Stripe call)."""
    with app.test_request_context():
        asker = db.session.get(User, asker_id)
        q = questions.create_question(db.session, asker, title=title, body="Kysymys.",
                                      language=language, topic="other", price_cents=1500)
        pi_id = f"pi_test_{uuid.uuid4().hex[:12]}"
        questions.start_payment(db.session, q, asker, pi_id)
        questions.confirm_payment(db.session, q, pi_id, now=paid_at)
        db.session.commit()
        return q.id


@pytest.fixture
def site(app, world):
    """Every role, with questions (titled in Finnish, asked from English pages) in the states
    whose pages have several forms: offers to pick up or pass, an answer to accept, clarify or
    reject, a closed question to rate and tip, two rejected answers to decide, an application
    to approve or reject, two answerers to suspend, and a bank file to mark as sent."""
    now = datetime.now(UTC)
    organizer, asker = world.user("organizer"), world.user("asker")
    applicant = world.applicant(now, basis="age", birth_year=1950, languages=("fi",))
    answerer = world.answerer(languages="en,fi")
    other_answerer = world.answerer(languages="sv")
    with app.app_context():
        profile = db.session.get(AnswererProfile, answerer)
        profile.iban, profile.account_holder = "FI2112345600000785", "Answerer"
        db.session.commit()
    ids = {name: paid_question(app, asker, title, "fi", now - timedelta(hours=3))
           for name, title in TITLES.items()}
    world.run(release.release_due_questions, now, ignore_window=True)
    for name in ("closed", "answered", "claimed", "disputed", "disputed2", "clarifying"):
        world.act(questions.claim, ids[name], answerer, now)
    for name in ("closed", "answered", "disputed", "disputed2", "clarifying"):
        world.act(questions.post_answer, ids[name], answerer, "Näin se käy.", now)
    world.act(questions.ask_clarification, ids["clarifying"], asker, "Kerro lisää.", now)
    world.act(questions.accept, ids["closed"], asker, now)
    for name in ("disputed", "disputed2"):
        world.act(questions.reject, ids[name], asker, "Ei vastannut kysymykseen", now)
    world.act(questions.decline, ids["queued"], answerer, now)
    with app.test_request_context():
        ids["draft"] = questions.create_question(
            db.session, db.session.get(User, asker), title="Luonnos", body="Maksamatta.",
            language="fi", topic="other", price_cents=1500).id
        db.session.commit()
        assert payouts.run_batch(db.session, now + timedelta(minutes=1),
                                 settled_before_days=0) is not None
        db.session.commit()
    return {"organizer": organizer, "asker": asker, "answerer": answerer,
            "other_answerer": other_answerer, "applicant": applicant, "ids": ids}


def role_pages(site) -> dict[str, list[str]]:
    ids = site["ids"]
    return {
        "asker": ["/questions", "/ask", f"/questions/{ids['answered']}",
                  f"/questions/{ids['closed']}", f"/questions/{ids['queued']}",
                  f"/questions/{ids['clarifying']}", f"/questions/{ids['draft']}/pay",
                  "/account/preferences", "/answer/apply"],
        "answerer": ["/answer/queue", f"/answer/questions/{ids['claimed']}",
                     f"/answer/questions/{ids['offered']}",
                     f"/answer/questions/{ids['clarifying']}", "/answer/earnings"],
        "organizer": ["/organizer/", "/organizer/applications", "/organizer/applications/1",
                      "/organizer/answerers", "/organizer/disputes", "/organizer/settings",
                      "/organizer/payouts", "/organizer/reconciliation"],
    }


def test_every_page_with_several_forms_names_each_form(app, client, site):
    """On every page of every role with more than one form, each form has an accessible name
    (an ``aria-label``, or an ``aria-labelledby`` pointing at elements with text), and no two
    forms of a page have the same name."""
    problems, form_counts = [], {}
    for role, urls in role_pages(site).items():
        sign_in_as(client, app, site[role])
        for url in urls:
            page = get_page(client, url)
            forms = page.forms()
            form_counts[url] = len(forms)
            if len(forms) < 2:
                continue
            names = [page.accessible_name(form) for form in forms]
            problems += [f"{role} {url}: form {i + 1} (action {form.attrs.get('action', '')!r}) "
                         "has no accessible name"
                         for i, (form, name) in enumerate(zip(forms, names, strict=True))
                         if not name]
            twice = {name for name in names if name and names.count(name) > 1}
            problems += [f"{role} {url}: two forms are both named {name!r}" for name in twice]
    assert problems == []
    ids = site["ids"]
    # The pages the issue names really had several forms here: the checks were not vacuous.
    # Every page also has sign out (header) and the language (footer).
    assert form_counts["/answer/queue"] == 6  # pick up and pass for two offers
    assert form_counts[f"/questions/{ids['answered']}"] == 5  # accept, clarify, reject
    assert form_counts["/organizer/applications/1"] == 4  # approve, reject
    assert form_counts["/organizer/answerers"] == 4  # one suspend form per answerer
    assert form_counts["/organizer/disputes"] == 6  # uphold and refund, twice
    assert form_counts["/organizer/payouts"] >= 4  # run a batch, mark the file sent
    assert form_counts["/account/preferences"] == 4
    assert form_counts[f"/questions/{ids['closed']}"] == 4  # rate, tip
    assert form_counts[f"/questions/{ids['draft']}/pay"] == 3  # the test card
    assert form_counts[f"/answer/questions/{ids['clarifying']}"] == 3  # the reply


def test_the_forms_are_named_by_what_they_do(app, client, site):
    ids = site["ids"]
    sign_in_as(client, app, site["answerer"])
    page = get_page(client, "/answer/queue")
    names = sorted(page.accessible_name(form) for form in page.forms())
    assert names == sorted([f"Pick up – {TITLES['offered']}", f"Pass – {TITLES['offered']}",
                            f"Pick up – {TITLES['offered2']}", f"Pass – {TITLES['offered2']}",
                            "Sign out", "Language"])
    sign_in_as(client, app, site["asker"])
    page = get_page(client, f"/questions/{ids['answered']}")
    assert [page.accessible_name(form) for form in page.forms()] == [
        "Sign out", "Accept the answer", "Ask for more detail", "Reject the answer", "Language"]
    sign_in_as(client, app, site["organizer"])
    page = get_page(client, "/organizer/applications/1")
    assert [page.accessible_name(form) for form in page.forms()] == [
        "Sign out", "Approve", "Reject", "Language"]
    page = get_page(client, "/organizer/answerers")
    assert sorted(page.accessible_name(form) for form in page.forms())[:3] == [
        "Language", "Sign out", "Suspend Answerer 4"]


def test_the_skip_link_is_inside_the_banner_landmark(client):
    page = Page(client.get("/").get_data(as_text=True))
    skip = [e for e in page.elements if "skip-link" in e.attrs.get("class", "").split()]
    assert len(skip) == 1 and skip[0].parent.tag == "header"
    assert skip[0].attrs["href"] == "#main-content"
    assert page.by_id("main-content").tag == "main"
    # A <header> is the banner landmark only outside <main>, <article>, <section> and so on.
    node = skip[0].parent.parent
    while node is not None:
        assert node.tag in ("body", "html"), f"the header is inside <{node.tag}>"
        node = node.parent


# --- 12. The question's title in the question's language ------------------------------------

def _title_languages(page: Page, title: str) -> list[str | None]:
    """The language of every piece of text containing ``title`` (not the <title> element)."""
    return [node.lang() for text, node in page.texts if title in text and node.tag != "title"]


def test_a_question_title_carries_the_questions_language_everywhere(app, client, site):
    """The questions are in Finnish, the pages in English: wherever a title is shown, it is
    inside an element with lang="fi"."""
    ids = site["ids"]
    shown = {
        "asker": {"/questions": list(TITLES.values()),
                  f"/questions/{ids['answered']}": [TITLES["answered"]],
                  f"/questions/{ids['closed']}/receipt": [TITLES["closed"]]},
        "answerer": {"/answer/queue": [TITLES["offered"], TITLES["offered2"],
                                       TITLES["claimed"], TITLES["clarifying"]],
                     f"/answer/questions/{ids['claimed']}": [TITLES["claimed"]],
                     f"/answer/questions/{ids['answered']}": [TITLES["answered"]]},
        "organizer": {"/organizer/disputes": [TITLES["disputed"], TITLES["disputed2"]]},
    }
    wrong = []
    for role, urls in shown.items():
        sign_in_as(client, app, site[role])
        for url, titles in urls.items():
            page = get_page(client, url)
            assert page.elements[0].tag == "html" and page.elements[0].attrs["lang"] == "en"
            for title in titles:
                langs = _title_languages(page, title)
                assert langs, f"{url}: {title!r} is not shown"
                wrong += [f"{role} {url}: {title!r} is read as {lang!r}"
                          for lang in langs if lang != "fi"]
    assert wrong == []


def test_the_pay_page_shows_the_title_in_its_language(app, asker_client):
    ask(asker_client, title="Hur ringer jag ett videosamtal?", language="sv")
    page = get_page(asker_client, "/questions/1/pay")
    langs = _title_languages(page, "Hur ringer jag ett videosamtal?")
    assert langs and set(langs) == {"sv"}


# --- 3. A declined card says so once ----------------------------------------------------------

def test_a_declined_card_shows_its_message_once(app, asker_client, live_server):
    ask(asker_client)
    asker_client.get("/questions/1/pay")
    response = submit(asker_client, "/questions/1/pay/test", {"scenario": "declined"},
                      form_url="/questions/1/pay", follow_redirects=True)
    assert response.status_code == 200 and response.request.path == "/questions/1/pay"
    text = response.get_data(as_text=True)
    assert text.count("Your card was declined") == 1
    assert text.count("No money was taken") == 1
    assert text.count('role="alert"') == 1
    # Reloading the pay page shows the reason still, once.
    text = asker_client.get("/questions/1/pay").get_data(as_text=True)
    assert text.count("Your card was declined") == 1 and text.count("No money was taken") == 1


# --- 4. Each role's start page ------------------------------------------------------------------

def _sign_in_location(client, email: str, query: str = "") -> str:
    token = csrf_token(client, "/sign-in")
    response = client.post("/sign-in" + query, data={
        "csrf_token": token, "email": email, "password": "correct horse 9"})
    assert response.status_code == 302
    return response.headers["Location"]


@pytest.mark.parametrize("role, start", [("asker", "/questions"), ("answerer", "/answer/queue"),
                                         ("organizer", "/organizer/")])
def test_each_role_lands_on_its_own_start_page(app, client, make_user, role, start):
    _, email, _ = make_user(role)
    assert _sign_in_location(client, email) == start
    assert client.get(start).status_code == 200
    client.delete_cookie("session")
    # A safe next still wins; an unsafe one is ignored.
    assert _sign_in_location(client, email, "?next=/account/preferences") == (
        "/account/preferences")
    client.delete_cookie("session")
    assert _sign_in_location(client, email, "?next=https://evil.example/") == start
    client.delete_cookie("session")
    assert _sign_in_location(client, email, "?next=/\\evil.example") == start


def test_a_user_with_no_role_lands_on_my_questions(app, client):
    response = submit(client, "/sign-up", {"name": "Ny", "email": "ny@example.org",
                                           "password": "correct horse 9",
                                           "confirm": "correct horse 9"})
    assert response.status_code == 200  # "check your e-mail": not signed in by the form
    assert "Check your e-mail" in response.get_data(as_text=True)
    assert _sign_in_location(client, "ny@example.org") == "/questions"


def test_an_organizer_who_also_answers_lands_on_the_overview(app, client, world):
    both = world.answerer()
    with app.app_context():
        db.session.get(User, both).is_organizer = True
        db.session.commit()
    assert _sign_in_location(client, f"answerer{world.count}@example.org") == "/organizer/"


def test_the_organizer_overview_counts_what_waits(app, client, site):
    sign_in_as(client, app, site["organizer"])
    page = get_page(client, "/organizer/")
    links = {" ".join(e.text.split()): e.attrs["href"] for e in page.elements
             if e.tag == "a" and e.parent is not None and e.parent.tag == "li"
             and e.parent.parent is not None
             and "overview-list" in e.parent.parent.attrs.get("class", "")}
    assert links == {
        "1 application to answer waits for a decision": "/organizer/applications",
        "2 rejected answers wait for a decision": "/organizer/disputes",
        "1 bank file is not yet marked as sent to the bank": "/organizer/payouts",
        "0 card disputes are open at Stripe": "/organizer/reconciliation",
        "Reconciliation with Stripe has not run yet": "/organizer/reconciliation",
    }
    assert page.by_id("main-content") is not None
    nav = [e for e in page.elements if e.tag == "a" and e.attrs.get("aria-current") == "page"]
    assert [" ".join(n.text.split()) for n in nav] == ["Overview"]
    # The main menu's "Organizer" link leads here.
    assert any(e.tag == "a" and e.attrs.get("href") == "/organizer/"
               and e.text.strip() == "Organizer" for e in page.elements)
    sign_in_as(client, app, site["asker"])
    assert client.get("/organizer/").status_code == 403


def test_the_overview_counts_with_count_queries(app, site):
    """The overview's service counts in the database: every query is a COUNT, except the one
    row of the last reconciliation run."""
    now = datetime.now(UTC)
    with app.app_context():
        db.session.add(ReconciliationRun(started_at=now, finished_at=now, checked=3,
                                         differences='[{"what": "a", "stripe_cents": 1, '
                                                     '"ledger_cents": 0, "currency": "EUR"}]'))
        db.session.add(StripeDispute(id="dp_1", amount_cents=1500, currency="EUR",
                                     status="needs_response"))
        db.session.add(StripeDispute(id="dp_2", amount_cents=1500, currency="EUR",
                                     status="won"))
        db.session.commit()
        statements = []

        def record(conn, cursor, statement, parameters, context, executemany):
            statements.append(" ".join(statement.split()).lower())

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            found = overview.organizer_overview(db.session)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        assert (found.applications_waiting, found.rejected_answers, found.card_disputes,
                found.bank_files_to_send) == (1, 2, 1, 1)
        assert found.reconciliation.differences == 1 and not found.reconciliation.failed
        selects = [s for s in statements if s.startswith("select")]
        counts = [s for s in selects if s.startswith("select count(*)")]
        assert len(counts) == 5  # applications, rejected answers, disputes, files, messages
        assert [s for s in selects if s not in counts] == [
            s for s in selects if "from reconciliation_run" in s and "limit" in s]
        db.session.get(PayoutBatch, 1).sepa_marked_sent_at = now
        db.session.commit()
        assert overview.organizer_overview(db.session).bank_files_to_send == 0


# --- 5. Signing up from "Apply to answer" ------------------------------------------------------

def _href(page: Page, text: str) -> str:
    found = [e.attrs["href"] for e in page.elements
             if e.tag == "a" and " ".join(e.text.split()) == text]
    assert found, f"no link {text!r}"
    return found[-1]


def test_signing_up_from_apply_to_answer_returns_to_the_application(app, client):
    home = get_page(client, "/")
    response = client.get(_href(home, "Apply to answer"))
    assert response.status_code == 302
    sign_in_url = response.headers["Location"]
    assert urlsplit(sign_in_url).path == "/sign-in"
    assert parse_qs(urlsplit(sign_in_url).query)["next"] == ["/answer/apply"]
    sign_in_page = get_page(client, sign_in_url)
    # Both the page's link and the main menu's carry where the visitor was going.
    sign_up_url = _href(sign_in_page, "Create an account")
    assert parse_qs(urlsplit(sign_up_url).query)["next"] == ["/answer/apply"]
    response = submit(client, sign_up_url, {"name": "Aino", "email": "aino@example.org",
                                            "password": "a long password",
                                            "confirm": "a long password"})
    assert response.status_code == 200
    sign_in_url = _href(Page(response.get_data(as_text=True)), "Sign in")
    assert parse_qs(urlsplit(sign_in_url).query)["next"] == ["/answer/apply"]
    token = csrf_token(client, sign_in_url)
    response = client.post(sign_in_url, data={"csrf_token": token, "email": "aino@example.org",
                                              "password": "a long password"})
    assert response.status_code == 302 and response.headers["Location"] == "/answer/apply"
    # Not confirmed yet: asked to confirm first; the link from the e-mail opens the form.
    refused = client.get("/answer/apply")
    assert refused.status_code == 403
    assert "Confirm your e-mail address first" in refused.get_data(as_text=True)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "aino@example.org"))
        link = "/confirm/" + account_tokens.make("confirm", user.id, user.email)
    assert client.get(link).status_code == 302
    assert "Apply to answer questions" in client.get("/answer/apply").get_data(as_text=True)
    # And back from sign-up to sign-in keeps it too.
    client.delete_cookie("session")
    sign_up_page = get_page(client, sign_up_url)
    assert parse_qs(urlsplit(_href(sign_up_page, "Sign in")).query)["next"] == [
        "/answer/apply"]


@pytest.mark.parametrize("unsafe", ["https://evil.example/", "//evil.example/",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_sign_up_ignores_an_unsafe_next(app, client, unsafe):
    page = get_page(client, "/sign-in?next=" + unsafe)
    assert "next=" not in _href(page, "Create an account")
    response = submit(client, "/sign-up?next=" + unsafe, {
        "name": "Ola", "email": "ola@example.org", "password": "a long password",
        "confirm": "a long password"}, form_url="/sign-up")
    assert response.status_code == 200
    assert "next=" not in _href(Page(response.get_data(as_text=True)), "Sign in")


def test_signing_in_from_apply_to_answer_returns_to_the_application(app, client, make_user):
    _, email, password = make_user()
    response = client.get("/answer/apply")
    sign_in_url = response.headers["Location"]
    token = csrf_token(client, sign_in_url)
    response = client.post(sign_in_url, data={"csrf_token": token, "email": email,
                                              "password": password})
    assert response.headers["Location"] == "/answer/apply"


# --- 7. A favicon --------------------------------------------------------------------------------

def test_favicon_ico_answers_and_the_icon_is_linked(client):
    response = client.get("/favicon.ico")
    assert response.status_code in (200, 301, 302, 308)
    if response.status_code != 200:
        response = client.get(response.headers["Location"])
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    svg = response.get_data(as_text=True)
    assert "<title" in svg and "UPSS" in svg
    page = Page(client.get("/").get_data(as_text=True))
    icons = [e for e in page.elements if e.tag == "link" and e.attrs.get("rel") == "icon"]
    assert len(icons) == 1 and icons[0].parent.tag == "head"
    assert icons[0].attrs["href"].endswith("/favicon.svg")
    assert client.get(icons[0].attrs["href"]).status_code == 200


# --- 15. "Your question" and "What you asked" in other words -------------------------------------

@pytest.mark.parametrize("locale", ["fi", "nb", "sv", "sl"])
def test_the_question_pages_eyebrow_and_heading_differ(locale):
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", "rb") as f:
        catalog = read_po(f)
    eyebrow, heading = catalog.get("Your question").string, catalog.get("What you asked").string
    assert eyebrow and heading
    assert eyebrow.casefold() != heading.casefold()


def test_the_finnish_question_page_shows_both_words(app, client, site):
    with app.app_context():
        db.session.get(User, site["asker"]).locale = "fi"
        db.session.commit()
    sign_in_as(client, app, site["asker"])
    text = client.get(f"/questions/{site['ids']['answered']}").get_data(as_text=True)
    assert "Kysymyksesi" in text and "Mitä kysyit" in text

