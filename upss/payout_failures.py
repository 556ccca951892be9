"""What a failed payout does, whatever its method (Stripe Connect or SEPA), and PayoutError.

A payout that was refused (Stripe refuses the transfer, the bank returns a SEPA payment) or
never made keeps its ``payout:<id>`` posting and gets the reversing transaction
``payout:<id>:reversal`` (``reverse_payout``): the payable balance ends where it was, and the
account statement shows the attempt and its undo. A refusal also pauses the answerer's
payouts (``pause_after_refusal``): one week, doubled by each refusal in a row, at most eight
weeks, so a broken account is not tried every batch; a payout that goes through clears it
(``clear_pause``). Why it failed is stored as a code with the detail behind it
(``record_failure``).

``upss.payouts`` (batches, Connect) and ``upss.sepa`` (the bank file) both use these. This
module imports neither, so ``payouts`` imports ``sepa`` and ``sepa`` never imports ``payouts``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from . import ledger
from .models import AnswererProfile, LedgerTransaction, Payout

#: The first pause after a refused payout; each further refusal in a row doubles it.
FIRST_PAUSE = timedelta(days=7)
MAX_PAUSE = timedelta(days=56)


class PayoutError(Exception):
    """A payout action that does not fit the payout or batch it is asked of."""


def reverse_payout(session: Session, payout: Payout, description: str) -> LedgerTransaction:
    """Post ``payout:<id>:reversal``, the undo of the payout's ``payout:<id>`` posting: the
    money is owed to the answerer again."""
    original = ledger.posted(session, f"payout:{payout.id}")
    if original is None:
        raise PayoutError(f"payout {payout.id} has no ledger posting to reverse")
    return ledger.reverse(session, original, f"payout:{payout.id}:reversal", description)


def record_failure(payout: Payout, code: str, detail: str | None = None) -> None:
    """Record why ``payout`` failed or is not confirmed: ``code`` (one of
    ``models.PAYOUT_FAILURE_CODES``; pages show it in the reader's language, never stored
    English) and the detail behind it for the organizer (Stripe's message, a transfer's id,
    the reason the bank gave), at most 500 characters, or None."""
    payout.failure_code = code
    payout.failure_reason = detail[:500] if detail else None


def pause_after_refusal(profile: AnswererProfile, now: datetime) -> None:
    """One more refusal in a row: the answerer's payouts pause until ``payouts_held_until``."""
    profile.payout_failures += 1
    profile.payouts_held_until = now + min(FIRST_PAUSE * 2 ** (profile.payout_failures - 1),
                                           MAX_PAUSE)


def clear_pause(profile: AnswererProfile) -> None:
    """A payout went through: the count of refusals in a row starts again from none."""
    profile.payout_failures = 0
    profile.payouts_held_until = None
