"""list indexes: every keyset-paginated list has an index matching its filter and order

Revision ID: 0015_list_indexes
Revises: 0014_ledger_chain_v2
Create Date: 2026-12-02 10:00:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0015_list_indexes'
down_revision = '0014_ledger_chain_v2'
branch_labels = None
depends_on = None

#: (index, table, columns), as in ``upss/models.py``; the lists are in ``upss/lists.py``.
INDEXES = (
    ('ix_user_name_id', 'user', ['name', 'id']),
    ('ix_question_asker_id_id', 'question', ['asker_id', 'id']),
    ('ix_question_status_id', 'question', ['status', 'id']),
    ('ix_offer_answerer_id_outcome_question_id', 'offer',
     ['answerer_id', 'outcome', 'question_id']),
    ('ix_answerer_application_status_id', 'answerer_application', ['status', 'id']),
    ('ix_payout_answerer_id_id', 'payout', ['answerer_id', 'id']),
    ('ix_notification_user_id_id', 'notification', ['user_id', 'id']),
)


def upgrade():
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
