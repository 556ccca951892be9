"""Real-browser fixtures: Debian's Chromium driven by Playwright, axe-core for accessibility.

No browser is downloaded (`playwright install` cannot work offline): pytest-playwright launches
/usr/bin/chromium. Browser tests run on SQLite; the flows they drive are covered on PostgreSQL
by the test-client suite.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.conftest import sqlite_copy

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
#: Screenshots of key pages land here (named in the README).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": [
    "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
    "resultTypes": ["violations"]}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run scripts/ensure-chromium")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync"]}


@pytest.fixture
def database_url(request, tmp_path, sqlite_template):
    return sqlite_copy(sqlite_template, tmp_path)


class Accessibility:
    """Runs axe-core on pages and collects every violation, to assert once at the end."""

    def __init__(self):
        self.axe = Axe()
        self.checked: list[str] = []
        self.violations: list[str] = []

    def check(self, page, label: str) -> None:
        results = self.axe.run(page, options=AXE_OPTIONS)
        self.checked.append(label)
        for violation in results.response["violations"]:
            targets = [node["target"] for node in violation["nodes"]][:3]
            self.violations.append(f"{label}: {violation['id']} ({violation['impact']}) "
                                   f"{violation['help']} at {targets}")


@pytest.fixture
def a11y():
    return Accessibility()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name)}.png"),
                    full_page=True)


def sign_in(page, base: str | None, email: str) -> None:
    """Fill in and send the sign-in form (opened at ``base`` unless it is already shown)."""
    if base is not None:
        page.goto(base + "/sign-in")
    page.locator("#email").fill(email)
    page.locator("#password").fill("correct horse 9")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in", exact=True).click()


def claimed(world, answerer: int, lock_in: timedelta | None = None) -> int:
    """A paid question offered to and picked up by ``answerer`` now (its lock ending in
    ``lock_in`` if given); returns its id."""
    from upss import questions, release
    from upss.extensions import db
    from upss.models import Question

    now = datetime.now(UTC)
    q = world.paid_question(paid_at=now)
    world.run(release.release_due_questions, now, ignore_window=True)
    world.act(questions.claim, q, answerer, now)
    if lock_in is not None:
        with world.app.app_context():
            db.session.get(Question, q).lock_expires_at = now + lock_in
            db.session.commit()
    return q


def answering(page, base: str, world) -> tuple[int, str]:
    """A new answerer, signed in and on the answer page of a question they picked up (``claimed``);
    returns (the question's id, the answerer's e-mail address)."""
    answerer = world.answerer()
    email = f"answerer{answerer}@example.org"
    q = claimed(world, answerer)
    sign_in(page, base, email)
    page.goto(f"{base}/answer/questions/{q}")
    return q, email
