"""foundation: users, questions, stripe events, ledger

Revision ID: 0001_foundation
Revises: 
Create Date: 2026-11-22 17:19:07.507315

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001_foundation'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    
    op.create_table('ledger_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('balance_cents', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_account')),
    sa.UniqueConstraint('name', name=op.f('uq_ledger_account_name'))
    )
    op.create_table('ledger_transaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_transaction.id'], name=op.f('fk_ledger_transaction_reverses_id_ledger_transaction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transaction')),
    sa.UniqueConstraint('hash', name=op.f('uq_ledger_transaction_hash')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_ledger_transaction_idempotency_key')),
    sa.UniqueConstraint('prev_hash', name=op.f('uq_ledger_transaction_prev_hash'))
    )
    op.create_table('organizer_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('price_min_cents', sa.Integer(), nullable=False),
    sa.Column('price_max_cents', sa.Integer(), nullable=False),
    sa.Column('commission_bps', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('commission_bps BETWEEN 0 AND 10000', name=op.f('ck_organizer_settings_commission_range')),
    sa.CheckConstraint('price_min_cents > 0 AND price_max_cents >= price_min_cents', name=op.f('ck_organizer_settings_price_bounds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organizer_settings'))
    )
    op.create_table('stripe_event',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('object_id', sa.String(length=255), nullable=False),
    sa.Column('outcome', sa.String(length=255), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_event'))
    )
    op.create_table('user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('is_answerer', sa.Boolean(), nullable=False),
    sa.Column('is_organizer', sa.Boolean(), nullable=False),
    sa.Column('locale', sa.String(length=5), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user')),
    sa.UniqueConstraint('email', name=op.f('uq_user_email'))
    )
    op.create_table('ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount_cents', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.CheckConstraint('amount_cents <> 0', name=op.f('ck_ledger_entry_amount_nonzero')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_account.id'], name=op.f('fk_ledger_entry_account_id_ledger_account')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'], name=op.f('fk_ledger_entry_transaction_id_ledger_transaction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entry'))
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entry_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entry_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('question',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asker_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=150), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('language', sa.String(length=5), nullable=False),
    sa.Column('topic', sa.String(length=40), nullable=False),
    sa.Column('price_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('payment_attempts', sa.Integer(), nullable=False),
    sa.Column('payment_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'awaiting_payment', 'queued', 'offered', 'claimed', 'answered', 'clarifying', 'closed', 'disputed', 'refunded')", name=op.f('ck_question_status_known')),
    sa.CheckConstraint('price_cents > 0', name=op.f('ck_question_price_positive')),
    sa.ForeignKeyConstraint(['asker_id'], ['user.id'], name=op.f('fk_question_asker_id_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_question')),
    sa.UniqueConstraint('payment_intent_id', name=op.f('uq_question_payment_intent_id'))
    )
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_question_asker_id'), ['asker_id'], unique=False)
        batch_op.create_index('ix_question_status_paid_at', ['status', 'paid_at'], unique=False)

    op.create_table('question_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_kind', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=False),
    sa.Column('to_status', sa.String(length=20), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['user.id'], name=op.f('fk_question_event_actor_id_user')),
    sa.ForeignKeyConstraint(['question_id'], ['question.id'], name=op.f('fk_question_event_question_id_question')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_question_event'))
    )
    with op.batch_alter_table('question_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_question_event_question_id'), ['question_id'], unique=False)

    create_ledger_guards()


#: The ledger is append-only: the database itself refuses UPDATE and DELETE of its rows.
APPEND_ONLY_TABLES = ("ledger_transaction", "ledger_entry")


def create_ledger_guards():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME;
            END $$""")
        for table in APPEND_ONLY_TABLES:
            op.execute(f"""
                CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION ledger_append_only()""")
        # Checked at COMMIT, when all of a transaction's entries are in: they must sum to zero.
        op.execute("""
            CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE total bigint; n integer;
            BEGIN
                SELECT coalesce(sum(amount_cents), 0), count(*) INTO total, n
                  FROM ledger_entry WHERE transaction_id = NEW.transaction_id;
                IF total <> 0 OR n < 2 THEN
                    RAISE EXCEPTION 'ledger transaction % is unbalanced: % entries sum to %',
                        NEW.transaction_id, n, total;
                END IF;
                RETURN NULL;
            END $$""")
        op.execute("""
            CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            EXECUTE FUNCTION ledger_transaction_balanced()""")
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(f"""
                    CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table}
                    BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END""")


def drop_ledger_guards():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry")
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ledger_transaction_balanced()")
        op.execute("DROP FUNCTION IF EXISTS ledger_append_only()")
    else:
        for table in APPEND_ONLY_TABLES:
            for operation in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")


def downgrade():
    drop_ledger_guards()
    with op.batch_alter_table('question_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_question_event_question_id'))

    op.drop_table('question_event')
    with op.batch_alter_table('question', schema=None) as batch_op:
        batch_op.drop_index('ix_question_status_paid_at')
        batch_op.drop_index(batch_op.f('ix_question_asker_id'))

    op.drop_table('question')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entry_transaction_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_entry_account_id'))

    op.drop_table('ledger_entry')
    op.drop_table('user')
    op.drop_table('stripe_event')
    op.drop_table('organizer_settings')
    op.drop_table('ledger_transaction')
    op.drop_table('ledger_account')

