"""rate_limit_buckets: each API client's query-cost bucket, shared by every API process

Processes lease slices of a client's budget from its row (rate_limit_lease) and spend them
in memory, so a request touches the row only when its process's slice runs dry.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rate_limit_buckets (
            client_id text PRIMARY KEY,
            -- points left in the shared bucket as of updated_at (leases taken out)
            available double precision NOT NULL,
            -- seconds (epoch of the database clock, or of a test's own clock)
            updated_at double precision NOT NULL,
            -- leases taken so far: how often processes came to this row
            leases bigint NOT NULL DEFAULT 0
        )
        """
    )
    # One statement a lease: refill by elapsed time (capped at capacity), then grant `want`
    # points (at least `need`; nothing when even `need` is not there, or what there is when
    # `partial`). Time never runs backwards for a row: a process whose clock is behind
    # another's refills nothing until it catches up.
    op.execute(
        """
        CREATE FUNCTION rate_limit_lease(
            p_client text, p_capacity double precision, p_restore double precision,
            p_need double precision, p_want double precision, p_partial boolean,
            p_now double precision
        ) RETURNS TABLE (granted double precision, left_over double precision,
                         as_of double precision)
        LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        DECLARE
            t double precision := coalesce(p_now, extract(epoch FROM clock_timestamp()));
            level double precision;
            last double precision;
            grant_ double precision;
        BEGIN
            INSERT INTO rate_limit_buckets AS b (client_id, available, updated_at)
            VALUES (p_client, p_capacity, t)
            ON CONFLICT (client_id) DO NOTHING;
            SELECT b.available, b.updated_at INTO level, last
              FROM rate_limit_buckets b WHERE b.client_id = p_client FOR UPDATE;
            level := least(p_capacity, level + greatest(0, t - last) * p_restore);
            IF level >= p_need THEN
                grant_ := least(greatest(p_want, p_need), level);
            ELSIF p_partial THEN
                grant_ := greatest(level, 0);
            ELSE
                grant_ := 0;
            END IF;
            UPDATE rate_limit_buckets b
               SET available = level - grant_, updated_at = greatest(last, t),
                   leases = b.leases + 1
             WHERE b.client_id = p_client;
            RETURN QUERY SELECT grant_, level - grant_, greatest(last, t);
        END
        $$
        """
    )
    # Unspent points given back when a process stops (never above capacity).
    op.execute(
        """
        CREATE FUNCTION rate_limit_return(
            p_clients text[], p_points double precision[], p_capacity double precision
        ) RETURNS void LANGUAGE sql AS $$
            UPDATE rate_limit_buckets b
               SET available = least(p_capacity, b.available + r.points)
              FROM unnest(p_clients, p_points) AS r(client_id, points)
             WHERE b.client_id = r.client_id AND r.points > 0
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION rate_limit_return(text[], double precision[], double precision)")
    op.execute(
        "DROP FUNCTION rate_limit_lease(text, double precision, double precision,"
        " double precision, double precision, boolean, double precision)"
    )
    op.execute("DROP TABLE rate_limit_buckets")
