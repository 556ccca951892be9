"""Keyboard only, in the real browser: Stripe Connect from application to first transfer.

A new user signs up and applies to answer, choosing to be paid through Stripe; the organizer
approves; the answerer sets up payouts on the local Stripe's hosted onboarding page and comes
back to "Payouts enabled"; once they have earned, the organizer runs a payout batch and the local
Stripe holds exactly one transfer of the payout's amount to the answerer's connected account.
axe-core finds no violation on any page visited, the local Stripe's onboarding page included.
"""

from __future__ import annotations

import re

import pytest
import stripe
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.conftest import screenshot
from tests.browser.keyboard import (
    ACTIVE,
    activate,
    sign_in_by_keyboard,
    submit_with_enter,
    tab_to,
    type_into,
)
from tests.flows.test_payouts import earn
from upss import account_tokens
from upss.extensions import db
from upss.models import AnswererProfile, Payout, User

NAME, EMAIL, PASSWORD = "Ragnhild Berg", "ragnhild.berg@example.org", "correct horse 9"
STRIPE_OPTION = "Stripe (we will send you a link to set it up)"


@pytest.fixture
def app_config(app_config):
    """Pay out money as soon as it is settled, so the batch has something to pay."""
    return {**app_config, "UPSS_PAYOUT_AFTER_DAYS": 0}


def focused_label(page) -> str:
    return page.evaluate(ACTIVE)["label"]


def sign_up_and_apply(page, base: str, a11y, app) -> None:
    page.goto(base + "/sign-up")
    type_into(page, "^Your name", NAME)
    type_into(page, "^E-mail address", EMAIL)
    type_into(page, "^Password$", PASSWORD)
    type_into(page, "^Password again", PASSWORD)
    submit_with_enter(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your e-mail")
    activate(page, "^Sign in$")
    type_into(page, "^E-mail address", EMAIL)
    type_into(page, "^Password", PASSWORD)
    submit_with_enter(page)
    # The link of the confirmation e-mail (applying to answer needs a confirmed address).
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == EMAIL.lower()))
        link = base + "/confirm/" + account_tokens.make("confirm", user.id, user.email)
        db.session.remove()
    page.goto(link)
    expect(page.get_by_role("status").first).to_contain_text("Your e-mail address is confirmed")

    activate(page, "^UPSS")                       # the service name: the home page
    activate(page, "^Apply to answer$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Apply to answer questions")
    a11y.check(page, "apply to answer")
    tab_to(page, "^I am 65 or over$")
    page.keyboard.press("Space")
    type_into(page, "^Year of birth", "1950")
    tab_to(page, "^English$")
    page.keyboard.press("Space")
    tab_to(page, "^Bank transfer to my account")  # the checked radio is the group's tab stop
    page.keyboard.press("ArrowDown")              # moves to, and checks, "Stripe"
    assert focused_label(page) == STRIPE_OPTION
    expect(page.get_by_label(STRIPE_OPTION)).to_be_checked()
    expect(page.get_by_label("Bank transfer to my account (IBAN)")).not_to_be_checked()
    screenshot(page, "apply-to-answer-stripe")
    activate(page, "^Send application$")
    expect(page.get_by_role("status").first).to_contain_text(
        "Your application has been sent")
    a11y.check(page, "application sent")
    activate(page, "^Sign out$")


def approve_by_keyboard(page, base: str, organizer_email: str, a11y) -> None:
    sign_in_by_keyboard(page, base, organizer_email)
    expect(page.get_by_role("heading", level=1)).to_have_text("What waits for you")
    activate(page, "^Applications$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Applications to answer")
    activate(page, f"^{NAME}$")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Application from {NAME}")
    expect(page.get_by_role("definition").filter(has_text="Stripe Connect")).to_be_visible()
    a11y.check(page, "application (Stripe Connect)")
    type_into(page, "^How did you verify the eligibility", "Pension card seen at a meeting")
    activate(page, "^Approve the application$")   # the date of the check defaults to today
    expect(page.get_by_role("status").first).to_contain_text("now an answerer")
    a11y.check(page, "applications after approval")
    activate(page, "^Sign out$")


