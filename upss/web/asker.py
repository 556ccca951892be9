"""Asker pages: ask a question, pay for it, follow its status."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_decimal
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from .. import access, money, payments, questions, settings
from ..extensions import db, limiter
from ..models import LANGUAGE_NAMES, Question, Tip, utcnow
from ..payments import CardDeclined, GatewayError
from . import limits
from .display import STATUS_LABELS, TOPIC_NAMES, money_text, reader_locale
from .inputs import Form, strip_whitespace

bp = Blueprint("asker", __name__)

PAYMENT_UNAVAILABLE = _l("We could not reach the payment service. Nothing was charged. "
                         "Please try again in a few minutes.")
#: After a card payment was sent to Stripe and no answer came back: it may have gone through.
PAYMENT_UNCERTAIN = _l("The payment service did not answer in time, so we do not know yet "
                       "whether your card was charged. Please do not pay again: we are "
                       "checking with the payment service, and this page will show the result.")


def _choices(prompt, names: dict) -> list[SelectChoice]:
    return [SelectChoice("", prompt)] + [SelectChoice(k, v) for k, v in names.items()]


class QuestionForm(Form):
    title = StringField(_l("Title of your question"), filters=[strip_whitespace], validators=[
        DataRequired(_l("Enter a title for your question")),
        Length(max=questions.TITLE_MAX,
               message=_l("The title must be %(max)d characters or fewer",
                          max=questions.TITLE_MAX))])
    body = TextAreaField(_l("Your question"), filters=[strip_whitespace], validators=[
        DataRequired(_l("Enter your question")),
        Length(max=questions.BODY_MAX,
               message=_l("Your question must be %(max)d characters or fewer",
                          max=questions.BODY_MAX))])
    language = SelectField(
        _l("Language of the answer"),
        choices=_choices(_l("Choose a language"), LANGUAGE_NAMES),
        validate_choice=False,
        validators=[InputRequired(_l("Choose the language you want the answer in"))])
    topic = SelectField(
        _l("Topic"), choices=_choices(_l("Choose a topic"), TOPIC_NAMES),
        validate_choice=False, validators=[InputRequired(_l("Choose a topic"))])
    price = StringField(_l("Price you will pay"), validators=[
        InputRequired(_l("Enter the price you will pay"))])

    def __init__(self, bounds: settings.Settings, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bounds = bounds
        self.price_cents: int | None = None

    def validate_language(self, field):
        if field.data not in LANGUAGE_NAMES:
            raise ValidationError(_("Choose one of the languages in the list"))

    def validate_topic(self, field):
        if field.data not in TOPIC_NAMES:
            raise ValidationError(_("Choose one of the topics in the list"))

    def validate_price(self, field):
        try:
            cents = money.parse_amount(field.data, self.bounds.currency)
        except ValueError:
            raise ValidationError(_("Enter the price as a number, like 12.50")) from None
        if not self.bounds.price_min_cents <= cents <= self.bounds.price_max_cents:
            raise ValidationError(_("The price must be between %(min)s and %(max)s",
                                    min=self.price_text(self.bounds.price_min_cents),
                                    max=self.price_text(self.bounds.price_max_cents)))
        self.price_cents = cents

    def price_text(self, cents: int) -> str:
        return money_text(cents, self.bounds.currency)


class ClarifyForm(Form):
    message = TextAreaField(
        _l("What should the answerer explain?"), filters=[strip_whitespace], validators=[
            DataRequired(_l("Write what you would like explained")),
            Length(max=questions.MESSAGE_MAX, message=_l(
                "Your message must be %(max)d characters or fewer",
                max=questions.MESSAGE_MAX))])


class RejectForm(Form):
    reason = TextAreaField(_l("Why does the answer not help you?"), filters=[strip_whitespace],
                           validators=[
        DataRequired(_l("Tell us why you are rejecting the answer")),
        Length(max=questions.MESSAGE_MAX, message=_l(
            "The reason must be %(max)d characters or fewer", max=questions.MESSAGE_MAX))])


class RateForm(Form):
    stars = RadioField(_l("How helpful was the answer?"), coerce=int, choices=[
        SelectChoice(5, _l("5 – very helpful")), SelectChoice(4, _l("4 – helpful")),
        SelectChoice(3, _l("3 – somewhat helpful")), SelectChoice(2, _l("2 – not very helpful")),
        SelectChoice(1, _l("1 – not helpful"))],
        validators=[InputRequired(_l("Choose how helpful the answer was"))])
    comment = TextAreaField(_l("Comment (optional)"), filters=[strip_whitespace], validators=[
        Length(max=questions.MESSAGE_MAX, message=_l(
            "The comment must be %(max)d characters or fewer", max=questions.MESSAGE_MAX))])


class TestPaymentForm(Form):
    scenario = RadioField(
        _l("Which test payment?"),
        choices=[SelectChoice("succeeds", _l("The card succeeds")),
                 SelectChoice("declined", _l("The card is declined")),
                 SelectChoice("three_d_secure", _l("The card needs 3-D Secure authentication"))],
        validators=[InputRequired(_l("Choose which test payment to make"))])


def _own_question(question_id: int) -> Question:
    question = db.session.get(Question, question_id)
    if question is None:
        abort(404)
    if not access.visible_to(db.session, question, current_user, as_="asker"):
        abort(404)  # do not reveal that someone else's question exists
    return question


@bp.route("/ask", methods=["GET", "POST"])
@login_required
@limiter.limit(limits.configured("ASK"), key_func=limits.user_or_address, methods=["POST"])
def ask():
    """Write a question and set its price; payment comes next."""
    bounds = settings.current(db.session)
    form = QuestionForm(bounds)
    if form.validate_on_submit():
        try:
            question = questions.create_question(
                db.session, current_user, title=form.title.data, body=form.body.data,
                language=form.language.data, topic=form.topic.data,
                price_cents=form.price_cents)
        except questions.InvalidQuestion as exc:  # the form checks the same rules first
            db.session.rollback()
            form[exc.field].errors.append(str(exc))
        else:
            db.session.commit()
            return redirect(url_for("asker.pay", question_id=question.id))
    return render_template("asker/ask.html", form=form, bounds=bounds), (
        400 if form.errors else 200)


@bp.get("/questions")
@login_required
def my_questions():
    """Every question the signed-in asker has asked, newest first."""
    rows = db.session.scalars(
        select(Question).where(Question.asker_id == current_user.id)
        .order_by(Question.id.desc())
    ).all()
    return render_template("asker/questions.html", questions=rows)


def _render_question(q: Question, status: int = 200, **forms):
    forms = {"clarify_form": ClarifyForm(prefix="c"), "reject_form": RejectForm(prefix="r"),
             "rate_form": RateForm(prefix="s"), "tip_form": TipForm(q.currency, prefix="t"),
             **forms}
    forms["tips"] = db.session.scalars(select(Tip).where(Tip.question_id == q.id)
                                       .order_by(Tip.id)).all()
    return render_template("asker/question.html", question=q,
                           actions=access.allowed_actions(db.session, q, current_user),
                           language_name=LANGUAGE_NAMES.get(q.language, q.language),
                           topic_name=TOPIC_NAMES.get(q.topic, q.topic),
                           tip_min=payments.TIP_MIN_CENTS, tip_max=payments.TIP_MAX_CENTS,
                           **forms), status


@bp.get("/questions/<int:question_id>")
@login_required
def question(question_id: int):
    """The question's status for its asker, and what they can do next."""
    return _render_question(_own_question(question_id))


