"""Each person's messages on the site: the list (with the unread count in the header) and the
page of choices: per kind at once, in a daily summary or not by e-mail, the summary's hour,
and for answerers whether messages may come outside their available hours."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from wtforms import BooleanField, RadioField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired

from .. import notifications
from ..extensions import db
from ..models import utcnow
from .inputs import Form

bp = Blueprint("notices", __name__)

MODE_LABELS = {"now": _l("At once, by e-mail"), "digest": _l("In my daily summary e-mail"),
               "off": _l("Only here on the site")}
#: The headings of the page of choices, by who gets the kind.
GROUPS = (("asker", _l("About your questions")), ("answerer", _l("About answering")),
          ("organizer", _l("For the organizer")))
PER_PAGE = 20


def _choices_form(user, chosen: notifications.Choices) -> Form:
    """The form of choices for ``user``: one radio group per kind that has a choice."""

    class ChoicesForm(Form):
        digest_hour = SelectField(
            _l("Time of your daily summary"), coerce=int, default=chosen.digest_hour,
            choices=[SelectChoice(hour, f"{hour:02d}:00") for hour in range(24)])

    for kind in notifications.kinds_for(user):
        if len(kind.modes) > 1:
            setattr(ChoicesForm, f"kind_{kind.name}", RadioField(
                kind.label, default=chosen.modes[kind.name], validators=[DataRequired()],
                choices=[SelectChoice(mode, MODE_LABELS[mode]) for mode in kind.modes]))
    if chosen.outside_hours is not None:
        ChoicesForm.outside_hours = BooleanField(
            _l("Send e-mails outside my available hours too"), default=chosen.outside_hours)
    return ChoicesForm()


@bp.route("/account/messages", methods=["GET", "POST"])
@login_required
def choices():
    """How the signed-in person gets each kind of message."""
    chosen = notifications.choices(db.session, current_user)
    form = _choices_form(current_user, chosen)
    kinds = notifications.kinds_for(current_user)
    if form.validate_on_submit():
        notifications.save_choices(
            db.session, current_user,
            {kind.name: form[f"kind_{kind.name}"].data for kind in kinds
             if f"kind_{kind.name}" in form},
            form.digest_hour.data,
            form.outside_hours.data if "outside_hours" in form else None, utcnow())
        db.session.commit()
        flash(_("Your choices are saved."))
        return redirect(url_for("notices.choices"))
    groups = [(heading, [kind for kind in kinds if kind.recipient == role])
              for role, heading in GROUPS]
    return render_template("notices/choices.html", form=form,
                           groups=[(h, ks) for h, ks in groups if ks]), \
        400 if form.errors else 200


@bp.get("/messages")
@login_required
def messages():
    """The signed-in person's messages, newest first; showing them marks them read."""
    page = notifications.notices_page(db.session, current_user, request.args.get("before"),
                                      PER_PAGE)
    if page.items:
        notifications.mark_read(db.session, current_user.id,
                                range(page.items[-1].id, page.items[0].id + 1), utcnow())
        db.session.commit()
    return render_template("notices/messages.html", page=page)


@bp.app_template_filter("site_path")
def site_path(url: str) -> str:
    """A link of a message (absolute, for e-mail) as a path on this site."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@bp.app_context_processor
def unread_messages():
    """``unread_messages`` for the header's link, signed-in only: the count loaded with the
    user (``sessions.check``; SQLAlchemy counts again when it reloads the user after a
    commit, as the messages page's after marking them read), or counted now for a user
    loaded another way."""
    user = current_user._get_current_object()
    if not user.is_authenticated:
        return {"unread_messages": 0}
    loaded = user.unread_messages
    if loaded is not None:
        return {"unread_messages": loaded}
    return {"unread_messages": notifications.unread_count(db.session, user.id)}
