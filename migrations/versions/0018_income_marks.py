"""income marks: each answerer's running income, so the release run reads two rows per answerer

``income_mark`` (``upss.models.IncomeMark``) holds, per answerer, one row per ledger transaction
that credited their payable account (not a reversal) with the running total in (time, id)
order. ``ledger.post`` keeps it; this migration fills it from the ledger as it stands.

Revision ID: 0018_income_marks
Revises: 0017_offer_lapsed
Create Date: 2026-11-27 15:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0018_income_marks'
down_revision = '0017_offer_lapsed'
branch_labels = None
depends_on = None

#: The same statement as ``upss.ledger.REBUILD_INCOME_MARKS`` at this revision (a migration
#: keeps its own copy: it must not change when the app does).
FILL = """
INSERT INTO income_mark (answerer_id, created_at, transaction_id, credited_cents, total_cents)
SELECT answerer_id, created_at, transaction_id, credited,
       SUM(credited) OVER (PARTITION BY answerer_id ORDER BY created_at, transaction_id
                           ROWS UNBOUNDED PRECEDING)
FROM (SELECT CAST(substr(a.name, 18) AS INTEGER) AS answerer_id, t.created_at,
             t.id AS transaction_id, -SUM(e.amount_cents) AS credited
      FROM ledger_entry e
      JOIN ledger_account a ON a.id = e.account_id
      JOIN ledger_transaction t ON t.id = e.transaction_id
      WHERE a.name LIKE 'payable:answerer:%' AND e.amount_cents < 0
        AND t.reverses_id IS NULL
      GROUP BY a.name, t.created_at, t.id) credits
"""


def upgrade():
    op.create_table(
        'income_mark',
        sa.Column('answerer_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('transaction_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('credited_cents', sa.BigInteger(), nullable=False),
        sa.Column('total_cents', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'],
                                name=op.f('fk_income_mark_transaction_id_ledger_transaction')),
        sa.PrimaryKeyConstraint('answerer_id', 'created_at', 'transaction_id',
                                name=op.f('pk_income_mark')),
    )
    op.execute(FILL)


def downgrade():
    op.drop_table('income_mark')
