"""SEPA payouts: IBANs, the EPC character set, each batch's pain.001 bank file, and the
organizer's marks on it (sent to the bank, paid by the bank, a payment returned).

Design overview
---------------
* **IBANs** are checked with schwifty (structure, country format, check digits) and kept in
  compact upper-case form (``validate_iban``): when an answerer applies, and again when a
  batch pays them (an answerer without a valid IBAN is held, see ``upss.payouts``).
* **One file per batch.** ``upss.payouts.run_batch`` posts each SEPA payout (payable →
  ``bank_clearing``, status ``awaiting_bank``) and asks ``build_file`` for ONE
  pain.001.001.03 credit-transfer file (sepaxml) holding all of them, each with the
  end-to-end id ``UPSS-PAYOUT-<id>``; the debtor is ``UPSS_ORGANIZER_NAME``/``_IBAN``/``_BIC``.
* **Checked before it is stored.** The file must pass the pain.001.001.03 XSD
  (``validate_pain001``) and its control sum must equal both its amounts and the sum of the
  batch's SEPA payouts (``sepa_total_cents``); otherwise ``InvalidSepaFile`` is raised and the
  batch (made in the caller's transaction) is not committed: nothing is paid.
* **The EPC set.** Every name and remittance text is reduced to the EPC basic Latin character
  set first (``epc_text``): the XSD accepts any Unicode, but banks need only accept that set.
* **The organizer's marks**, each with its audit-log row (``upss.audit``), written here in the
  same transaction: ``mark_file_sent`` (the file was given to the bank: its payouts become
  ``sent``), ``mark_file_settled`` (the bank paid it: what it moved out of ``bank_clearing``
  leaves ``bank``, once) and ``mark_payout_returned`` (the bank returned one payment: the
  payout is failed and reversed — from ``bank`` if the file was settled — so the money is
  owed again, and the answerer's payouts pause, see ``upss.payout_failures``).

Like every service, these flush and never commit. This module does not import
``upss.payouts`` (which imports it); what both need is in ``upss.payout_failures``.
"""

from __future__ import annotations

import functools
import unicodedata
import xml.etree.ElementTree as ET  # noqa: S405 - only parses pain.001 files UPSS wrote itself
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from importlib import resources

from flask import current_app
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sepaxml import SepaTransfer
from sqlalchemy import select
from sqlalchemy.orm import Session
from text_unidecode import unidecode  # installed with sepaxml, which runs it on these fields too

from . import audit, ledger, notifications
from .models import AnswererProfile, Payout, PayoutBatch, User
from .payout_failures import PayoutError, pause_after_refusal, record_failure, reverse_payout

PAIN_001_NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
#: The end-to-end id of payout ``<id>`` in its file is this prefix and the id.
END_TO_END_PREFIX = "UPSS-PAYOUT-"


class InvalidIBAN(ValueError):
    """The text is not a valid IBAN (structure, country format or check digits)."""


class InvalidSepaFile(PayoutError):
    """A batch's SEPA file fails its XSD or its control sum: it is not stored, nothing is
    paid."""


class SepaStateError(PayoutError):
    """A mark that does not fit the file or payment (no file, a file not marked sent, a
    payout that is not a SEPA payout)."""


def validate_iban(text: str) -> str:
    """The IBAN in ``text`` in compact upper-case form, or InvalidIBAN."""
    try:
        return IBAN(text or "").compact
    except SchwiftyException as exc:
        raise InvalidIBAN(f"{text!r} is not a valid IBAN: {exc}") from exc


# --- the EPC basic Latin character set -------------------------------------------------------

#: The EPC basic Latin character set (EPC217-08), the only characters every SEPA bank must
#: accept in a pain.001 file.
EPC_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                           "/-?:().,'+ ")
#: Longest creditor and debtor name (Nm) that EPC's SCT implementation guidelines allow; the
#: XSD's own limit is 140.
SEPA_NAME_LENGTH = 70
#: Longest unstructured remittance text (Ustrd), the XSD's Max140Text.
SEPA_REMITTANCE_LENGTH = 140
#: Latin letters that NFKD does not split into a base letter and a combining mark.
_LATIN_LETTERS = str.maketrans({
    "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ẞ": "SS",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ł": "l", "Ł": "L",
    "ı": "i", "ħ": "h", "Ħ": "H", "ŧ": "t", "Ŧ": "T",
})
#: Signs outside the set that keep a meaning in it; any other character becomes a space.
_SIGNS = str.maketrans({"&": "+", "@": "(at)", '"': "'", "[": "(", "]": ")", "{": "(",
                        "}": ")"})


