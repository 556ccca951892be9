"""Organizer pages: the overview of what waits, settings (windows, commission, bounds, times)
and the traffic chart they shape, rejected answers, applications, answerers, and the audit
log."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import IntegerField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, ValidationError

from .. import (
    access,
    audit,
    charts,
    connect,
    lists,
    money,
    payments,
    payouts,
    questions,
    settings,
    vetting,
)
from .. import overview as overview_service
from ..extensions import db
from ..models import (
    LANGUAGE_NAMES,
    AnswererApplication,
    Question,
    User,
    utcnow,
)
from .display import TOPIC_NAMES
from .inputs import Form
from .roles import organizer_required
from .vetting_forms import ApproveForm, RejectApplicationForm

bp = Blueprint("organizer", __name__, url_prefix="/organizer")

WEEKDAY_NAMES = (_l("Monday"), _l("Tuesday"), _l("Wednesday"), _l("Thursday"), _l("Friday"),
                 _l("Saturday"), _l("Sunday"))


#: Only the organizer; everyone else gets 403.


@bp.get("/")
@organizer_required
def overview():
    """What waits for the organizer, counted, with links: the organizer's start page."""
    return render_template("organizer/overview.html",
                           waiting=overview_service.organizer_overview(db.session))


def _hours(label, maximum=24 * 30):
    return IntegerField(label, validators=[
        InputRequired(_l("Enter a whole number")),
        NumberRange(min=1, max=maximum, message=_l("Enter a whole number from %(min)d to %(max)d",
                                                   min=1, max=maximum))])


