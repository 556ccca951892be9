"""Download my data (issue 18 item 4) keyboard only in the real browser: from the account page
Tab to the link, prepare the file with the button, and download it from the link that then
appears. axe-core finds nothing on the page before or after."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.browser.keyboard import activate, sign_in_by_keyboard, tab_to
from upss.extensions import db
from upss.models import User


def test_prepare_and_download_my_data_by_keyboard(page, live_server, app, world, a11y):
    user_id = world.user()
    with app.app_context():
        email = db.session.get(User, user_id).email
    sign_in_by_keyboard(page, live_server, email)
    page.goto(f"{live_server}/account/preferences")

    activate(page, "^Download a copy of your data$")
    expect(page.get_by_role("heading", level=1)).to_have_text("Download your data")
    expect(page.get_by_text("You have not asked for your data yet.")).to_be_visible()
    a11y.check(page, "data page before")

    activate(page, "^Prepare my data$")
    expect(page.get_by_text("Your data is ready to download.", exact=True)).to_be_visible()
    link = page.get_by_role("link", name="Download your data (")
    expect(link).to_be_visible()
    a11y.check(page, "data page ready")

    tab_to(page, r"^Download your data \(\d")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename.startswith("upss-data-")
    with open(download.value.path(), encoding="utf-8") as file:
        assert json.load(file)["profile"]["account"]["email"] == email
    assert a11y.violations == []