def epc_text(value: str, max_length: int) -> str:
    """``value`` reduced to the EPC basic Latin character set of EPC217-08 ("SEPA
    Requirements for an Extended Character Set"): ``a-z A-Z 0-9 / - ? : ( ) . , ' +`` and
    space, the set every SEPA bank must accept; at most ``max_length`` characters.

    * Latin letters lose their diacritics (NFKD, combining marks dropped: é → e, č → c,
      å → a); the letters NFKD keeps whole map to base letters (ø → o, æ → ae, ß → ss,
      ł → l, đ/ð → d, œ → oe, þ → th).
    * Other scripts are transliterated with text-unidecode (Cyrillic, Greek, CJK...:
      Иван → Ivan, 北京 → Bei Jing), as sepaxml itself does to these fields.
    * ``&`` → ``+``, ``@`` → ``(at)``, ``"`` → ``'``, brackets and braces → parentheses;
      every other character outside the set (``< > = _ ! * %``, control characters,
      emoji...) becomes a space.
    * Runs of spaces collapse to one, the ends are stripped, and the text is cut at
      ``max_length`` (then stripped again).

    The result may be empty (nothing usable in ``value``): the caller chooses a fallback,
    since the XSD needs at least one character.
    """
    text = unicodedata.normalize("NFKD", value or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.translate(_LATIN_LETTERS)
    text = "".join(ch if ch.isascii() else unidecode(ch) for ch in text)
    text = text.translate(_SIGNS)
    text = "".join(ch if ch in EPC_CHARACTERS else " " for ch in text)
    return " ".join(text.split())[:max_length].rstrip()


# --- the pain.001.001.03 file ----------------------------------------------------------------

def build_file(payments: Iterable[tuple[Payout, str]], currency: str, now: datetime) -> str:
    """One pain.001.001.03 credit-transfer file for ``(payout, creditor name)`` pairs, checked
    against the XSD and its control sum against the payouts' amounts; ``InvalidSepaFile``
    otherwise."""
    payments = list(payments)
    cfg = current_app.config
    transfer = SepaTransfer({
        "name": epc_text(cfg["UPSS_ORGANIZER_NAME"], SEPA_NAME_LENGTH) or "UPSS",
        "IBAN": cfg["UPSS_ORGANIZER_IBAN"],
        "BIC": cfg["UPSS_ORGANIZER_BIC"],
        "batch": True,
        "currency": currency,
    }, schema="pain.001.001.03")
    for payout, name in payments:
        transfer.add_payment({
            # A name with nothing left in the EPC set (only emoji, say) still needs one.
            "name": (epc_text(name, SEPA_NAME_LENGTH)
                     or f"UPSS answerer {payout.answerer_id}"),
            "IBAN": payout.iban,
            "amount": payout.amount_cents,  # sepaxml takes integer cents
            "currency": payout.currency,
            "execution_date": now.date(),
            "description": epc_text(f"UPSS payout {payout.id}", SEPA_REMITTANCE_LENGTH),
            # EPC characters already; MsgId and PmtInfId (sepaxml's) are digits, hex and "-".
            "endtoend_id": f"{END_TO_END_PREFIX}{payout.id}",
        })
    xml = transfer.export(validate=False).decode("utf-8")  # validated below, schema cached
    _check_file(xml, sum(payout.amount_cents for payout, _ in payments))
    return xml


def _check_file(xml: str, expected_cents: int) -> None:
    import xmlschema  # imported late, as sepaxml does: it patches ElementTree on import

    try:
        validate_pain001(xml)
    except xmlschema.XMLSchemaValidationError as exc:
        raise InvalidSepaFile(f"the SEPA file does not pass the pain.001.001.03 schema: "
                              f"{exc.reason}") from exc
    try:
        total = sepa_total_cents(xml)
    except ValueError as exc:
        raise InvalidSepaFile(f"the SEPA file does not add up: {exc}") from exc
    if total != expected_cents:
        raise InvalidSepaFile(f"the SEPA file's control sum is {total} cents, its payouts "
                              f"{expected_cents} cents")


def _xml_root(xml: str) -> ET.Element:
    # The files are UPSS's own (made by sepaxml); the expat under ElementTree refuses entity
    # expansion attacks, and no external entities are fetched.
    return ET.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)  # noqa: S314


def _cents(value: str) -> int:
    cents = Decimal(value.strip()) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"amount {value!r} has more than two decimals")
    return int(cents)


def sepa_total_cents(xml: str) -> int:
    """Total of a pain.001.001.03 file in cents: the sum of its InstdAmt, checked against
    the group header's CtrlSum (ValueError if they differ)."""
    root = _xml_root(xml)
    ns = {"p": PAIN_001_NS}
    total = sum(_cents(amount.text or "") for amount in root.iterfind(".//p:InstdAmt", ns))
    control = root.find("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", ns)
    if control is not None and _cents(control.text or "") != total:
        raise ValueError(f"control sum {control.text} differs from the amounts ({total} cents)")
    return total


def file_amounts(xml: str) -> dict[str, int]:
    """End-to-end id -> cents of every credit transfer in a pain.001.001.03 file."""
    ns = {"p": PAIN_001_NS}
    return {tx.findtext("p:PmtId/p:EndToEndId", "", ns):
            _cents(tx.findtext("p:Amt/p:InstdAmt", "0", ns))
            for tx in _xml_root(xml).iterfind(".//p:CdtTrfTxInf", ns)}


