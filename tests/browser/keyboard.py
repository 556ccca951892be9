"""Driving pages with the keyboard only, as many answerers do."""

from __future__ import annotations

import re

ACTIVE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const label = el.labels && el.labels.length ? el.labels[0].innerText : "";
  return {tag: el.tagName, text: (el.innerText || el.value || "").trim(), label: label.trim(),
          name: el.getAttribute("name") || "", type: el.getAttribute("type") || ""};
}"""


def tab_to(page, pattern: str, limit: int = 60) -> dict:
    """Press Tab until the focused element's text or label matches ``pattern``."""
    regex = re.compile(pattern)
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        active = page.evaluate(ACTIVE)
        assert active is not None, "focus was lost (it fell back to the page body)"
        seen.append(active["text"][:40] or active["label"][:40])
        if regex.search(active["text"]) or regex.search(active["label"]):
            return active
    raise AssertionError(f"never reached {pattern!r} with Tab; focus went through {seen}")


def activate(page, pattern: str, navigates: bool = True) -> None:
    """Tab to a link or button and press Enter (waiting for the next page if it loads one)."""
    tab_to(page, pattern)
    if navigates:
        with page.expect_navigation():
            page.keyboard.press("Enter")
    else:
        page.keyboard.press("Enter")


def submit_with_enter(page) -> None:
    """Press Enter in a text field, which submits its form."""
    with page.expect_navigation():
        page.keyboard.press("Enter")


def type_into(page, label_pattern: str, text: str) -> None:
    tab_to(page, label_pattern)
    page.keyboard.type(text)


def sign_in_by_keyboard(page, base: str, email: str, password: str = "correct horse 9") -> None:
    """Open the sign-in page at ``base`` and sign in, typing and pressing Enter only."""
    page.goto(base + "/sign-in")
    type_into(page, "E-mail address", email)
    type_into(page, "^Password", password)
    submit_with_enter(page)
