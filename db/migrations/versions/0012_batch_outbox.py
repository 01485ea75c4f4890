"""the batch writes its outbox events from its staging rows

Revision ID: 0012
Revises: 0011

(Reserved in the numbering so parallel work chains; filled by its change.)
"""

from alembic import op  # noqa: F401

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
