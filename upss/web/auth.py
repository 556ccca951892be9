"""Sign up, sign in, sign out (here and everywhere), and the account's preferences."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import refresh
from flask_login import current_user, login_required, login_user, logout_user
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Email, EqualTo, InputRequired, Length, ValidationError

from .. import access, account_deletion, accounts, notifications, sessions
from ..extensions import db, limiter, login_manager
from ..models import LANGUAGE_NAMES, User, utcnow
from . import limits
from .inputs import Form

bp = Blueprint("auth", __name__)

#: The key of the server-side session's token in Flask's signed session cookie.
SESSION_TOKEN = "upss_session"  # noqa: S105 - a key name, not a secret


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The signed-in user, if this browser's session is still live (``upss.sessions``)."""
    live, changed = sessions.check(db.session, session.get(SESSION_TOKEN), int(user_id),
                                   utcnow(), sessions.Lifetimes.from_config(current_app.config))
    g.upss_session_changed = changed
    if live is None:
        for key in (SESSION_TOKEN, "_user_id", "_fresh", "_id"):
            session.pop(key, None)
        return None
    return live.user


@bp.before_app_request
def check_session() -> None:
    """Check (and renew) the session before the view runs, so a view never finds its user
    signed out half-way, and the renewal is committed on its own."""
    if request.endpoint == "static" or "_user_id" not in session:
        return
    current_user._get_current_object()
    if g.pop("upss_session_changed", False):
        db.session.commit()


def _start_session(user: User) -> None:
    """Sign ``user`` in on this browser: a new server-side session and a fresh cookie."""
    token = sessions.start(db.session, user, utcnow())
    db.session.commit()
    session.clear()  # nothing from before signing in is carried into the new session
    session.permanent = True
    session[SESSION_TOKEN] = token
    login_user(user)


def password_rules(form, field) -> None:
    problem = accounts.password_problem(field.data or "")
    if problem:
        raise ValidationError(PASSWORD_PROBLEMS[problem])


#: What each password rule (``accounts.password_problem``) says to the person choosing one.
PASSWORD_PROBLEMS = {
    "length": _l("The password must be between %(min)d and %(max)d characters, not counting "
                 "spaces at the start or end", min=accounts.PASSWORD_MIN,
                 max=accounts.PASSWORD_MAX),
    "repeated": _l("The password cannot be one character repeated. Try a few words you will "
                   "remember"),
    "sequence": _l("The password cannot be a run of letters or numbers like abcdefghij or "
                   "1234567890. Try a few words you will remember"),
    "common": _l("This is one of the most common passwords, so it is easy to guess. Try a few "
                 "words you will remember"),
}


class SignUpForm(Form):
    name = StringField(_l("Your name"), validators=[
        InputRequired(_l("Enter your name")),
        Length(max=100, message=_l("Your name must be 100 characters or fewer"))])
    email = EmailField(_l("E-mail address"), validators=[
        InputRequired(_l("Enter your e-mail address")),
        Length(max=254, message=_l("The e-mail address must be 254 characters or fewer")),
        Email(_l("Enter an e-mail address like name@example.com"), check_deliverability=False)])
    password = PasswordField(_l("Password"), validators=[
        InputRequired(_l("Enter a password")), password_rules])
    confirm = PasswordField(_l("Password again"), validators=[
        InputRequired(_l("Enter the password again")),
        EqualTo("password", _l("The two passwords are not the same"))])


class PreferencesForm(Form):
    locale = SelectField(_l("Language of the pages"), choices=[
        SelectChoice("", _l("The language of my browser")),
        *(SelectChoice(code, name) for code, name in LANGUAGE_NAMES.items())])
    large_text = BooleanField(_l("Larger text"))
    high_contrast = BooleanField(_l("High contrast (light text on a black background)"))


class SignInForm(Form):
    email = EmailField(_l("E-mail address"), validators=[
        InputRequired(_l("Enter your e-mail address"))])
    password = PasswordField(_l("Password"), validators=[InputRequired(_l("Enter your password"))])


def safe_next(default: str | None) -> str | None:
    """The ``next`` of this request if it is a path on this site, else ``default``."""
    target = request.args.get("next", "")
    parts = urlsplit(target)
    if (target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not parts.netloc and not parts.scheme):
        return target
    return default


