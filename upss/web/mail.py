"""The one-click unsubscribe link of messages (no sign-in) and, in development only, the page
showing what the local mail server received."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, render_template, request

from .. import devmail, mailer, notifications
from ..extensions import csrf, db

bp = Blueprint("mail", __name__)
#: Registered only outside production with UPSS_SMTP_URL on this machine (``register``).
dev_bp = Blueprint("devmail", __name__)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt  # the signed token is the proof; mail clients POST without a form token
def unsubscribe(token: str):
    """GET shows what would be turned off and a button (changes nothing); POST turns it off
    (also the RFC 8058 one-click POST a mail client sends)."""
    try:
        if request.method == "POST":
            kind = notifications.unsubscribe(db.session, token)
            db.session.commit()
            return render_template("mail/unsubscribe.html", kind=kind, done=True)
        choice = notifications.unsubscribe_choice(db.session, token)
        return render_template("mail/unsubscribe.html", kind=choice.kind, off=choice.off,
                               done=False)
    except notifications.NotOptional:
        return render_template("mail/unsubscribe_refused.html", not_optional=True), 400
    except notifications.BadToken:
        return render_template("mail/unsubscribe_refused.html", not_optional=False), 400


@dev_bp.get("/dev/mail")
def received():
    """Development only: the messages the local mail server (``make run``) received."""
    folder = Path(current_app.instance_path) / devmail.FOLDER_NAME
    return render_template("mail/devmail.html", mails=devmail.received(folder))


def register(app) -> None:
    app.register_blueprint(bp)
    if mailer.uses_local_dev_server(app.config):
        app.register_blueprint(dev_bp)