def onboard_by_keyboard(page, base: str, localstripe_url: str, a11y) -> None:
    sign_in_by_keyboard(page, base, EMAIL)
    activate(page, "^My earnings$")
    expect(page.get_by_role("heading", level=1)).to_have_text("My earnings")
    expect(page.get_by_role("heading", level=2, name="How you are paid")).to_be_visible()
    expect(page.get_by_role("button", name="Set up payouts with Stripe")).to_be_visible()
    a11y.check(page, "earnings (payouts not set up)")
    screenshot(page, "earnings-connect-not-set-up")

    refused: list[str] = []   # what the browser says when it refuses to go (e.g. the CSP)
    page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    tab_to(page, "^Set up payouts with Stripe$")
    onboarding = re.compile(re.escape(localstripe_url) + r"/_upss/connect/onboarding/[^/]+$")
    try:
        with page.expect_navigation(url=onboarding):
            page.keyboard.press("Enter")          # POST, then UPSS redirects to Stripe
    except PlaywrightError as exc:
        page.wait_for_timeout(500)                # the console message comes just after
        raise AssertionError(
            f"the browser did not follow UPSS's redirect to Stripe's onboarding page "
            f"({exc.message.splitlines()[0]}); its console said: {refused}") from None
    expect(page.get_by_role("heading", level=1)).to_have_text("Stripe test onboarding (local)")
    expect(page.get_by_text(EMAIL)).to_be_visible()
    a11y.check(page, "local Stripe onboarding")
    screenshot(page, "connect-onboarding-local-stripe")

    activate(page, "^Complete onboarding$")        # 303 to the return URL, then to earnings
    expect(page).to_have_url(base + "/answer/earnings")
    expect(page.get_by_role("status").first).to_have_text(
        "Payouts are enabled: your earnings will be paid to your Stripe account.")
    expect(page.get_by_text("Payouts enabled:")).to_be_visible()
    expect(page.get_by_role("button", name="Set up payouts with Stripe")).to_have_count(0)
    a11y.check(page, "earnings (payouts enabled)")
    screenshot(page, "earnings-connect-payouts-enabled")
    activate(page, "^Sign out$")


def test_connect_onboarding_and_first_transfer_by_keyboard_only(
        page, live_server, localstripe_url, app, world, a11y):
    organizer = world.user("organizer")
    with app.app_context():
        organizer_email = db.session.get(User, organizer).email

    sign_up_and_apply(page, live_server, a11y, app)
    approve_by_keyboard(page, live_server, organizer_email, a11y)
    onboard_by_keyboard(page, live_server, localstripe_url, a11y)

    with app.app_context():
        answerer = db.session.scalar(db.select(User.id).where(User.email == EMAIL))
        profile = db.session.get(AnswererProfile, answerer)
        account = profile.stripe_account_id
        assert (profile.payout_method, profile.connect_payouts_enabled) == ("connect", True)
        assert account and account.startswith("acct_")
    earn(app, world, answerer, 2500)               # €22.50 is the answerer's share

    sign_in_by_keyboard(page, live_server, organizer_email)
    activate(page, "^Organizer$")
    activate(page, "^Payouts$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Payouts")
    activate(page, "^Run a payout batch now$")
    expect(page.get_by_role("status").first).to_contain_text("Payout batch 1 is made")
    row = page.get_by_role("row").filter(has_text=NAME)
    # As shown (innerText): the column names each cell carries for narrow screens are hidden.
    expect(row.get_by_role("rowheader")).to_have_text(NAME)
    expect(row.get_by_role("cell")).to_have_text(["Stripe Connect", "Sent", "€22.50"],
                                                 use_inner_text=True)
    a11y.check(page, "payouts (Stripe Connect transfer sent)")
    screenshot(page, "organizer-payouts-connect")

    with app.app_context():
        payout = db.session.scalar(db.select(Payout).where(Payout.answerer_id == answerer))
        assert (payout.method, payout.status, payout.amount_cents) == ("connect", "sent", 2250)
        transfer_id = payout.stripe_transfer_id
    client = stripe.StripeClient(app.config["UPSS_STRIPE_SECRET_KEY"],
                                 base_addresses={"api": app.config["UPSS_LOCALSTRIPE_URL"]})
    transfers = client.v1.transfers.list(params={"destination": account}).data
    assert [(t.id, t.amount, t.currency, t.destination) for t in transfers] == [
        (transfer_id, 2250, "eur", account)]

    assert a11y.violations == [], "\n".join(a11y.violations)
    assert len(a11y.checked) == 8
