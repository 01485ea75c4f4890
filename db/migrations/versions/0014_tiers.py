"""coalition tiers: versioned policy, member tiers and their history

Revision ID: 0014
Revises: 0013

- `tier_policies`: every version of the coalition's tier policy (append-only; the highest
  version is in force). `funding` is a JSON array of `{"partner_id": uuid | null, "share":
  "0.5"}` (null: the operator; empty: the earning partner pays the tier bonus).
- `tier_policy_tiers`: a version's tiers in ascending order of threshold (`position` 0 is the
  lowest).
- `coalition_settings.tiers_revision`: bumped in the transaction that sets a policy, so a
  process keeps the policy in memory and reloads it only when the revision it reads moved.
- `member_tiers`: a member's current tier (a member without a tier has no row);
  `below_since` is when it was first found below its tier's threshold (the grace period
  runs from there), null while it qualifies.
- `member_tier_changes`: the history (UPGRADE, DOWNGRADE, POLICY: its tier left the policy).
- `tier_evaluations`: the runs of the daily evaluation (when it is due, and whether the
  policy in force has been swept over every member yet).
- `ix_transfers_member_qualifying`: a member's earned points (EARN and BONUS) by purchase
  time, covering the points, so qualifying points in a rolling window read only the
  window's rows of one member. Built in the migration's transaction (it locks writes to
  `transfers` while it builds: on a large ledger, build it beforehand with CREATE INDEX
  CONCURRENTLY under this name and the migration skips it).
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE coalition_settings"
        " ADD COLUMN tiers_revision bigint NOT NULL DEFAULT 0"
    )
    op.execute(
        """
        CREATE TABLE tier_policies (
          version integer PRIMARY KEY CHECK (version > 0),
          effective_at timestamptz NOT NULL DEFAULT now(),
          window_days integer NOT NULL CHECK (window_days BETWEEN 1 AND 1096),
          grace_days integer NOT NULL CHECK (grace_days BETWEEN 0 AND 1096),
          funding jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(funding) = 'array'),
          created_by text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE tier_policy_tiers (
          policy_version integer NOT NULL REFERENCES tier_policies (version),
          position smallint NOT NULL CHECK (position >= 0),
          code text NOT NULL CHECK (code <> ''),
          name text NOT NULL CHECK (name <> ''),
          threshold bigint NOT NULL CHECK (threshold >= 0),
          multiplier numeric(12, 6) NOT NULL CHECK (multiplier >= 1),
          PRIMARY KEY (policy_version, position),
          UNIQUE (policy_version, code)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE member_tiers (
          member_id uuid PRIMARY KEY REFERENCES members (id),
          tier_code text NOT NULL CHECK (tier_code <> ''),
          since timestamptz NOT NULL,
          qualifying_points bigint NOT NULL,
          evaluated_at timestamptz NOT NULL,
          below_since timestamptz,
          policy_version integer NOT NULL REFERENCES tier_policies (version)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE member_tier_changes (
          id uuid PRIMARY KEY,
          member_id uuid NOT NULL REFERENCES members (id),
          from_tier text,
          to_tier text,
          reason text NOT NULL CHECK (reason IN ('UPGRADE', 'DOWNGRADE', 'POLICY')),
          qualifying_points bigint NOT NULL,
          policy_version integer NOT NULL REFERENCES tier_policies (version),
          event_id uuid NOT NULL,
          at timestamptz NOT NULL,
          CHECK (from_tier IS DISTINCT FROM to_tier)
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_member_tier_changes_member ON member_tier_changes (member_id, at)"
    )
    op.execute(
        """
        CREATE TABLE tier_evaluations (
          id uuid PRIMARY KEY,
          as_of timestamptz NOT NULL,
          policy_version integer NOT NULL REFERENCES tier_policies (version),
          full_sweep boolean NOT NULL,
          members bigint NOT NULL,
          upgraded bigint NOT NULL,
          downgraded bigint NOT NULL,
          remapped bigint NOT NULL,
          started_at timestamptz NOT NULL,
          finished_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_tier_evaluations_as_of ON tier_evaluations (as_of)")
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_transfers_member_qualifying"
        " ON transfers (member_id, occurred_at) INCLUDE (points)"
        " WHERE code IN ('EARN', 'BONUS')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_transfers_member_qualifying")
    op.execute("DROP TABLE IF EXISTS tier_evaluations")
    op.execute("DROP TABLE IF EXISTS member_tier_changes")
    op.execute("DROP TABLE IF EXISTS member_tiers")
    op.execute("DROP TABLE IF EXISTS tier_policy_tiers")
    op.execute("DROP TABLE IF EXISTS tier_policies")
    op.execute("ALTER TABLE coalition_settings DROP COLUMN IF EXISTS tiers_revision")
