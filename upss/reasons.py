"""Stored reason codes in plain words: why a payout failed or is not confirmed
(``Payout.failure_code``, one of ``models.PAYOUT_FAILURE_CODES``) and why an answerer's payouts
are held (``payouts.HOLD_REASONS``). Reasons are stored as codes and put into the reader's
language here, in one place, for pages (``upss.web.display``) and messages
(``upss.notifications``) alike; a stored detail (Stripe's message, the bank's reason) is shown
to the organizer next to it, as it came. Imports nothing of ``upss``."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

REASON_TEXTS = {
    # payout failures
    "transfer_refused": _l("Stripe refused the transfer"),
    "no_clear_answer": _l("Stripe has not answered clearly yet: it is being checked"),
    "amount_differs": _l("Stripe's transfer is for a different amount: it needs checking"),
    "not_at_stripe": _l("Stripe never made the transfer"),
    "reversed_at_stripe": _l("The transfer was taken back at Stripe"),
    "returned_by_bank": _l("The bank returned the payment"),
    "other": _l("The payout did not go through"),
    # payout holds
    "connect_not_set_up": _l("Payouts through Stripe are not set up yet"),
    "connect_details_needed": _l("Stripe needs more details before payouts"),
    "no_valid_iban": _l("No valid bank account number (IBAN) on the profile"),
    "paused_after_refusals": _l("Payouts are paused after a refused payout"),
    "inactive": _l("Suspended: no payouts until reinstated"),
}


def reason_text(code: str | None) -> str:
    """A stored reason code in the current language (the page reader's, or a message's
    recipient's inside ``force_locale``); an unknown code reads as ``other``."""
    return str(REASON_TEXTS.get(code or "other", REASON_TEXTS["other"]))
