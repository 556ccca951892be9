"""Names and remittance text in SEPA files are reduced to the EPC basic Latin character set
(EPC217-08: ``a-z A-Z 0-9 / - ? : ( ) . , ' +`` and space), the set every bank must accept.

The pain.001.001.03 XSD takes any Unicode in a name, so a file can pass it and still be
refused by a bank: the flow test checks both the XSD and every character of the file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - parses the files the code under test wrote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import _base_config
from tests.flows.test_payouts import IBAN_FI, IBAN_NO, IBAN_SE, IBAN_SI, NS, earn, later, run_batch
from upss import sepa
from upss.extensions import db
from upss.models import AnswererProfile, PayoutBatch

EPC = re.compile(r"[A-Za-z0-9/\-?:().,'+ ]*")

ORGANIZER = 'Ørsted & Søn <"UPSS"> = @hq'


@pytest.fixture
def app_config(database_url, localstripe_url):
    """The organizer's (debtor's) name is free text from the environment too."""
    return {**_base_config(database_url, localstripe_url), "UPSS_ORGANIZER_NAME": ORGANIZER}


@pytest.mark.parametrize(("value", "max_length", "expected"), [
    ("Ærøskøbing & Søn", 70, "AEroskobing + Son"),
    ('Zoë "Q" <Smith> = @home', 70, "Zoe 'Q' Smith (at)home"),
    ("Čebelarstvo Šuštar Žiga", 70, "Cebelarstvo Sustar Ziga"),
    ("Groß Straße", 70, "Gross Strasse"),
    ("Łódź", 70, "Lodz"),
    ("Đorđe Þórðarson, Œuvre", 70, "Dorde THordarson, OEuvre"),
    ("Иван Петров", 70, "Ivan Petrov"),
    ("Ψυχή Ζωή", 70, "Psukhe Zoe"),
    ("北京 🙂", 70, "Bei Jing"),
    ("O'Brien-Smith (Jr.) 1/2: ok?", 70, "O'Brien-Smith (Jr.) 1/2: ok?"),
    ("Ａｂｃ＆ﬁ", 70, "Abc+fi"),
    ("  tab\there\nnew\x00line  ", 70, "tab here new line"),
    ("«Anna» [Lee] {x} a_b!*%#$", 70, "Anna (Lee) (x) a b"),
    ("x" * 200, 70, "x" * 70),
    ("Straße @ Ølstykke & Co " * 3, 70,
     "Strasse (at) Olstykke + Co Strasse (at) Olstykke + Co Strasse (at) Ols"),
    ("a" * 69 + " b", 70, "a" * 69),
    ("Ø" * 200, 140, "O" * 140),
    ("🙂🙂", 70, ""),
    ('<>= "" ', 70, "''"),
    ("<>=", 70, ""),
    ("", 70, ""),
])
def test_text_is_reduced_to_the_epc_set(value, max_length, expected):
    assert sepa.epc_text(value, max_length) == expected


@settings(max_examples=100, deadline=None, database=None)
@given(value=st.text(), max_length=st.integers(min_value=1, max_value=140))
def test_any_text_comes_out_in_the_epc_set_and_fits(value, max_length):
    """Any Unicode: only EPC characters, no more than ``max_length``, no stray spaces, and
    cleaning it again changes nothing."""
    cleaned = sepa.epc_text(value, max_length)
    assert EPC.fullmatch(cleaned)
    assert len(cleaned) <= max_length
    assert cleaned == " ".join(cleaned.split())
    assert sepa.epc_text(cleaned, max_length) == cleaned


def test_a_sepa_file_for_unusual_names_validates_and_holds_only_epc_characters(app, world):
    """Answerers named with ``& < > " = @``, other scripts, only emoji or a name that grows
    past 70 characters are paid in one file that passes the pain.001.001.03 XSD, and every
    name and remittance text in it (every text at all, in fact) is in the EPC set."""
    long_name = "Straße @ Ølstykke & Co " * 3  # 69 characters, more than 70 once cleaned
    holders = {
        "Ærøskøbing & Søn <\"AS\"> = @home": (IBAN_NO, "AEroskobing + Son 'AS' (at)home"),
        "Иван Петров": (IBAN_FI, "Ivan Petrov"),
        "Ψυχή Ζωή & 北京": (IBAN_SE, "Psukhe Zoe + Bei Jing"),
        long_name: (IBAN_SI,
                    "Strasse (at) Olstykke + Co Strasse (at) Olstykke + Co Strasse (at) Ols"),
        "🙂🙂": (IBAN_NO, None),  # nothing left: a placeholder naming the answerer
    }
    people = {world.answerer(iban=iban, account_holder=holder): expected
              for holder, (iban, expected) in holders.items()}
    for person in people:
        earn(app, world, person, 2000)
    batch_id = run_batch(app, later())
    with app.app_context():
        batch = db.session.get(PayoutBatch, batch_id)
        xml = batch.sepa_xml
        payout_of = {p.answerer_id: p.id for p in batch.payouts}
        # Only the file is cleaned: the answerer's name is kept as they gave it.
        assert db.session.get(AnswererProfile, next(iter(people))).account_holder[0] == "Æ"

    sepa.validate_pain001(xml)
    assert sepa.sepa_total_cents(xml) == 5 * 1800

    root = ET.fromstring(xml.encode())  # noqa: S314
    names = [node.text for node in root.iterfind(".//p:Nm", NS)]
    remittances = [node.text for node in root.iterfind(".//p:Ustrd", NS)]
    assert len(names) == 2 + len(people) and len(remittances) == len(people)
    for text in names + remittances:
        assert text and EPC.fullmatch(text), text
    assert all(len(name) <= 70 for name in names)
    for node in root.iter():  # the IBANs, amounts, dates and ids too
        assert EPC.fullmatch((node.text or "").strip()), (node.tag, node.text)

    debtor = "Orsted + Son 'UPSS' (at)hq"
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:InitgPty/p:Nm", namespaces=NS) == debtor
    assert root.findtext(".//p:PmtInf/p:Dbtr/p:Nm", namespaces=NS) == debtor
    rows = {tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS): (
        tx.findtext("p:Cdtr/p:Nm", namespaces=NS),
        tx.findtext("p:RmtInf/p:Ustrd", namespaces=NS))
        for tx in root.iterfind(".//p:CdtTrfTxInf", NS)}
    for person, expected in people.items():
        payout_id = payout_of[person]
        assert rows[f"UPSS-PAYOUT-{payout_id}"] == (
            expected or f"UPSS answerer {person}", f"UPSS payout {payout_id}")
