"""Answerer pages: the queue of offers and claims, picking up, answering, clarifying."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from .. import access, connect, lists, payouts, questions, settings, vetting
from .. import earnings as earnings_service
from ..extensions import db, limiter
from ..models import (
    LANGUAGE_NAMES,
    AnswererApplication,
    AnswererProfile,
    Payout,
    Question,
    utcnow,
)
from . import limits
from .display import TOPIC_NAMES, duration_text, money_text, until_text
from .inputs import (
    REFUSED_MESSAGE,
    Form,
    refused_fields,
    statement_cursor,
    statement_cursor_token,
    strip_whitespace,
)
from .roles import answerer_required
from .vetting_forms import ApplicationForm

bp = Blueprint("answerer", __name__, url_prefix="/answer")


SUSPENDED = _l("Your account is suspended, so you cannot pick up or send answers now. "
               "Anything you typed is kept as a draft.")

#: Why the answerer's time was not extended (``questions.EXTENSION_REFUSALS``).
EXTENSION_REFUSED = {
    "not_yours": _l("This question is no longer yours to answer, so there is no time to "
                    "extend."),
    "expired": _l("Your time to answer this question has already run out, so it cannot be "
                  "extended. Your text is kept as a draft."),
    "limit": _l("You have already had all the extra time this question allows."),
    "deadline": _l("The asker's deadline leaves no room for more time."),
    "changed": _l("Your time could not be extended just now. Check the time left and try "
                  "again."),
}

#: Only answerers; everyone else gets 403.


class AnswerForm(Form):
    answer = TextAreaField(_l("Your answer"), filters=[strip_whitespace], validators=[
        DataRequired(_l("Write your answer before sending it")),
        Length(max=questions.ANSWER_MAX, message=_l(
            "The answer must be %(max)d characters or fewer", max=questions.ANSWER_MAX))])


class ReplyForm(Form):
    reply = TextAreaField(_l("Your reply"), filters=[strip_whitespace], validators=[
        DataRequired(_l("Write your reply before sending it")),
        Length(max=questions.ANSWER_MAX, message=_l(
            "The reply must be %(max)d characters or fewer", max=questions.ANSWER_MAX))])


def _visible_question(question_id: int) -> Question:
    """A question this answerer may see (``access.visible_to``); 404 for any other."""
    question = db.session.get(Question, question_id)
    if question is None or not access.visible_to(db.session, question, current_user,
                                                 as_="answerer"):
        abort(404)
    return question


@bp.get("/queue")
@answerer_required
def queue():
    """Questions offered to me (with their expiry), those I am answering, those whose asker
    wants more detail and my saved drafts (the last two a page at a time, each with its own
    cursor: ``asked`` and ``drafts``)."""
    mine = lists.answerer_work(db.session, current_user)
    cursors = {"asked": request.args.get("asked"), "drafts": request.args.get("drafts")}
    return render_template(
        "answerer/queue.html",
        offered=[q for q in mine if q.status == "offered"],
        claimed=[q for q in mine if q.status == "claimed"],
        clarifying=lists.awaiting_clarification(db.session, current_user, cursors["asked"]),
        lapsed=lists.lapsed_drafts(db.session, current_user, cursors["drafts"]),
        cursors=cursors, share=_share)


def _share(question) -> str:
    """The answerer's share of the price, split at the question's frozen commission (a row
    of ``lists.answerer_work``)."""
    return money_text(questions.answerer_share(db.session, question), question.currency)


@bp.post("/questions/<int:question_id>/claim")
@answerer_required
@limiter.limit(limits.configured("CLAIM"), key_func=limits.user_or_address)
def claim(question_id: int):
    """Pick up a question offered to me."""
    question = _visible_question(question_id)
    try:
        questions.claim(db.session, question, current_user, utcnow())
    except questions.NotYourOffer:
        db.session.rollback()
        flash(_("This offer has run out, so the question has gone back to the queue."), "error")
        return redirect(url_for("answerer.queue"))
    except questions.Suspended:
        db.session.rollback()
        flash(SUSPENDED, "error")
        return redirect(url_for("answerer.queue"))
    except questions.InvalidTransition:
        db.session.rollback()
        if not questions.already_done(db.session, question, "claim", current_user):
            flash(_("This question is no longer offered to you."), "error")
            return redirect(url_for("answerer.queue"))
        # else a double click: the first won, and the question is this answerer's
    else:
        db.session.commit()
    flash(_("The question is yours to answer."))
    return redirect(url_for("answerer.question", question_id=question.id))


@bp.post("/questions/<int:question_id>/decline")
@answerer_required
@limiter.limit(limits.configured("CLAIM"), key_func=limits.user_or_address)
def decline(question_id: int):
    """Pass on an offer; it will not be offered to me again."""
    question = _visible_question(question_id)
    try:
        questions.decline(db.session, question, current_user, utcnow())
    except questions.QuestionError:
        db.session.rollback()
        flash(_("This question is no longer offered to you."), "error")
    else:
        db.session.commit()
        flash(_("You passed on the question. It will go to someone else."))
    return redirect(url_for("answerer.queue"))


@bp.route("/questions/<int:question_id>", methods=["GET", "POST"])
@answerer_required
@limiter.limit(limits.configured("MESSAGE"), key_func=limits.user_or_address, methods=["POST"])
def question(question_id: int):
    """Read the question and write (or reply to a clarification of) the answer."""
    q = _visible_question(question_id)
    form, reply_form = AnswerForm(prefix="a"), ReplyForm(prefix="r")
    status = 200
    if request.method == "POST" and request.form.get("action") == "save" and \
            form.answer.name in refused_fields():
        form.answer.errors = [REFUSED_MESSAGE]
        status = 400
    elif request.method == "POST" and request.form.get("action") == "save":
        questions.save_draft(db.session, q, current_user, request.form.get("a-answer", ""),
                             utcnow())
        db.session.commit()
        flash(_("Your draft is saved."))
        return redirect(url_for("answerer.question", question_id=q.id))
    if request.method == "POST" and request.form.get("action") == "send":
        if form.validate():
            try:
                questions.post_answer(db.session, q, current_user, form.answer.data, utcnow())
            except questions.Suspended:
                db.session.commit()  # keeps the text as a draft
                flash(SUSPENDED, "error")
                return redirect(url_for("answerer.question", question_id=q.id))
            except (questions.NotYourOffer, questions.InvalidTransition):
                db.session.commit()  # keeps the text as a draft
                if questions.already_done(db.session, q, "post_answer", current_user):
                    flash(_("Your answer has been sent. Thank you!"))  # a double click
                    return redirect(url_for("answerer.queue"))
                flash(_("The time to answer this question has run out, so it was not sent. "
                        "Your text is saved as a draft."), "error")
                return redirect(url_for("answerer.question", question_id=q.id))
            db.session.commit()
            flash(_("Your answer has been sent. Thank you!"))
            return redirect(url_for("answerer.queue"))
        status = 400
    if request.method == "POST" and request.form.get("action") == "reply":
        if reply_form.validate():
            try:
                questions.reply_clarification(db.session, q, current_user,
                                              reply_form.reply.data, utcnow())
            except questions.QuestionError:
                db.session.rollback()
                abort(409)
            db.session.commit()
            flash(_("Your reply has been sent."))
            return redirect(url_for("answerer.queue"))
        status = 400
    if not form.answer.data:
        form.answer.data = questions.draft_for(db.session, q, current_user)
    actions = access.allowed_actions(db.session, q, current_user)
    now = utcnow()
    lock = questions.lock_time_for(db.session, q, now) if "see_lock" in actions else None
    return render_template("answerer/question.html", question=q, form=form, actions=actions,
                           lock=lock, now=now, refusals=EXTENSION_REFUSED,
                           warn_seconds=int(questions.LOCK_WARNING.total_seconds()),
                           final_seconds=int(questions.LOCK_FINAL_WARNING.total_seconds()),
                           reply_form=reply_form, share=_share(q),
                           language_name=LANGUAGE_NAMES.get(q.language, q.language),
                           topic_name=TOPIC_NAMES.get(q.topic, q.topic)), status


@bp.post("/questions/<int:question_id>/extend")
@answerer_required
@limiter.limit(limits.configured("CLAIM"), key_func=limits.user_or_address)
def extend_lock(question_id: int):
    """More time to answer. The button is part of the answer form, so the text typed so far
    comes along: it is saved as the draft first, whatever happens to the request for time."""
    q = _visible_question(question_id)
    now = utcnow()
    typed = request.form.get("a-answer")
    if typed is not None and "a-answer" not in refused_fields():
        try:
            questions.save_draft(db.session, q, current_user, typed, now)
        except questions.NotYourOffer:
            pass
    before = q.lock_expires_at
    try:
        until = questions.extend_lock(db.session, q, current_user, now)
    except questions.Suspended:
        db.session.commit()  # keeps the draft
        flash(SUSPENDED, "error")
    except questions.LockNotExtended as refused:
        db.session.commit()  # keeps the draft; the refusal changed nothing else
        flash(EXTENSION_REFUSED[refused.reason], "error")
    else:
        db.session.commit()
        flash(_("You have %(extra)s more. The question is yours until %(time)s.",
                extra=duration_text(until - before), time=until_text(until, now)))
    return redirect(url_for("answerer.question", question_id=q.id))


@bp.post("/questions/<int:question_id>/draft")
@answerer_required
def save_draft(question_id: int):
    """Autosave from the answer page: the text typed so far."""
    q = _visible_question(question_id)
    if "answer" in refused_fields():
        return jsonify(error=str(REFUSED_MESSAGE)), 400
    draft = questions.save_draft(db.session, q, current_user,
                                 request.form.get("answer", ""), utcnow())
    db.session.commit()
    return jsonify(saved_at=draft.updated_at.isoformat())


@bp.route("/apply", methods=["GET", "POST"])
@login_required
def apply():
    """Apply to become an answerer."""
    latest = db.session.scalar(
        select(AnswererApplication).where(AnswererApplication.user_id == current_user.id)
        .order_by(AnswererApplication.id.desc()).limit(1))
    if current_user.is_answerer or (latest and latest.status == "pending"):
        return redirect(url_for("answerer.application"))
    if not access.may_apply_to_answer(current_user):
        return render_template("answerer/apply_confirm_first.html"), 403
    currency = settings.current(db.session).currency
    form = ApplicationForm(currency)
    if form.validate_on_submit():
        data = vetting.ApplicationData(
            basis=form.basis.data, birth_year=form.birth_year.data,
            languages=tuple(form.languages.data), topics=tuple(form.topics.data or ()),
            available_from_minute=form.hours[0], available_until_minute=form.hours[1],
            daily_limit=form.daily_limit.data, yearly_ceiling_cents=form.ceiling_cents,
            payout_method=form.payout_method.data, iban=form.iban.data or None,
            account_holder=form.account_holder.data or None)
        try:
            vetting.apply(db.session, current_user, data, utcnow())
        except vetting.VettingError as exc:
            db.session.rollback()
            target = form._fields.get(exc.field or "", form.basis)
            target.errors = [*target.errors, str(exc)]
        else:
            db.session.commit()
            flash(_("Thank you. Your application has been sent. The organizer will contact "
                    "you."))
            return redirect(url_for("answerer.application"))
    return render_template("answerer/apply.html", form=form, currency=currency,
                           rejected=latest if latest and latest.status == "rejected" else None
                           ), 400 if form.errors else 200


@bp.get("/application")
@login_required
def application():
    """Where my application to answer stands."""
    latest = db.session.scalar(
        select(AnswererApplication).where(AnswererApplication.user_id == current_user.id)
        .order_by(AnswererApplication.id.desc()).limit(1))
    if latest is None and not current_user.is_answerer:
        return redirect(url_for("answerer.apply"))
    return render_template("answerer/application.html", application=latest)


@bp.get("/earnings")
@answerer_required
def earnings():
    """My statement: what I am owed, what was paid, and this year against my ceiling."""
    summary = earnings_service.summary(db.session, current_user, utcnow())
    statement = earnings_service.statement(
        db.session, current_user, after=statement_cursor(request.args.get("entries_after")),
        before=statement_cursor(request.args.get("entries_before")))
    my_payouts = lists.answerer_payouts(db.session, current_user, request.args.get("payouts"))
    profile = db.session.get(AnswererProfile, current_user.id)
    return render_template("answerer/earnings.html", summary=summary, statement=statement,
                           later=statement_cursor_token(statement and statement.next),
                           earlier=statement_cursor_token(statement and statement.previous),
                           payouts=my_payouts, profile=profile,
                           connect_state=connect.state(profile),
                           hold=payouts.holds(db.session, utcnow(), [current_user.id]).get(
                               current_user.id))


def _onboarding_redirect():
    """Send the answerer to Stripe's hosted onboarding (their account is made on first use)."""
    try:
        url = connect.onboarding_link(
            db.session, current_user,
            return_url=url_for("answerer.connect_return", _external=True),
            refresh_url=url_for("answerer.connect_refresh", _external=True))
    except connect.NotAConnectAnswerer:
        abort(404)
    except connect.GatewayError:
        db.session.rollback()
        flash(_("We could not reach Stripe. Nothing was changed; please try again in a few "
                "minutes."), "error")
        return redirect(url_for("answerer.earnings"))
    db.session.commit()
    return redirect(url)


