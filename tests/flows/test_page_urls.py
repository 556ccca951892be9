"""The templates' ``url_for`` (``upss.web.page_urls``) and ``cell_label``: what a page shows is
what Flask's ``url_for`` and the old ``cell_label`` macro gave, only built fewer times."""

from __future__ import annotations

import flask
import pytest
from flask import render_template_string, url_for
from markupsafe import Markup, escape

from upss.web import page_urls


def _remembered_endpoints(app) -> list[str]:
    """Every GET endpoint whose rule has no variable parts: the addresses page_urls keeps."""
    return sorted({rule.endpoint for rule in app.url_map.iter_rules()
                   if "GET" in rule.methods and not rule.arguments})


def test_every_remembered_address_is_flasks_own(app):
    """Twice each (built, then remembered), mounted at the root and then under a prefix: the
    same text as ``flask.url_for``. The prefix is part of the key, so the second mount does
    not read the first one's addresses."""
    page_urls._remembered.clear()
    endpoints = _remembered_endpoints(app)
    assert len(endpoints) > 20
    files = ["favicon.svg", "css/upss.css", "js/upss.js", "a file with spaces & more.txt"]
    template = ("{% for e in endpoints %}{{ url_for(e) }}|{% endfor %}"
                "{% for f in files %}{{ url_for('static', filename=f) }}|{% endfor %}")
    for script_name in ("", "/upss"):
        with app.test_request_context("/", base_url=f"http://localhost{script_name}/"):
            expected = "".join(f"{escape(url_for(e))}|" for e in endpoints) + "".join(
                f"{escape(url_for('static', filename=f))}|" for f in files)
            for _ in range(2):
                assert render_template_string(template, endpoints=endpoints, files=files) \
                    == expected
        assert expected.startswith(f"{script_name}/account/")


def test_an_address_is_built_once_and_other_calls_go_to_flask(app, monkeypatch):
    """The same argument-less address on three pages is built once; an address with values,
    a blueprint-relative or an external one is built by Flask on every call."""
    page_urls._remembered.clear()
    built = []
    real = page_urls.flask_url_for

    def counted(endpoint, **values):
        built.append((endpoint, values))
        return real(endpoint, **values)

    monkeypatch.setattr(page_urls, "flask_url_for", counted)
    template = ("{{ url_for('main.help_page') }} {{ url_for('static', filename='js/upss.js') }}"
                " {{ url_for('auth.sign_in', next='/questions') }}"
                " {{ url_for('main.home', _external=True) }}")
    with app.test_request_context("/"):
        pages = [render_template_string(template) for _ in range(3)]
    assert pages[0] == pages[1] == pages[2]
    assert pages[0] == ("/help /static/js/upss.js /sign-in?next=/questions "
                        "http://localhost/")
    assert built.count(("main.help_page", {})) == 1
    assert built.count(("static", {"filename": "js/upss.js"})) == 1
    assert built.count(("auth.sign_in", {"next": "/questions"})) == 3
    assert built.count(("main.home", {"_external": True})) == 3


def test_outside_a_request_the_address_is_flasks_and_not_kept(app):
    """E-mails are rendered outside a request: absolute addresses from the configuration,
    never kept for pages."""
    page_urls._remembered.clear()
    app.config["SERVER_NAME"] = "upss.example"
    try:
        with app.app_context():
            text = app.jinja_env.from_string("{{ url_for('main.help_page') }}").render()
    finally:
        app.config["SERVER_NAME"] = None
    assert text == "http://upss.example/help"
    assert not page_urls._remembered


def test_an_app_with_url_defaults_is_refused():
    """URL defaults could make one endpoint's address differ between pages."""
    other = flask.Flask("other")
    other.url_defaults(lambda endpoint, values: values.setdefault("lang", "fi"))
    with pytest.raises(RuntimeError):
        page_urls.init_app(other)


MACRO = ('{% macro old_cell_label(text) %}<span class="cell-label" aria-hidden="true">'
         "{{ text }}</span> {% endmacro %}")


@pytest.mark.parametrize("text", ["Price", "Tom & Jerry <b>", '"quoted" \'too\'',
                                  Markup("<em>kept</em>"), "", 42])
def test_cell_label_is_the_old_macros_text(app, text):
    with app.test_request_context("/"):
        new, old = render_template_string(
            MACRO + "{{ cell_label(text) }}|{{ old_cell_label(text) }}", text=text).split("|")
    assert new == old
    assert new.startswith('<span class="cell-label" aria-hidden="true">')
