"""The templates' ``url_for``, remembering the addresses that are the same on every page.

A page's header, footer and static files are a dozen ``url_for`` calls whose result depends
only on the endpoint, the static file's name and where the app is mounted (``SCRIPT_NAME``):
Flask builds each again on every page (the request's URL adapter, the URL defaults, the rule's
converters: 10-20 us each, a tenth of the anonymous home page's CPU). Here, inside a request,
a call with no values (or ``static`` with only ``filename``) is built by Flask once and then
read from a dictionary keyed by those three things; every other call (values, ``_external``,
``_anchor``, a blueprint-relative ``.endpoint``, no request as in e-mails) goes to Flask.

Flask's URL defaults (``url_defaults``) could change such an address from request to request,
so ``init_app`` refuses an app that has any: add one, and this module must learn it first.
``tests/flows/test_page_urls.py`` holds every such address to Flask's own.
"""

from __future__ import annotations

from flask import Flask, has_request_context, request
from flask import url_for as flask_url_for

#: Enough for every argument-less endpoint and static file; beyond it, Flask builds each time.
MAX_REMEMBERED = 1024

_remembered: dict[tuple[str, str, str | None], str] = {}


def url_for(endpoint: str, /, **values) -> str:
    """``flask.url_for``, answered from memory for what cannot differ between pages."""
    if not has_request_context() or endpoint[:1] == "." or (
            values and (endpoint != "static" or values.keys() != {"filename"})):
        return flask_url_for(endpoint, **values)
    key = (request.root_path, endpoint, values.get("filename"))
    found = _remembered.get(key)
    if found is None:
        found = flask_url_for(endpoint, **values)
        if len(_remembered) < MAX_REMEMBERED:
            _remembered[key] = found
    return found


def init_app(app: Flask) -> None:
    """Install ``url_for`` for the app's templates."""
    if any(app.url_default_functions.values()):
        raise RuntimeError("page_urls remembers addresses that URL defaults would change")
    app.jinja_env.globals["url_for"] = url_for
