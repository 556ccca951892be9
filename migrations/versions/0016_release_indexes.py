"""release indexes: an answerer's open work and newest offer, each found by one index probe

Revision ID: 0016_release_indexes
Revises: 0015_list_indexes
Create Date: 2026-12-02 11:00:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0016_release_indexes'
down_revision = '0015_list_indexes'
branch_labels = None
depends_on = None

#: (index, table, columns), as in ``upss/models.py``; ``upss/release.py`` reads them.
INDEXES = (
    ('ix_question_answerer_id_status', 'question', ['answerer_id', 'status']),
    ('ix_offer_answerer_id_id', 'offer', ['answerer_id', 'id']),
)


def upgrade():
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
