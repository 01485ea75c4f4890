"""posting hooks as SQL functions; settlement subscribes; the single earn as one function

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from ledger.earn_sql import BOOK_EARN_V1
from settlement.booking import PERIOD_LOCK
from settlement.booking_sql import BOOK_OBLIGATIONS_V1

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# Past this many transfers (a bulk import) the statement is planned for the actual array;
# below it the cached generic plan saves the ~2 ms of planning a single posting would pay.
BULK_POSTING = 100


def _dollar(sql: str) -> str:
    assert "$sql$" not in sql
    return f"$sql${sql}$sql$"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION settlement_book_obligations(p_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
          IF cardinality(p_ids) > {BULK_POSTING} THEN
            EXECUTE {_dollar(BOOK_OBLIGATIONS_V1.replace("p_ids", "$1"))} USING p_ids;
          ELSE
            {BOOK_OBLIGATIONS_V1};
          END IF;
        END $fn$
        """
    )
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
