"""The layering rule (docs/ARCHITECTURE.md, section 2), checked on the source with ``ast``.

Pages call services: no module under ``upss/web/`` imports the Stripe boundary
(``upss.stripe_gateway``) or the ledger (``upss.ledger``), in any form, or splits money itself
(``money.split`` is a rule; services apply it). And nothing below the pages calls up: no service
or lower module imports ``upss.web``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UPSS = Path(__file__).resolve().parents[2] / "upss"
WEB = UPSS / "web"

#: What pages may not import: the layers below the services.
BELOW_SERVICES = ("upss.stripe_gateway", "upss.ledger")
#: Modules of ``upss/`` that are not services or lower layers: the app factory installs the
#: web package, the CLI is an entry point. (The local Stripe, ``upss/devstripe/``, is its own
#: process; like ``upss/web/`` it is a package, so not among ``upss/*.py``.)
NOT_BELOW_WEB = {"__init__.py", "cli.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(UPSS.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module (or module attribute) ``path`` imports, absolute, with its line: ``from ..
    import ledger`` in ``upss/web/x.py`` gives ``upss.ledger``, ``from ..ledger import post``
    gives ``upss.ledger`` and ``upss.ledger.post``. Imports inside functions count too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(path).split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _is_within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def money_splits(path: Path) -> list[int]:
    """Lines where ``path`` uses ``money.split`` (called or not) or imports ``split`` from
    ``upss.money``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr == "split"
             and isinstance(node.value, ast.Name) and node.value.id == "money"]
    lines += [line for line, name in imported_names(path) if name == "upss.money.split"]
    return lines


def page_violations(path: Path) -> list[str]:
    where = path.relative_to(UPSS.parent)
    problems = [f"{where}:{line} imports {name}" for line, name in imported_names(path)
                if any(_is_within(name, below) for below in BELOW_SERVICES)]
    problems += [f"{where}:{line} splits money itself (money.split)"
                 for line in money_splits(path)]
    return problems


def upward_violations(path: Path) -> list[str]:
    where = path.relative_to(UPSS.parent)
    return [f"{where}:{line} imports {name}" for line, name in imported_names(path)
            if _is_within(name, "upss.web")]


def _pages() -> list[Path]:
    """The pages, and the CLI: both are entry points that call services."""
    return sorted(WEB.rglob("*.py")) + [UPSS / "cli.py"]


def _below_web() -> list[Path]:
    return sorted(p for p in UPSS.glob("*.py") if p.name not in NOT_BELOW_WEB)


def test_pages_and_the_cli_reach_stripe_and_the_ledger_only_through_services():
    assert _pages(), "no page modules found"
    problems = [problem for path in _pages() for problem in page_violations(path)]
    assert problems == [], "pages must call services instead:\n" + "\n".join(problems)


def test_nothing_below_the_pages_imports_them():
    assert len(_below_web()) > 10, "no service modules found"
    problems = [problem for path in _below_web() for problem in upward_violations(path)]
    assert problems == [], "services and lower layers must not import upss.web:\n" + (
        "\n".join(problems))


@pytest.mark.parametrize("source", [
    "from .. import ledger\n",
    "from .. import access, ledger as books\n",
    "from ..ledger import verify\n",
    "from ..stripe_gateway import GatewayError\n",
    "import upss.ledger\n",
    "import upss.stripe_gateway as sg\n",
    "from upss import stripe_gateway\n",
    "def f():\n    from ..ledger import balance\n    return balance\n",
    "from .. import money\nx = money.split(100, 1000)\n",
    "from ..money import split\n",
])
def test_the_page_check_finds_each_form(tmp_path, monkeypatch, source):
    fake_upss = tmp_path / "upss"
    (fake_upss / "web").mkdir(parents=True)
    page = fake_upss / "web" / "page.py"
    page.write_text(source, encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.UPSS", fake_upss)
    assert page_violations(page)


@pytest.mark.parametrize("source", [
    "from .web import inputs\n", "from . import web\n", "from .web.limits import configured\n",
    "import upss.web.asker\n", "def f():\n    from .web import asker\n",
])
def test_the_upward_check_finds_each_form(tmp_path, monkeypatch, source):
    fake_upss = tmp_path / "upss"
    fake_upss.mkdir()
    service = fake_upss / "service.py"
    service.write_text(source, encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.UPSS", fake_upss)
    assert upward_violations(service)


def test_the_page_check_allows_services_and_display_helpers(tmp_path, monkeypatch):
    fake_upss = tmp_path / "upss"
    (fake_upss / "web").mkdir(parents=True)
    page = fake_upss / "web" / "page.py"
    page.write_text("from .. import money, payments, statements\n"
                    "from ..payments import CardDeclined, GatewayError\n"
                    "text = money.format_money(100, 'EUR', 'en')\n"
                    "parts = 'a.b'.split('.')\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.UPSS", fake_upss)
    assert page_violations(page) == []


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module name -> the ``upss`` modules it imports (at the top or inside functions).
    ``from . import x`` imports the module ``x``, not the package, when ``x`` is a module."""
    paths = {_module_name(p): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        found = imported_names(path)
        submodule_lines = {(line, module.rpartition(".")[0]) for line, module in found
                           if module in paths}
        targets = set()
        for line, imported in found:
            if (line, imported) in submodule_lines:
                continue
            while imported and imported not in paths:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a circle (Tarjan's
    strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circles():
    """A module never imports, directly or through others, a module that imports it."""
    graph = import_graph(UPSS)
    assert len(graph) > 30, "no modules found"
    assert import_circles(graph) == []


def test_the_circle_check_finds_a_circle_through_a_package(tmp_path, monkeypatch):
    fake_upss = tmp_path / "upss"
    (fake_upss / "web").mkdir(parents=True)
    (fake_upss / "__init__.py").write_text("", encoding="utf-8")
    (fake_upss / "web" / "__init__.py").write_text("from . import page\n", encoding="utf-8")
    (fake_upss / "web" / "page.py").write_text(
        "def f():\n    from . import helper\n", encoding="utf-8")
    (fake_upss / "models.py").write_text("from .types import T\n", encoding="utf-8")
    (fake_upss / "types.py").write_text("X = 1\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.UPSS", fake_upss)
    assert import_circles(import_graph(fake_upss)) == [["upss.web", "upss.web.page"]]
