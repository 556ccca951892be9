"""vetting, audit log, payouts

Revision ID: 0003_vetting_payouts
Revises: 0002_release
Create Date: 2026-11-22 17:59:01.573081

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_vetting_payouts'
down_revision = '0002_release'
branch_labels = None
depends_on = None


def upgrade():
    
    op.create_table('answerer_application',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('basis', sa.String(length=12), nullable=False),
    sa.Column('birth_year', sa.Integer(), nullable=True),
    sa.Column('languages', sa.String(length=40), nullable=False),
    sa.Column('topics', sa.String(length=200), nullable=False),
    sa.Column('available_from_minute', sa.Integer(), nullable=False),
    sa.Column('available_until_minute', sa.Integer(), nullable=False),
    sa.Column('daily_limit', sa.Integer(), nullable=False),
    sa.Column('yearly_ceiling_cents', sa.BigInteger(), nullable=True),
    sa.Column('payout_method', sa.String(length=10), nullable=False),
    sa.Column('iban', sa.String(length=34), nullable=True),
    sa.Column('account_holder', sa.String(length=70), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('rejection_reason', sa.String(length=2000), nullable=True),
    sa.Column('verification_method', sa.String(length=200), nullable=True),
    sa.Column('verified_on', sa.Date(), nullable=True),
    sa.Column('verification_note', sa.String(length=2000), nullable=True),
    sa.CheckConstraint("basis IN ('age', 'disability', 'both')", name=op.f('ck_answerer_application_basis_known')),
    sa.CheckConstraint("payout_method IN ('sepa', 'connect')", name=op.f('ck_answerer_application_payout_method_known')),
    sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name=op.f('ck_answerer_application_status_known')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['user.id'], name=op.f('fk_answerer_application_decided_by_id_user')),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_answerer_application_user_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_answerer_application'))
    )
    with op.batch_alter_table('answerer_application', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_answerer_application_user_id'), ['user_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('target', sa.String(length=100), nullable=False),
    sa.Column('before', sa.Text(), nullable=False),
    sa.Column('after', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['user.id'], name=op.f('fk_audit_log_actor_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_table('payout_batch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('sepa_xml', sa.Text(), nullable=True),
    sa.Column('sepa_marked_sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sepa_marked_sent_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_payout_batch_created_by_id_user')),
    sa.ForeignKeyConstraint(['sepa_marked_sent_by_id'], ['user.id'], name=op.f('fk_payout_batch_sepa_marked_sent_by_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_batch'))
    )
    op.create_table('payout',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('answerer_id', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('stripe_transfer_id', sa.String(length=255), nullable=True),
    sa.Column('iban', sa.String(length=34), nullable=True),
    sa.Column('failure_reason', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('sent', 'awaiting_bank', 'failed')", name=op.f('ck_payout_status_known')),
    sa.CheckConstraint('amount_cents > 0', name=op.f('ck_payout_amount_positive')),
    sa.ForeignKeyConstraint(['answerer_id'], ['user.id'], name=op.f('fk_payout_answerer_id_user')),
    sa.ForeignKeyConstraint(['batch_id'], ['payout_batch.id'], name=op.f('fk_payout_batch_id_payout_batch')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout'))
    )
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_answerer_id'), ['answerer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payout_batch_id'), ['batch_id'], unique=False)

    with op.batch_alter_table('answerer_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('topics', sa.String(length=200), nullable=False, server_default=sa.text("''")))
        batch_op.add_column(sa.Column('yearly_ceiling_cents', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('payout_method', sa.String(length=10), nullable=False, server_default=sa.text("'sepa'")))
        batch_op.add_column(sa.Column('iban', sa.String(length=34), nullable=True))
        batch_op.add_column(sa.Column('account_holder', sa.String(length=70), nullable=True))
        batch_op.add_column(sa.Column('stripe_account_id', sa.String(length=255), nullable=True))



    create_audit_guards()


def create_audit_guards():
    """The audit log, like the ledger, refuses UPDATE and DELETE in the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION ledger_append_only()""")
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log
                BEGIN SELECT RAISE(ABORT, 'audit log rows are append-only'); END""")


def drop_audit_guards():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    else:
        for operation in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{operation}")


def downgrade():
    drop_audit_guards()
    
    with op.batch_alter_table('answerer_profile', schema=None) as batch_op:
        batch_op.drop_column('stripe_account_id')
        batch_op.drop_column('account_holder')
        batch_op.drop_column('iban')
        batch_op.drop_column('payout_method')
        batch_op.drop_column('yearly_ceiling_cents')
        batch_op.drop_column('topics')

    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_batch_id'))
        batch_op.drop_index(batch_op.f('ix_payout_answerer_id'))

    op.drop_table('payout')
    op.drop_table('payout_batch')
    op.drop_table('audit_log')
    with op.batch_alter_table('answerer_application', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_answerer_application_user_id'))

    op.drop_table('answerer_application')

