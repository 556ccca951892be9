"""Where an answerer's money is, in words (issue 16, items 9 and 10): money in a bank file the
organizer made but has not sent is its own line, neither owed nor paid; why a payout failed is
stored as a code and shown in the reader's language; migration 0010 turns the old English
sentences into those codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from babel.dates import format_date
from flask_babel import force_locale
from sqlalchemy import select

from tests.conftest import _base_config, sign_in_as
from tests.flows.test_payouts import IBAN_NO, IBAN_SE, earn, later, run_batch
from upss import create_app, earnings, payouts, sepa
from upss.extensions import db
from upss.models import PAYOUT_FAILURE_CODES, Payout, PayoutBatch, User
from upss.web import display

ROW = re.compile(r'<div class="summary-list__row"[^>]*>\s*<dt>(.*?)</dt>\s*<dd>(.*?)</dd>\s*</div>',
                 re.S)


def words(html: str) -> str:
    """The text of an HTML fragment, tags dropped and spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def summary_rows(page: str) -> dict[str, str]:
    """A page's summary list: each row's term -> its description, as text."""
    return {words(term): words(value) for term, value in ROW.findall(page)}


def summary(app, answerer: int, now: datetime) -> earnings.Earnings:
    with app.test_request_context():
        return earnings.summary(db.session, db.session.get(User, answerer), now)


def numbers(found: earnings.Earnings) -> tuple[int, int, int]:
    """(owed, in a bank file not yet sent, paid)."""
    return found.owed_cents, found.in_bank_file_cents, found.paid_cents


def long_date(app, moment: datetime) -> str:
    """``moment`` as the pages write a long date in English (in the display time zone)."""
    zone = ZoneInfo(app.config["BABEL_DEFAULT_TIMEZONE"])
    return format_date(moment.astimezone(zone).date(), "long", locale="en")


def test_money_in_an_unsent_bank_file_is_its_own_line_until_sent_or_returned(app, world,
                                                                           client):
    """A batch puts the answerer's 18.00 into a SEPA file: it leaves "owed" without being
    "paid" and shows as "in the bank file, not yet sent" with the file's date (another
    answerer's payment in the same file is not theirs; what they earn meanwhile stays owed).
    Marking the file sent moves it to "paid"; the bank returning it makes it owed again."""
    organizer = world.user("organizer")
    a, b = world.answerer(iban=IBAN_NO), world.answerer(iban=IBAN_SE)
    earn(app, world, a, 2000)
    earn(app, world, b, 3000)
    made_at = later()
    assert numbers(summary(app, a, made_at)) == (1800, 0, 0)

    batch_id = run_batch(app, made_at)
    earn(app, world, a, 1000)  # earned after the file was made: owed, not in the file
    in_file = summary(app, a, made_at)
    assert numbers(in_file) == (900, 1800, 0)
    assert in_file.bank_files == (earnings.BankFilePart(made_at, 1800),)
    assert numbers(summary(app, b, made_at)) == (0, 2700, 0)

    sign_in_as(client, app, a)
    page = client.get("/answer/earnings").get_data(as_text=True)
    rows = summary_rows(page)
    file_made = (f"The organizer made the bank file on {long_date(app, made_at)} and has not "
                 f"sent it to the bank yet.")
    assert rows["Owed to you"] == "€9.00"
    assert rows["In the bank file, not yet sent"] == f"€18.00 {file_made}"
    assert rows["Paid to you so far"] == "€0.00"
    with app.app_context():
        payout_id = db.session.scalar(select(Payout.id).where(Payout.answerer_id == a))
    detail = summary_rows(client.get(f"/answer/payouts/{payout_id}").get_data(as_text=True))
    assert detail["Status"] == f"In the bank file, not yet sent {file_made}"

    sent_at = later(16)
    with app.app_context():
        sepa.mark_file_sent(db.session, db.session.get(PayoutBatch, batch_id),
                            db.session.get(User, organizer), sent_at)
        db.session.commit()
    sent = summary(app, a, sent_at)
    assert (numbers(sent), sent.bank_files) == ((900, 0, 1800), ())
    rows = summary_rows(client.get("/answer/earnings").get_data(as_text=True))
    assert "In the bank file, not yet sent" not in rows
    assert (rows["Owed to you"], rows["Paid to you so far"]) == ("€9.00", "€18.00")
    detail = summary_rows(client.get(f"/answer/payouts/{payout_id}").get_data(as_text=True))
    assert detail["Status"] == f"Sent Sent to the bank on {long_date(app, sent_at)}."

    with app.app_context():
        assert sepa.mark_payout_returned(db.session, db.session.get(Payout, payout_id),
                                         db.session.get(User, organizer), "AC04", later(17))
        db.session.commit()
    assert numbers(summary(app, a, later(17))) == (2700, 0, 0)
    assert numbers(summary(app, b, later(17))) == (0, 0, 2700)
    rows = summary_rows(client.get("/answer/earnings").get_data(as_text=True))
    assert (rows["Owed to you"], rows["Paid to you so far"]) == ("€27.00", "€0.00")


