"""The organizer's money pages: the ledger and its chain check, account statements, payout
batches and their SEPA files, CSV exports, and reconciliation with Stripe."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from .. import ledger_check, lists, payouts, sepa, statements
from .. import reconciliation as reconciliation_service
from ..extensions import db
from ..models import Payout, PayoutBatch, utcnow
from .display import person_name
from .inputs import Form, statement_cursor, statement_cursor_token, strip_whitespace
from .roles import organizer_required

bp = Blueprint("money", __name__, url_prefix="/organizer")


@bp.get("/ledger", endpoint="ledger")
@organizer_required
def ledger_page():
    """The last check of the ledger and the totals per kind of account at its checkpoint."""
    return render_template("organizer/ledger.html",
                           summary=ledger_check.summary(db.session))


@bp.post("/ledger/checks/<any(new, full):kind>", endpoint="start_check")
@organizer_required
def start_check(kind: str):
    """Ask for a check of the ledger in the background (what is new, or the whole chain)."""
    try:
        ledger_check.request_check(db.session, current_user, kind, utcnow())
    except ledger_check.CheckAlreadyWaiting:
        flash(_("A check is already waiting to run. Its result will appear here."), "error")
    else:
        db.session.commit()
        flash(_("The check will run within a few minutes. Reload this page to see its "
                "result."), "success")
    return redirect(url_for("money.ledger"))


@bp.get("/ledger/open/<any(escrow, payable):kind>", endpoint="open_accounts")
@organizer_required
def open_accounts(kind: str):
    """The open accounts of one kind (escrow per question, payable per answerer), by name."""
    page = statements.open_accounts(db.session, kind, request.args.get("after") or None)
    return render_template("organizer/open_accounts.html", page=page)


@bp.get("/ledger/accounts/<path:account>")
@organizer_required
def statement(account: str):
    """One account's statement with a running balance, a page at a time: from the first
    entry, after or before a signed cursor (``?after=``, ``?before=``), or the newest
    entries (``?newest=1``)."""
    try:
        found = statements.statement(
            db.session, account, after=statement_cursor(request.args.get("after")),
            before=statement_cursor(request.args.get("before")),
            newest=bool(request.args.get("newest")))
    except KeyError:
        abort(404)
    return render_template(
        "organizer/statement.html", statement=found,
        next_token=statement_cursor_token(found.next),
        previous_token=statement_cursor_token(found.previous),
        cached=statements.cached_balance(db.session, found))


@bp.get("/ledger/entries.csv")
@organizer_required
def entries_csv():
    """Every ledger entry as CSV."""
    return Response(stream_with_context(statements.ledger_entries_csv(db.session)),
                    mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=upss-ledger.csv"})


@bp.get("/payouts", endpoint="payouts")
@organizer_required
def payouts_page():
    """Payouts, newest first, by batch, with their status and files (a page at a time)."""
    return _payouts_page(cursor=request.args.get("before"))


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
                               id=payout.id, name=person_name(payout.answerer))
    form.payout_id = payout.id
    return form


def _payouts_page(cursor: str | None = None, invalid: ReturnedPaymentForm | None = None,
                  status: int = 200):
    """One page of the Payouts page (``lists.payouts``), and a "returned by the bank" form
    for each SEPA payout on it of a file marked sent (``invalid``: the one posted with errors,
    shown with them on the page that starts with it)."""
    if invalid is not None:
        cursor = lists.payouts_cursor_at(invalid.payout_id)
    found = lists.payouts(db.session, cursor)
    returned_forms = {payout.id: _returned_form(payout, formdata=None)
                      for group in found.groups if group.batch.sepa_marked_sent_at is not None
                      for payout in group.payouts
                      if payout.method == "sepa" and payout.status == "sent"}
    if invalid is not None:
        returned_forms[invalid.payout_id] = invalid
    return render_template("organizer/payouts.html", groups=found.groups, page=found.page,
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
        return _back_to_payouts(_(
            "Nothing was paid: the ledger does not verify around the accounts this batch pays "
            "from (%(problem)s). Run verify-ledger and correct it first.",
            problem=exc.problems[0]), "error")
    except sepa.InvalidSepaFile as exc:
        db.session.rollback()
        return _back_to_payouts(_(
            "Nothing was paid: the bank file of this batch failed its checks (%(problem)s). "
            "Check the organizer's bank details and the answerers' IBANs.",
            problem=str(exc)), "error")
    if batch is None:
        db.session.rollback()
        return _back_to_payouts(_("Nobody is due a payout right now."))
    db.session.commit()
    payouts.send_transfers(db.session, now, batch.id)
    return _back_to_payouts(_("Payout batch %(id)d is made.", id=batch.id))


def _back_to_payouts(message: str, category: str = "message"):
    """Show ``message`` on the Payouts page."""
    flash(message, category)
    return redirect(url_for("money.payouts"))


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


def _mark_file(batch_id: int, mark, done: str):
    """Record what became of a batch's SEPA file (``mark``: a ``sepa`` service) and come back
    to the Payouts page; 409 if the file is not in a state that allows it."""
    try:
        mark(db.session, _batch(batch_id), current_user, utcnow())
    except sepa.SepaStateError:
        abort(409)
    db.session.commit()
    return _back_to_payouts(done)


@bp.post("/payouts/<int:batch_id>/sent")
@organizer_required
def mark_sent(batch_id: int):
    """The organizer has given the SEPA file to the bank."""
    return _mark_file(batch_id, sepa.mark_file_sent,
                      _("Batch %(id)d is marked as sent to the bank.", id=batch_id))


@bp.post("/payouts/<int:batch_id>/settled")
@organizer_required
def mark_settled(batch_id: int):
    """The bank has paid the batch's SEPA file."""
    return _mark_file(batch_id, sepa.mark_file_settled,
                      _("Batch %(id)d is marked as paid by the bank.", id=batch_id))


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
        return _back_to_payouts(_(
            "Payment %(id)d to %(name)s is marked as returned by the bank: the money is owed "
            "again and paid in a later batch.", id=payout.id, name=person_name(payout.answerer)))
    return _back_to_payouts(_("Payment %(id)d was already marked as returned by the bank.",
                              id=payout.id))


@bp.get("/payouts.csv")
@organizer_required
def payouts_csv():
    """Every payout as CSV, streamed as it is read."""
    return Response(stream_with_context(statements.payouts_csv(db.session)), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=upss-payouts.csv"})


@bp.get("/reconciliation")
@organizer_required
def reconciliation():
    """The last run of the reconciliation job: Stripe's money against the ledger."""
    run = reconciliation_service.last_run(db.session)
    return render_template(
        "organizer/reconciliation.html", run=run,
        differences=lists.reconciliation_differences(run, request.args.get("differences"))
        if run else None,
        disputes=lists.open_card_disputes(db.session, request.args.get("disputes")),
        cursors={"differences": request.args.get("differences"),
                 "disputes": request.args.get("disputes")})


@bp.post("/reconciliation")
@organizer_required
def reconcile_now():
    """Check what Stripe moved since the last run, now (the job does the same; a press checks
    at most 100 movements, so the page answers quickly: press again for more)."""
    reconciliation_service.reconcile_with_stripe(db.session, utcnow(), max_moves=100,
                                                 actor=current_user)
    db.session.commit()
    return redirect(url_for("money.reconciliation"))
