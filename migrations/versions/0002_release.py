"""release, offers, answers, tips, scheduler lease

Revision ID: 0002_release
Revises: 0001_foundation
Create Date: 2026-11-22 17:31:17.412609

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_release'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade():
    
    op.create_table('job_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('holder', sa.String(length=100), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_run'))
    )
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_run_job_id'), ['job_id'], unique=False)

    op.create_table('offpeak_window',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('weekday', sa.Integer(), nullable=False),
    sa.Column('start_minute', sa.Integer(), nullable=False),
    sa.Column('end_minute', sa.Integer(), nullable=False),
    sa.CheckConstraint('start_minute BETWEEN 0 AND 1439 AND end_minute BETWEEN 0 AND 1440 AND start_minute <> end_minute', name=op.f('ck_offpeak_window_minutes_range')),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_offpeak_window_weekday_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offpeak_window'))
    )
    op.create_table('scheduler_lease',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('holder', sa.String(length=100), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_lease'))
    )
    op.create_table('answerer_profile',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('languages', sa.String(length=40), nullable=False),
    sa.Column('available_from_minute', sa.Integer(), nullable=False),
    sa.Column('available_until_minute', sa.Integer(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('daily_limit', sa.Integer(), nullable=False),
    sa.Column('open_offer_limit', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint('daily_limit >= 0 AND open_offer_limit >= 0', name=op.f('ck_answerer_profile_limits')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_answerer_profile_user_id_user')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_answerer_profile'))
    )
    op.create_table('answer_draft',
    sa.Column('question_id', sa.Integer(), nullable=False),
    sa.Column('answerer_id', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['answerer_id'], ['user.id'], name=op.f('fk_answer_draft_answerer_id_user')),
    sa.ForeignKeyConstraint(['question_id'], ['question.id'], name=op.f('fk_answer_draft_question_id_question')),
    sa.PrimaryKeyConstraint('question_id', 'answerer_id', name=op.f('pk_answer_draft'))
    )
    op.create_table('message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['user.id'], name=op.f('fk_message_author_id_user')),
    sa.ForeignKeyConstraint(['question_id'], ['question.id'], name=op.f('fk_message_question_id_question')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message'))
    )
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_question_id'), ['question_id'], unique=False)

    op.create_table('offer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.Integer(), nullable=False),
    sa.Column('answerer_id', sa.Integer(), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("outcome IN ('open', 'claimed', 'declined', 'expired', 'withdrawn')", name=op.f('ck_offer_outcome_known')),
    sa.ForeignKeyConstraint(['answerer_id'], ['user.id'], name=op.f('fk_offer_answerer_id_user')),
    sa.ForeignKeyConstraint(['question_id'], ['question.id'], name=op.f('fk_offer_question_id_question')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offer'))
    )
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.create_index('ix_offer_answerer_offered_at', ['answerer_id', 'offered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_offer_question_id'), ['question_id'], unique=False)

    op.create_table('tip',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.Integer(), nullable=False),
    sa.Column('answerer_id', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('payment_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_tip_amount_positive')),
    sa.ForeignKeyConstraint(['answerer_id'], ['user.id'], name=op.f('fk_tip_answerer_id_user')),
    sa.ForeignKeyConstraint(['question_id'], ['question.id'], name=op.f('fk_tip_question_id_question')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip')),
    sa.UniqueConstraint('payment_intent_id', name=op.f('uq_tip_payment_intent_id'))
    )
    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_question_id'), ['question_id'], unique=False)

    with op.batch_alter_table('organizer_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=False, server_default=sa.text("'Europe/Oslo'")))
        batch_op.add_column(sa.Column('offer_hours', sa.Integer(), nullable=False, server_default=sa.text("12")))
        batch_op.add_column(sa.Column('lock_hours', sa.Integer(), nullable=False, server_default=sa.text("4")))
        batch_op.add_column(sa.Column('lock_hours_large', sa.Integer(), nullable=False, server_default=sa.text("8")))
        batch_op.add_column(sa.Column('large_price_cents', sa.Integer(), nullable=False, server_default=sa.text("10000")))
        batch_op.add_column(sa.Column('deadline_hours', sa.Integer(), nullable=False, server_default=sa.text("72")))
        batch_op.add_column(sa.Column('auto_accept_days', sa.Integer(), nullable=False, server_default=sa.text("3")))
        batch_op.add_column(sa.Column('urgent_hours', sa.Integer(), nullable=False, server_default=sa.text("12")))
        batch_op.add_column(sa.Column('release_cap_per_tick', sa.Integer(), nullable=False, server_default=sa.text("5")))

    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.add_column(sa.Column('commission_bps', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('answerer_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('offer_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('lock_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('answer_body', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('dispute_reason', sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column('stripe_refund_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('rating', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rating_comment', sa.String(length=2000), nullable=True))
        batch_op.create_check_constraint(op.f('ck_question_rating_range'),
                                         'rating IS NULL OR rating BETWEEN 1 AND 5')
        batch_op.create_index(batch_op.f('ix_question_answerer_id'), ['answerer_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_question_answerer_id_user'), 'user', ['answerer_id'], ['id'])




def downgrade():
    
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_question_answerer_id_user'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_question_answerer_id'))
        batch_op.drop_constraint(op.f('ck_question_rating_range'), type_='check')
        batch_op.drop_column('rating_comment')
        batch_op.drop_column('rating')
        batch_op.drop_column('stripe_refund_id')
        batch_op.drop_column('dispute_reason')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('answered_at')
        batch_op.drop_column('answer_body')
        batch_op.drop_column('lock_expires_at')
        batch_op.drop_column('offer_expires_at')
        batch_op.drop_column('answerer_id')
        batch_op.drop_column('deadline_at')
        batch_op.drop_column('commission_bps')

    with op.batch_alter_table('organizer_settings', schema=None) as batch_op:
        batch_op.drop_column('release_cap_per_tick')
        batch_op.drop_column('urgent_hours')
        batch_op.drop_column('auto_accept_days')
        batch_op.drop_column('deadline_hours')
        batch_op.drop_column('large_price_cents')
        batch_op.drop_column('lock_hours_large')
        batch_op.drop_column('lock_hours')
        batch_op.drop_column('offer_hours')
        batch_op.drop_column('timezone')

    with op.batch_alter_table('tip', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_question_id'))

    op.drop_table('tip')
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_offer_question_id'))
        batch_op.drop_index('ix_offer_answerer_offered_at')

    op.drop_table('offer')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_question_id'))

    op.drop_table('message')
    op.drop_table('answer_draft')
    op.drop_table('answerer_profile')
    op.drop_table('scheduler_lease')
    op.drop_table('offpeak_window')
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_run_job_id'))

    op.drop_table('job_run')

