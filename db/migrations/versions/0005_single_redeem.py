"""the single redemption as one function

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from ledger.redeem_sql import BOOK_REDEEM_V1

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(BOOK_REDEEM_V1)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ledger_book_redeem")