def _act(q: Question, fn, *args, action: str, done: str):
    """Run a question service for the asker, commit, and come back to the question.

    If the question has moved on because this asker's own identical request got there
    first (a double click, a second tab), the answer is the same "done" page, not an error.
    """
    try:
        fn(db.session, q, current_user, *args, utcnow())
    except questions.InvalidTransition:
        db.session.rollback()
        if questions.already_done(db.session, q, action, current_user):
            flash(done)
        else:
            flash(_("That is not possible any more: the question has moved on."), "error")
    except GatewayError:
        db.session.rollback()
        flash(PAYMENT_UNAVAILABLE, "error")
    else:
        db.session.commit()
        flash(done)
    return redirect(url_for("asker.question", question_id=q.id))


@bp.post("/questions/<int:question_id>/accept")
@login_required
def accept(question_id: int):
    """Accept the answer: the answerer is paid their share."""
    return _act(_own_question(question_id), questions.accept, action="accept",
                done=_("Thank you. The answer is accepted and the answerer will be paid."))


@bp.post("/questions/<int:question_id>/clarify")
@login_required
@limiter.limit(limits.configured("MESSAGE"), key_func=limits.user_or_address)
def clarify(question_id: int):
    """Ask the answerer to explain more."""
    q = _own_question(question_id)
    form = ClarifyForm(prefix="c")
    if not form.validate():
        return _render_question(q, 400, clarify_form=form)
    return _act(q, questions.ask_clarification, form.message.data, action="ask_clarification",
                done=_("Your message has been sent to the answerer."))


