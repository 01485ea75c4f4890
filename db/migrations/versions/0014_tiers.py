"""coalition tiers: versioned policy, member tiers and their history

Revision ID: 0014
Revises: 0013

(Reserved in the numbering so parallel work chains; filled by its change.)
"""

from alembic import op  # noqa: F401

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
