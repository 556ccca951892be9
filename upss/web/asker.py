"""The asker's pages: ask a question, see one's questions and a question's page, and decide on
its answer (accept, ask for a clarification, reject, rate, tip, withdraw); the receipt.
Paying for a question or a tip is ``paying``."""

from __future__ import annotations

from decimal import Decimal
from functools import wraps

from babel.numbers import format_decimal
from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from .. import access, lists, money, payments, questions, settings
from ..extensions import db, limiter
from ..models import LANGUAGE_NAMES, Question, Tip, utcnow
from ..payments import GatewayError
from . import limits
from .display import STATUS_LABELS, TOPIC_NAMES, money_text, reader_locale
from .inputs import Form, strip_whitespace

bp = Blueprint("asker", __name__)

PAYMENT_UNAVAILABLE = _l("We could not reach the payment service. Nothing was charged. "
                         "Please try again in a few minutes.")

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


def own_question(question_id: int) -> Question:
    """The signed-in asker's own question; 404 for any other (``access.visible_to``)."""
    question = db.session.get(Question, question_id)
    if question is None:
        abort(404)
    if not access.visible_to(db.session, question, current_user, as_="asker"):
        abort(404)  # do not reveal that someone else's question exists
    return question


def to_question(q: Question):
    """Back to the question's page."""
    return redirect(url_for("asker.question", question_id=q.id))


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
            return redirect(url_for("paying.pay", question_id=question.id))
    return render_template("asker/ask.html", form=form, bounds=bounds), (
        400 if form.errors else 200)


@bp.get("/questions")
@login_required
def my_questions():
    """The questions the signed-in asker has asked, newest first (a page at a time)."""
    return render_template("asker/questions.html", page=lists.asker_questions(
        db.session, current_user, request.args.get("before")))


def _page_forms(q: Question) -> dict[str, Form]:
    """The forms of a question's page, by name; each has its own prefix, so its field ids are
    unique on the page."""
    return {"clarify_form": ClarifyForm(prefix="c"), "reject_form": RejectForm(prefix="r"),
            "rate_form": RateForm(prefix="s"), "tip_form": TipForm(q.currency, prefix="t")}


def _panel_context(q: Question) -> dict:
    """What the status panel (``asker/_question_panel.html``) shows: the question, and the
    actions the one rule (``access.allowed_actions``) allows the signed-in asker now."""
    return {"question": q, "actions": access.allowed_actions(db.session, q, current_user),
            "language_name": LANGUAGE_NAMES.get(q.language, q.language),
            "topic_name": TOPIC_NAMES.get(q.topic, q.topic)}


def _render_question(q: Question, status: int = 200, **forms):
    tips = db.session.scalars(select(Tip).where(Tip.question_id == q.id).order_by(Tip.id)).all()
    return render_template("asker/question.html", **_panel_context(q),
                           tip_min=payments.TIP_MIN_CENTS, tip_max=payments.TIP_MAX_CENTS,
                           tips=tips, **{**_page_forms(q), **forms}), status


def page_form(name: str):
    """A view decorator for the form ``name`` of a question's page (``_page_forms``): the view
    is called with the asker's own question and the form as posted, once it is valid; an
    invalid form shows the page again with its errors (400)."""
    def decorator(view):
        @wraps(view)
        def wrapped(question_id: int):
            q = own_question(question_id)
            form = _page_forms(q)[name]
            if not form.validate():
                return _render_question(q, 400, **{name: form})
            return view(q, form)
        return wrapped
    return decorator


@bp.get("/questions/<int:question_id>")
@login_required
def question(question_id: int):
    """The question's status for its asker, and what they can do next."""
    return _render_question(own_question(question_id))


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
    return to_question(q)


@bp.post("/questions/<int:question_id>/accept")
@login_required
def accept(question_id: int):
    """Accept the answer: the answerer is paid their share."""
    return _act(own_question(question_id), questions.accept, action="accept",
                done=_("Thank you. The answer is accepted and the answerer will be paid."))


@bp.post("/questions/<int:question_id>/clarify")
@login_required
@limiter.limit(limits.configured("MESSAGE"), key_func=limits.user_or_address)
@page_form("clarify_form")
def clarify(q: Question, form: ClarifyForm):
    """Ask the answerer to explain more."""
    return _act(q, questions.ask_clarification, form.message.data, action="ask_clarification",
                done=_("Your message has been sent to the answerer."))


@bp.post("/questions/<int:question_id>/reject")
@login_required
@limiter.limit(limits.configured("MESSAGE"), key_func=limits.user_or_address)
@page_form("reject_form")
def reject(q: Question, form: RejectForm):
    """Reject the answer; the organizer reviews it."""
    return _act(q, questions.reject, form.reason.data, action="reject",
                done=_("The organizer will review the answer and decide."))


@bp.post("/questions/<int:question_id>/rate")
@login_required
@limiter.limit(limits.configured("MESSAGE"), key_func=limits.user_or_address)
@page_form("rate_form")
def rate(q: Question, form: RateForm):
    """Rate a closed question's answer."""
    try:
        questions.rate(db.session, q, current_user, form.stars.data, form.comment.data)
    except questions.QuestionError:
        db.session.rollback()
        abort(409)
    db.session.commit()
    flash(_("Thank you for your rating."))
    return to_question(q)


@bp.post("/questions/<int:question_id>/tip")
@login_required
@limiter.limit(limits.configured("PAY"), key_func=limits.user_or_address)
@page_form("tip_form")
def tip(q: Question, form: TipForm):
    """Start a tip: 100 % of it goes to the answerer. It is paid on its own pay page."""
    try:
        new_tip = payments.start_tip(db.session, q, current_user, form.cents)
    except payments.InvalidTip:
        db.session.rollback()
        abort(409)
    except GatewayError:
        db.session.rollback()
        flash(PAYMENT_UNAVAILABLE, "error")
        return to_question(q)
    db.session.commit()
    return redirect(url_for("paying.pay_tip", tip_id=new_tip.id))


@bp.post("/questions/<int:question_id>/cancel")
@login_required
def cancel(question_id: int):
    """Withdraw a paid question that is still waiting, with a full refund."""
    return _act(own_question(question_id), payments.cancel, action="cancel",
                done=_("Your question is withdrawn and your money is being refunded."))


@bp.get("/questions/<int:question_id>/receipt")
@login_required
def receipt(question_id: int):
    """An itemised receipt: price, the answerer's share, the commission."""
    q = own_question(question_id)
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
    """The status, for the question's page to follow without reloading: the status, its label,
    and ``html``, the page's status panel as the page itself would show it now."""
    q = own_question(question_id)
    return jsonify(status=q.status, label=str(STATUS_LABELS[q.status]),
                   payment_error=q.payment_error or "",
                   html=render_template("asker/_question_panel.html", **_panel_context(q)))

