"""settlement_book_obligations returns at once for postings that can book nothing

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from settlement.booking_sql import NOTHING_TO_BOOK_V1, book_obligations_function_v1

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(book_obligations_function_v1(NOTHING_TO_BOOK_V1))


def downgrade() -> None:
    op.execute(book_obligations_function_v1())  # 0004's function