@functools.cache
def _pain001_schema():
    import xmlschema  # imported late, as sepaxml does: it patches ElementTree on import

    path = resources.files("sepaxml") / "schemas" / "pain.001.001.03.xsd"
    with resources.as_file(path) as xsd:
        return xmlschema.XMLSchema(str(xsd))


def validate_pain001(xml: str) -> None:
    """Raise xmlschema's XMLSchemaValidationError unless ``xml`` is a valid pain.001.001.03."""
    _pain001_schema().validate(xml)


# --- the organizer's marks -------------------------------------------------------------------

def mark_file_sent(session: Session, batch: PayoutBatch, organizer: User,
                   now: datetime) -> int:
    """The organizer gave the batch's SEPA file to the bank: its ``awaiting_bank`` payouts
    become ``sent`` (no other batch's); who and when are recorded once, and each mark in the
    audit log. Returns how many payouts changed; ``SepaStateError`` if the batch has no file."""
    if not batch.sepa_xml:
        raise SepaStateError(f"payout batch {batch.id} has no SEPA file")
    before = {"sepa_marked_sent_at": batch.sepa_marked_sent_at}
    if batch.sepa_marked_sent_at is None:
        batch.sepa_marked_sent_at = now
        batch.sepa_marked_sent_by_id = organizer.id
    changed = 0
    for payout in session.scalars(select(Payout).where(
            Payout.batch_id == batch.id, Payout.status == "awaiting_bank")):
        payout.status = "sent"
        notifications.enqueue(session, payout.answerer, "payout_sent",
                              notifications.about_payout(payout, now), now)
        changed += 1
    audit.record(session, organizer, "mark SEPA file sent", f"payout_batch:{batch.id}",
                 before, {"sepa_marked_sent_at": batch.sepa_marked_sent_at,
                          "payouts_sent": changed})
    session.refresh(batch, ["payouts"])
    return changed


def mark_file_settled(session: Session, batch: PayoutBatch, organizer: User,
                      now: datetime) -> int:
    """The bank has paid the batch's file: what the file moved out of ``bank_clearing`` now
    leaves the organizer's ``bank`` account (once), with its audit-log row. Returns the cents
    settled (0 the second time); ``SepaStateError`` (nothing recorded) if the file was not
    marked sent."""
    if batch.sepa_marked_sent_at is None:
        raise SepaStateError(f"payout batch {batch.id}'s file was not marked sent")
    total = 0
    if batch.sepa_settled_at is None:
        total = sum(p.amount_cents for p in batch.payouts if p.method == "sepa"
                    and p.status == "sent")
        if total:
            ledger.post(session, f"sepa-settled:batch:{batch.id}",
                        f"SEPA file of batch {batch.id} paid by the bank",
                        [(ledger.BANK_CLEARING, total), (ledger.BANK, -total)], batch.currency)
        batch.sepa_settled_at = now
        batch.sepa_settled_by_id = organizer.id
    audit.record(session, organizer, "mark SEPA file settled", f"payout_batch:{batch.id}",
                 {}, {"sepa_settled_at": batch.sepa_settled_at, "total_cents": total})
    return total


def mark_payout_returned(session: Session, payout: Payout, organizer: User, reason: str,
                         now: datetime) -> bool:
    """The bank returned one SEPA payment of a file marked sent: the payout is failed
    (``returned_by_bank``, with the reason the bank gave as its detail) and reversed (before
    settlement back into ``bank_clearing``, after it into ``bank``), so the money is owed
    again, and the answerer's payouts pause; recorded in the audit log. False
    (nothing done or recorded) if it was failed already; ``SepaStateError`` if it is not a
    SEPA payout or its file was not marked sent."""
    if payout.method != "sepa":
        raise SepaStateError(f"payout {payout.id} is not a SEPA payout")
    if payout.batch.sepa_marked_sent_at is None:
        raise SepaStateError(f"payout {payout.id}'s file was not marked sent: the bank has "
                             f"nothing to return")
    if payout.status == "failed":
        return False
    before = {"status": payout.status}
    payout.status = "failed"
    record_failure(payout, "returned_by_bank", reason)
    notifications.enqueue(session, payout.answerer, "payout_failed",
                          notifications.about_payout(payout, now, "returned_by_bank"), now)
    description = f"SEPA payout {payout.id} returned by the bank on {now.date().isoformat()}"
    if payout.batch.sepa_settled_at is None:
        reverse_payout(session, payout, description)
    else:  # the file was settled: the money comes back into the organizer's bank account
        ledger.post(session, f"payout:{payout.id}:reversal", description,
                    [(ledger.BANK, payout.amount_cents),
                     (ledger.payable_account(payout.answerer_id), -payout.amount_cents)],
                    payout.currency)
    pause_after_refusal(session.get(AnswererProfile, payout.answerer_id), now)
    audit.record(session, organizer, "mark SEPA payment returned", f"payout:{payout.id}",
                 before, {"status": payout.status, "failure_code": payout.failure_code,
                          "reason": payout.failure_reason})
    return True
