"""rename organizer_settings.release_cap_per_tick to release_max_per_run

Revision ID: 0009_release_max_per_run
Revises: 0008_user_sessions
Create Date: 2026-11-27 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_release_max_per_run'
down_revision = '0008_user_sessions'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('organizer_settings', schema=None) as batch_op:
        batch_op.alter_column('release_cap_per_tick', new_column_name='release_max_per_run',
                              existing_type=sa.Integer(), existing_nullable=False,
                              existing_server_default=sa.text("5"))


def downgrade():
    with op.batch_alter_table('organizer_settings', schema=None) as batch_op:
        batch_op.alter_column('release_max_per_run', new_column_name='release_cap_per_tick',
                              existing_type=sa.Integer(), existing_nullable=False,
                              existing_server_default=sa.text("5"))
