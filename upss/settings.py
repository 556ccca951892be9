"""The organizer's business settings: stored in the database, defaults from config."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import OrganizerSettings


@dataclass(frozen=True)
class Settings:
    currency: str
    price_min_cents: int
    price_max_cents: int
    commission_bps: int


def current(session: Session) -> Settings:
    """The settings in force: the stored row, else the configured defaults."""
    row = session.scalar(select(OrganizerSettings).order_by(OrganizerSettings.id).limit(1))
    if row is not None:
        return Settings(row.currency, row.price_min_cents, row.price_max_cents,
                        row.commission_bps)
    cfg = current_app.config
    return Settings(cfg["UPSS_CURRENCY"], cfg["UPSS_PRICE_MIN_CENTS"],
                    cfg["UPSS_PRICE_MAX_CENTS"], cfg["UPSS_COMMISSION_BPS"])
