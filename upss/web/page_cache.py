"""Pages that are the same for every visitor who is not signed in, rendered once per language.

The home and help pages say what UPSS is; for a visitor (not signed in, nothing in the
session: no message to show, no typed work) they depend on nothing but the page's language.
They are the pages most often opened by someone new, and rendering one costs about half a
millisecond of templates and translations; sending the same text again costs nothing.

What makes the page the same: the view reads no input, and the request has no query string
(``next`` and the language form's way back come from it). Anything else (a signed-in user, a
session with content, a query string, templates reloaded on change as in ``flask run
--debug``) renders as usual. The kept texts are a handful per process (pages x languages),
built from files that do not change while it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import current_app, request, session
from flask_babel import get_locale
from flask_login import current_user

#: Where each app keeps its pages (``app.extensions``): tests make apps with other settings.
EXTENSION = "upss_page_cache"


def same_for_every_visitor(view: Callable[..., str]) -> Callable[..., str]:
    """Keep what ``view`` (a page without arguments) renders for a visitor, per language."""

    @wraps(view)
    def page():
        if not _visitor_page():
            return view()
        app = current_app._get_current_object()
        kept = app.extensions.setdefault(EXTENSION, {})
        key = (request.endpoint, str(get_locale()), request.script_root)
        text = kept.get(key)
        if text is None:
            text = kept[key] = view()
        return text

    return page


def _visitor_page() -> bool:
    return (request.method in ("GET", "HEAD") and not request.query_string
            and not current_app.jinja_env.auto_reload
            and not current_user.is_authenticated and not session)