class SettingsForm(Form):
    timezone = StringField(_l("Timezone of the off-peak windows"),
                           validators=[InputRequired(_l("Enter a timezone")),
                                       Length(max=64, message=_l(
                                           "Enter a timezone like Europe/Oslo"))])
    commission = StringField(_l("Commission, in per cent"),
                             validators=[InputRequired(_l("Enter the commission"))])
    price_min = StringField(_l("Lowest price"), validators=[InputRequired(_l("Enter a price"))])
    price_max = StringField(_l("Highest price"), validators=[InputRequired(_l("Enter a price"))])
    offer_hours = _hours(_l("Hours an offer stays open"))
    lock_hours = _hours(_l("Hours an answerer has, once they pick a question up"))
    lock_hours_large = _hours(_l("Hours for large questions"))
    large_price = StringField(_l("A question is large from this price"),
                              validators=[InputRequired(_l("Enter a price"))])
    deadline_hours = _hours(_l("Hours from payment until an unanswered question is refunded"))
    auto_accept_days = _hours(_l("Days until an answer is accepted automatically"), 60)
    urgent_hours = _hours(_l("Offer even outside the windows when fewer hours than this are "
                             "left"))
    release_max_per_run = _hours(_l("Most questions offered every 5 minutes"), 1000)

    def __init__(self, currency: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.parsed: dict = {}

    def _money(self, field, key):
        try:
            self.parsed[key] = money.parse_amount(field.data, self.currency)
        except money.AmountTooLarge:
            raise ValidationError(_("That amount is too large")) from None
        except ValueError:
            raise ValidationError(_("Enter an amount like 12.50")) from None
        if self.parsed[key] <= 0:
            raise ValidationError(_("Enter an amount above zero"))

    def validate_price_min(self, field):
        self._money(field, "price_min_cents")

    def validate_price_max(self, field):
        self._money(field, "price_max_cents")
        if self.parsed.get("price_min_cents", 0) > self.parsed["price_max_cents"]:
            raise ValidationError(_("The highest price must not be below the lowest price"))

    def validate_large_price(self, field):
        self._money(field, "large_price_cents")

    def validate_commission(self, field):
        try:
            bps = Decimal(field.data.replace(",", ".").replace("%", "").strip()) * 100
        except InvalidOperation:
            raise ValidationError(_("Enter the commission as a number, like 10")) from None
        if bps != bps.to_integral_value() or not 0 <= bps <= 10_000:
            raise ValidationError(_("Enter a commission from 0 to 100, with at most two "
                                    "decimals"))
        self.parsed["commission_bps"] = int(bps)

    def validate_timezone(self, field):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(field.data.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, too long
            raise ValidationError(_("Enter a timezone like Europe/Oslo")) from None


def _window_validator(form, field):
    windows = []
    for part in filter(None, (p.strip() for p in (field.data or "").split(","))):
        try:
            windows.append(settings.parse_window(part))
        except ValueError:
            raise ValidationError(_("Write each window like 22:00-07:00, separated by "
                                    "commas")) from None
    form.parsed.setdefault("windows", {})[field.name] = windows


for _day, _name in enumerate(WEEKDAY_NAMES):
    setattr(SettingsForm, f"window_{_day}",
            StringField(_name, validators=[_window_validator]))


def _fill(form: SettingsForm, current: settings.Settings) -> None:
    fmt = lambda cents: str(money.to_decimal(cents, current.currency))  # noqa: E731
    form.timezone.data = current.timezone
    form.commission.data = str(Decimal(current.commission_bps) / 100)
    form.price_min.data, form.price_max.data = fmt(current.price_min_cents), fmt(
        current.price_max_cents)
    form.large_price.data = fmt(current.large_price_cents)
    for name in ("offer_hours", "lock_hours", "lock_hours_large", "deadline_hours",
                 "auto_accept_days", "urgent_hours", "release_max_per_run"):
        form[name].data = getattr(current, name)
    for day in range(settings.WEEKDAYS):
        form[f"window_{day}"].data = ", ".join(
            settings.format_window(w).replace("–", "-") for w in current.windows
            if w.weekday == day)


@bp.route("/settings", methods=["GET", "POST"], endpoint="settings")
@organizer_required
def settings_page():
    """Off-peak windows, commission, price bounds and the answering times."""
    current = settings.current(db.session)
    form = SettingsForm(current.currency)
    if form.validate_on_submit():
        windows = tuple(settings.Window(day, start, end)
                        for day in range(settings.WEEKDAYS)
                        for start, end in form.parsed["windows"][f"window_{day}"])
        new = settings.Settings(
            currency=current.currency, timezone=form.timezone.data.strip(), windows=windows,
            **{k: form.parsed[k] for k in ("price_min_cents", "price_max_cents",
                                           "commission_bps", "large_price_cents")},
            **{k: form[k].data for k in ("offer_hours", "lock_hours", "lock_hours_large",
                                         "deadline_hours", "auto_accept_days", "urgent_hours",
                                         "release_max_per_run")})
        settings.save(db.session, new, actor=current_user)
        db.session.commit()
        flash(_("The settings are saved. Questions already paid keep the commission and "
                "deadline they were paid with."))
        return redirect(url_for("organizer.settings"))
    if not form.is_submitted():
        _fill(form, current)
    return render_template("organizer/settings.html", form=form, weekdays=WEEKDAY_NAMES,
                           currency=current.currency), 400 if form.errors else 200


@bp.get("/traffic")
@organizer_required
def traffic():
    """The peak-shaving chart: when questions are paid versus offered and answered (how the
    off-peak windows of the settings work out)."""
    now = utcnow()
    rules = settings.current(db.session)
    hourly = charts.traffic_by_hour(db.session, now, rules.zone)
    depth = [(at.astimezone(rules.zone), n)
             for at, n in charts.queue_depth(db.session, now, step=timedelta(hours=6))]
    chart = charts.peak_shaving_svg(
        hourly, depth, title_paid=_("Questions paid"), title_offered=_("Questions offered"),
        title_answered=_("Questions answered"), title_depth=_("Questions waiting in the queue"),
        caption_hours=_("By hour of the day, last 28 days (%(zone)s)", zone=rules.timezone),
        caption_depth=_("Queue over the last 28 days"))
    return render_template("organizer/traffic.html", chart=chart, hourly=hourly)


@bp.get("/disputes")
@organizer_required
def disputes():
    """Answers the askers rejected, waiting for a decision, oldest first (a page at a time)."""
    page = lists.rejected_answers(db.session, request.args.get("after"))
    return render_template("organizer/disputes.html", page=page, decidable={
        q.id for q in page.items if access.may_decide_dispute(db.session, q, current_user)})


@bp.post("/disputes/<int:question_id>/<decision>")
@organizer_required
def decide(question_id: int, decision: str):
    """Uphold the answer (the answerer is paid) or refund the asker."""
    q = db.session.get(Question, question_id)
    if q is None or decision not in ("uphold", "refund"):
        abort(404)
    try:
        if decision == "uphold":
            questions.uphold_dispute(db.session, q, current_user, utcnow())
        else:
            payments.refund_question(db.session, q, "refund_dispute", current_user, utcnow())
    except questions.ConflictOfInterest:
        db.session.rollback()
        flash(_("You asked or answered this question, so another organizer must decide it."),
              "error")
    except questions.InvalidTransition:
        db.session.rollback()
        flash(_("This dispute was already decided."), "error")
    else:
        db.session.commit()
        flash(_("The answer is upheld and the answerer will be paid.") if decision == "uphold"
              else _("The asker has been refunded."))
    return redirect(url_for("organizer.disputes"))


@bp.get("/applications")
@organizer_required
def applications():
    """Applications to answer: waiting ones first, then the decided ones (each list a page at a
    time, newest first)."""
    waiting_cursor, decided_cursor = request.args.get("waiting"), request.args.get("decided")
    return render_template(
        "organizer/applications.html",
        waiting=lists.applications(db.session, True, waiting_cursor),
        decided=lists.applications(db.session, False, decided_cursor),
        cursors={"waiting": waiting_cursor, "decided": decided_cursor})


def _application_page(application, approve_form=None, reject_form=None, status=200):
    return render_template(
        "organizer/application.html", application=application,
        approve_form=approve_form or ApproveForm(prefix="a"),
        reject_form=reject_form or RejectApplicationForm(prefix="r"),
        language_names=LANGUAGE_NAMES, topic_names=TOPIC_NAMES,
        decidable=vetting.may_decide(application, current_user)), status


@bp.route("/applications/<int:application_id>", methods=["GET", "POST"])
@organizer_required
def application(application_id: int):
    """One application, with approve and reject."""
    found = db.session.get(AnswererApplication, application_id)
    if found is None:
        abort(404)
    if request.method == "GET":
        return _application_page(found)
    approving = request.form.get("decision") == "approve"
    name = "approve_form" if approving else "reject_form"
    form = ApproveForm(prefix="a") if approving else RejectApplicationForm(prefix="r")
    if form.validate_on_submit():
        try:
            if approving:
                vetting.approve(db.session, found, current_user, method=form.method.data,
                                verified_on=form.verified_on.data, note=form.note.data,
                                now=utcnow())
            else:
                vetting.reject(db.session, found, current_user, reason=form.reason.data,
                               now=utcnow())
        except vetting.VettingError as exc:
            db.session.rollback()
            target = form._fields.get(exc.field or "") or next(iter(form))
            target.errors = [*target.errors, str(exc)]
        else:
            db.session.commit()
            flash(_("The applicant is now an answerer.") if approving
                  else _("The application is rejected."))
            return redirect(url_for("organizer.applications"))
    return _application_page(found, **{name: form}, status=400)


@bp.get("/answerers")
@organizer_required
def answerers():
    """Every answerer, active or suspended, by name (a page at a time)."""
    page = lists.answerers(db.session, request.args.get("after"))
    return render_template("organizer/answerers.html", page=page, connect_state=connect.state,
                           holds=payouts.holds(db.session, utcnow(),
                                               [u.id for u, _ in page.items]))


@bp.post("/answerers/<int:user_id>/<action>")
@organizer_required
def suspend_or_reinstate(user_id: int, action: str):
    """Suspend an answerer (no more offers) or reinstate them."""
    answerer = db.session.get(User, user_id)
    if answerer is None or action not in ("suspend", "reinstate"):
        abort(404)
    try:
        vetting.set_suspended(db.session, answerer, current_user, action == "suspend",
                              now=utcnow())
    except vetting.VettingError:
        abort(404)
    db.session.commit()
    flash(_("%(name)s is suspended.", name=answerer.name) if action == "suspend"
          else _("%(name)s is reinstated.", name=answerer.name))
    return redirect(url_for("organizer.answerers"))


@bp.get("/audit-log")
@organizer_required
def audit_log():
    """Every organizer action, newest first (a page at a time). Nobody can edit it."""
    return render_template("organizer/audit_log.html",
                           page=audit.entries_page(db.session, request.args.get("before")))
