"""Home page, the help page, the language chosen at the foot of every page, and the browser's
``/favicon.ico``."""

from datetime import timedelta
from urllib.parse import urlsplit

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
from ..extensions import csrf, db
from ..models import LANGUAGE_NAMES
from .auth import safe_next
from .inputs import Form
from .page_cache import same_for_every_visitor

bp = Blueprint("main", __name__)

#: How long the browser keeps that choice.
LANGUAGE_COOKIE_MAX_AGE = timedelta(days=365)


class LanguageForm(Form):
    locale = SelectField(_l("Language"), validators=[InputRequired()], choices=[
        SelectChoice(code, name) for code, name in LANGUAGE_NAMES.items()])


@bp.get("/")
@same_for_every_visitor
def home():
    """What UPSS is, and where to start."""
    return render_template("main/home.html")


@bp.get("/help")
@same_for_every_visitor
def help_page():
    """Short help: what UPSS is, asking and paying, answering and pay, refunds, accessibility,
    and how to reach the organizer."""
    return render_template("main/help.html",
                           contact_email=current_app.config["UPSS_CONTACT_EMAIL"])


@bp.post("/language")
@csrf.exempt  # checked below: the token only for a signed-in user
def choose_language():
    """The language chosen at the foot of a page: remembered on this browser (a cookie) and,
    for a signed-in user, saved as their preference; then back to the same page.

    A signed-in user's form carries the CSRF token (the choice changes their account). A
    visitor's does not: it changes only this browser's cookie, and a form without a token
    keeps the pages a visitor reads free of a session (no cookie, the same page for every
    visitor in a language: ``page_cache``). A visitor's choice sent from another site
    (``Sec-Fetch-Site``, else ``Origin``) is refused all the same."""
    if current_user.is_authenticated:
        csrf.protect()
    elif not sent_from_this_site():
        abort(400)
    form = LanguageForm(meta={"csrf": False})
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


def sent_from_this_site() -> bool:
    """Whether the browser says this request comes from a page of this site: its
    ``Sec-Fetch-Site`` (every current browser sends it) is ``same-origin`` or ``none`` (typed
    or bookmarked), else its ``Origin`` names this host. A request that says neither (an old
    browser, a script) is taken: nothing but the sender's own cookie can change."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


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
    """For the foot of every page: the languages, each in its own name, this page's
    address to come back to after choosing one, and whether the form carries a token."""
    return {"page_languages": LANGUAGE_NAMES, "language_next": _this_page(),
            # The form's CSRF token: a signed-in user's only (``choose_language``).
            "language_token": current_user.is_authenticated}
