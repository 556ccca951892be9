"""ledger chain v2: hash versions, checks with checkpoints, indexes for flat ledger and
traffic pages

Revision ID: 0014_ledger_chain_v2
Revises: 0013_accounts
Create Date: 2026-11-27 09:00:00

Existing transactions keep hash version 1 (the server default) and keep verifying. On
PostgreSQL a statement trigger refuses TRUNCATE of the ledger tables (row triggers do not see
it). Plain ``op`` calls, not batch mode: a batch would re-create ``ledger_transaction`` on
SQLite and lose its append-only triggers.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0014_ledger_chain_v2'
down_revision = '0013_accounts'
branch_labels = None
depends_on = None

LEDGER_TABLES = ("ledger_transaction", "ledger_entry", "ledger_account")
#: The traffic page's windows (``upss.charts``): (index, table, column).
WINDOW_INDEXES = (
    ("ix_question_event_at", "question_event", "at"),
    ("ix_question_paid_at", "question", "paid_at"),
    ("ix_question_answered_at", "question", "answered_at"),
    ("ix_offer_offered_at", "offer", "offered_at"),
)


def upgrade():
    op.add_column('ledger_transaction', sa.Column('hash_version', sa.SmallInteger(),
                                                  server_default='1', nullable=False))
    op.create_table(
        'ledger_check',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('state', sa.String(length=12), nullable=False),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('through_transaction_id', sa.Integer(), nullable=True),
        sa.Column('through_hash', sa.String(length=64), nullable=True),
        sa.Column('transactions_checked', sa.Integer(), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=True),
        sa.Column('problems', sa.Text(), nullable=False),
        sa.Column('totals', sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('full', 'new')", name=op.f('ck_ledger_check_kind_known')),
        sa.CheckConstraint("state IN ('requested', 'running', 'done')",
                           name=op.f('ck_ledger_check_state_known')),
        sa.ForeignKeyConstraint(['requested_by_id'], ['user.id'],
                                name=op.f('fk_ledger_check_requested_by_id_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_check')),
    )
    op.create_index(op.f('ix_ledger_check_state'), 'ledger_check', ['state'], unique=False)
    op.create_table(
        'ledger_verified_balance',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('balance_cents', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ['account_id'], ['ledger_account.id'],
            name=op.f('fk_ledger_verified_balance_account_id_ledger_account')),
        sa.PrimaryKeyConstraint('account_id', name=op.f('pk_ledger_verified_balance')),
    )
    op.create_index('ix_ledger_account_open_name', 'ledger_account', ['name'], unique=False,
                    sqlite_where=sa.text('balance_cents <> 0'),
                    postgresql_where=sa.text('balance_cents <> 0'))
    op.create_index('ix_ledger_entry_account_id_id', 'ledger_entry', ['account_id', 'id'],
                    unique=False)
    for name, table, column in WINDOW_INDEXES:
        op.create_index(name, table, [column], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for table in LEDGER_TABLES:
            op.execute(f"""
                CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()""")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in LEDGER_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    for name, table, _column in reversed(WINDOW_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index('ix_ledger_entry_account_id_id', table_name='ledger_entry')
    op.drop_index('ix_ledger_account_open_name', table_name='ledger_account')
    op.drop_table('ledger_verified_balance')
    op.drop_index(op.f('ix_ledger_check_state'), table_name='ledger_check')
    op.drop_table('ledger_check')
    op.drop_column('ledger_transaction', 'hash_version')
