"""payout.failure_code: why a payout failed, as a code pages translate

Revision ID: 0010_payout_failure_codes
Revises: 0009_release_max_per_run
Create Date: 2026-11-28 10:00:00

Before this, ``payout.failure_reason`` held an English sentence, shown as it was. Now the code
says why (pages show it in the reader's language) and ``failure_reason`` keeps only the detail
behind it (Stripe's message, the transfer's id, the reason the bank gave). Existing rows: the
sentences the code wrote are mapped to their codes; a failed SEPA payout's text was the reason
the bank gave (typed by the organizer); any other text becomes ``other``, kept as the detail.

"""
import re

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_payout_failure_codes'
down_revision = '0009_release_max_per_run'
branch_labels = None
depends_on = None

CODES = ('transfer_refused', 'no_clear_answer', 'amount_differs', 'not_at_stripe',
         'reversed_at_stripe', 'returned_by_bank', 'other')
FAILURE_CODE_KNOWN = "failure_code IN (" + ", ".join(f"'{code}'" for code in CODES) + ")"

#: The English sentences upss wrote before this revision: (pattern, code, the detail's group).
OLD_TEXTS = (
    (re.compile(r"Stripe refused the transfer: (.*)", re.S), 'transfer_refused', 1),
    (re.compile(r"no clear answer from Stripe: (.*)", re.S), 'no_clear_answer', 1),
    (re.compile(r"transfer (\S+) at Stripe is (.*): check it", re.S), 'amount_differs', 0),
    (re.compile(r"Stripe has no transfer for this payout, and its key has expired: the money "
                r"is owed again"), 'not_at_stripe', None),
    (re.compile(r"the transfer (\S+) was reversed at Stripe"), 'reversed_at_stripe', 1),
    (re.compile(r"returned by the bank"), 'returned_by_bank', None),
)

payout = sa.table('payout', sa.column('id', sa.Integer), sa.column('method', sa.String),
                  sa.column('status', sa.String), sa.column('failure_code', sa.String),
                  sa.column('failure_reason', sa.String))


def code_for(text, method, status):
    """(code, detail) for an old ``failure_reason`` text."""
    for pattern, code, group in OLD_TEXTS:
        found = pattern.fullmatch(text)
        if found:
            return code, (found.group(group) or None) if group is not None else None
    if method == 'sepa' and status == 'failed':  # only the bank's return fails a SEPA payout
        return 'returned_by_bank', text
    return 'other', text


def upgrade():
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_code', sa.String(length=40), nullable=True))
        batch_op.create_check_constraint('failure_code_known', FAILURE_CODE_KNOWN)
    bind = op.get_bind()
    rows = bind.execute(sa.select(payout.c.id, payout.c.method, payout.c.status,
                                  payout.c.failure_reason)
                        .where(payout.c.failure_reason.is_not(None))).all()
    for row_id, method, status, text in rows:
        code, detail = code_for(text, method, status)
        bind.execute(payout.update().where(payout.c.id == row_id)
                     .values(failure_code=code, failure_reason=detail))


#: The English sentence written back for each code on downgrade (``{}``: the detail).
SENTENCES = {
    'transfer_refused': "Stripe refused the transfer: {}",
    'no_clear_answer': "no clear answer from Stripe: {}",
    'amount_differs': "{}",
    'not_at_stripe': ("Stripe has no transfer for this payout, and its key has expired: the "
                      "money is owed again"),
    'reversed_at_stripe': "the transfer {} was reversed at Stripe",
    'returned_by_bank': "{}",
    'other': "{}",
}


def downgrade():
    bind = op.get_bind()
    rows = bind.execute(sa.select(payout.c.id, payout.c.failure_code, payout.c.failure_reason)
                        .where(payout.c.failure_code.is_not(None))).all()
    for row_id, code, detail in rows:
        text = SENTENCES[code].format(detail or '') or (
            "returned by the bank" if code == 'returned_by_bank' else None)
        bind.execute(payout.update().where(payout.c.id == row_id)
                     .values(failure_reason=text[:500] if text else None))
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payout_failure_code_known'), type_='check')
        batch_op.drop_column('failure_code')
