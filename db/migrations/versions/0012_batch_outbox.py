"""the batch writes its outbox events from its staging rows

Revision ID: 0012
Revises: 0011

`ledger_posting_booked` gains `p_events_written boolean DEFAULT false`: when true, the caller
has written the `transfer.booked` events of `p_ids` itself and the hook skips
`outbox_transfers_booked` (settlement's obligations are booked as before). A batch chunk
(`ledger.bulk`) writes its events in the statement that inserts its transfers, from the rows
that statement returns, instead of having them read back by id, sorted and given a UUIDv7 each
(most of the hook's cost for a 10,000-row chunk). The SQL-function postings call the hook with
one argument and are unchanged.

A new argument is a new signature: the one-argument function is dropped first (a second
overload would make the one-argument call ambiguous). Self-contained: literal copies of the hook
as this migration installs it and as 0007 did (for the downgrade).
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

POSTING_BOOKED_V3 = """
CREATE OR REPLACE FUNCTION ledger_posting_booked(
  p_ids uuid[], p_events_written boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM settlement_book_obligations(p_ids);
  IF NOT p_events_written THEN
    PERFORM outbox_transfers_booked(p_ids);
  END IF;
END $fn$
"""

# 0007's body.
POSTING_BOOKED_V2 = """
CREATE OR REPLACE FUNCTION ledger_posting_booked(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM settlement_book_obligations(p_ids);
  PERFORM outbox_transfers_booked(p_ids);
END $fn$
"""


def upgrade() -> None:
    op.execute("DROP FUNCTION ledger_posting_booked(uuid[])")
    op.execute(POSTING_BOOKED_V3)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_posting_booked(uuid[], boolean)")
    op.execute(POSTING_BOOKED_V2)
