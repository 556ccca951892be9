"""installation id; asking Stripe about unconfirmed payments

Revision ID: 0005_payment_checks
Revises: 0004_preferences
Create Date: 2026-11-26 13:50:00

"""
import secrets
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_payment_checks'
down_revision = '0004_preferences'
branch_labels = None
depends_on = None


def upgrade():
    installation = op.create_table(
        'installation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('installation_id', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_installation')),
        sa.UniqueConstraint('installation_id', name=op.f('uq_installation_installation_id')),
    )
    # Generated once here, never in a request's transaction (see upss/installation.py).
    op.bulk_insert(installation, [{'id': 1, 'installation_id': f'upss-{secrets.token_hex(8)}',
                                   'created_at': datetime.now(UTC)}])
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('payment_check_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('payment_checks', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('payment_checks_ended_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_question_payment_check_due_at'), ['payment_check_due_at'], unique=False)


def downgrade():
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_question_payment_check_due_at'))
        batch_op.drop_column('payment_checks_ended_at')
        batch_op.drop_column('payment_checks')
        batch_op.drop_column('payment_check_due_at')
        batch_op.drop_column('payment_started_at')
    op.drop_table('installation')
