"""The audit log is complete: every organizer POST leaves an audit row, written by the service
that made the change (the organizer's forms with valid values come from the fuzz test)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from tests.flows.test_fuzz_forms import organizer_forms
from tests.flows.test_payouts import IBAN_NO, earn
from upss.extensions import db
from upss.models import AuditLog

ORGANIZER_BLUEPRINTS = ("organizer", "money")


def organizer_post_rules(app) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules()
            if "POST" in rule.methods and rule.endpoint.split(".")[0] in ORGANIZER_BLUEPRINTS}


def test_every_organizer_post_route_leaves_an_audit_row(app, world):
    forms = organizer_forms(app, world)
    adapter = app.url_map.bind("localhost")
    covered = {adapter.match(spec.url, method="POST", return_rule=True)[0].rule
               for spec in forms}
    assert organizer_post_rules(app) <= covered, "an organizer POST route has no check here"
    # Someone due a payout now, so "run a payout batch" makes one (with nobody due it changes
    # nothing and records nothing).
    app.config.update(UPSS_PAYOUT_AFTER_DAYS=0, UPSS_PAYOUT_MINIMUM_CENTS=1)
    earn(app, world, world.answerer(iban=IBAN_NO), 3000)

    for spec in forms:
        with app.app_context():
            before = db.session.scalar(select(func.count()).select_from(AuditLog))
        response = spec.client.post(spec.url, data={
            "csrf_token": spec.token, **spec.text, **spec.other})
        assert response.status_code in (200, 302), (spec.name, response.status_code)
        with app.app_context():
            rows = db.session.scalars(select(AuditLog).where(AuditLog.id > before)
                                      .order_by(AuditLog.id)).all()
            assert rows, f"{spec.name}: no audit row"
            assert all(r.actor_id is not None for r in rows), spec.name


def test_a_settings_change_is_recorded_with_before_and_after(app, world):
    forms = {spec.name: spec for spec in organizer_forms(app, world)}
    spec = forms["organizer: settings"]
    response = spec.client.post(spec.url, data={
        "csrf_token": spec.token, **spec.text, **{**spec.other, "offer_hours": "7"}})
    assert response.status_code == 302
    with app.app_context():
        row = db.session.scalar(select(AuditLog).where(AuditLog.action == "change settings"))
        before, after = json.loads(row.before), json.loads(row.after)
    assert before["offer_hours"] != 7 and after["offer_hours"] == 7
    assert after["windows"] and before["commission_bps"] == after["commission_bps"]
