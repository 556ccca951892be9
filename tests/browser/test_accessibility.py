"""Every page, as each role, in English, in Finnish, and with larger text + high contrast:
axe-core (WCAG 2.0/2.1/2.2 A and AA, best practice) finds nothing; at 320 CSS px the key pages
do not scroll sideways. Screenshots at desktop width and 320 px go to test-artifacts/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.browser.conftest import screenshot
from upss import ledger_check, payouts, questions, release
from upss.extensions import db
from upss.models import AnswererProfile, User

VARIANTS = {"en": ("en", False, False), "fi": ("fi", False, False),
            "large-contrast": ("en", True, True)}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "UPSS_PAYOUT_AFTER_DAYS": 0, "UPSS_RELEASE_MAX_PER_RUN": 10}


@pytest.fixture
def site(app, world):
    """Users of every role and questions in every state an asker and an answerer see."""
    now = datetime.now(UTC)
    organizer, asker = world.user("organizer"), world.user("asker")
    world.applicant(now)  # an application waiting to be decided
    answerer = world.answerer(languages="en,fi")
    with app.app_context():
        db.session.get(AnswererProfile, answerer).iban = "FI2112345600000785"
        db.session.commit()
    ids = {}
    for name in ("closed", "answered", "claimed", "offered", "queued", "disputed",
                 "clarifying"):
        ids[name] = world.paid_question(paid_at=now - timedelta(hours=3), price_cents=1500,
                                        asker_id=asker)
    world.run(release.release_due_questions, now, ignore_window=True)
    for name in ("closed", "answered", "claimed", "disputed", "clarifying"):
        world.act(questions.claim, ids[name], answerer, now)
    for name in ("closed", "answered", "disputed", "clarifying"):
        world.act(questions.post_answer, ids[name], answerer, "Tap the green phone.", now)
    # The queue lists it under "The asker wants more detail".
    world.act(questions.ask_clarification, ids["clarifying"], asker, "Which button?", now)
    world.act(questions.accept, ids["closed"], asker, now)
    world.act(questions.reject, ids["disputed"], asker, "Not what I asked", now)
    world.act(questions.decline, ids["queued"], answerer, now)  # back in the queue
    with app.test_request_context():
        payouts.run_batch(db.session, now + timedelta(minutes=1))
        db.session.commit()
        draft = questions.create_question(db.session, db.session.get(User, asker), title="Draft",
                                          body="Unpaid", language="fi", topic="home",
                                          price_cents=500)
        db.session.commit()
        ids["draft"] = draft.id
        ledger_check.check_now(db.session, "full", now)  # the ledger page's totals
        db.session.commit()
    return {"organizer": organizer, "asker": asker, "answerer": answerer, "ids": ids}


def pages(site) -> dict[str, list[str]]:
    ids = site["ids"]
    return {
        "anonymous": ["/", "/sign-in", "/sign-up", "/no-such-page"],
        "asker": ["/questions", "/ask", f"/questions/{ids['draft']}/pay",
                  f"/questions/{ids['queued']}", f"/questions/{ids['answered']}",
                  f"/questions/{ids['closed']}", f"/questions/{ids['closed']}/receipt",
                  f"/questions/{ids['disputed']}", "/account/preferences", "/answer/apply"],
        "answerer": ["/answer/queue", f"/answer/questions/{ids['claimed']}",
                     f"/answer/questions/{ids['closed']}", "/answer/earnings",
                     "/answer/payouts/1"],
        "organizer": ["/organizer/applications", "/organizer/applications/1",
                      "/organizer/answerers", "/organizer/disputes", "/organizer/settings",
                      "/organizer/ledger", "/organizer/ledger/accounts/commission",
                      "/organizer/ledger/open/escrow",
                      "/organizer/payouts", "/organizer/reconciliation", "/organizer/traffic",
                      "/organizer/audit-log"],
    }


KEY_PAGES = {"anonymous": ["/", "/sign-in"], "asker": ["/ask", "/questions", "{answered}",
                                                        "{pay}", "{receipt}"],
             "answerer": ["/answer/queue", "{claimed}", "/answer/earnings"],
             "organizer": ["/organizer/applications", "/organizer/payouts",
                           "/organizer/ledger", "/organizer/traffic", "/organizer/audit-log"]}


def sign_in_as(page, app, base, user_id, variant):
    locale, large, contrast = VARIANTS[variant]
    with app.app_context():
        user = db.session.get(User, user_id)
        user.locale, user.large_text, user.high_contrast = locale, large, contrast
        email = user.email
        db.session.commit()
    page.context.clear_cookies()
    page.goto(base + "/sign-in")
    page.locator("#email").fill(email)
    page.locator("#password").fill("correct horse 9")
    page.locator("main form button[type=submit]").click()  # not the language form
    page.wait_for_load_state()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_page_has_no_axe_violations(page, live_server, app, site, a11y, variant):
    for role, urls in pages(site).items():
        if role == "anonymous":
            page.context.clear_cookies()
            page.set_extra_http_headers({"Accept-Language": VARIANTS[variant][0]})
        else:
            sign_in_as(page, app, live_server, site[role], variant)
        for url in urls:
            page.goto(live_server + url)
            assert page.locator("html").get_attribute("lang") == VARIANTS[variant][0]
            assert page.locator("h1").count() == 1, f"{url}: one h1"
            a11y.check(page, f"{variant} {role} {url}")
    assert a11y.violations == [], "\n".join(a11y.violations)
    assert len(a11y.checked) == sum(len(u) for u in pages(site).values())


def test_key_pages_fit_320_css_px_and_screenshots(page, live_server, app, site):
    ids = site["ids"]
    fill = {"{answered}": f"/questions/{ids['answered']}",
            "{pay}": f"/questions/{ids['draft']}/pay",
            "{receipt}": f"/questions/{ids['closed']}/receipt",
            "{claimed}": f"/answer/questions/{ids['claimed']}"}
    too_wide = []
    for role, urls in KEY_PAGES.items():
        for width, variant in ((1280, "en"), (320, "en"), (320, "large-contrast")):
            page.set_viewport_size({"width": width, "height": 800})
            if role == "anonymous":
                page.context.clear_cookies()
            else:
                sign_in_as(page, app, live_server, site[role], variant)
            for url in urls:
                page.goto(live_server + fill.get(url, url))
                scroll = page.evaluate("() => document.documentElement.scrollWidth")
                if width == 320 and scroll > 320:
                    too_wide.append(f"{variant} {role} {url}: {scroll}px")
                name = f"{role}{fill.get(url, url).replace('/', '-')}-{width}"
                if variant == "en":
                    screenshot(page, name)
    assert too_wide == []
