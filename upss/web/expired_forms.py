"""A form sent with a token that no longer matches (CSRF): nothing is done, nothing typed is lost.

Flask-WTF refuses such a POST before any view runs. Form tokens have no time limit of their own
(``WTF_CSRF_TIME_LIMIT`` is None, see ``upss.config``): they stop matching when the browser's
session is replaced, that is after signing out, signing in again (in another window, say), or
losing the session cookie. What the person typed must survive that:

- a page's own POST gets a page (400) that says what happened and shows every text field that
  was sent, read-only and labelled, with a way back to the page (or to signing in, then back to
  the page) to send it again. The answer page also keeps the text in the browser and puts it
  back when it is opened again (``static/js/upss.js``). Nothing is sent again by itself: a
  refused request might have come from another site;
- the answer page's autosave (``fetch`` asking for JSON) gets ``{"error", "reason"}``, the
  reason being ``signed_out`` or ``expired``, so it can say which.

The text is shown only for a POST the browser says came from this site (``Sec-Fetch-Site``,
else ``Origin`` or ``Referer``), so another site cannot make these pages show its words.
Passwords, hidden fields and choices are never shown.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import jsonify, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import HiddenField, PasswordField, StringField
from wtforms.fields.core import UnboundField

from .inputs import Form

#: The label of a text field whose form cannot be told from its name.
GENERIC_LABEL = _l("Text you typed")


def _form_classes(cls=Form):
    for sub in cls.__subclasses__():
        yield sub
        yield from _form_classes(sub)


def text_field_labels() -> dict[str, object]:
    """Field name → label, for every text field (not a password or hidden one) of every form.

    A name that two forms label differently gets the generic label.
    """
    labels: dict[str, object] = {}
    for form in _form_classes():
        for name in dir(form):
            field = getattr(form, name, None)
            if not isinstance(field, UnboundField):
                continue
            kind = field.field_class
            if not issubclass(kind, StringField) or issubclass(kind, (PasswordField,
                                                                      HiddenField)):
                continue
            label = (field.args[0] if field.args else field.kwargs.get("label")) or GENERIC_LABEL
            if name in labels and str(labels[name]) != str(label):
                label = GENERIC_LABEL
            labels[name] = label
    return labels


def typed_text() -> list[tuple[object, str]]:
    """(label, text) of each non-empty text field of this request's form."""
    labels = text_field_labels()
    kept = []
    for name, value in request.form.items(multi=True):
        if not isinstance(value, str) or not value.strip():
            continue
        # A form with a prefix (``AnswerForm(prefix="a")``) sends "a-answer".
        label = labels.get(name) or ("-" in name and labels.get(name.split("-", 1)[1]))
        if label:
            kept.append((label, value))
    return kept


def from_this_site() -> bool:
    """Whether the browser says this request came from a page of this site."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site:
        return fetch_site == "same-origin"
    source = request.headers.get("Origin") or request.referrer
    return bool(source) and urlsplit(source).netloc == request.host


def page_url() -> str:
    """The page the form was on: the referring page of this site, else this address if it can
    be opened, else the home page."""
    if request.referrer:
        parts = urlsplit(request.referrer)
        if parts.netloc == request.host and parts.path.startswith("/"):
            return parts.path + (f"?{parts.query}" if parts.query else "")
    rule = request.url_rule
    if rule is not None and "GET" in (rule.methods or ()):
        return request.full_path.rstrip("?")
    return url_for("main.home")


def wants_json() -> bool:
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == \
        "application/json"


def expired_form_response(plain_page):
    """The response to a refused token; ``plain_page()`` is the error page without text."""
    signed_in = bool(current_user.is_authenticated)
    if wants_json():
        return jsonify(error=str(_l("This form had expired or was not sent from this site.")),
                       reason="expired" if signed_in else "signed_out"), 400
    kept = typed_text() if request.method == "POST" and from_this_site() else []
    if not kept:
        return plain_page()
    back = page_url()
    return render_template("form_expired.html", kept=kept, signed_in=signed_in,
                           back_url=back if signed_in else url_for("auth.sign_in", next=back)
                           ), 400
