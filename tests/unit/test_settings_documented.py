"""The README's settings table names exactly the ``UPSS_*`` variables the code reads, and the
runtime requirements are split right from the development ones.

Nothing is hard-coded: the names come from calling ``upss.config.from_environment`` with an
environment that records what it is asked for, plus the ``${UPSS_…}`` / ``environ.get("UPSS_…")``
reads found in the Procfile, the Makefile and the application's other modules; the imports come
from parsing every module under ``upss/`` (except the development-only ``upss/devstripe/``).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from upss import config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PACKAGE = ROOT / "upss"
#: Development-only: the local Stripe, which production never imports.
DEV_ONLY_PACKAGE = PACKAGE / "devstripe"
#: Tools that belong in requirements-dev.txt, never in the runtime requirements.
DEV_TOOLS = ("localstripe", "aiohttp", "honcho", "pytest", "hypothesis", "ruff", "playwright")
NAME = re.compile(r"UPSS_[A-Z0-9_]+")
#: Reads of a variable outside config.py: ``${UPSS_X…}`` in a shell line, ``environ.get("UPSS_X"``,
#: ``environ["UPSS_X"]`` or ``getenv("UPSS_X"``.
OUTSIDE_READ = re.compile(r"""\$\{(UPSS_[A-Z0-9_]+)"""
                          r"""|(?:environ(?:\.get\(|\[)|getenv\()\s*["'](UPSS_[A-Z0-9_]+)""")


class RecordingEnviron(dict):
    """An environment that remembers every variable asked for, however it is asked."""

    def __init__(self, **values):
        super().__init__(**values)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


def names_config_reads(instance: Path) -> set[str]:
    environ = RecordingEnviron(UPSS_SECRET_KEY="test-only")  # no key file is written
    config.from_environment(str(instance), environ)
    asked = {name for name in environ.asked if name.startswith("UPSS_")}
    return asked | {f"UPSS_LIMIT_{name}" for name in config.RATE_LIMITS}


def names_read_outside_config() -> set[str]:
    """Variables read by the Procfile, the Makefile, wsgi.py and upss/ modules besides config."""
    files = [ROOT / "Procfile", ROOT / "Makefile", ROOT / "wsgi.py",
             *(path for path in PACKAGE.rglob("*.py") if path.name != "config.py")]
    found = set()
    for path in files:
        for match in OUTSIDE_READ.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group(1) or match.group(2))
    return found


def names_read_by_tests() -> set[str]:
    found = set()
    for path in (ROOT / "tests").rglob("*.py"):
        if path == Path(__file__).resolve():  # this file's own examples are not reads
            continue
        for match in OUTSIDE_READ.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group(1) or match.group(2))
    return found


def settings_table() -> set[str]:
    """The backticked names in the first column of the table under ``## Settings (environment)``."""
    text = README.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)
    sections = [part for part in parts if part.startswith("Settings (environment)")]
    assert len(sections) == 1, "README needs one '## Settings (environment)' section"
    names = set()
    rows = [line for line in sections[0].splitlines() if line.startswith("|")]
    assert rows, "the Settings section has no table"
    for row in rows:
        first = row.strip("|").split("|")[0]
        names.update(re.findall(r"`(UPSS_[A-Z0-9_]+)`", first))
    return names


def test_the_recording_environment_sees_the_settings(tmp_path):
    read = names_config_reads(tmp_path)
    assert {"UPSS_DATABASE_URL", "UPSS_SECRET_KEY", "UPSS_LIMIT_SIGN_IN"} <= read
    assert {"UPSS_PORT", "UPSS_LOCALSTRIPE_PORT"} <= names_read_outside_config()


def test_every_setting_the_code_reads_is_in_the_readme_table(tmp_path):
    table = settings_table()
    missing = sorted((names_config_reads(tmp_path) | names_read_outside_config()) - table)
    assert not missing, f"UPSS_* settings missing from README's settings table: {missing}"


def test_the_readme_table_names_only_settings_the_code_reads(tmp_path):
    read = names_config_reads(tmp_path) | names_read_outside_config() | names_read_by_tests()
    unknown = sorted(settings_table() - read)
    assert not unknown, f"README's settings table names variables nothing reads: {unknown}"


def requirement_names(path: Path) -> set[str]:
    """Distribution names listed in a requirements file (not following ``-r``)."""
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        names.add(normalise(re.split(r"[\[<>=!~;@ ]", line, maxsplit=1)[0]))
    return names


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_development_tools_are_not_runtime_requirements():
    runtime = requirement_names(ROOT / "requirements.txt")
    wrong = sorted(runtime & {normalise(tool) for tool in DEV_TOOLS})
    assert not wrong, f"development tools in requirements.txt (move them to -dev): {wrong}"
    development = requirement_names(ROOT / "requirements-dev.txt")
    assert {"localstripe", "aiohttp", "honcho"} <= development, "make run needs them"


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-standard-library, non-``upss`` modules ``path`` imports
    anywhere (module level or inside functions); relative imports are ours."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {name for name in found
            if name not in sys.stdlib_module_names and name not in ("upss", "__future__")}


def test_every_runtime_import_is_a_runtime_requirement():
    runtime = requirement_names(ROOT / "requirements.txt")
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(DEV_ONLY_PACKAGE):
            continue
        for name in third_party_imports(path):
            provided_by = {normalise(dist) for dist in distributions.get(name, [name])}
            if not provided_by & runtime:
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported at runtime but not in requirements.txt: {missing}"


def test_development_only_modules_are_not_imported_by_runtime_code():
    """Production installs requirements.txt alone: nothing else may import the local Stripe."""
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(DEV_ONLY_PACKAGE):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module or ''}", *(a.name for a in node.names)]
                     if isinstance(node, ast.ImportFrom) else [])
            if any("devstripe" in name.split(".") for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert not importers, f"runtime modules import upss.devstripe: {importers}"
