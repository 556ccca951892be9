"""Long lists in the real browser, keyboard only: each page of a list ends in a labelled
navigation landmark with plain links ("Older …", back to the newest), two lists on one page
have two differently named landmarks, following a link keeps the other list where it was, and
axe-core finds nothing on the first page or the next."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.keyboard import sign_in_by_keyboard, tab_to
from tests.flows.test_paging import LISTINGS, Ctx, _add
from upss.extensions import db
from upss.models import User


def _follow(page, link: str) -> None:
    """Tab to the link named ``link`` and press Enter."""
    tab_to(page, f"^{link}$", limit=150)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _sign_in(page, app, base, user_id) -> None:
    with app.app_context():
        email = db.session.get(User, user_id).email
    page.context.clear_cookies()
    sign_in_by_keyboard(page, base, email)


def test_two_lists_on_one_page_each_have_their_own_pages(page, live_server, app, world, a11y):
    organizer = world.user("organizer")
    for name in ("waiting applications", "decided applications", "card disputes",
                 "reconciliation differences", "audit log"):
        _add(app, LISTINGS[name], Ctx(viewer=organizer), 45)
    _sign_in(page, app, live_server, organizer)

    page.goto(f"{live_server}/organizer/applications")
    waiting = page.get_by_role("navigation", name="More waiting applications")
    decided = page.get_by_role("navigation", name="More decided applications")
    expect(waiting.get_by_role("link")).to_have_text(["Older waiting applications"])
    expect(decided.get_by_role("link")).to_have_text(["Older decided applications"])
    a11y.check(page, "applications, first pages")
    _follow(page, "Older decided applications")
    assert "decided=" in page.url and "waiting=" not in page.url
    expect(decided.get_by_role("link")).to_have_text(["Older decided applications",
                                                      "Newest decided applications"])
    _follow(page, "Older waiting applications")
    assert "decided=" in page.url and "waiting=" in page.url  # the other list stays put
    expect(page.locator("table")).to_have_count(2)
    a11y.check(page, "applications, second pages")

    page.goto(f"{live_server}/organizer/reconciliation")
    expect(page.get_by_role("navigation", name="More differences")).to_be_visible()
    expect(page.get_by_role("navigation", name="More card disputes")).to_be_visible()
    a11y.check(page, "reconciliation, first pages")
    _follow(page, "Next card disputes")
    _follow(page, "Next differences")
    expect(page.get_by_role("link", name="First card disputes")).to_be_visible()
    a11y.check(page, "reconciliation, second pages")

    page.goto(f"{live_server}/organizer/audit-log")
    _follow(page, "Older actions")
    _follow(page, "Older actions")
    expect(page.get_by_role("navigation", name="More of the audit log").get_by_role(
        "link")).to_have_text(["Newest actions"])  # the last page: no "older" link
    expect(page.locator("tbody tr")).to_have_count(5)
    a11y.check(page, "audit log, last page")
    assert a11y.violations == [], "\n".join(a11y.violations)


def test_an_asker_pages_through_their_questions(page, live_server, app, world, a11y):
    asker = world.user("asker")
    _add(app, LISTINGS["asker questions"], Ctx(viewer=asker), 25)
    _sign_in(page, app, live_server, asker)
    page.goto(f"{live_server}/questions")
    expect(page.locator("tbody tr")).to_have_count(20)
    a11y.check(page, "my questions, first page")
    _follow(page, "Older questions")
    expect(page.locator("tbody tr")).to_have_count(5)
    expect(page.get_by_role("link", name="Newest questions")).to_be_visible()
    a11y.check(page, "my questions, second page")
    assert a11y.violations == [], "\n".join(a11y.violations)
