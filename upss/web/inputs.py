"""The one input filter: every form field, query parameter and JSON string passes through here.

Browsers send a textarea's line breaks as CR LF; everything is stored with LF only, so CR LF and
a lone CR become LF first. Then characters no page can show and PostgreSQL cannot store (NUL
and the other C0 controls except tab and line feed, and lone UTF-16 surrogates from JSON) are
*refused*: they are taken out of the value before any view sees it (so nothing can reach the
database), the field's name is remembered, and :class:`Form` turns that into the form's own
error message with a 400 - the user's text comes back to them without the bad characters.
Single-line fields also refuse tab and line feed (a browser cannot type them there).

The webhook endpoints read the raw body (``get_data``) for the signature; they never parse it
as a form, so Stripe's bytes are checked byte for byte as sent.
"""

from __future__ import annotations

import re

from flask import Request, has_request_context
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import BadRequest
from werkzeug.utils import cached_property
from wtforms import StringField, TextAreaField

#: C0 controls except tab (09) and line feed (0A), and UTF-16 surrogates (not valid UTF-8).
REFUSED = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff]")
#: Refused as well in single-line fields (inputs, not textareas).
REFUSED_IN_ONE_LINE = re.compile("[\t\n]")
_LINE_BREAKS = re.compile("\r\n?")

REFUSED_MESSAGE = _l("This contains a character that cannot be stored (an invisible control "
                     "character, perhaps pasted from another program). We took it out: check "
                     "the text and send it again.")
ONE_LINE_MESSAGE = _l("This must be one line, without tabs or line breaks.")


def clean_text(value: str) -> tuple[str, bool]:
    """``value`` with line breaks made LF and refused characters taken out; and whether any
    character was taken out."""
    value = _LINE_BREAKS.sub("\n", value)
    cleaned = REFUSED.sub("", value)
    return cleaned, cleaned != value


def _clean_multidict(data):
    items, refused = [], set()
    for key, value in data.items(multi=True):
        if isinstance(value, str):
            value, bad = clean_text(value)
            if bad:
                refused.add(key)
        items.append((key, value))
    return ImmutableMultiDict(items), refused


def _clean_json(value):
    """The JSON value with every string cleaned; raises ``BadRequest`` on refused characters."""
    if isinstance(value, str):
        cleaned, bad = clean_text(value)
        if bad:
            raise BadRequest(str(REFUSED_MESSAGE))
        return cleaned
    if isinstance(value, list):
        return [_clean_json(item) for item in value]
    if isinstance(value, dict):
        return {_clean_json(k): _clean_json(v) for k, v in value.items()}
    return value


class FilteredRequest(Request):
    """Flask's request, with ``form``, ``args`` and ``get_json`` passed through the filter."""

    def _load_form_data(self) -> None:
        super()._load_form_data()
        form, refused = _clean_multidict(self.__dict__["form"])
        self.__dict__["form"] = form
        self.refused_fields = getattr(self, "refused_fields", set()) | refused

    @cached_property
    def args(self):
        args, refused = _clean_multidict(Request.args.__get__(self, type(self)))
        self.refused_fields = getattr(self, "refused_fields", set()) | refused
        return args

    def get_json(self, force=False, silent=False, cache=True):
        data = super().get_json(force=force, silent=silent, cache=cache)
        return _clean_json(data)


def refused_fields() -> set[str]:
    """Names of this request's fields (form or query) that had refused characters."""
    if not has_request_context():
        return set()
    from flask import request

    request.form  # noqa: B018 - parse the form so its refusals are known
    return set(getattr(request, "refused_fields", set()))


def is_one_line(field) -> bool:
    return isinstance(field, StringField) and not isinstance(field, TextAreaField)


class Form(FlaskForm):
    """Every UPSS form: Flask-WTF's (CSRF), plus the input filter's verdict per field."""

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        refused = refused_fields()
        for field in self:
            if field.type == "CSRFTokenField":
                continue
            message = None
            if field.name in refused:
                message = REFUSED_MESSAGE
            elif is_one_line(field) and isinstance(field.data, str) and \
                    REFUSED_IN_ONE_LINE.search(field.data):
                message = ONE_LINE_MESSAGE
            if message is not None:
                field.errors = [message, *[e for e in field.errors if e != message]]
                ok = False
        return ok


def strip_whitespace(value: str | None) -> str | None:
    """A WTForms filter: the text without surrounding spaces (other values as they are)."""
    return value.strip() if isinstance(value, str) else value


# --- statement page cursors ----------------------------------------------------------------

def _cursor_serializer():
    from flask import current_app
    from itsdangerous import URLSafeSerializer

    return URLSafeSerializer(current_app.secret_key, salt="statement-page")


def statement_cursor(token: str | None):
    """The ``statements.Cursor`` a statement page's ``?after=`` or ``?before=`` carries, or
    None; a token this app did not sign (the running balance is inside it) is a 400."""
    from itsdangerous import BadSignature

    from ..statements import Cursor

    if not token:
        return None
    try:
        entry_id, balance = _cursor_serializer().loads(token)
        return Cursor(int(entry_id), int(balance))
    except (BadSignature, ValueError, TypeError) as exc:
        raise BadRequest("not a statement page") from exc


def statement_cursor_token(cursor) -> str | None:
    """The signed URL value of a ``statements.Cursor`` (None for None)."""
    if cursor is None:
        return None
    return _cursor_serializer().dumps([cursor.entry_id, cursor.balance_cents])
