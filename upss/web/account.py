"""Getting into one's account and changing how: confirming the address (and sending the link
again), forgetting the password (a one-hour, single-use link), changing the password and the
address. The rules are in ``upss.accounts``; these pages never say whether an address has an
account."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, logout_user
from wtforms import EmailField, PasswordField
from wtforms.validators import Email, EqualTo, InputRequired, Length

from .. import account_tokens, accounts
from ..extensions import db, limiter
from ..models import utcnow
from . import limits
from .auth import SESSION_TOKEN, password_rules, safe_next
from .inputs import Form

bp = Blueprint("account", __name__)


class EmailForm(Form):
    email = EmailField(_l("E-mail address"), validators=[
        InputRequired(_l("Enter your e-mail address")),
        Length(max=254, message=_l("The e-mail address must be 254 characters or fewer")),
        Email(_l("Enter an e-mail address like name@example.com"), check_deliverability=False)])


class NewPasswordForm(Form):
    password = PasswordField(_l("New password"), validators=[
        InputRequired(_l("Enter a new password")), password_rules])
    confirm = PasswordField(_l("New password again"), validators=[
        InputRequired(_l("Enter the new password again")),
        EqualTo("password", _l("The two passwords are not the same"))])


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField(_l("Current password"), validators=[
        InputRequired(_l("Enter your current password"))])


class ChangeEmailForm(EmailForm):
    password = PasswordField(_l("Your password"), validators=[
        InputRequired(_l("Enter your password"))])


def _message(title, paragraphs, status=200, link=None):
    """A page that only says something (sent, done, or why a link does not work)."""
    return render_template("account/message.html", title=title, paragraphs=paragraphs,
                           link=link), status


def _link_problem(exc: Exception, again_label, again_url):
    expired = isinstance(exc, account_tokens.ExpiredLink)
    return _message(
        _("This link has expired") if expired else _("This link does not work"),
        [_("Links in our e-mails work only for a while.") if expired else
         _("It may have been used already, or it was copied incompletely. Links work only "
           "once, and only for the address they were sent to.")],
        400, (again_label, again_url))


@bp.get("/confirm/<token>")
def confirm_email(token: str):
    """The link of the confirmation e-mail: the address is confirmed."""
    try:
        user = accounts.confirm_email(db.session, token, utcnow())
    except accounts.BadLink as exc:
        return _link_problem(exc, _("Sign in to get a new link"), url_for("auth.sign_in"))
    db.session.commit()
    if current_user.is_authenticated and current_user.id == user.id:
        flash(_("Thank you. Your e-mail address is confirmed."))
        return redirect(url_for("auth.preferences"))
    return _message(_("Your e-mail address is confirmed"),
                    [_("Thank you. You can sign in now.")],
                    link=(_("Sign in"), url_for("auth.sign_in")))


@bp.post("/account/confirm/send-again")
@login_required
def resend_confirmation():
    """Send the confirmation link again (the reminder at the top of each page)."""
    if accounts.resend_confirmation(db.session, current_user, utcnow()):
        db.session.commit()
        flash(_("We have sent the link again to %(email)s. It can take a few minutes to "
                "arrive; look in the spam folder too.", email=current_user.email))
    return redirect(safe_next(url_for("auth.preferences")))


@bp.route("/forgot-password", methods=["GET", "POST"])
@limiter.limit(limits.configured("RESET_PASSWORD"), key_func=limits.client_address,
               methods=["POST"])
@limiter.limit(limits.configured("RESET_PASSWORD_ACCOUNT"), key_func=limits.account_tried,
               methods=["POST"])
def forgot_password():
    """Ask for a link to choose a new password; the same answer whether or not an account
    has the address."""
    form = EmailForm()
    if form.validate_on_submit():
        accounts.request_password_reset(db.session, form.email.data, utcnow())
        db.session.commit()
        return _message(_("Check your e-mail"), [
            _("If an account uses %(email)s, we have sent a link to it for choosing a new "
              "password. The link works for one hour.", email=form.email.data.strip()),
            _("It can take a few minutes to arrive. Look in the spam folder too. If nothing "
              "comes, check the address and try again.")])
    return render_template("account/forgot_password.html", form=form), \
        400 if form.errors else 200


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Choose a new password with the link from the e-mail; every session ends."""
    again = (_("Ask for a new link"), url_for("account.forgot_password"))
    try:
        accounts.user_for_reset(db.session, token)
    except accounts.BadLink as exc:
        return _link_problem(exc, *again)
    form = NewPasswordForm()
    if form.validate_on_submit():
        accounts.reset_password(db.session, token, form.password.data, utcnow())
        db.session.commit()
        logout_user()
        session.clear()
        flash(_("Your new password is saved, and you were signed out everywhere. Sign in "
                "with the new password."))
        return redirect(url_for("auth.sign_in"))
    return render_template("account/reset_password.html", form=form), \
        400 if form.errors else 200


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change the password (the current one is needed); other devices are signed out."""
    form = ChangePasswordForm()
    wrong = False
    if form.validate_on_submit():
        try:
            accounts.change_password(db.session, current_user, form.current.data,
                                     form.password.data, session.get(SESSION_TOKEN), utcnow())
        except accounts.WrongPassword:
            form.current.errors = [_("This is not your current password")]
            wrong = True
        else:
            db.session.commit()
            flash(_("Your new password is saved. Other computers and phones where you were "
                    "signed in are signed out."))
            return redirect(url_for("auth.preferences"))
    return render_template("account/change_password.html", form=form), \
        400 if (form.errors or wrong) else 200


@bp.route("/account/email", methods=["GET", "POST"])
@login_required
def change_email():
    """Ask to use another address; it changes when the link sent there is opened."""
    form = ChangeEmailForm()
    failed = False
    if form.validate_on_submit():
        try:
            accounts.request_email_change(db.session, current_user, form.email.data,
                                          form.password.data, utcnow())
        except accounts.WrongPassword:
            form.password.errors = [_("This is not your password")]
            failed = True
        except accounts.SameEmail:
            form.email.errors = [_("This is already your e-mail address")]
            failed = True
        else:
            db.session.commit()
            flash(_("We have sent a link to %(email)s. Your address changes when you open "
                    "it. Until then, we keep writing to %(old)s.",
                    email=accounts.normalise_email(form.email.data), old=current_user.email))
            return redirect(url_for("auth.preferences"))
    return render_template("account/change_email.html", form=form), \
        400 if (form.errors or failed) else 200


@bp.get("/confirm-new-email/<token>")
def confirm_email_change(token: str):
    """The link sent to the new address: the account moves to it."""
    try:
        user = accounts.confirm_email_change(db.session, token, utcnow())
    except accounts.BadLink as exc:
        return _link_problem(exc, _("Sign in to ask again"), url_for("auth.sign_in"))
    except accounts.EmailTaken:
        return _message(_("This address is already used"), [
            _("Another account uses this e-mail address, so your account keeps its old "
              "one.")], 400, (_("Sign in"), url_for("auth.sign_in")))
    db.session.commit()
    return _message(_("Your e-mail address is changed"), [
        _("Your account now uses %(email)s.", email=user.email)],
        link=(_("Go to your account"), url_for("auth.preferences")))
