"""Stripe Connect for answerers: their connected account, Stripe's hosted onboarding, its state.

Built on what API version 2026-10-28 documents: ``accounts.create`` with ``controller`` (Stripe
collects the requirements and shows the Express dashboard; the platform pays Stripe's fees and
bears losses) and the ``transfers`` capability requested; ``account_links.create`` with
``type=account_onboarding`` (single use, short-lived: a refresh URL gets a new one); and the
``account.updated`` event, which Stripe sends to the platform's *Connect* webhook endpoint
(its own signing secret, ``UPSS_STRIPE_CONNECT_WEBHOOK_SECRET``). An answerer is paid only when
the account's ``transfers`` capability is active (``AnswererProfile.connect_payouts_enabled``).
Like every service, these functions flush and never commit. ``GatewayError`` (Stripe did not
answer or refused) is re-exported for pages: an error they show, imported from here.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .installation import idempotency_key
from .models import AnswererProfile, User, utcnow
from .stripe_gateway import ConnectAccount, WebhookEvent, gateway, read_account
from .stripe_gateway import GatewayError as GatewayError  # an error pages show: re-exported

#: What an answerer's Connect set-up is, for pages (translated there).
STATES = ("not_connect", "not_set_up", "details_needed", "payouts_enabled")


class NotAConnectAnswerer(Exception):
    """The user is not an answerer paid through Stripe Connect."""


def state(profile: AnswererProfile | None) -> str:
    """One of ``STATES``."""
    if profile is None or profile.payout_method != "connect":
        return "not_connect"
    if not profile.stripe_account_id:
        return "not_set_up"
    return "payouts_enabled" if profile.connect_payouts_enabled else "details_needed"


def _apply(profile: AnswererProfile, account: ConnectAccount, now: datetime) -> None:
    profile.connect_details_submitted = account.details_submitted
    profile.connect_payouts_enabled = account.transfers_active
    profile.connect_requirements = ",".join(account.currently_due)[:500]
    profile.connect_updated_at = now


def _connect_profile(session: Session, answerer: User) -> AnswererProfile:
    profile = session.get(AnswererProfile, answerer.id)
    if profile is None or profile.payout_method != "connect":
        raise NotAConnectAnswerer(f"user {answerer.id} is not paid through Stripe Connect")
    return profile


def onboarding_link(session: Session, answerer: User, *, return_url: str,
                    refresh_url: str, now: datetime | None = None) -> str:
    """The URL of Stripe's hosted onboarding for ``answerer``, creating their connected
    account on first use (idempotency key per answerer, so a retry never makes a second)."""
    profile = _connect_profile(session, answerer)
    if not profile.stripe_account_id:
        account = gateway().create_connect_account(
            email=answerer.email, country=current_app.config["UPSS_CONNECT_COUNTRY"],
            metadata={"answerer_id": answerer.id},
            idempotency_key=idempotency_key(session, "connect", "account", answerer.id))
        profile.stripe_account_id = account.id
        _apply(profile, account, now or utcnow())
        session.flush()
    return gateway().create_account_link(profile.stripe_account_id, refresh_url=refresh_url,
                                         return_url=return_url)


def refresh(session: Session, answerer: User, now: datetime | None = None) -> str:
    """Ask Stripe for the account's state now (the answerer is back from onboarding; the
    event may not have arrived yet); returns the new ``state``."""
    profile = _connect_profile(session, answerer)
    if profile.stripe_account_id:
        _apply(profile, gateway().retrieve_connect_account(profile.stripe_account_id),
               now or utcnow())
        session.flush()
    return state(profile)


def account_updated(session: Session, event: WebhookEvent) -> str:
    """``account.updated`` at the Connect endpoint: store what the account can do now."""
    account = read_account(event.data)
    profile = session.scalar(select(AnswererProfile).where(
        AnswererProfile.stripe_account_id == account.id).with_for_update())
    if profile is None:
        return "ignored: no answerer has this account"
    _apply(profile, account, utcnow())
    session.flush()
    return "applied: account " + state(profile).replace("_", " ")
