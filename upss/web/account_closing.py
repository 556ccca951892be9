"""Delete my account: the page that says in plain words what deleting means for this person
(``account_deletion.what_happens``), asks for the current password, and, once asked, signs
the person out and says when it will happen and that signing in before then cancels it."""

from __future__ import annotations

from flask import Blueprint, render_template, session
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, logout_user
from wtforms import PasswordField
from wtforms.validators import InputRequired

from .. import account_deletion
from ..extensions import db
from ..models import utcnow
from .display import person_name
from .inputs import Form

bp = Blueprint("account_closing", __name__)

#: What each refusal of ``account_deletion.DeletionError`` says, by its code.
REFUSALS = {
    "wrong_password": _l("The password is not right. Enter the password you sign in with."),
    "organizer": _l("An organizer's account cannot be deleted here. Ask another organizer to "
                    "remove your organizer role first, so the site is never left without one."),
    "already_deleted": _l("This account is already deleted."),
}


#: What becomes of a question in progress, by ``account_deletion`` outcome code.
OUTCOMES = {
    "refunded": _l("Nobody is working on it yet: it is withdrawn now and refunded in full."),
    "answered_or_refunded": _l("An answerer is working on it: they answer it, or it is refunded "
                               "in full at its deadline, as usual. You will not be able to read "
                               "the answer."),
    "auto_accepted": _l("Its answer is accepted for you automatically after the usual days, so "
                        "the answerer is paid for the work."),
    "organizer_decides": _l("The organizer decides about it, as usual."),
    "refunded_if_paid": _l("If the payment still goes through and nobody has taken the "
                           "question by the time your account is deleted, it is refunded in "
                           "full; otherwise it is answered or refunded as usual."),
    "stays_unpaid": _l("It was never paid: it stays unsent."),
    "back_to_queue": _l("It goes back to the queue now, for another answerer. Your saved draft "
                        "is deleted with your account."),
}


class DeleteAccountForm(Form):
    password = PasswordField(_l("Your password"), validators=[
        InputRequired(_l("Enter your password"))])


@bp.app_template_global("person_name")
def _person_name(user) -> str:
    """``person_name(user)`` for every template (see ``display.person_name``)."""
    return person_name(user)


def _page(form: DeleteAccountForm, status: int = 200):
    plan = account_deletion.what_happens(db.session, current_user, utcnow())
    return render_template("account/delete.html", form=form, plan=plan,
                           outcomes=OUTCOMES), status


@bp.get("/account/delete")
@login_required
def page():
    """What deleting the account means now, and the form that asks for it."""
    return _page(DeleteAccountForm())


@bp.post("/account/delete")
@login_required
def delete():
    """Ask for the deletion with the current password; on success the person is signed out
    (every session ended) and sees when it will happen."""
    form = DeleteAccountForm()
    if not form.validate_on_submit():
        return _page(form, 400)
    try:
        account_deletion.request_deletion(db.session, current_user, form.password.data,
                                          utcnow())
    except account_deletion.DeletionError as refused:
        db.session.rollback()
        form.password.errors.append(str(REFUSALS[refused.code]))
        return _page(form, 400)
    when = account_deletion.erase_after(current_user)
    db.session.commit()
    logout_user()
    session.clear()
    return render_template("account/deletion_scheduled.html", when=when,
                           title=_("Your account will be deleted"))
