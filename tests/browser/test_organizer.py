"""In a real browser: the organizer approves an applicant, runs a payout batch, downloads the
SEPA file and sees the peak-shaving chart; axe-core finds nothing on any organizer page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from upss import ledger_check, questions, release, sepa
from upss.extensions import db
from upss.models import AnswererProfile, User, utcnow


@pytest.fixture
def app_config(app_config):
    """Pay out money as soon as it is settled, so the batch has something to pay."""
    return {**app_config, "UPSS_PAYOUT_AFTER_DAYS": 0}


def seed(app, world) -> tuple[int, int]:
    organizer = world.user("organizer")
    applicant = world.applicant(
        basis="both", birth_year=1948, languages=("nb", "en"), topics=("home",),
        available_from_minute=480, available_until_minute=1200, daily_limit=3,
        payout_method="sepa", iban="NO9386011117947", account_holder="Åse Østby")
    earner = world.answerer()
    with app.app_context():
        profile = db.session.get(AnswererProfile, earner)
        profile.iban, profile.account_holder = "SI56 2633 0001 2039 086", "Marija Novak"
        db.session.commit()
    now = datetime.now(UTC)
    for hours_ago in (30, 20, 5):
        q = world.paid_question(paid_at=now - timedelta(hours=hours_ago), price_cents=2500)
        world.run(release.release_due_questions, now - timedelta(hours=hours_ago - 1),
                  ignore_window=True)
        world.act(questions.claim, q, earner, now - timedelta(hours=hours_ago - 1))
        world.act(questions.post_answer, q, earner, "Answer", now - timedelta(hours=hours_ago - 2))
        world.act(questions.accept, q, world.question(q).asker_id, now)
    return organizer, applicant


def test_organizer_vets_pays_out_and_audits(page, live_server, world, app, a11y):
    organizer, applicant = seed(app, world)
    with app.app_context():
        email = db.session.get(User, organizer).email
    page.goto(live_server + "/sign-in")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill("correct horse 9")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("What waits for you")
    page.get_by_role("link", name="Organizer", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("What waits for you")
    page.get_by_role("navigation", name="Organizer pages").get_by_role(
        "link", name="Applications").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Applications to answer")
    a11y.check(page, "applications")
    page.get_by_role("table").get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Application from")
    expect(page.get_by_text("NO9386011117947")).to_be_visible()
    a11y.check(page, "application")
    page.get_by_role("button", name="Approve the application").click()
    expect(page.get_by_role("alert")).to_contain_text("Say how you verified the eligibility")
    a11y.check(page, "application with errors")
    page.get_by_label("How did you verify the eligibility?").fill("Pension card seen")
    page.get_by_label("Date of the check").fill(date.today().isoformat())
    page.get_by_role("button", name="Approve the application").click()
    expect(page.get_by_role("status").first).to_contain_text("now an answerer")
    with app.app_context():
        assert db.session.get(User, applicant).is_answerer

    nav = page.get_by_role("navigation", name="Organizer pages")
    nav.get_by_role("link", name="Answerers").click()
    a11y.check(page, "answerers")
    nav.get_by_role("link", name="Rejected answers").click()
    a11y.check(page, "disputes")
    nav.get_by_role("link", name="Settings").click()
    a11y.check(page, "settings")

    nav.get_by_role("link", name="Payouts").click()
    a11y.check(page, "payouts (none yet)")
    page.get_by_role("button", name="Run a payout batch now").click()
    expect(page.get_by_role("status").first).to_contain_text("Payout batch 1 is made")
    expect(page.get_by_role("cell", name="€67.50")).to_be_visible()   # 3 × €22.50
    a11y.check(page, "payouts")
    screenshot(page, "organizer-payouts")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the bank file (SEPA XML)").click()
    xml = open(download_info.value.path(), encoding="utf-8").read()
    sepa.validate_pain001(xml)
    assert sepa.sepa_total_cents(xml) == 6750
    page.get_by_role("button", name="Mark the bank file as sent").click()
    expect(page.get_by_text("Sent to the bank on")).to_be_visible()

    nav.get_by_role("link", name="Ledger").click()
    expect(page.get_by_text("The ledger has not been checked yet")).to_be_visible()
    page.get_by_role("button", name="Check the whole ledger").click()
    expect(page.get_by_role("status").first).to_contain_text("The check will run")
    with app.app_context():  # the scheduler's verify-ledger job
        assert ledger_check.run(db.session, utcnow()).endswith(", ok")
        db.session.commit()
    page.reload()
    expect(page.get_by_text("Verified:")).to_be_visible()
    a11y.check(page, "ledger")
    page.get_by_role("link", name="bank_clearing").click()
    expect(page.get_by_text("The closing balance equals the ledger's balance")).to_be_visible()
    a11y.check(page, "statement")
    nav.get_by_role("link", name="Reconciliation").click()
    a11y.check(page, "reconciliation")

    nav.get_by_role("link", name="Traffic").click()
    chart = page.get_by_role("img").first
    expect(chart).to_be_visible()
    expect(page.locator("svg desc").first).to_contain_text("Questions paid")
    a11y.check(page, "traffic chart")
    screenshot(page, "organizer-traffic")
    nav.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="approve application (application:1)")).to_be_visible()
    expect(page.get_by_role("cell", name="run payout batch (payout_batch:1)")).to_be_visible()
    a11y.check(page, "audit log")
    assert a11y.violations == [], "\n".join(a11y.violations)
    assert len(a11y.checked) == 13
