"""Each fact once: the list of languages is written in one place (``upss.models``)."""

from __future__ import annotations

import ast
from pathlib import Path

from upss.models import LANGUAGE_NAMES, LANGUAGES

ROOT = Path(__file__).resolve().parents[2]


def _literal_strings(node: ast.AST) -> set[str]:
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
    return {item.value for item in items
            if isinstance(item, ast.Constant) and isinstance(item.value, str)}


def test_the_languages_are_listed_only_in_models():
    copies = []
    for path in sorted((ROOT / "upss").rglob("*.py")):
        if path.name == "devstripe.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict) and \
                    set(LANGUAGES) <= _literal_strings(node):
                copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert copies == ["upss/models.py:" + str(_models_line())], copies


def _models_line() -> int:
    tree = ast.parse((ROOT / "upss" / "models.py").read_text())
    return next(node.lineno for node in ast.walk(tree)
                if isinstance(node, ast.Dict) and set(LANGUAGES) <= _literal_strings(node))


def test_every_language_but_english_has_a_catalog():
    catalogs = {p.name for p in (ROOT / "translations").iterdir() if p.is_dir()}
    assert catalogs == set(LANGUAGES) - {"en"}
    assert list(LANGUAGE_NAMES) == list(LANGUAGES)
