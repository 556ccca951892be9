"""Keyboard only, in the real browser (issue 16, items 8 and 14).

At 320 CSS px the ledger's and a statement's amounts keep their column's name on screen (each
cell shows it while the header row is out of sight) and stay a real table for screen readers,
and so does every cell of every other data table (the asker's, the answerer's, the
organizer's); nothing scrolls sideways, and the traffic chart's text is drawn at 14 px or
more. Secondary buttons have a border of at least 3:1 against what is behind them, in the
default display, with larger text and with high contrast; a tall answer box reached with Tab
is scrolled wholly into a short window. axe-core finds nothing on any page.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import claimed, screenshot
from tests.browser.keyboard import activate, sign_in_by_keyboard, tab_to
from upss import ledger_check, payouts, questions, release, vetting
from upss.extensions import db
from upss.models import AnswererProfile, Question, ReconciliationRun, StripeDispute, User

#: (language, larger text, high contrast) of each display mode.
MODES = {"default": ("en", False, False), "large-text": ("en", True, False),
         "high-contrast": ("en", False, True), "fi-large-contrast": ("fi", True, True)}
#: The ledger's column names in each language used (translations/<lang>/LC_MESSAGES).
DEBIT_CREDIT = {"en": ("Debit", "Credit"), "fi": ("Debet", "Kredit")}

#: Each body and foot cell of ``table``: its column's header, the text of its visible
#: ``.cell-label`` (None if it has none or it is not shown), its text with and without the
#: label, whether it is a header, wholly empty (``:empty``) or in the foot, and whether it sits
#: inside the page.
CELLS = """(table) => {
  const headers = [...table.tHead.rows[0].cells].map((th) => th.innerText.trim());
  const cells = [];
  const foot = table.tFoot ? [...table.tFoot.rows] : [];
  for (const row of [...table.tBodies[0].rows, ...foot]) {
    let column = 0;
    for (const cell of row.cells) {
      const label = cell.querySelector(".cell-label");
      const shown = label && getComputedStyle(label).display !== "none"
        && label.getBoundingClientRect().width > 0;
      const box = cell.getBoundingClientRect();
      const bare = cell.cloneNode(true);
      bare.querySelectorAll(".cell-label").forEach((l) => l.remove());
      cells.push({column: headers[column], label: shown ? label.innerText.trim() : null,
                  text: cell.innerText.trim(), header: cell.tagName === "TH",
                  content: bare.textContent.trim(), empty: cell.matches(":empty"),
                  foot: foot.includes(row),
                  inside: box.left >= 0 && box.right <= document.documentElement.clientWidth});
      column += cell.colSpan;
    }
  }
  return cells;
}"""

#: Every text of the page's charts: its rendered font size in CSS px (the SVG's scale times
#: its font size), whether it is drawn wholly inside its picture (not cut off) and the texts
#: of its picture it runs into.
CHART_TEXTS = """() => {
  const texts = [...document.querySelectorAll(".chart svg text")];
  const meet = (a, b) => a.left < b.right - 1 && b.left < a.right - 1
                         && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  return texts.map((text) => {
    const picture = text.ownerSVGElement.getBoundingClientRect();
    const box = text.getBoundingClientRect();
    return {text: text.textContent,
            px: parseFloat(getComputedStyle(text).fontSize) * text.getScreenCTM().a,
            inside: box.left >= picture.left - 0.5 && box.right <= picture.right + 0.5
                    && box.top >= picture.top - 0.5 && box.bottom <= picture.bottom + 0.5,
            overlaps: texts.filter((other) => other !== text
              && other.ownerSVGElement === text.ownerSVGElement
              && meet(box, other.getBoundingClientRect())).map((other) => other.textContent)};
  });
}"""

#: WCAG relative luminance and contrast; each ``.button`` with its border's and fill's contrast
#: against the nearest opaque background behind it.
BUTTONS = """() => {
  const rgba = (text) => {
    const [r, g, b, a = 1] = text.match(/[\\d.]+/g).map(Number);
    return {r, g, b, a};
  };
  const luminance = ({r, g, b}) => {
    const [R, G, B] = [r, g, b].map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const behind = (element) => {
    for (let at = element.parentElement; at; at = at.parentElement) {
      const colour = rgba(getComputedStyle(at).backgroundColor);
      if (colour.a > 0) return colour;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  return [...document.querySelectorAll(".button")].filter((b) => b.offsetParent).map((b) => {
    const style = getComputedStyle(b);
    const page = behind(b);
    const sides = ["Top", "Right", "Bottom", "Left"].map((side) => {
      const colour = rgba(style[`border${side}Color`]);
      const width = parseFloat(style[`border${side}Width`]);
      const drawn = colour.a > 0 && width >= 1 && style[`border${side}Style`] !== "none";
      return drawn ? ratio(colour, page) : 1;
    });
    const fill = rgba(style.backgroundColor);
    return {name: b.innerText.trim(), secondary: b.classList.contains("button--secondary"),
            border: Math.min(...sides), fill: fill.a > 0 ? ratio(fill, page) : 1};
  });
}"""

#: The focused element's box against the window: top, bottom, the window's height.
FOCUSED_BOX = """() => {
  const box = document.activeElement.getBoundingClientRect();
  return {tag: document.activeElement.tagName, top: box.top, bottom: box.bottom,
          height: box.height, room: window.innerHeight};
}"""


def set_display(app, user_id: int, mode: str) -> None:
    language, large, contrast = MODES[mode]
    with app.app_context():
        user = db.session.get(User, user_id)
        user.locale, user.large_text, user.high_contrast = language, large, contrast
        db.session.commit()


def table_semantics(page) -> list[tuple[str, str]]:
    """(role, name) of every table, header and cell as Chromium gives them to screen readers."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    roles = {"table", "LayoutTable", "columnheader", "rowheader", "cell", "LayoutTableCell"}
    return [(n["role"]["value"], n.get("name", {}).get("value", "")) for n in nodes
            if not n.get("ignored") and n.get("role", {}).get("value") in roles]


def assert_amounts_labelled(page, debit: str, credit: str, amount_columns: set[str]) -> None:
    """Every amount cell shows its column's name; the table stays a table for screen readers."""
    cells = page.locator("table.table").evaluate(CELLS)
    amounts = [c for c in cells if c["column"] in amount_columns and not c["header"]]
    assert amounts and {debit, credit} <= {c["column"] for c in amounts}
    for cell in amounts:
        # An empty cell (a statement line's other side) has nothing to name; a closing balance
        # is named by its row's header ("Closing balance"), the totals are not.
        if cell["text"] and (cell["column"] in (debit, credit) or not cell["foot"]):
            assert cell["label"] == cell["column"], cell
    assert all(c["inside"] for c in cells), [c for c in cells if not c["inside"]]
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 320
    semantics = table_semantics(page)
    assert [role for role, _ in semantics].count("table") == 1
    assert "LayoutTable" not in [role for role, _ in semantics]
    headers = [name for role, name in semantics if role == "columnheader"]
    assert debit in headers and credit in headers
    body = [name for role, name in semantics if role in ("cell", "rowheader")]
    assert len(body) == len(cells)  # no cell dropped: each keeps its column header
    # The visible names are for sighted readers; a screen reader hears the column header once.
    assert not any(name.strip().startswith((debit, credit)) for name in body), body


@pytest.fixture
def organizer_site(app, world) -> int:
    """An organizer, and one accepted answer: the ledger has escrow, commission and payable."""
    organizer, answerer = world.user("organizer"), world.answerer()
    now = datetime.now(UTC)
    q = world.paid_question(paid_at=now - timedelta(hours=3), price_cents=2500)
    world.run(release.release_due_questions, now, ignore_window=True)
    world.act(questions.claim, q, answerer, now)
    world.act(questions.post_answer, q, answerer, "Tap the green phone.", now)
    world.act(questions.accept, q, world.question(q).asker_id, now)
    with app.app_context():
        ledger_check.check_now(db.session, "full", now)  # the ledger page's totals
        db.session.commit()
    return organizer


@pytest.mark.parametrize("mode", ["default", "fi-large-contrast"])
def test_ledger_amounts_keep_their_names_and_the_chart_its_size_at_320_px(
        page, live_server, app, organizer_site, a11y, mode):
    set_display(app, organizer_site, mode)
    language = MODES[mode][0]
    debit, credit = DEBIT_CREDIT[language]
    page.set_viewport_size({"width": 320, "height": 700})
    sign_in_by_keyboard(page, live_server, f"organizer{organizer_site}@example.org")
    assert page.locator("html").get_attribute("lang") == language

    activate(page, "^(Ledger|Kirjanpito)$")
    assert page.url == live_server + "/organizer/ledger"
    assert_amounts_labelled(page, debit, credit, {debit, credit})
    a11y.check(page, f"ledger at 320 px, {mode}")
    screenshot(page, f"organizer-ledger-320-{mode}")

    activate(page, "^commission$")
    assert page.url == live_server + "/organizer/ledger/accounts/commission"
    balance = page.locator("table.table thead th").nth(4).inner_text()
    assert_amounts_labelled(page, debit, credit, {debit, credit, balance})
    a11y.check(page, f"statement at 320 px, {mode}")
    screenshot(page, f"organizer-statement-320-{mode}")

    activate(page, "^(Traffic|Käyttömäärät)$")
    assert page.url == live_server + "/organizer/traffic"
    texts = page.evaluate(CHART_TEXTS)
    assert len(texts) > 10
    too_small = [t for t in texts if t["px"] < 14]
    assert too_small == [], too_small
    assert [t for t in texts if not t["inside"] or t["overlaps"]] == []
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 320
    a11y.check(page, f"traffic at 320 px, {mode}")
    screenshot(page, f"organizer-traffic-320-{mode}")
    assert a11y.violations == [], "\n".join(a11y.violations)


@pytest.mark.parametrize("language", ["en", "nb", "fi", "sv", "sl"])
def test_chart_labels_fit_their_picture_in_every_language(page, live_server, app,
                                                          organizer_site, language):
    """The longest translated legend still fits inside the (narrow) picture and no label runs
    into another, at 320 px too."""
    with app.app_context():
        db.session.get(User, organizer_site).locale = language
        db.session.commit()
    sign_in_by_keyboard(page, live_server, f"organizer{organizer_site}@example.org")
    for width in (1280, 320):
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(live_server + "/organizer/traffic")
        texts = page.evaluate(CHART_TEXTS)
        assert [t for t in texts if not t["inside"] or t["overlaps"]] == [], (language, width)
        if width == 320:
            assert min(t["px"] for t in texts) >= 14


@pytest.fixture
def answering_site(app, world) -> tuple[int, int]:
    """An answerer with one question offered (Pass) and one picked up (the answer page)."""
    answerer = world.answerer()
    now = datetime.now(UTC)
    q = claimed(world, answerer)
    world.paid_question(paid_at=now)
    world.run(release.release_due_questions, now, ignore_window=True)
    return answerer, q


@pytest.mark.parametrize("mode", ["default", "large-text", "high-contrast"])
def test_secondary_buttons_have_a_3_to_1_border_in_every_display(page, live_server, app,
                                                                 answering_site, a11y, mode):
    answerer, q = answering_site
    set_display(app, answerer, mode)
    sign_in_by_keyboard(page, live_server, f"answerer{answerer}@example.org")
    assert page.url == live_server + "/answer/queue"
    classes = page.locator("html").get_attribute("class") or ""
    assert ("large-text" in classes) == MODES[mode][1]
    assert ("high-contrast" in classes) == MODES[mode][2]
    seen = []
    for step in ("queue", "answer page", "preferences"):
        if step == "answer page":
            activate(page, "^Q$")
            assert page.url == f"{live_server}/answer/questions/{q}"
            expect(page.get_by_role("button", name="Read the question aloud")).to_be_visible()
        elif step == "preferences":
            activate(page, "^Display and language$")
        buttons = page.evaluate(BUTTONS)
        seen += [b["name"] for b in buttons if b["secondary"]]
        for button in buttons:
            # Every button's edge shows, by its border or its fill ...
            assert max(button["border"], button["fill"]) >= 3, (step, button)
            # ... and a secondary button, filled nearly like the page, by its border.
            if button["secondary"]:
                assert button["border"] >= 3, (step, button)
        a11y.check(page, f"{step}, {mode}")
    assert {"Pass", "Read the question aloud", "Save draft",
            "Sign out everywhere"} <= {name.split("\n")[0].split(" – ")[0] for name in seen}
    assert a11y.violations == [], "\n".join(a11y.violations)


@pytest.mark.parametrize("size", [(320, 480), (1024, 600)], ids=["320x480", "1024x600"])
def test_a_tall_answer_box_reached_with_tab_is_shown_whole(page, live_server, answering_site,
                                                           a11y, size):
    answerer, q = answering_site
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    sign_in_by_keyboard(page, live_server, f"answerer{answerer}@example.org")
    activate(page, "^Q$")
    assert page.url == f"{live_server}/answer/questions/{q}"

    tab_to(page, "^Your answer")
    box = page.evaluate(FOCUSED_BOX)
    assert box["tag"] == "TEXTAREA"
    assert box["height"] > height / 2, "the answer box is meant to be tall"
    assert 0 <= box["top"] and box["bottom"] <= box["room"], box

    # Back to it from the buttons below: its top comes into view as well.
    tab_to(page, "^Save draft$")
    for _ in range(10):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("() => document.activeElement.tagName") == "TEXTAREA":
            break
    box = page.evaluate(FOCUSED_BOX)
    assert box["tag"] == "TEXTAREA"
    assert 0 <= box["top"] and box["bottom"] <= box["room"], box
    a11y.check(page, f"answer page {width}x{height}")
    assert a11y.violations == [], "\n".join(a11y.violations)


@pytest.fixture
def tables_site(app, world) -> dict:
    """At least one row in every data table: an asker's accepted question (with a receipt) and
    a queued one, an answerer paid by bank file, another one suspended, an application, a
    reconciliation with a difference and two open card disputes (one with no question and no
    deadline: empty cells), and audit-log rows."""
    now = datetime.now(UTC)
    organizer, asker = world.user("organizer"), world.user("asker")
    world.applicant(now)  # an application waiting to be decided
    answerer, suspended = world.answerer(languages="en,fi"), world.answerer()
    with app.app_context():
        db.session.get(AnswererProfile, answerer).iban = "FI2112345600000785"
        vetting.set_suspended(db.session, db.session.get(User, suspended),
                              db.session.get(User, organizer), True, now=now)
        db.session.commit()
    world.paid_question(paid_at=now - timedelta(hours=4), price_cents=1500, asker_id=asker)
    closed = world.paid_question(paid_at=now - timedelta(hours=3), price_cents=2500,
                                 asker_id=asker)
    world.run(release.release_due_questions, now, ignore_window=True)
    world.act(questions.claim, closed, answerer, now)
    world.act(questions.post_answer, closed, answerer, "Tap the green phone.", now)
    world.act(questions.accept, closed, asker, now)
    with app.test_request_context():
        db.session.get(Question, closed).title = "Printer ink"
        payouts.run_batch(db.session, now + timedelta(minutes=1),
                          created_by=db.session.get(User, organizer), settled_before_days=0)
        db.session.add(ReconciliationRun(
            started_at=now, finished_at=now, checked=3, differences=json.dumps([{
                "what": "Payment pi_1", "stripe_cents": 2500, "ledger_cents": 1500,
                "currency": "EUR"}])))
        db.session.add(StripeDispute(id="dp_1", question_id=closed, amount_cents=2500,
                                     currency="EUR", status="needs_response",
                                     evidence_due_at=now + timedelta(days=7)))
        db.session.add(StripeDispute(id="dp_2", amount_cents=900, currency="EUR",
                                     status="warning_needs_response"))
        db.session.commit()
        ledger_check.check_now(db.session, "full", now)  # the ledger page's totals
        db.session.commit()
    return {"organizer": organizer, "asker": asker, "answerer": answerer, "closed": closed}


#: Every page with a data table: who opens it, the links they follow from their start page
#: (with the keyboard) and where they arrive.
TABLE_PAGES = {
    "my-questions": ("asker", [], "/questions"),
    "receipt": ("asker", ["^Printer ink$", "^See your receipt$"], "/questions/{closed}/receipt"),
    "earnings": ("answerer", ["^My earnings$"], "/answer/earnings"),
    "applications": ("organizer", ["^Applications$"], "/organizer/applications"),
    "answerers": ("organizer", ["^Answerers$"], "/organizer/answerers"),
    "payouts": ("organizer", ["^Payouts$"], "/organizer/payouts"),
    "reconciliation": ("organizer", ["^Reconciliation$"], "/organizer/reconciliation"),
    "audit-log": ("organizer", ["^Audit log$"], "/organizer/audit-log"),
    "ledger": ("organizer", ["^Ledger$"], "/organizer/ledger"),
    "statement": ("organizer", ["^Ledger$", "^commission$"],
                  "/organizer/ledger/accounts/commission"),
}


def assert_every_cell_named(page) -> None:
    """In every table, each data cell with something in it shows its column's name, an empty
    one stays wholly empty; nothing leaves the page, and each table stays a table of the same
    cells for screen readers, which do not hear the shown names."""
    tables = page.locator("table.table")
    every = []
    for index in range(tables.count()):
        cells = tables.nth(index).evaluate(CELLS)
        body = [c for c in cells if not c["foot"] and not c["header"]]
        assert body, f"table {index} has a row"
        for cell in body:  # a row's header (th) names the row; a foot's total, its row
            if cell["content"]:
                assert cell["label"] == cell["column"], cell
            else:
                assert cell["empty"], cell
        every += cells
    assert tables.count() and every
    assert all(c["inside"] for c in every), [c for c in every if not c["inside"]]
    assert page.evaluate("() => document.scrollingElement.scrollWidth") <= 320
    semantics = table_semantics(page)
    roles = [role for role, _ in semantics]
    assert roles.count("table") == tables.count()
    assert "LayoutTable" not in roles and "LayoutTableCell" not in roles
    headers = page.locator("table.table thead th").all_text_contents()
    assert sorted(name for role, name in semantics if role == "columnheader") == sorted(
        h.strip() for h in headers)
    body = [name.strip() for role, name in semantics if role in ("cell", "rowheader")]
    assert len(body) == len(every)  # no cell dropped: each keeps its column header
    assert roles.count("rowheader") == sum(c["header"] for c in every)
    shown = {c["label"] for c in every if c["label"]}
    assert not [n for n in body if any(n == s or n.startswith(s + " ") for s in shown)], body


@pytest.mark.parametrize("name", list(TABLE_PAGES))
def test_every_table_cell_keeps_its_column_name_at_320_px(page, live_server, tables_site,
                                                          a11y, name):
    role, links, path = TABLE_PAGES[name]
    page.set_viewport_size({"width": 320, "height": 700})
    sign_in_by_keyboard(page, live_server, f"{role}{tables_site[role]}@example.org")
    for link in links:
        activate(page, link)
    assert page.url == live_server + path.format(**tables_site)
    assert_every_cell_named(page)
    a11y.check(page, f"{name} at 320 px")
    screenshot(page, f"tables-{name}-320")
    if name == "answerers":
        # The suspend form inside a row's cell still works by keyboard, and stays named.
        expect(page.get_by_role("button", name=re.compile("^Reinstate"))).to_have_count(1)
        activate(page, "^Suspend")
        assert page.url == live_server + path
        expect(page.get_by_role("button", name=re.compile("^Reinstate"))).to_have_count(2)
        assert_every_cell_named(page)
        a11y.check(page, f"{name} after suspending, at 320 px")
    assert a11y.violations == [], "\n".join(a11y.violations)
