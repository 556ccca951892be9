"""Paying for a question or a tip: the pay page (Stripe's card form, or the test-card panel on
the local Stripe), the test-card payment, and 3-D Secure authentication."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired

from .. import payments
from ..extensions import db, limiter
from ..models import Question, Tip
from ..payments import CardDeclined, GatewayError
from . import limits
from .asker import PAYMENT_UNAVAILABLE, own_question, to_question
from .inputs import Form

bp = Blueprint("paying", __name__)

#: After a card payment was sent to Stripe and no answer came back: it may have gone through.
PAYMENT_UNCERTAIN = _l("The payment service did not answer in time, so we do not know yet "
                       "whether your card was charged. Please do not pay again: we are "
                       "checking with the payment service, and this page will show the result.")


class TestPaymentForm(Form):
    scenario = RadioField(
        _l("Which test payment?"),
        choices=[SelectChoice("succeeds", _l("The card succeeds")),
                 SelectChoice("declined", _l("The card is declined")),
                 SelectChoice("three_d_secure", _l("The card needs 3-D Secure authentication"))],
        validators=[InputRequired(_l("Choose which test payment to make"))])


def _own_tip(tip_id: int) -> tuple[Tip, Question]:
    found = db.session.get(Tip, tip_id)
    if found is None:
        abort(404)
    return found, own_question(found.question_id)


def _test_panel_only(view):
    """A view decorator: 404 unless the test-card panel is allowed (on the local Stripe, with
    no live key)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not payments.checkout_settings().test_panel_allowed:
            abort(404)
        return view(*args, **kwargs)
    return wrapped


def _unavailable(q: Question):
    return render_template("asker/pay_unavailable.html", question=q,
                           message=PAYMENT_UNAVAILABLE), 503


def _pay_page(q: Question, intent, form, status: int = 200, tip: Tip | None = None):
    """The pay page, for a question or for a tip on it."""
    stripe = payments.checkout_settings()
    if tip is None:
        what = {"test_url": url_for("paying.pay_test", question_id=q.id),
                "heading": _("Pay for your question"), "amount_cents": q.price_cents,
                "payment_error": q.payment_error}
    else:
        what = {"test_url": url_for("paying.pay_tip_test", tip_id=tip.id),
                "heading": _("Pay your tip"), "amount_cents": tip.amount_cents,
                "payment_error": None}
    return render_template("asker/pay.html", question=q, intent=intent, form=form,
                           test_panel=stripe.test_panel_allowed, stripe=stripe,
                           return_url=url_for("asker.question", question_id=q.id),
                           **what), status


def _authenticate_page(q: Question, intent, retry_url: str):
    return render_template("asker/authenticate.html", question=q, intent=intent,
                           stripe=payments.checkout_settings(), retry_url=retry_url,
                           return_url=url_for("asker.question", question_id=q.id))


@bp.get("/questions/<int:question_id>/pay")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
def pay(question_id: int):
    """Pay for a question: Stripe's card form, or the test-mode panel on localstripe."""
    q = own_question(question_id)
    if q.status not in ("draft", "awaiting_payment"):
        return to_question(q)
    try:
        intent = payments.payment_for(db.session, q, current_user)
    except payments.AlreadyPaid:  # paid in another tab meanwhile
        db.session.rollback()
        return to_question(q)
    except GatewayError:
        db.session.rollback()
        return _unavailable(q)
    db.session.commit()
    if q.status != "awaiting_payment" or intent.status in payments.PAID_OR_PAYING:
        return to_question(q)
    return _pay_page(q, intent, TestPaymentForm())


@bp.post("/questions/<int:question_id>/pay/test")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
@_test_panel_only
def pay_test(question_id: int):
    """Test mode: pay with a Stripe test card. Refused unless on localstripe without a live key."""
    q = own_question(question_id)
    if q.status not in ("draft", "awaiting_payment"):
        return to_question(q)
    form = TestPaymentForm()
    if not form.validate_on_submit():
        intent = payments.payment_for(db.session, q, current_user)
        db.session.commit()
        return _pay_page(q, intent, form, 400)
    try:
        intent = payments.pay_with_test_card(db.session, q, current_user, form.scenario.data)
    except payments.AlreadyPaid:  # a double click: the first click paid
        db.session.rollback()
        return to_question(q)
    except CardDeclined:
        db.session.commit()  # keep the recorded reason: the pay page shows it, once
        return redirect(url_for("paying.pay", question_id=q.id))
    except GatewayError as exc:
        db.session.rollback()
        if exc.outcome_unknown and q.status != "draft":
            flash(PAYMENT_UNCERTAIN, "error")
            return to_question(q)
        return _unavailable(q)
    db.session.commit()
    if intent.status == "requires_action":
        return _authenticate_page(q, intent, url_for("paying.pay", question_id=q.id))
    return to_question(q)


@bp.get("/tips/<int:tip_id>/pay")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
def pay_tip(tip_id: int):
    """Pay a tip (Stripe's card form, or the test panel)."""
    t, q = _own_tip(tip_id)
    if t.status != "awaiting_payment":
        return to_question(q)
    try:
        intent = payments.tip_payment_intent(t)
    except GatewayError:
        return _unavailable(q)
    return _pay_page(q, intent, TestPaymentForm(), tip=t)


@bp.post("/tips/<int:tip_id>/pay/test")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
@_test_panel_only
def pay_tip_test(tip_id: int):
    """Test mode: pay a tip with a Stripe test card."""
    t, q = _own_tip(tip_id)
    form = TestPaymentForm()
    if t.status != "awaiting_payment":
        return to_question(q)
    if not form.validate_on_submit():
        return _pay_page(q, payments.tip_payment_intent(t), form, 400, tip=t)
    try:
        intent = payments.pay_tip_with_test_card(db.session, t, form.scenario.data)
    except CardDeclined:
        db.session.commit()
        flash(_("Your card was declined. No money was taken. You can start a new tip."),
              "error")
        return to_question(q)
    except GatewayError:
        return _unavailable(q)
    db.session.commit()
    if intent.status == "requires_action":
        return _authenticate_page(q, intent, url_for("paying.pay_tip", tip_id=t.id))
    flash(_("Thank you! Your tip is on its way to the answerer."))
    return to_question(q)
