"""Download my data: the page that explains what the file holds and shows how the person's
export is doing, the button that asks for it, and the download itself (``upss.data_export``).

The file is sent as an attachment with ``Cache-Control: no-store``; someone else's export, an
expired one or one not ready yet is answered 404, the same for all, so ids tell nothing."""

from __future__ import annotations

from babel.numbers import format_decimal
from flask import Blueprint, abort, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import data_export
from ..extensions import db
from ..models import utcnow
from .display import reader_locale

bp = Blueprint("account_data", __name__)


def size_text(size_bytes: int) -> str:
    """A file size in the reader's language: "850 bytes", "12.5 kB", "3.1 MB"."""
    locale = reader_locale()
    if size_bytes < 1000:
        return _("%(num)s bytes", num=format_decimal(size_bytes, locale=locale))
    if size_bytes < 1_000_000:
        return _("%(num)s kB", num=format_decimal(round(size_bytes / 1000, 1), locale=locale))
    return _("%(num)s MB", num=format_decimal(round(size_bytes / 1_000_000, 1), locale=locale))


@bp.get("/account/data")
@login_required
def page():
    """What the file holds, and the state of the person's export."""
    now = utcnow()
    export = data_export.current(db.session, current_user)
    return render_template(
        "account/data.html", export=export,
        downloadable=data_export.is_downloadable(export, now),
        size=size_text(export.size_bytes) if export and export.size_bytes else None)


@bp.post("/account/data")
@login_required
def ask():
    """Ask for a copy of one's data: made at once for a small account, else by the job."""
    export = data_export.request_export(db.session, current_user, utcnow())
    db.session.commit()
    flash(_("Your data is ready to download.") if export.status == "ready" else
          _("We are preparing your data. We will send you an e-mail when it is ready."))
    return redirect(url_for("account_data.page"))


@bp.get("/account/data/<int:export_id>/download")
@login_required
def download(export_id: int):
    """The file, if it is the signed-in person's, ready and not expired; else 404."""
    try:
        export = data_export.download(db.session, current_user, export_id, utcnow())
    except data_export.ExportNotFound:
        abort(404)
    response = make_response(export.content)
    response.mimetype = "application/json"
    response.charset = "utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="upss-data-{export.ready_at.date().isoformat()}.json"')
    response.headers["Cache-Control"] = "no-store"
    return response
