"""campaigns: versions, budget slots, member usage; the coalition's time zone

Revision ID: 0013
Revises: 0012

(Reserved in the numbering so parallel work chains; filled by its change.)
"""

from alembic import op  # noqa: F401

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