@bp.post("/earnings/connect")
@answerer_required
def connect_start():
    """Set up (or continue setting up) payouts with Stripe."""
    return _onboarding_redirect()


@bp.get("/earnings/connect/refresh")
@answerer_required
def connect_refresh():
    """Stripe's link ran out before onboarding was finished: a new one."""
    return _onboarding_redirect()


@bp.get("/earnings/connect/return")
@answerer_required
def connect_return():
    """Back from Stripe's onboarding: ask Stripe how the account stands, and say so."""
    try:
        now_state = connect.refresh(db.session, current_user)
    except connect.NotAConnectAnswerer:
        abort(404)
    except connect.GatewayError:
        db.session.rollback()
        flash(_("We could not reach Stripe to check your account. It will show here once "
                "Stripe tells us."), "error")
        return redirect(url_for("answerer.earnings"))
    db.session.commit()
    if now_state == "payouts_enabled":
        flash(_("Payouts are enabled: your earnings will be paid to your Stripe account."))
    else:
        flash(_("Stripe still needs some details from you before we can pay you."), "error")
    return redirect(url_for("answerer.earnings"))


@bp.get("/payouts/<int:payout_id>")
@answerer_required
def payout(payout_id: int):
    """One of my payouts (nobody else's: another answerer's id gives 404)."""
    found = db.session.get(Payout, payout_id)
    if found is None or found.answerer_id != current_user.id:
        abort(404)
    return render_template("answerer/payout.html", payout=found)
