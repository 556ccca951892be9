"""Home page, the help page, the language chosen at the foot of every page, and the browser's
``/favicon.ico``."""

from datetime import timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired

from .. import accounts
from ..config import LANGUAGE_COOKIE
from ..extensions import db
from ..models import LANGUAGE_NAMES
from .auth import safe_next
from .inputs import Form

bp = Blueprint("main", __name__)

#: How long the browser keeps that choice.
LANGUAGE_COOKIE_MAX_AGE = timedelta(days=365)


class LanguageForm(Form):
    locale = SelectField(_l("Language"), validators=[InputRequired()], choices=[
        SelectChoice(code, name) for code, name in LANGUAGE_NAMES.items()])


@bp.get("/")
def home():
    """What UPSS is, and where to start."""
    return render_template("main/home.html")


@bp.get("/help")
def help_page():
    """Short help: what UPSS is, asking and paying, answering and pay, refunds, accessibility,
    and how to reach the organizer."""
    return render_template("main/help.html",
                           contact_email=current_app.config["UPSS_CONTACT_EMAIL"])


@bp.post("/language")
def choose_language():
    """The language chosen at the foot of a page: remembered on this browser (a cookie) and,
    for a signed-in user, saved as their preference; then back to the same page."""
    form = LanguageForm()
    if not form.validate_on_submit():
        abort(400)
    if current_user.is_authenticated:
        accounts.update_preferences(db.session, current_user, locale=form.locale.data,
                                    large_text=current_user.large_text,
                                    high_contrast=current_user.high_contrast)
        db.session.commit()
    response = redirect(safe_next(url_for("main.home")))
    response.set_cookie(LANGUAGE_COOKIE, form.locale.data,
                        max_age=int(LANGUAGE_COOKIE_MAX_AGE.total_seconds()),
                        secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=True,
                        samesite="Lax")
    return response


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page links: send them to the SVG icon."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


def _this_page() -> str | None:
    """Where the language form leads back to: this page's address, if it can be opened again
    (a page shown after a POST only if the same address answers a GET)."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    try:
        current_app.url_map.bind("localhost").match(request.path, method="GET")
    except HTTPException:
        return None
    return request.path


@bp.app_context_processor
def language_choice():
    """For the foot of every page: the languages, each in its own name, and this page's
    address to come back to after choosing one."""
    return {"page_languages": LANGUAGE_NAMES, "language_next": _this_page()}
