"""funded bonus points: parties, BONUS transfers linked to their earn, budgets and limits enforced in the booking

Revision ID: 0015
Revises: 0014

(Reserved in the numbering so parallel work chains; filled by its change.)
"""

from alembic import op  # noqa: F401

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