def test_a_failure_reason_is_shown_in_the_readers_language(app, world, client):
    """The bank returned a payment: stored as the code ``returned_by_bank`` with the bank's
    words as the organizer's detail. The answerer reads why in Finnish on a page asked for in
    Finnish and in English in English, never the stored detail; the organizer's Payouts page
    shows the reason in their language and the detail as it came."""
    organizer = world.user("organizer")
    a = world.answerer(iban=IBAN_NO)
    earn(app, world, a, 2000)
    batch_id = run_batch(app, later())
    with app.app_context():
        user = db.session.get(User, organizer)
        sepa.mark_file_sent(db.session, db.session.get(PayoutBatch, batch_id), user, later())
        payout = db.session.scalar(select(Payout).where(Payout.answerer_id == a))
        sepa.mark_payout_returned(db.session, payout, user, "AC04 account closed", later())
        db.session.commit()
        payout_id = payout.id
        assert (payout.failure_code, payout.failure_reason) == (
            "returned_by_bank", "AC04 account closed")

    sign_in_as(client, app, a)
    for language, why, failed in (("fi", "Pankki palautti maksun", "Epäonnistui"),
                                  ("en", "The bank returned the payment", "Failed")):
        headers = {"Accept-Language": language}
        page = client.get(f"/answer/payouts/{payout_id}", headers=headers).get_data(
            as_text=True)
        assert f'lang="{language}"' in page
        assert summary_rows(page)[{"fi": "Miksi", "en": "Why"}[language]] == why
        assert "AC04" not in page
        earnings_page = words(client.get("/answer/earnings", headers=headers).get_data(
            as_text=True))
        assert f"({failed}: {why})" in earnings_page
    english = client.get(f"/answer/payouts/{payout_id}",
                         headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Pankki" not in english

    sign_in_as(client, app, organizer)
    page = words(client.get("/organizer/payouts", headers={"Accept-Language": "fi"}).get_data(
        as_text=True))
    assert "Pankki palautti maksun. Lisätiedot: AC04 account closed" in page


def test_a_refused_transfer_is_stored_as_a_code_with_stripes_message(app, world, client,
                                                                    monkeypatch):
    """Stripe refuses a Connect transfer: the code says so in the reader's language, Stripe's
    own message is only the organizer's detail."""
    from upss.stripe_gateway import GatewayError

    def refuse(**_kwargs):
        raise GatewayError("No such destination: 'acct_gone'", http_status=400)

    monkeypatch.setattr(app.extensions["upss_stripe"], "create_transfer", refuse)
    organizer = world.user("organizer")
    a = world.answerer(payout_method="connect", stripe_account_id="acct_gone",
                       connect_payouts_enabled=True)
    earn(app, world, a, 2000)
    run_batch(app, later())
    with app.app_context():
        payout = db.session.scalar(select(Payout).where(Payout.answerer_id == a))
        assert (payout.status, payout.failure_code, payout.failure_reason) == (
            "failed", "transfer_refused", "No such destination: 'acct_gone'")
    sign_in_as(client, app, a)
    page = client.get(f"/answer/payouts/{payout.id}", headers={"Accept-Language": "sv"})
    assert summary_rows(page.get_data(as_text=True))["Varför"] == "Stripe avvisade överföringen"
    sign_in_as(client, app, organizer)
    page = words(client.get("/organizer/payouts").get_data(as_text=True))
    assert "Stripe refused the transfer. Details: No such destination: 'acct_gone'" in page


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_reason_code_has_words_in_every_language(app):
    """Each failure code the database accepts and each hold reason has its own words, and
    every language has its own translation of them."""
    assert set(display.REASON_TEXTS) == set(PAYOUT_FAILURE_CODES) | set(payouts.HOLD_REASONS)
    with app.test_request_context():
        english = {code: display.reason_text(code) for code in display.REASON_TEXTS}
        assert len(set(english.values())) == len(english)
        assert display.reason_text(None) == display.reason_text("nonsense") == english["other"]
        for language in ("nb", "fi", "sv", "sl"):
            with force_locale(language):
                translated = {code: display.reason_text(code) for code in display.REASON_TEXTS}
            assert [code for code in english if translated[code] == english[code]] == [], (
                language)


# --- migration 0010 -------------------------------------------------------------------------

#: (method, status, failure_reason before 0010) -> (failure_code, failure_reason after it).
OLD_ROWS = {
    ("connect", "failed", "Stripe refused the transfer: No such destination: 'acct_gone'"):
        ("transfer_refused", "No such destination: 'acct_gone'"),
    ("connect", "unknown", "no clear answer from Stripe: Request timed out"):
        ("no_clear_answer", "Request timed out"),
    ("connect", "unknown", "transfer tr_9 at Stripe is 1799 EUR, not 1800 EUR: check it"):
        ("amount_differs", "transfer tr_9 at Stripe is 1799 EUR, not 1800 EUR: check it"),
    ("connect", "failed", "Stripe has no transfer for this payout, and its key has expired: "
                          "the money is owed again"): ("not_at_stripe", None),
    ("connect", "failed", "the transfer tr_7 was reversed at Stripe"):
        ("reversed_at_stripe", "tr_7"),
    ("sepa", "failed", "returned by the bank"): ("returned_by_bank", None),
    ("sepa", "failed", "AC04 account closed"): ("returned_by_bank", "AC04 account closed"),
    ("connect", "failed", "Ein Fehler, den niemand kennt"):
        ("other", "Ein Fehler, den niemand kennt"),
    ("connect", "sent", None): (None, None),
}


def test_migration_0010_maps_old_english_reasons_to_codes(empty_database):
    """Upgrading a database of revision 0009 turns each English sentence UPSS used to store
    into its code, keeping only the detail behind it; a failed SEPA payout's text was the
    bank's reason; any other text becomes ``other`` and is kept. Downgrading writes the
    sentences back."""
    from flask_migrate import downgrade, upgrade

    app = create_app(_base_config(empty_database, "http://127.0.0.1:9"))
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with app.app_context():
        upgrade(revision="0009_release_max_per_run")
        meta = sa.MetaData()
        meta.reflect(db.engine, only=["user", "payout_batch", "payout"])
        user, batch, payout = (meta.tables[t] for t in ("user", "payout_batch", "payout"))
        with db.engine.begin() as conn:
            conn.execute(user.insert().values(
                id=1, email="old@example.org", name="Old", password_hash="x",
                is_answerer=True, is_organizer=False, locale="", large_text=False,
                high_contrast=False, created_at=at))
            conn.execute(batch.insert().values(id=1, created_at=at, currency="EUR"))
            for n, (method, status, text) in enumerate(OLD_ROWS, start=1):
                conn.execute(payout.insert().values(
                    id=n, batch_id=1, answerer_id=1, amount_cents=1800, currency="EUR",
                    method=method, status=status, failure_reason=text, attempts=1,
                    created_at=at))
        upgrade()
        with db.engine.connect() as conn:
            after = [(code, detail) for code, detail in conn.execute(sa.text(
                "SELECT failure_code, failure_reason FROM payout ORDER BY id"))]
        assert after == list(OLD_ROWS.values())
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE payout SET failure_code = 'made_up' WHERE id = 1"))

        downgrade(revision="0009_release_max_per_run")
        with db.engine.connect() as conn:
            back = [text for (text,) in conn.execute(sa.text(
                "SELECT failure_reason FROM payout ORDER BY id"))]
        assert back == [text for _, _, text in OLD_ROWS]
        db.engine.dispose()