@bp.post("/questions/<int:question_id>/reject")
@login_required
@limiter.limit(limits.configured("MESSAGE"), key_func=limits.user_or_address)
def reject(question_id: int):
    """Reject the answer; the organizer reviews it."""
    q = _own_question(question_id)
    form = RejectForm(prefix="r")
    if not form.validate():
        return _render_question(q, 400, reject_form=form)
    return _act(q, questions.reject, form.reason.data, action="reject",
                done=_("The organizer will review the answer and decide."))


@bp.post("/questions/<int:question_id>/rate")
@login_required
@limiter.limit(limits.configured("MESSAGE"), key_func=limits.user_or_address)
def rate(question_id: int):
    """Rate a closed question's answer."""
    q = _own_question(question_id)
    form = RateForm(prefix="s")
    if not form.validate():
        return _render_question(q, 400, rate_form=form)
    try:
        questions.rate(db.session, q, current_user, form.stars.data, form.comment.data)
    except questions.QuestionError:
        db.session.rollback()
        abort(409)
    db.session.commit()
    flash(_("Thank you for your rating."))
    return redirect(url_for("asker.question", question_id=q.id))


@bp.post("/questions/<int:question_id>/cancel")
@login_required
def cancel(question_id: int):
    """Withdraw a paid question that is still waiting, with a full refund."""
    return _act(_own_question(question_id), payments.cancel, action="cancel",
                done=_("Your question is withdrawn and your money is being refunded."))


@bp.get("/questions/<int:question_id>/receipt")
@login_required
def receipt(question_id: int):
    """An itemised receipt: price, the answerer's share, the commission."""
    q = _own_question(question_id)
    if q.paid_at is None:
        abort(404)
    split = payments.receipt(db.session, q)
    rate = (Decimal(q.commission_bps) / 100).normalize()
    return render_template("asker/receipt.html", question=q, payout=split.payout_cents,
                           commission=split.commission_cents, tips=split.tips,
                           rate=format_decimal(rate, locale=reader_locale()) + " %")


@bp.get("/questions/<int:question_id>/status.json")
@login_required
def question_status(question_id: int):
    """The status, for the status page to follow without reloading."""
    q = _own_question(question_id)
    return jsonify(status=q.status, label=str(STATUS_LABELS[q.status]),
                   payment_error=q.payment_error or "")


@bp.get("/questions/<int:question_id>/pay")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
def pay(question_id: int):
    """Pay for a question: Stripe's card form, or the test-mode panel on localstripe."""
    q = _own_question(question_id)
    if q.status not in ("draft", "awaiting_payment"):
        return redirect(url_for("asker.question", question_id=q.id))
    try:
        intent = payments.payment_for(db.session, q, current_user)
    except payments.AlreadyPaid:  # paid in another tab meanwhile
        db.session.rollback()
        return redirect(url_for("asker.question", question_id=q.id))
    except GatewayError:
        db.session.rollback()
        return render_template("asker/pay_unavailable.html", question=q,
                               message=PAYMENT_UNAVAILABLE), 503
    db.session.commit()
    if q.status != "awaiting_payment" or intent.status in payments.PAID_OR_PAYING:
        return redirect(url_for("asker.question", question_id=q.id))
    return _pay_page(q, intent, TestPaymentForm())


def _pay_page(q: Question, intent, form, status: int = 200, tip: Tip | None = None):
    """The pay page, for a question or for a tip on it."""
    stripe = payments.checkout_settings()
    if tip is None:
        urls = {"test_url": url_for("asker.pay_test", question_id=q.id),
                "return_url": url_for("asker.question", question_id=q.id)}
        what = {"heading": _("Pay for your question"), "amount_cents": q.price_cents,
                "payment_error": q.payment_error}
    else:
        urls = {"test_url": url_for("asker.pay_tip_test", tip_id=tip.id),
                "return_url": url_for("asker.question", question_id=q.id)}
        what = {"heading": _("Pay your tip"), "amount_cents": tip.amount_cents,
                "payment_error": None}
    return render_template("asker/pay.html", question=q, intent=intent, form=form,
                           test_panel=stripe.test_panel_allowed, stripe=stripe,
                           **urls, **what), status


def _authenticate_page(q: Question, intent, retry_url: str):
    return render_template("asker/authenticate.html", question=q, intent=intent,
                           stripe=payments.checkout_settings(), retry_url=retry_url,
                           return_url=url_for("asker.question", question_id=q.id))


