"""queue index: the queued questions, oldest paid first, for the release run's pages

PostgreSQL read the queue's first page through ``ix_question_paid_at`` and passed over every
question paid before the oldest queued one (86 000 rows of the bench's 100 000, 29–41 ms): its
estimate takes queued rows to be spread evenly over time. A partial index of the queued rows in
the page's order reads 200 rows (0.2 ms); ``ix_question_paid_at`` (the traffic page's windows)
becomes partial on ``paid_at IS NOT NULL``, which an order by ``paid_at`` without a condition on
it cannot use, so the planner cannot pick it for the queue again.

Revision ID: 0019_queue_index
Revises: 0018_income_marks
Create Date: 2026-11-27 15:30:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0019_queue_index'
down_revision = '0018_income_marks'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_question_paid_at', table_name='question')
    op.create_index('ix_question_paid_at', 'question', ['paid_at'], unique=False,
                    sqlite_where=sa.text("paid_at IS NOT NULL"),
                    postgresql_where=sa.text("paid_at IS NOT NULL"))
    op.create_index('ix_question_queue', 'question', ['paid_at', 'id'], unique=False,
                    sqlite_where=sa.text("status = 'queued'"),
                    postgresql_where=sa.text("status = 'queued'"))


def downgrade():
    op.drop_index('ix_question_queue', table_name='question',
                  sqlite_where=sa.text("status = 'queued'"),
                  postgresql_where=sa.text("status = 'queued'"))
    op.drop_index('ix_question_paid_at', table_name='question',
                  sqlite_where=sa.text("paid_at IS NOT NULL"),
                  postgresql_where=sa.text("paid_at IS NOT NULL"))
    op.create_index('ix_question_paid_at', 'question', ['paid_at'], unique=False)
