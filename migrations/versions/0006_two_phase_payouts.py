"""two-phase payouts and refunds; Connect account state

Revision ID: 0006_two_phase_payouts
Revises: 0005_payment_checks
Create Date: 2026-11-26 14:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_two_phase_payouts'
down_revision = '0005_payment_checks'
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('sent', 'awaiting_bank', 'failed')"
NEW_STATUSES = "status IN ('sending', 'sent', 'unknown', 'awaiting_bank', 'failed')"


def upgrade():
    with op.batch_alter_table('answerer_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connect_details_submitted', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('connect_payouts_enabled', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('connect_requirements', sa.String(length=500), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('connect_updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('payout_failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('payouts_held_until', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payout_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', NEW_STATUSES)
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_payout_idempotency_key'), ['idempotency_key'])
        batch_op.create_index(batch_op.f('ix_payout_status'), ['status'], unique=False)
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refund_status', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('refund_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('refund_failure', sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f('ix_question_refund_status'), ['refund_status'], unique=False)


def downgrade():
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_question_refund_status'))
        batch_op.drop_column('refund_failure')
        batch_op.drop_column('refund_requested_at')
        batch_op.drop_column('refund_status')
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_status'))
        batch_op.drop_constraint(batch_op.f('uq_payout_idempotency_key'), type_='unique')
        batch_op.drop_column('last_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('idempotency_key')
        batch_op.drop_constraint(op.f('ck_payout_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', OLD_STATUSES)
    with op.batch_alter_table('answerer_profile', schema=None) as batch_op:
        batch_op.drop_column('payouts_held_until')
        batch_op.drop_column('payout_failures')
        batch_op.drop_column('connect_updated_at')
        batch_op.drop_column('connect_requirements')
        batch_op.drop_column('connect_payouts_enabled')
        batch_op.drop_column('connect_details_submitted')
