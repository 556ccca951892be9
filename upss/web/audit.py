"""The organizer's audit pages: ledger, statements, chain check, payouts, exports,
reconciliation with Stripe, and the peak-shaving chart."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from .. import charts, payouts, sepa, settings, statements, stripe_money
from .. import reconciliation as reconciliation_service
from ..extensions import db
from ..models import Payout, PayoutBatch, utcnow
from .inputs import Form, strip_whitespace
from .roles import organizer_required

bp = Blueprint("audit", __name__, url_prefix="/organizer")


@bp.get("/ledger", endpoint="ledger")
@organizer_required
def ledger_page():
    """Trial balance and the hash-chain verification."""
    overview = statements.ledger_overview(db.session)
    return render_template("organizer/ledger.html", rows=overview.trial_balance,
                           report=overview.verification)



@bp.get("/ledger/accounts/<path:account>")
@organizer_required
def statement(account: str):
    """One account's statement with a running balance."""
    try:
        found = statements.statement(db.session, account)
    except KeyError:
        abort(404)
    return render_template("organizer/statement.html", statement=found,
                           cached=statements.cached_balance(db.session, found))


@bp.get("/ledger/entries.csv")
@organizer_required
def entries_csv():
    """Every ledger entry as CSV."""
    return Response(statements.ledger_entries_csv(db.session), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=upss-ledger.csv"})


@bp.get("/payouts", endpoint="payouts")
@organizer_required
def payouts_page():
    """Payout batches with their status and files."""
    return _payouts_page()


class ReturnedPaymentForm(Form):
    """The bank returned one SEPA payment of a file marked sent: the reason it gave."""

    reason = StringField(_l("Reason the bank gave"), filters=[strip_whitespace], validators=[
        InputRequired(_l("Enter the reason the bank gave, like AC04 account closed")),
        Length(max=500, message=_l("The reason must be 500 characters or fewer"))])


def _returned_form(payout: Payout, **kwargs) -> ReturnedPaymentForm:
    """The "returned by the bank" form of one SEPA payout (its own prefix, so its field ids
    are unique on the page)."""
    form = ReturnedPaymentForm(prefix=f"returned-{payout.id}", **kwargs)
    form.reason.label.text = _("Reason the bank gave for payment %(id)d to %(name)s",
                               id=payout.id, name=payout.answerer.name)
    form.payout_id = payout.id
    return form


def _payouts_page(invalid: ReturnedPaymentForm | None = None, status: int = 200):
    """The Payouts page: every batch, and a "returned by the bank" form for each SEPA payout
    of a file marked sent (``invalid``: the one posted with errors, shown with them)."""
    batches = db.session.scalars(select(PayoutBatch).order_by(PayoutBatch.id.desc())).all()
    returned_forms = {payout.id: _returned_form(payout, formdata=None)
                      for batch in batches if batch.sepa_marked_sent_at is not None
                      for payout in batch.payouts
                      if payout.method == "sepa" and payout.status == "sent"}
    if invalid is not None:
        returned_forms[invalid.payout_id] = invalid
    return render_template("organizer/payouts.html", batches=batches,
                           returned_forms=returned_forms, invalid_form=invalid), status



@bp.post("/payouts/run")
@organizer_required
def run_payouts():
    """Run a payout batch now (the weekly job does the same)."""
    now = utcnow()
    try:
        batch = payouts.run_batch_audited(db.session, now, current_user)
    except payouts.LedgerCheckFailed as exc:
        db.session.rollback()
        flash(_("Nothing was paid: the ledger does not verify around the accounts this batch "
                "pays from (%(problem)s). Run verify-ledger and correct it first.",
                problem=exc.problems[0]), "error")
        return redirect(url_for("audit.payouts"))
    except sepa.InvalidSepaFile as exc:
        db.session.rollback()
        flash(_("Nothing was paid: the bank file of this batch failed its checks (%(problem)s). "
                "Check the organizer's bank details and the answerers' IBANs.",
                problem=str(exc)), "error")
        return redirect(url_for("audit.payouts"))
    if batch is None:
        db.session.rollback()
        flash(_("Nobody is due a payout right now."))
        return redirect(url_for("audit.payouts"))
    db.session.commit()
    payouts.send_transfers(db.session, now, batch.id)
    flash(_("Payout batch %(id)d is made.", id=batch.id))
    return redirect(url_for("audit.payouts"))


def _batch(batch_id: int) -> PayoutBatch:
    batch = db.session.get(PayoutBatch, batch_id)
    if batch is None:
        abort(404)
    return batch


@bp.get("/payouts/<int:batch_id>/sepa.xml")
@organizer_required
def sepa_file(batch_id: int):
    """The batch's SEPA credit-transfer file (pain.001) for the bank."""
    batch = _batch(batch_id)
    if not batch.sepa_xml:
        abort(404)
    return Response(batch.sepa_xml, mimetype="application/xml", headers={
        "Content-Disposition": f"attachment; filename=upss-payouts-{batch.id}.xml"})


@bp.post("/payouts/<int:batch_id>/sent")
@organizer_required
def mark_sent(batch_id: int):
    """The organizer has given the SEPA file to the bank."""
    batch = _batch(batch_id)
    try:
        sepa.mark_file_sent(db.session, batch, current_user, utcnow())
    except sepa.SepaStateError:
        abort(409)
    db.session.commit()
    flash(_("Batch %(id)d is marked as sent to the bank.", id=batch.id))
    return redirect(url_for("audit.payouts"))


@bp.post("/payouts/<int:batch_id>/settled")
@organizer_required
def mark_settled(batch_id: int):
    """The bank has paid the batch's SEPA file."""
    batch = _batch(batch_id)
    try:
        sepa.mark_file_settled(db.session, batch, current_user, utcnow())
    except sepa.SepaStateError:
        abort(409)
    db.session.commit()
    flash(_("Batch %(id)d is marked as paid by the bank.", id=batch.id))
    return redirect(url_for("audit.payouts"))


@bp.post("/payouts/<int:batch_id>/returned/<int:payout_id>")
@organizer_required
def mark_returned(batch_id: int, payout_id: int):
    """The bank returned one SEPA payment of a file marked sent: the payout fails, and the
    answerer is owed the money again."""
    payout = db.session.get(Payout, payout_id)
    if payout is None or payout.batch_id != batch_id:
        abort(404)
    form = _returned_form(payout)
    if not form.validate_on_submit():
        return _payouts_page(invalid=form, status=400)
    try:
        changed = sepa.mark_payout_returned(db.session, payout, current_user, form.reason.data,
                                            utcnow())
    except sepa.SepaStateError:
        abort(409)
    db.session.commit()
    if changed:
        flash(_("Payment %(id)d to %(name)s is marked as returned by the bank: the money is "
                "owed again and paid in a later batch.", id=payout.id,
                name=payout.answerer.name))
    else:
        flash(_("Payment %(id)d was already marked as returned by the bank.", id=payout.id))
    return redirect(url_for("audit.payouts"))


@bp.get("/payouts.csv")
@organizer_required
def payouts_csv():
    """Every payout as CSV."""
    return Response(statements.payouts_csv(db.session), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=upss-payouts.csv"})


@bp.get("/reconciliation")
@organizer_required
def reconciliation():
    """The last run of the reconciliation job: Stripe's money against the ledger."""
    run = reconciliation_service.last_run(db.session)
    return render_template("organizer/reconciliation.html", run=run,
                           differences=reconciliation_service.differences(run) if run else [],
                           disputes=stripe_money.open_disputes(db.session))


@bp.post("/reconciliation")
@organizer_required
def reconcile_now():
    """Check what Stripe moved since the last run, now (the job does the same; a press checks
    at most 100 movements, so the page answers quickly: press again for more)."""
    reconciliation_service.reconcile_with_stripe(db.session, utcnow(), max_moves=100,
                                                 actor=current_user)
    db.session.commit()
    return redirect(url_for("audit.reconciliation"))


@bp.get("/traffic")
@organizer_required
def traffic():
    """The peak-shaving chart: when questions are paid versus offered and answered."""
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

