"""``flask upss …`` commands: demo data, ledger verification."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from . import accounts, db_roles, ledger_check, money, vetting
from .extensions import db
from .models import LANGUAGES, AnswererProfile, User, utcnow
from .vetting import BASES

upss_cli = AppGroup("upss", help="UPSS commands.")

#: The demo answerer's bank account (a valid test IBAN), so a first payout batch can pay.
DEMO_IBAN = "FI2112345600000785"
#: Demo accounts for a newcomer's local run: (e-mail, name, password, role).
DEMO_USERS = (
    ("asker@example.org", "Ada Asker", "asker-demo-pass", "asker"),
    ("answerer@example.org", "Aino Answerer", "answerer-demo-pass", "answerer"),
    ("organizer@example.org", "Olav Organizer", "organizer-demo-pass", "organizer"),
)


@upss_cli.command("seed-demo")
def seed_demo() -> None:
    """Create one demo user of each role (idempotent) and print how to sign in.

    The demo answerer is paid by SEPA file to a valid IBAN.
    """
    for email, name, password, role in DEMO_USERS:
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            user = accounts.sign_up(db.session, email=email, name=name, password=password,
                                    confirmed_at=utcnow())
        user.is_answerer = role == "answerer"
        user.is_organizer = role == "organizer"
        if user.is_answerer and db.session.get(AnswererProfile, user.id) is None:
            db.session.add(AnswererProfile(user_id=user.id, languages=",".join(LANGUAGES),
                                           daily_limit=20, open_offer_limit=5,
                                           payout_method="sepa", iban=DEMO_IBAN,
                                           account_holder=name))
        click.echo(f"  {role:<10} sign in as {email} with password {password}")
    db.session.commit()


@upss_cli.command("verify-ledger")
@click.option("--new-only", is_flag=True,
              help="Check only what was posted after the last good check.")
def verify_ledger(new_only: bool) -> None:
    """Verify the hash chain, every transaction and every cached balance (streaming, in
    bounded memory), print the totals per kind of account, and record the check: when it
    passes it is the checkpoint the scheduled checks continue from."""
    check, report = ledger_check.check_now(db.session, "new" if new_only else "full", utcnow())
    db.session.commit()
    rows = ledger_check.total_rows(report.totals)
    width = max([len(r.kind) for r in rows] + [7])
    click.echo(f"{'account':<{width}}  {'type':<9}  {'debit':>14}  {'credit':>14}")
    totals: dict[str, list[int]] = {}
    for r in rows:
        click.echo(f"{r.kind:<{width}}  {r.type:<9}  "
                   f"{money.to_decimal(r.debit_cents, r.currency):>14}  "
                   f"{money.to_decimal(r.credit_cents, r.currency):>14}  {r.currency}")
        t = totals.setdefault(r.currency, [0, 0])
        t[0] += r.debit_cents
        t[1] += r.credit_cents
    for currency, (debit, credit) in totals.items():
        click.echo(f"{'total':<{width}}  {'':<9}  {money.to_decimal(debit, currency):>14}  "
                   f"{money.to_decimal(credit, currency):>14}  {currency}")
    click.echo(f"check {check.id} ({check.kind}): {report.transactions} transactions, "
               f"{report.accounts} accounts checked")
    if report.ok:
        click.echo("ledger OK: hash chain intact, every transaction balanced, "
                   "cached balances equal their entries")
        return
    click.echo(f"FIRST BREAK: {report.problems[0]}")
    for problem in report.problems[1:]:
        click.echo(f"also: {problem}")
    raise SystemExit(1)


@upss_cli.command("reconcile-full")
def reconcile_full() -> None:
    """Compare Stripe's whole history (payments, refunds, transfers) and the SEPA files with
    the ledger. Slow on a long history: the scheduled job checks only what is new."""
    from . import reconciliation

    result = reconciliation.reconcile_full_history(db.session)
    db.session.rollback()
    for title, items in (("payments missing from the ledger", result.missing_in_ledger),
                         ("ledger payments missing at Stripe", result.missing_at_stripe),
                         ("refunds missing from the ledger", result.refunds_missing_in_ledger),
                         ("transfer differences", result.transfer_differences),
                         ("SEPA file differences", result.sepa_differences)):
        click.echo(f"{title}: {len(items)}")
        for item in items:
            click.echo(f"  {item}")
    if not result.ok:
        raise SystemExit(1)


@upss_cli.command("release-now")
def release_now() -> None:
    """Run the release as if inside an off-peak window (for trying UPSS out)."""
    from . import release
    from .models import utcnow

    made = release.release_due_questions(db.session, utcnow(), ignore_window=True)
    db.session.commit()
    click.echo(f"{len(made)} question(s) offered")
    for offer in made:
        click.echo(f"  question {offer.question_id} -> answerer {offer.answerer_id}")


@upss_cli.command("send-notifications")
def send_notifications() -> None:
    """Send the messages that are due now (the scheduler does this every tick)."""
    from . import notifications
    from .models import utcnow

    result = notifications.dispatch_due(db.session, utcnow())
    db.session.commit()
    click.echo(str(result))


@upss_cli.command("organizer-digest")
def organizer_digest() -> None:
    """Write the organizer's daily digest if it is due (the scheduler does this too; run it
    from the system's timer as well, so a stopped scheduler is noticed)."""
    from . import jobs
    from .models import utcnow

    written = jobs.send_organizer_digests(db.session, utcnow())
    db.session.commit()
    click.echo(f"{written} digest(s) written")