def start_page(user: User) -> str:
    """Where ``user`` lands after signing in: the organizer's overview, the answerer's queue,
    or (an asker, or anyone else) their questions."""
    if user.is_organizer:
        return url_for("organizer.overview")
    if user.is_answerer:
        return url_for("answerer.queue")
    return url_for("asker.my_questions")


@bp.route("/sign-up", methods=["GET", "POST"])
@limiter.limit(limits.configured("SIGN_UP"), key_func=limits.client_address, methods=["POST"])
def sign_up():
    """Create an asker account. The answer is the same whether or not the address already has
    an account (``accounts.register``): the e-mail sent to it says which."""
    form = SignUpForm()
    if form.validate_on_submit():
        accounts.register(db.session, email=form.email.data, name=form.name.data,
                          password=form.password.data, now=utcnow())
        db.session.commit()
        return render_template("auth/sign_up_sent.html",
                               email=accounts.normalise_email(form.email.data))
    return render_template("auth/sign_up.html", form=form), 400 if form.errors else 200


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(limits.configured("SIGN_IN"), key_func=limits.client_address, methods=["POST"])
@limiter.limit(limits.configured("SIGN_IN_ACCOUNT"), key_func=limits.account_tried,
               methods=["POST"], exempt_when=limits.is_known_device)
def sign_in():
    """Sign in with e-mail and password."""
    form = SignInForm()
    failed = False
    if form.validate_on_submit():
        user = accounts.authenticate(db.session, form.email.data, form.password.data)
        if user is not None:
            cancelled = account_deletion.cancel_on_sign_in(db.session, user, utcnow())
            _start_session(user)  # commits the cancellation with the new session
            if cancelled:
                flash(_("You signed in, so your account will not be deleted."))
            return limits.remember_device(
                redirect(safe_next(start_page(user))), user.email)
        failed = True
    status = 400 if (form.errors or failed) else 200
    return render_template("auth/sign_in.html", form=form, failed=failed), status


@bp.post("/sign-out")
@login_required
def sign_out():
    """Sign out (a POST with a CSRF token, so no other site can sign you out): this browser's
    session ends, so a copy of its cookie no longer works either."""
    sessions.end(db.session, session.get(SESSION_TOKEN), utcnow())
    db.session.commit()
    logout_user()
    session.clear()
    flash(_("You have signed out."))
    return redirect(url_for("main.home"))


@bp.post("/sign-out-everywhere")
@login_required
def sign_out_everywhere():
    """End every session of this account, on every device, this one included."""
    sessions.end_all(db.session, current_user, utcnow())
    db.session.commit()
    logout_user()
    session.clear()
    flash(_("You have signed out on every device. Sign in again to go on."))
    return redirect(url_for("auth.sign_in"))


@bp.route("/account/preferences", methods=["GET", "POST"])
@login_required
def preferences():
    """Language, larger text and high contrast, remembered for this account."""
    form = PreferencesForm(obj=current_user)
    if form.validate_on_submit():
        accounts.update_preferences(db.session, current_user, locale=form.locale.data,
                                    large_text=form.large_text.data,
                                    high_contrast=form.high_contrast.data)
        db.session.commit()
        refresh()  # the new language applies to this very response
        flash(_("Your preferences are saved."))
        return redirect(url_for("auth.preferences"))
    other_sessions = sessions.other_session_count(db.session, current_user,
                                                  session.get(SESSION_TOKEN))
    return render_template("auth/preferences.html", form=form, other_sessions=other_sessions,
                           failed_messages=notifications.failed_for(db.session, current_user)), \
        400 if form.errors else 200


@bp.app_context_processor
def signed_in_user():
    """``user`` for every template, and ``auth_next``: a safe ``next`` of this request, which
    the sign-in and sign-up links carry, so either way leads back to where the visitor was
    going (None: no ``next``). ``user`` is the loaded object, not the ``current_user`` proxy:
    a page reads it a dozen times, each read through the proxy a lookup of its own."""
    user = current_user._get_current_object()
    return {"user": user, "auth_next": safe_next(None),
            "needs_confirmation": access.needs_confirmation(user)}
