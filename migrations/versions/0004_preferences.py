"""display preferences

Revision ID: 0004_preferences
Revises: 0003_vetting_payouts
Create Date: 2026-11-22 18:12:18.089868

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_preferences'
down_revision = '0003_vetting_payouts'
branch_labels = None
depends_on = None


def upgrade():
    
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('large_text', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('high_contrast', sa.Boolean(), nullable=False, server_default=sa.false()))




def downgrade():
    
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('high_contrast')
        batch_op.drop_column('large_text')


