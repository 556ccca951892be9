"""clarifying index: an answerer's questions waiting for their clarification, in id order

The answerer's queue listed every question whose asker wants more detail at once; it is now
a keyset page, oldest first (``upss.lists.awaiting_clarification``). Through
``ix_question_answerer_id_status`` PostgreSQL would sort the answerer's rows for each page; a
partial index of the questions in ``clarifying`` reads them in order.

Revision ID: 0021_clarifying_index
Revises: 0020_in_progress_index
Create Date: 2026-11-28 00:30:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0021_clarifying_index'
down_revision = '0020_in_progress_index'
branch_labels = None
depends_on = None

CLARIFYING = "status = 'clarifying'"


def upgrade():
    op.create_index('ix_question_clarifying', 'question', ['answerer_id', 'id'], unique=False,
                    sqlite_where=sa.text(CLARIFYING), postgresql_where=sa.text(CLARIFYING))


def downgrade():
    op.drop_index('ix_question_clarifying', table_name='question',
                  sqlite_where=sa.text(CLARIFYING), postgresql_where=sa.text(CLARIFYING))
