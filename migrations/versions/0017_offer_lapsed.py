"""offer outcome "lapsed": a claim that ended before its answer (lock ran out, or suspended)

The answerer's saved drafts list (``upss.lists.lapsed_drafts``) then reads only their lapsed
claims, not every claim they ever made. Existing rows: a claimed offer whose question is no
longer held by that answerer and was not answered by them is lapsed.

Revision ID: 0017_offer_lapsed
Revises: 0016_release_indexes
Create Date: 2026-11-27 12:00:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0017_offer_lapsed'
down_revision = '0016_release_indexes'
branch_labels = None
depends_on = None

OLD_OUTCOMES = "outcome IN ('open', 'claimed', 'declined', 'expired', 'withdrawn')"
NEW_OUTCOMES = "outcome IN ('open', 'claimed', 'declined', 'expired', 'withdrawn', 'lapsed')"


def upgrade():
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_offer_outcome_known'), type_='check')
        batch_op.create_check_constraint('outcome_known', NEW_OUTCOMES)
    # Claimed, and the question went back to the queue (or on to someone else) before this
    # answerer answered it: their claim lapsed. One claim of theirs that is still theirs (the
    # question is held or was answered by them) stays claimed.
    op.execute("""
        UPDATE offer SET outcome = 'lapsed'
        WHERE outcome = 'claimed' AND EXISTS (
            SELECT 1 FROM question q WHERE q.id = offer.question_id
            AND (q.answerer_id IS NULL OR q.answerer_id <> offer.answerer_id
                 OR q.status IN ('queued', 'refunded') AND q.answered_at IS NULL))
    """)


def downgrade():
    op.execute("UPDATE offer SET outcome = 'claimed' WHERE outcome = 'lapsed'")
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_offer_outcome_known'), type_='check')
        batch_op.create_check_constraint('outcome_known', OLD_OUTCOMES)
