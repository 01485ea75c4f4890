"""members keep free space on each page so the purchase counter updates in place

Revision ID: 0016
Revises: 0015

Every earn adds one to `members.purchases` (migration 0015), an UPDATE of a row that is not
indexed by that column. With full pages each such UPDATE writes the new row version to
another page and a new entry into every index of `members`; with free space on the page,
PostgreSQL updates it in place (a HOT update: no index entries). Existing pages gain the
free space as they are rewritten (VACUUM FULL, or rows moving on update).
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE members SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE members RESET (fillfactor)")
