"""notification choices: the daily digest, reading messages on the site, quiet hours, reminders

Revision ID: 0012_notification_choices
Revises: 0011_notifications
Create Date: 2026-11-30 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0012_notification_choices'
down_revision = '0011_notifications'
branch_labels = None
depends_on = None

OLD_STATES = "status IN ('pending', 'sent', 'failed', 'skipped')"
NEW_STATES = "status IN ('pending', 'sent', 'failed', 'skipped', 'digest', 'digested')"


def upgrade():
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.create_index('ix_job_run_job_id_started_at', ['job_id', 'started_at'],
                              unique=False)
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('read_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(batch_op.f('ck_notification_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', NEW_STATES)
        batch_op.create_index('ix_notification_user_id_read_at', ['user_id', 'read_at'],
                              unique=False)
    with op.batch_alter_table('notification_preference', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_notification_preference_mode_known'),
                                 type_='check')
        batch_op.create_check_constraint('mode_known', "mode IN ('now', 'digest', 'off')")
    op.add_column('user', sa.Column('digest_hour', sa.Integer(), nullable=False,
                                    server_default='8'))
    op.add_column('answerer_profile', sa.Column('messages_outside_hours', sa.Boolean(),
                                                nullable=False, server_default=sa.false()))
    op.add_column('question', sa.Column('lock_reminded_for', sa.DateTime(timezone=True),
                                        nullable=True))
    op.add_column('question', sa.Column('accept_reminded_for', sa.DateTime(timezone=True),
                                        nullable=True))


def downgrade():
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.drop_index('ix_job_run_job_id_started_at')
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of these tables would drop
    # and re-create tables that others point at, which SQLite's foreign keys refuse.
    op.drop_column('question', 'accept_reminded_for')
    op.drop_column('question', 'lock_reminded_for')
    op.drop_column('answerer_profile', 'messages_outside_hours')
    op.drop_column('user', 'digest_hour')
    op.execute("UPDATE notification_preference SET mode = 'now' WHERE mode = 'digest'")
    with op.batch_alter_table('notification_preference', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_notification_preference_mode_known'),
                                 type_='check')
        batch_op.create_check_constraint('mode_known', "mode IN ('now', 'off')")
    op.execute("UPDATE notification SET status = 'pending' WHERE status = 'digest'")
    op.execute("UPDATE notification SET status = 'sent' WHERE status = 'digested'")
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_user_id_read_at')
        batch_op.drop_constraint(batch_op.f('ck_notification_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', OLD_STATES)
        batch_op.drop_column('read_at')