@upss_cli.command("make-answerer")
@click.argument("email")
@click.option("--by", "organizer_email", required=True,
              help="e-mail of the organizer who checked the person's eligibility")
@click.option("--basis", type=click.Choice(BASES), required=True,
              help="65 or over (age), living with a disability, or both")
@click.option("--birth-year", type=int, help="needed for the age basis")
@click.option("--method", required=True, help="how eligibility was checked (goes to the audit log)")
@click.option("--languages", default="en", show_default=True, help="comma-separated codes")
@click.option("--daily-limit", default=5, show_default=True)
def make_answerer(email: str, organizer_email: str, basis: str, birth_year: int | None,
                  method: str, languages: str, daily_limit: int) -> None:
    """Vet an existing user as an answerer from the command line: an application is stored and
    approved by the named organizer through ``vetting``, so the same rules apply and the audit
    log records the decision. Payouts go through Stripe Connect, set up by the answerer."""
    from datetime import date

    from .models import utcnow

    person = _user(email)
    organizer = _user(organizer_email)
    if not organizer.is_organizer:
        raise click.ClickException(f"{organizer.email} is not an organizer")
    codes = tuple(c.strip() for c in languages.split(",") if c.strip())
    now = utcnow()
    data = vetting.ApplicationData(
        basis=basis, birth_year=birth_year, languages=codes, topics=(),
        available_from_minute=0, available_until_minute=24 * 60, daily_limit=daily_limit,
        yearly_ceiling_cents=None, payout_method="connect", iban=None, account_holder=None)
    try:
        application = vetting.apply(db.session, person, data, now)
        vetting.approve(db.session, application, organizer, method=method,
                        verified_on=date.today(), note="approved with flask upss make-answerer",
                        now=now)
    except vetting.VettingError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"{person.email} is now an answerer ({application.languages})")


def _user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
    if user is None:
        raise click.ClickException(f"no user with e-mail {email}")
    return user


@upss_cli.command("scheduler")
def scheduler() -> None:
    """Run the scheduler process (jobs of upss/jobs.py); a second one idles on the lease."""
    import logging
    import signal

    from flask import current_app

    from .jobs import build_scheduler, quiet_scheduler_library, wait_for_local_stripe
    from .lease import lease_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    quiet_scheduler_library()
    app = current_app._get_current_object()
    wait_for_local_stripe(app)
    lease = lease_for(db.engine, app.config["UPSS_LEASE_SECONDS"])
    runner = build_scheduler(app, lease)
    signal.signal(signal.SIGTERM, lambda *_: runner.shutdown(wait=False))
    click.echo(f"scheduler {lease.holder} starting (tick "
               f"{app.config['UPSS_SCHEDULER_TICK_SECONDS']} s)")
    try:
        runner.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        lease.release()
        click.echo(f"scheduler {lease.holder} stopped")


@upss_cli.command("grant-app-role")
@click.argument("role")
def grant_app_role(role: str) -> None:
    """Give the PostgreSQL role ROLE (made beforehand with CREATE ROLE ... LOGIN) the rights
    the app needs and no more: rows, not TRUNCATE, ALTER or ownership; on the ledger only
    reading and adding. Run as the tables' owner after each `flask db upgrade`."""
    try:
        with db.engine.begin() as conn:
            statements = db_roles.grant_app_role(conn, role)
    except (db_roles.NotPostgres, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(statements)} grants to {role}; connect the app as {role}.")
