"""posting hooks as SQL functions; settlement subscribes; the single earn as one function

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from ledger.earn_sql import BOOK_EARN_V1
from settlement.booking import PERIOD_LOCK
from settlement.booking_sql import book_obligations_function_v1

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(book_obligations_function_v1())
    # The ledger's hooks, with settlement subscribed. A module that subscribes later
    # re-creates them with its own call added.
    op.execute(
        f"""
        CREATE FUNCTION ledger_posting_begin() RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
          PERFORM pg_advisory_xact_lock_shared({PERIOD_LOCK});  -- settlement's period lock
        END $fn$
        """
    )
    op.execute(
        """
        CREATE FUNCTION ledger_posting_booked(p_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
          PERFORM settlement_book_obligations(p_ids);
        END $fn$
        """
    )
    op.execute(BOOK_EARN_V1)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ledger_book_earn")
    op.execute("DROP FUNCTION IF EXISTS ledger_posting_booked(uuid[])")
    op.execute("DROP FUNCTION IF EXISTS ledger_posting_begin()")
    op.execute("DROP FUNCTION IF EXISTS settlement_book_obligations(uuid[])")
