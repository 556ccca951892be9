"""in-progress index: each answerer's questions in progress, with their price and commission

The release run counts each answerer's open work (offered, claimed) and sums the shares of
the questions they hold (in progress: offered, claimed, answered, clarifying, disputed), for
every active answerer. Through ``ix_question_answerer_id_status`` PostgreSQL read all of an
answerer's questions and filtered the statuses (about 86 rows each at the bench's 100 000
questions: 13 us a count), then visited the table for the prices (20 us a sum). A partial
index of the questions in progress, with the price and the frozen commission, answers both
from the index alone: 3 and 5 us (``upss.release._room_statement``, 1 000 answerers).

Revision ID: 0020_in_progress_index
Revises: 0019_queue_index
Create Date: 2026-11-27 22:10:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0020_in_progress_index'
down_revision = '0019_queue_index'
branch_labels = None
depends_on = None

IN_PROGRESS = "status IN ('offered', 'claimed', 'answered', 'clarifying', 'disputed')"


def upgrade():
    op.create_index('ix_question_in_progress', 'question',
                    ['answerer_id', 'status', 'price_cents', 'commission_bps'], unique=False,
                    sqlite_where=sa.text(IN_PROGRESS), postgresql_where=sa.text(IN_PROGRESS))


def downgrade():
    op.drop_index('ix_question_in_progress', table_name='question',
                  sqlite_where=sa.text(IN_PROGRESS), postgresql_where=sa.text(IN_PROGRESS))
