"""disputes and reconciliation runs

Revision ID: 0007_money_at_stripe
Revises: 0006_two_phase_payouts
Create Date: 2026-11-26 15:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_money_at_stripe'
down_revision = '0006_two_phase_payouts'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunded_cents', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('payout_batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sepa_settled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('sepa_settled_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_payout_batch_sepa_settled_by_id_user'), 'user', ['sepa_settled_by_id'], ['id'])
    op.create_table(
        'stripe_dispute',
        sa.Column('id', sa.String(length=255), nullable=False),
        sa.Column('question_id', sa.Integer(), nullable=True),
        sa.Column('payment_intent_id', sa.String(length=255), nullable=False),
        sa.Column('amount_cents', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('status', sa.String(length=30), nullable=False),
        sa.Column('reason', sa.String(length=60), nullable=False),
        sa.Column('evidence_due_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['question_id'], ['question.id'], name=op.f('fk_stripe_dispute_question_id_question')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_dispute')),
    )
    with op.batch_alter_table('stripe_dispute', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_dispute_question_id'), ['question_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_dispute_status'), ['status'], unique=False)
    op.create_table(
        'reconciliation_run',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('checked_through', sa.BigInteger(), nullable=False),
        sa.Column('checked', sa.Integer(), nullable=False),
        sa.Column('differences', sa.Text(), nullable=False),
        sa.Column('stripe_balance', sa.Text(), nullable=False),
        sa.Column('ledger_balance', sa.Text(), nullable=False),
        sa.Column('error', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_run')),
    )


def downgrade():
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.drop_column('refunded_cents')
    with op.batch_alter_table('payout_batch', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_payout_batch_sepa_settled_by_id_user'), type_='foreignkey')
        batch_op.drop_column('sepa_settled_by_id')
        batch_op.drop_column('sepa_settled_at')
    op.drop_table('reconciliation_run')
    with op.batch_alter_table('stripe_dispute', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_dispute_status'))
        batch_op.drop_index(batch_op.f('ix_stripe_dispute_question_id'))
    op.drop_table('stripe_dispute')
