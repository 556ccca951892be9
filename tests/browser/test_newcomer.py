"""Keyboard only, in the real browser (issue 16): the skip link is the first stop and sits in
the banner; each role lands on its own start page after signing in; every form of a page with
several has its own name (as a screen reader finds it, by role and name); the question's title
is read in the question's language. axe-core finds nothing, and the organizer's new overview
is checked in all five languages and with larger text and high contrast."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.keyboard import activate, sign_in_by_keyboard, tab_to
from upss import questions, release
from upss.extensions import db
from upss.models import User

TITLES = ("Milloin lumi sulaa?", "Mistä saan bussikortin?")
#: The overview's heading in each language (translations/<lang>/LC_MESSAGES/messages.po).
OVERVIEW_HEADINGS = {"en": "What waits for you", "fi": "Sinua odottavat asiat",
                     "nb": "Dette venter på deg", "sv": "Det här väntar på dig",
                     "sl": "Kaj vas čaka"}


def finnish_question(app, asker_id: int, title: str) -> int:
    """A question titled ``title`` in Finnish, paid now (no Stripe call)."""
    with app.test_request_context():
        asker = db.session.get(User, asker_id)
        q = questions.create_question(db.session, asker, title=title, body="Kysymys.",
                                      language="fi", topic="other", price_cents=1500)
        pi_id = f"pi_test_{uuid.uuid4().hex[:12]}"
        questions.start_payment(db.session, q, asker, pi_id)
        questions.confirm_payment(db.session, q, pi_id, now=datetime.now(UTC))
        db.session.commit()
        return q.id


def first_tab_is_the_skip_link(page) -> None:
    active = tab_to(page, "^Skip to main content$", limit=1)
    assert active["tag"] == "A"
    assert page.evaluate("""() => {
        const header = document.activeElement.closest('header');
        return header !== null && header.parentElement === document.body;
    }"""), "the skip link is not inside the page's banner (a <header> directly in <body>)"


def test_answerer_lands_on_the_queue_and_tells_the_forms_apart(page, live_server, app, world,
                                                               a11y):
    answerer = world.answerer(languages="en,fi")
    asker = world.user("asker")
    ids = [finnish_question(app, asker, title) for title in TITLES]
    world.run(release.release_due_questions, datetime.now(UTC), ignore_window=True)

    page.goto(live_server + "/sign-in")
    first_tab_is_the_skip_link(page)
    sign_in_by_keyboard(page, live_server, f"answerer{answerer}@example.org")
    assert page.url == live_server + "/answer/queue"
    expect(page.get_by_role("heading", level=1)).to_have_text("My answer queue")
    # Six forms, each found by its own name: pick up and pass for each offer, sign out and
    # the language.
    expect(page.get_by_role("form")).to_have_count(6)
    for title in TITLES:
        for action in ("Pick up", "Pass"):
            form = page.get_by_role("form", name=f"{action} – {title}", exact=True)
            expect(form).to_have_count(1)
            expect(form.get_by_role("button")).to_have_accessible_name(f"{action} – {title}")
        expect(page.get_by_role("heading", level=3, name=title)).to_have_attribute("lang", "fi")
    expect(page.get_by_role("form", name="Sign out", exact=True)).to_have_count(1)
    a11y.check(page, "answerer queue with two offers")
    screenshot(page, "answerer-queue-two-offers")

    activate(page, f"^Pick up\\s+– {re.escape(TITLES[1])}$")
    assert page.url.endswith(f"/answer/questions/{ids[1]}")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(TITLES[1])
    expect(heading).to_have_attribute("lang", "fi")
    expect(page.get_by_role("form", name="Your answer", exact=True)).to_have_count(1)
    a11y.check(page, "answer page")
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_asker_lands_on_my_questions_and_tells_the_answer_forms_apart(page, live_server, app,
                                                                      world, a11y):
    answerer = world.answerer(languages="fi")
    asker = world.user("asker")
    q = finnish_question(app, asker, TITLES[0])
    now = datetime.now(UTC)
    world.run(release.release_due_questions, now, ignore_window=True)
    world.act(questions.claim, q, answerer, now)
    world.act(questions.post_answer, q, answerer, "Huhtikuussa.", now)

    sign_in_by_keyboard(page, live_server, f"asker{asker}@example.org")
    assert page.url == live_server + "/questions"
    expect(page.get_by_role("heading", level=1)).to_have_text("My questions")
    link = page.get_by_role("link", name=TITLES[0])
    expect(link).to_have_attribute("lang", "fi")
    a11y.check(page, "my questions")
    activate(page, f"^{re.escape(TITLES[0])}$")
    expect(page.get_by_role("heading", level=1)).to_have_attribute("lang", "fi")
    for name in ("Accept the answer", "Ask for more detail", "Reject the answer", "Sign out"):
        expect(page.get_by_role("form", name=name, exact=True)).to_have_count(1)
    expect(page.get_by_role("form")).to_have_count(5)  # and sign out, the language
    a11y.check(page, "answered question")
    activate(page, "^Accept the answer$")
    expect(page.get_by_role("status").first).to_contain_text("The answer is accepted")
    for name in ("Rate the answer", "Say thank you with a tip", "Sign out"):
        expect(page.get_by_role("form", name=name, exact=True)).to_have_count(1)
    a11y.check(page, "closed question")
    assert a11y.violations == [], "\n".join(a11y.violations)


@pytest.fixture
def organizer_site(app, world):
    organizer = world.user("organizer")
    world.applicant(basis="age", birth_year=1950, languages=("fi",))
    return organizer


def test_organizer_lands_on_the_overview_and_follows_it(page, live_server, app, organizer_site,
                                                        a11y):
    page.goto(live_server + "/")
    first_tab_is_the_skip_link(page)
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main-content"

    sign_in_by_keyboard(page, live_server, f"organizer{organizer_site}@example.org")
    assert page.url == live_server + "/organizer/"
    expect(page.get_by_role("heading", level=1)).to_have_text("What waits for you")
    expect(page.get_by_role("navigation", name="Organizer pages").get_by_role(
        "link", name="Overview")).to_have_attribute("aria-current", "page")
    a11y.check(page, "organizer overview")
    screenshot(page, "organizer-overview")

    activate(page, "^1 application to answer waits for a decision$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Applications to answer")
    activate(page, "^Asker 2$")
    for name in ("Approve", "Reject", "Sign out"):
        expect(page.get_by_role("form", name=name, exact=True)).to_have_count(1)
    expect(page.get_by_role("form")).to_have_count(4)  # and sign out, the language
    a11y.check(page, "application")
    activate(page, "^Organizer$")
    assert page.url == live_server + "/organizer/"
    assert a11y.violations == [], "\n".join(a11y.violations)


@pytest.mark.parametrize("variant", [*OVERVIEW_HEADINGS, "large-contrast"])
def test_the_overview_is_clean_in_every_language_and_display(page, live_server, app,
                                                             organizer_site, a11y, variant):
    locale = "en" if variant == "large-contrast" else variant
    with app.app_context():
        user = db.session.get(User, organizer_site)
        user.locale = locale
        user.large_text = user.high_contrast = variant == "large-contrast"
        db.session.commit()
    sign_in_by_keyboard(page, live_server, f"organizer{organizer_site}@example.org")
    assert page.url == live_server + "/organizer/"
    assert page.locator("html").get_attribute("lang") == locale
    expect(page.get_by_role("heading", level=1)).to_have_text(OVERVIEW_HEADINGS[locale])
    expect(page.locator(".overview-list a")).to_have_count(5)
    a11y.check(page, f"overview {variant}")
    page.set_viewport_size({"width": 320, "height": 800})
    page.reload()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 320
    a11y.check(page, f"overview {variant} at 320 px")
    assert a11y.violations == [], "\n".join(a11y.violations)
