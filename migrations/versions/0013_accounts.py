"""accounts: confirmed addresses, deletion with a grace period, data exports

Revision ID: 0013_accounts
Revises: 0012_notification_choices
Create Date: 2026-12-01 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0013_accounts'
down_revision = '0012_notification_choices'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('user', sa.Column('email_confirmed_at', sa.DateTime(timezone=True),
                                    nullable=True))
    op.add_column('user', sa.Column('deletion_requested_at', sa.DateTime(timezone=True),
                                    nullable=True))
    op.add_column('user', sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_user_deletion_requested_at'), 'user', ['deletion_requested_at'],
                    unique=False)
    # Accounts made before confirmation existed were used as they were: count them confirmed.
    op.execute('UPDATE "user" SET email_confirmed_at = created_at')
    op.create_table(
        'data_export',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('content', sa.Text(), nullable=True),
        sa.Column('size_bytes', sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'ready', 'failed')",
                           name=op.f('ck_data_export_status_known')),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'],
                                name=op.f('fk_data_export_user_id_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_data_export')),
    )
    op.create_index(op.f('ix_data_export_user_id'), 'data_export', ['user_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_data_export_user_id'), table_name='data_export')
    op.drop_table('data_export')
    op.drop_index(op.f('ix_user_deletion_requested_at'), table_name='user')
    op.drop_column('user', 'deleted_at')
    op.drop_column('user', 'deletion_requested_at')
    op.drop_column('user', 'email_confirmed_at')
