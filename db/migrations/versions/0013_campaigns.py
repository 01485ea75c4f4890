"""campaigns: versions, budget slots, member usage; the coalition's time zone

- `campaigns`: one row per campaign (owner partner, or NULL for the operator's coalition-wide
  ones), its name, status and current version as last changed.
- `campaign_versions`: the campaign's definition, one immutable row per change (create,
  update, pause, resume, end, archive). `effective_at` is when the version took force; a
  purchase that happened at T is judged, per campaign, by the version with the greatest
  `effective_at <= T`. UPDATE, DELETE and TRUNCATE are refused by a trigger.
- `campaign_budget_slots`: a points budget split into rows (slots) so that concurrent earns
  drawing from it do not all wait on one row; `remaining` never goes below zero.
- `campaign_member_usage`: points a member got from a campaign per limit period
  (`period_start`: the period's first local day; 0001-01-01 for the CAMPAIGN period).
- `coalition_settings.time_zone` (IANA name; rules see local hours and weekdays in it) and
  `coalition_settings.campaigns_revision`, bumped in the transaction of every campaign change
  so the earn path knows, from the settings row it already reads, when its cache is stale.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

STATUSES = "('DRAFT', 'ACTIVE', 'PAUSED', 'ENDED', 'ARCHIVED')"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE coalition_settings"
        " ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC',"
        " ADD COLUMN campaigns_revision bigint NOT NULL DEFAULT 0"
    )
    op.execute(
        f"""
        CREATE TABLE campaigns (
            id uuid PRIMARY KEY,
            owner_partner_id uuid REFERENCES partners (id),
            name text NOT NULL,
            status text NOT NULL CHECK (status IN {STATUSES}),
            current_version integer NOT NULL CHECK (current_version >= 1),
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX ix_campaigns_owner ON campaigns (owner_partner_id, id)")
    op.execute(
        f"""
        CREATE TABLE campaign_versions (
            campaign_id uuid NOT NULL REFERENCES campaigns (id),
            version integer NOT NULL CHECK (version >= 1),
            effective_at timestamptz NOT NULL,
            created_by text NOT NULL,
            name text NOT NULL,
            status text NOT NULL CHECK (status IN {STATUSES}),
            starts_at timestamptz NOT NULL,
            ends_at timestamptz,
            partner_ids uuid[] NOT NULL DEFAULT '{{}}',
            store_ids text[] NOT NULL DEFAULT '{{}}',
            channels text[] NOT NULL DEFAULT '{{}}',
            tiers text[] NOT NULL DEFAULT '{{}}',
            condition text NOT NULL DEFAULT 'true',
            effect jsonb NOT NULL,
            funding jsonb NOT NULL DEFAULT '[]',
            priority integer NOT NULL DEFAULT 0,
            exclusive boolean NOT NULL DEFAULT false,
            max_points_per_purchase bigint CHECK (max_points_per_purchase > 0),
            per_member_limit bigint CHECK (per_member_limit > 0),
            limit_period text NOT NULL DEFAULT 'CAMPAIGN'
                CHECK (limit_period IN ('DAY', 'WEEK', 'MONTH', 'CAMPAIGN')),
            budget_points bigint CHECK (budget_points > 0),
            PRIMARY KEY (campaign_id, version),
            CONSTRAINT campaign_versions_schedule CHECK (ends_at IS NULL OR ends_at > starts_at),
            CONSTRAINT campaign_versions_effect CHECK (jsonb_typeof(effect) = 'object'),
            CONSTRAINT campaign_versions_funding CHECK (jsonb_typeof(funding) = 'array')
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION campaign_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'campaign_versions are immutable: % is not allowed', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER campaign_versions_no_change BEFORE UPDATE OR DELETE ON campaign_versions"
        " FOR EACH ROW EXECUTE FUNCTION campaign_versions_immutable()"
    )
    op.execute(
        "CREATE TRIGGER campaign_versions_no_truncate BEFORE TRUNCATE ON campaign_versions"
        " FOR EACH STATEMENT EXECUTE FUNCTION campaign_versions_immutable()"
    )
    op.execute(
        """
        CREATE TABLE campaign_budget_slots (
            campaign_id uuid NOT NULL REFERENCES campaigns (id),
            slot smallint NOT NULL CHECK (slot >= 0),
            remaining bigint NOT NULL CHECK (remaining >= 0),
            PRIMARY KEY (campaign_id, slot)
        )
        """
    )
    # No foreign keys: rows are written on the earn's hot path (an FK check would share-lock
    # the campaign's and the member's rows on every insert), and neither is ever deleted.
    op.execute(
        """
        CREATE TABLE campaign_member_usage (
            campaign_id uuid NOT NULL,
            member_id uuid NOT NULL,
            period_start date NOT NULL,
            points bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
            PRIMARY KEY (campaign_id, member_id, period_start)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE campaign_member_usage")
    op.execute("DROP TABLE campaign_budget_slots")
    op.execute("DROP TRIGGER IF EXISTS campaign_versions_no_truncate ON campaign_versions")
    op.execute("DROP TRIGGER IF EXISTS campaign_versions_no_change ON campaign_versions")
    op.execute("DROP TABLE campaign_versions")
    op.execute("DROP FUNCTION IF EXISTS campaign_versions_immutable()")
    op.execute("DROP TABLE campaigns")
    op.execute(
        "ALTER TABLE coalition_settings DROP COLUMN campaigns_revision, DROP COLUMN time_zone"
    )
