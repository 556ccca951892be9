"""docs/ARCHITECTURE.md matches the code it describes, and the README points to it.

Everything is read from the real files and the real objects: the modules under ``upss/``, the
question states of ``upss.models``, ``upss.questions.TRANSITIONS``, ``upss.jobs.JOBS`` and the
``UPSS_*`` variables ``upss.config.from_environment`` reads. A module, state, transition, job
or setting added without its line in the document fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_settings_documented import RecordingEnviron
from upss import config, jobs, questions
from upss.models import QUESTION_STATES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
README = ROOT / "README.md"
BACKTICKED = re.compile(r"`([^`]+)`")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def section(word: str) -> str:
    """The body of the one ``## `` section of the document whose heading contains ``word``."""
    parts = re.split(r"^## ", doc_text(), flags=re.M)[1:]
    found = [part for part in parts if word.lower() in part.splitlines()[0].lower()]
    assert len(found) == 1, f"expected one '## … {word} …' section, found {len(found)}"
    return found[0]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table row whose first cell is a single backticked name."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def first_name(cell: str) -> str | None:
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else None


def modules() -> list[str]:
    """Every Python module of the package, as a path from the repository root."""
    return sorted(path.relative_to(ROOT).as_posix()
                  for path in (ROOT / "upss").rglob("*.py")
                  if "__pycache__" not in path.parts)


def test_the_module_listing_sees_the_package_and_its_pages():
    found = modules()
    assert "upss/questions.py" in found
    assert "upss/web/limits.py" in found
    assert "upss/web/__init__.py" in found


def test_every_module_has_exactly_one_line_in_the_module_map():
    names = [first_name(row[0]) for row in table_rows(section("Module map"))]
    names = [name for name in names if name and name.endswith(".py")]
    missing = [module for module in modules() if module not in names]
    assert not missing, f"modules missing from docs/ARCHITECTURE.md's module map: {missing}"
    gone = sorted(set(names) - set(modules()))
    assert not gone, f"the module map names modules that do not exist: {gone}"
    twice = sorted({name for name in names if names.count(name) > 1})
    assert not twice, f"modules with more than one line in the module map: {twice}"


def test_every_module_is_named_by_its_path():
    text = doc_text()
    missing = [module for module in modules() if module not in text]
    assert not missing, f"modules not named in docs/ARCHITECTURE.md: {missing}"


def state_table() -> dict[str, tuple[frozenset[str], list[str]]]:
    """action -> (from-states, to-states) as the document's state table gives them."""
    table: dict[str, tuple[frozenset[str], list[str]]] = {}
    for row in table_rows(section("Question states")):
        action = first_name(row[0])
        if action is None or len(row) < 3:
            continue
        assert action not in table, f"action {action} has two rows in the state table"
        table[action] = (frozenset(BACKTICKED.findall(row[1])), BACKTICKED.findall(row[2]))
    return table


def test_the_state_table_is_transitions_exactly():
    table = state_table()
    missing = sorted(set(questions.TRANSITIONS) - set(table))
    assert not missing, f"actions of questions.TRANSITIONS missing from the state table: {missing}"
    extra = sorted(set(table) - set(questions.TRANSITIONS))
    assert not extra, f"the state table has actions TRANSITIONS does not: {extra}"
    for action, (allowed_from, to_state) in questions.TRANSITIONS.items():
        doc_from, doc_to = table[action]
        assert doc_from == allowed_from, (
            f"{action}: the document says from {sorted(doc_from)}, the code "
            f"{sorted(allowed_from)}")
        assert doc_to == [to_state], f"{action}: the document says to {doc_to}, not {to_state}"


def test_every_state_is_in_the_state_section_and_listed_with_its_meaning():
    text = section("Question states")
    missing = [state for state in QUESTION_STATES if f"`{state}`" not in text]
    assert not missing, f"states missing from the state section: {missing}"
    listed = re.findall(r"^- `([a-z_]+)`: \S", text, flags=re.M)
    assert sorted(listed) == sorted(QUESTION_STATES), (
        f"the list of states with their meanings is {listed}, the code has {QUESTION_STATES}")
    for _from_states, to_states in state_table().values():
        assert set(to_states) <= set(QUESTION_STATES), f"unknown state in {to_states}"


def test_every_action_is_named_in_the_document():
    text = doc_text()
    missing = [action for action in questions.TRANSITIONS if f"`{action}`" not in text]
    assert not missing, f"actions not named in docs/ARCHITECTURE.md: {missing}"


def test_every_scheduler_job_has_its_line_with_its_function_and_interval():
    rows = {first_name(row[0]): row for row in table_rows(section("Jobs"))}
    for job in jobs.JOBS:
        assert job.id in rows, f"job {job.id} is missing from the Jobs section"
        row = rows[job.id]
        function = f"{job.func.__module__.rsplit('.', 1)[-1]}.{job.func.__name__}"
        assert f"`{function}`" in row[2], f"job {job.id} runs {function}, not {row[2]}"
        every = r"\bweekly\b" if job.weekly else rf"(?<!\d){job.every_ticks} ticks?\b"
        assert re.search(every, row[1]), (
            f"job {job.id} runs every {job.weekly or job.every_ticks} (ticks), "
            f"the document: {row[1]!r}")
    extra = sorted(set(rows) - {job.id for job in jobs.JOBS})
    assert not extra, f"the Jobs section lists jobs that do not exist: {extra}"


def test_every_setting_config_reads_is_in_the_settings_section(tmp_path):
    environ = RecordingEnviron(UPSS_SECRET_KEY="test-only")  # no key file is written
    config.from_environment(str(tmp_path), environ=environ)
    asked = sorted(name for name in environ.asked if name.startswith("UPSS_"))
    assert "UPSS_DATABASE_URL" in asked and "UPSS_LIMIT_SIGN_IN" in asked
    text = section("Settings")
    missing = [name for name in asked if f"`{name}`" not in text]
    assert not missing, f"UPSS_* settings missing from the Settings section: {missing}"


def test_readme_links_the_architecture_instead_of_the_shared_design():
    assert DOC.is_file()
    readme = README.read_text(encoding="utf-8")
    assert re.search(r"\[[^\]]*\]\(docs/ARCHITECTURE\.md\)", readme), (
        "README.md must link docs/ARCHITECTURE.md")
    assert "shared/DESIGN.md" not in readme, "README.md still points to ../shared/DESIGN.md"