@bp.post("/questions/<int:question_id>/pay/test")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
def pay_test(question_id: int):
    """Test mode: pay with a Stripe test card. Refused unless on localstripe without a live key."""
    if not payments.checkout_settings().test_panel_allowed:
        abort(404)
    q = _own_question(question_id)
    if q.status not in ("draft", "awaiting_payment"):
        return redirect(url_for("asker.question", question_id=q.id))
    form = TestPaymentForm()
    if not form.validate_on_submit():
        intent = payments.payment_for(db.session, q, current_user)
        db.session.commit()
        return _pay_page(q, intent, form, 400)
    try:
        intent = payments.pay_with_test_card(db.session, q, current_user, form.scenario.data)
    except payments.AlreadyPaid:  # a double click: the first click paid
        db.session.rollback()
        return redirect(url_for("asker.question", question_id=q.id))
    except CardDeclined:
        db.session.commit()  # keep the recorded reason
        flash(_("Your card was declined. No money was taken. You can try again."), "error")
        return redirect(url_for("asker.pay", question_id=q.id))
    except GatewayError as exc:
        db.session.rollback()
        if exc.outcome_unknown and q.status != "draft":
            flash(PAYMENT_UNCERTAIN, "error")
            return redirect(url_for("asker.question", question_id=q.id))
        return render_template("asker/pay_unavailable.html", question=q,
                               message=PAYMENT_UNAVAILABLE), 503
    db.session.commit()
    if intent.status == "requires_action":
        return _authenticate_page(q, intent, url_for("asker.pay", question_id=q.id))
    return redirect(url_for("asker.question", question_id=q.id))


class TipForm(Form):
    amount = StringField(_l("Tip amount"), validators=[InputRequired(_l("Enter the tip amount"))])

    def __init__(self, currency: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.cents: int | None = None

    def validate_amount(self, field):
        try:
            self.cents = money.parse_amount(field.data, self.currency)
        except ValueError:
            raise ValidationError(_("Enter the tip as a number, like 2.50")) from None
        if not payments.TIP_MIN_CENTS <= self.cents <= payments.TIP_MAX_CENTS:
            raise ValidationError(_(
                "A tip must be between %(min)s and %(max)s",
                min=money_text(payments.TIP_MIN_CENTS, self.currency),
                max=money_text(payments.TIP_MAX_CENTS, self.currency)))


@bp.post("/questions/<int:question_id>/tip")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
def tip(question_id: int):
    """Start a tip: 100 % of it goes to the answerer."""
    q = _own_question(question_id)
    form = TipForm(q.currency, prefix="t")
    if not form.validate():
        return _render_question(q, 400, tip_form=form)
    try:
        new_tip = payments.start_tip(db.session, q, current_user, form.cents)
    except payments.InvalidTip:
        db.session.rollback()
        abort(409)
    except GatewayError:
        db.session.rollback()
        flash(PAYMENT_UNAVAILABLE, "error")
        return redirect(url_for("asker.question", question_id=q.id))
    db.session.commit()
    return redirect(url_for("asker.pay_tip", tip_id=new_tip.id))


def _own_tip(tip_id: int) -> tuple[Tip, Question]:
    found = db.session.get(Tip, tip_id)
    if found is None:
        abort(404)
    return found, _own_question(found.question_id)


@bp.get("/tips/<int:tip_id>/pay")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
def pay_tip(tip_id: int):
    """Pay a tip (Stripe's card form, or the test panel)."""
    t, q = _own_tip(tip_id)
    if t.status != "awaiting_payment":
        return redirect(url_for("asker.question", question_id=q.id))
    try:
        intent = payments.tip_payment_intent(t)
    except GatewayError:
        return render_template("asker/pay_unavailable.html", question=q,
                               message=PAYMENT_UNAVAILABLE), 503
    return _pay_page(q, intent, TestPaymentForm(), tip=t)


@bp.post("/tips/<int:tip_id>/pay/test")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
def pay_tip_test(tip_id: int):
    """Test mode: pay a tip with a Stripe test card."""
    if not payments.checkout_settings().test_panel_allowed:
        abort(404)
    t, q = _own_tip(tip_id)
    form = TestPaymentForm()
    if t.status != "awaiting_payment":
        return redirect(url_for("asker.question", question_id=q.id))
    if not form.validate_on_submit():
        return _pay_page(q, payments.tip_payment_intent(t), form, 400, tip=t)
    try:
        intent = payments.pay_tip_with_test_card(db.session, t, form.scenario.data)
    except CardDeclined:
        db.session.commit()
        flash(_("Your card was declined. No money was taken. You can start a new tip."),
              "error")
        return redirect(url_for("asker.question", question_id=q.id))
    except GatewayError:
        return render_template("asker/pay_unavailable.html", question=q,
                               message=PAYMENT_UNAVAILABLE), 503
    db.session.commit()
    if intent.status == "requires_action":
        return _authenticate_page(q, intent, url_for("asker.pay_tip", tip_id=t.id))
    flash(_("Thank you! Your tip is on its way to the answerer."))
    return redirect(url_for("asker.question", question_id=q.id))

