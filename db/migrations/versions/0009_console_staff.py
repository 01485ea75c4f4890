"""console: staff accounts and their server-side sessions

- `staff_accounts`: console users (email, role, Argon2 hash); disabled, never deleted, so the
  audit log's `staff:<email>` actors keep meaning someone.
- `console_sessions`: one row per signed-in browser, keyed by the SHA-256 of the cookie's
  token (a stolen table holds no usable cookie), with its CSRF token, its last use (idle
  timeout) and its start (absolute timeout). Signing out, or disabling the staff member,
  ends the row.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE staff_accounts (
            id uuid PRIMARY KEY,
            email text NOT NULL,
            role text NOT NULL CHECK (role IN ('admin', 'finance', 'marketing', 'support')),
            password_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            disabled_at timestamptz,
            CONSTRAINT staff_accounts_email_lower CHECK (email = lower(email))
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX ux_staff_accounts_email ON staff_accounts (email)")
    op.execute(
        """
        CREATE TABLE console_sessions (
            token_hash text PRIMARY KEY,
            staff_id uuid NOT NULL REFERENCES staff_accounts (id),
            csrf_token text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now(),
            ended_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_console_sessions_staff ON console_sessions (staff_id)"
        " WHERE ended_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE console_sessions")
    op.execute("DROP TABLE staff_accounts")
