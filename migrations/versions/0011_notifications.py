"""notifications: the outbox of messages and each user's choice per kind

Revision ID: 0011_notifications
Revises: 0010_payout_failure_codes
Create Date: 2026-11-29 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011_notifications'
down_revision = '0010_payout_failure_codes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'notification',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claim_token', sa.String(length=40), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed', 'skipped')",
                           name=op.f('ck_notification_status_known')),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'],
                                name=op.f('fk_notification_user_id_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification')),
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_user_id'), ['user_id'], unique=False)
        batch_op.create_index('ix_notification_status_next_attempt_at',
                              ['status', 'next_attempt_at'], unique=False)
    op.create_table(
        'notification_preference',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('mode', sa.String(length=10), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("mode IN ('now', 'off')",
                           name=op.f('ck_notification_preference_mode_known')),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'],
                                name=op.f('fk_notification_preference_user_id_user')),
        sa.PrimaryKeyConstraint('user_id', 'kind', name=op.f('pk_notification_preference')),
    )


def downgrade():
    op.drop_table('notification_preference')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_status_next_attempt_at')
        batch_op.drop_index(batch_op.f('ix_notification_user_id'))
    op.drop_table('notification')
