"""Sign up, sign in, sign out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import refresh
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Email, EqualTo, InputRequired, Length

from .. import accounts
from ..extensions import db, limiter, login_manager
from ..models import User

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


class SignUpForm(FlaskForm):
    name = StringField(_l("Your name"), validators=[
        InputRequired(_l("Enter your name")),
        Length(max=100, message=_l("Your name must be 100 characters or fewer"))])
    email = EmailField(_l("E-mail address"), validators=[
        InputRequired(_l("Enter your e-mail address")),
        Length(max=254, message=_l("The e-mail address must be 254 characters or fewer")),
        Email(_l("Enter an e-mail address like name@example.com"), check_deliverability=False)])
    password = PasswordField(_l("Password"), validators=[
        InputRequired(_l("Enter a password")),
        Length(min=accounts.PASSWORD_MIN, max=accounts.PASSWORD_MAX,
               message=_l("The password must be between %(min)d and %(max)d characters",
                          min=accounts.PASSWORD_MIN, max=accounts.PASSWORD_MAX))])
    confirm = PasswordField(_l("Password again"), validators=[
        InputRequired(_l("Enter the password again")),
        EqualTo("password", _l("The two passwords are not the same"))])


class PreferencesForm(FlaskForm):
    locale = SelectField(_l("Language of the pages"), choices=[
        SelectChoice("", _l("The language of my browser")), SelectChoice("en", "English"),
        SelectChoice("nb", "Norsk bokmål"), SelectChoice("fi", "Suomi"),
        SelectChoice("sv", "Svenska"), SelectChoice("sl", "Slovenščina")])
    large_text = BooleanField(_l("Larger text"))
    high_contrast = BooleanField(_l("High contrast (light text on a black background)"))


class SignInForm(FlaskForm):
    email = EmailField(_l("E-mail address"), validators=[
        InputRequired(_l("Enter your e-mail address"))])
    password = PasswordField(_l("Password"), validators=[InputRequired(_l("Enter your password"))])


def _safe_next(default: str) -> str:
    target = request.args.get("next", "")
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and not parts.netloc:
        return target
    return default


@bp.route("/sign-up", methods=["GET", "POST"])
@limiter.limit("10 per minute; 50 per hour", methods=["POST"])
def sign_up():
    """Create an asker account and sign in."""
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            user = accounts.sign_up(db.session, email=form.email.data, name=form.name.data,
                                    password=form.password.data)
        except accounts.EmailTaken:
            form.email.errors.append(_("An account with this e-mail address already exists. "
                                       "Sign in instead."))
        else:
            db.session.commit()
            login_user(user)
            flash(_("Your account is ready."))
            return redirect(_safe_next(url_for("asker.ask")))
    return render_template("auth/sign_up.html", form=form), 400 if form.errors else 200


@bp.route("/sign-in", methods=["GET", "POST"])
@limiter.limit("10 per minute; 100 per hour", methods=["POST"])
def sign_in():
    """Sign in with e-mail and password."""
    form = SignInForm()
    failed = False
    if form.validate_on_submit():
        user = accounts.authenticate(db.session, form.email.data, form.password.data)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(url_for("asker.my_questions")))
        failed = True
    status = 400 if (form.errors or failed) else 200
    return render_template("auth/sign_in.html", form=form, failed=failed), status


@bp.post("/sign-out")
@login_required
def sign_out():
    """Sign out (a POST with a CSRF token, so no other site can sign you out)."""
    logout_user()
    flash(_("You have signed out."))
    return redirect(url_for("main.home"))


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
    return render_template("auth/preferences.html", form=form), 400 if form.errors else 200


@bp.app_context_processor
def signed_in_user():
    return {"user": current_user}
