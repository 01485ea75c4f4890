"""settlement_book_obligations returns at once for postings that can book nothing

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from settlement.booking_sql import BOOK_OBLIGATIONS_V1, NOTHING_TO_BOOK_V1

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# As in 0004: past this many transfers the statement is planned for the actual array.
BULK_POSTING = 100


def _dollar(sql: str) -> str:
    assert "$sql$" not in sql
    return f"$sql${sql}$sql$"


def _function(guard: str | None) -> str:
    first = f"IF {guard} THEN RETURN; END IF;" if guard else ""
    return f"""
        CREATE OR REPLACE FUNCTION settlement_book_obligations(p_ids uuid[]) RETURNS void
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
        BEGIN
          {first}
          IF cardinality(p_ids) > {BULK_POSTING} THEN
            EXECUTE {_dollar(BOOK_OBLIGATIONS_V1.replace("p_ids", "$1"))} USING p_ids;
          ELSE
            {BOOK_OBLIGATIONS_V1};
          END IF;
        END $fn$
        """


def upgrade() -> None:
    op.execute(_function(NOTHING_TO_BOOK_V1))


def downgrade() -> None:
    op.execute(_function(None))  # 0004's function
