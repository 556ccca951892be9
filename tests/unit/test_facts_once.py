"""Each fact once: the list of languages is written in one place (``upss.models``)."""

from __future__ import annotations

import ast
from pathlib import Path

from upss.models import LANGUAGE_NAMES, LANGUAGES

ROOT = Path(__file__).resolve().parents[2]
#: The local Stripe speaks Stripe's vocabulary (countries, ``losses``...), not the app's.
DEVSTRIPE = ROOT / "upss" / "devstripe"


def _literal_strings(node: ast.AST) -> set[str]:
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
    return {item.value for item in items
            if isinstance(item, ast.Constant) and isinstance(item.value, str)}


def test_the_languages_are_listed_only_in_models():
    copies = []
    for path in sorted((ROOT / "upss").rglob("*.py")):
        if path.is_relative_to(DEVSTRIPE):
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


#: The ledger's account names; ``upss/ledger.py`` alone spells them out.
ACCOUNT_NAMES = ("stripe_balance", "payouts_in_transit", "bank", "bank_clearing",
                 "disputed_funds", "commission", "stripe_fees", "losses")
ACCOUNT_PREFIXES = ("escrow:question:", "payable:answerer:")


def account_name_spellings(path: Path) -> list[str]:
    """Lines of ``path`` with a string (or f-string part) that is an account name or starts
    with a numbered account's prefix. Dictionary keys are other vocabularies (Stripe's
    ``losses`` parameter), not account names."""
    tree = ast.parse(path.read_text(), str(path))
    keys = {id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict) for key in node.keys}
    found = []
    for node in ast.walk(tree):
        if id(node) in keys or not isinstance(node, ast.Constant):
            continue
        if isinstance(node.value, str) and (
                node.value in ACCOUNT_NAMES or node.value.startswith(ACCOUNT_PREFIXES)):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_ledger_account_names_are_spelled_only_in_the_ledger():
    """Every other module builds and reads account names with ``ledger``'s constants and
    ``escrow_account``/``payable_account``/``answerer_of``."""
    spelled = [line for path in sorted((ROOT / "upss").rglob("*.py"))
               if path.name != "ledger.py" and not path.is_relative_to(DEVSTRIPE)
               for line in account_name_spellings(path)]
    assert spelled == []


def test_the_account_name_check_finds_literals_and_f_strings(tmp_path, monkeypatch):
    module = tmp_path / "upss" / "service.py"
    module.parent.mkdir()
    module.write_text('a = "stripe_balance"\nb = f"payable:answerer:{x}"\nc = "bank holiday"\n'
                      'd = {"losses": 1}\n')
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert account_name_spellings(module) == ["upss/service.py:1", "upss/service.py:2"]


def test_the_settings_defaults_are_written_only_in_config():
    """``upss/config.py`` holds each organizer setting's default (``UPSS_*``); neither the
    ``Settings`` value nor the ``organizer_settings`` row carries a second copy."""
    from dataclasses import MISSING, fields

    from upss import settings
    from upss.models import OrganizerSettings

    with_default = [f.name for f in fields(settings.Settings)
                    if f.default is not MISSING or f.default_factory is not MISSING]
    assert with_default == ["windows"]  # no windows stored: the configured window every day
    columns = OrganizerSettings.__table__.columns
    assert [name for name in settings._STORED if columns[name].default is not None] == []
